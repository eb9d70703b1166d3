//! `deploy --run NAME`: deploy exactly the flow a run evaluated. A cloud
//! run's flow is the datastore folder it was submitted from
//! (`flowDefinitionBlobPath`; `LocalUpload/{hash}/...` is content-addressed,
//! so it holds what the run ran): the model is registered from it without
//! uploading the folder again. A local run recorded its flow's content hash
//! when it started; the folder is deployed only while it still hashes the
//! same, so a flow edited after its run cannot slip through.

use std::path::{Path, PathBuf};

use backend::azureml::run::{FLOW_DATASTORE_PROPERTY, FLOW_HASH_PROPERTY, FLOW_PATH_PROPERTY, cloud_id};
use exec::store::{RunRecord, RunStatus, Store};
use serde_json::Value as Json;

use super::rollout::DeployError;

/// The flow content a deploy is pinned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// A run in the workspace: its id and the datastore folder of its flow.
    Cloud { run: String, id: String, datastore: String, path: String, hash: String },
    /// A local run whose flow folder still has the content it ran.
    Local { run: String, hash: String },
    /// A run id of the workspace not in the run store (submitted by pfazure
    /// or elsewhere): its flow snapshot is read from the service.
    Workspace { id: String },
}

impl Pinned {
    pub fn run(&self) -> &str {
        match self {
            Pinned::Cloud { run, .. } | Pinned::Local { run, .. } => run,
            Pinned::Workspace { id } => id,
        }
    }

    /// The content hash known before signing in (a workspace run's is not).
    pub fn hash(&self) -> Option<&str> {
        match self {
            Pinned::Cloud { hash, .. } | Pinned::Local { hash, .. } => Some(hash),
            Pinned::Workspace { .. } => None,
        }
    }
}

/// The run `name` of the store (an evaluation run stands for the run it
/// evaluated), checked: completed, of the deploy's flow, and for a local
/// run, the folder unchanged since. A name the store does not know is taken
/// as a run id in the workspace (as `pfazure run create --run` takes it).
pub fn pin(store: &Store, name: &str, flow: &Path) -> Result<Pinned, DeployError> {
    let invalid = DeployError::Config;
    let mut record = match store.load(name) {
        Ok(record) => record,
        Err(exec::store::StoreError::NotFound { .. }) => return Ok(Pinned::Workspace { id: name.to_string() }),
        Err(e) => return Err(invalid(format!("--run {name}: {e}"))),
    };
    let flow = canonical(flow);
    if canonical(&record.flow) != flow
        && let Some(base) = record.run.clone()
    {
        // An evaluation: what it evaluated is its base run's flow.
        record = store.load(&base).map_err(|e| invalid(format!("--run {name} evaluated run {base}: {e}")))?;
    }
    if canonical(&record.flow) != flow {
        return Err(invalid(format!(
            "run {} is a run of {}, but `deploy:` deploys {}",
            record.name,
            record.flow.display(),
            flow.display()
        )));
    }
    if record.status != RunStatus::Completed {
        return Err(invalid(format!("run {} is {}; deploy a completed run", record.name, record.status.as_str())));
    }
    let text = |record: &RunRecord, key: &str| record.properties.get(key).and_then(Json::as_str).map(str::to_string);
    let Some(hash) = text(&record, FLOW_HASH_PROPERTY) else {
        return Err(invalid(format!(
            "run {} has no record of its flow's content (it was made by an older flow-ci); run it again",
            record.name
        )));
    };
    if let Some(id) = cloud_id(&record) {
        let (Some(datastore), Some(path)) = (text(&record, FLOW_DATASTORE_PROPERTY), text(&record, FLOW_PATH_PROPERTY))
        else {
            return Err(invalid(format!("run {} does not say where its flow was uploaded; run it again", record.name)));
        };
        return Ok(Pinned::Cloud { run: record.name.clone(), id: id.to_string(), datastore, path, hash });
    }
    let (snapshot, _staged) = backend::azureml::run::flow_snapshot(&record.flow)?;
    if snapshot.hash != hash {
        return Err(invalid(format!(
            "{} changed since run {} (content {} then, {} now): deploy what was evaluated by running it again, or deploy without --run",
            record.flow.display(),
            record.name,
            &hash[..hash.len().min(12)],
            &snapshot.hash[..snapshot.hash.len().min(12)]
        )));
    }
    Ok(Pinned::Local { run: record.name, hash })
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
