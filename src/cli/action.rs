//! `flow-ci action`: the GitHub container action's entry point.

use std::io::Write;

use clap::Parser;

use crate::ci::action;
use model::exit;

/// The GitHub action's entry point: reads the action's inputs (INPUT_* variables) and runs `check`.
///
/// action.yml runs the image with this subcommand. Each input becomes a `check`
/// argument (`base` → --base, `working-directory` → -C, `dry-run: true` → --dry-run,
/// ...), the comment goes to the pull request with `github-token`, and the outputs
/// `passed`, `report-path`, `failed-gates` are written to $GITHUB_OUTPUT. Inputs are
/// never interpolated into a shell.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  # what the action's container runs:\n  env 'INPUT_DRY-RUN=true' INPUT_BASE=origin/main flow-ci action\n  # the same as:\n  flow-ci check --publish github --base origin/main --dry-run"
)]
pub struct ActionArgs {}

pub fn run(_: ActionArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let env = |k: &str| std::env::var(k).ok();
    let argv = match action::check_command(&env) {
        Ok(argv) => argv,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return exit::INVALID_INPUT;
        }
    };
    for (name, value) in action::azure_variables(&env) {
        // SAFETY: set once at start-up, before flow-ci starts any thread; the
        // python workers and the Entra sign-in read them from the environment.
        unsafe { std::env::set_var(name, value) };
    }
    let _ = writeln!(err, "flow-ci action: {}", argv[1..].join(" "));
    match super::Cli::try_parse_from(&argv) {
        Ok(cli) => super::run(cli, out, err),
        Err(e) => {
            let _ = write!(err, "{e}");
            exit::INVALID_INPUT
        }
    }
}
