//! The model proxy: a loopback OpenAI / Azure OpenAI endpoint for python
//! code that calls the model itself (Agent Framework ports, python nodes
//! using the openai SDK), so its calls get what `llm` nodes get: the
//! response cache, the deployment's adaptive limit, token counts, and the
//! key kept from the code under review.
//!
//! One proxy per run, for one connection. Workers are pointed at it through
//! the variables the SDKs read (`AZURE_OPENAI_ENDPOINT`, `OPENAI_BASE_URL`,
//! … see [`Proxy::env`]) with a per-run token in place of the key; the
//! proxy checks that token, builds the provider's URL from the connection's
//! endpoint and the request's path (never from anything else the request
//! says), and sends it with the real key. It refuses absolute-form targets
//! naming another host and `CONNECT`: it is not a general forward proxy.

mod http1;

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Scope;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::client::{CallError, Client, Forward, Forwarded, ForwardedBody, Usage};
use model::connection::{Connection, Kind};

/// The connection a proxy cannot stand in for.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "connection `{name}` is of type {kind}; the model proxy speaks OpenAI and Azure OpenAI only (use an azure_open_ai or open_ai connection)"
    )]
    Kind { name: String, kind: &'static str },
    #[error("connection `{name}` has no usable endpoint: {why}")]
    Endpoint { name: String, why: String },
    #[error("cannot open the model proxy's loopback port: {0}")]
    Bind(std::io::Error),
}

/// Where requests go: the connection's endpoint, and the path prefix the
/// SDKs put before the API (`/openai/` for Azure, `/v1/` for OpenAI).
struct Upstream {
    conn: Connection,
    base: reqwest::Url,
    azure: bool,
}

impl Upstream {
    fn new(conn: Connection) -> Result<Upstream, ProxyError> {
        let endpoint_error = |why: String| ProxyError::Endpoint { name: conn.name.clone(), why };
        let (base, azure) = match conn.kind {
            Kind::AzureOpenAI => (conn.value("api_base").ok_or_else(|| endpoint_error("no `api_base`".into()))?, true),
            Kind::OpenAI => (conn.value("base_url").unwrap_or(model::connection::DEFAULT_OPENAI_BASE_URL), false),
            other => return Err(ProxyError::Kind { name: conn.name.clone(), kind: other.class_name() }),
        };
        let base = reqwest::Url::parse(base.trim_end_matches('/'))
            .map_err(|e| endpoint_error(format!("`{base}` is not a URL ({e})")))?;
        if !matches!(base.scheme(), "https" | "http") || base.host_str().is_none() {
            return Err(endpoint_error(format!("`{base}` is not an http(s) URL")));
        }
        Ok(Upstream { conn, base, azure })
    }

    /// The provider URL for a request path, or `None` when the path is not
    /// under the API or would leave the configured endpoint.
    fn url(&self, path: &str) -> Option<String> {
        let rest = if self.azure {
            path.strip_prefix("/openai/").map(|r| format!("/openai/{r}"))
        } else {
            path.strip_prefix("/v1/").map(|r| format!("/{r}"))
        }?;
        let joined = format!("{}{rest}", self.base.as_str().trim_end_matches('/'));
        let url = reqwest::Url::parse(&joined).ok()?;
        let same_origin = url.origin() == self.base.origin();
        let under_base = url.path().starts_with(self.base.path().trim_end_matches('/'));
        (same_origin && under_base).then_some(joined)
    }

    /// The deployment (Azure's legacy paths name it) or the body's `model`.
    fn model(&self, path: &str, json: Option<&Json>) -> String {
        let deployment = path.strip_prefix("/openai/deployments/").and_then(|r| r.split(['/', '?']).next());
        deployment
            .map(str::to_string)
            .or_else(|| json.and_then(|b| b.get("model")).and_then(Json::as_str).map(str::to_string))
            .unwrap_or_default()
    }
}

/// A bound, not yet serving, model proxy.
pub struct Proxy {
    listener: TcpListener,
    addr: SocketAddr,
    token: String,
    upstream: Upstream,
    /// Who the proxy serves, for errors (`port flows/x-maf/workflow.py`).
    caller: String,
    refusals: Mutex<Vec<String>>,
    /// A clone of each open connection's socket, by connection number, so
    /// stopping can shut them; a connection takes its own out when it ends.
    open: Mutex<Vec<(u64, TcpStream)>>,
}

/// What serving borrows from the run.
pub struct Context<'a> {
    pub client: &'a Client,
    pub usage: &'a Usage,
    /// Each request's deadline (the line timeout).
    pub timeout: Duration,
    /// Records an error that must stop the run (a missing key).
    pub fatal: &'a (dyn Fn(CallError) + Sync),
}

/// Stops the proxy when dropped: no new connections, open ones shut.
pub struct Serving<'p> {
    proxy: &'p Proxy,
    stop: &'p AtomicBool,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect(self.proxy.addr);
        for (_, stream) in self.proxy.open.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

enum Reply {
    Full { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    Stream { status: u16, headers: Vec<(String, String)>, body: Box<reqwest::blocking::Response> },
}

impl Proxy {
    /// Opens a loopback port for `conn`'s model calls.
    pub fn bind(conn: Connection, caller: &str) -> Result<Proxy, ProxyError> {
        let upstream = Upstream::new(conn)?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(ProxyError::Bind)?;
        let addr = listener.local_addr().map_err(ProxyError::Bind)?;
        Ok(Proxy {
            listener,
            addr,
            token: format!("flow-ci-proxy-{}", uuid::Uuid::new_v4().simple()),
            upstream,
            caller: caller.to_string(),
            refusals: Mutex::new(Vec::new()),
            open: Mutex::new(Vec::new()),
        })
    }

    pub fn connection(&self) -> &str {
        &self.upstream.conn.name
    }

    /// The workers' variables that point the OpenAI SDKs (and Agent
    /// Framework's clients, which read the same names) at the proxy, with
    /// the run's token where the key would be. Any other variable holding
    /// the connection's key gets the token too: the worker never sees it.
    pub fn env(&self) -> Vec<(String, String)> {
        let origin = format!("http://{}", self.addr);
        let token = self.token.clone();
        let mut env: Vec<(String, String)> = if self.upstream.azure {
            let mut vars = vec![
                ("AZURE_OPENAI_ENDPOINT".into(), origin.clone()),
                ("AZURE_OPENAI_API_KEY".into(), token.clone()),
                ("OPENAI_BASE_URL".into(), format!("{origin}/openai/v1")),
                ("OPENAI_API_KEY".into(), token.clone()),
            ];
            // Agent Framework refuses both an endpoint and AZURE_OPENAI_BASE_URL
            // ("Only one of 'base_url', 'endpoint' may be provided"), so the
            // base URL is pointed here only where the CI already sets one.
            if std::env::var_os("AZURE_OPENAI_BASE_URL").is_some() {
                vars.push(("AZURE_OPENAI_BASE_URL".into(), format!("{origin}/openai/v1/")));
            }
            if self.upstream.conn.uses_entra_id() {
                vars.push(("AZURE_OPENAI_AD_TOKEN".into(), token.clone()));
            }
            vars
        } else {
            vec![("OPENAI_BASE_URL".into(), format!("{origin}/v1")), ("OPENAI_API_KEY".into(), token.clone())]
        };
        if let Ok(key) = self.upstream.conn.api_key()
            && !key.expose().is_empty()
        {
            for (name, value) in std::env::vars() {
                if value == key.expose() && !env.iter().any(|(n, _)| *n == name) {
                    env.push((name, token.clone()));
                }
            }
        }
        // A CI's HTTP(S)_PROXY must not capture loopback calls.
        for name in ["NO_PROXY", "no_proxy"] {
            let current = std::env::var(name).unwrap_or_default();
            let joined = if current.is_empty() {
                "127.0.0.1,localhost".to_string()
            } else {
                format!("{current},127.0.0.1,localhost")
            };
            env.push((name.into(), joined));
        }
        env
    }

    /// What the proxy refused (another host, `CONNECT`, a wrong token), for the log and tests.
    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves until the returned guard is dropped; connection threads live
    /// in `scope`, so they may borrow the run.
    pub fn serve<'scope, 'env: 'scope>(
        &'env self,
        scope: &'scope Scope<'scope, 'env>,
        stop: &'env AtomicBool,
        ctx: &'env Context<'env>,
    ) -> Serving<'env> {
        scope.spawn(move || {
            for (id, stream) in (0u64..).zip(self.listener.incoming()) {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    self.open.lock().unwrap_or_else(|e| e.into_inner()).push((id, clone));
                }
                scope.spawn(move || self.handle(id, stream, ctx));
            }
        });
        Serving { proxy: self, stop }
    }

    fn handle(&self, id: u64, stream: TcpStream, ctx: &Context<'_>) {
        if let Ok(read_half) = stream.try_clone() {
            self.requests(BufReader::new(read_half), &stream, ctx);
        }
        // A run may open thousands of connections: each gives its clone back.
        self.open.lock().unwrap_or_else(|e| e.into_inner()).retain(|(open, _)| *open != id);
        let _ = stream.shutdown(Shutdown::Both);
    }

    /// Answers the requests of one keep-alive connection.
    fn requests(&self, mut reader: BufReader<TcpStream>, mut out: &TcpStream, ctx: &Context<'_>) {
        loop {
            let request = match http1::read_request(&mut reader) {
                Ok(r) => r,
                Err(http1::ReadError::Bad(why)) => {
                    let _ = http1::write_response(
                        &mut out,
                        400,
                        &json_type(),
                        &error_body(&why, "invalid_request_error"),
                        true,
                    );
                    return;
                }
                Err(_) => return,
            };
            let close = request.wants_close();
            let written = match self.reply(&request, ctx) {
                Reply::Full { status, headers, body } => {
                    http1::write_response(&mut out, status, &headers, &body, close)
                }
                Reply::Stream { status, headers, mut body } => {
                    http1::write_streamed(&mut out, status, &headers, &mut body, close)
                }
            };
            if written.is_err() || close {
                let _ = out.flush();
                return;
            }
        }
    }

    fn refuse(&self, status: u16, why: String) -> Reply {
        tracing::warn!("model proxy: {why}");
        self.refusals.lock().unwrap_or_else(|e| e.into_inner()).push(why.clone());
        Reply::Full { status, headers: json_type(), body: error_body(&why, "invalid_request_error") }
    }

    fn reply(&self, request: &http1::Request, ctx: &Context<'_>) -> Reply {
        if request.method.eq_ignore_ascii_case("CONNECT") {
            return self.refuse(
                405,
                format!("refused CONNECT {}: flow-ci's model proxy is not a forward proxy", request.target),
            );
        }
        let Some(path) = self.origin_form(&request.target) else {
            return self.refuse(
                403,
                format!(
                    "refused a request for {}: flow-ci's model proxy forwards only to connection `{}` ({})",
                    request.target, self.upstream.conn.name, self.upstream.base
                ),
            );
        };
        if !self.authorized(request) {
            return self.refuse(401, format!("refused {path}: the request does not carry this run's proxy token"));
        }
        let Some(url) = self.upstream.url(path) else {
            return self.refuse(
                404,
                format!(
                    "refused {path}: not an {} API path",
                    if self.upstream.azure { "Azure OpenAI (/openai/…)" } else { "OpenAI (/v1/…)" }
                ),
            );
        };
        let json = serde_json::from_slice::<Json>(&request.body).ok().filter(|_| !request.body.is_empty());
        let fwd = Forward {
            caller: &self.caller,
            conn: &self.upstream.conn,
            method: &request.method,
            model: self.upstream.model(path, json.as_ref()),
            url,
            body: &request.body,
            json,
            content_type: request.header("content-type"),
        };
        match ctx.client.forward(&fwd, ctx.usage, Instant::now() + ctx.timeout) {
            Ok(Forwarded { status, headers, body: ForwardedBody::Bytes(body) }) => {
                Reply::Full { status, headers, body }
            }
            Ok(Forwarded { status, headers, body: ForwardedBody::Stream(body) }) => {
                Reply::Stream { status, headers, body }
            }
            Err(e @ CallError::MissingKey { .. }) => {
                let body = error_body(&e.to_string(), "authentication_error");
                (ctx.fatal)(e);
                Reply::Full { status: 401, headers: json_type(), body }
            }
            Err(CallError::Failed { kind, message }) => {
                let status = if kind == "ExceedMaxRetryTimes" { 504 } else { 502 };
                Reply::Full { status, headers: json_type(), body: error_body(&message, "api_error") }
            }
        }
    }

    /// The path of an origin-form target, or of an absolute-form one that
    /// names the proxy itself; `None` for any other host.
    fn origin_form<'r>(&self, target: &'r str) -> Option<&'r str> {
        if target.starts_with('/') {
            return Some(target);
        }
        let rest = target.strip_prefix("http://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let own = [self.addr.to_string(), format!("localhost:{}", self.addr.port())];
        (own.iter().any(|a| a == authority) && path.starts_with('/')).then_some(path)
    }

    fn authorized(&self, request: &http1::Request) -> bool {
        let bearer = request.header("authorization").and_then(|v| v.strip_prefix("Bearer "));
        [request.header("api-key"), bearer].into_iter().flatten().any(|t| t.trim() == self.token)
    }
}

fn json_type() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

/// An error in OpenAI's shape, which the SDKs turn into their exceptions.
fn error_body(message: &str, kind: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"error": {"message": message, "type": kind, "code": null}})).unwrap_or_default()
}

#[cfg(test)]
mod tests;
