//! Exit codes: a contract with every CI system that runs flow-ci.

/// All gates passed (or nothing to do).
pub const OK: u8 = 0;
/// A gate failed.
pub const GATE_FAILED: u8 = 1;
/// Invalid input: command line, config, flow, run file or data.
pub const INVALID_INPUT: u8 = 2;
/// Execution or service failure: a run failed, an API errored, a timeout.
pub const FAILURE: u8 = 3;
/// Interrupted (Ctrl-C / SIGTERM); submitted cloud runs were cancelled.
pub const INTERRUPTED: u8 = 130;
