//! The CI system flow-ci runs in, read from the environment. Only this module
//! knows how GitHub Actions and Azure Pipelines announce themselves, which
//! change a build is about, and which pull request it belongs to.

pub mod action;
mod azure;
mod github;
pub mod guard;
pub mod log;
pub mod output;

/// Environment lookup: `std::env::var` in the binary, a table in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What the build is about: where it runs, the comparison `check` makes,
/// and the pull request to comment on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    /// The base revision of the change, when the event names one.
    pub base: Option<String>,
    /// Where `base` came from, for the log ("the pull_request event").
    pub base_source: String,
    pub pull_request: Option<PullRequest>,
    /// The host announced the change but flow-ci could not read it (an
    /// unreadable event payload): what the change is, is unknown.
    pub problem: Option<String>,
    /// Why flow-ci must not check this build at all (an unsafe trigger).
    pub refused: Option<String>,
}

/// A pull request on a forge flow-ci can comment on.
#[derive(Clone, Debug, PartialEq)]
pub enum PullRequest {
    GitHub {
        /// `GITHUB_API_URL`: api.github.com, or `https://HOST/api/v3` on GHES.
        api: String,
        /// `owner/name`.
        repository: String,
        number: u64,
        /// The head branch lives in another repository: its token is read-only.
        fork: bool,
    },
    AzureDevOps {
        /// `SYSTEM_COLLECTIONURI`, e.g. `https://dev.azure.com/org/`.
        collection: String,
        project: String,
        repository_id: String,
        id: u64,
        fork: bool,
    },
}

impl PullRequest {
    pub fn is_fork(&self) -> bool {
        match self {
            PullRequest::GitHub { fork, .. } | PullRequest::AzureDevOps { fork, .. } => *fork,
        }
    }
}

impl Context {
    /// Reads the build's context from the environment of `host`.
    pub fn detect(host: Host) -> Context {
        Self::from_env(host, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_env(host: Host, env: Env<'_>) -> Context {
        match host {
            Host::GitHubActions => github::context(env),
            Host::AzurePipelines => azure::context(env),
            Host::Local => Context::default(),
        }
    }
}

/// The repository's default branch, when the host says which it is
/// (GitHub: the event payload's `repository.default_branch`; Azure Pipelines
/// names none).
pub fn default_branch(host: Host) -> Option<String> {
    match host {
        Host::GitHubActions => github::default_branch(&|k| std::env::var(k).ok().filter(|v| !v.is_empty())),
        _ => None,
    }
}

/// The web page of the CI run this process is part of, when the host says
/// where it is: the comment links the run that produced it.
pub fn run_url(host: Host) -> Option<String> {
    run_url_from(host, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

pub fn run_url_from(host: Host, env: Env<'_>) -> Option<String> {
    match host {
        Host::GitHubActions => github::run_url(env),
        Host::AzurePipelines => azure::run_url(env),
        Host::Local => None,
    }
}

/// The base of a push build: the commit before it.
const PREVIOUS_COMMIT: &str = "HEAD~1";

/// Where the process runs, which decides how diagnostics are annotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    GitHubActions,
    AzurePipelines,
    Local,
}

impl Host {
    pub fn detect() -> Host {
        Self::from_env(|k| std::env::var(k).ok())
    }

    /// `GITHUB_ACTIONS=true` is set by every Actions runner; `TF_BUILD=True`
    /// by every Azure Pipelines agent.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Host {
        if var("GITHUB_ACTIONS").is_some_and(|v| v == "true") {
            Host::GitHubActions
        } else if var("TF_BUILD").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            Host::AzurePipelines
        } else {
            Host::Local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_recognised_by_their_marker_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(Host::from_env(env(&[("GITHUB_ACTIONS", "true")])), Host::GitHubActions);
        assert_eq!(Host::from_env(env(&[("TF_BUILD", "True")])), Host::AzurePipelines);
        assert_eq!(Host::from_env(env(&[("GITHUB_ACTIONS", "false")])), Host::Local);
    }
}
