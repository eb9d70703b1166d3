//! `flow-ci run create`: one batch or evaluation run on the backend the
//! flags or `.flow-ci.yaml` name (read once), recorded in the run store.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use backend::azureml::AzureMlError;
use backend::{BackendError, CloudRun, Target};
use exec::batch::Progress;
use exec::job::{Job, JobOptions};
use exec::llm::setup::{LlmFlags, SetupError};
use exec::store::{RunRecord, Store};
use model::config::{self, Backend, Config};
use model::diag::Diagnostic;

pub struct RunRequest {
    pub job: Job,
    /// `--config` [default: ./.flow-ci.yaml when there is one].
    pub config: Option<PathBuf>,
    /// `--backend`, over the config's `backend:`.
    pub backend: Option<Backend>,
    pub python: exec::pool::Python,
    pub workers: usize,
    pub line_timeout: Duration,
    /// Replace a stored run of the same name.
    pub force: bool,
    pub llm: LlmFlags,
    /// Azure ML: cancel the run when it is still going after this long.
    pub cloud_timeout: Option<Duration>,
    /// Azure ML: print the run's log as it grows.
    pub stream: bool,
    /// Azure ML: the run's id in the workspace, when the user named the run
    /// (`--name` or the run file's `name:`); else derived from the content.
    pub cloud_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunJobError {
    #[error("the configuration has errors")]
    Config(Vec<Diagnostic>),
    #[error(transparent)]
    Llm(#[from] SetupError),
    #[error(transparent)]
    Cloud(#[from] AzureMlError),
    #[error(transparent)]
    Run(#[from] BackendError),
}

/// Runs the request and returns the finished record (also in `store`).
pub fn create(
    req: &RunRequest,
    store: &Store,
    progress: &(dyn Fn(&str, usize) -> Box<dyn Progress> + Sync),
    cancel: &AtomicBool,
    err: &mut dyn Write,
) -> Result<RunRecord, RunJobError> {
    let config = load_config(req.config.as_deref())?;
    let llm = exec::llm::setup::setup(config.as_ref(), &req.llm)?;
    let session = match Config::backend_or(config.as_ref(), req.backend) {
        // Before signing in: a port runs here or nowhere.
        Backend::AzureMl if req.job.port.is_some() => return Err(BackendError::PortInCloud.into()),
        Backend::AzureMl => {
            let azureml = config.as_ref().map(Config::azureml_keys).unwrap_or_default();
            Some(super::cloud::connect(&azureml, req.cloud_timeout, req.stream)?)
        }
        Backend::Local => None,
    };
    let target = match &session {
        Some(session) => {
            Target::AzureMl(CloudRun { session, provenance: super::cloud::provenance(), name: req.cloud_name.clone() })
        }
        None => {
            let _ = writeln!(err, "run {}: {} worker(s)", req.job.name, req.workers);
            Target::Local
        }
    };
    let opts = JobOptions {
        python: req.python.clone(),
        workers: req.workers,
        line_timeout: req.line_timeout,
        force: req.force,
        cancel,
        progress,
        llm: &llm,
    };
    Ok(backend::run(&req.job, store, &opts, &target)?)
}

/// `--config`, else ./.flow-ci.yaml when there is one; its errors stop the
/// command (flow-ci validate shows them all).
pub fn load_config(explicit: Option<&std::path::Path>) -> Result<Option<Config>, RunJobError> {
    config::read_valid(explicit).map_err(RunJobError::Config)
}
