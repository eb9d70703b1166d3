//! GitHub Actions: the event payload at `GITHUB_EVENT_PATH` names the
//! change (a pull request's base, a push's previous commit) and the PR.

use serde_json::Value as Json;

use super::{Context, Env, PREVIOUS_COMMIT, PullRequest};

const DEFAULT_API: &str = "https://api.github.com";

/// A push to a new branch has no previous commit: `before` is all zeros.
const NO_COMMIT: &str = "0000000000000000000000000000000000000000";

pub fn context(env: Env<'_>) -> Context {
    let event = env("GITHUB_EVENT_NAME").unwrap_or_default();
    let (payload, problem) = match env("GITHUB_EVENT_PATH").map(|path| read_payload(&path)) {
        Some(Ok(payload)) => (payload, None),
        Some(Err(problem)) => (Json::Null, Some(problem)),
        None => (Json::Null, None),
    };
    let context = match_event(&event, &payload, env);
    let needs_payload = matches!(event.as_str(), "pull_request" | "pull_request_target" | "push" | "merge_group");
    let refused = (event == "pull_request_target").then(|| PULL_REQUEST_TARGET.to_string());
    Context { problem: problem.filter(|_| needs_payload), refused, ..context }
}

/// Why `pull_request_target` is refused (GitHub's "Keeping your GitHub
/// Actions and workflows secure: preventing pwn requests").
const PULL_REQUEST_TARGET: &str = "flow-ci does not run on `pull_request_target`: that trigger runs with a write token and the repository's secrets, and checking a pull request's flows means running its code (python nodes) with them. Use `on: pull_request` (a fork's pull request then gets no secrets; the report is in the job summary), and post the comment from a separate `workflow_run` job if you need it on forks";

/// `repository.default_branch` of the event payload (push and pull request events carry it).
pub fn default_branch(env: Env<'_>) -> Option<String> {
    let payload = read_payload(&env("GITHUB_EVENT_PATH")?).ok()?;
    payload.pointer("/repository/default_branch")?.as_str().map(str::to_string).filter(|b| !b.is_empty())
}

/// The event payload, or why it cannot be read.
fn read_payload(path: &str) -> Result<Json, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the event payload {path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("the event payload {path} is not JSON: {e}"))
}

fn match_event(event: &str, payload: &Json, env: Env<'_>) -> Context {
    let text = |v: &Json| v.as_str().map(str::to_string);
    match event {
        "pull_request" | "pull_request_target" => {
            let pr = &payload["pull_request"];
            // The workspace holds the merge commit of the PR into its base
            // (actions/checkout's default), so the head is the working tree
            // and the base is the base branch's commit the PR was opened on.
            Context {
                base: text(&pr["base"]["sha"]),
                base_source: format!("the {event} event's base commit"),
                pull_request: number(payload).map(|number| PullRequest::GitHub {
                    api: api(env),
                    repository: env("GITHUB_REPOSITORY")
                        .or_else(|| text(&pr["base"]["repo"]["full_name"]))
                        .unwrap_or_default(),
                    number,
                    fork: is_fork(pr),
                }),
                ..Context::default()
            }
        }
        "push" => {
            let before = text(&payload["before"]).filter(|b| b != NO_COMMIT);
            let source = if before.is_some() { "the push event's previous head" } else { "the commit before this one" };
            Context {
                base: Some(before.unwrap_or_else(|| PREVIOUS_COMMIT.into())),
                base_source: source.into(),
                pull_request: None,
                ..Context::default()
            }
        }
        "merge_group" => Context {
            base: text(&payload["merge_group"]["base_sha"]),
            base_source: "the merge group's base commit".into(),
            pull_request: None,
            ..Context::default()
        },
        _ => Context::default(),
    }
}

/// `$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID`: the
/// run's page. The three are default variables of every job (GitHub docs,
/// "Variables reference", Default environment variables: GITHUB_SERVER_URL
/// "The URL of the GitHub server", GITHUB_REPOSITORY "The owner and
/// repository name", GITHUB_RUN_ID "A unique number for each workflow run").
pub fn run_url(env: Env<'_>) -> Option<String> {
    let server = env("GITHUB_SERVER_URL")?;
    let repository = env("GITHUB_REPOSITORY")?;
    let run = env("GITHUB_RUN_ID")?;
    // Only what these variables can hold goes into a link.
    let (owner, name) = repository.split_once('/')?;
    let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !(plain(owner) && plain(name) && run.chars().all(|c| c.is_ascii_digit()) && is_web_origin(&server)) {
        return None;
    }
    Some(format!("{}/{owner}/{name}/actions/runs/{run}", server.trim_end_matches('/')))
}

/// An `http(s)://host[:port]` with nothing that could break out of a link.
pub(super) fn is_web_origin(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let r = r.trim_end_matches('/');
        !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || "-.:/_~%".contains(c))
    })
}

fn api(env: Env<'_>) -> String {
    env("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API.into()).trim_end_matches('/').to_string()
}

fn number(payload: &Json) -> Option<u64> {
    payload["pull_request"]["number"].as_u64().or_else(|| payload["number"].as_u64())
}

/// A PR from another repository (a fork): its `GITHUB_TOKEN` cannot write
/// comments. A deleted fork shows as a null head repository.
fn is_fork(pr: &Json) -> bool {
    let head = pr["head"]["repo"]["full_name"].as_str();
    let base = pr["base"]["repo"]["full_name"].as_str();
    head.is_none() || head != base
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ci::Host;

    fn fixture(name: &str) -> String {
        format!("{}/tests/events/github/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_run_page_is_linked_on_github_and_on_enterprise_servers() {
        let with = |server: &'static str, repo: &'static str| {
            move |k: &str| match k {
                "GITHUB_SERVER_URL" => Some(server.to_string()),
                "GITHUB_REPOSITORY" => Some(repo.to_string()),
                "GITHUB_RUN_ID" => Some("1658821493".to_string()),
                _ => None,
            }
        };
        assert_eq!(
            crate::ci::run_url_from(Host::GitHubActions, &with("https://github.com", "octo/flows")).as_deref(),
            Some("https://github.com/octo/flows/actions/runs/1658821493")
        );
        assert_eq!(
            crate::ci::run_url_from(Host::GitHubActions, &with("https://ghes.example.com/", "o/r")).as_deref(),
            Some("https://ghes.example.com/o/r/actions/runs/1658821493")
        );
        // Nothing that could break out of a Markdown link.
        assert_eq!(crate::ci::run_url_from(Host::GitHubActions, &with("javascript:alert(1)", "o/r")), None);
        assert_eq!(crate::ci::run_url_from(Host::GitHubActions, &with("https://github.com", "o/r)[x](y")), None);
    }

    fn context_of(event: &str, payload: &str, extra: &[(&str, &str)]) -> Context {
        let path = fixture(payload);
        let vars: Vec<(String, String)> = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_NAME", event),
            ("GITHUB_EVENT_PATH", path.as_str()),
            ("GITHUB_REPOSITORY", "octo-org/prompt-flows"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Context::from_env(Host::GitHubActions, &move |k| {
            vars.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn a_pull_request_compares_with_its_base_commit() {
        let c = context_of("pull_request", "pull_request.json", &[]);
        assert_eq!(c.base.as_deref(), Some("9049f1265b7d61be4a8904a9a27120d2064dab3b"));
        assert_eq!(
            c.pull_request,
            Some(PullRequest::GitHub {
                api: "https://api.github.com".into(),
                repository: "octo-org/prompt-flows".into(),
                number: 42,
                fork: false
            })
        );
    }

    #[test]
    fn a_fork_is_recognised_and_ghes_honoured() {
        let c = context_of(
            "pull_request",
            "pull_request_fork.json",
            &[("GITHUB_API_URL", "https://github.example.com/api/v3/")],
        );
        let Some(PullRequest::GitHub { api, fork, number, .. }) = c.pull_request else { panic!("{c:?}") };
        assert!(fork);
        assert_eq!(number, 7);
        assert_eq!(api, "https://github.example.com/api/v3");
    }

    #[test]
    fn a_push_compares_with_the_previous_head() {
        let c = context_of("push", "push.json", &[]);
        assert_eq!(c.base.as_deref(), Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"));
        assert_eq!(c.pull_request, None);
        let first = context_of("push", "push_new_branch.json", &[]);
        assert_eq!(first.base.as_deref(), Some("HEAD~1"), "a new branch has no `before`");
    }

    #[test]
    fn other_events_name_no_change() {
        assert_eq!(context_of("workflow_dispatch", "push.json", &[]), Context::default());
    }
}
