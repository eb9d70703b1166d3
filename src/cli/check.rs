//! `flow-ci check`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::cloud::CloudArgs;
use super::flow::ExecArgs;
use super::progress::ConsoleProgress;
use crate::check::{self, CheckError, CheckRequest, Plan};
use crate::ci::Host;
use crate::{diag, exit, report};

/// The PR job: run the changed flows and their evaluations, compare with the
/// baseline, apply the gates, and write the reports.
///
/// Reads .flow-ci.yaml (or, without one, takes every flow folder with a batch run.yml
/// and the evaluation run files that name it or read its data), validates everything,
/// selects the flows changed since the merge base with --base (all flows with --all or
/// without --base), runs each flow's batch run and its evaluation runs (their `run:`
/// bound to the batch run; several flows at once), computes the baseline
/// (`base-branch`: the same runs at the merge base, in a temporary git worktree;
/// `file:PATH`: a committed metrics file; `none`), checks every gate and writes
/// .flow-ci/report/{report.md,report.json,junit.xml}.
///
/// Exit codes: 0 all gates passed · 1 a gate failed · 2 invalid input · 3 a run
/// could not execute · 130 interrupted.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  flow-ci check --base origin/main            # the changed flows, against the base branch\n  flow-ci check --all --dry-run              # print the plan, run nothing\n  flow-ci check --all --write-baseline baseline.json"
)]
pub struct CheckArgs {
    /// The .flow-ci.yaml to use [default: ./.flow-ci.yaml, else conventions]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The branch or commit the change is compared with (selects changed flows, and the base-branch baseline)
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,

    /// The commit with the change [default: the working tree]
    #[arg(long, value_name = "REF")]
    pub head: Option<String>,

    /// Check every configured flow, changed or not
    #[arg(long)]
    pub all: bool,

    /// Print the plan and validate everything; run nothing, write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Where reports are written
    #[arg(long, value_name = "DIR", default_value = ".flow-ci/report")]
    pub report_dir: PathBuf,

    /// Also write the head metrics as a baseline file (for `baseline: file:PATH`)
    #[arg(long, value_name = "PATH")]
    pub write_baseline: Option<PathBuf>,

    /// Where runs are stored [default: $FLOW_CI_RUNS_DIR, else .flow-ci/runs]
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,

    /// Lines run at once per flow [default: number of CPUs]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Where the PR comment goes (auto: GitHub in GitHub Actions, Azure DevOps in Azure Pipelines, none elsewhere)
    #[arg(long, value_enum, value_name = "FORGE", default_value = "auto")]
    pub publish: Publish,

    /// update: one comment per PR, updated in place; new: a comment per run; off: none
    #[arg(long, value_enum, value_name = "MODE", default_value = "update")]
    pub comment_mode: crate::publish::Mode,

    /// Exit 1 when a gate fails; with false, gate failures are reported but exit 0
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub fail_on_gate: bool,

    /// Where runs execute: local (the embedded executor) or azureml (the workspace from `azureml:`
    /// in .flow-ci.yaml, AZUREML_* or config.json) [default: .flow-ci.yaml `backend:`, else local]
    #[arg(long, value_enum)]
    pub backend: Option<crate::config::Backend>,

    #[command(flatten)]
    pub cloud: CloudArgs,

    /// Flows run at once (each with its own workers)
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallel: usize,

    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Publish {
    Auto,
    Github,
    AzureDevops,
    None,
}

pub fn run(args: CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let host = Host::detect();
    let forge = super::publish::forge(args.publish, host);
    let context = crate::ci::Context::detect(if host == Host::Local { forge.unwrap_or(Host::Local) } else { host });
    // Inside CI the event says what the change is (with --all too: it is
    // still the baseline); flags win.
    let base = args.base.clone().or_else(|| context.base.clone());
    if let (None, Some(base)) = (&args.base, &base) {
        let _ = writeln!(err, "base: {base} (from {})", context.base_source);
    }
    let req = CheckRequest {
        config: args.config.clone(),
        base,
        head: args.head.clone(),
        all: args.all,
        runs_dir: crate::runs::root(args.runs_dir.as_deref()),
        python: crate::exec::pool::default_python(args.exec.python.as_deref()),
        workers: super::workers_or_cpus(args.workers),
        line_timeout: Duration::from_secs(args.exec.line_timeout),
        parallel: args.parallel.max(1),
        without_secrets: context
            .pull_request
            .as_ref()
            .is_some_and(crate::ci::PullRequest::is_fork)
            .then(|| "this pull request comes from a fork, which gets no secrets".to_string()),
        backend: args.backend,
    };
    let plan = match check::plan(&req) {
        Ok(p) => p,
        Err(e) => return report_error(&e, err),
    };
    print_plan(&plan, err);
    if args.dry_run {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&plan).unwrap_or_default());
        return exit::OK;
    }
    let setup = match args.exec.llm_setup(args.config.as_deref(), err) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let session = match plan.backend.as_str() {
        "azureml" if req.without_secrets.is_some() => {
            let _ = writeln!(err, "azureml: flows not run: {}", req.without_secrets.as_deref().unwrap_or_default());
            None
        }
        "azureml" => match super::cloud::connect(&plan.azureml, &args.cloud, false, err) {
            Ok(s) => Some(s),
            Err(code) => return code,
        },
        _ => None,
    };
    let cloud = session
        .as_ref()
        .map(|session| crate::azureml::run::CloudRun { session, provenance: super::cloud::provenance() });
    let cancel = super::cancel_on_interrupt();
    // Flows run at once: one labelled bar each.
    let bars = indicatif::MultiProgress::new();
    let progress = |name: &str, total: usize| -> Box<dyn crate::exec::batch::Progress> {
        Box::new(ConsoleProgress::in_group(&bars, name, total))
    };
    let report = match check::execute(&plan, &req, &cancel, &progress, &setup, cloud) {
        Ok(r) => r,
        Err(e) => return report_error(&e, err),
    };
    if cancel.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = writeln!(err, "interrupted: runs were canceled; no reports written");
        return exit::INTERRUPTED;
    }
    let marker = crate::publish::marker(config_id(&plan).as_deref());
    let markdown = report::markdown(&report, &marker);
    if let Err(e) = write_reports(&report, &markdown, &args) {
        let _ = writeln!(err, "error: cannot write reports to {}: {e}", args.report_dir.display());
        return exit::FAILURE;
    }
    if let Err(e) = out.write_all(report::console(&report).as_bytes()) {
        return super::output_failed(&e, err);
    }
    let _ = writeln!(err, "reports: {}", args.report_dir.display());
    let code = if report.flows.iter().any(|f| !f.errors.is_empty()) {
        exit::FAILURE
    } else if report.passed || !args.fail_on_gate {
        exit::OK
    } else {
        exit::GATE_FAILED
    };
    let host_report = super::publish::HostReport { report: &report, markdown: &markdown, report_dir: &args.report_dir };
    super::publish::to_host(host, &host_report, out, err);
    if let Some(pr) = forge.and(context.pull_request.as_ref()) {
        super::publish::comment(pr, &markdown, &marker, report.passed, args.comment_mode, out, err);
    } else if forge.is_some() && args.publish != Publish::Auto {
        let _ = writeln!(err, "comment: not posted: this build is not for a pull request flow-ci can comment on");
    }
    code
}

/// The config's path from the repository root, which tells comments of two
/// configs in one repository apart.
fn config_id(plan: &Plan) -> Option<String> {
    let config = plan.config.as_ref()?.canonicalize().ok()?;
    let root = crate::git::Git::open(std::path::Path::new(".")).ok()?.root.canonicalize().ok()?;
    Some(config.strip_prefix(root).ok()?.to_string_lossy().replace('\\', "/"))
}

fn write_reports(report: &check::Report, markdown: &str, args: &CheckArgs) -> std::io::Result<()> {
    std::fs::create_dir_all(&args.report_dir)?;
    std::fs::write(args.report_dir.join("report.md"), markdown)?;
    std::fs::write(args.report_dir.join("junit.xml"), report::junit(report))?;
    std::fs::write(args.report_dir.join("report.json"), serde_json::to_string_pretty(report)? + "\n")?;
    if let Some(path) = &args.write_baseline {
        std::fs::write(path, serde_json::to_string_pretty(&check::baseline_document(report))? + "\n")?;
    }
    Ok(())
}

fn print_plan(plan: &Plan, err: &mut dyn Write) {
    let config = plan.config.as_ref().map_or_else(|| "none (conventions)".to_string(), |c| c.display().to_string());
    let _ = writeln!(err, "plan: config {config}, backend {}, baseline {}", plan.backend, plan.baseline);
    for flow in &plan.flows {
        let _ = writeln!(err, "  {} ({})", flow.path, flow.reasons.join(", "));
        if let Some(run) = &flow.run_file {
            let _ = writeln!(err, "    batch run:  {}", run.display());
        }
        for (i, e) in flow.evaluations.iter().enumerate() {
            let how = flow.evaluations_found.get(i).map(|w| format!(" (found by convention: {w})")).unwrap_or_default();
            let _ = writeln!(err, "    evaluation: {}{how}", e.display());
        }
        let gates: Vec<&str> = flow.gates.iter().map(|g| g.metric.value.as_str()).collect();
        if !gates.is_empty() {
            let _ = writeln!(err, "    gates:      {}", gates.join(", "));
        }
    }
    for path in &plan.skipped {
        let _ = writeln!(err, "  {path} (not changed, skipped)");
    }
}

fn report_error(e: &CheckError, err: &mut dyn Write) -> u8 {
    let base = std::env::current_dir().unwrap_or_default();
    match e {
        CheckError::Invalid(diags) => {
            for d in diags {
                let _ = err.write_all(diag::render_human(d, &base).as_bytes());
            }
            let _ = writeln!(err, "error: {} error(s); nothing was run", diags.len());
            exit::INVALID_INPUT
        }
        CheckError::Detect(d) => {
            let _ = writeln!(err, "error: {d}");
            if let Some(hint) = d.hint() {
                let _ = writeln!(err, "  hint: {hint}");
            }
            exit::INVALID_INPUT
        }
        CheckError::Git(g) => {
            let _ = writeln!(err, "error: {g}");
            if let Some(hint) = g.hint() {
                let _ = writeln!(err, "  hint: {hint}");
            }
            exit::INVALID_INPUT
        }
        CheckError::Baseline(message) => {
            let _ = writeln!(err, "error: {message}");
            exit::INVALID_INPUT
        }
    }
}
