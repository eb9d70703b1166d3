//! Conformance over a corpus: promptflow's own test flows and examples
//! (vendored verbatim under tests/vendor/promptflow) run through promptflow
//! (tests/corpus/pf_oracle.py, in pf's venv) and through flow-ci, each flow's
//! `flow test` and, where the flow ships a run file or data, a batch run;
//! then a single-node test (`flow test --node`, kind `node:NAME`) of each
//! node pf's flow test ran (or could have run on flow inputs alone), on the
//! inputs it ran with there (pf_oracle.py node_jobs says which are left out).
//!
//! Every case is classified (match, differs, flow-ci-fails, flow-ci-crash,
//! pf-fails, excluded) and the classification must equal
//! tests/corpus/expected.tsv, so a change in any flow's result fails the test
//! with the lines that changed; `FLOW_CI_CORPUS_UPDATE=1` rewrites the file.
//! tests/corpus/manifest.yaml holds what the vendored files cannot say:
//! exclusions (nondeterministic flows) with their reason, and inputs.
//! The summary table of issue #21 is printed on every run.
//!
//! Both tools get the same connections (tests/corpus/connections.yaml) to a
//! loopback model (tests/support/fake_llm.rs), and each case sends all its
//! HTTP through that model as its proxy, tagged with the tool and the case:
//! a model case matches when the outputs are the same and so are the
//! requests the model received from each tool (as multisets).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::{Map, Value as Json};

mod support;
use support::fake_llm::{FakeLlm, Received};
use support::fs::copy_tree;
use support::pf::{PfWorkspace, pf};

const VENDOR: &str = "tests/vendor/promptflow";
/// flow-ci invocations at once (the machine's two cores, shared with the oracle).
const THREADS: usize = 2;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// One case both tools run, as the oracle planned it.
#[derive(Clone)]
struct Job {
    id: String,
    kind: String,
    flow: String,
    inputs: Option<String>,
    run_file: Option<String>,
    name: Option<String>,
    excluded: Option<String>,
    /// The node a single-node test (kind `node:NAME`) runs.
    node: Option<String>,
}

impl Job {
    fn from_json(j: &Json) -> Job {
        let s = |k: &str| j.get(k).and_then(Json::as_str).map(str::to_owned);
        Job {
            id: s("id").unwrap(),
            kind: s("kind").unwrap(),
            flow: s("flow").unwrap(),
            inputs: s("inputs"),
            run_file: s("run_file"),
            name: s("name"),
            excluded: s("excluded"),
            node: s("node"),
        }
    }

    /// The case's name in expected.tsv and the table.
    fn case(&self) -> String {
        format!("{}\t{}", self.flow, self.kind)
    }
}

/// The jobs of flows whose path contains FLOW_CI_CORPUS_ONLY, when set (a
/// quicker run while fixing a few flows: only their lines of expected.tsv
/// are compared, and none is rewritten); else all.
fn only_some(jobs: &[Json]) -> Vec<Json> {
    let only = std::env::var("FLOW_CI_CORPUS_ONLY").unwrap_or_default();
    jobs.iter().filter(|j| j["flow"].as_str().is_some_and(|f| f.contains(&only))).cloned().collect()
}

/// The scratch workspace: `flows/` is pf's copy of the corpus, `ci/` flow-ci's.
struct Corpus {
    ws: PfWorkspace,
    model: Model,
}

impl Corpus {
    fn new() -> Corpus {
        let ws = PfWorkspace::new(VENDOR);
        copy_tree(&repo(VENDOR), &ws.path().join("ci"), &[]);
        let model = Model::start(&ws.path().join("connections"));
        Corpus { ws, model }
    }

    /// The connections, created in pf's home as `pf connection create --file` does.
    fn create_pf_connections(&self) {
        let dir = self.ws.path().join("connections");
        let out = self.oracle(&["connections", dir.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "pf_oracle.py connections: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn pf_tree(&self) -> PathBuf {
        self.ws.path().join("flows")
    }

    fn ci_tree(&self) -> PathBuf {
        self.ws.path().join("ci")
    }

    fn oracle(&self, args: &[&str]) -> std::process::Command {
        let script = repo("tests/corpus/pf_oracle.py");
        let mut all = vec![script.to_str().unwrap()];
        all.extend(args);
        let mut cmd = self.ws.python_command(&all);
        cmd.env("CORPUS_MODEL_PROXY", self.model.address()).env("PYTHONHASHSEED", HASH_SEED);
        cmd
    }

    /// The jobs, planned once by the oracle; flow-ci reads the same inputs and run files.
    fn plan(&self) -> Vec<Job> {
        let manifest = repo("tests/corpus/manifest.yaml");
        let out = self.oracle(&["plan", "flows", manifest.to_str().unwrap(), "jobs.json"]).output().unwrap();
        assert!(out.status.success(), "pf_oracle.py plan: {}", String::from_utf8_lossy(&out.stderr));
        copy_tree(&self.pf_tree().join(".corpus"), &self.ci_tree().join(".corpus"), &[]);
        let jobs: Json =
            serde_json::from_str(&std::fs::read_to_string(self.ws.path().join("jobs.json")).unwrap()).unwrap();
        let jobs = only_some(jobs.as_array().unwrap());
        std::fs::write(self.ws.path().join("jobs.json"), Json::Array(jobs.clone()).to_string()).unwrap();
        jobs.iter().map(Job::from_json).collect()
    }

    fn flow_ci(&self, job: &Job, args: &[&str]) -> Output {
        let mut cmd = Command::cargo_bin("flow-ci").unwrap();
        cmd.current_dir(self.ci_tree())
            .args(args)
            .args(self.model.flow_ci_args())
            .envs(self.model.proxy_env("ci", &job.id))
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env("HOME", self.ws.path().join("ci-home"))
            .env("FLOW_CI_RUNS_DIR", self.ws.path().join("ci-runs"))
            .env("FLOW_CI_CACHE_DIR", self.ws.path().join("ci-cache"))
            // The workers get pf's interpreter: the same packages the flows import under pf.
            .env("FLOW_CI_PYTHON", pf().parent().unwrap().join("python"))
            .env_remove("VIRTUAL_ENV")
            .env("PYTHONHASHSEED", HASH_SEED)
            // A guard against a hung run, far past any flow's time; not a timing assertion.
            .timeout(Duration::from_secs(600));
        cmd.output().unwrap()
    }

    fn run_flow_ci(&self, job: &Job) -> Side {
        match job.kind.as_str() {
            "batch" => {
                let name = job.name.as_deref().unwrap();
                let out =
                    self.flow_ci(job, &["run", "create", "--file", job.run_file.as_deref().unwrap(), "--name", name]);
                let dir = self.ws.path().join("ci-runs").join(name);
                let ok = out.status.success();
                let result = ok.then(|| {
                    let outputs: Vec<Json> =
                        read_jsonl(&dir.join("output.jsonl")).into_iter().map(|o| absolute_images(o, &dir)).collect();
                    batch_result(&outputs, &read_json(&dir.join("metrics.json")))
                });
                Side::from_output(&out, result, self.ws.path())
            }
            _ => {
                let mut args = vec!["flow", "test", "--flow", job.flow.as_str()];
                if let Some(inputs) = &job.inputs {
                    args.extend(["--input", inputs.as_str()]);
                }
                if let Some(node) = &job.node {
                    args.extend(["--node", node.as_str()]);
                }
                let out = self.flow_ci(job, &args);
                let stdout = String::from_utf8_lossy(&out.stdout);
                let result = out
                    .status
                    .success()
                    .then(|| serde_json::from_str(&stdout).unwrap_or(Json::String(stdout.into_owned())));
                Side::from_output(&out, result, self.ws.path())
            }
        }
    }
}

/// The loopback model's key; not `sk-…`, which basic-with-connection's
/// hello.py takes for an OpenAI key.
const MODEL_KEY: &str = "corpus-model-key-0123456789";

/// The loopback model both tools' connections name, and the connection files.
struct Model {
    fake: FakeLlm,
    connections: Vec<PathBuf>,
}

impl Model {
    /// Starts the model and writes each connection of tests/corpus/connections.yaml to `dir`.
    fn start(dir: &Path) -> Model {
        let fake = FakeLlm::start(MODEL_KEY);
        let text = std::fs::read_to_string(repo("tests/corpus/connections.yaml")).unwrap();
        let text = text.replace("<fake-llm>", &fake.url).replace("<fake-key>", MODEL_KEY);
        std::fs::create_dir_all(dir).unwrap();
        let connections = text
            .split("\n---\n")
            .map(|doc| {
                let name = doc.lines().find_map(|l| l.strip_prefix("name: ")).expect("a connection has a name");
                let path = dir.join(format!("{}.yaml", name.trim()));
                std::fs::write(&path, doc).unwrap();
                path
            })
            .collect();
        Model { fake, connections }
    }

    /// `HOST:PORT`, the proxy both tools send through.
    fn address(&self) -> &str {
        self.fake.url.trim_start_matches("http://")
    }

    fn flow_ci_args(&self) -> Vec<String> {
        let mut args = vec!["--no-cache".to_owned()];
        for file in &self.connections {
            args.extend(["--connection".to_owned(), file.to_string_lossy().into_owned()]);
        }
        args
    }

    /// All of a case's HTTP through the model, the user naming the tool and
    /// the case (pf_oracle.py's model_proxy does the same for pf).
    fn proxy_env(&self, tool: &str, id: &str) -> Vec<(&'static str, String)> {
        let url = format!("http://{tool}-{}:x@{}", proxy_tag(id), self.address());
        ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]
            .into_iter()
            .map(|var| (var, url.clone()))
            .collect()
    }

    /// Every request the model received, by proxy user (`pf-TAG`, `ci-TAG`).
    fn requests_by_sender(&self) -> BTreeMap<String, Vec<Json>> {
        let mut by = BTreeMap::<String, Vec<Json>>::new();
        // A CONNECT is an https address on the internet, which the model refuses:
        // a flow's fetch, or pf's own look for a newer release on PyPI, made at any time.
        for req in self.fake.received().into_iter().filter(|r| r.method != "CONNECT") {
            if let Some(user) = proxy_user(&req) {
                by.entry(user).or_default().push(request_value(&req));
            }
        }
        by
    }
}

/// A job's id as a proxy user name (pf_oracle.py's proxy_tag is the same).
fn proxy_tag(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect()
}

/// The user of a request's `Proxy-Authorization: Basic …`.
fn proxy_user(req: &Received) -> Option<String> {
    use base64::Engine as _;
    let encoded = req.header("proxy-authorization")?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':').map_or(text.as_str(), |(user, _)| user).to_owned())
}

/// What is compared of a request: method, path, query and JSON body.
fn request_value(req: &Received) -> Json {
    serde_json::json!({"method": req.method, "path": req.path, "query": req.query, "body": req.body})
}

/// One tool's result for a case: its outputs, or why it failed.
struct Side {
    result: Option<Json>,
    /// flow-ci's one-line reason when it failed.
    reason: String,
    /// A panic, a Python traceback or an exit code outside DESIGN.md's.
    crash: bool,
}

impl Side {
    fn from_output(out: &Output, result: Option<Json>, ws: &Path) -> Side {
        let stderr = String::from_utf8_lossy(&out.stderr).replace(ws.to_str().unwrap(), "<ws>");
        let code = out.status.code();
        let crash = stderr.contains("panicked at")
            || stderr.contains("Traceback (most recent call last)")
            || !matches!(code, Some(0..=3));
        Side { result, reason: reason_line(&stderr, code), crash }
    }
}

/// The line of flow-ci's stderr that says why: the first error, not the flow's own prints.
fn reason_line(stderr: &str, code: Option<i32>) -> String {
    let lines: Vec<&str> =
        stderr.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("[python worker")).collect();
    let line = lines
        .iter()
        .find(|l| l.starts_with("error") || l.contains(": error:") || l.contains(" error: "))
        .or(lines.first())
        .copied()
        .unwrap_or("");
    let line: String = line.chars().take(200).collect();
    format!("exit {}: {line}", code.map_or("signal".into(), |c| c.to_string()))
}

fn read_jsonl(path: &Path) -> Vec<Json> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or(Json::Null)).collect()
        })
        .unwrap_or_default()
}

fn read_json(path: &Path) -> Json {
    std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Json::Object(Map::new()))
}

/// A batch run as one value: outputs by line number, and metrics.
fn batch_result(outputs: &[Json], metrics: &Json) -> Json {
    let mut lines = outputs.to_vec();
    lines.sort_by_key(|o| o.get("line_number").and_then(Json::as_u64).unwrap_or(u64::MAX));
    serde_json::json!({ "outputs": lines, "metrics": metrics })
}

/// Equal JSON, numbers to 1e-9, images by content.
fn same(a: &Json, b: &Json) -> bool {
    if let (Some(x), Some(y)) = (image_path(a), image_path(b)) {
        return same_image(x, y);
    }
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-9,
        (Json::Array(x), Json::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Json::String(x), Json::String(y)) => {
            // Each tool runs its own copy of the corpus: a path into it (a node's
            // `__file__`) is the same path when it names the same file of the copy.
            // A single-node test's inputs come from pf's flow test, so flow-ci's
            // output may name pf's copy too.
            let roots = ROOTS.get();
            let norm = |s: &str, (pf, ci): &(String, String)| {
                s.replace(pf.as_str(), "<corpus>").replace(ci.as_str(), "<corpus>")
            };
            roots.is_some_and(|r| norm(x, r) == norm(y, r)) || x == y
        }
        _ => a == b,
    }
}

/// pf's copy of the corpus and flow-ci's, as `same` compares paths into them.
static ROOTS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// pf's persisted image, `{"data:image/png;path": "<uuid>.png"}`: the mime type and the path;
/// in an openai-vision flow `{"type": "image_file", "image_file": {"path": …}}`: `image_file` and the path.
fn image_path(v: &Json) -> Option<(&str, &str)> {
    let vision = v.as_object().filter(|o| o.len() == 2 && o.get("type").and_then(Json::as_str) == Some("image_file"));
    if let Some(obj) = vision {
        return Some(("image_file", obj.get("image_file")?.get("path")?.as_str()?));
    }
    let obj = v.as_object().filter(|o| o.len() == 1)?;
    let (key, path) = obj.iter().next()?;
    (key.starts_with("data:image/") && key.ends_with(";path")).then_some((key.as_str(), path.as_str()?))
}

/// An image reference in a run's output.jsonl (relative to its folder, `dir`)
/// as an absolute path, as the oracle gives pf's (`absolute_images` there).
fn absolute_images(value: Json, dir: &Path) -> Json {
    if let Some((key, path)) = image_path(&value) {
        let path = dir.join(path).to_string_lossy().into_owned();
        return match key {
            "image_file" => serde_json::json!({"type": "image_file", "image_file": {"path": path}}),
            _ => serde_json::json!({ key: path }),
        };
    }
    match value {
        Json::Object(o) => Json::Object(o.into_iter().map(|(k, v)| (k, absolute_images(v, dir))).collect()),
        Json::Array(a) => Json::Array(a.into_iter().map(|v| absolute_images(v, dir)).collect()),
        other => other,
    }
}

/// The hook for images (issue #21): pf names image files by UUID, so two
/// references are the same image when the mime types match and the files hold
/// the same bytes.
fn same_image((mime_a, a): (&str, &str), (mime_b, b): (&str, &str)) -> bool {
    let bytes = |p: &str| std::fs::read(p).ok();
    mime_a == mime_b && (a == b || bytes(a).is_some_and(|x| Some(x) == bytes(b)))
}

/// The top-level keys (or lines) whose values differ, for the reason column.
fn differences(pf: &Json, ours: &Json) -> String {
    let keys = |v: &Json| -> BTreeMap<String, Json> {
        match v {
            Json::Object(o) if o.contains_key("outputs") && o.contains_key("metrics") => {
                let mut m = BTreeMap::new();
                if let Some(lines) = o["outputs"].as_array() {
                    m.insert("line count".to_owned(), Json::from(lines.len()));
                    for (i, line) in lines.iter().enumerate() {
                        m.insert(format!("line {i}"), line.clone());
                    }
                }
                m.insert("metrics".to_owned(), o["metrics"].clone());
                m
            }
            Json::Object(o) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            other => BTreeMap::from([("value".to_owned(), other.clone())]),
        }
    };
    let (p, o) = (keys(pf), keys(ours));
    let mut names: Vec<&String> = p.keys().chain(o.keys()).collect();
    names.sort();
    names.dedup();
    let differ: Vec<&str> = names
        .into_iter()
        .filter(|k| !matches!((p.get(*k), o.get(*k)), (Some(x), Some(y)) if same(x, y)))
        .map(String::as_str)
        .collect();
    let shown: Vec<&str> = differ.iter().take(4).copied().collect();
    format!("differ: {}{}", shown.join(", "), if differ.len() > 4 { ", …" } else { "" })
}

/// The oracle's result for a case: its outputs (a batch run as `batch_result`), or its error type.
fn pf_side(result: &Json, kind: &str) -> Result<Json, String> {
    if result["ok"] != Json::Bool(true) {
        let what = result["type"].as_str().map_or_else(|| format!("run {}", result["status"]), str::to_owned);
        return Err(what);
    }
    if kind == "batch" {
        let outputs: Vec<Json> = result["outputs"].as_array().cloned().unwrap_or_default();
        Ok(batch_result(&outputs, &result["metrics"]))
    } else {
        Ok(result["output"].clone())
    }
}

/// One line of expected.tsv.
#[derive(Clone, PartialEq, Eq)]
struct Row {
    case: String,
    status: &'static str,
    reason: String,
}

fn classify(job: &Job, pf: Option<&Json>, ours: Option<&Side>) -> Row {
    let row = |status, reason: String| Row { case: job.case(), status, reason: reason.replace(['\t', '\n'], " ") };
    if let Some(why) = &job.excluded {
        return row("excluded", why.clone());
    }
    let (pf, ours) = (pf_side(pf.unwrap(), &job.kind), ours.unwrap());
    match (pf, &ours.result) {
        (Ok(p), Some(o)) if same(&p, o) => row("match", String::new()),
        (Ok(p), Some(o)) => row("differs", differences(&p, o)),
        (Ok(_), None) if ours.crash => row("flow-ci-crash", ours.reason.clone()),
        (Ok(_), None) => row("flow-ci-fails", ours.reason.clone()),
        (Err(e), Some(_)) => row("pf-fails", format!("pf: {e}; flow-ci passes")),
        (Err(e), None) if ours.crash => row("pf-fails", format!("pf: {e}; flow-ci crashes: {}", ours.reason)),
        (Err(e), None) => row("pf-fails", format!("pf: {e}; flow-ci fails too")),
    }
}

/// Marks a case's reason when either tool called the loopback model.
const MODEL_MARK: &str = "loopback model: ";

/// A case that called the model, with both tools' requests compared: a
/// match needs the same requests too (else `bodies-differ`), and every
/// other result says whether they were the same. Excluded cases and those
/// pf fails are left as they are.
fn with_model(row: Row, pf: &[Json], ours: &[Json]) -> Row {
    if matches!(row.status, "excluded" | "pf-fails") || (pf.is_empty() && ours.is_empty()) {
        return row;
    }
    let verdict = match first_request_difference(pf, ours) {
        None => format!("{MODEL_MARK}{} requests, the same bodies", pf.len()),
        Some(first) => format!("{MODEL_MARK}bodies differ: {first}"),
    };
    let same = verdict.ends_with("the same bodies");
    let (status, reason) = match (row.status, same) {
        ("match", true) => ("match", verdict),
        ("match", false) => ("bodies-differ", verdict),
        (status, _) => (status, format!("{}; {verdict}", row.reason)),
    };
    let reason: String = reason.replace(['\t', '\n'], " ").chars().take(400).collect();
    Row { status, reason, ..row }
}

/// The first request one tool sent and the other did not, as one line:
/// where its JSON differs from the other tool's nearest unmatched request.
/// Requests compare as multisets (lines run concurrently), in a stable order.
fn first_request_difference(pf: &[Json], ours: &[Json]) -> Option<String> {
    let sorted = |v: &[Json]| {
        let mut v: Vec<Json> = v.to_vec();
        v.sort_by_cached_key(Json::to_string);
        v
    };
    let mut pf_left = sorted(pf);
    let mut ours_left = Vec::new();
    for o in sorted(ours) {
        match pf_left.iter().position(|p| *p == o) {
            Some(i) => {
                pf_left.remove(i);
            }
            None => ours_left.push(o),
        }
    }
    let counts = format!("pf sent {}, flow-ci {}", pf.len(), ours.len());
    match (pf_left.first(), ours_left.first()) {
        (None, None) => None,
        (Some(p), Some(o)) => Some(format!("{}; {counts}", json_difference("", p, o))),
        (Some(p), None) => Some(format!("{counts}; pf's {} has no match", describe(p))),
        (None, Some(o)) => Some(format!("{counts}; flow-ci's {} has no match", describe(o))),
    }
}

/// A request in a few words: method and path.
fn describe(request: &Json) -> String {
    format!("{} {}", request["method"].as_str().unwrap_or("?"), request["path"].as_str().unwrap_or("?"))
}

/// The first place where two JSON values differ: `body.messages[1].content: pf "…", flow-ci "…"`.
fn json_difference(at: &str, pf: &Json, ours: &Json) -> String {
    match (pf, ours) {
        (Json::Object(p), Json::Object(o)) => {
            let mut keys: Vec<&String> = p.keys().chain(o.keys()).collect();
            keys.sort();
            keys.dedup();
            let missing = Json::String("<absent>".into());
            let key = keys.into_iter().find(|k| p.get(*k) != o.get(*k)).expect("the values differ");
            let sub = |m: &'_ Map<String, Json>| m.get(key).cloned().unwrap_or_else(|| missing.clone());
            json_difference(&format!("{at}.{key}"), &sub(p), &sub(o))
        }
        (Json::Array(p), Json::Array(o)) if p.len() == o.len() => {
            let i = (0..p.len()).find(|i| p[*i] != o[*i]).expect("the values differ");
            json_difference(&format!("{at}[{i}]"), &p[i], &o[i])
        }
        (Json::String(p), Json::String(o)) => {
            // Long texts (prompts) differ somewhere inside: show both from just before there.
            let at_char = p.chars().zip(o.chars()).take_while(|(x, y)| x == y).count();
            let from = at_char.saturating_sub(20);
            let window = |t: &str| Json::String(t.chars().skip(from).take(60).collect()).to_string();
            format!("{} from char {from}: pf {}, flow-ci {}", at.trim_start_matches('.'), window(p), window(o))
        }
        _ => {
            let short = |v: &Json| -> String {
                let text = v.to_string();
                if text.chars().count() > 80 {
                    format!("{}…", text.chars().take(80).collect::<String>())
                } else {
                    text
                }
            };
            format!("{}: pf {}, flow-ci {}", at.trim_start_matches('.'), short(pf), short(ours))
        }
    }
}

/// flow-ci over every job, THREADS at a time.
fn run_all_flow_ci(corpus: &Corpus, jobs: &[Job]) -> BTreeMap<String, Side> {
    let queue = Mutex::new(jobs.iter().filter(|j| j.excluded.is_none()));
    let results = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                loop {
                    let Some(job) = queue.lock().unwrap().next() else { break };
                    let side = corpus.run_flow_ci(job);
                    results.lock().unwrap().insert(job.id.clone(), side);
                }
            });
        }
    });
    results.into_inner().unwrap()
}

/// Issue #21's table, from the rows.
fn summary(rows: &[Row]) -> String {
    let of = |kind: &str| rows.iter().filter(|r| r.case.ends_with(&format!("\t{kind}"))).collect::<Vec<_>>();
    let count = |rs: &[&Row], s: &str| rs.iter().filter(|r| r.status == s).count();
    let (tests, batches) = (of("test"), of("batch"));
    let pf_passes = |rs: &[&Row]| rs.iter().filter(|r| !matches!(r.status, "pf-fails" | "excluded")).count();
    let pct = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
    let (m, p) = (count(&tests, "match"), pf_passes(&tests));
    let (bm, bp) = (count(&batches, "match"), pf_passes(&batches));
    let fails = count(&tests, "flow-ci-fails") + count(&tests, "flow-ci-crash");
    let crashes = rows.iter().filter(|r| r.status == "flow-ci-crash").count();
    let mut t = String::from("| comparison | result |\n|---|---|\n");
    t += &format!("| flows pf passes that flow-ci reproduces exactly | {m} of {p} ({:.0}%) |\n", pct(m, p));
    t += &format!("| flow-ci fails where pf passes | {fails} (of which crashes or tracebacks: {crashes}) |\n");
    t += &format!("| both pass, outputs differ | {} |\n", count(&tests, "differs"));
    t += &format!("| batch runs with the same outputs and metrics | {bm} of {bp} |\n");
    t += &single_node_row(rows);
    t += &model_row(rows);
    t += &format!(
        "| flows pf fails (not counted) / excluded | {} / {} |\n",
        count(&tests, "pf-fails"),
        count(&tests, "excluded")
    );
    t
}

/// The table's single-node row: of the `--node` tests pf passes, those flow-ci matches.
fn single_node_row(rows: &[Row]) -> String {
    let nodes: Vec<&Row> = rows.iter().filter(|r| r.case.contains("\tnode:")).collect();
    let passes = nodes.iter().filter(|r| !matches!(r.status, "pf-fails" | "excluded")).count();
    let matches = nodes.iter().filter(|r| r.status == "match").count();
    format!("| single-node tests (`--node`) that match | {matches} of {passes} |\n")
}

/// The single-node jobs the oracle planned after each flow test it ran
/// (node-jobs.json), each placed after its flow's test so expected.tsv keeps
/// one order whichever flow test finished first.
fn with_node_jobs(corpus: &Corpus, jobs: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    let text = std::fs::read_to_string(corpus.ws.path().join("node-jobs.json")).unwrap();
    let planned: Json = serde_json::from_str(&text).unwrap();
    let mut nodes: Vec<Job> = planned.as_array().unwrap().iter().map(Job::from_json).collect();
    // Their inputs files, written by the oracle's flow tests, for flow-ci's copy
    // too, with the images they name (paths relative to the flow's folder).
    copy_tree(&corpus.pf_tree().join(".corpus"), &corpus.ci_tree().join(".corpus"), &[]);
    for flow in nodes.iter().map(|n| &n.flow) {
        let images = Path::new(flow).join(".promptflow/intermediate");
        if corpus.pf_tree().join(&images).is_dir() {
            copy_tree(&corpus.pf_tree().join(&images), &corpus.ci_tree().join(&images), &[]);
        }
    }
    let mut all = Vec::with_capacity(jobs.len() + nodes.len());
    for job in jobs {
        let flow = (job.kind == "test").then(|| job.flow.clone());
        all.push(job);
        if let Some(flow) = flow {
            let (mine, rest): (Vec<Job>, Vec<Job>) = nodes.into_iter().partition(|n| n.flow == flow);
            nodes = rest;
            all.extend(mine);
        }
    }
    let ordered = all.iter().filter(|j| j.node.is_some()).cloned().collect();
    (all, ordered)
}

/// Issue #21's model row: the cases (flow tests and batch runs) pf passes
/// that called the loopback model, how many match (outputs and requests),
/// and how many sent the same requests.
fn model_row(rows: &[Row]) -> String {
    let model: Vec<&Row> =
        rows.iter().filter(|r| r.reason.contains(MODEL_MARK) && !matches!(r.status, "pf-fails" | "excluded")).collect();
    let m = model.len();
    let n = model.iter().filter(|r| r.status == "match").count();
    let k = model.iter().filter(|r| r.reason.ends_with("the same bodies")).count();
    format!(
        "| model flows against a loopback model, where pf passes | {n} of {m} match; request bodies identical in {k} of {m} |\n"
    )
}

/// Both tools' pythons hash str and bytes with the same seed: flows that
/// return `list(set(...))` (eval_flow_with_composite_image's aggregation
/// nodes, a set of Images, which hash as bytes) give their items in an order
/// that otherwise changes from one process to the next.
const HASH_SEED: &str = "0";

fn expected_path() -> PathBuf {
    repo("tests/corpus/expected.tsv")
}

fn render(rows: &[Row]) -> String {
    let mut text = String::from(
        "# tests/corpus.rs: each case's result (flow\\tkind\\tstatus\\treason); FLOW_CI_CORPUS_UPDATE=1 rewrites this file\n",
    );
    for r in rows {
        text += &format!("{}\t{}\t{}\n", r.case, r.status, r.reason);
    }
    text
}

#[test]
fn corpus_of_promptflow_flows_matches_promptflow() {
    let corpus = Corpus::new();
    let jobs = corpus.plan();
    corpus.create_pf_connections();
    let root = |p: PathBuf| p.to_str().unwrap().to_owned();
    ROOTS.set((root(corpus.pf_tree()), root(corpus.ci_tree()))).unwrap();
    // The oracle runs beside flow-ci, 4 cases at once: pf's batch runs spend
    // most of their time waiting on their worker processes, not on the cores.
    // Its own prints and promptflow's logs go to a file: each case's log is in pf-results/.
    let log = std::fs::File::create(corpus.ws.path().join("oracle.log")).unwrap();
    let mut oracle = corpus
        .oracle(&["run", "flows", "jobs.json", "pf-results.json", "4"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut ours = run_all_flow_ci(&corpus, &jobs);
    assert!(oracle.wait().unwrap().success(), "pf_oracle.py run failed");
    // Single-node tests take their inputs from pf's flow tests, so they run once pf is done.
    let (jobs, nodes) = with_node_jobs(&corpus, jobs);
    let started = std::time::Instant::now();
    ours.extend(run_all_flow_ci(&corpus, &nodes));
    println!("flow-ci ran {} single-node tests in {:.0} s", nodes.len(), started.elapsed().as_secs_f64());
    let pf: Json =
        serde_json::from_str(&std::fs::read_to_string(corpus.ws.path().join("pf-results.json")).unwrap()).unwrap();
    let requests = corpus.model.requests_by_sender();
    let sent =
        |tool: &str, job: &Job| requests.get(&format!("{tool}-{}", proxy_tag(&job.id))).cloned().unwrap_or_default();
    let rows: Vec<Row> = jobs
        .iter()
        .map(|j| with_model(classify(j, pf.get(&j.id), ours.get(&j.id)), &sent("pf", j), &sent("ci", j)))
        .collect();
    println!("{}", summary(&rows));

    let actual = render(&rows);
    if std::env::var_os("FLOW_CI_CORPUS_UPDATE").is_some() && std::env::var_os("FLOW_CI_CORPUS_ONLY").is_none() {
        std::fs::write(expected_path(), &actual).unwrap();
        return;
    }
    let mut expected = std::fs::read_to_string(expected_path()).unwrap_or_default();
    if std::env::var_os("FLOW_CI_CORPUS_ONLY").is_some() {
        println!("{actual}");
        let cases: Vec<String> = rows.iter().map(|r| format!("{}\t", r.case)).collect();
        expected = expected
            .lines()
            .filter(|l| l.starts_with('#') || cases.iter().any(|c| l.starts_with(c.as_str())))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let changed: Vec<String> = diff_lines(&expected, &actual);
    assert!(
        changed.is_empty(),
        "the corpus's results changed (- expected.tsv, + now); if the change is intended, rerun with FLOW_CI_CORPUS_UPDATE=1 and commit tests/corpus/expected.tsv:\n{}",
        changed.join("\n")
    );
}

/// The lines only one side has, `-` expected and `+` actual, in case order.
fn diff_lines(expected: &str, actual: &str) -> Vec<String> {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out: Vec<String> = e.iter().filter(|l| !a.contains(l)).map(|l| format!("- {l}")).collect();
    out.extend(a.iter().filter(|l| !e.contains(l)).map(|l| format!("+ {l}")));
    out.sort_by(|x, y| x[2..].cmp(&y[2..]));
    out
}
