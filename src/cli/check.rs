//! `flow-ci check`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::flow::ExecArgs;
use super::progress::ConsoleProgress;
use crate::check::{self, CheckError, CheckRequest, Plan};
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

    /// Flows run at once (each with its own workers)
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallel: usize,

    #[command(flatten)]
    pub exec: ExecArgs,
}

/// The hidden marker that identifies flow-ci's sticky PR comment.
pub const COMMENT_MARKER: &str = "<!-- flow-ci:report -->";

pub fn run(args: CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let req = CheckRequest {
        config: args.config.clone(),
        base: args.base.clone(),
        head: args.head.clone(),
        all: args.all,
        runs_dir: crate::runs::root(args.runs_dir.as_deref()),
        python: crate::exec::pool::default_python(args.exec.python.as_deref()),
        workers: args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1),
        line_timeout: Duration::from_secs(args.exec.line_timeout),
        parallel: args.parallel.max(1),
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
    let cancel = super::cancel_on_interrupt();
    // Flows run at once: one labelled bar each.
    let bars = indicatif::MultiProgress::new();
    let progress = |name: &str, total: usize| -> Box<dyn crate::exec::batch::Progress> {
        Box::new(ConsoleProgress::in_group(&bars, name, total))
    };
    let report = match check::execute(&plan, &req, &cancel, &progress, &setup) {
        Ok(r) => r,
        Err(e) => return report_error(&e, err),
    };
    if cancel.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = writeln!(err, "interrupted: runs were canceled; no reports written");
        return exit::INTERRUPTED;
    }
    if let Err(e) = write_reports(&report, &args) {
        let _ = writeln!(err, "error: cannot write reports to {}: {e}", args.report_dir.display());
        return exit::FAILURE;
    }
    if let Err(e) = out.write_all(report::console(&report).as_bytes()) {
        return super::output_failed(&e, err);
    }
    if let Err(e) = publish_to_host(&report, out) {
        let _ = writeln!(err, "warning: cannot write the CI job summary: {e}");
    }
    let _ = writeln!(err, "reports: {}", args.report_dir.display());
    if report.flows.iter().any(|f| !f.errors.is_empty()) {
        exit::FAILURE
    } else if report.passed {
        exit::OK
    } else {
        exit::GATE_FAILED
    }
}

fn write_reports(report: &check::Report, args: &CheckArgs) -> std::io::Result<()> {
    std::fs::create_dir_all(&args.report_dir)?;
    std::fs::write(args.report_dir.join("report.md"), report::markdown(report, COMMENT_MARKER))?;
    std::fs::write(args.report_dir.join("junit.xml"), report::junit(report))?;
    std::fs::write(args.report_dir.join("report.json"), serde_json::to_string_pretty(report)? + "\n")?;
    if let Some(path) = &args.write_baseline {
        std::fs::write(path, serde_json::to_string_pretty(&check::baseline_document(report))? + "\n")?;
    }
    Ok(())
}

/// Inside GitHub Actions: the report as the job summary and an annotation per
/// failed gate; inside Azure Pipelines: a logged issue per failed gate (the
/// exit code fails the step).
fn publish_to_host(report: &check::Report, out: &mut dyn Write) -> std::io::Result<()> {
    let failures = report.flows.iter().flat_map(|f| f.verdict.failed().map(move |r| (f, r)));
    match crate::ci::Host::detect() {
        crate::ci::Host::GitHubActions => {
            for (flow, r) in failures {
                writeln!(
                    out,
                    "::error file={},title={}::{}",
                    diag::github_property(&format!("{}/flow.dag.yaml", flow.path)),
                    diag::github_property(&format!("flow-ci gate {}", r.metric)),
                    diag::github_data(&r.explanation)
                )?;
            }
            if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
                let mut file = std::fs::OpenOptions::new().create(true).append(true).open(summary)?;
                file.write_all(report::markdown(report, COMMENT_MARKER).as_bytes())?;
            }
        }
        crate::ci::Host::AzurePipelines => {
            for (flow, r) in failures {
                writeln!(
                    out,
                    "##vso[task.logissue type=error;sourcepath={}/flow.dag.yaml;code=gate-failed;]{}: {}",
                    diag::azure_escape(&flow.path),
                    diag::azure_escape(&r.metric),
                    diag::azure_escape(&r.explanation)
                )?;
            }
        }
        crate::ci::Host::Local => {}
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
