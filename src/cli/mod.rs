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

/// Every `--help` example can be pasted: clap wraps `after_help` text to the
/// terminal like prose (clap_builder's `write_after_help` calls `wrap`, with
/// no way to mark a block verbatim), so each example line stays short enough
/// for an 80-column terminal, a long command continues on the next line with
/// a shell `\`, and every example is a command line clap accepts.
#[cfg(test)]
mod help_examples {
    use super::*;
    use clap::CommandFactory;

    fn walk(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, format!("{path} {}", sub.get_name()), out);
        }
        out.push((path, cmd.clone()));
    }

    fn commands() -> Vec<(String, clap::Command)> {
        let mut out = Vec::new();
        let mut root = Cli::command();
        root.build();
        walk(&root, "flow-ci".into(), &mut out);
        out
    }

    /// The words of one shell command line as bash splits them, up to a
    /// pipe, a redirection or a comment (enough for the examples: single and
    /// double quotes, no escapes inside them).
    fn words(line: &str) -> Vec<String> {
        let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '\'' | '"') => (quote, in_word) = (Some(c), true),
                (None, c) if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                }
                (None, '#' | '|' | '>') if !in_word => break,
                (None, c) => (word.push(c), in_word = true).1,
            }
        }
        assert!(quote.is_none(), "unterminated quote in {line:?}");
        if in_word {
            words.push(word);
        }
        words
    }

    /// The example commands of a help text, `\` continuations joined.
    fn examples(text: &str) -> Vec<String> {
        let mut commands = Vec::new();
        let mut pending = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                continue;
            }
            let whole = std::mem::take(&mut pending) + line;
            if let Some(at) = whole.find("flow-ci ").filter(|_| !whole.starts_with('#')) {
                commands.push(whole[at..].to_string());
            }
        }
        commands
    }

    #[test]
    fn examples_are_not_wrapped_at_80_columns() {
        let mut wrapped = Vec::new();
        for (path, cmd) in commands() {
            let Some(after) = cmd.get_after_help().map(|s| s.to_string()) else { continue };
            let help = cmd.clone().term_width(80).render_help().to_string();
            if !help.contains(&after) {
                let long = after.lines().filter(|l| !help.contains(&format!("{l}\n")));
                wrapped.push(format!("`{path} --help`: {:?}", long.collect::<Vec<_>>()));
            }
        }
        assert!(wrapped.is_empty(), "examples wrapped at 80 columns:\n{}", wrapped.join("\n"));
    }

    #[test]
    fn examples_parse() {
        let mut seen = 0;
        for (path, cmd) in commands() {
            let Some(after) = cmd.get_after_help().map(|s| s.to_string()) else { continue };
            for example in examples(&after) {
                let args = words(&example);
                assert_eq!(args.first().map(String::as_str), Some("flow-ci"), "{example}");
                if let Err(e) = Cli::command().try_get_matches_from(&args) {
                    panic!("`{path} --help` example `{example}` does not parse: {e}");
                }
                seen += 1;
            }
        }
        assert!(seen > 30, "only {seen} examples found");
    }

    #[test]
    fn words_split_as_bash_does() {
        assert_eq!(words("flow-ci a='b c' \"d\" # e"), ["flow-ci", "a=b c", "d"]);
        assert_eq!(words("flow-ci schema > x.json"), ["flow-ci", "schema"]);
        assert_eq!(examples("  flow-ci run create \\\n    --stream\n  # flow-ci no"), ["flow-ci run create --stream"]);
    }
}
