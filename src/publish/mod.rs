//! The sticky PR comment: one comment (GitHub) or thread (Azure DevOps) per
//! pull request and config, found again by a hidden marker and updated in
//! place, so a PR with ten pushes still has one flow-ci comment.

mod azure_devops;
mod github;

use std::time::Duration;

use std::io::Write;

use crate::ci::{Host, PullRequest, action};
use model::secret::Secret;
use net::retry::{Policy, Resend, Verdict};

/// How the comment is posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    // flow-ci's comment updated in place, created the first time.
    Update,
    // A new comment on every run.
    New,
    // No comment (reports and the job summary are still written).
    Off,
}

/// Where the PR comment goes (`--publish`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Forge {
    // GitHub in GitHub Actions, Azure DevOps in Azure Pipelines, none elsewhere.
    Auto,
    Github,
    AzureDevops,
    None,
}

/// The host whose forge gets the comment, if any.
pub fn forge(publish: Forge, host: Host) -> Option<Host> {
    match publish {
        Forge::Auto => (host != Host::Local).then_some(host),
        Forge::Github => Some(Host::GitHubActions),
        Forge::AzureDevops => Some(Host::AzurePipelines),
        Forge::None => None,
    }
}

/// What was done with the comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created(String),
    Updated(String),
    /// flow-ci's comment already says exactly this: not edited (no
    /// notification, no "edited" mark).
    Unchanged(String),
    /// Not posted, and why (a fork's read-only token, no token, ...): the
    /// job goes on; this is logged as one line.
    Skipped(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot reach {url}: {message}")]
    Http { url: String, message: String },
    #[error("{method} {url} answered {status}: {message}")]
    Status { method: &'static str, url: String, status: u16, message: String },
}

/// The comment to post.
pub struct Comment<'a> {
    pub body: &'a str,
    /// The hidden marker in `body` that identifies it.
    pub marker: &'a str,
    /// Whether every gate passed (Azure DevOps resolves the thread then).
    pub passed: bool,
}

/// Posts or updates the PR comment with the CI host's token, and says in
/// the log what happened. Never changes the exit code: a comment that cannot
/// be posted is one line in the log, the report is still in the job summary
/// and the report files.
pub fn comment_on(pr: &PullRequest, comment: &Comment<'_>, mode: Mode, out: &mut dyn Write, err: &mut dyn Write) {
    let env = |k: &str| std::env::var(k).ok();
    let token = match pr {
        PullRequest::GitHub { .. } => action::github_token(&env),
        PullRequest::AzureDevOps { .. } => env("SYSTEM_ACCESSTOKEN").filter(|t| !t.is_empty()),
    }
    .map(Secret::new);
    match publish(pr, token.as_ref(), comment, mode) {
        Ok(Outcome::Created(link)) => {
            let _ = writeln!(err, "comment: created {link}");
        }
        Ok(Outcome::Updated(link)) => {
            let _ = writeln!(err, "comment: updated {link}");
        }
        Ok(Outcome::Unchanged(link)) => {
            let _ = writeln!(err, "comment: unchanged {link}");
        }
        Ok(Outcome::Skipped(why)) => {
            let _ = writeln!(err, "comment: not posted: {why}");
        }
        Err(e) => {
            let _ = writeln!(err, "warning: comment not posted: {e}");
            if matches!(pr, PullRequest::GitHub { .. }) {
                let line =
                    format!("::warning title=flow-ci comment::{}\n", crate::ci::log::github_data(&e.to_string()));
                let _ = out.write_all(crate::ci::guard::command(line).as_bytes());
            }
        }
    }
}

/// The hidden marker of the comment for one config: `<!-- flow-ci:report -->`
/// for the repository's root `.flow-ci.yaml`, else with the config's path so
/// two configs in one repository keep two comments.
pub fn marker(config_id: Option<&str>) -> String {
    match config_id.filter(|id| *id != model::config::CONFIG_FILE) {
        None => "<!-- flow-ci:report -->".into(),
        Some(id) => {
            let safe: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c)).collect();
            format!("<!-- flow-ci:report:{} -->", safe.replace("--", "-"))
        }
    }
}

/// Posts or updates the comment on `pr`.
pub fn publish(
    pr: &PullRequest,
    token: Option<&Secret>,
    comment: &Comment<'_>,
    mode: Mode,
) -> Result<Outcome, PublishError> {
    if mode == Mode::Off {
        return Ok(Outcome::Skipped("comment-mode is off".into()));
    }
    let forge = match pr {
        PullRequest::GitHub { .. } => "GitHub (the `github-token` input or GITHUB_TOKEN)",
        PullRequest::AzureDevOps { .. } => "Azure DevOps (map SYSTEM_ACCESSTOKEN: $(System.AccessToken) into the step)",
    };
    let Some(token) = token else {
        let why = if pr.is_fork() { "this pull request comes from a fork, which gets no token; " } else { "" };
        return Ok(Outcome::Skipped(format!("{why}no token for {forge}")));
    };
    let verdict = match pr {
        PullRequest::GitHub { .. } => github::verdict,
        PullRequest::AzureDevOps { .. } => azure_devops::verdict,
    };
    let http = Http::new(token, verdict)?;
    let result = match pr {
        PullRequest::GitHub { api, repository, number, .. } => {
            github::publish(&http, api, repository, *number, comment, mode)
        }
        PullRequest::AzureDevOps { collection, project, repository_id, id, .. } => {
            let base = format!(
                "{}/{}/_apis/git/repositories/{}/pullRequests/{id}/threads",
                collection.trim_end_matches('/'),
                net::http::percent_encode(project),
                net::http::percent_encode(repository_id)
            );
            azure_devops::publish(&http, &base, comment, mode)
        }
    };
    match result {
        Err(PublishError::Status { status: 401 | 403 | 404, .. }) if pr.is_fork() => Ok(Outcome::Skipped(
            "this pull request comes from a fork, whose token cannot comment; the job summary has the report".into(),
        )),
        Err(PublishError::Status { status: status @ (401 | 403), method, url, .. }) => Ok(Outcome::Skipped(format!(
            "the token may not comment ({method} {url} answered {status}); {}",
            match pr {
                PullRequest::GitHub { .. } => "grant `permissions: pull-requests: write` to the job",
                PullRequest::AzureDevOps { .. } =>
                    "allow the build service identity to `Contribute to pull requests` on the repository",
            }
        ))),
        other => other,
    }
}

/// How much of an error answer's message is kept.
const MESSAGE_MAX: usize = 200;

/// Retries of a forge call: 1 + 2 tries, backing off from 1 s; a wait the
/// forge asks for may be a minute (GitHub's secondary rate limits), not
/// more: a longer one gives up, since the comment is not worth holding the
/// job for (the report is in the job summary either way).
const RETRY: Policy = Policy { attempts: 3, backoff: Duration::from_secs(1), max_wait: Duration::from_secs(60) };

/// What a forge's answer says about trying again: given the status, the
/// headers and whether the request creates something (a POST, which must
/// not run twice, so it is retried only where the forge says it did
/// nothing).
type ForgeVerdict = fn(u16, &reqwest::header::HeaderMap, bool) -> Verdict;

/// A blocking HTTP client with the token; answers other than 2xx are errors.
///
/// Redirects keep reqwest's default policy: the token goes in
/// `Authorization`, which reqwest removes on a redirect to another scheme,
/// host or port (<https://docs.rs/reqwest/0.13/reqwest/redirect/index.html>).
struct Http {
    client: reqwest::blocking::Client,
    token: String,
    verdict: ForgeVerdict,
}

impl Http {
    fn new(token: &Secret, verdict: ForgeVerdict) -> Result<Http, PublishError> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("flow-ci/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| PublishError::Http { url: String::new(), message: e.to_string() })?;
        Ok(Http { client, token: token.expose().to_string(), verdict })
    }

    /// Sends a request, retried as [`RETRY`] and the forge's verdict say
    /// (a connection that cannot be made is tried again too; any other
    /// transport failure only when the request is not a POST); returns the
    /// JSON answer and the `Link` header.
    fn send(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<(serde_json::Value, Option<String>), PublishError> {
        let verb = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = self.client.request(verb, url).bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        tracing::debug!("{method} {url}");
        let failed = |e: reqwest::Error| PublishError::Http { url: url.into(), message: e.without_url().to_string() };
        let post = method == "POST";
        let resend = if post { Resend::IfNotSent } else { Resend::Always };
        let verdict = self.verdict;
        let request = req.build().map_err(failed)?;
        let resp = net::retry::send(&self.client, request, &RETRY, resend, |r, _| {
            verdict(r.status().as_u16(), r.headers(), post)
        })
        .map_err(failed)?;
        let status = resp.status().as_u16();
        let link = resp.headers().get("link").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = resp.text().unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(PublishError::Status { method, url: url.into(), status, message: self.message(&text) });
        }
        Ok((serde_json::from_str(&text).unwrap_or(serde_json::Value::Null), link))
    }

    /// An error answer's `message` (or its text), without the token or
    /// anything that reads like a credential: a proxy may echo the request's
    /// headers, and this message is logged.
    fn message(&self, text: &str) -> String {
        let message = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string));
        net::http::redact(message.as_deref().unwrap_or(text), &[&self.token], MESSAGE_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_never_carry_the_token() {
        let http = Http::new(&Secret::new("ghs_s3cr3t_value".into()), github::verdict).unwrap();
        let echoed = r#"{"message": "denied for Authorization: Bearer ghs_s3cr3t_value"}"#;
        assert_eq!(http.message(echoed), "denied for Authorization: Bearer ***");
        let raw = format!("<html>token=ghs_s3cr3t_value {}</html>", "x".repeat(500));
        let message = http.message(&raw);
        assert!(!message.contains("s3cr3t") && message.chars().count() <= MESSAGE_MAX + 1, "{message}");
    }

    #[test]
    fn markers_tell_configs_apart() {
        assert_eq!(marker(None), "<!-- flow-ci:report -->");
        assert_eq!(marker(Some(".flow-ci.yaml")), "<!-- flow-ci:report -->");
        assert_eq!(marker(Some("svc/a/.flow-ci.yaml")), "<!-- flow-ci:report:svc/a/.flow-ci.yaml -->");
        assert_eq!(marker(Some("x--><img>")), "<!-- flow-ci:report:x-img -->", "cannot close the comment");
    }
}
