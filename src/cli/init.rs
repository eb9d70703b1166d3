//! `flow-ci init`.

use std::io::Write;
use std::time::Duration;

use super::exec_args::ExecArgs;
use super::progress::ConsoleProgress;
use crate::jobs::check::CheckRequest;
use crate::jobs::init::{self, InitError, InitRequest, Outcome};
use model::exit;

/// Write a .flow-ci.yaml for the flows here, with gates proposed from their metrics.
///
/// Finds every flow folder with a batch run file (run.yml beside flow.dag.yaml) and the
/// evaluation run files that evaluate it (their `run:` names its run, or they read its
/// data), as `check` does without a config. Runs each flow and its evaluations once on
/// this machine, then writes a commented .flow-ci.yaml in the current folder: the flows,
/// their run files and evaluations, and gates proposed from what was measured (a 0–1
/// score gets `min` a little below its value and `max_drop: 0.02` (`max` and `max_rise`
/// when its name says lower is better); `failed_lines` the
/// share of lines that failed). With --force, the `connections:`, `llm:`, `azureml:` and
/// `deploy:` sections of the config it replaces are kept.
///
/// --github also writes .github/workflows/flow-ci.yml and --azure-pipelines
/// azure-pipelines.yml (at the repository root), the PR workflows of examples/.
///
/// Exits 2 when a file to write exists (without --force) or the flows are invalid.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  flow-ci init\n  flow-ci init --github\n  flow-ci init --no-run --azure-pipelines\n  flow-ci init --force"
)]
pub struct InitArgs {
    /// Overwrite .flow-ci.yaml and the workflow files if they exist
    #[arg(long)]
    pub force: bool,

    /// Also write .github/workflows/flow-ci.yml (GitHub Actions, on pull requests)
    #[arg(long)]
    pub github: bool,

    /// Also write azure-pipelines.yml (Azure Pipelines, on pull requests)
    #[arg(long)]
    pub azure_pipelines: bool,

    /// Run nothing: propose only `failed_lines` gates
    #[arg(long)]
    pub no_run: bool,

    /// Where the runs are stored [default: $FLOW_CI_RUNS_DIR, else .flow-ci/runs]
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<std::path::PathBuf>,

    /// Lines run at once per flow [default: number of CPUs]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    #[command(flatten)]
    pub exec: ExecArgs,
}

pub fn run(args: InitArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let req = InitRequest {
        force: args.force,
        github: args.github,
        azure_pipelines: args.azure_pipelines,
        measure: !args.no_run,
        runs: CheckRequest {
            config: None,
            base: None,
            head: None,
            all: true,
            dry_run: false,
            runs_dir: exec::store::root(args.runs_dir.as_deref()),
            python: exec::pool::default_python(args.exec.python.as_deref()),
            workers: super::workers_or_cpus(args.workers),
            line_timeout: Duration::from_secs(args.exec.line_timeout),
            parallel: 4,
            without_secrets: None,
            backend: None,
            fail_not_run: false,
            llm: args.exec.llm_flags(),
            cloud_timeout: None,
        },
    };
    let cancel = super::cancel_on_interrupt();
    let bars = indicatif::MultiProgress::new();
    let progress = |name: &str, total: usize| -> Box<dyn exec::batch::Progress> {
        Box::new(ConsoleProgress::in_group(&bars, name, total))
    };
    match init::init(&req, &progress, &cancel) {
        Ok(Outcome::Interrupted) => {
            let _ = writeln!(err, "interrupted: nothing was written");
            exit::INTERRUPTED
        }
        Ok(Outcome::Written(written)) => {
            for note in &written.notes {
                let _ = writeln!(err, "note: {note}");
            }
            for (flow, why) in &written.unmeasured {
                let _ = writeln!(err, "warning: {flow}: not measured, only `failed_lines` is gated: {why}");
            }
            let cwd = std::env::current_dir().unwrap_or_default();
            for file in &written.files {
                let shown = file.strip_prefix(&cwd).unwrap_or(file);
                if let Err(e) = writeln!(out, "wrote {}", shown.display()) {
                    return super::output_failed(&e, err);
                }
            }
            let _ = writeln!(
                err,
                "{} flow(s) configured; next: review the gates, then `flow-ci check --all`",
                written.flows
            );
            exit::OK
        }
        Err(InitError::Exists(paths)) => {
            let _ = writeln!(err, "error: {}", InitError::Exists(paths));
            let _ =
                writeln!(err, "  hint: pass --force to overwrite (connections:, llm:, azureml: and deploy: are kept)");
            exit::INVALID_INPUT
        }
        Err(e @ InitError::Folder(_)) => {
            let _ = writeln!(err, "error: {e}");
            let _ = writeln!(
                err,
                "  hint: run init in a folder whose path has only letters, digits, `_`, `-`, `.` and `/`"
            );
            exit::INVALID_INPUT
        }
        Err(InitError::Check(e)) => super::check::report_error(&e, err),
        Err(e @ InitError::Write { .. }) => {
            let _ = writeln!(err, "error: {e}");
            exit::FAILURE
        }
        Err(InitError::WrittenInvalid { path, diagnostics }) => {
            super::failure::print_diagnostics(&diagnostics, err);
            let _ =
                writeln!(err, "error: the written {} does not validate; this is a bug in flow-ci init", path.display());
            exit::FAILURE
        }
    }
}
