//! `flow-ci check`, the PR job: config → changed flows → plan → batch and
//! evaluation runs → baseline → gates → one [`Report`].

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::azureml::run::CloudRun;
use crate::config::{self, Backend, Baseline, CONFIG_FILE, Config, Gate};
use crate::diag::{Diagnostic, Diagnostics};
use crate::exec::batch::Progress;
use crate::exec::job::{Job, JobError, JobOptions};
use crate::flow::run_file::{self, RunFile};
use crate::flow::run_name;
use crate::gate::{self, Evidence, Verdict};
use crate::runs::{RunStatus, Store};

/// Options of one `check`.
pub struct CheckRequest {
    pub config: Option<PathBuf>,
    pub base: Option<String>,
    pub head: Option<String>,
    /// Check every configured flow, not only changed ones.
    pub all: bool,
    pub runs_dir: PathBuf,
    pub python: PathBuf,
    pub workers: usize,
    pub line_timeout: Duration,
    /// Flows run at once.
    pub parallel: usize,
    /// Why this build has no secrets (a fork's pull request): a flow that
    /// needs a model key it lacks is reported as not run instead of failing.
    pub without_secrets: Option<String>,
    /// `--backend`, over the config's `backend:`.
    pub backend: Option<Backend>,
}

/// Progress of runs nobody watches (the baseline's, beside the head's bar).
struct Silent;

impl Progress for Silent {
    fn line_done(&self, _: usize, _: usize, _: usize) {}
    fn finish(&self) {}
}

/// One flow to check and why.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedFlow {
    /// The flow folder as written relative to the config.
    pub path: String,
    #[serde(skip)]
    pub dir: PathBuf,
    pub reasons: Vec<String>,
    pub run_file: Option<PathBuf>,
    pub evaluations: Vec<PathBuf>,
    /// How each evaluation was found, when by convention (else empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evaluations_found: Vec<String>,
    #[serde(skip)]
    pub gates: Vec<Gate>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub config: Option<PathBuf>,
    pub baseline: String,
    pub backend: String,
    /// The config's `azureml:` keys (the workspace).
    #[serde(skip)]
    pub azureml: Vec<(String, String)>,
    pub flows: Vec<PlannedFlow>,
    /// Flows found but not selected (no relevant change).
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the configuration or flows have errors")]
    Invalid(Vec<Diagnostic>),
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error("{0}")]
    Baseline(String),
}

/// Reads the config (or discovers flows by convention), validates every file
/// the check will use, and selects the flows to run.
pub fn plan(req: &CheckRequest) -> Result<Plan, CheckError> {
    let config_path =
        req.config.clone().or_else(|| Path::new(CONFIG_FILE).is_file().then(|| PathBuf::from(CONFIG_FILE)));
    let target = config_path.clone().unwrap_or_else(|| PathBuf::from("."));
    let outcome = crate::validate::validate(std::slice::from_ref(&target));
    if outcome.has_errors() {
        return Err(CheckError::Invalid(outcome.diagnostics.into_iter().filter(Diagnostic::is_error).collect()));
    }
    let mut diags = Diagnostics::default();
    let config = config_path.as_deref().and_then(|p| config::load(p, &mut diags));
    let mut flows = match &config {
        Some(c) => configured_flows(c),
        None => conventional_flows(),
    };
    let mut skipped = Vec::new();
    if let (Some(base), false) = (&req.base, req.all) {
        let detection = crate::detect::detect(&crate::detect::Request {
            dir: PathBuf::from("."),
            base: base.clone(),
            head: req.head.clone(),
            config: config_path.clone(),
        })?;
        let root = crate::git::Git::open(Path::new("."))?.root;
        let changed: Vec<(PathBuf, Vec<String>)> = detection
            .flows
            .iter()
            .map(|f| (canonical(&root.join(&f.path)), f.reasons.iter().map(describe_reason).collect()))
            .collect();
        flows.retain_mut(|flow| match changed.iter().find(|(dir, _)| *dir == canonical(&flow.dir)) {
            Some((_, reasons)) => {
                flow.reasons = reasons.clone();
                true
            }
            None => {
                skipped.push(flow.path.clone());
                false
            }
        });
    }
    let baseline = match config.as_ref().and_then(|c| c.baseline.as_ref()).map(|b| b.value.clone()) {
        Some(Baseline::BaseBranch) | None if req.base.is_some() => "base-branch".to_string(),
        Some(Baseline::BaseBranch) | None => "none (base-branch needs --base)".to_string(),
        Some(Baseline::File(p)) => format!("file:{p}"),
        Some(Baseline::None) => "none".to_string(),
    };
    let backend = Config::backend_or(config.as_ref(), req.backend).as_str().to_string();
    let azureml = config.as_ref().map(Config::azureml_keys).unwrap_or_default();
    Ok(Plan { config: config_path, baseline, backend, azureml, flows, skipped })
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

fn describe_reason(r: &crate::detect::Reason) -> String {
    use crate::detect::Reason;
    match r {
        Reason::Added => "new flow".into(),
        Reason::Renamed { from } => format!("moved from {from}"),
        Reason::Files { .. } => "files changed".into(),
        Reason::Include { .. } => "include changed".into(),
        Reason::SharedSource { .. } => "shared code changed".into(),
        Reason::RunFile { .. } => "run file or data changed".into(),
        Reason::Evaluation { flow } => format!("evaluation flow {flow} changed"),
        Reason::Config { .. } => "config changed".into(),
    }
}

fn configured_flows(config: &Config) -> Vec<PlannedFlow> {
    let mut flows = Vec::new();
    for entry in &config.flows {
        let dirs = crate::validate::expand_flow_path(config.dir(), &entry.path.value).unwrap_or_default();
        for dir in dirs {
            let rel = dir.strip_prefix(config.dir()).unwrap_or(&dir).to_string_lossy().replace('\\', "/");
            flows.push(PlannedFlow {
                path: rel,
                reasons: vec!["configured".into()],
                run_file: entry.run.as_ref().map(|r| config.resolve(&r.value)),
                evaluations: entry.evaluations.iter().map(|e| config.resolve(&e.value)).collect(),
                evaluations_found: vec![],
                gates: entry.gates.clone(),
                dir,
            });
        }
    }
    flows
}

/// Without `.flow-ci.yaml`: every flow folder below here whose `run.yml` is
/// a batch run, with the evaluation run files that evaluate it: those whose
/// `run:` names the batch run (its `name:`), or that read the same data.
fn conventional_flows() -> Vec<PlannedFlow> {
    let mut diags = Diagnostics::default();
    let runs: Vec<RunFile> = crate::validate::run_files(Path::new("."))
        .iter()
        .filter_map(|p| run_file::load(&PathBuf::from(display(p)), &mut diags))
        .collect();
    // Each evaluation with its data file resolved once, not once per flow.
    let evaluations: Vec<(&RunFile, Option<PathBuf>)> =
        runs.iter().filter(|r| r.is_evaluation()).map(|r| (r, r.local_data().map(|d| canonical(&d)))).collect();
    let mut dirs = crate::validate::expand_flow_path(Path::new("."), "**").unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| PathBuf::from(display(&dir)))
        .filter_map(|dir| {
            let run_path = ["run.yml", "run.yaml"].iter().map(|n| dir.join(n)).find(|p| p.is_file())?;
            // Both paths are spelled by `display`, so they compare as they are.
            let batch = runs.iter().find(|r| r.file == run_path)?;
            if batch.is_evaluation() {
                return None; // an evaluation flow's own run file, found below as an evaluation
            }
            let batch_data = batch.local_data().map(|d| canonical(&d));
            let (found, why): (Vec<PathBuf>, Vec<String>) = evaluations
                .iter()
                .filter_map(|(eval, data)| {
                    Some((
                        eval.file.clone(),
                        evaluates(eval, data.as_deref(), batch, batch_data.as_deref())?.to_string(),
                    ))
                })
                .unzip();
            Some(PlannedFlow {
                path: display(&dir),
                reasons: vec!["found by convention (flow folder with a batch run.yml)".into()],
                run_file: Some(run_path),
                evaluations: found,
                evaluations_found: why,
                gates: vec![],
                dir,
            })
        })
        .collect()
}

/// Why `eval` evaluates `batch`, if it does. Found evaluations are listed
/// in the plan with the reason, so a wrong guess is visible before it runs.
/// `eval_data` / `batch_data` are their canonical data files.
fn evaluates(
    eval: &RunFile,
    eval_data: Option<&Path>,
    batch: &RunFile,
    batch_data: Option<&Path>,
) -> Option<&'static str> {
    let wanted = eval.run.as_ref().map(|r| r.value.as_str());
    if batch.name.as_ref().is_some_and(|n| Some(n.value.as_str()) == wanted) {
        return Some("its `run:` names this batch run");
    }
    (eval_data.is_some() && eval_data == batch_data).then_some("it reads the same data")
}

/// A path below the current directory as users write it (`flows/x`).
fn display(path: &Path) -> String {
    path.strip_prefix(".").unwrap_or(path).to_string_lossy().replace('\\', "/")
}

/// What is known about a flow at the base: metrics, and (for base-branch
/// baselines) the batch run's outputs, to show lines whose output changed.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct BaseData {
    pub metrics: Map<String, Json>,
    #[serde(default)]
    pub outputs: Vec<Map<String, Json>>,
    #[serde(default)]
    pub scores: Scores,
}

/// Numeric and boolean per-line outputs of the evaluations: output name →
/// line number → score. `significance` pairs head and base lines from these.
pub type Scores = std::collections::BTreeMap<String, std::collections::BTreeMap<u64, f64>>;

/// Baselines by flow path.
type Baselines = std::collections::HashMap<String, BaseData>;

/// A line whose output differs from the baseline's.
#[derive(Clone, Debug, Serialize)]
pub struct ChangedLine {
    pub line_number: u64,
    pub inputs: Map<String, Json>,
    pub base: Map<String, Json>,
    pub head: Map<String, Json>,
}

/// At most this many changed lines are sampled per flow.
const CHANGED_LINES_SHOWN: usize = 5;

/// The result of one flow's runs and gates.
#[derive(Clone, Debug, Serialize)]
pub struct FlowReport {
    pub path: String,
    pub reasons: Vec<String>,
    pub batch_run: Option<String>,
    pub evaluation_runs: Vec<String>,
    pub lines: (usize, usize),
    pub metrics: Map<String, Json>,
    pub baseline: Option<Map<String, Json>>,
    pub verdict: Verdict,
    /// Runs that could not run, with why.
    pub errors: Vec<String>,
    /// Why the flow was not run (it needs secrets this build does not have).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
    /// Lines whose outputs differ from the base run's (a sample).
    pub changed_lines: Vec<ChangedLine>,
    /// Unified diffs of the flow's prompt templates against the base.
    pub prompt_diffs: Vec<PromptDiff>,
    #[serde(skip)]
    pub scores: Scores,
    /// How many of `errors` are a missing model key.
    #[serde(skip)]
    pub missing_keys: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct PromptDiff {
    pub file: String,
    pub diff: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub passed: bool,
    pub baseline: String,
    pub flows: Vec<FlowReport>,
    pub skipped: Vec<String>,
}

/// Runs the plan: each flow's batch run, its evaluations bound to it, the
/// baseline, and the gates.
pub fn execute(
    plan: &Plan,
    req: &CheckRequest,
    cancel: &AtomicBool,
    progress: &(dyn Fn(&str, usize) -> Box<dyn Progress> + Sync),
    llm: &crate::llm::LlmSetup,
    cloud: Option<CloudRun<'_>>,
) -> Result<Report, CheckError> {
    if plan.backend == "azureml"
        && cloud.is_none()
        && let Some(why) = &req.without_secrets
    {
        // A fork's build has no Azure credentials: nothing can run, and
        // that is not the contributor's failure.
        let not_run = |f: &PlannedFlow| FlowReport {
            not_run: Some(format!("it runs on Azure ML and {why}")),
            ..FlowReport::new(f)
        };
        let flows = plan.flows.iter().map(not_run).collect();
        return Ok(Report { passed: true, baseline: plan.baseline.clone(), flows, skipped: plan.skipped.clone() });
    }
    let store = Store::new(req.runs_dir.clone());
    let opts = JobOptions {
        python: req.python.clone(),
        workers: req.workers,
        line_timeout: req.line_timeout,
        force: true,
        cancel,
        progress,
        llm,
        cloud,
    };
    // The baseline (often runs at the merge base) and the head runs are
    // independent: do them at the same time.
    let quiet = |_: &str, _: usize| -> Box<dyn Progress> { Box::new(Silent) };
    let base_opts = JobOptions { progress: &quiet, ..opts.clone() };
    let (baseline, head_reports) = std::thread::scope(|scope| {
        let baseline = scope.spawn(|| match plan.baseline.as_str() {
            "base-branch" => base_branch_metrics(plan, req, &base_opts),
            _ => load_baseline(plan),
        });
        let heads = in_parallel(&plan.flows, req.parallel, |flow| {
            let report = run_flow(flow, &store, &opts);
            not_run_without_secrets(report, req.without_secrets.as_deref())
        });
        (baseline.join().unwrap_or_else(|_| Err(CheckError::Baseline("the baseline thread panicked".into()))), heads)
    });
    let baseline = baseline?;
    let mut flows = Vec::new();
    for (flow, report) in plan.flows.iter().zip(head_reports) {
        let mut report = judge(flow, report, &store, baseline.as_ref().and_then(|b| b.get(&flow.path)));
        if let Some(base) = &req.base {
            report.prompt_diffs = prompt_diffs(flow, base, req.head.as_deref()).unwrap_or_default();
        }
        flows.push(report);
    }
    let passed = flows.iter().all(|f| f.verdict.passed() && f.errors.is_empty());
    Ok(Report { passed, baseline: plan.baseline.clone(), flows, skipped: plan.skipped.clone() })
}

/// Applies `f` to every item, at most `limit` at a time, keeping the order.
/// Flows are independent (separate runs, workers and names), so a check
/// takes about as long as its slowest flow rather than the sum.
fn in_parallel<T: Sync, R: Send>(items: &[T], limit: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results = std::sync::Mutex::new((0..items.len()).map(|_| None).collect::<Vec<Option<R>>>());
    std::thread::scope(|scope| {
        for _ in 0..limit.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect()
}

impl FlowReport {
    /// A flow before anything ran.
    fn new(flow: &PlannedFlow) -> FlowReport {
        FlowReport {
            path: flow.path.clone(),
            reasons: flow.reasons.clone(),
            batch_run: None,
            evaluation_runs: vec![],
            lines: (0, 0),
            metrics: Map::new(),
            baseline: None,
            verdict: Verdict::default(),
            errors: vec![],
            not_run: None,
            changed_lines: vec![],
            prompt_diffs: vec![],
            scores: Scores::new(),
            missing_keys: 0,
        }
    }
}

/// Runs a flow's batch run and evaluations; gates are judged later, once
/// the baseline is known.
fn run_flow(flow: &PlannedFlow, store: &Store, opts: &JobOptions<'_>) -> FlowReport {
    let slug: String = flow.path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let mut report = FlowReport::new(flow);
    if let Some(run_path) = &flow.run_file {
        // Room for `-eval-N` after the batch name.
        let batch_name = run_name::sanitize(&format!("check-{slug}"), run_name::MAX_LEN - 16);
        match run_job(run_path, &batch_name, None, store, opts) {
            Ok(record) => {
                report.lines = (record.lines.failed, record.lines.total);
                report.batch_run = Some(batch_name.clone());
                for (i, eval) in flow.evaluations.iter().enumerate() {
                    let eval_name = format!("{batch_name}-eval-{i}");
                    match run_job(eval, &eval_name, Some(&batch_name), store, opts) {
                        Ok(_) => {
                            report.metrics.extend(store.metrics(&eval_name).unwrap_or_default());
                            add_scores(&mut report.scores, &store.outputs(&eval_name).unwrap_or_default());
                            report.evaluation_runs.push(eval_name);
                        }
                        Err(e) => {
                            report.missing_keys += usize::from(is_missing_key(&e));
                            report.errors.push(format!("evaluation {}: {e}", eval.display()));
                        }
                    }
                }
            }
            Err(e) => {
                report.missing_keys += usize::from(is_missing_key(&e));
                report.errors.push(format!("batch run {}: {e}", run_path.display()));
            }
        }
    }
    report
}

/// On a build without secrets, a flow whose runs stopped for a missing model
/// key is "not run" (and says why) rather than failed: a fork's PR cannot
/// fix that, and the flows that need no secrets were still checked.
fn not_run_without_secrets(mut report: FlowReport, without_secrets: Option<&str>) -> FlowReport {
    let Some(why) = without_secrets else { return report };
    if !report.errors.is_empty() && report.errors.len() == report.missing_keys {
        report.not_run = Some(format!("it calls a model and {why}"));
        report.errors.clear();
    }
    report
}

/// Whether a run stopped because a model key is missing.
fn is_missing_key(e: &JobError) -> bool {
    use crate::exec::bind::BindError;
    use crate::llm::client::CallError;
    matches!(e, JobError::Connection(BindError::NoKey { .. }) | JobError::Llm(CallError::MissingKey { .. }))
}

/// Keeps the numeric and boolean columns of an evaluation's `output.jsonl`.
fn add_scores(scores: &mut Scores, outputs: &[Map<String, Json>]) {
    for row in outputs {
        let Some(line) = row.get("line_number").and_then(Json::as_u64) else { continue };
        for (name, value) in row.iter().filter(|(k, _)| *k != "line_number") {
            let score = match value {
                Json::Number(n) => n.as_f64(),
                Json::Bool(b) => Some(f64::from(u8::from(*b))),
                _ => None,
            };
            if let Some(score) = score {
                scores.entry(name.clone()).or_default().insert(line, score);
            }
        }
    }
}

/// Per-line head and base scores for each gate that asks for significance,
/// paired by line number. The scores come from the `per_line` output, else
/// the output named like the metric, else the only numeric output.
fn paired_scores(gates: &[Gate], head: &Scores, base: &Scores) -> Vec<(String, Vec<f64>, Vec<f64>)> {
    let mut paired = Vec::new();
    for gate in gates.iter().filter(|g| g.significance.is_some()) {
        let metric = &gate.metric.value;
        let column = match &gate.per_line {
            Some(c) => Some(c.value.as_str()),
            None if head.contains_key(metric) => Some(metric.as_str()),
            None if head.len() == 1 => head.keys().next().map(String::as_str),
            None => None,
        };
        let (Some(h), Some(b)) = (column.and_then(|c| head.get(c)), column.and_then(|c| base.get(c))) else {
            continue;
        };
        let (hs, bs): (Vec<f64>, Vec<f64>) = h.iter().filter_map(|(line, hv)| b.get(line).map(|bv| (*hv, *bv))).unzip();
        if !hs.is_empty() {
            paired.push((metric.clone(), hs, bs));
        }
    }
    paired
}

/// Applies the gates against `base`, and samples lines whose output changed.
fn judge(flow: &PlannedFlow, mut report: FlowReport, store: &Store, base: Option<&BaseData>) -> FlowReport {
    if report.not_run.is_some() {
        return report;
    }
    report.baseline = base.map(|b| b.metrics.clone());
    let paired = base.map(|b| paired_scores(&flow.gates, &report.scores, &b.scores)).unwrap_or_default();
    let evidence = Evidence {
        head_metrics: report.batch_run.is_some().then_some(&report.metrics),
        base_metrics: report.baseline.as_ref(),
        head_lines: report.lines,
        paired: &paired,
    };
    report.verdict = gate::evaluate(&flow.gates, &evidence);
    if let (Some(base), Some(batch)) = (base, &report.batch_run) {
        report.changed_lines = changed_lines(store, batch, &base.outputs);
    }
    report
}

/// The first lines whose outputs differ between the base run and this one.
fn changed_lines(store: &Store, batch: &str, base_outputs: &[Map<String, Json>]) -> Vec<ChangedLine> {
    let head_outputs = store.outputs(batch).unwrap_or_default();
    let details = store.details(batch).unwrap_or_default();
    let number = |row: &Map<String, Json>| row.get("line_number").and_then(Json::as_u64);
    let mut changed = Vec::new();
    for head in &head_outputs {
        let Some(n) = number(head) else { continue };
        let Some(base) = base_outputs.iter().find(|b| number(b) == Some(n)) else { continue };
        if base != head {
            let inputs =
                details.iter().find(|d| d.line_number as u64 == n).map(|d| d.inputs.clone()).unwrap_or_default();
            let strip = |row: &Map<String, Json>| {
                row.iter().filter(|(k, _)| *k != "line_number").map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            changed.push(ChangedLine { line_number: n, inputs, base: strip(base), head: strip(head) });
            if changed.len() == CHANGED_LINES_SHOWN {
                break;
            }
        }
    }
    changed
}

/// Unified diffs of the flow's Jinja templates between the merge base and now.
fn prompt_diffs(flow: &PlannedFlow, base: &str, head: Option<&str>) -> Result<Vec<PromptDiff>, crate::git::GitError> {
    let git = crate::git::Git::open(&flow.dir)?;
    let merge_base = git.merge_base(&git.resolve(base)?, &git.resolve(head.unwrap_or("HEAD"))?)?;
    let root = canonical(&git.root);
    let Ok(rel) = canonical(&flow.dir).strip_prefix(&root).map(|r| r.to_string_lossy().replace('\\', "/")) else {
        return Ok(vec![]);
    };
    let listing = String::from_utf8_lossy(&git.tree_listing(&merge_base, std::slice::from_ref(&rel))?).into_owned();
    let base_files: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| {
            let (meta, path) = l.split_once('\t')?;
            Some((path.to_string(), meta.split(' ').nth(2)?.to_string()))
        })
        .filter(|(p, _)| is_prompt(p))
        .collect();
    let ids: Vec<&str> = base_files.iter().map(|(_, id)| id.as_str()).collect();
    let base_texts: Vec<String> = git
        .read_objects(&ids)?
        .into_iter()
        .map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default())
        .collect();
    let mut names: Vec<String> = base_files.iter().map(|(p, _)| p.clone()).collect();
    for entry in std::fs::read_dir(&flow.dir).into_iter().flatten().flatten() {
        let path = format!("{rel}/{}", entry.file_name().to_string_lossy());
        if is_prompt(&path) && !names.contains(&path) {
            names.push(path);
        }
    }
    names.sort();
    let mut diffs = Vec::new();
    for name in names {
        let before = base_files.iter().position(|(p, _)| *p == name).map(|i| base_texts[i].clone()).unwrap_or_default();
        let after = std::fs::read_to_string(root.join(&name)).unwrap_or_default();
        if before != after {
            let diff = similar::TextDiff::from_lines(&before, &after)
                .unified_diff()
                .context_radius(3)
                .header("base", "head")
                .to_string();
            diffs.push(PromptDiff { file: name, diff });
        }
    }
    Ok(diffs)
}

fn is_prompt(path: &str) -> bool {
    path.ends_with(".jinja2") || path.ends_with(".jinja") || path.ends_with(".prompty")
}

/// Runs one run file under `name`; an evaluation's `run:` is bound to `base`.
fn run_job(
    path: &Path,
    name: &str,
    base: Option<&str>,
    store: &Store,
    opts: &JobOptions<'_>,
) -> Result<crate::runs::RunRecord, JobError> {
    let mut diags = Diagnostics::default();
    let file: Option<RunFile> = run_file::load(path, &mut diags);
    let Some(file) = file else {
        return Err(JobError::Prepare(crate::exec::prepare::PrepareError::Invalid(diags.into_sorted())));
    };
    let job = Job {
        name: name.to_string(),
        flow: file.flow_dir().unwrap_or_else(|| PathBuf::from(".")),
        data: file.local_data(),
        base: base.map(str::to_string).or_else(|| file.run.as_ref().map(|r| r.value.clone())),
        mapping: file.column_mapping.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect(),
        variant: file.variant.as_ref().map(|v| v.value.clone()),
        run_file: Some(file),
    };
    let record = crate::backend::run(&job, store, opts)?;
    if record.status == RunStatus::Canceled {
        return Err(JobError::Mapping(crate::exec::batch::MappingError::Empty));
    }
    Ok(record)
}

/// `base-branch`: the same flows, run files and evaluations at the merge
/// base of `--base` and the head, checked out in a temporary git worktree.
/// Without `--base` there is nothing to compare with.
fn base_branch_metrics(
    plan: &Plan,
    req: &CheckRequest,
    opts: &JobOptions<'_>,
) -> Result<Option<Baselines>, CheckError> {
    let Some(base) = &req.base else { return Ok(None) };
    let git = crate::git::Git::open(Path::new("."))?;
    let head = git.resolve(req.head.as_deref().unwrap_or("HEAD"))?;
    let merge_base = git.merge_base(&git.resolve(base)?, &head)?;
    // Cloud runs of the baseline are for the merge base: a run a build of
    // that commit already made has the same id and is reused, not re-run.
    let provenance = crate::azureml::Provenance { commit: Some(merge_base.clone()), branch: Some(base.clone()) };
    let opts = &JobOptions { cloud: opts.cloud.as_ref().map(|c| CloudRun { provenance, ..c.clone() }), ..opts.clone() };
    let root = canonical(&git.root);
    let cache = BaselineCache { dir: req.runs_dir.parent().unwrap_or(Path::new(".")).join("cache/baseline") };
    let mut metrics = Baselines::new();
    let mut missing = Vec::new();
    for flow in &plan.flows {
        let key = baseline_key(&git, &root, &merge_base, flow, &plan.backend)?;
        match cache.get(&key) {
            Some(m) => {
                tracing::info!("baseline of {} from cache ({key})", flow.path);
                metrics.insert(flow.path.clone(), m);
            }
            None => missing.push((flow, key)),
        }
    }
    if missing.is_empty() {
        return Ok(Some(metrics));
    }
    let scratch =
        tempfile::Builder::new().prefix("flow-ci-base-").tempdir().map_err(|e| CheckError::Baseline(e.to_string()))?;
    let tree = scratch.path().join("tree");
    git.add_worktree(&tree, &merge_base)?;
    let store = Store::new(scratch.path().join("runs"));
    let in_base = |p: &Path| canonical(p).strip_prefix(&root).ok().map(|rel| tree.join(rel));
    let computed = in_parallel(&missing, req.parallel, |(flow, key)| {
        let (Some(run), Some(dir)) = (flow.run_file.as_deref().and_then(in_base), in_base(&flow.dir)) else {
            return None;
        };
        if !dir.join(crate::flow::FLOW_FILE).is_file() || !run.is_file() {
            return None; // a flow new in this change has no baseline
        }
        let base_flow = PlannedFlow {
            run_file: Some(run),
            evaluations: flow.evaluations.iter().filter_map(|e| in_base(e)).filter(|e| e.is_file()).collect(),
            dir,
            ..(*flow).clone()
        };
        tracing::info!("baseline of {}: running it at {merge_base}", flow.path);
        let report = run_flow(&base_flow, &store, opts);
        if !report.errors.is_empty() {
            return None;
        }
        let outputs = report.batch_run.as_deref().and_then(|b| store.outputs(b).ok()).unwrap_or_default();
        let data = BaseData { metrics: report.metrics, outputs, scores: report.scores };
        cache.put(key, &data);
        Some((flow.path.clone(), data))
    });
    metrics.extend(computed.into_iter().flatten());
    let _ = git.remove_worktree(&tree);
    Ok(Some(metrics))
}

/// Base metrics by content hash, under `.flow-ci/cache/baseline/`.
struct BaselineCache {
    dir: PathBuf,
}

impl BaselineCache {
    fn get(&self, key: &str) -> Option<BaseData> {
        let text = std::fs::read_to_string(self.dir.join(format!("{key}.json"))).ok()?;
        // A corrupt entry is ignored and rewritten after the base runs again.
        serde_json::from_str(&text).ok()
    }

    fn put(&self, key: &str, data: &BaseData) {
        let text = serde_json::to_string(data).unwrap_or_default();
        let write = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(self.dir.join(format!("{key}.json")), text));
        if let Err(e) = write {
            tracing::warn!("cannot cache the baseline in {}: {e}", self.dir.display());
        }
    }
}

/// A content hash of everything the base runs read: the flow folder, its run
/// and evaluation files, the flows and data those name, and the flow's
/// includes, as they are at the merge base (git blob ids), plus the flow-ci
/// version. An unchanged base gets the same key and is never run again.
fn baseline_key(
    git: &crate::git::Git,
    root: &Path,
    merge_base: &str,
    flow: &PlannedFlow,
    backend: &str,
) -> Result<String, CheckError> {
    use sha2::Digest;
    let rel = |p: &Path| canonical(p).strip_prefix(root).ok().map(|r| r.to_string_lossy().replace('\\', "/"));
    let mut paths: Vec<String> = Vec::new();
    paths.extend(rel(&flow.dir));
    let mut diags = Diagnostics::default();
    for file in flow.run_file.iter().chain(&flow.evaluations) {
        paths.extend(rel(file));
        if let Some(run) = run_file::load(file, &mut diags) {
            paths.extend(run.flow_dir().as_deref().and_then(rel));
            paths.extend(run.local_data().as_deref().and_then(rel));
        }
    }
    if let Some(f) = crate::flow::dag::load(&flow.dir, &mut diags) {
        paths.extend(f.additional_includes.iter().filter_map(|i| rel(&flow.dir.join(&i.value))));
    }
    paths.sort();
    paths.dedup();
    let listing = git.tree_listing(merge_base, &paths)?;
    let mut hasher = sha2::Sha256::new();
    hasher.update(concat!("flow-ci baseline v2 ", env!("CARGO_PKG_VERSION")).as_bytes());
    hasher.update(&listing);
    hasher.update(backend.as_bytes());
    Ok(base16ct::lower::encode_string(&hasher.finalize()))
}

/// `file:PATH` baselines: `{"flows": {"<flow path>": {"metric": value}}}`.
fn load_baseline(plan: &Plan) -> Result<Option<Baselines>, CheckError> {
    let Some(path) = plan.baseline.strip_prefix("file:") else { return Ok(None) };
    let base_dir = plan.config.as_deref().and_then(Path::parent).unwrap_or(Path::new("."));
    let full = base_dir.join(path);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| CheckError::Baseline(format!("cannot read baseline {}: {e}", full.display())))?;
    let doc: Json = serde_json::from_str(&text)
        .map_err(|e| CheckError::Baseline(format!("{} is not a flow-ci baseline file: {e}", full.display())))?;
    let flows = doc.get("flows").and_then(Json::as_object).cloned().unwrap_or_default();
    Ok(Some(
        flows
            .into_iter()
            .filter_map(|(path, m)| Some((path, BaseData { metrics: m.as_object()?.clone(), ..BaseData::default() })))
            .collect(),
    ))
}

/// The baseline file `--write-baseline` produces from a report.
pub fn baseline_document(report: &Report) -> Json {
    let flows: Map<String, Json> =
        report.flows.iter().map(|f| (f.path.clone(), Json::Object(f.metrics.clone()))).collect();
    serde_json::json!({ "flows": flows })
}
