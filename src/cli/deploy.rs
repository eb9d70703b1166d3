//! `flow-ci deploy`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cloud::CloudArgs;
use super::exec_args::ExecArgs;
use crate::jobs::deploy::{self, DeployError, Deployed};
use model::{diag, exit};

/// Register a flow and deploy it to an Azure ML managed online endpoint; traffic moves only
/// after a smoke test passes.
///
/// Reads `deploy:` from .flow-ci.yaml (`flow`, `endpoint`, `deployment`, `instance_type`,
/// `instance_count`, `traffic`, `model`, `environment`) and the workspace from `azureml:`.
/// The flow folder is uploaded and registered as a model whose version is its content hash
/// (an unchanged flow is not registered again), the endpoint is created when missing, the
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
    after_help = "Examples:\n  flow-ci deploy --dry-run                  # every ARM call it would make, with bodies; nothing sent\n  flow-ci deploy                            # register, deploy, smoke test, shift traffic\n  flow-ci deploy --config deploy/.flow-ci.yaml --timeout 30m"
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

    #[command(flatten)]
    pub cloud: CloudArgs,

    #[command(flatten)]
    pub exec: ExecArgs,
}

pub fn run(args: DeployArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let Some(config) = load_config(args.config.as_deref(), err) else { return exit::INVALID_INPUT };
    let spec = match deploy::spec(&config) {
        Ok(s) => s,
        Err(e) => return report(&e, err),
    };
    let azureml = config.azureml_keys();
    if args.dry_run {
        return dry_run(&spec, &azureml, out, err);
    }
    if let Some(why) = failed_gates(&args.report_dir, args.ignore_gates) {
        return report(&DeployError::Gates(why), err);
    }
    let setup = match args.exec.llm_setup(Some(&config), err) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let python = exec::pool::default_python(args.exec.python.as_deref());
    let expected = match deploy::run_locally(&spec, python, &setup, Duration::from_secs(args.exec.line_timeout)) {
        Ok(e) => e,
        Err(e) => return report(&e, err),
    };
    let session = match crate::jobs::cloud::connect(&azureml, args.cloud.timeout, false) {
        Ok(s) => s,
        Err(e) => return super::cloud::report(&e, err),
    };
    let result = deploy::deploy(&session, &spec, &expected, &crate::jobs::cloud::provenance());
    let deployed = match &result {
        Ok(d) => Some(d.clone()),
        Err(DeployError::Smoke(_)) => None,
        Err(e) => return report(e, err),
    };
    if let Some(d) = &deployed {
        if let Err(e) = write_outputs(d, &args.report_dir, out) {
            let _ = writeln!(err, "warning: cannot write the deploy outputs: {e}");
        }
        let _ = writeln!(out, "{}", summary(d));
    }
    match result {
        Ok(_) => exit::OK,
        Err(e) => report(&e, err),
    }
}

fn load_config(path: Option<&Path>, err: &mut dyn Write) -> Option<model::config::Config> {
    let file = path.unwrap_or(Path::new(model::config::CONFIG_FILE));
    if !file.is_file() {
        let _ = writeln!(
            err,
            "error: {} not found; `flow-ci deploy` reads `deploy:` and `azureml:` from it",
            file.display()
        );
        return None;
    }
    let mut diags = diag::Diagnostics::default();
    let config = model::config::load(file, &mut diags);
    if diags.has_errors() {
        let base = std::env::current_dir().unwrap_or_default();
        for d in diags.into_sorted() {
            let _ = err.write_all(diag::render_human(&d, &base).as_bytes());
        }
        return None;
    }
    config
}

fn dry_run(spec: &deploy::Spec, azureml: &[(String, String)], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let workspace = match backend::azureml::workspace::WorkspaceRef::resolve(azureml, &|k| std::env::var(k).ok()) {
        Ok(w) => w,
        Err(e) => return super::cloud::report(&e, err),
    };
    let arm = backend::azureml::client::Cloud::from_env().arm_url;
    let calls = match deploy::dry_run(spec, workspace, arm) {
        Ok(c) => c,
        Err(e) => return report(&e, err),
    };
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
    exit::OK
}

/// Why the last check stops a deploy, unless told to ignore it.
fn failed_gates(report_dir: &Path, ignore: bool) -> Option<String> {
    let path = report_dir.join("report.json");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    (report.get("passed") == Some(&serde_json::Value::Bool(false)) && !ignore)
        .then(|| format!("{} says a gate failed: fix it and check again, or pass --ignore-gates", path.display()))
}

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
            writeln!(
                out,
                "##vso[task.setvariable variable={name};isOutput=true]{}",
                crate::ci::log::azure_escape(value)
            )?;
        }
    }
    Ok(())
}

fn report(e: &DeployError, err: &mut dyn Write) -> u8 {
    if let DeployError::Cloud(c) = e {
        return super::cloud::report(c, err);
    }
    let _ = writeln!(err, "error: {e}");
    e.exit_code()
}
