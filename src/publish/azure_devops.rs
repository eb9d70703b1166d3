//! Azure DevOps pull request threads (REST 7.1): the thread whose first
//! comment carries the marker is updated and its status follows the
//! verdict (`active` while a gate fails, `fixed` once the PR passes).

use net::retry::Verdict;
use reqwest::header::HeaderMap;
use serde_json::{Value as Json, json};

use super::{Comment, Http, Mode, Outcome, PublishError};

const API_VERSION: &str = "api-version=7.1";

/// `threads_url` is `{collection}/{project}/_apis/git/repositories/{repo}/pullRequests/{id}/threads`.
pub fn publish(http: &Http, threads_url: &str, comment: &Comment<'_>, mode: Mode) -> Result<Outcome, PublishError> {
    let status = if comment.passed { "fixed" } else { "active" };
    if mode == Mode::Update
        && let Some((thread, first, current)) = find(http, threads_url, comment.marker)?
    {
        let body = json!({ "content": comment.body });
        http.send("PATCH", &format!("{threads_url}/{thread}/comments/{first}?{API_VERSION}"), &[], Some(&body))?;
        if current != status {
            http.send(
                "PATCH",
                &format!("{threads_url}/{thread}?{API_VERSION}"),
                &[],
                Some(&json!({ "status": status })),
            )?;
        }
        return Ok(Outcome::Updated(format!("thread {thread} ({status})")));
    }
    let body = json!({
        "comments": [{ "parentCommentId": 0, "content": comment.body, "commentType": 1 }],
        "status": status,
    });
    let (answer, _) = http.send("POST", &format!("{threads_url}?{API_VERSION}"), &[], Some(&body))?;
    Ok(Outcome::Created(format!("thread {} ({status})", answer["id"].as_u64().unwrap_or_default())))
}

/// Whether to try a call again: Azure DevOps answers a throttled request
/// 429 (or 503) with `Retry-After` ("Rate and usage limits",
/// <https://learn.microsoft.com/azure/devops/integrate/concepts/rate-limits#api-client-experience>);
/// 500/502/504 are retried for reads and updates, not for a POST (the
/// thread may exist).
pub(super) fn verdict(status: u16, headers: &HeaderMap, post: bool) -> Verdict {
    match status {
        429 | 503 => Verdict::Retry(net::http::retry_after(headers)),
        500 | 502 | 504 if !post => Verdict::Retry(net::http::retry_after(headers)),
        _ => Verdict::Keep,
    }
}

/// (thread id, first comment id, thread status) of flow-ci's thread.
fn find(http: &Http, threads_url: &str, marker: &str) -> Result<Option<(u64, u64, String)>, PublishError> {
    let (answer, _) = http.send("GET", &format!("{threads_url}?{API_VERSION}"), &[], None)?;
    let threads = answer["value"].as_array().cloned().unwrap_or_default();
    Ok(threads.iter().filter(|t| t["isDeleted"] != Json::Bool(true)).find_map(|t| {
        let first = t["comments"].as_array()?.first()?;
        first["content"].as_str()?.contains(marker).then(|| {
            (
                t["id"].as_u64().unwrap_or_default(),
                first["id"].as_u64().unwrap_or(1),
                t["status"].as_str().unwrap_or_default().to_string(),
            )
        })
    }))
}
