//! `flow-ci flow push`: a local flow imported into the Azure ML workspace
//! as a flow the team opens in the studio (`pfazure flow create`), or an
//! existing one refreshed (`--update`). The flow is checked first, as
//! pfazure validates it before uploading anything.

use std::path::{Path, PathBuf};

use backend::azureml::AzureMlError;
use backend::azureml::flows::{PushSpec, WorkspaceFlow};
use exec::prepare::PrepareError;
use model::diag::Diagnostic;

pub struct PushRequest {
    pub flow: PathBuf,
    pub spec: PushSpec,
    /// `--config` [default: ./.flow-ci.yaml when there is one], for `azureml:`.
    pub config: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the configuration has errors")]
    Config(Vec<Diagnostic>),
    #[error(transparent)]
    Flow(#[from] PrepareError),
    #[error(transparent)]
    Cloud(#[from] AzureMlError),
}

/// Checks the flow, signs in and pushes it.
pub fn run(req: &PushRequest) -> Result<WorkspaceFlow, PushError> {
    let config = model::config::read_valid(req.config.as_deref()).map_err(PushError::Config)?;
    let azureml = config.as_ref().map(|c| c.azureml_keys()).unwrap_or_default();
    exec::prepare::prepare(&req.flow, None)?;
    let session = super::cloud::connect(&azureml, None, false)?;
    push(&session, &req.flow, &req.spec)
}

/// One flow on an open session (also `check`'s push of changed flows).
pub fn push(session: &backend::azureml::Session, flow: &Path, spec: &PushSpec) -> Result<WorkspaceFlow, PushError> {
    Ok(backend::azureml::flows::push(session, flow, spec)?)
}
