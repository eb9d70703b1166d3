//! The command line: argument definitions (their doc comments are `--help`)
//! and one handler per subcommand. Handlers write results to `out`, never
//! print directly, and return the process exit code.

mod action;
mod check;
mod cloud;
mod deploy;
mod detect;
mod exec_args;
mod failure;
mod flow;
mod init;
mod progress;
mod run;
mod run_view;
mod schema;
mod serve;
mod shell;
mod validate;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Prompt flows in CI/CD: validate promptflow flows, find the ones a change touches, and more.
///
/// flow-ci reads Microsoft promptflow's files unchanged: `flow.dag.yaml` folders,
/// run files (`run.yml`) and evaluation run files, plus an optional `.flow-ci.yaml`.
#[derive(Debug, Parser)]
#[command(name = "flow-ci", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Examples:\n  flow-ci init --github               # .flow-ci.yaml and a PR workflow\n  flow-ci validate                    # every flow, run file and config below .\n  flow-ci detect --base origin/main   # flows changed since the merge base\n\nExit codes: 0 ok · 1 gate failed · 2 invalid input · 3 execution failure\n· 130 interrupted"
)]
pub struct Cli {
    /// Run as if flow-ci was started in DIR
    #[arg(short = 'C', long = "dir", global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// More logging (-v debug, -vv trace); FLOW_CI_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The PR job: run changed flows and evaluations, gate on metrics, write reports
    Check(check::CheckArgs),
    /// Write a .flow-ci.yaml for the flows here, with gates proposed from their metrics
    Init(init::InitArgs),
    Validate(validate::Args),
    Detect(detect::Args),
    /// Run flows locally (like `pf flow test`), push them to Azure ML (`pfazure flow create`)
    Flow(flow::FlowArgs),
    /// Serve a flow over HTTP (like `pf flow serve`)
    Serve(serve::ServeArgs),
    /// The GitHub action's entry point (reads INPUT_* variables, runs check)
    Action(action::ActionArgs),
    /// Batch and evaluation runs, and the run store (like `pf run`)
    Run(run::RunArgs),
    /// Register a flow and deploy it to an Azure ML online endpoint (smoke test, then traffic)
    Deploy(deploy::DeployArgs),
    Schema(schema::Args),
    Completions(shell::CompletionsArgs),
    Man(shell::ManArgs),
}

/// How results are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people; inside GitHub Actions / Azure Pipelines, annotations are added
    Human,
    /// One JSON document on stdout (stable schema)
    Json,
    /// GitHub Actions workflow commands (`::error file=...`)
    Github,
    /// Azure Pipelines logging commands (`##vso[task.logissue ...]`)
    Azure,
}

/// `--workers`, else one python worker per CPU.
fn workers_or_cpus(workers: Option<usize>) -> usize {
    workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1)
}

/// How long a second Ctrl-C waits for runs to record themselves before
/// exiting anyway.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A flag set by the first Ctrl-C (or SIGTERM): runs finish the lines in
/// flight and are recorded as Canceled. A second one stops now: the python
/// workers are killed, so lines in flight end as Canceled and the run is
/// still recorded (run.json, output.jsonl) before exit 130; after
/// [`STOP_GRACE`], or at a third one, flow-ci exits at once, workers killed.
fn cancel_on_interrupt() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = cancel.clone();
    let signals = AtomicUsize::new(0);
    let _ = ctrlc::set_handler(move || match signals.fetch_add(1, Ordering::SeqCst) {
        0 => {
            flag.store(true, Ordering::SeqCst);
            notice("\ninterrupted: finishing the lines in flight, cancelling Azure ML runs (Ctrl-C again to stop now)");
        }
        1 => {
            notice("\ninterrupted again: stopping the lines in flight now");
            exec::pool::stop_now();
            std::thread::spawn(|| {
                std::thread::sleep(STOP_GRACE);
                hard_exit();
            });
        }
        _ => hard_exit(),
    });
    cancel
}

/// The last resort: no python worker may outlive flow-ci.
fn hard_exit() {
    exec::pool::kill_all();
    std::process::exit(i32::from(model::exit::INTERRUPTED));
}

#[allow(clippy::print_stderr)] // a signal handler has no writer to use
fn notice(text: &str) {
    eprintln!("{text}");
}

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    if let Some(dir) = &cli.dir
        && let Err(e) = std::env::set_current_dir(dir)
    {
        let _ = writeln!(err, "error: cannot change to {}: {e}", dir.display());
        return model::exit::INVALID_INPUT;
    }
    match cli.command {
        Command::Check(args) => check::run(args, out, err),
        Command::Deploy(args) => deploy::run(args, out, err),
        Command::Init(args) => init::run(args, out, err),
        Command::Validate(args) => validate::run(args, out, err),
        Command::Detect(args) => detect::run(args, out, err),
        Command::Flow(args) => flow::run(args, out, err),
        Command::Serve(args) => serve::run(args, out, err),
        Command::Action(args) => action::run(args, out, err),
        Command::Run(args) => run::run(args, out, err),
        Command::Schema(args) => schema::run(args, out, err),
        Command::Completions(args) => shell::completions(args, out, err),
        Command::Man(args) => shell::man(args, out, err),
    }
}

/// Whether text for people gets colors on the process's stdout or stderr:
/// on a terminal, unless `NO_COLOR` is set; `CLICOLOR_FORCE=1` gives colors
/// when piped too (anstream's rules, as clap's `--help` follows them).
fn colors(stderr: bool) -> bool {
    let choice = if stderr {
        anstream::AutoStream::choice(&std::io::stderr())
    } else {
        anstream::AutoStream::choice(&std::io::stdout())
    };
    choice != anstream::ColorChoice::Never
}

/// A closed stdout (`flow-ci ... | head`) is not an error worth a message;
/// anything else is reported.
fn output_failed(e: &std::io::Error, err: &mut dyn Write) -> u8 {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return model::exit::OK;
    }
    let _ = writeln!(err, "error: cannot write output: {e}");
    model::exit::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
