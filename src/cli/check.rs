//! `flow-ci check`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::cloud::CloudArgs;
use super::exec_args::ExecArgs;
use super::progress::ConsoleProgress;
use crate::ci::Host;
use crate::jobs::check::{self, CheckError, CheckRequest, Outcome, Publishing};
use crate::publish::{self, Forge};

/// What a flow that cannot run without secrets does to the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MissingSecrets {
    Skip,
    Fail,
}
use model::exit;

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
    after_help = "Examples:\n  flow-ci check --base origin/main   # the changed flows, against the base\n  flow-ci check --all --dry-run      # print the plan, run nothing\n  flow-ci check --all --write-baseline baseline.json"
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
    pub publish: Forge,

    /// update: one comment per PR, updated in place; new: a comment per run; off: none
    #[arg(long, value_enum, value_name = "MODE", default_value = "update")]
    pub comment_mode: publish::Mode,

    /// A flow that needs a secret this build lacks (a fork's pull request): skip reports it as
    /// not run and passes; fail fails the check (exit 1)
    #[arg(long, value_enum, value_name = "WHAT", default_value = "skip")]
    pub on_missing_secrets: MissingSecrets,

    /// Exit 1 when a gate fails; with false, gate failures are reported but exit 0
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub fail_on_gate: bool,

    /// Where runs execute: local (the embedded executor) or azureml (the workspace from `azureml:`
    /// in .flow-ci.yaml, AZUREML_* or config.json) [default: .flow-ci.yaml `backend:`, else local]
    #[arg(long, value_enum)]
    pub backend: Option<model::config::Backend>,

    #[command(flatten)]
    pub cloud: CloudArgs,

    /// Flows run at once (each with its own workers)
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallel: usize,

    #[command(flatten)]
    pub exec: ExecArgs,
}

pub fn run(args: CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let host = Host::detect();
    let forge = publish::forge(args.publish, host);
    let context = crate::ci::Context::detect(if host == Host::Local { forge.unwrap_or(Host::Local) } else { host });
    if let Some(why) = &context.refused {
        let _ = writeln!(err, "error: {why}");
        return exit::INVALID_INPUT;
    }
    // A change the host announced but flow-ci cannot read must not turn
    // into "check everything, no baseline" in silence.
    if let (Some(problem), None) = (&context.problem, &args.base) {
        let _ = writeln!(err, "error: {problem}");
        let _ = writeln!(err, "  hint: without the event flow-ci cannot tell the change; pass --base REF to name it");
        return exit::INVALID_INPUT;
    }
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
        dry_run: args.dry_run,
        runs_dir: exec::store::root(args.runs_dir.as_deref()),
        python: exec::pool::default_python(args.exec.python.as_deref()),
        workers: super::workers_or_cpus(args.workers),
        line_timeout: Duration::from_secs(args.exec.line_timeout),
        parallel: args.parallel.max(1),
        without_secrets: context
            .pull_request
            .as_ref()
            .is_some_and(crate::ci::PullRequest::is_fork)
            .then(|| "this pull request comes from a fork, which gets no secrets".to_string()),
        backend: args.backend,
        fail_not_run: args.on_missing_secrets == MissingSecrets::Fail,
        llm: args.exec.llm_flags(),
        cloud_timeout: args.cloud.timeout,
    };
    let publishing = Publishing {
        report_dir: args.report_dir.clone(),
        write_baseline: args.write_baseline.clone(),
        host,
        forge,
        pull_request: context.pull_request.clone(),
        comment_mode: args.comment_mode,
        forge_named: args.publish != Forge::Auto,
    };
    let cancel = super::cancel_on_interrupt();
    // Flows run at once: one labelled bar each.
    let bars = indicatif::MultiProgress::new();
    let progress = |name: &str, total: usize| -> Box<dyn exec::batch::Progress> {
        Box::new(ConsoleProgress::in_group(&bars, name, total))
    };
    match check::check(&req, &publishing, &progress, &cancel, out, err) {
        Ok(Outcome::Planned(plan)) => {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&plan).unwrap_or_default());
            exit::OK
        }
        Ok(Outcome::Interrupted) => exit::INTERRUPTED,
        Ok(Outcome::Checked(report)) if report.flows.iter().any(|f| !f.errors.is_empty()) => errors_exit(&report),
        Ok(Outcome::Checked(report)) if report.passed || !args.fail_on_gate => exit::OK,
        Ok(Outcome::Checked(_)) => exit::GATE_FAILED,
        Err(e) => report_error(&e, err),
    }
}

/// A flow's run that stopped on its input (data, requirements) is exit 2,
/// as `run create` gives for it; any other run that could not execute is 3.
fn errors_exit(report: &crate::report::Report) -> u8 {
    let errors = || report.flows.iter().flat_map(|f| &f.errors);
    if errors().any(|e| e.invalid_input) { exit::INVALID_INPUT } else { exit::FAILURE }
}

pub(super) fn report_error(e: &CheckError, err: &mut dyn Write) -> u8 {
    match e {
        CheckError::Invalid(diags) => {
            super::failure::print_diagnostics(diags, err);
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
        CheckError::NothingToCheck(_) => {
            let _ = writeln!(err, "error: {e}");
            let _ = writeln!(
                err,
                "  hint: name the flows and their run files in .flow-ci.yaml, or add a run.yml beside flow.dag.yaml"
            );
            exit::INVALID_INPUT
        }
        CheckError::Llm(e) => super::exec_args::report_setup_error(e, err),
        CheckError::Cloud(e) => super::cloud::report(e, err),
        CheckError::Reports { .. } => {
            let _ = writeln!(err, "error: {e}");
            exit::FAILURE
        }
        CheckError::Output(e) => super::output_failed(e, err),
    }
}
