//! The command-line side of `--backend azureml`: flags shared by `run
//! create` and `check`, signing in, and the commit and branch runs are
//! tagged with.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::azureml::{AzureMlError, Provenance, Session, Settings};
use crate::config::Backend;

#[derive(Debug, Clone, clap::Args)]
pub struct CloudArgs {
    /// Azure ML: cancel runs still going after this long (exit 3): 90s, 45m, 2h; a bare number is minutes
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// `90s`, `45m`, `2h`, or minutes.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "m"),
    };
    let seconds_per = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{text}`: use s, m or h (e.g. 90s, 45m, 2h)")),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("`{text}` is not a duration (e.g. 90s, 45m, 2h)"))?;
    if !(value > 0.0 && value.is_finite()) {
        return Err(format!("`{text}`: the timeout must be more than zero"));
    }
    Ok(Duration::from_secs_f64(value * seconds_per))
}

/// Signs in and opens the workspace; prints why not and returns the exit code.
pub fn connect(
    azureml: &[(String, String)],
    args: &CloudArgs,
    stream: bool,
    err: &mut dyn Write,
) -> Result<Session, u8> {
    let settings = Settings {
        poll: poll_interval(),
        deadline: args.timeout.map(|t| Instant::now() + t),
        stream,
        say: Box::new(|text| {
            let _ = writeln!(std::io::stderr(), "{text}");
        }),
    };
    Session::connect(azureml, settings).map_err(|e| report(&e, err))
}

/// Prints an Azure ML error with its hint; returns the exit code.
pub fn report(e: &AzureMlError, err: &mut dyn Write) -> u8 {
    let _ = writeln!(err, "error: {e}");
    if let Some(hint) = e.hint() {
        let _ = writeln!(err, "  hint: {hint}");
    }
    e.exit_code()
}

/// The longest wait between status polls: 10 s, or
/// `FLOW_CI_AZUREML_POLL_MS` (tests poll faster).
fn poll_interval() -> Duration {
    std::env::var("FLOW_CI_AZUREML_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// The commit being checked (`HEAD`) and its branch, from the CI
/// environment (a PR's source branch) or git.
pub fn provenance() -> Provenance {
    let git = crate::git::Git::open(std::path::Path::new(".")).ok();
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

/// What `.flow-ci.yaml` says about the backend, with the flag winning.
pub struct Config {
    pub backend: Backend,
    pub azureml: Vec<(String, String)>,
}

impl Config {
    /// Reads `config` (or ./.flow-ci.yaml when there is one). Its errors
    /// were reported already by whoever read it first.
    pub fn read(config: Option<&std::path::Path>, flag: Option<Backend>) -> Config {
        let default = std::path::Path::new(crate::config::CONFIG_FILE);
        let file = config.or_else(|| default.is_file().then_some(default));
        let mut diags = crate::diag::Diagnostics::default();
        let config = file.and_then(|f| crate::config::load(f, &mut diags));
        Config {
            backend: crate::config::Config::backend_or(config.as_ref(), flag),
            azureml: config.as_ref().map(crate::config::Config::azureml_keys).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45 * 60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("3d").unwrap_err().contains("use s, m or h"));
    }
}
