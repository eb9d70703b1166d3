//! Azure Pipelines: predefined variables (exported as upper-case environment
//! variables) name the PR, its target branch and the repository.

use super::{Context, Env, PREVIOUS_COMMIT, PullRequest};

pub fn context(env: Env<'_>) -> Context {
    let pr_id = env("SYSTEM_PULLREQUEST_PULLREQUESTID").and_then(|v| v.parse::<u64>().ok());
    let target = env("SYSTEM_PULLREQUEST_TARGETBRANCH");
    match (pr_id, target) {
        (Some(id), Some(target)) => Context {
            // The agent checks out the merge of the PR into its target, and a
            // full fetch (`fetchDepth: 0`) has the target as `origin/<branch>`.
            base: Some(format!("origin/{}", target.trim_start_matches("refs/heads/"))),
            base_source: "the pull request's target branch".into(),
            pull_request: threads_api(env, id),
            ..Context::default()
        },
        _ if is_ci_build(env) => Context {
            base: Some(PREVIOUS_COMMIT.into()),
            base_source: "the commit before this one".into(),
            pull_request: None,
            ..Context::default()
        },
        _ => Context::default(),
    }
}

/// PR threads exist for Azure Repos (`TfsGit`) only; a GitHub repository
/// built by Azure Pipelines gets no thread.
fn threads_api(env: Env<'_>, id: u64) -> Option<PullRequest> {
    if env("BUILD_REPOSITORY_PROVIDER").is_some_and(|p| p != "TfsGit") {
        return None;
    }
    Some(PullRequest::AzureDevOps {
        collection: env("SYSTEM_COLLECTIONURI")?,
        project: env("SYSTEM_TEAMPROJECTID").or_else(|| env("SYSTEM_TEAMPROJECT"))?,
        repository_id: env("BUILD_REPOSITORY_ID")?,
        id,
        fork: env("SYSTEM_PULLREQUEST_ISFORK").is_some_and(|v| v.eq_ignore_ascii_case("true")),
    })
}

/// `$(System.CollectionUri)$(System.TeamProject)/_build/results?buildId=$(Build.BuildId)`:
/// the build's results page. Predefined variables (Microsoft Learn, "Use
/// predefined variables": System.CollectionUri "The URI of the Azure DevOps
/// organization or collection", e.g. `https://dev.azure.com/fabrikamfiber/`,
/// System.TeamProject "The name of the project", Build.BuildId "The ID of
/// the record for the completed build"); the project name may hold spaces.
pub fn run_url(env: Env<'_>) -> Option<String> {
    let collection = env("SYSTEM_COLLECTIONURI").or_else(|| env("SYSTEM_TEAMFOUNDATIONCOLLECTIONURI"))?;
    let project = env("SYSTEM_TEAMPROJECT")?;
    let build = env("BUILD_BUILDID")?;
    if !(super::github::is_web_origin(&collection) && build.chars().all(|c| c.is_ascii_digit())) {
        return None;
    }
    Some(format!(
        "{}/{}/_build/results?buildId={build}",
        collection.trim_end_matches('/'),
        net::http::percent_encode(&project)
    ))
}

/// Builds triggered by a push (`IndividualCI`, `BatchedCI`).
fn is_ci_build(env: Env<'_>) -> bool {
    env("BUILD_REASON").is_some_and(|r| r.ends_with("CI"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ci::Host;

    #[test]
    fn the_build_results_page_is_linked_with_the_project_name_encoded() {
        let vars = [
            ("SYSTEM_COLLECTIONURI", "https://dev.azure.com/contoso/"),
            ("SYSTEM_TEAMPROJECT", "Platform Team"),
            ("BUILD_BUILDID", "4821"),
        ];
        let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(
            crate::ci::run_url_from(Host::AzurePipelines, &env).as_deref(),
            Some("https://dev.azure.com/contoso/Platform%20Team/_build/results?buildId=4821")
        );
        let odd = |k: &str| if k == "BUILD_BUILDID" { Some("1) [x](y".to_string()) } else { env(k) };
        assert_eq!(crate::ci::run_url_from(Host::AzurePipelines, &odd), None);
    }

    /// A variable set as an agent exports it (`NAME=value` lines).
    fn context_of(file: &str) -> Context {
        let path = format!("{}/tests/events/azure/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        let vars: Vec<(String, String)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Context::from_env(Host::AzurePipelines, &move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn an_azure_repos_pull_request() {
        let c = context_of("pull_request.env");
        assert_eq!(c.base.as_deref(), Some("origin/main"));
        assert_eq!(
            c.pull_request,
            Some(PullRequest::AzureDevOps {
                collection: "https://dev.azure.com/contoso/".into(),
                project: "4f4b5a6e-1b2c-4d3e-8f9a-0b1c2d3e4f5a".into(),
                repository_id: "d2b7c1a4-5e6f-4a8b-9c0d-1e2f3a4b5c6d".into(),
                id: 17,
                fork: false
            })
        );
    }

    #[test]
    fn a_fork_and_a_github_repository() {
        assert!(context_of("pull_request_fork.env").pull_request.is_some_and(|p| p.is_fork()));
        let github = context_of("pull_request_github_repo.env");
        assert_eq!(github.base.as_deref(), Some("origin/main"));
        assert_eq!(github.pull_request, None, "no PR threads for GitHub repositories");
    }

    #[test]
    fn a_ci_build_compares_with_the_previous_commit() {
        let c = context_of("ci_build.env");
        assert_eq!(c.base.as_deref(), Some("HEAD~1"));
        assert_eq!(c.pull_request, None);
    }
}
