//! A loopback Azure DevOps REST API for pull request threads (7.1), as
//! flow-ci's sticky thread uses it: list, create, update a comment, set the
//! thread status.
//!
//! It checks what Azure DevOps would: the bearer token, `api-version=7.1`,
//! the organization, project, repository and PR in the path, and well-formed
//! bodies (a first comment with `parentCommentId: 0`, a known status); a
//! violation is recorded and answered 4xx.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};

use super::http::{Answer, Received, serve};

pub const ORGANIZATION: &str = "contoso";
pub const PROJECT: &str = "Prompt Flows";
pub const REPOSITORY_ID: &str = "d2b7c1a4-5e6f-4a8b-9c0d-1e2f3a4b5c6d";
pub const PR: u64 = 17;
pub const TOKEN: &str = "ado_fake_access_token";

const STATUSES: &[&str] = &["active", "fixed", "wontFix", "closed", "byDesign", "pending"];

#[derive(Clone, Debug)]
pub struct Thread {
    pub id: u64,
    pub status: String,
    pub comments: Vec<(u64, String)>,
}

#[derive(Default)]
struct State {
    threads: Vec<Thread>,
    received: Vec<Received>,
    violations: Vec<String>,
    /// Answers given, in turn, to the next requests before any is handled.
    failures: std::collections::VecDeque<Answer>,
}

pub struct FakeAzureDevOps {
    /// `SYSTEM_COLLECTIONURI`: `http://127.0.0.1:N/contoso/`.
    pub collection: String,
    state: Arc<Mutex<State>>,
}

impl FakeAzureDevOps {
    pub fn start() -> FakeAzureDevOps {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let url = serve(move |req| {
            let mut st = shared.lock().unwrap();
            st.received.push(req.clone());
            if let Some(failure) = st.failures.pop_front() {
                return failure;
            }
            match respond(req, &mut st) {
                Ok(answer) => answer,
                Err((status, problem)) => {
                    st.violations.push(problem.clone());
                    Answer::json(status, json!({ "message": problem, "typeKey": "FakeRefusal" }))
                }
            }
        });
        FakeAzureDevOps { collection: format!("{url}/{ORGANIZATION}/"), state }
    }

    /// The next requests are answered `status` with `headers`, one each,
    /// before any is handled (a throttled or busy Azure DevOps).
    pub fn fail_next(&self, answers: &[(u16, &[(&str, &str)])]) {
        let mut st = self.state.lock().unwrap();
        for (status, headers) in answers {
            let body = json!({ "message": format!("fake {status}"), "typeKey": "FakeFailure" });
            let mut answer = Answer::json(*status, body);
            for (k, v) in headers.iter() {
                answer = answer.with_header(k, v.to_string());
            }
            st.failures.push_back(answer);
        }
    }

    /// A reviewer's thread, so flow-ci must pick its own.
    pub fn seed_reviewer_thread(&self) {
        let mut st = self.state.lock().unwrap();
        let id = st.threads.len() as u64 + 1;
        st.threads.push(Thread { id, status: "active".into(), comments: vec![(1, "Please add tests.".into())] });
    }

    pub fn threads(&self) -> Vec<Thread> {
        self.state.lock().unwrap().threads.clone()
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().received.iter().map(|r| format!("{} {}", r.method, r.path)).collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

type Refusal = (u16, String);

fn threads_path() -> String {
    let project = PROJECT.replace(' ', "%20");
    format!("/{ORGANIZATION}/{project}/_apis/git/repositories/{REPOSITORY_ID}/pullRequests/{PR}/threads")
}

fn respond(req: &Received, st: &mut State) -> Result<Answer, Refusal> {
    if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return Err((401, "TF400813: the user is not authorized to access this resource".into()));
    }
    if req.param("api-version") != Some("7.1") {
        return Err((400, format!("api-version=7.1 expected, query was `{}`", req.query)));
    }
    let base = threads_path();
    let Some(rest) = req.path.strip_prefix(&base) else {
        return Err((404, format!("{} is not this PR's threads resource {base}", req.path)));
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", []) => {
            let value: Vec<Json> = st.threads.iter().map(thread_json).collect();
            Ok(Answer::json(200, json!({ "value": value, "count": value.len() })))
        }
        ("POST", []) => {
            let first = &req.body["comments"][0];
            let content = first["content"].as_str().ok_or((400, "comments[0].content missing".to_string()))?;
            if first["parentCommentId"] != json!(0) {
                return Err((400, "the first comment of a thread has parentCommentId 0".into()));
            }
            let status = status_of(&req.body)?;
            let id = st.threads.len() as u64 + 1;
            let thread = Thread { id, status, comments: vec![(1, content.to_string())] };
            let answer = thread_json(&thread);
            st.threads.push(thread);
            Ok(Answer::json(200, answer))
        }
        ("PATCH", [thread]) => {
            let status = status_of(&req.body)?;
            let t = find(st, thread)?;
            t.status = status;
            Ok(Answer::json(200, thread_json(t)))
        }
        ("PATCH", [thread, "comments", comment]) => {
            let content = req.body["content"].as_str().ok_or((400, "content missing".to_string()))?.to_string();
            let t = find(st, thread)?;
            let c = t
                .comments
                .iter_mut()
                .find(|(id, _)| id.to_string() == *comment)
                .ok_or((404, "no comment".to_string()))?;
            c.1 = content.clone();
            Ok(Answer::json(200, json!({ "id": c.0, "content": content })))
        }
        _ => Err((405, format!("{} {} is not supported", req.method, req.path))),
    }
}

fn status_of(body: &Json) -> Result<String, Refusal> {
    match body["status"].as_str() {
        Some(s) if STATUSES.contains(&s) => Ok(s.to_string()),
        other => Err((400, format!("unknown thread status {other:?}"))),
    }
}

fn find<'a>(st: &'a mut State, id: &str) -> Result<&'a mut Thread, Refusal> {
    st.threads.iter_mut().find(|t| t.id.to_string() == id).ok_or((404, format!("no thread {id}")))
}

fn thread_json(t: &Thread) -> Json {
    json!({
        "id": t.id,
        "status": t.status,
        "isDeleted": false,
        "comments": t.comments.iter().map(|(id, content)| json!({
            "id": id, "parentCommentId": 0, "content": content, "commentType": "text"
        })).collect::<Vec<_>>(),
    })
}
