//! The flow-ci binary: parse arguments, set up logging, run, exit.

use std::process::ExitCode;

use clap::Parser;
use flow_ci::ci::Host;
use flow_ci::ci::guard::{self, Guard};
use flow_ci::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Inside a CI host, untrusted text (data, model answers, node output)
    // must not run logging commands: both outputs go through the guard.
    let in_ci = Host::detect() != Host::Local;
    if in_ci {
        guard::arm();
    }
    init_logging(cli.verbose, in_ci);
    // Unlocked handles: each write takes the lock briefly. Holding stderr's
    // lock for the whole run would deadlock a worker thread that logs while
    // the main thread waits for it.
    let code = if in_ci {
        cli::run(cli, &mut Guard::new(std::io::stdout()), &mut Guard::new(std::io::stderr()))
    } else {
        cli::run(cli, &mut std::io::stdout(), &mut std::io::stderr())
    };
    ExitCode::from(code)
}

/// Logs go to stderr so stdout stays clean for results (JSON, Markdown).
fn init_logging(verbose: u8, in_ci: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "flow_ci=debug,info",
        _ => "flow_ci=trace,debug",
    };
    let filter = EnvFilter::try_from_env("FLOW_CI_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if in_ci {
        builder.with_writer(|| Guard::new(std::io::stderr())).init();
    } else {
        builder.with_writer(std::io::stderr).init();
    }
}
