//! `flow-ci deploy`: register a flow and serve it from a managed online
//! endpoint, safely (see `rollout`). This job reads the config once, stops
//! on a failed check, runs the sample line locally for the shape the
//! deployment must answer with, signs in, rolls out, and leaves its outputs
//! for the CI host and later steps.

mod pin;
mod rollout;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exec::llm::setup::{LlmFlags, SetupError};
use model::config::{self, Config};
use model::diag::Diagnostic;

pub use pin::{Pinned, pin};
pub use rollout::{DeployError, Deployed, Spec, deploy, dry_run, run_locally, shape_difference, spec};

pub struct DeployRequest {
    /// `--config` [default: ./.flow-ci.yaml, which must exist].
    pub config: Option<PathBuf>,
    pub dry_run: bool,
    pub ignore_gates: bool,
    /// Where check's report.json is read and deploy.json / deploy.md written.
    pub report_dir: PathBuf,
    pub python: exec::pool::Python,
    pub line_timeout: Duration,
    pub llm: LlmFlags,
    pub cloud_timeout: Option<Duration>,
    /// `--run`: deploy the flow content this run evaluated.
    pub run: Option<String>,
    /// `--runs-dir`: the run store `--run` is read from.
    pub runs_dir: Option<PathBuf>,
}

/// What stopped a deploy before it reached Azure.
#[derive(Debug, thiserror::Error)]
pub enum DeployJobError {
    #[error("{} not found; `flow-ci deploy` reads `deploy:` and `azureml:` from it", .0.display())]
    NoConfig(PathBuf),
    #[error("the configuration has errors")]
    Invalid(Vec<Diagnostic>),
    #[error(transparent)]
    Llm(#[from] SetupError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
}

/// Runs the deploy (or, with `dry_run`, prints every ARM call it would make
/// to `out`). A failed smoke test is `Err(Deploy(Smoke))`: traffic did not move.
pub fn run(req: &DeployRequest, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), DeployJobError> {
    let config = load_config(req.config.as_deref())?;
    let spec = spec(&config)?;
    let azureml = config.azureml_keys();
    let pinned = match &req.run {
        Some(name) => {
            let store = exec::store::Store::new(exec::store::root(req.runs_dir.as_deref()));
            Some(pin(&store, name, &spec.flow)?)
        }
        None => None,
    };
    if req.dry_run {
        return Ok(print_dry_run(&spec, &azureml, pinned.as_ref(), out, err)?);
    }
    if let Some(why) = failed_gates(&req.report_dir, req.ignore_gates) {
        return Err(DeployError::Gates(why).into());
    }
    let llm = exec::llm::setup::setup(Some(&config), &req.llm)?;
    let expected = run_locally(&spec, req.python.clone(), &llm, req.line_timeout)?;
    let session = super::cloud::connect(&azureml, req.cloud_timeout, false).map_err(DeployError::Cloud)?;
    let deployed = deploy(&session, &spec, &expected, &super::cloud::provenance(), pinned.as_ref())?;
    if let Err(e) = write_outputs(&deployed, &req.report_dir, out) {
        let _ = writeln!(err, "warning: cannot write the deploy outputs: {e}");
    }
    let _ = writeln!(out, "{}", summary(&deployed));
    Ok(())
}

/// The config, which deploy cannot do without.
fn load_config(explicit: Option<&Path>) -> Result<Config, DeployJobError> {
    let path = explicit.unwrap_or(Path::new(config::CONFIG_FILE));
    if !path.is_file() {
        return Err(DeployJobError::NoConfig(path.to_path_buf()));
    }
    config::read_valid(Some(path))
        .map_err(DeployJobError::Invalid)?
        .ok_or_else(|| DeployJobError::NoConfig(path.to_path_buf()))
}

/// Every ARM call the deploy would make, with its body; nothing is sent.
fn print_dry_run(
    spec: &Spec,
    azureml: &[(String, String)],
    pinned: Option<&Pinned>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), DeployError> {
    let workspace = backend::azureml::workspace::WorkspaceRef::resolve(azureml, &|k| std::env::var(k).ok())?;
    let arm = backend::azureml::client::Cloud::from_env().arm_url;
    let calls = dry_run(spec, workspace, arm, pinned)?;
    let _ = writeln!(
        err,
        "dry run: {} → endpoint {} deployment {} ({} % of traffic once it passes)",
        spec.flow.display(),
        spec.endpoint,
        spec.deployment,
        spec.traffic
    );
    let _ = writeln!(err, "smoke test inputs: {}", serde_json::Value::Object(spec.sample.clone()));
    for call in &calls {
        let _ = writeln!(out, "{} {}\n  # {}", call.method, call.url, call.why);
        if let Some(body) = &call.body {
            let text = serde_json::to_string_pretty(body).unwrap_or_default();
            let _ = writeln!(out, "{}", text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"));
        }
    }
    Ok(())
}

/// Why the last check stops a deploy, unless told to ignore it.
fn failed_gates(report_dir: &Path, ignore: bool) -> Option<String> {
    let path = report_dir.join("report.json");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    (report.get("passed") == Some(&serde_json::Value::Bool(false)) && !ignore)
        .then(|| format!("{} says a gate failed: fix it and check again, or pass --ignore-gates", path.display()))
}

/// `deploy.md`, the job summary and the console's view of a deploy.
fn summary(d: &Deployed) -> String {
    format!(
        "## flow-ci deploy\n\n| | |\n|---|---|\n| endpoint | `{}` |\n| deployment | `{}` |\n| model | `{}` version `{}`{} |\n| smoke test | {} |\n| traffic | {} → {} |\n| scoring URI | {} |\n",
        d.endpoint,
        d.deployment,
        d.model,
        d.model_version,
        if d.model_registered { " (registered now)" } else { " (already registered)" },
        crate::report::escape_md(&d.smoke_test),
        serde_json::Value::Object(d.traffic_before.clone()),
        serde_json::Value::Object(d.traffic.clone()),
        d.scoring_uri
    )
}

/// deploy.json and deploy.md, the step outputs (`endpoint-url`,
/// `deployment-name`, `model-version`) and the job summary.
fn write_outputs(d: &Deployed, report_dir: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    std::fs::create_dir_all(report_dir)?;
    std::fs::write(report_dir.join("deploy.json"), serde_json::to_string_pretty(d)? + "\n")?;
    std::fs::write(report_dir.join("deploy.md"), summary(d))?;
    let values = [
        ("endpoint-url", "endpointUrl", &d.scoring_uri),
        ("deployment-name", "deploymentName", &d.deployment),
        ("model-version", "modelVersion", &d.model_version),
    ];
    if let Some(file) = std::env::var_os("GITHUB_OUTPUT") {
        let lines: String = values.iter().map(|(name, _, value)| format!("{name}={value}\n")).collect();
        crate::ci::output::append(Path::new(&file), &lines)?;
    }
    if let Some(file) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        crate::ci::output::append(Path::new(&file), &summary(d))?;
    }
    if crate::ci::Host::detect() == crate::ci::Host::AzurePipelines {
        for (_, name, value) in values {
            let line = format!(
                "##vso[task.setvariable variable={name};isOutput=true]{}\n",
                crate::ci::log::azure_escape(value)
            );
            out.write_all(crate::ci::guard::command(line).as_bytes())?;
        }
    }
    Ok(())
}
