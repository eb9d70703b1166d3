//! Sending LLM requests: the response cache first, then the provider with a
//! bound on requests in flight, retries with backoff that honour
//! `Retry-After` (promptflow-tools retries 429, 422 and 5xx the same way),
//! a per-request timeout, and token usage counted per run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use net::http::{error_chain, retry_after};

use super::cache::{Cache, Lookup};
use super::request::{Provider, Request};
use model::connection::{Connection, Secret};

/// How LLM calls behave for one invocation of flow-ci.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Requests in flight at once, across all lines and runs.
    pub concurrency: usize,
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
        }
    }

    fn add_tokens(&self, response: &Json) {
        let usage = response.get("usage");
        let n = |k: &str| usage.and_then(|u| u.get(k)).and_then(Json::as_u64).unwrap_or(0);
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

/// A counting semaphore for requests in flight.
struct Gate {
    free: Mutex<usize>,
    wake: Condvar,
}

impl Gate {
    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.wake.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

struct Permit<'a>(&'a Gate);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.wake.notify_one();
    }
}

/// The LLM client shared by every run of one flow-ci invocation.
pub struct Client {
    settings: Settings,
    cache: Option<Cache>,
    http: reqwest::blocking::Client,
    gate: Gate,
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
            gate: Gate { free: Mutex::new(settings.concurrency.max(1)), wake: Condvar::new() },
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
                    usage.add_tokens(&response);
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
        usage.add_tokens(&response);
        if let Some(cache) = &self.cache
            && let Err(e) = cache.put(&key, req, &response)
        {
            tracing::warn!("{e}");
        }
        output(req, &response)
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
        loop {
            let outcome = {
                let _permit = self.gate.acquire();
                self.send(req, auth)
            };
            let failure = match outcome {
                Ok(response) => return Ok(response),
                Err(f) => f,
            };
            let failure = scrub(failure, auth);
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
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    fn send(&self, req: &Request, auth: &Auth) -> Result<Json, Failure> {
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
        let response = builder.send().map_err(|e| Failure {
            status: None,
            retriable: !e.is_redirect() && (e.is_timeout() || e.is_connect() || e.is_request()),
            retry_after: None,
            message: format!(
                "OpenAI API hits {}: {}",
                if e.is_timeout() { "APITimeoutError" } else { "APIConnectionError" },
                error_chain(&e)
            ),
        })?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let text = response.text().unwrap_or_default();
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| Failure {
                status: Some(status),
                retriable: false,
                retry_after: None,
                message: format!("OpenAI API hits exception: the response is not JSON ({e})"),
            });
        }
        Err(Failure {
            status: Some(status),
            retriable: status == 429 || status == 422 || status >= 500,
            retry_after,
            message: format!(
                "OpenAI API hits {}: Error code: {status} - {}",
                status_name(status),
                truncate(&text, 2000)
            ),
        })
    }
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
