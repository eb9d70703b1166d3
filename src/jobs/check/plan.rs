//! The plan of a check: which flows, with which run files, evaluations
//! and gates, against which baseline, on which backend.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{CheckError, CheckRequest, canonical};
use model::config::{self, Backend, Baseline, Config, Gate, Loaded, Parity};
use model::diag::{Diagnostic, Diagnostics};
use model::flow::port::Port;
use model::flow::run_file::{self, RunFile};

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
    /// The flow's Agent Framework port, run on the flow's data beside it.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "port_file")]
    pub port: Option<Port>,
    #[serde(skip)]
    pub parity: Option<Parity>,
}

fn port_file<S: serde::Serializer>(port: &Option<Port>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&port.as_ref().map(|p| p.file.display().to_string()))
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub config: Option<PathBuf>,
    #[serde(serialize_with = "as_text")]
    pub baseline: BaselinePlan,
    #[serde(serialize_with = "backend_name")]
    pub backend: Backend,
    /// The config's `azureml:` keys (the workspace).
    #[serde(skip)]
    pub azureml: Vec<(String, String)>,
    pub flows: Vec<PlannedFlow>,
    /// Flows found but not selected (no relevant change).
    pub skipped: Vec<String>,
}

/// What the head's metrics are compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaselinePlan {
    /// The same runs at the merge base with `--base`.
    BaseBranch,
    /// `base-branch` (or no `baseline:`) without `--base`: nothing to compare with.
    NoBase,
    /// `file:PATH`, relative to the config.
    File(String),
    None,
}

impl std::fmt::Display for BaselinePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaselinePlan::BaseBranch => f.write_str("base-branch"),
            BaselinePlan::NoBase => f.write_str("none (base-branch needs --base)"),
            BaselinePlan::File(path) => write!(f, "file:{path}"),
            BaselinePlan::None => f.write_str("none"),
        }
    }
}

fn as_text<S: serde::Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn backend_name<S: serde::Serializer>(backend: &Backend, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(backend.as_str())
}

/// Reads `--config` (or ./.flow-ci.yaml when there is one) once; a config
/// that cannot be read or parsed is an error with its positions.
pub fn load_config(explicit: Option<&Path>) -> Result<Option<Loaded>, CheckError> {
    config::read(explicit)
        .map_err(|diags| CheckError::Invalid(diags.into_iter().filter(Diagnostic::is_error).collect()))
}

/// Validates every file the check will use (the config's, or by
/// convention everything below here), and selects the flows to run.
pub fn plan(req: &CheckRequest, loaded: Option<&Loaded>) -> Result<Plan, CheckError> {
    let outcome = match loaded {
        Some(l) => crate::jobs::validate::validate_loaded(&l.config, &l.diagnostics),
        None => crate::jobs::validate::validate(&[PathBuf::from(".")]),
    };
    if outcome.has_errors() {
        return Err(CheckError::Invalid(outcome.diagnostics.into_iter().filter(Diagnostic::is_error).collect()));
    }
    let config = loaded.map(|l| &l.config);
    let mut flows = match config {
        Some(c) => configured_flows(c),
        None => conventional_flows(),
    };
    if flows.is_empty() {
        return Err(CheckError::NothingToCheck(nothing_found(loaded)));
    }
    for flow in &mut flows {
        add_default_failed_lines(&mut flow.gates);
    }
    let mut skipped = Vec::new();
    if let (Some(base), false) = (&req.base, req.all) {
        let request = crate::detect::Request {
            dir: PathBuf::from("."),
            base: base.clone(),
            head: req.head.clone(),
            config: loaded.map(|l| l.path.clone()),
        };
        let detection = crate::detect::detect_with(&request, config)?;
        let root = crate::detect::git::Git::open(Path::new("."))?.root;
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
    let baseline = match config.and_then(|c| c.baseline.as_ref()).map(|b| b.value.clone()) {
        Some(Baseline::BaseBranch) | None if req.base.is_some() => BaselinePlan::BaseBranch,
        Some(Baseline::BaseBranch) | None => BaselinePlan::NoBase,
        Some(Baseline::File(p)) => BaselinePlan::File(p),
        Some(Baseline::None) => BaselinePlan::None,
    };
    let backend = Config::backend_or(config, req.backend);
    let azureml = config.map(Config::azureml_keys).unwrap_or_default();
    let config = loaded.map(|l| l.path.clone());
    Ok(Plan { config, baseline, backend, azureml, flows, skipped })
}

/// The llm nodes of the planned flows and their evaluations whose
/// connection (after the run file's `connections:` overrides) is defined
/// nowhere: one diagnostic each, at the node's `connection:` in flow.dag.yaml.
pub fn undefined_connections(plan: &Plan, connections: &exec::llm::Connections) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    let run_files = plan.flows.iter().flat_map(|f| f.run_file.iter().chain(&f.evaluations));
    let mut seen = std::collections::HashSet::new();
    for path in run_files.filter(|p| seen.insert((*p).clone())) {
        let mut diags = Diagnostics::default();
        let Some(file) = run_file::load(path, &mut diags) else { continue };
        let Some(dir) = file.flow_dir() else { continue };
        let variant = file.variant.as_ref().map(|v| v.value.as_str());
        let Ok(mut prepared) = exec::prepare::prepare(&dir, variant) else { continue };
        exec::bind::apply_overrides(&mut prepared, &file.connections);
        for step in &prepared.steps {
            let exec::prepare::StepKind::Llm { connection: Some(name), .. } = &step.kind else { continue };
            let Err(e) = connections.get(name, &step.name) else { continue };
            let pos = prepared
                .flow
                .node(&step.name)
                .and_then(|n| n.connection.as_ref())
                .map_or(model::yaml::Pos::START, |c| c.pos);
            found.push(
                Diagnostic::error(model::diag::Code::ConnectionUndefined, model::paths::normalize(&prepared.flow.file), pos, e.to_string())
                    .with_hint("define it under `connections:` in .flow-ci.yaml (with `${env:VAR}` for its key), or run from the folder of the .flow-ci.yaml that defines it"),
            );
        }
    }
    found.sort_by(|a, b| (&a.file, a.pos.line).cmp(&(&b.file, b.pos.line)));
    found.dedup_by(|a, b| a.file == b.file && a.pos == b.pos && a.message == b.message);
    found
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
        Reason::Port { .. } => "its port changed".into(),
        Reason::Config { .. } => "config changed".into(),
    }
}

fn configured_flows(config: &Config) -> Vec<PlannedFlow> {
    let mut flows = Vec::new();
    for entry in &config.flows {
        let dirs = crate::jobs::validate::expand_flow_path(config.dir(), &entry.path.value).unwrap_or_default();
        for dir in dirs {
            let rel = dir.strip_prefix(config.dir()).unwrap_or(&dir).to_string_lossy().replace('\\', "/");
            flows.push(PlannedFlow {
                path: rel,
                reasons: vec!["configured".into()],
                run_file: entry.run.as_ref().map(|r| config.resolve(&r.value)),
                evaluations: entry.evaluations.iter().map(|e| config.resolve(&e.value)).collect(),
                evaluations_found: vec![],
                gates: entry.gates.clone(),
                port: entry.port.as_ref().map(|p| Port {
                    file: config.resolve(&p.workflow.value),
                    factory: p.factory.as_ref().map(|f| f.value.clone()),
                    start: p.start.as_ref().map(|s| s.value.clone()),
                    connection: p.connection.as_ref().map(|c| c.value.clone()),
                }),
                parity: entry.parity.clone(),
                dir,
            });
        }
    }
    flows
}

/// Without `.flow-ci.yaml`: every flow folder below here whose `run.yml` is
/// a batch run, with the evaluation run files that evaluate it: those whose
/// `run:` names the batch run (its `name:`), or that read the same data.
pub fn conventional_flows() -> Vec<PlannedFlow> {
    let mut diags = Diagnostics::default();
    let runs: Vec<RunFile> = crate::jobs::validate::run_files(Path::new("."))
        .iter()
        .filter_map(|p| run_file::load(&PathBuf::from(display(p)), &mut diags))
        .collect();
    // Each evaluation with its data file resolved once, not once per flow.
    let evaluations: Vec<(&RunFile, Option<PathBuf>)> =
        runs.iter().filter(|r| r.is_evaluation()).map(|r| (r, r.local_data().map(|d| canonical(&d)))).collect();
    let mut dirs = crate::jobs::validate::expand_flow_path(Path::new("."), "**").unwrap_or_default();
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
                port: None,
                parity: None,
                dir,
            })
        })
        .collect()
}

/// Every flow gets `failed_lines: { max_ratio: 0 }` unless its gates say
/// otherwise: a run whose every line failed has no metrics to fail a gate
/// on, and used to pass.
fn add_default_failed_lines(gates: &mut Vec<Gate>) {
    if gates.iter().any(|g| g.metric.value == config::FAILED_LINES) {
        return;
    }
    gates.push(Gate {
        metric: model::yaml::Spanned::new(config::FAILED_LINES.to_string(), model::yaml::Pos::START),
        min: None,
        max: None,
        max_drop: None,
        max_rise: None,
        max_ratio: Some(0.0),
        significance: None,
        per_line: None,
    });
}

/// Why a check found no flow to run: said instead of a pass over nothing.
fn nothing_found(loaded: Option<&Loaded>) -> String {
    if let Some(l) = loaded {
        return format!("{} selects no flow folder", l.path.display());
    }
    let folders = crate::jobs::validate::expand_flow_path(Path::new("."), "**").unwrap_or_default().len();
    match folders {
        0 => "no flow folder (with flow.dag.yaml) below here and no .flow-ci.yaml".into(),
        n => format!(
            "{n} flow folder(s) found, but none has a batch run file (run.yml or run.yaml beside flow.dag.yaml) and there is no .flow-ci.yaml to name one"
        ),
    }
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

impl Plan {
    /// The plan as the job's log shows it before anything runs.
    pub fn describe(&self, err: &mut dyn Write) {
        let config = self.config.as_ref().map_or_else(|| "none (conventions)".to_string(), |c| c.display().to_string());
        let _ = writeln!(err, "plan: config {config}, backend {}, baseline {}", self.backend.as_str(), self.baseline);
        for flow in &self.flows {
            let _ = writeln!(err, "  {} ({})", flow.path, flow.reasons.join(", "));
            if let Some(run) = &flow.run_file {
                let _ = writeln!(err, "    batch run:  {}", run.display());
            }
            for (i, e) in flow.evaluations.iter().enumerate() {
                let how =
                    flow.evaluations_found.get(i).map(|w| format!(" (found by convention: {w})")).unwrap_or_default();
                let _ = writeln!(err, "    evaluation: {}{how}", e.display());
            }
            let gates: Vec<&str> = flow.gates.iter().map(|g| g.metric.value.as_str()).collect();
            if !gates.is_empty() {
                let _ = writeln!(err, "    gates:      {}", gates.join(", "));
            }
        }
        for path in &self.skipped {
            let _ = writeln!(err, "  {path} (not changed, skipped)");
        }
    }
}
