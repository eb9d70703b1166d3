//! `flow-ci deploy`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::cloud::CloudArgs;
use super::exec_args::ExecArgs;
use crate::jobs::deploy::{self, DeployError, DeployJobError, DeployRequest};

/// Register a flow and deploy it to an Azure ML managed online endpoint; traffic moves only
/// after a smoke test passes.
///
/// Reads `deploy:` from .flow-ci.yaml (`flow`, `endpoint`, `deployment`, `instance_type`,
/// `instance_count`, `traffic`, `model`, `environment`) and the workspace from `azureml:`.
/// The flow folder is uploaded and registered as a model (the next integer version, its
/// content hash in a property: an unchanged flow is not registered again); with --run, the
/// flow that run evaluated is registered instead. The endpoint is created when missing, the
/// deployment is created or updated (waiting on Azure's long-running operations), and the
/// first line of the flow's run data is scored on the new deployment. Its answer must have
/// the outputs and types the local executor gives; then the deployment gets `traffic` percent
/// (the other deployments share the rest as before). When the smoke test fails, traffic stays
/// where it was and the command exits 1. A failed check (report.json with `passed: false`)
/// stops the deploy unless --ignore-gates.
///
/// Outputs: endpoint-url, deployment-name and model-version in $GITHUB_OUTPUT (Azure
/// Pipelines: output variables endpointUrl, deploymentName, modelVersion); deploy.json and
/// deploy.md in the report folder, and deploy.md in the job summary.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  flow-ci deploy --dry-run   # the ARM calls it would make, with bodies\n  flow-ci deploy             # register, deploy, smoke test, shift traffic\n  flow-ci deploy --config deploy/.flow-ci.yaml --timeout 30m\n  flow-ci deploy --run support-router-nightly   # the flow that run evaluated"
)]
pub struct DeployArgs {
    /// The .flow-ci.yaml with `deploy:` and `azureml:` [default: ./.flow-ci.yaml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print every ARM call (method, URL, body) and exit; signs in to nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Deploy even when the last check's report.json says a gate failed
    #[arg(long)]
    pub ignore_gates: bool,

    /// Where check's report.json is read and deploy.json / deploy.md are written
    #[arg(long, value_name = "DIR", default_value = ".flow-ci/report")]
    pub report_dir: PathBuf,

    /// Deploy the flow this run evaluated: a cloud run's uploaded snapshot (not uploaded
    /// again), or a local run's flow when the folder still has the content it ran (else exit 2);
    /// an evaluation run stands for the run it evaluated; a name not in the run store is a
    /// workspace run id, whose flow snapshot is deployed
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,

    /// The run store --run reads [default: $FLOW_CI_RUNS_DIR, else .flow-ci/runs]
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,

    #[command(flatten)]
    pub cloud: CloudArgs,

    #[command(flatten)]
    pub exec: ExecArgs,
}

pub fn run(args: DeployArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let req = DeployRequest {
        config: args.config.clone(),
        dry_run: args.dry_run,
        ignore_gates: args.ignore_gates,
        report_dir: args.report_dir.clone(),
        python: exec::pool::default_python(args.exec.python.as_deref()),
        line_timeout: Duration::from_secs(args.exec.line_timeout),
        llm: args.exec.llm_flags(),
        cloud_timeout: args.cloud.timeout,
        run: args.run.clone(),
        runs_dir: args.runs_dir.clone(),
    };
    match deploy::run(&req, out, err) {
        Ok(()) => model::exit::OK,
        Err(DeployJobError::Invalid(diags)) => {
            super::failure::print_diagnostics(&diags, err);
            model::exit::INVALID_INPUT
        }
        Err(DeployJobError::Llm(e)) => super::exec_args::report_setup_error(&e, err),
        Err(DeployJobError::Deploy(DeployError::Cloud(e))) => super::cloud::report(&e, err),
        Err(DeployJobError::Deploy(e)) => {
            let _ = writeln!(err, "error: {e}");
            e.exit_code()
        }
        Err(e @ DeployJobError::NoConfig(_)) => {
            let _ = writeln!(err, "error: {e}");
            model::exit::INVALID_INPUT
        }
    }
}
