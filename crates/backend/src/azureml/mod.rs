//! The Azure Machine Learning backend, speaking the REST protocol `pfazure`
//! speaks: Entra ID tokens for ARM, the workspace and its regional services,
//! uploads to the default datastore (content-hashed `LocalUpload/` folders,
//! skipped when already there), BulkRuns submission, polling, logs, per-line
//! results, metrics and cancel. Finished runs are copied into the local run
//! store, so everything after a run reads cloud and local runs alike.

pub mod blob;
pub mod client;
pub mod fileshare;
pub mod flows;
pub mod online;
pub mod run;
pub mod service;
pub mod snapshot;
pub mod submission;
pub mod workspace;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use submission::Provenance;
use workspace::{Datastore, Workspace, WorkspaceRef};

#[derive(Debug, thiserror::Error)]
pub enum AzureMlError {
    #[error("cannot get an Azure token: {0}")]
    Auth(String),
    #[error("cannot reach {url}: {message}")]
    Http { url: String, message: String },
    #[error("{method} {url} answered {status}{}: {message}", if code.is_empty() { String::new() } else { format!(" {code}") })]
    Service { method: String, url: String, status: u16, code: String, message: String },
    #[error("{0}")]
    Config(String),
    #[error("run {run} failed: {message}")]
    RunFailed { run: String, message: String },
    #[error("run {run} did not finish within --timeout; it was cancelled")]
    Timeout { run: String },
    #[error("run {run} stayed {status} for {waited}; it was cancelled")]
    Stalled { run: String, status: String, waited: String },
    #[error("{what} ended {status}{}: {message}", if code.is_empty() { String::new() } else { format!(" ({code})") })]
    Operation { what: String, status: String, code: String, message: String },
    #[error("run {run} is no longer known to the workspace")]
    Vanished { run: String },
    #[error(transparent)]
    Upload(#[from] snapshot::UploadError),
    #[error(transparent)]
    Blob(#[from] blob::BlobError),
    #[error(transparent)]
    Store(#[from] exec::store::StoreError),
}

impl AzureMlError {
    /// No token: settings flow-ci refuses (a credential for an `http://`
    /// authority) are invalid input, anything else a sign-in failure.
    pub fn from_token(e: net::entra::TokenError) -> AzureMlError {
        match e.invalid_input {
            true => AzureMlError::Config(format!("cannot get an Azure token: {}", e.message)),
            false => AzureMlError::Auth(e.message),
        }
    }

    /// A workspace that cannot be named is invalid input (2); everything the
    /// service or the network did is an execution failure (3).
    pub fn exit_code(&self) -> u8 {
        match self {
            AzureMlError::Config(_) => model::exit::INVALID_INPUT,
            AzureMlError::Store(e) => e.exit_code(),
            _ => model::exit::FAILURE,
        }
    }

    /// How to fix it, when flow-ci can tell.
    pub fn hint(&self) -> Option<String> {
        match self {
            AzureMlError::Auth(_) => Some(
                "sign in with `az login`, or give the job a service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or OIDC federation)"
                    .into(),
            ),
            AzureMlError::Service { status: 401 | 403, .. } => {
                Some("the identity needs a role on the workspace that may submit runs, e.g. AzureML Data Scientist".into())
            }
            AzureMlError::Service { status: 404, url, .. } if !url.contains("/runs/") && !url.contains("BulkRuns") => {
                Some("check azureml.subscription_id, resource_group and workspace".into())
            }
            AzureMlError::Blob(e) | AzureMlError::Upload(snapshot::UploadError::Blob(e)) => match e {
                blob::BlobError::Status { status: 401 | 403, .. } => Some(
                    "with an identity-based datastore, the signed-in identity needs Storage Blob Data Contributor on the workspace's storage account"
                        .into(),
                ),
                blob::BlobError::Auth(_) => Some(
                    "the datastore is identity-based: flow-ci uploads with your own Entra token for https://storage.azure.com, from the same sign-in as the workspace's"
                        .into(),
                ),
                _ => None,
            },
            AzureMlError::Stalled { .. } => Some(
                "look at the run in the studio; the workspace's compute may be unavailable (pass --timeout to bound a whole run)"
                    .into(),
            ),
            AzureMlError::Store(e) => e.hint(),
            _ => None,
        }
    }
}

/// How runs are waited on and labelled.
pub struct Settings {
    /// The longest wait between two status polls.
    pub poll: Duration,
    /// `--timeout`: runs still going then are cancelled.
    pub deadline: Option<Instant>,
    /// How long a run may sit `Paused` or `NotResponding` before it is
    /// cancelled: without `--timeout` it would otherwise be polled forever.
    pub stall: Duration,
    /// Print the run's log as it grows.
    pub stream: bool,
    /// Where progress lines go (stderr in the CLI).
    pub say: Box<dyn Fn(&str) + Send + Sync>,
}

/// A signed-in connection to one workspace, shared by every run of an
/// invocation.
pub struct Session {
    client: client::Client,
    workspace: Workspace,
    datastore: Mutex<Option<Arc<Datastore>>>,
    pub settings: Settings,
}

impl Session {
    /// Resolves the workspace (`azureml:` keys, environment, config.json),
    /// gets a token and reads the workspace, so a wrong name or a missing
    /// credential stops everything before any upload.
    pub fn connect(config: &[(String, String)], settings: Settings) -> Result<Session, AzureMlError> {
        let reference = WorkspaceRef::resolve(config, &|k| std::env::var(k).ok())?;
        let client = client::Client::new(client::Cloud::resolve()?)?;
        client.authenticate()?;
        let workspace = Workspace::open(&client, reference)?;
        (settings.say)(&format!(
            "azureml: workspace {} ({}) at {}",
            workspace.reference.workspace, workspace.location, workspace.services
        ));
        Ok(Session { client, workspace, datastore: Mutex::new(None), settings })
    }

    pub fn client(&self) -> &client::Client {
        &self.client
    }

    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    pub fn service(&self) -> service::Service<'_> {
        service::Service { client: &self.client, workspace: &self.workspace }
    }

    /// The default datastore, looked up (and its secret fetched) once.
    pub fn datastore(&self) -> Result<Arc<Datastore>, AzureMlError> {
        let mut cached = self.datastore.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = cached.as_ref() {
            return Ok(store.clone());
        }
        let store = Arc::new(self.workspace.default_datastore(&self.client)?);
        *cached = Some(store.clone());
        Ok(store)
    }

    pub fn say(&self, text: &str) {
        (self.settings.say)(text);
    }

    /// `flows/web-classification`: the flow relative to its repository (or
    /// worktree: the baseline's flows are in one), as tags and lineage name it.
    pub fn repo_path(flow: &Path) -> String {
        let flow = std::path::absolute(flow).map(|p| model::paths::normalize(&p)).unwrap_or_else(|_| flow.into());
        let root = flow.ancestors().find(|dir| dir.join(".git").exists());
        let relative = root.and_then(|root| flow.strip_prefix(root).ok()).unwrap_or(&flow);
        relative.to_string_lossy().replace('\\', "/")
    }
}
