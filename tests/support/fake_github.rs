//! A loopback GitHub REST API for issue comments, as flow-ci's sticky
//! comment uses it: list (100 per page, `Link: rel="next"`), create, update.
//!
//! It checks what GitHub would: the bearer token, `Accept` and API-version
//! headers, a user agent, the repository and PR in the path, and a JSON body
//! with a string `body`; a violation is recorded and answered 4xx. A
//! read-only token (a fork's) gets 403 on writes, like GitHub answers.
//! The token is the workflow's `GITHUB_TOKEN`: `GET /user` answers 403 and
//! its comments are by `github-actions[bot]`; editing a comment by anyone
//! else is recorded as a violation (GitHub would let a write token do it).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};

use super::http::{Answer, Received, serve};

#[derive(Clone, Debug)]
pub struct StoredComment {
    pub id: u64,
    pub body: String,
    pub author: String,
}

/// Who the test token comments as.
pub const BOT: &str = "github-actions[bot]";

#[derive(Default)]
struct State {
    comments: Vec<StoredComment>,
    received: Vec<Received>,
    violations: Vec<String>,
    read_only: bool,
    /// Every request is answered 502 with a body echoing its `Authorization`
    /// header (as a misbehaving proxy does).
    echo_token: bool,
    /// The origin that `Link: rel="next"` names instead of this server's.
    next_origin: Option<String>,
    /// Answers given, in turn, to the next requests before any is handled
    /// (a busy or rate-limited GitHub).
    failures: std::collections::VecDeque<Answer>,
}

pub struct FakeGitHub {
    /// The API base URL (`GITHUB_API_URL`), with the GHES prefix if any.
    pub api: String,
    state: Arc<Mutex<State>>,
}

pub const REPOSITORY: &str = "octo-org/prompt-flows";
pub const PR: u64 = 42;
pub const TOKEN: &str = "ghs_fake_token_for_tests";

impl FakeGitHub {
    pub fn start() -> FakeGitHub {
        FakeGitHub::start_at("")
    }

    /// GitHub Enterprise Server serves the API below `/api/v3`.
    pub fn start_at(prefix: &'static str) -> FakeGitHub {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let base = Arc::new(Mutex::new(String::new()));
        let base_in = base.clone();
        let url = serve(move |req| {
            let mut st = shared.lock().unwrap();
            st.received.push(req.clone());
            let api = base_in.lock().unwrap().clone();
            if let Some(failure) = st.failures.pop_front() {
                return failure;
            }
            match respond(req, &mut st, prefix, &api) {
                Ok(answer) => answer,
                Err((status, problem)) => {
                    st.violations.push(problem.clone());
                    Answer::json(status, json!({ "message": problem }))
                }
            }
        });
        let api = format!("{url}{prefix}");
        *base.lock().unwrap() = api.clone();
        FakeGitHub { api, state }
    }

    /// `n` comments by other people, one of them (at `flow_ci_at`) flow-ci's
    /// own earlier report carrying `marker`.
    pub fn seed(&self, n: usize, flow_ci_at: Option<usize>, marker: &str) {
        for i in 0..n {
            match Some(i) == flow_ci_at {
                true => self.add_comment(BOT, &format!("{marker}\nold report")),
                false => self.add_comment("octocat", &format!("LGTM #{i}")),
            };
        }
    }

    /// A comment by `author`; returns its id.
    pub fn add_comment(&self, author: &str, body: &str) -> u64 {
        let mut st = self.state.lock().unwrap();
        let id = 1000 + st.comments.len() as u64;
        st.comments.push(StoredComment { id, body: body.into(), author: author.into() });
        id
    }

    /// The token can read but not write (a fork's `GITHUB_TOKEN`).
    pub fn read_only(&self) {
        self.state.lock().unwrap().read_only = true;
    }

    /// Answers every request 502 with its `Authorization` header in the body.
    pub fn echo_token(&self) {
        self.state.lock().unwrap().echo_token = true;
    }

    /// The next requests are answered `status` with `headers` (and GitHub's
    /// message for it), one each, before any is handled.
    pub fn fail_next(&self, answers: &[(u16, &[(&str, &str)])]) {
        let mut st = self.state.lock().unwrap();
        for (status, headers) in answers {
            let message = match status {
                403 | 429 => {
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
                }
                401 => "Bad credentials",
                _ => "Server Error",
            };
            let mut answer = Answer::json(*status, json!({ "message": message }));
            for (k, v) in headers.iter() {
                answer = answer.with_header(k, v.to_string());
            }
            st.failures.push_back(answer);
        }
    }

    /// `Link: rel="next"` names `origin` (another server) for the next page.
    pub fn next_page_on(&self, origin: &str) {
        self.state.lock().unwrap().next_origin = Some(origin.to_string());
    }

    pub fn comments(&self) -> Vec<StoredComment> {
        self.state.lock().unwrap().comments.clone()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// `METHOD path` of every request, in order.
    pub fn calls(&self) -> Vec<String> {
        self.received().iter().map(|r| format!("{} {}", r.method, r.path)).collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

type Refusal = (u16, String);

fn respond(req: &Received, st: &mut State, prefix: &str, api: &str) -> Result<Answer, Refusal> {
    check_headers(req)?;
    if st.echo_token {
        let echo = format!("proxy refused {} (Authorization: {})", req.path, req.header("authorization").unwrap_or(""));
        return Ok(Answer::json(502, json!({ "message": echo, "token": TOKEN })));
    }
    let repo = format!("{prefix}/repos/{REPOSITORY}");
    let list = format!("{repo}/issues/{PR}/comments");
    let path = req.path.as_str();
    if path == format!("{prefix}/user") && req.method == "GET" {
        // What GitHub answers an installation token (GITHUB_TOKEN).
        return Ok(Answer::json(403, json!({ "message": "Resource not accessible by integration" })));
    }
    if path == list && req.method == "GET" {
        return Ok(page(req, st, api, &list));
    }
    if path == list && req.method == "POST" {
        let body = body_text(req)?;
        if st.read_only {
            return Err((403, "Resource not accessible by integration".into()));
        }
        let id = 1000 + st.comments.len() as u64;
        st.comments.push(StoredComment { id, body: body.clone(), author: BOT.into() });
        return Ok(Answer::json(201, comment_json(id, &body, BOT)));
    }
    if let Some(id) = path.strip_prefix(&format!("{repo}/issues/comments/")) {
        if req.method != "PATCH" {
            return Err((404, format!("{} {path}: GitHub updates comments with PATCH", req.method)));
        }
        let body = body_text(req)?;
        if st.read_only {
            return Err((403, "Resource not accessible by integration".into()));
        }
        let id: u64 = id.parse().map_err(|_| (404, format!("no comment {id}")))?;
        let comment = st.comments.iter_mut().find(|c| c.id == id).ok_or((404, format!("no comment {id}")))?;
        if comment.author != BOT {
            return Err((403, format!("flow-ci edited comment {id} by {}, not its own", comment.author)));
        }
        comment.body = body.clone();
        return Ok(Answer::json(200, comment_json(id, &body, BOT)));
    }
    Err((404, format!("{} {path} is not an endpoint of this repository's PR {PR}", req.method)))
}

fn check_headers(req: &Received) -> Result<(), Refusal> {
    if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return Err((401, "Bad credentials: missing or wrong bearer token".into()));
    }
    if req.header("accept") != Some("application/vnd.github+json") {
        return Err((415, "Accept must be application/vnd.github+json".into()));
    }
    if req.header("x-github-api-version") != Some("2022-11-28") {
        return Err((400, "X-GitHub-Api-Version 2022-11-28 expected".into()));
    }
    if req.header("user-agent").is_none_or(str::is_empty) {
        return Err((403, "a User-Agent header is required".into()));
    }
    Ok(())
}

fn body_text(req: &Received) -> Result<String, Refusal> {
    if !req.header("content-type").is_some_and(|c| c.starts_with("application/json")) {
        return Err((415, "the body must be JSON".into()));
    }
    match req.body.get("body").and_then(Json::as_str) {
        Some(b) if b.chars().count() <= 65_536 => Ok(b.to_string()),
        Some(_) => Err((422, "Body is too long (maximum is 65536 characters)".into())),
        None => Err((422, "body is missing".into())),
    }
}

/// One page of comments, 100 at most (`per_page` above 100 is capped like GitHub does).
fn page(req: &Received, st: &State, api: &str, list: &str) -> Answer {
    let per_page: usize = req.param("per_page").and_then(|v| v.parse().ok()).unwrap_or(30).min(100);
    let page: usize = req.param("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let items: Vec<Json> = st
        .comments
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|c| comment_json(c.id, &c.body, &c.author))
        .collect();
    let answer = Answer::json(200, Json::Array(items));
    if page * per_page < st.comments.len() {
        let origin = st.next_origin.as_deref().unwrap_or_else(|| api.split("/api/v3").next().unwrap_or(api));
        let next = format!("<{origin}{list}?per_page={per_page}&page={}>; rel=\"next\"", page + 1);
        answer.with_header("link", next)
    } else {
        answer
    }
}

fn comment_json(id: u64, body: &str, author: &str) -> Json {
    let kind = if author.ends_with("[bot]") { "Bot" } else { "User" };
    json!({
        "id": id,
        "html_url": format!("https://github.com/{REPOSITORY}/pull/{PR}#issuecomment-{id}"),
        "body": body,
        "user": { "login": author, "type": kind },
    })
}
