//! The CI system flow-ci runs in, read from the environment. Only this module
//! knows how GitHub Actions and Azure Pipelines announce themselves.

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
