//! GitHub's REST API for issue comments (a PR is an issue):
//! list (paginated by `Link: <...>; rel="next"`), update (PATCH), create.

use serde_json::{Value as Json, json};

use super::{Comment, Http, Mode, Outcome, PublishError};

const HEADERS: &[(&str, &str)] = &[("accept", "application/vnd.github+json"), ("x-github-api-version", "2022-11-28")];

/// `repo_url` is `{api}/repos/{owner}/{name}`.
pub fn publish(
    http: &Http,
    repo_url: &str,
    number: u64,
    comment: &Comment<'_>,
    mode: Mode,
) -> Result<Outcome, PublishError> {
    let body = json!({ "body": comment.body });
    if mode == Mode::Update
        && let Some(id) = find(http, repo_url, number, comment.marker)?
    {
        let (answer, _) = http.send("PATCH", &format!("{repo_url}/issues/comments/{id}"), HEADERS, Some(&body))?;
        return Ok(Outcome::Updated(html_url(&answer)));
    }
    let (answer, _) = http.send("POST", &format!("{repo_url}/issues/{number}/comments"), HEADERS, Some(&body))?;
    Ok(Outcome::Created(html_url(&answer)))
}

/// The id of the first comment carrying `marker`, reading every page.
fn find(http: &Http, repo_url: &str, number: u64, marker: &str) -> Result<Option<u64>, PublishError> {
    let mut next = Some(format!("{repo_url}/issues/{number}/comments?per_page=100"));
    while let Some(url) = next {
        let (page, link) = http.send("GET", &url, HEADERS, None)?;
        let found =
            page.as_array().into_iter().flatten().find(|c| c["body"].as_str().is_some_and(|b| b.contains(marker)));
        if let Some(id) = found.and_then(|c| c["id"].as_u64()) {
            return Ok(Some(id));
        }
        next = link.as_deref().and_then(next_page);
    }
    Ok(None)
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
}
