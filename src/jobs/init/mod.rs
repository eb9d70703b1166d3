//! `flow-ci init`: finds the flows, their batch run files and evaluations
//! below here (as `check` does without a config), runs each once on this
//! machine, and writes a commented `.flow-ci.yaml` whose gates are proposed
//! from what was measured; with `--github` / `--azure-pipelines` also the
//! CI workflow that runs `check` on pull requests.

mod config_text;
mod workflows;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::check::{self, BaselinePlan, CheckError, CheckRequest, Plan, PlannedFlow, ProgressFn};
use config_text::{Extras, FlowFacts, Measured};
use model::config::{self, Backend, CONFIG_FILE};
use model::diag::{Diagnostic, Diagnostics};
use model::flow::run_file;

/// Options of one `init`.
pub struct InitRequest {
    /// Overwrite files that exist.
    pub force: bool,
    /// Also write `.github/workflows/flow-ci.yml`.
    pub github: bool,
    /// Also write `azure-pipelines.yml`.
    pub azure_pipelines: bool,
    /// Run the flows to propose gates from their metrics (`--no-run`: not).
    pub measure: bool,
    /// How the flows run (the executor's options; config, base and
    /// backend are not used).
    pub runs: CheckRequest,
}

/// What `init` did.
pub enum Outcome {
    Written(Written),
    /// Ctrl-C while the flows ran: nothing was written.
    Interrupted,
}

pub struct Written {
    /// The files written, in order.
    pub files: Vec<PathBuf>,
    pub flows: usize,
    /// Flows whose runs gave no metrics, with why.
    pub unmeasured: Vec<(String, String)>,
    /// Said once, for the user (e.g. an old config that could not be read).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{} already exist(s); nothing was written", list(.0))]
    Exists(Vec<PathBuf>),
    #[error("the workflow cannot name the folder `{0}` (from the repository root) as it is")]
    Folder(String),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// The config `init` wrote does not validate: a bug in `init`.
    #[error("the written {} does not validate", path.display())]
    WrittenInvalid { path: PathBuf, diagnostics: Vec<Diagnostic> },
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Runs `init` in the current folder; the flows' progress goes to `progress`.
pub fn init(req: &InitRequest, progress: ProgressFn<'_>, cancel: &AtomicBool) -> Result<Outcome, InitError> {
    let config_path = PathBuf::from(CONFIG_FILE);
    let cwd = std::env::current_dir().map_err(|source| InitError::Write { path: PathBuf::from("."), source })?;
    let root = model::paths::find_repo_root(&cwd).unwrap_or_else(|| cwd.clone());
    // The config's folder from the repository root, for the workflows.
    let dir = cwd.strip_prefix(&root).unwrap_or(Path::new("")).to_string_lossy().replace('\\', "/");
    let mut targets = vec![config_path.clone()];
    if req.github {
        targets.push(root.join(workflows::GITHUB_PATH));
    }
    if req.azure_pipelines {
        targets.push(root.join(workflows::AZURE_PATH));
    }
    let existing: Vec<PathBuf> = targets.iter().filter(|p| p.exists()).cloned().collect();
    if !req.force && !existing.is_empty() {
        return Err(InitError::Exists(existing));
    }
    if (req.github || req.azure_pipelines) && !dir.is_empty() && !workflows::is_plain_dir(&dir) {
        return Err(InitError::Folder(dir));
    }

    let mut notes = Vec::new();
    // A config being replaced: its connections let the flows run now, and
    // the sections init does not derive are kept.
    let (old_config, kept) = previous_config(&config_path, &mut notes);

    let flows = check::conventional_flows();
    if flows.is_empty() {
        return Err(CheckError::NothingToCheck(
            "no flow folder below here has a batch run file (run.yml or run.yaml beside flow.dag.yaml)".into(),
        )
        .into());
    }
    validate_found(&flows)?;
    let report = if req.measure {
        let llm = exec::llm::setup::setup(old_config.as_ref(), &req.runs.llm).map_err(CheckError::from)?;
        let plan = Plan {
            config: None,
            baseline: BaselinePlan::None,
            backend: Backend::Local,
            azureml: vec![],
            flows: flows.clone(),
            skipped: vec![],
        };
        let report = check::measure(&plan, &req.runs, cancel, progress, &llm)?;
        if cancel.load(Ordering::SeqCst) {
            return Ok(Outcome::Interrupted);
        }
        Some(report)
    } else {
        None
    };

    let mut unmeasured = Vec::new();
    let facts: Vec<FlowFacts<'_>> = flows
        .iter()
        .enumerate()
        .map(|(i, flow)| {
            let measured = match report.as_ref().and_then(|r| r.flows.get(i)) {
                None => Measured::NotRun,
                Some(f) if !f.errors.is_empty() => {
                    let why = f.errors[0].message.clone();
                    unmeasured.push((flow.path.clone(), why.clone()));
                    Measured::Failed(why)
                }
                Some(f) => Measured::Ran { metrics: &f.metrics, lines: f.lines },
            };
            FlowFacts {
                path: &flow.path,
                run: flow.run_file.as_ref().map(|p| slash(p)).unwrap_or_default(),
                evaluations: flow
                    .evaluations
                    .iter()
                    .zip(&flow.evaluations_found)
                    .map(|(p, why)| (slash(p), format!("found: {why}")))
                    .collect(),
                measured,
            }
        })
        .collect();
    let without_run = flows_without_run(&flows);
    let text = config_text::render(&facts, &Extras { without_run: &without_run, kept: &kept });

    let mut files = Vec::new();
    write(&config_path, &text, &mut files)?;
    check_written(&config_path)?;
    if req.github {
        write(&root.join(workflows::GITHUB_PATH), &workflows::github(&dir), &mut files)?;
    }
    if req.azure_pipelines {
        write(&root.join(workflows::AZURE_PATH), &workflows::azure(&dir), &mut files)?;
    }
    Ok(Outcome::Written(Written { files, flows: flows.len(), unmeasured, notes }))
}

/// The config at `path` if there is one: its value (for its connections)
/// and its sections `init` keeps.
fn previous_config(path: &Path, notes: &mut Vec<String>) -> (Option<model::config::Config>, Vec<String>) {
    let Ok(text) = std::fs::read_to_string(path) else { return (None, vec![]) };
    let config = match config::read(Some(path)) {
        Ok(Some(loaded)) if !loaded.has_errors() => Some(loaded.config),
        _ => {
            notes.push(format!("{} has errors: its connections were not used and none of it is kept", path.display()));
            return (None, vec![]);
        }
    };
    let kept = config_text::kept_sections(&text).unwrap_or_else(|| {
        notes.push(format!("{} is not in block style: none of it is kept", path.display()));
        vec![]
    });
    (config, kept)
}

/// Validates the flows, batch runs and evaluations found, as `check` would
/// before running them.
fn validate_found(flows: &[PlannedFlow]) -> Result<(), CheckError> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for flow in flows {
        paths.push(flow.dir.clone());
        paths.extend(flow.run_file.iter().cloned());
        paths.extend(flow.evaluations.iter().cloned());
    }
    let mut seen = HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    let outcome = crate::jobs::validate::validate(&paths);
    if outcome.has_errors() {
        return Err(CheckError::Invalid(outcome.diagnostics.into_iter().filter(Diagnostic::is_error).collect()));
    }
    Ok(())
}

/// Flow folders that are neither a found flow nor the flow of an
/// evaluation run file.
fn flows_without_run(flows: &[PlannedFlow]) -> Vec<String> {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let mut known: HashSet<PathBuf> = flows.iter().map(|f| canonical(&f.dir)).collect();
    let mut diags = Diagnostics::default();
    for path in crate::jobs::validate::run_files(Path::new(".")) {
        if let Some(file) = run_file::load(&path, &mut diags)
            && let Some(dir) = file.flow_dir()
        {
            known.insert(canonical(&dir));
        }
    }
    crate::jobs::validate::expand_flow_path(Path::new("."), "**")
        .unwrap_or_default()
        .iter()
        .filter(|dir| !known.contains(&canonical(dir)))
        .map(|dir| slash(dir.strip_prefix(".").unwrap_or(dir)))
        .collect()
}

fn slash(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

fn write(path: &Path, text: &str, files: &mut Vec<PathBuf>) -> Result<(), InitError> {
    let write = || -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)
    };
    write().map_err(|source| InitError::Write { path: path.to_path_buf(), source })?;
    files.push(path.to_path_buf());
    Ok(())
}

/// The config just written must pass `validate` (as `check` will read it).
fn check_written(path: &Path) -> Result<(), InitError> {
    let invalid = |diagnostics| InitError::WrittenInvalid { path: path.to_path_buf(), diagnostics };
    let loaded = match config::read(Some(path)) {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return Err(invalid(vec![])),
        Err(diags) => return Err(invalid(diags)),
    };
    let outcome = crate::jobs::validate::validate_loaded(&loaded.config, &loaded.diagnostics);
    if outcome.has_errors() {
        return Err(invalid(outcome.diagnostics));
    }
    Ok(())
}
