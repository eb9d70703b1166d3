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

/// `azureml: push_flows:` in `check`: on a build of that branch (not a pull
/// request), each checked flow is pushed to the studio, updating the
/// studio flow an earlier push made (found by its `flow-ci.flow` tag), so the
/// studio holds what the branch holds. Failures are warnings: the check's
/// verdict is about the flows, not the studio.
pub fn push_checked(
    push: &model::config::PushFlows,
    flows: &[PathBuf],
    session: Option<&backend::azureml::Session>,
    azureml: &[(String, String)],
    host: crate::ci::Host,
    err: &mut dyn std::io::Write,
) {
    let wanted = match push {
        model::config::PushFlows::Branch(branch) => branch.clone(),
        model::config::PushFlows::DefaultBranch => crate::ci::default_branch(host)
            .or_else(|| crate::detect::git::Git::open(Path::new(".")).ok()?.remote_default_branch())
            .unwrap_or_else(|| "main".into()),
    };
    let branch = super::cloud::provenance().branch;
    if branch.as_deref() != Some(wanted.as_str()) {
        tracing::info!("push_flows: not pushing from branch {branch:?} (pushes from {wanted})");
        return;
    }
    if flows.is_empty() {
        return;
    }
    let owned;
    let session = match session {
        Some(s) => s,
        None => match super::cloud::connect(azureml, None, false) {
            Ok(s) => {
                owned = s;
                &owned
            }
            Err(e) => {
                let _ = writeln!(err, "warning: push_flows: cannot sign in to the workspace: {e}");
                return;
            }
        },
    };
    for flow in flows {
        let tag = backend::azureml::Session::repo_path(flow);
        let result = backend::azureml::flows::find_by_tag(session, backend::azureml::flows::FLOW_TAG, &tag).and_then(
            |existing| {
                let spec = PushSpec { update: existing, ..PushSpec::default() };
                backend::azureml::flows::push(session, flow, &spec)
            },
        );
        match result {
            Ok(pushed) => {
                let verb = if pushed.created { "created" } else { "updated" };
                let _ =
                    writeln!(err, "push_flows: {tag} → studio flow {} ({verb}): {}", pushed.name, pushed.studio_url);
            }
            Err(e) => {
                let _ = writeln!(err, "warning: push_flows: {tag} was not pushed to the studio: {e}");
            }
        }
    }
}
