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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::{Map, Value as Json};

mod support;
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

/// The scratch workspace: `flows/` is pf's copy of the corpus, `ci/` flow-ci's.
struct Corpus {
    ws: PfWorkspace,
}

impl Corpus {
    fn new() -> Corpus {
        let ws = PfWorkspace::new(VENDOR);
        copy_tree(&repo(VENDOR), &ws.path().join("ci"), &[]);
        Corpus { ws }
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
        self.ws.python_command(&all)
    }

    /// The jobs, planned once by the oracle; flow-ci reads the same inputs and run files.
    fn plan(&self) -> Vec<Job> {
        let manifest = repo("tests/corpus/manifest.yaml");
        let out = self.oracle(&["plan", "flows", manifest.to_str().unwrap(), "jobs.json"]).output().unwrap();
        assert!(out.status.success(), "pf_oracle.py plan: {}", String::from_utf8_lossy(&out.stderr));
        copy_tree(&self.pf_tree().join(".corpus"), &self.ci_tree().join(".corpus"), &[]);
        let jobs: Json =
            serde_json::from_str(&std::fs::read_to_string(self.ws.path().join("jobs.json")).unwrap()).unwrap();
        jobs.as_array().unwrap().iter().map(Job::from_json).collect()
    }

    fn flow_ci(&self, args: &[&str]) -> Output {
        let mut cmd = Command::cargo_bin("flow-ci").unwrap();
        cmd.current_dir(self.ci_tree())
            .args(args)
            .env("HOME", self.ws.path().join("ci-home"))
            .env("FLOW_CI_RUNS_DIR", self.ws.path().join("ci-runs"))
            .env("FLOW_CI_CACHE_DIR", self.ws.path().join("ci-cache"))
            // The workers get pf's interpreter: the same packages the flows import under pf.
            .env("FLOW_CI_PYTHON", pf().parent().unwrap().join("python"))
            .env_remove("VIRTUAL_ENV")
            // A guard against a hung run, far past any flow's time; not a timing assertion.
            .timeout(Duration::from_secs(600));
        cmd.output().unwrap()
    }

    fn run_flow_ci(&self, job: &Job) -> Side {
        match job.kind.as_str() {
            "batch" => {
                let name = job.name.as_deref().unwrap();
                let out = self.flow_ci(&["run", "create", "--file", job.run_file.as_deref().unwrap(), "--name", name]);
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
                let out = self.flow_ci(&args);
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
    t += "| model flows against a loopback model, where pf passes | not measured: excluded, \"needs a model\" |\n";
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
    let rows: Vec<Row> = jobs.iter().map(|j| classify(j, pf.get(&j.id), ours.get(&j.id))).collect();
    println!("{}", summary(&rows));

    let actual = render(&rows);
    if std::env::var_os("FLOW_CI_CORPUS_UPDATE").is_some() {
        std::fs::write(expected_path(), &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(expected_path()).unwrap_or_default();
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
