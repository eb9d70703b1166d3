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
use super::limit::{self, Budget, Limiter, Signal};
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
        let n = |k: &str| usage.and_then(|u| u.get(k)).and_then(Json::as_u64).unwrap_or(0);
        {
            let mut by_model = self.by_model.lock().unwrap_or_else(|e| e.into_inner());
            let entry = by_model.entry(model.to_string()).or_default();
            entry.prompt_tokens += n("prompt_tokens");
            entry.completion_tokens += n("completion_tokens");
        }
        self.prompt_tokens.fetch_add(n("prompt_tokens"), Ordering::Relaxed);
        self.completion_tokens.fetch_add(n("completion_tokens"), Ordering::Relaxed);
        self.total_tokens.fetch_add(n("total_tokens"), Ordering::Relaxed);
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
        if let Some(cache) = &self.cache {
            match cache.get(&key) {
                Lookup::Hit(response) => {
                    usage.cache_hits.fetch_add(1, Ordering::Relaxed);
                    usage.add_tokens(&req.model, &response);
                    return output(req, &response);
                }
                Lookup::Miss => {}
                Lookup::Corrupt(why) => {
                    tracing::warn!("ignoring a corrupt LLM cache entry ({why}); it will be rewritten")
                }
            }
        }
        let auth = self.auth(node, conn)?;
        usage.requests.fetch_add(1, Ordering::Relaxed);
        let response = self.send_with_retries(req, &auth, usage, deadline)?;
        usage.add_tokens(&req.model, &response);
        if let Some(cache) = &self.cache
            && let Err(e) = cache.put(&key, req, &response)
        {
            tracing::warn!("{e}");
        }
        output(req, &response)
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
        let deployment = deployment_key(req);
        let cost = limit::estimate_tokens(&req.body);
        loop {
            let permit = self.limiter.acquire(&deployment, cost, deadline).map_err(|past| CallError::Failed {
                kind: "ExceedMaxRetryTimes",
                message: match past.until {
                    Some(_) => format!(
                        "Exceed max retry times. {} asked to wait (Retry-After, or the llm.rpm / llm.tpm budget) past the line's timeout",
                        req.model
                    ),
                    None => format!(
                        "Exceed max retry times. The line's timeout passed waiting for a free slot of {}",
                        req.model
                    ),
                },
            })?;
            usage.waited_ms.fetch_add(permit.waited.as_millis() as u64, Ordering::Relaxed);
            usage.peak_in_flight.fetch_max(permit.in_flight as u64, Ordering::Relaxed);
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
        let mut builder = self.http.post(&req.url).json(&req.body);
        builder = match auth {
            Auth::ApiKey(key) => builder.header("api-key", key.expose()),
            Auth::Bearer(token) => builder.bearer_auth(token.expose()),
            Auth::OpenAI { key, organization } => {
                let b = builder.bearer_auth(key.expose());
                match organization {
                    Some(org) => b.header("OpenAI-Organization", org),
                    None => b,
                }
            }
        };
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
        let retry_after = retry_after(response.headers());
        let remaining = |name: &str| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok())
        };
        let signal = Signal {
            kind: match status {
                200..300 => limit::Kind::Healthy,
                429 | 503 => limit::Kind::Throttled,
                _ => limit::Kind::Other,
            },
            retry_after,
            // Azure OpenAI and OpenAI send these on every answer.
            remaining_requests: remaining("x-ratelimit-remaining-requests"),
            remaining_tokens: remaining("x-ratelimit-remaining-tokens"),
        };
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

/// The limit a request counts against: its endpoint and deployment (Azure:
/// both are in the URL) or model (OpenAI: the same URL for every model).
fn deployment_key(req: &Request) -> String {
    let url = req.url.split('?').next().unwrap_or(&req.url);
    format!("{url} {}", req.model)
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
    let secret = match auth {
        Auth::ApiKey(k) | Auth::Bearer(k) | Auth::OpenAI { key: k, .. } => k.expose(),
    };
    if !secret.is_empty() {
        f.message = f.message.replace(secret, "***");
    }
    f
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
            if req.returns_message { message } else { message.get("content").cloned().unwrap_or(Json::Null) }
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
