//! Where a run executes: the embedded executor (the default) or Azure ML.
//! Either way the finished run lands in the local run store, so what comes
//! after (evaluations bound to it, gates, reports) does not care which.

use crate::exec::job::{self, Job, JobError, JobOptions};
use crate::runs::{RunRecord, Store};

/// Runs `job` on the backend `opts` names and returns its finished record.
pub fn run(job: &Job, store: &Store, opts: &JobOptions<'_>) -> Result<RunRecord, JobError> {
    // Before anything runs or uploads: the name must be a name.
    store.dir(&job.name)?;
    match &opts.cloud {
        Some(cloud) => Ok(crate::azureml::run::run(cloud, job, store, opts.cancel, opts.force)?),
        None => job::run(job, store, opts),
    }
}
