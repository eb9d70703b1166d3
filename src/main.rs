//! The flow-ci binary: parse arguments, set up logging, run, exit.

use std::process::ExitCode;

use clap::Parser;
use flow_ci::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    // Unlocked handles: each write takes the lock briefly. Holding stderr's
    // lock for the whole run would deadlock a worker thread that logs while
    // the main thread waits for it.
    let code = cli::run(cli, &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(code)
}

/// Logs go to stderr so stdout stays clean for results (JSON, Markdown).
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "flow_ci=debug,info",
        _ => "flow_ci=trace,debug",
    };
    let filter = EnvFilter::try_from_env("FLOW_CI_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
