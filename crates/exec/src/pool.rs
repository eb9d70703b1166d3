//! A pool of persistent `python3` worker processes running python tools.
//!
//! Each worker imports a node's module once and then serves calls over a
//! JSON-lines protocol (see `python/worker.py`). A worker that crashes or
//! exceeds its time budget fails only the call it was serving: it is killed
//! and a fresh one is started on demand, so one bad line cannot stall a run.
//!
//! Every live worker is also listed process-wide, so [`stop_now`] (a second
//! Ctrl-C, called from the signal thread) can kill the workers blocked in
//! user code: their calls return at once as `Canceled`, and the run that
//! was waiting on them still records itself.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

const WORKER_PY: &str = include_str!("python/worker.py");
/// The bundled `promptflow` stand-in, as (relative path, contents).
const SHIM: &[(&str, &str)] = &[
    ("promptflow/__init__.py", include_str!("python/shim/promptflow/__init__.py")),
    ("promptflow/_flow_ci.py", include_str!("python/shim/promptflow/_flow_ci.py")),
    ("promptflow/_core/__init__.py", include_str!("python/shim/promptflow/_core/__init__.py")),
    ("promptflow/_core/tool.py", include_str!("python/shim/promptflow/_core/tool.py")),
    ("promptflow/exceptions.py", include_str!("python/shim/promptflow/exceptions.py")),
    ("promptflow/core.py", include_str!("python/shim/promptflow/core.py")),
    ("promptflow/tracing.py", include_str!("python/shim/promptflow/tracing.py")),
    ("promptflow/connections.py", include_str!("python/shim/promptflow/connections.py")),
    ("promptflow/entities.py", include_str!("python/shim/promptflow/entities.py")),
    ("promptflow/contracts/__init__.py", include_str!("python/shim/promptflow/contracts/__init__.py")),
    ("promptflow/contracts/types.py", include_str!("python/shim/promptflow/contracts/types.py")),
    ("promptflow/contracts/multimedia.py", include_str!("python/shim/promptflow/contracts/multimedia.py")),
];

/// Set by [`stop_now`]: calls fail as `Canceled` and no worker starts.
static STOP_NOW: AtomicBool = AtomicBool::new(false);

/// Every live worker of every pool, by pid.
static LIVE: Mutex<Vec<(u32, Arc<Mutex<Child>>)>> = Mutex::new(Vec::new());

/// Stops all python work of this process now: kills every worker (their
/// calls fail as `Canceled`, so runs finish recording themselves) and
/// refuses new calls. For the second Ctrl-C; there is no way back.
pub fn stop_now() {
    STOP_NOW.store(true, Ordering::SeqCst);
    kill_all();
}

/// Kills every live worker; the last resort before a hard exit.
pub fn kill_all() {
    for (_, child) in LIVE.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = lock(child).kill();
    }
}

fn stopped() -> bool {
    STOP_NOW.load(Ordering::SeqCst)
}

fn lock(child: &Mutex<Child>) -> std::sync::MutexGuard<'_, Child> {
    child.lock().unwrap_or_else(|e| e.into_inner())
}

fn register(child: &Arc<Mutex<Child>>) {
    let pid = lock(child).id();
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).push((pid, child.clone()));
}

/// Kills (when still running) and reaps a worker, then forgets it.
fn reap(child: &Mutex<Child>) -> Option<ExitStatus> {
    // The child's lock is released before LIVE's: kill_all takes them in the other order.
    let (pid, status) = {
        let mut child = lock(child);
        let _ = child.kill();
        (child.id(), child.wait().ok())
    };
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|(p, _)| *p != pid);
    status
}

/// A worker that died because the run was stopped: by [`stop_now`], or by
/// SIGTERM (sent to the whole process group by CI cancellation or
/// `docker stop`; flow-ci itself records the run as Canceled).
fn stopped_with(status: Option<ExitStatus>) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        const SIGTERM: i32 = 15;
        if status.and_then(|s| s.signal()) == Some(SIGTERM) {
            return true;
        }
    }
    let _ = status;
    stopped()
}

/// One call of a python tool.
#[derive(Clone, Serialize)]
pub struct CallRequest {
    /// `call` runs the tool; `load` only imports the file and finds its tool.
    pub op: &'static str,
    pub file: PathBuf,
    /// A package tool's id (`source.tool`), found through the `package_tools`
    /// entry points instead of `file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    pub working_dir: PathBuf,
    pub kwargs: serde_json::Map<String, Json>,
    /// Inputs written as literals in flow.dag.yaml: converted to the
    /// parameter's annotated type, dropped when empty.
    pub literals: Vec<String>,
    /// Inputs referencing bypassed nodes: omitted when the parameter has a
    /// default, else `None`.
    pub bypassed: Vec<String>,
    /// Inputs bound to flow inputs of type `image`: loaded as promptflow's
    /// `Image` (from a path, URL, base64 text or image dict).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// The flow's `message_format` is `openai-vision`: images are read and
    /// written as OpenAI content parts (OpenaiVisionMultimediaProcessor).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub vision: bool,
    /// Collect `log_metric` calls (aggregation nodes only, as in promptflow).
    pub aggregation: bool,
    /// Connection objects for connection-typed parameters: `{param: {type, values}}`.
    /// Holds secrets: never logged.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub connections: serde_json::Map<String, Json>,
    /// Connections the tool looks up by name rather than receives as an
    /// argument: `{name: {type, values}}` (see `bind::named_connections`).
    /// Holds secrets: never logged.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub named_connections: serde_json::Map<String, Json>,
    /// A `custom_llm` node's prompt template, given to its tool's
    /// `PromptTemplate` parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<String>,
    /// A port (`op: workflow`): how the worker gets its workflow and start
    /// message (see `model::flow::port::Port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowCall>,
    /// Send the output's generators and their items as they come
    /// (`Progress`), for `serve` asked for a stream.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// What a worker reports during a call asked to `stream`, before its response.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// The key paths of the generators the node's output holds, before any item.
    Generators(Vec<Vec<String>>),
    /// One item a generator yielded, with the generator's key path.
    Item(Vec<String>, Json),
}

/// How a worker builds and starts a port's workflow.
#[derive(Clone, Debug, Serialize)]
pub struct WorkflowCall {
    pub factory: Option<String>,
    pub start: Option<String>,
}

/// Connections hold secrets: debug output names them only.
impl std::fmt::Debug for CallRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRequest")
            .field("op", &self.op)
            .field("file", &self.file)
            .field("package", &self.package)
            .field("kwargs", &self.kwargs)
            .field("connections", &self.connections.keys().collect::<Vec<_>>())
            .field("named_connections", &self.named_connections.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CallOutput {
    pub output: Json,
    pub metrics: serde_json::Map<String, Json>,
    /// The generators the output held, by their key path: their items, in order.
    pub streams: Vec<(Vec<String>, Vec<Json>)>,
}

/// A failure raised by or around user code.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct PyError {
    /// Python exception type, or `WorkerCrashed` / `LineExecutionTimeoutError`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub traceback: String,
    /// `load` (import, syntax, tool discovery) or `call`.
    #[serde(default)]
    pub phase: String,
    /// Innermost user frame: (file, line).
    #[serde(default)]
    pub r#where: Option<(String, u32)>,
}

impl PyError {
    fn infrastructure(kind: &str, message: String) -> PyError {
        PyError { kind: kind.into(), message, traceback: String::new(), phase: "call".into(), r#where: None }
    }

    fn canceled() -> PyError {
        PyError::infrastructure("Canceled", "the run was stopped while the node was running".into())
    }
}

#[derive(Deserialize)]
struct Response {
    ok: bool,
    #[serde(default)]
    output: Json,
    #[serde(default)]
    metrics: serde_json::Map<String, Json>,
    #[serde(default)]
    streams: Vec<(Vec<String>, Vec<Json>)>,
    error: Option<PyError>,
}

#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub python: PathBuf,
    pub size: usize,
    /// Extra environment for workers (run `environment_variables`).
    pub env: Vec<(String, String)>,
    /// `python` is a flow's own environment: its packages alone are
    /// importable, so `PYTHONPATH` (and `PYTHONHOME`) of the CI are dropped.
    pub isolated: bool,
}

/// Where worker stderr (user prints, warnings) goes.
pub type LogSink = Arc<Mutex<Vec<String>>>;

pub struct Pool {
    config: PoolConfig,
    runtime_dir: PathBuf,
    idle: Mutex<Vec<Worker>>,
    available: Condvar,
    live: AtomicUsize,
    started: AtomicUsize,
    pub logs: LogSink,
}

struct Worker {
    id: usize,
    /// Shared with `LIVE`, so `stop_now` can kill it while a call waits on it.
    child: Arc<Mutex<Child>>,
    stdin: ChildStdin,
    responses: Receiver<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot start python `{}`: {source}", python.display())]
    Spawn { python: PathBuf, source: std::io::Error },
    #[error("python worker `{}` did not start: {detail}", python.display())]
    Handshake { python: PathBuf, detail: String },
    #[error("cannot write the python worker files to {}: {source}", dir.display())]
    Runtime { dir: PathBuf, source: std::io::Error },
}

impl Pool {
    pub fn new(config: PoolConfig) -> Result<Pool, PoolError> {
        let runtime_dir = write_runtime()?;
        Ok(Pool {
            config,
            runtime_dir,
            idle: Mutex::new(Vec::new()),
            available: Condvar::new(),
            live: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            logs: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Imports `file` and finds its one `@tool` (or, for a port, its
    /// workflow factory), without calling it: the cheap way to report syntax
    /// and import errors before a run starts. An import that hangs is
    /// bounded by `budget` (the line timeout).
    pub fn preload(
        &self,
        file: &Path,
        working_dir: &Path,
        workflow: Option<&WorkflowCall>,
        budget: Duration,
    ) -> Result<Result<CallOutput, PyError>, PoolError> {
        let req = CallRequest {
            op: "load",
            file: file.to_path_buf(),
            package: None,
            working_dir: working_dir.to_path_buf(),
            kwargs: serde_json::Map::new(),
            literals: vec![],
            bypassed: vec![],
            images: vec![],
            vision: false,
            aggregation: false,
            connections: serde_json::Map::new(),
            named_connections: serde_json::Map::new(),
            prompt_template: None,
            workflow: workflow.cloned(),
            stream: false,
        };
        self.call(&req, budget)
    }

    /// Workers started so far (replacements included).
    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// Runs one call within `budget`. Infrastructure failures (crash, timeout)
    /// come back as `PyError`s so they fail the line like user exceptions.
    pub fn call(&self, req: &CallRequest, budget: Duration) -> Result<Result<CallOutput, PyError>, PoolError> {
        self.call_observed(req, budget, &|_| {})
    }

    /// `call`, with what the worker reports before its response (see
    /// `CallRequest::stream`) handed to `progress` as it arrives.
    pub fn call_observed(
        &self,
        req: &CallRequest,
        budget: Duration,
        progress: &dyn Fn(Progress),
    ) -> Result<Result<CallOutput, PyError>, PoolError> {
        let deadline = Instant::now() + budget;
        if stopped() {
            return Ok(Err(PyError::canceled()));
        }
        let mut worker = match self.acquire() {
            Ok(worker) => worker,
            Err(_) if stopped() => return Ok(Err(PyError::canceled())),
            Err(e) => return Err(e),
        };
        // Tagged non-finite floats go out as Python's tokens, which json.loads reads back as floats.
        let line = crate::nonfinite::to_text(req).unwrap_or_default();
        if writeln!(worker.stdin, "{line}").and_then(|()| worker.stdin.flush()).is_err() {
            return Ok(Err(self.crashed(worker, "before the call")));
        }
        loop {
            match worker.responses.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(text) => match parse_progress(&text) {
                    Some(event) => progress(event),
                    None => {
                        self.release(worker);
                        return parse_response(&text);
                    }
                },
                Err(RecvTimeoutError::Timeout) => {
                    self.retire(worker);
                    return Ok(Err(PyError::infrastructure(
                        "LineExecutionTimeoutError",
                        format!("execution timeout for exceeding {} seconds", budget.as_secs_f64().round()),
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(Err(self.crashed(worker, "while running the node"))),
            }
        }
    }

    /// The error for a worker that died `when`: `Canceled` when the run was
    /// being stopped, else `WorkerCrashed` with its exit code.
    fn crashed(&self, worker: Worker, when: &str) -> PyError {
        let status = self.retire(worker);
        if stopped_with(status) {
            return PyError::canceled();
        }
        let detail = status.and_then(|s| s.code()).map(|code| format!(" (exit code {code})")).unwrap_or_default();
        PyError::infrastructure("WorkerCrashed", format!("python worker exited {when}{detail}"))
    }

    fn acquire(&self) -> Result<Worker, PoolError> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(w) = idle.pop() {
                return Ok(w);
            }
            if self.live.load(Ordering::SeqCst) < self.config.size.max(1) {
                self.live.fetch_add(1, Ordering::SeqCst);
                drop(idle);
                return self.spawn().inspect_err(|_| {
                    self.live.fetch_sub(1, Ordering::SeqCst);
                    self.available.notify_one();
                });
            }
            idle = self.available.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release(&self, worker: Worker) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(worker);
        self.available.notify_one();
    }

    /// Kills a worker that failed or hung; a replacement starts on demand.
    fn retire(&self, worker: Worker) -> Option<ExitStatus> {
        let status = reap(&worker.child);
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.available.notify_one();
        tracing::debug!(worker = worker.id, ?status, "python worker retired");
        status
    }

    fn spawn(&self) -> Result<Worker, PoolError> {
        let id = self.started.fetch_add(1, Ordering::SeqCst);
        let python = &self.config.python;
        if stopped() {
            return Err(handshake(python, "the run was stopped"));
        }
        let mut command = Command::new(python);
        // User code never sees the CI's credentials; the flow's own variables come after.
        crate::credentials::remove_from(&mut command);
        if self.config.isolated {
            command.env_remove("PYTHONPATH").env_remove("PYTHONHOME");
        }
        let mut child = command
            .arg("-u")
            .arg(self.runtime_dir.join("flow_ci_worker.py"))
            .env("FLOW_CI_SHIM", self.runtime_dir.join("shim"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PF_DISABLE_TRACING", "true")
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| PoolError::Spawn { python: python.clone(), source })?;
        let stdin = child.stdin.take().ok_or_else(|| handshake(python, "no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| handshake(python, "no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| handshake(python, "no stderr"))?;
        let (tx, responses) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                logs.lock().unwrap_or_else(|e| e.into_inner()).push(format!("[python worker {id}] {line}"));
            }
        });
        let child = Arc::new(Mutex::new(child));
        register(&child);
        // A stop_now that ran before the registration missed this worker.
        if stopped() {
            reap(&child);
        }
        let worker = Worker { id, child, stdin, responses };
        // The first line announces readiness; importing real promptflow can take seconds.
        match worker.responses.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.contains("\"ready\"") => {
                tracing::debug!(worker = id, hello = %line, "python worker ready");
                Ok(worker)
            }
            other => {
                reap(&worker.child);
                std::thread::sleep(Duration::from_millis(50));
                let tail: Vec<String> =
                    self.logs.lock().unwrap_or_else(|e| e.into_inner()).iter().rev().take(5).rev().cloned().collect();
                Err(handshake(python, &format!("{other:?}; {}", tail.join(" | "))))
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let workers = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            // Closing stdin ends the worker's loop; kill as a backstop.
            drop(w.stdin);
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = lock(&w.child).try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            reap(&w.child);
        }
    }
}

fn handshake(python: &Path, detail: &str) -> PoolError {
    PoolError::Handshake { python: python.to_path_buf(), detail: detail.into() }
}

/// A worker's report during a call (`{"generators": ...}` or `{"item": ...}`,
/// written ahead of the response), or `None` for the response itself.
fn parse_progress(text: &str) -> Option<Progress> {
    #[derive(Deserialize)]
    struct Report {
        generators: Option<Vec<Vec<String>>>,
        item: Option<(Vec<String>, Json)>,
    }
    if !(text.starts_with("{\"generators\"") || text.starts_with("{\"item\"")) {
        return None;
    }
    let report: Report = crate::nonfinite::parse(text).ok()?;
    match (report.generators, report.item) {
        (Some(paths), _) => Some(Progress::Generators(paths)),
        (_, Some((path, value))) => Some(Progress::Item(path, value)),
        _ => None,
    }
}

fn parse_response(text: &str) -> Result<Result<CallOutput, PyError>, PoolError> {
    // Python's json.dumps writes NaN / Infinity, which serde_json alone rejects.
    let resp: Response = crate::nonfinite::parse(text).map_err(|e| PoolError::Handshake {
        python: PathBuf::from("python"),
        detail: format!("unreadable worker response ({e}): {}", text.chars().take(200).collect::<String>()),
    })?;
    Ok(if resp.ok {
        Ok(CallOutput { output: resp.output, metrics: resp.metrics, streams: resp.streams })
    } else {
        Err(resp.error.unwrap_or_else(|| {
            PyError::infrastructure("WorkerError", "worker reported a failure without details".into())
        }))
    })
}

/// Writes the worker script and shim once per content version, so concurrent
/// flow-ci processes share them and a new release never reuses stale files.
fn write_runtime() -> Result<PathBuf, PoolError> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    WORKER_PY.hash(&mut hasher);
    SHIM.hash(&mut hasher);
    let dir = std::env::temp_dir().join(format!("flow-ci-python-{:016x}", hasher.finish()));
    if dir.join("complete").exists() {
        return Ok(dir);
    }
    let err = |source| PoolError::Runtime { dir: dir.clone(), source };
    let staging = dir.with_extension(format!("tmp{}", std::process::id()));
    let mut files: HashMap<PathBuf, &str> = SHIM.iter().map(|(p, c)| (staging.join("shim").join(p), *c)).collect();
    files.insert(staging.join("flow_ci_worker.py"), WORKER_PY);
    for (path, contents) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        std::fs::write(&path, contents).map_err(err)?;
    }
    std::fs::write(staging.join("complete"), "").map_err(err)?;
    // Another process may have won the race; either copy is identical.
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(dir)
}

/// The python interpreter a command was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Python {
    /// `--python` or `FLOW_CI_PYTHON`: every flow runs in it as it is (the
    /// user manages its packages).
    Fixed(PathBuf),
    /// An active virtualenv's or `python3`: flows without requirements run in
    /// it, flows with requirements in an environment built from it (`pyenv`).
    Base(PathBuf),
}

impl Python {
    pub fn path(&self) -> &Path {
        match self {
            Python::Fixed(p) | Python::Base(p) => p,
        }
    }
}

/// The interpreter: `--python`, else `FLOW_CI_PYTHON`, else an active
/// virtualenv's, else `python3` on PATH.
pub fn default_python(explicit: Option<&Path>) -> Python {
    if let Some(p) = explicit {
        return Python::Fixed(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("FLOW_CI_PYTHON").filter(|p| !p.is_empty()) {
        return Python::Fixed(PathBuf::from(p));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let candidate = Path::new(&venv).join("bin/python");
        if candidate.exists() {
            return Python::Base(candidate);
        }
    }
    Python::Base(PathBuf::from("python3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(size: usize) -> Pool {
        let python = default_python(None).path().to_path_buf();
        Pool::new(PoolConfig { python, size, env: vec![], isolated: false }).unwrap()
    }

    fn request(dir: &Path, file: &str, kwargs: Json) -> CallRequest {
        CallRequest {
            op: "call",
            file: dir.join(file),
            package: None,
            working_dir: dir.to_path_buf(),
            kwargs: kwargs.as_object().cloned().unwrap_or_default(),
            literals: vec![],
            bypassed: vec![],
            images: vec![],
            vision: false,
            aggregation: false,
            connections: serde_json::Map::new(),
            named_connections: serde_json::Map::new(),
            prompt_template: None,
            workflow: None,
            stream: false,
        }
    }

    #[test]
    fn calls_tools_and_reuses_workers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.py"),
            "from promptflow.core import tool\nprint('import side effect')\n\n@tool\ndef upper(text: str, n: int = 1) -> dict:\n    print('in tool')\n    return {'text': text.upper() * n}\n",
        )
        .unwrap();
        let pool = pool(1);
        for _ in 0..3 {
            let out = pool
                .call(&request(dir.path(), "t.py", serde_json::json!({"text": "hi"})), Duration::from_secs(30))
                .unwrap()
                .unwrap();
            assert_eq!(out.output, serde_json::json!({"text": "HI"}));
        }
        assert_eq!(pool.started(), 1);
        let mut req = request(dir.path(), "t.py", serde_json::json!({"text": "a", "n": "3"}));
        req.literals = vec!["n".into()];
        let out = pool.call(&req, Duration::from_secs(30)).unwrap().unwrap();
        assert_eq!(out.output, serde_json::json!({"text": "AAA"}));
    }

    #[test]
    fn a_call_asked_to_stream_reports_generators_and_items_before_its_response() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.py"),
            "from promptflow.core import tool\n\ndef words(text):\n    for w in text.split():\n        yield w\n\n@tool\ndef f(text: str) -> dict:\n    return {'answer': words(text), 'n': len(text.split())}\n",
        )
        .unwrap();
        let pool = pool(1);
        let mut req = request(dir.path(), "t.py", serde_json::json!({"text": "a b"}));
        let heard = Mutex::new(Vec::new());
        let observe = |p| heard.lock().unwrap().push(p);
        let out = pool.call_observed(&req, Duration::from_secs(30), &observe).unwrap().unwrap();
        assert_eq!(out.output, serde_json::json!({"answer": "ab", "n": 2}));
        assert!(heard.lock().unwrap().is_empty(), "nothing is reported unless asked");
        req.stream = true;
        let out = pool.call_observed(&req, Duration::from_secs(30), &observe).unwrap().unwrap();
        assert_eq!(out.output, serde_json::json!({"answer": "ab", "n": 2}), "the response is the same");
        let answer = vec!["answer".to_string()];
        assert_eq!(
            *heard.lock().unwrap(),
            [
                Progress::Generators(vec![answer.clone()]),
                Progress::Item(answer.clone(), serde_json::json!("a")),
                Progress::Item(answer, serde_json::json!("b")),
            ]
        );
    }

    #[test]
    fn exceptions_crashes_and_timeouts_fail_only_the_call() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.py"),
            "import os, time\nfrom promptflow import tool\n\n@tool\ndef f(mode: str):\n    if mode == 'raise':\n        raise ValueError('bad row')\n    if mode == 'crash':\n        os._exit(3)\n    if mode == 'hang':\n        time.sleep(60)\n    return mode\n",
        )
        .unwrap();
        let pool = pool(1);
        let call = |mode: &str, secs| {
            pool.call(&request(dir.path(), "t.py", serde_json::json!({"mode": mode})), Duration::from_secs(secs))
                .unwrap()
        };
        let err = call("raise", 30).unwrap_err();
        assert_eq!((err.kind.as_str(), err.message.as_str()), ("ValueError", "bad row"));
        assert_eq!(err.r#where.as_ref().map(|w| w.1), Some(7));
        assert_eq!(call("crash", 30).unwrap_err().kind, "WorkerCrashed");
        assert_eq!(call("hang", 1).unwrap_err().kind, "LineExecutionTimeoutError");
        assert_eq!(call("ok", 30).unwrap().output, serde_json::json!("ok"));
        assert_eq!(pool.started(), 3);
    }

    #[test]
    fn metrics_are_collected_only_for_aggregation_calls() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("agg.py"),
            "from promptflow.core import tool, log_metric\n\n@tool\ndef agg(xs: list):\n    log_metric('mean', sum(xs) / len(xs))\n    return len(xs)\n",
        )
        .unwrap();
        let pool = pool(1);
        let mut req = request(dir.path(), "agg.py", serde_json::json!({"xs": [1, 2]}));
        let out = pool.call(&req, Duration::from_secs(30)).unwrap().unwrap();
        assert!(out.metrics.is_empty());
        req.aggregation = true;
        let out = pool.call(&req, Duration::from_secs(30)).unwrap().unwrap();
        assert_eq!(out.metrics.get("mean"), Some(&serde_json::json!(1.5)));
    }

    #[test]
    fn files_without_exactly_one_tool_fail_to_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("none.py"), "def f():\n    return 1\n").unwrap();
        std::fs::write(dir.path().join("syntax.py"), "def f(:\n").unwrap();
        let pool = pool(1);
        let err = pool
            .call(&request(dir.path(), "none.py", serde_json::json!({})), Duration::from_secs(30))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.phase, "load");
        assert!(err.message.contains("one and only one tool"), "{err:?}");
        let err = pool
            .call(&request(dir.path(), "syntax.py", serde_json::json!({})), Duration::from_secs(30))
            .unwrap()
            .unwrap_err();
        assert_eq!((err.kind.as_str(), err.phase.as_str()), ("SyntaxError", "load"));
        assert_eq!(err.r#where.as_ref().map(|w| w.1), Some(1));
    }
}
