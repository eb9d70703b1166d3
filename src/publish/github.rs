//! GitHub's REST API for issue comments (a PR is an issue):
//! list (paginated by `Link: <...>; rel="next"`), update (PATCH), create.

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

    #[test]
    fn pages_are_followed_on_the_api_origin_only() {
        let api = "https://ghes.example/api/v3/repos/o/r";
        assert!(same_origin(api, "https://ghes.example:443/api/v3/repositories/1/issues/2/comments?page=2"));
        assert!(!same_origin(api, "https://evil.example/api/v3/repos/o/r/issues/2/comments?page=2"));
        assert!(!same_origin(api, "http://ghes.example/api/v3/repos/o/r/issues/2/comments?page=2"));
        assert!(!same_origin(api, "/relative?page=2"));
    }
}
