//! A loopback chat-completions server speaking the Azure OpenAI and OpenAI
//! wire protocol, for tests and benchmarks.
//!
//! It checks every request the way the real services would (method, path,
//! `api-version`, the auth header against the expected key, a JSON body
//! with `model` and well-formed `messages`) and answers 400/401/404 when one
//! is wrong, recording the violation. Answers are deterministic: a ticket
//! classifier when the system prompt asks for a category, else an echo of
//! the last user message. Failures (429 with Retry-After, 500) can be
//! queued, and a latency can be set.
//!
//! Both APIs of `type: llm` nodes are served: chat completions and
//! completions (`api: completion`: `…/completions` with a `prompt`, answered
//! with `choices[].text`). With [`FakeLlm::require_entra_token`] Azure
//! requests must carry `Authorization: Bearer <token>` and no `api-key`, as
//! the openai SDK sends a `meid_token` connection's Entra ID token
//! (`azure_ad_token_provider`); the key is then refused like a wrong one.
//!
//! Embeddings are served too (`…/deployments/D/embeddings`, `/v1/embeddings`,
//! as promptflow-tools' `embedding` tool calls them through the openai SDK):
//! `input` a string or strings, answered with one deterministic 8-number
//! vector per input ([`embedding_of`]), as floats or, when the body asks for
//! `encoding_format: base64` (the SDK's default), as little-endian float32s
//! in base64, the real API's two shapes.
//!
//! With [`FakeLlm::limit_in_flight`] it holds at most N requests at once and
//! answers the others at once with 429, `retry-after-ms` (when the first
//! request in flight will be answered, as Azure OpenAI sends it besides
//! `retry-after` in whole seconds) and `retry-after`; it records the most
//! it held at once and the 429s it sent. With
//! [`FakeLlm::send_rate_limit_headers`] every answer says what is left
//! (`x-ratelimit-remaining-requests`, `x-ratelimit-remaining-tokens`).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

pub use super::http::Received;
use super::http::{Answer, serve};

pub const AZURE_API_VERSION: &str = "2024-02-01";

#[derive(Default)]
struct State {
    received: Vec<Received>,
    violations: Vec<String>,
    failures: VecDeque<(u16, Option<String>)>,
    /// Every request is answered 307 to this base URL (same path and query).
    redirect: Option<String>,
    /// Requests held at once before answering 429.
    limit: Option<usize>,
    /// When each request in flight will be answered.
    in_flight: Vec<Instant>,
    max_in_flight: usize,
    throttled: usize,
    rate_limit_headers: bool,
    /// Azure requests authenticate with this Entra ID token instead of the key.
    entra_token: Option<String>,
    /// `Retry-After` of each refusal injected with `fail_next`, as sent.
    retry_afters_sent: Vec<Option<String>>,
}

pub struct FakeLlm {
    pub url: String,
    key: String,
    latency: Duration,
    state: Arc<Mutex<State>>,
}

impl FakeLlm {
    /// Starts the server; requests must carry `key`.
    pub fn start(key: &str) -> FakeLlm {
        FakeLlm::start_with_latency(key, Duration::ZERO)
    }

    pub fn start_with_latency(key: &str, latency: Duration) -> FakeLlm {
        let state = Arc::new(Mutex::new(State::default()));
        let (shared, key_owned) = (state.clone(), key.to_string());
        let url = serve(move |req| {
            let answer = match admit(req, &shared, &key_owned, latency) {
                Ok(due) => {
                    std::thread::sleep(latency);
                    let mut st = shared.lock().unwrap();
                    if let Some(i) = st.in_flight.iter().position(|d| *d == due) {
                        st.in_flight.swap_remove(i);
                    }
                    let mut headers = vec![];
                    if st.rate_limit_headers {
                        let left = st.limit.map_or(1000, |l| l.saturating_sub(st.in_flight.len()));
                        headers.push(("x-ratelimit-remaining-requests", left.to_string()));
                        headers.push(("x-ratelimit-remaining-tokens", (left * 1000).to_string()));
                    }
                    (200, headers, answer(req))
                }
                Err(refused) => refused,
            };
            let (status, headers, body) = answer;
            Answer { status, headers: headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), body }
        });
        FakeLlm { url, key: key.into(), latency, state }
    }

    /// From now on at most `n` requests are held at once; the others get 429.
    pub fn limit_in_flight(&self, n: usize) {
        self.state.lock().unwrap().limit = Some(n);
    }

    /// From now on answers carry `x-ratelimit-remaining-requests` / `-tokens`.
    pub fn send_rate_limit_headers(&self) {
        self.state.lock().unwrap().rate_limit_headers = true;
    }

    /// The most requests held at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// Requests answered 429 because `limit_in_flight` was reached.
    pub fn throttled(&self) -> usize {
        self.state.lock().unwrap().throttled
    }

    /// From now on Azure requests must carry `Authorization: Bearer {token}`
    /// (a `meid_token` connection) and no `api-key`.
    pub fn require_entra_token(&self, token: &str) {
        self.state.lock().unwrap().entra_token = Some(token.to_string());
    }

    /// The `Retry-After` header of each injected failure, in the order sent.
    pub fn retry_afters_sent(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().retry_afters_sent.clone()
    }

    /// The next request gets `status` (with `Retry-After` when given) instead of an answer.
    pub fn fail_next(&self, status: u16, retry_after: Option<&str>) {
        self.state.lock().unwrap().failures.push_back((status, retry_after.map(str::to_string)));
    }

    /// From now on every request is answered `307 Temporary Redirect` to
    /// the same path and query on `base` (e.g. another loopback server).
    pub fn redirect_to(&self, base: &str) {
        self.state.lock().unwrap().redirect = Some(base.to_string());
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().received.len()
    }

    /// Protocol mistakes seen so far (wrong path, auth, body...).
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

type Reply = (u16, Vec<(&'static str, String)>, Json);

/// Checks and admits a request: `Ok(when it will be answered)` when it is
/// held, else the answer to send at once.
fn admit(req: &Received, state: &Mutex<State>, key: &str, latency: Duration) -> Result<Instant, Reply> {
    let mut st = state.lock().unwrap();
    st.received.push(req.clone());
    if let Some(base) = &st.redirect {
        let location = format!("{base}{}?{}", req.path, req.query);
        return Err((307, vec![("location", location)], json!({})));
    }
    let auth = match &st.entra_token {
        Some(token) => Auth::Entra(token.clone()),
        None => Auth::Key(key.to_string()),
    };
    if let Some(problem) = check(req, &auth) {
        st.violations.push(problem.clone());
        let status = if problem.starts_with("auth") {
            401
        } else if problem.starts_with("path") {
            404
        } else {
            400
        };
        return Err((status, vec![], json!({"error": {"message": problem, "code": status.to_string()}})));
    }
    if let Some((status, retry_after)) = st.failures.pop_front() {
        st.retry_afters_sent.push(retry_after.clone());
        let headers = retry_after.map(|r| vec![("retry-after", r)]).unwrap_or_default();
        return Err((
            status,
            headers,
            json!({"error": {"message": format!("injected {status}"), "code": status.to_string()}}),
        ));
    }
    let now = Instant::now();
    if let Some(limit) = st.limit
        && st.in_flight.len() >= limit
    {
        st.throttled += 1;
        let first = st.in_flight.iter().min().copied().unwrap_or(now);
        let ms = first.saturating_duration_since(now).as_millis().max(1);
        let headers = vec![("retry-after-ms", ms.to_string()), ("retry-after", ms.div_ceil(1000).to_string())];
        let message = format!(
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {AZURE_API_VERSION} have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after {} second.",
            ms.div_ceil(1000)
        );
        return Err((429, headers, json!({"error": {"code": "429", "message": message}})));
    }
    let due = now + latency;
    st.in_flight.push(due);
    st.max_in_flight = st.max_in_flight.max(st.in_flight.len());
    Ok(due)
}

/// How Azure requests authenticate: the key (`api-key`) or an Entra ID
/// token (`Authorization: Bearer`, a `meid_token` connection).
enum Auth {
    Key(String),
    Entra(String),
}

/// Azure OpenAI's two APIs of `type: llm` nodes, by the path's last segment.
fn api_of(path: &str) -> Option<(&str, bool)> {
    path.strip_suffix("/chat/completions")
        .map(|d| (d, true))
        .or_else(|| path.strip_suffix("/completions").map(|d| (d, false)))
}

/// What the real service would refuse.
fn check(req: &Received, auth: &Auth) -> Option<String> {
    if req.method != "POST" {
        return Some(format!("method {} is not POST", req.method));
    }
    let key = match auth {
        Auth::Key(key) => key.as_str(),
        Auth::Entra(_) => "",
    };
    if req.path == "/openai/v1/responses" {
        return check_responses(req, key);
    }
    if req.path.ends_with("/embeddings") {
        return check_embeddings(req, auth);
    }
    let azure = req.path.starts_with("/openai/deployments/");
    let chat;
    if azure {
        let Some((deployment, is_chat)) = api_of(req.path.trim_start_matches("/openai/deployments/")) else {
            return Some(format!("path {} is not a chat completions or completions path", req.path));
        };
        chat = is_chat;
        if req.query != format!("api-version={AZURE_API_VERSION}") {
            return Some(format!("query `{}` lacks api-version={AZURE_API_VERSION}", req.query));
        }
        match auth {
            Auth::Key(key) if req.header("api-key") != Some(key) => {
                return Some("auth: missing or wrong api-key header".into());
            }
            // Azure OpenAI takes a key or a token; a meid_token connection has no key to send.
            Auth::Entra(token) if req.header("authorization") != Some(&format!("Bearer {token}")) => {
                return Some(format!(
                    "auth: expected the Entra ID bearer token, got {:?}",
                    req.header("authorization")
                ));
            }
            Auth::Entra(_) if req.header("api-key").is_some() => {
                return Some("auth: an api-key header on a meid_token connection".into());
            }
            _ => {}
        }
        if req.body.get("model").and_then(Json::as_str) != Some(deployment) {
            return Some("body: model differs from the deployment in the path".into());
        }
    } else {
        chat = req.path == "/v1/chat/completions";
        if !chat && req.path != "/v1/completions" {
            return Some(format!("path {} is not /v1/chat/completions or /v1/completions", req.path));
        }
        if req.header("authorization") != Some(&format!("Bearer {key}")) {
            return Some("auth: missing or wrong bearer token".into());
        }
        if req.body.get("model").and_then(Json::as_str).is_none_or(str::is_empty) {
            return Some("body: no model".into());
        }
    }
    if !chat {
        // The completions API: a prompt (string or strings), no messages.
        let prompt_ok = match req.body.get("prompt") {
            Some(Json::String(_)) => true,
            Some(Json::Array(items)) => items.iter().all(Json::is_string),
            _ => false,
        };
        if !prompt_ok || req.body.get("messages").is_some() {
            return Some(format!("body: a completions request needs a prompt, not messages: {}", req.body));
        }
        // promptflow-tools sends `stream: false`; the openai SDK called by a python node leaves it out.
        if req.body.get("stream").is_some_and(|s| s != &json!(false)) {
            return Some("body: stream must be false".into());
        }
        return None;
    }
    let messages = req.body.get("messages").and_then(Json::as_array);
    let well_formed = messages.is_some_and(|m| {
        !m.is_empty()
            && m.iter().all(|x| {
                matches!(
                    x.get("role").and_then(Json::as_str),
                    Some("system" | "user" | "assistant" | "tool" | "function")
                ) && x.get("content").is_some()
            })
    });
    if !well_formed {
        return Some(format!("body: malformed messages {:?}", req.body.get("messages")));
    }
    // promptflow-tools always sends `stream: false`; the openai SDK leaves it out. This fake does not stream.
    if req.body.get("stream").is_some_and(|s| s != &json!(false)) {
        return Some("body: stream must be false".into());
    }
    None
}

/// An embeddings request: Azure's `/openai/deployments/D/embeddings` with
/// api-version, api-key and `model` naming D (the SDK puts it in the body),
/// or OpenAI's `/v1/embeddings` with a bearer key; `input` a string or
/// strings; `encoding_format` absent, `float` or `base64`.
fn check_embeddings(req: &Received, auth: &Auth) -> Option<String> {
    let Auth::Key(key) = auth else { return Some("auth: the fake serves embeddings with a key only".into()) };
    if let Some(deployment) = req.path.strip_prefix("/openai/deployments/").and_then(|p| p.strip_suffix("/embeddings"))
    {
        if req.query != format!("api-version={AZURE_API_VERSION}") {
            return Some(format!("query `{}` lacks api-version={AZURE_API_VERSION}", req.query));
        }
        if req.header("api-key") != Some(key.as_str()) {
            return Some("auth: missing or wrong api-key header".into());
        }
        if req.body.get("model").and_then(Json::as_str) != Some(deployment) {
            return Some("body: model differs from the deployment in the path".into());
        }
    } else if req.path == "/v1/embeddings" {
        if req.header("authorization") != Some(&format!("Bearer {key}")) {
            return Some("auth: missing or wrong bearer token".into());
        }
    } else {
        return Some(format!("path {} is not an embeddings path", req.path));
    }
    let input_ok = match req.body.get("input") {
        Some(Json::String(_)) => true,
        Some(Json::Array(items)) => !items.is_empty() && items.iter().all(Json::is_string),
        _ => false,
    };
    if !input_ok {
        return Some(format!("body: embeddings need an input string or strings: {}", req.body));
    }
    match req.body.get("encoding_format").and_then(Json::as_str) {
        None | Some("float" | "base64") => None,
        Some(other) => Some(format!("body: encoding_format {other} is neither float nor base64")),
    }
}

/// A text's embedding: 8 numbers from its bytes, each a multiple of 1/8
/// below 125, so float32 holds them exactly and both encodings give the
/// same numbers back.
pub fn embedding_of(text: &str) -> Vec<f32> {
    let mut sums = [0u32; 8];
    for (i, b) in text.bytes().enumerate() {
        sums[i % 8] += u32::from(b);
    }
    sums.iter().map(|s| (s % 1000) as f32 / 8.0).collect()
}

fn embeddings_answer(req: &Received) -> Json {
    use base64::Engine as _;
    let inputs: Vec<String> = match &req.body["input"] {
        Json::Array(items) => items.iter().filter_map(Json::as_str).map(str::to_string).collect(),
        other => vec![other.as_str().unwrap_or_default().to_string()],
    };
    let base64 = req.body.get("encoding_format").and_then(Json::as_str) == Some("base64");
    let data: Vec<Json> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embedding_of(text);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    json!({
        "object": "list",
        "data": data,
        "model": req.body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    })
}

/// Azure OpenAI's v1 Responses API (`POST {endpoint}/openai/v1/responses`),
/// which Agent Framework's `OpenAIChatClient` calls: an `api-key`, an
/// `api-version` of `preview` or `v1` (or none), a `model` and an `input`.
fn check_responses(req: &Received, key: &str) -> Option<String> {
    if !matches!(req.param("api-version"), None | Some("preview" | "v1")) {
        return Some(format!("query `{}`: the v1 API takes api-version=preview or v1", req.query));
    }
    if req.header("api-key") != Some(key) {
        return Some("auth: missing or wrong api-key header".into());
    }
    if req.body.get("model").and_then(Json::as_str).is_none_or(str::is_empty) {
        return Some("body: no model".into());
    }
    match req.body.get("input") {
        Some(Json::String(_)) => None,
        Some(Json::Array(items)) if items.iter().all(|i| i.get("role").is_some() && i.get("content").is_some()) => None,
        other => Some(format!("body: malformed input {other:?}")),
    }
}

/// The text of a chat message's or a Responses input item's content
/// (a string, or parts with `text`).
fn content_text(content: &Json) -> String {
    match content {
        Json::String(s) => s.clone(),
        Json::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""),
        _ => String::new(),
    }
}

/// The system and last user text of a chat or Responses request.
fn prompt(req: &Received) -> (String, String) {
    let items = req.body.get("messages").or_else(|| req.body.get("input").filter(|i| i.is_array()));
    let items = items.and_then(Json::as_array).cloned().unwrap_or_default();
    let text = |role: &str| items.iter().rev().find(|m| m["role"] == role).map(|m| content_text(&m["content"]));
    let system = req.body["instructions"].as_str().map(str::to_string).or_else(|| text("system")).unwrap_or_default();
    let user = req.body["input"].as_str().map(str::to_string).or_else(|| text("user")).unwrap_or_default();
    (system, user)
}

/// A deterministic model: promptflow's web-classification prompts (a
/// summary, a URL category), a ticket classifier when asked for a
/// category, otherwise an echo of the last user message.
fn answer(req: &Received) -> Json {
    if req.path.ends_with("/embeddings") {
        return embeddings_answer(req);
    }
    if let Some(prompt) = req.body.get("prompt") {
        // The completions API: the prompt's text back, as a completion model
        // continues it; its first line names the category when asked.
        let text = prompt.as_str().map_or_else(|| prompt.to_string(), str::to_string);
        let content = if text.to_lowercase().contains("category") {
            format!(" {}", classify(&text))
        } else {
            format!(" echo: {text}")
        };
        let (prompt_tokens, completion_tokens) = (text.split_whitespace().count(), content.split_whitespace().count());
        return json!({
            "id": "cmpl-fake",
            "object": "text_completion",
            "model": req.body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null, "text": content}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
        });
    }
    if let Some(name) = req.body["functions"].get(0).and_then(|f| f.get("name")) {
        return function_call(req, name);
    }
    let (system, user) = prompt(req);
    let lower = system.to_lowercase();
    let content = if lower.contains("evaluation metric") {
        judge(&user)
    } else if lower.contains("classify a given url") {
        web_category(&user)
    } else if lower.contains("summarize") {
        summarize(&user)
    } else if lower.contains("category") {
        json!({"category": classify(&user)}).to_string()
    } else {
        format!("echo: {user}")
    };
    let prompt_tokens = system.split_whitespace().count() + user.split_whitespace().count();
    let completion_tokens = content.split_whitespace().count();
    if req.path == "/openai/v1/responses" {
        return json!({
            "id": "resp_fake",
            "object": "response",
            "created_at": 1_700_000_000,
            "status": "completed",
            "model": req.body["model"],
            "output": [{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": content, "annotations": []}]}],
            "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
        });
    }
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": req.body["model"],
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
    })
}

/// Asked with `functions`, the model calls the first one with a location,
/// as the service answers: no `content` key's text, a `function_call`, and
/// none of the keys it leaves out (`refusal`, `tool_calls`, ...).
fn function_call(req: &Received, name: &Json) -> Json {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": req.body["model"],
        "choices": [{"index": 0, "finish_reason": "function_call", "message": {
            "role": "assistant", "content": null,
            "function_call": {"name": name, "arguments": "{\n  \"location\": \"London\"\n}"}}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    })
}

/// azure-ai-evaluation's similarity judge (the migration guide's parity
/// check): 5 when the predicted answer is the correct one, else 1, as the
/// JSON object its prompt asks for.
fn judge(user: &str) -> String {
    let field = |label: &str| user.rsplit_once(label).map(|(_, t)| t.lines().next().unwrap_or("").trim().to_string());
    let same = field("correct answer:") == field("predicted answer:");
    json!({"reason": if same { "the same answer" } else { "a different answer" }, "score": if same { 5 } else { 1 }, "status": "completed"})
        .to_string()
}

/// web-classification's summary: the first 30 words of the page text
/// (the prompt's `Text: …` up to `Summary:`).
fn summarize(user: &str) -> String {
    let text = user.split_once("Text:").map_or(user, |(_, t)| t);
    let text = text.rsplit_once("Summary:").map_or(text, |(t, _)| t);
    text.split_whitespace().take(30).collect::<Vec<_>>().join(" ")
}

/// web-classification's answer: a category from the words of the last
/// `Text content:` (the page summary; the few-shot examples come before
/// it), as the JSON the flow's convert_to_dict and the port parse.
fn web_category(user: &str) -> String {
    let text = user.rsplit_once("Text content:").map_or("", |(_, t)| t).to_lowercase();
    let signals: [(&str, &[&str]); 6] = [
        ("Movie", &["film", "movie", "trailer", "starring"]),
        ("App", &["install", "download", "app "]),
        ("Academic", &["abstract", "university", "research", "paper"]),
        ("Channel", &["subscribe", "subscribers", "channel"]),
        ("Profile", &["followers", "profile"]),
        ("PDF", &["pdf", "printable"]),
    ];
    // The signal that appears first in the text wins.
    let found = signals
        .iter()
        .filter_map(|(category, words)| words.iter().filter_map(|w| text.find(w)).min().map(|at| (at, *category)))
        .min();
    json!({"category": found.map_or("None", |(_, c)| c), "evidence": "Both"}).to_string()
}

pub fn classify(text: &str) -> &'static str {
    let t = text.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&["refund", "charge", "invoice", "billing", "payment"]) {
        "billing"
    } else if has(&["password", "login", "log in", "error", "crash", "bug"]) {
        "technical"
    } else if has(&["ship", "deliver", "package", "tracking"]) {
        "shipping"
    } else {
        "other"
    }
}
