//! Sending LLM requests: the response cache first, then the provider within
//! the deployment's adaptive limit (`limit`), retries with backoff that
//! honour `Retry-After` (promptflow-tools retries 429, 422 and 5xx the same
//! way), a per-request timeout, and token usage counted per run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use net::http::{error_chain, retry_after};

use super::cache::{Cache, Lookup};
use super::limit::{self, Budget, Limiter, Permit, Signal};
use super::request::{Provider, Request};
use model::connection::{Connection, Secret};

/// How LLM calls behave for one invocation of flow-ci.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The most requests in flight at once to one deployment, across all
    /// lines and runs; the limit adapts below it.
    pub concurrency: usize,
    /// Per-minute budgets of each deployment (`llm.rpm`, `llm.tpm`).
    pub budget: Budget,
    /// The response cache folder; `None` disables the cache.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Retries after the first attempt for 429 / 422 / 5xx / timeouts.
    pub retries: u32,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

/// Token usage and cache counts of one run (shared by its lines).
#[derive(Debug, Default)]
pub struct Usage {
    requests: AtomicU64,
    cache_hits: AtomicU64,
    retries: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    total_tokens: AtomicU64,
    throttled: AtomicU64,
    waited_ms: AtomicU64,
    peak_in_flight: AtomicU64,
    /// Tokens by deployment (Azure) or model (OpenAI), for prices.
    by_model: std::sync::Mutex<std::collections::BTreeMap<String, Tokens>>,
}

/// Prompt and completion tokens of one deployment or model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// What `run.json` records under `llm`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSummary {
    /// Requests sent to a provider (not counting retries).
    pub requests: u64,
    pub cache_hits: u64,
    pub retries: u64,
    /// Tokens of every response the run used, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Answers 429 / 503 (each retried).
    #[serde(default)]
    pub throttled: u64,
    /// Milliseconds requests waited for the deployment's limit (summed over requests).
    #[serde(default)]
    pub waited_ms: u64,
    /// The most requests in flight to one deployment when this run sent one
    /// (other runs of the same flow-ci process included).
    #[serde(default)]
    pub peak_in_flight: u64,
    /// Tokens by deployment (Azure) or model (OpenAI), cached answers included.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub by_model: std::collections::BTreeMap<String, Tokens>,
}

impl Usage {
    pub fn summary(&self) -> UsageSummary {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UsageSummary {
            requests: get(&self.requests),
            cache_hits: get(&self.cache_hits),
            retries: get(&self.retries),
            prompt_tokens: get(&self.prompt_tokens),
            completion_tokens: get(&self.completion_tokens),
            total_tokens: get(&self.total_tokens),
            throttled: get(&self.throttled),
            waited_ms: get(&self.waited_ms),
            peak_in_flight: get(&self.peak_in_flight),
            by_model: self.by_model.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    fn add_tokens(&self, model: &str, response: &Json) {
        let usage = response.get("usage");
        let n = |k: &str| usage.and_then(|u| u.get(k)).and_then(Json::as_u64);
        // Chat and completions count `prompt_tokens` / `completion_tokens`;
        // the Responses API (Agent Framework's default) `input_tokens` / `output_tokens`.
        let prompt = n("prompt_tokens").or_else(|| n("input_tokens")).unwrap_or(0);
        let completion = n("completion_tokens").or_else(|| n("output_tokens")).unwrap_or(0);
        {
            let mut by_model = self.by_model.lock().unwrap_or_else(|e| e.into_inner());
            let entry = by_model.entry(model.to_string()).or_default();
            entry.prompt_tokens += prompt;
            entry.completion_tokens += completion;
        }
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens.fetch_add(completion, Ordering::Relaxed);
        self.total_tokens.fetch_add(n("total_tokens").unwrap_or(prompt + completion), Ordering::Relaxed);
    }
}

/// Why a call produced no output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// promptflow's error kind and message (`WrappedOpenAIError`, `ExceedMaxRetryTimes`, ...).
    #[error("{message}")]
    Failed { kind: &'static str, message: String },
    /// The request is not cached and the connection has no key: nothing can run.
    #[error(
        "node `{node}` needs connection `{connection}` (defined in {origin}) to call the model, but {why}; set the key, or run with recorded responses in the cache"
    )]
    MissingKey { node: String, connection: String, origin: String, why: String },
}

/// The LLM client shared by every run of one flow-ci invocation.
pub struct Client {
    settings: Settings,
    cache: Option<Cache>,
    http: reqwest::blocking::Client,
    limiter: Limiter,
    tokens: net::entra::TokenSource,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Client, String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("flow-ci/", env!("CARGO_PKG_VERSION")))
            // `api-key` is a custom header, which reqwest's default policy
            // forwards to any host a redirect names.
            .redirect(net::http::same_origin_redirects())
            .build()
            .map_err(|e| format!("cannot start the HTTP client: {e}"))?;
        Ok(Client {
            cache: settings.cache_dir.clone().map(Cache::new),
            limiter: Limiter::new(settings.concurrency, settings.budget),
            tokens: net::entra::TokenSource::from_env(http.clone(), net::entra::COGNITIVE_SERVICES),
            http,
            settings,
        })
    }

    /// The node's output for `req`: from the cache, or from the provider.
    pub fn complete(
        &self,
        node: &str,
        conn: &Connection,
        req: &Request,
        usage: &Usage,
        deadline: Instant,
    ) -> Result<Json, CallError> {
        let key = Cache::key(req);
        if let Some(response) = self.cached(&key, &req.model, usage) {
            return output(req, &response);
        }
        let auth = self.auth(node, conn)?;
        usage.requests.fetch_add(1, Ordering::Relaxed);
        let response = self.send_with_retries(req, &auth, usage, deadline)?;
        usage.add_tokens(&req.model, &response);
        self.remember(&key, req, &response);
        output(req, &response)
    }

    /// One request of python code that calls the model itself, through the
    /// model proxy: the same cache, deployment limit, key and usage counts
    /// as `llm` nodes. One attempt: a 429 goes back to the caller with its
    /// `Retry-After` (the SDK retries), after pausing the deployment here.
    pub fn forward(&self, fwd: &Forward<'_>, usage: &Usage, deadline: Instant) -> Result<Forwarded, CallError> {
        let provider = match fwd.conn.kind {
            model::connection::Kind::AzureOpenAI => Provider::AzureOpenAI,
            _ => Provider::OpenAI,
        };
        let request = fwd.json.as_ref().map(|body| Request {
            provider,
            api: super::request::Api::Chat,
            url: fwd.url.clone(),
            model: fwd.model.clone(),
            body: body.clone(),
            returns_message: false,
        });
        // Streamed answers are passed through, never cached.
        let streamed = fwd.json.as_ref().is_some_and(|b| b.get("stream") == Some(&Json::Bool(true)));
        let cacheable = (fwd.method == "POST" && !streamed).then_some(request.as_ref()).flatten();
        let key = cacheable.map(Cache::key);
        if let (Some(key), Some(req)) = (&key, cacheable)
            && let Some(response) = self.cached(key, &req.model, usage)
        {
            let body = serde_json::to_vec(&response).unwrap_or_default();
            let headers = vec![("content-type".to_string(), "application/json".to_string())];
            return Ok(Forwarded { status: 200, headers, body: ForwardedBody::Bytes(body) });
        }
        let auth = self.auth(fwd.caller, fwd.conn)?;
        usage.requests.fetch_add(1, Ordering::Relaxed);
        let cost = fwd.json.as_ref().map_or(1, limit::estimate_tokens);
        let permit = self.admit(&fwd.url, &fwd.model, cost, usage, deadline)?;
        let method = reqwest::Method::from_bytes(fwd.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut builder = authorize(self.http.request(method, &fwd.url), &auth).body(fwd.body.to_vec());
        if let Some(ct) = fwd.content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let response = match builder.send() {
            Ok(r) => r,
            Err(e) => {
                permit.done(Signal { kind: limit::Kind::Other, ..Signal::default() });
                let message = scrub_text(format!("cannot reach {}: {}", fwd.url, error_chain(&e)), &auth);
                return Err(CallError::Failed { kind: "APIConnectionError", message });
            }
        };
        let status = response.status().as_u16();
        let signal = signal(status, response.headers());
        permit.done(signal);
        if signal.kind == limit::Kind::Throttled {
            usage.throttled.fetch_add(1, Ordering::Relaxed);
        }
        let headers = passed_headers(response.headers());
        if streamed && (200..300).contains(&status) {
            return Ok(Forwarded { status, headers, body: ForwardedBody::Stream(Box::new(response)) });
        }
        let body = response.bytes().map(|b| b.to_vec()).unwrap_or_default();
        if (200..300).contains(&status)
            && let Some(req) = cacheable
            && let Ok(answer) = serde_json::from_slice::<Json>(&body)
        {
            usage.add_tokens(&req.model, &answer);
            if let Some(key) = &key {
                self.remember(key, req, &answer);
            }
        }
        Ok(Forwarded { status, headers, body: ForwardedBody::Bytes(body) })
    }

    /// The cached answer to the request with `key`, counted as a hit with its tokens.
    fn cached(&self, key: &str, model: &str, usage: &Usage) -> Option<Json> {
        match self.cache.as_ref()?.get(key) {
            Lookup::Hit(response) => {
                usage.cache_hits.fetch_add(1, Ordering::Relaxed);
                usage.add_tokens(model, &response);
                Some(response)
            }
            Lookup::Miss => None,
            Lookup::Corrupt(why) => {
                tracing::warn!("ignoring a corrupt LLM cache entry ({why}); it will be rewritten");
                None
            }
        }
    }

    /// Stores an answer in the cache; a failure is a warning, never fatal.
    fn remember(&self, key: &str, req: &Request, response: &Json) {
        if let Some(cache) = &self.cache
            && let Err(e) = cache.put(key, req, response)
        {
            tracing::warn!("{e}");
        }
    }

    /// A slot of the deployment's limit for one request to `url` (`model`
    /// names the deployment or model), its wait and the in-flight peak counted.
    fn admit(&self, url: &str, model: &str, cost: u64, usage: &Usage, deadline: Instant) -> Result<Permit, CallError> {
        let permit = self.limiter.acquire(&deployment_key(url, model), cost, deadline).map_err(|past| {
            CallError::Failed {
                kind: "ExceedMaxRetryTimes",
                message: match past.until {
                    Some(_) => format!(
                        "Exceed max retry times. {model} asked to wait (Retry-After, or the llm.rpm / llm.tpm budget) past the line's timeout"
                    ),
                    None => {
                        format!("Exceed max retry times. The line's timeout passed waiting for a free slot of {model}")
                    }
                },
            }
        })?;
        usage.waited_ms.fetch_add(permit.waited.as_millis() as u64, Ordering::Relaxed);
        usage.peak_in_flight.fetch_max(permit.in_flight as u64, Ordering::Relaxed);
        Ok(permit)
    }

    /// What each deployment's limit saw so far, by endpoint + deployment.
    pub fn limits(&self) -> Vec<(String, limit::Stats)> {
        self.limiter.stats()
    }

    fn auth(&self, node: &str, conn: &Connection) -> Result<Auth, CallError> {
        let missing = |why: String| CallError::MissingKey {
            node: node.into(),
            connection: conn.name.clone(),
            origin: conn.origin.clone(),
            why,
        };
        if conn.uses_entra_id() {
            return self.tokens.token().map(Auth::Bearer).map_err(|e| missing(format!("no Entra ID token: {e}")));
        }
        let key = conn.api_key().map_err(&missing)?.clone();
        let org = conn.value("organization").map(str::to_string);
        Ok(match conn.kind {
            model::connection::Kind::AzureOpenAI => Auth::ApiKey(key),
            _ => Auth::OpenAI { key, organization: org },
        })
    }

    fn send_with_retries(
        &self,
        req: &Request,
        auth: &Auth,
        usage: &Usage,
        deadline: Instant,
    ) -> Result<Json, CallError> {
        let mut consecutive_422 = 0;
        let mut attempt: u32 = 0;
        let cost = limit::estimate_tokens(&req.body);
        loop {
            let permit = self.admit(&req.url, &req.model, cost, usage, deadline)?;
            let (outcome, signal) = self.send(req, auth);
            permit.done(signal);
            let failure = match outcome {
                Ok(response) => return Ok(response),
                Err(f) => f,
            };
            let failure = scrub(failure, auth);
            let throttled = signal.kind == limit::Kind::Throttled;
            if throttled {
                usage.throttled.fetch_add(1, Ordering::Relaxed);
            }
            if !failure.retriable {
                return Err(CallError::Failed { kind: "WrappedOpenAIError", message: failure.message });
            }
            consecutive_422 = if failure.status == Some(422) { consecutive_422 + 1 } else { 0 };
            let wait = failure.retry_after.unwrap_or_else(|| backoff(attempt));
            if attempt >= self.settings.retries || consecutive_422 >= 3 || Instant::now() + wait > deadline {
                return Err(CallError::Failed {
                    kind: "ExceedMaxRetryTimes",
                    message: format!("Exceed max retry times. {}", failure.message),
                });
            }
            tracing::info!("{}; retrying in {:.1}s (retry {})", failure.message, wait.as_secs_f64(), attempt + 1);
            usage.retries.fetch_add(1, Ordering::Relaxed);
            // A throttled deployment's Retry-After pauses every send to it:
            // the next acquire waits for it.
            if !(throttled && failure.retry_after.is_some()) {
                std::thread::sleep(wait);
            }
            attempt += 1;
        }
    }

    /// One attempt: the answer, and what it says about the deployment's load.
    fn send(&self, req: &Request, auth: &Auth) -> (Result<Json, Failure>, Signal) {
        let mut builder = authorize(self.http.post(&req.url).json(&req.body), auth);
        if req.provider == Provider::AzureOpenAI {
            builder = builder.header("ms-azure-ai-promptflow-called-from", "aoai-tool");
        }
        let other = Signal { kind: limit::Kind::Other, ..Signal::default() };
        let response = match builder.send() {
            Ok(r) => r,
            Err(e) => {
                let failure = Failure {
                    status: None,
                    retriable: !e.is_redirect() && (e.is_timeout() || e.is_connect() || e.is_request()),
                    retry_after: None,
                    message: format!(
                        "OpenAI API hits {}: {}",
                        if e.is_timeout() { "APITimeoutError" } else { "APIConnectionError" },
                        error_chain(&e)
                    ),
                };
                return (Err(failure), other);
            }
        };
        let status = response.status().as_u16();
        let signal = signal(status, response.headers());
        let retry_after = signal.retry_after;
        let text = response.text().unwrap_or_default();
        if (200..300).contains(&status) {
            let parsed = serde_json::from_str(&text).map_err(|e| Failure {
                status: Some(status),
                retriable: false,
                retry_after: None,
                message: format!("OpenAI API hits exception: the response is not JSON ({e})"),
            });
            return (parsed, signal);
        }
        let failure = Failure {
            status: Some(status),
            retriable: status == 429 || status == 422 || status >= 500,
            retry_after,
            message: format!(
                "OpenAI API hits {}: Error code: {status} - {}",
                status_name(status),
                truncate(&text, 2000)
            ),
        };
        (Err(failure), signal)
    }
}

/// What the model proxy sends for a worker.
pub struct Forward<'r> {
    /// Who asks, for errors (`port workflow.py`).
    pub caller: &'r str,
    pub conn: &'r Connection,
    pub method: &'r str,
    /// The provider's URL, built from the connection's endpoint only.
    pub url: String,
    /// Deployment (Azure) or model: the limit it counts against.
    pub model: String,
    pub body: &'r [u8],
    /// `body` when it is JSON: the cache key and the token estimate.
    pub json: Option<Json>,
    pub content_type: Option<&'r str>,
}

/// The provider's answer (or the cached one) for the proxy to pass on.
pub struct Forwarded {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ForwardedBody,
}

pub enum ForwardedBody {
    Bytes(Vec<u8>),
    /// A streamed answer (server-sent events), copied as it arrives.
    Stream(Box<reqwest::blocking::Response>),
}

/// The answer headers an SDK acts on: the body's type, when to retry
/// (`Retry-After`, Azure's `retry-after-ms`) and the quota left.
fn passed_headers(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            matches!(n, "content-type" | "retry-after" | "retry-after-ms" | "x-request-id" | "apim-request-id")
                || n.starts_with("x-ratelimit-")
        })
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

fn authorize(builder: reqwest::blocking::RequestBuilder, auth: &Auth) -> reqwest::blocking::RequestBuilder {
    match auth {
        Auth::ApiKey(key) => builder.header("api-key", key.expose()),
        Auth::Bearer(token) => builder.bearer_auth(token.expose()),
        Auth::OpenAI { key, organization } => {
            let b = builder.bearer_auth(key.expose());
            match organization {
                Some(org) => b.header("OpenAI-Organization", org),
                None => b,
            }
        }
    }
}

/// What an answer says about the deployment's load.
fn signal(status: u16, headers: &reqwest::header::HeaderMap) -> Signal {
    let remaining =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    Signal {
        kind: match status {
            200..300 => limit::Kind::Healthy,
            429 | 503 => limit::Kind::Throttled,
            _ => limit::Kind::Other,
        },
        retry_after: retry_after(headers),
        // Azure OpenAI and OpenAI send these on every answer.
        remaining_requests: remaining("x-ratelimit-remaining-requests"),
        remaining_tokens: remaining("x-ratelimit-remaining-tokens"),
    }
}

/// The limit a request counts against: its endpoint and deployment (Azure:
/// both are in the URL) or model (OpenAI: the same URL for every model).
fn deployment_key(url: &str, model: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    format!("{url} {model}")
}

enum Auth {
    ApiKey(Secret),
    Bearer(Secret),
    OpenAI { key: Secret, organization: Option<String> },
}

struct Failure {
    status: Option<u16>,
    retriable: bool,
    retry_after: Option<Duration>,
    message: String,
}

/// A server may echo what it was sent; keys never reach messages.
fn scrub(mut f: Failure, auth: &Auth) -> Failure {
    f.message = scrub_text(f.message, auth);
    f
}

fn scrub_text(text: String, auth: &Auth) -> String {
    let secret = match auth {
        Auth::ApiKey(k) | Auth::Bearer(k) | Auth::OpenAI { key: k, .. } => k.expose(),
    };
    if secret.is_empty() { text } else { text.replace(secret, "***") }
}

/// promptflow-tools' backoff: 3 s, 4 s, 6 s, 10 s, ... capped at 60 s.
fn backoff(attempt: u32) -> Duration {
    let secs = 3u64.saturating_add((1u64 << attempt.min(20)) - 1).min(60);
    Duration::from_secs(secs)
}

/// The openai SDK's exception class for a status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        409 => "ConflictError",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        500.. => "InternalServerError",
        _ => "APIStatusError",
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    text.chars().take(max).collect::<String>() + "…"
}

/// The tool's return value: the message content (or the whole message with
/// tools/functions) for chat, the text for completion.
fn output(req: &Request, response: &Json) -> Result<Json, CallError> {
    let choice = response.get("choices").and_then(|c| c.get(0)).ok_or_else(|| CallError::Failed {
        kind: "LLMError",
        message: "OpenAI API hits exception: the response has no choices".into(),
    })?;
    Ok(match req.api {
        super::request::Api::Completion => choice.get("text").cloned().unwrap_or(Json::Null),
        super::request::Api::Chat => {
            let message = choice.get("message").cloned().unwrap_or(Json::Null);
            if req.returns_message {
                super::message::sdk_message(&message)
            } else {
                message.get("content").cloned().unwrap_or(Json::Null)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_matches_promptflow_tools() {
        let secs: Vec<u64> = (0..8).map(|i| backoff(i).as_secs()).collect();
        assert_eq!(secs, vec![3, 4, 6, 10, 18, 34, 60, 60]);
        assert_eq!(backoff(200).as_secs(), 60);
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let f =
            Failure { status: Some(401), retriable: false, retry_after: None, message: "bad key sk-1 given".into() };
        let f = scrub(f, &Auth::ApiKey(Secret::new("sk-1".into())));
        assert_eq!(f.message, "bad key *** given");
    }
}
