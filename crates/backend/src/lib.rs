//! Where a run executes: the embedded executor (the default) or Azure ML.
//! Either way the finished run lands in the local run store, so what comes
//! after (evaluations bound to it, gates, reports) does not care which.
//!
//! This crate owns the choice; the executor below it never knows a cloud
//! exists, and nothing here knows a report or a forge.

#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod azureml;

use exec::job::{self, Job, JobError, JobOptions};
use exec::store::{RunRecord, Store};

pub use azureml::run::CloudRun;

/// Where a run goes.
#[derive(Clone)]
pub enum Target<'a> {
    /// The embedded executor.
    Local,
    /// An Azure ML workspace (`--backend azureml`).
    AzureMl(CloudRun<'a>),
}

/// Why a run could not start or finish, on either backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Local(#[from] JobError),
    /// The Azure ML backend: service, upload, a failed or timed-out run.
    #[error(transparent)]
    Cloud(#[from] azureml::AzureMlError),
    /// A port (an Agent Framework workflow) asked to run in Azure ML.
    #[error(
        "a workflow (--workflow, or a flow's `port:`) runs on the local backend only; pass --backend local (Azure ML runs prompt flows)"
    )]
    PortInCloud,
}

impl BackendError {
    /// Broken input is exit 2; a run that could not execute is exit 3.
    pub fn exit_code(&self) -> u8 {
        match self {
            BackendError::Local(e) => e.exit_code(),
            BackendError::Cloud(e) => e.exit_code(),
            BackendError::PortInCloud => model::exit::INVALID_INPUT,
        }
    }
}

/// Runs `job` on `target` and returns its finished record.
pub fn run(job: &Job, store: &Store, opts: &JobOptions<'_>, target: &Target<'_>) -> Result<RunRecord, BackendError> {
    // Before anything runs or uploads: the name must be a name.
    store.dir(&job.name).map_err(JobError::Store)?;
    match target {
        Target::AzureMl(_) if job.port.is_some() => Err(BackendError::PortInCloud),
        Target::AzureMl(cloud) => Ok(azureml::run::run(cloud, job, store, opts.cancel, opts.force)?),
        Target::Local => {
            // The flow's content as a deploy would upload it, hashed before
            // the run starts: `deploy --run` deploys this run's flow only
            // while the folder still holds it.
            let hash = azureml::run::flow_snapshot(&job.flow).ok().map(|(snapshot, _)| snapshot.hash);
            let record = job::run(job, store, opts)?;
            match hash {
                Some(hash) => Ok(store
                    .set_property(&job.name, azureml::run::FLOW_HASH_PROPERTY, serde_json::json!(hash))
                    .map_err(JobError::Store)?),
                None => Ok(record),
            }
        }
    }
}
