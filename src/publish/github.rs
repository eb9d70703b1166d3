//! GitHub's REST API for issue comments (a PR is an issue):
//! list (paginated by `Link: <...>; rel="next"`), update (PATCH), create.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use net::retry::Verdict;
use reqwest::header::HeaderMap;
use serde_json::{Value as Json, json};

use super::{Comment, Http, Mode, Outcome, PublishError};

const HEADERS: &[(&str, &str)] = &[("accept", "application/vnd.github+json"), ("x-github-api-version", "2022-11-28")];

/// The author of comments made with the workflow's `GITHUB_TOKEN` (an
/// installation token, for which `GET /user` answers 403).
const ACTIONS_BOT: &str = "github-actions[bot]";

/// `api` is `GITHUB_API_URL`; the PR is `{owner}/{name}`#`number`.
pub fn publish(
    http: &Http,
    api: &str,
    repository: &str,
    number: u64,
    comment: &Comment<'_>,
    mode: Mode,
) -> Result<Outcome, PublishError> {
    let repo_url = format!("{api}/repos/{repository}");
    let body = json!({ "body": comment.body });
    if mode == Mode::Update
        && let Some(found) = find(http, &repo_url, number, comment.marker, &identity(http, api))?
    {
        if found.body == comment.body {
            return Ok(Outcome::Unchanged(found.html_url));
        }
        let (answer, _) =
            http.send("PATCH", &format!("{repo_url}/issues/comments/{}", found.id), HEADERS, Some(&body))?;
        return Ok(Outcome::Updated(html_url(&answer)));
    }
    let (answer, _) = http.send("POST", &format!("{repo_url}/issues/{number}/comments"), HEADERS, Some(&body))?;
    Ok(Outcome::Created(html_url(&answer)))
}

/// Who the token acts as: `GET /user` for a personal or app user token;
/// the workflow's `GITHUB_TOKEN` cannot read it and comments as
/// `github-actions[bot]`.
fn identity(http: &Http, api: &str) -> String {
    match http.send("GET", &format!("{api}/user"), HEADERS, None) {
        Ok((me, _)) => me["login"].as_str().unwrap_or(ACTIONS_BOT).to_string(),
        Err(_) => ACTIONS_BOT.to_string(),
    }
}

/// flow-ci's earlier comment on the PR.
struct Found {
    id: u64,
    body: String,
    html_url: String,
}

/// The first comment written by `author` that carries `marker`, reading
/// every page. The marker in anybody else's comment is ignored: flow-ci
/// edits only its own comment.
fn find(http: &Http, repo_url: &str, number: u64, marker: &str, author: &str) -> Result<Option<Found>, PublishError> {
    let mut next = Some(format!("{repo_url}/issues/{number}/comments?per_page=100"));
    while let Some(url) = next {
        let (page, link) = http.send("GET", &url, HEADERS, None)?;
        let found = page.as_array().into_iter().flatten().find(|c| {
            c["user"]["login"].as_str() == Some(author) && c["body"].as_str().is_some_and(|b| b.contains(marker))
        });
        if let Some(c) = found {
            let id = c["id"].as_u64().unwrap_or_default();
            let body = c["body"].as_str().unwrap_or_default().to_string();
            return Ok(Some(Found { id, body, html_url: html_url(c) }));
        }
        next = link.as_deref().and_then(next_page).filter(|next| same_origin(repo_url, next));
    }
    Ok(None)
}

/// Whether a next page is on the API's origin (scheme, host, port): the
/// token goes with every page, and a `Link` header (from a proxy, say) may
/// name any host. Another origin ends the listing, with a warning.
fn same_origin(api: &str, next: &str) -> bool {
    let (Ok(api), Ok(next_url)) = (reqwest::Url::parse(api), reqwest::Url::parse(next)) else {
        tracing::warn!("not following the comment list's next page `{next}`: not a URL");
        return false;
    };
    let same = net::http::same_origin(&api, &next_url);
    if !same {
        tracing::warn!(
            "not following the comment list's next page on {} (the API is {}): the token stays with the API",
            net::http::origin(&next_url),
            net::http::origin(&api)
        );
    }
    same
}

/// The `rel="next"` URL of a `Link` header.
fn next_page(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.split(';').any(|p| p.trim() == "rel=\"next\"").then(|| url.trim().trim_matches(['<', '>']).to_string())
    })
}

/// Whether to try a call again, as GitHub's "Rate limits for the REST API"
/// (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit>)
/// says: a rate limit answers 403 or 429; wait `retry-after` seconds if
/// given, else until `x-ratelimit-reset` (UTC epoch seconds) when
/// `x-ratelimit-remaining` is 0, else at least a minute. A 403 without
/// those headers is a permission (a fork's token), never retried. A wait
/// past [`super::RETRY`]'s longest (a spent hourly limit) gives up at once.
/// 500/502/503/504 are retried too (octokit's retry plugin does), a POST
/// only on 503 (GitHub did not take it; after 500/502/504 the comment may
/// exist).
pub(super) fn verdict(status: u16, headers: &HeaderMap, post: bool) -> Verdict {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let limited = status == 429
        || (status == 403 && (header("retry-after").is_some() || header("x-ratelimit-remaining") == Some("0")));
    if limited {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let reset = || {
            let at: u64 = header("x-ratelimit-reset")?.parse().ok()?;
            (header("x-ratelimit-remaining") == Some("0")).then(|| Duration::from_secs(at.saturating_sub(now)))
        };
        let wait = net::http::retry_after(headers).or_else(reset).unwrap_or(Duration::from_secs(60));
        return match wait <= super::RETRY.max_wait {
            true => Verdict::Retry(Some(wait)),
            false => Verdict::Keep,
        };
    }
    match status {
        503 => Verdict::Retry(net::http::retry_after(headers)),
        500 | 502 | 504 if !post => Verdict::Retry(net::http::retry_after(headers)),
        _ => Verdict::Keep,
    }
}

fn html_url(answer: &Json) -> String {
    answer["html_url"].as_str().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let link = "<https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=2>; rel=\"next\", \
                    <https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=3>; rel=\"last\"";
        assert_eq!(
            next_page(link).as_deref(),
            Some("https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=2")
        );
        assert_eq!(next_page("<https://x/?page=1>; rel=\"prev\""), None);
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (reqwest::header::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn rate_limits_are_waited_out_and_permissions_are_not() {
        let none = HeaderMap::new();
        // A secondary rate limit with retry-after, on any method.
        let after = headers(&[("retry-after", "7".into())]);
        assert_eq!(verdict(403, &after, true), Verdict::Retry(Some(Duration::from_secs(7))));
        assert_eq!(verdict(429, &after, false), Verdict::Retry(Some(Duration::from_secs(7))));
        // A spent limit: until the reset, if that is soon.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let soon = headers(&[("x-ratelimit-remaining", "0".into()), ("x-ratelimit-reset", (now + 20).to_string())]);
        assert!(matches!(verdict(403, &soon, false), Verdict::Retry(Some(w)) if (18..=20).contains(&w.as_secs())));
        let late = headers(&[("x-ratelimit-remaining", "0".into()), ("x-ratelimit-reset", (now + 3000).to_string())]);
        assert_eq!(verdict(403, &late, false), Verdict::Keep, "an hour's wait is not waited");
        // 429 without a hint: a minute.
        assert_eq!(verdict(429, &none, true), Verdict::Retry(Some(Duration::from_secs(60))));
        // A 403 that is a permission, and other refusals: final.
        let left = headers(&[("x-ratelimit-remaining", "4999".into())]);
        assert_eq!(verdict(403, &left, false), Verdict::Keep);
        for status in [400, 401, 404, 422] {
            assert_eq!(verdict(status, &none, false), Verdict::Keep, "{status}");
        }
        // Server errors: reads and updates again; a POST only when GitHub did not take it.
        assert_eq!(verdict(502, &none, false), Verdict::Retry(None));
        assert_eq!(verdict(502, &none, true), Verdict::Keep);
        assert_eq!(verdict(503, &none, true), Verdict::Retry(None));
    }

    #[test]
    fn pages_are_followed_on_the_api_origin_only() {
        let api = "https://ghes.example/api/v3/repos/o/r";
        assert!(same_origin(api, "https://ghes.example:443/api/v3/repositories/1/issues/2/comments?page=2"));
        assert!(!same_origin(api, "https://evil.example/api/v3/repos/o/r/issues/2/comments?page=2"));
        assert!(!same_origin(api, "http://ghes.example/api/v3/repos/o/r/issues/2/comments?page=2"));
        assert!(!same_origin(api, "/relative?page=2"));
    }
}
