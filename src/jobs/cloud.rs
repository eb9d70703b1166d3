//! Azure ML for the jobs: signing in to the workspace, and the commit and
//! branch that runs are tagged with.

use std::io::Write;
use std::time::{Duration, Instant};

use backend::azureml::{AzureMlError, Provenance, Session, Settings};

/// Signs in and opens the workspace named by `azureml` (the config's keys,
/// else `AZUREML_*`, else config.json). Progress lines go to stderr;
/// `timeout` cancels runs still going then.
pub fn connect(azureml: &[(String, String)], timeout: Option<Duration>, stream: bool) -> Result<Session, AzureMlError> {
    let settings = Settings {
        poll: poll_interval(),
        deadline: timeout.map(|t| Instant::now() + t),
        stall: stall_limit(),
        stream,
        // Progress lines carry the service's messages: through the guard.
        say: Box::new(|text| {
            let _ = writeln!(crate::ci::guard::Guard::new(std::io::stderr()), "{text}");
        }),
    };
    Session::connect(azureml, settings)
}

/// The longest wait between status polls: 10 s, or
/// `FLOW_CI_AZUREML_POLL_MS` (tests poll faster).
fn poll_interval() -> Duration {
    duration_from_env("FLOW_CI_AZUREML_POLL_MS", Duration::from_millis).unwrap_or(Duration::from_secs(10))
}

/// A whole number of `unit`s from the environment variable `var`.
fn duration_from_env(var: &str, unit: fn(u64) -> Duration) -> Option<Duration> {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).map(unit)
}

/// How long a run may stay `Paused` or `NotResponding`: 30 minutes, or
/// `FLOW_CI_AZUREML_STALL_SECS` (tests wait less).
fn stall_limit() -> Duration {
    duration_from_env("FLOW_CI_AZUREML_STALL_SECS", Duration::from_secs).unwrap_or(Duration::from_secs(30 * 60))
}

/// The commit being checked (`HEAD`) and its branch, from the CI
/// environment (a PR's source branch) or git.
pub fn provenance() -> Provenance {
    let git = crate::detect::git::Git::open(std::path::Path::new(".")).ok();
    let commit = git.as_ref().and_then(|g| g.resolve("HEAD").ok());
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let branch = env("GITHUB_HEAD_REF")
        .or_else(|| env("SYSTEM_PULLREQUEST_SOURCEBRANCH"))
        .or_else(|| env("GITHUB_REF_NAME"))
        .or_else(|| env("BUILD_SOURCEBRANCH"))
        .map(|b| b.trim_start_matches("refs/heads/").to_string())
        .or_else(|| git.as_ref().and_then(|g| g.current_branch()));
    Provenance { commit, branch }
}
