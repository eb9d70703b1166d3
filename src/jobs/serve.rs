//! `flow-ci serve`: a flow as a local HTTP scoring endpoint, with
//! promptflow's serving contract (`POST /score`, `GET /health`,
//! `GET /swagger.json`, `GET /version`).
//!
//! The HTTP side is async (axum on a small tokio runtime, connections served
//! by hyper with a header-read timeout); the executor is blocking (python
//! workers, the LLM client). Requests go through a bounded queue to a fixed
//! set of line threads that share one `Engine`, all inside one
//! `std::thread::scope`, so the worker pool and connections live on this
//! function's stack and are shut down when the server stops.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value as Json, json};

use exec::line::{LineEvent, LineRun, Status};
use exec::llm::LlmSetup;
use exec::prepare::Prepared;
use exec::start::{StartOptions, start};
use model::flow::Flow;

mod events;
use events::{ACCEPT_EVENT_STREAM, EVENT_STREAM_TYPE, head_event, item_event, stream_response};

pub struct ServeOptions {
    pub addr: SocketAddr,
    pub python: exec::pool::Python,
    /// Python workers (lines of python nodes run at once).
    pub workers: usize,
    pub line_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Job(#[from] exec::job::JobError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Runtime(std::io::Error),
}

/// How long a connection may take to send a request's head, and stay idle
/// between requests (hyper runs one timer for both). A silent or half-open
/// connection holds a file descriptor; without a limit a few hundred of
/// them stop the server from accepting any other. uvicorn closes idle
/// connections after 5 s too.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests waiting for a line thread, per line thread; beyond, 503. Room
/// for a burst (the default 8 line threads take 128: 50 clients at once all
/// wait their turn); a client that leaves frees its place, so a full queue
/// means that many clients really wait.
const QUEUED_PER_THREAD: usize = 16;

/// What a client told 503 is asked to wait (`Retry-After`, seconds).
const RETRY_AFTER_SECS: &str = "1";

/// One scoring request for the line threads, and where its answer goes.
struct Job {
    inputs: Map<String, Json>,
    /// The client asked for a stream: the line's events come before its end.
    stream: bool,
    reply: tokio::sync::mpsc::UnboundedSender<Reply>,
}

/// What a line thread sends the request's handler.
enum Reply {
    /// While the line runs (streaming requests only).
    Event(LineEvent),
    /// The line has ended.
    Done(Box<LineRun>),
}

impl Job {
    /// The HTTP handler waiting for the answer is gone (its client left):
    /// running the line would only delay the requests behind it.
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    Full,
    Closed,
}

/// The bounded queue between the HTTP handlers and the line threads.
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Queue {
    fn new(capacity: usize) -> Queue {
        Queue { state: Mutex::default(), ready: Condvar::new(), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job`; when full, abandoned jobs make room first.
    fn push(&self, job: Job) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.jobs.len() >= self.capacity {
            state.jobs.retain(|j| !j.abandoned());
        }
        if state.jobs.len() >= self.capacity {
            return Err(Refused::Full);
        }
        state.jobs.push_back(job);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job whose client still waits; `None` once closed and drained.
    fn pop(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            while let Some(job) = state.jobs.pop_front() {
                if !job.abandoned() {
                    return Some(job);
                }
                tracing::debug!("dropping a request whose client has gone");
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// No more jobs: the line threads end once the queue is drained.
    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

struct AppState {
    jobs: Arc<Queue>,
    swagger: Json,
    flow: Flow,
    /// Flow outputs promptflow streams from an llm node (see `llm_stream_outputs`).
    llm_streams: Vec<String>,
}

/// Serves `prepared` until SIGINT/SIGTERM; `ready` gets the bound address
/// (port 0 picks a free one) once requests are accepted.
pub fn serve(
    prepared: &Prepared,
    setup: &LlmSetup,
    opts: &ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let cancel = AtomicBool::new(false);
    // Every node's code is loaded before the first request: a broken tool
    // is an error at start-up, not a 500 on every call.
    let started = start(
        prepared,
        StartOptions {
            python: opts.python.clone(),
            workers: opts.workers,
            env: exec::job::environment(&prepared.flow, None),
            line_timeout: opts.line_timeout,
            cancel: &cancel,
            llm: setup,
            proxied: false,
        },
    )?;
    let engine = started.engine();
    let threads = opts.workers.max(setup.settings.concurrency);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()
        .map_err(ServeError::Runtime)?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(opts.addr))
        .map_err(|source| ServeError::Bind { addr: opts.addr, source })?;
    let addr = listener.local_addr().map_err(ServeError::Runtime)?;

    let queue = Arc::new(Queue::new(threads * QUEUED_PER_THREAD));
    let line_numbers = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                // One job at a time; the queue closes when the server stops.
                while let Some(job) = queue.pop() {
                    let number = line_numbers.fetch_add(1, Ordering::Relaxed);
                    let line = if job.stream {
                        let observer = |event| {
                            let _ = job.reply.send(Reply::Event(event));
                        };
                        engine.run_line_observed(&job.inputs, number, &observer)
                    } else {
                        engine.run_line(&job.inputs, number)
                    };
                    let _ = job.reply.send(Reply::Done(Box::new(line)));
                }
            });
        }
        let state = Arc::new(AppState {
            jobs: queue.clone(),
            swagger: swagger(&prepared.flow),
            flow: prepared.flow.clone(),
            llm_streams: llm_stream_outputs(prepared),
        });
        let app = Router::new()
            .route("/score", post(score))
            .route("/health", get(health))
            .route("/version", get(health))
            .route("/swagger.json", get(swagger_json))
            .with_state(state);
        ready(addr);
        runtime.block_on(accept_until_stopped(listener, app));
        // The requests in flight are answered: the line threads may end.
        queue.close();
        Ok(())
    })
}

/// Serves connections until SIGINT/SIGTERM, then waits for those in flight.
///
/// Not `axum::serve`, which gives hyper no timer, so a connection that never
/// finishes its request head is kept forever.
async fn accept_until_stopped(mut listener: tokio::net::TcpListener, app: Router) {
    use axum::serve::Listener;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        // axum's `Listener::accept` retries failed accepts (out of file
        // descriptors: after a second) instead of returning them.
        let (io, _) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut stop => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// SIGINT (Ctrl-C) or SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn health() -> Response {
    axum::Json(json!({ "status": "Healthy", "version": concat!("flow-ci ", env!("CARGO_PKG_VERSION")) }))
        .into_response()
}

async fn swagger_json(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(state.swagger.clone()).into_response()
}

/// promptflow's error body: `{"error": {"code": ..., "message": ...}}`.
fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, axum::Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}

async fn score(State(state): State<Arc<AppState>>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let inputs = match request_inputs(&state.flow, &body) {
        Ok(inputs) => inputs,
        Err(message) => return error(StatusCode::BAD_REQUEST, "UserError", message),
    };
    let (reply, mut answer) = tokio::sync::mpsc::unbounded_channel();
    let stream = accepted(&headers).iter().any(|t| t == ACCEPT_EVENT_STREAM);
    match state.jobs.push(Job { inputs, stream, reply }) {
        Ok(()) => {}
        Err(Refused::Closed) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "SystemError", "the server is shutting down".into());
        }
        Err(Refused::Full) => return busy(),
    }
    // Items that came before the other outputs wait for them.
    let mut early = Vec::new();
    let line = loop {
        match answer.recv().await {
            Some(Reply::Done(line)) => break line,
            Some(Reply::Event(LineEvent::Item { output, value })) => early.push((output, value)),
            Some(Reply::Event(LineEvent::Head { outputs, streams })) => {
                return stream_response(outputs, streams, &state.llm_streams, early, answer);
            }
            None => return error(StatusCode::INTERNAL_SERVER_ERROR, "SystemError", "the line was dropped".into()),
        }
    };
    match (line.status, line.error) {
        (Status::Completed, _) => respond(&headers, line.outputs, line.streams, &state.llm_streams),
        (_, Some(e)) if is_input_error(&e.kind) => error(StatusCode::BAD_REQUEST, "UserError", e.message),
        (_, Some(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.kind, e.message),
        (_, None) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SystemError",
            "Flow execution failed without error message.".into(),
        ),
    }
}

/// promptflow's ResponseCreator.create_response (core/_serving/response_creator.py):
/// a client that lists `text/event-stream` in Accept gets a flow output that
/// is a generator as server-sent events, one `data: {"<output>": item}` per
/// item after one event with the other outputs; else JSON, with generators
/// joined, when Accept allows it (no Accept is `*/*`); else 406.
fn respond(
    headers: &axum::http::HeaderMap,
    outputs: Map<String, Json>,
    streams: Vec<(String, Vec<Json>)>,
    llm_streams: &[String],
) -> Response {
    let accepted = accepted(headers);
    // promptflow keeps generators only when the stream is asked for by name (v1/utils.py, streaming_response_required).
    let streaming = accepted.iter().any(|t| t == ACCEPT_EVENT_STREAM);
    let accepts_json = accepted.iter().any(|t| matches!(t.as_str(), "application/json" | "application/*" | "*/*"));
    let mut streams = if streaming { streams } else { vec![] };
    if streaming {
        // flow-ci does not ask the model for a stream: its whole answer is the one item.
        streams.extend(llm_streams.iter().filter_map(|name| Some((name.clone(), vec![outputs.get(name)?.clone()]))));
    }
    if streams.len() > 1 {
        return error(StatusCode::BAD_REQUEST, "UserError", "Multiple stream output fields not supported.".into());
    }
    let Some((field, items)) = streams.pop() else {
        if accepts_json {
            return axum::Json(Json::Object(outputs)).into_response();
        }
        let message = format!(
            "Media type {} in Accept header is not acceptable. Supported media type(s) - application/json",
            accepted.join(",")
        );
        return error(StatusCode::NOT_ACCEPTABLE, "UserError", message);
    };
    let mut rest = outputs;
    rest.shift_remove(&field);
    let mut body = head_event(rest).unwrap_or_default();
    for item in items {
        body.push_str(&item_event(&field, item));
    }
    ([(header::CONTENT_TYPE, EVENT_STREAM_TYPE)], body).into_response()
}

/// The media types a client accepts (Accept without parameters); none is `*/*`.
fn accepted(headers: &axum::http::HeaderMap) -> Vec<String> {
    match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        Some(text) if !text.trim().is_empty() => text
            .split(',')
            .map(|t| t.split(';').next().unwrap_or_default().trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        _ => vec!["*/*".to_string()],
    }
}

/// The flow outputs promptflow streams when a stream is asked for: those of
/// an llm node no other node reads (flow_executor.py,
/// enable_streaming_for_llm_flow: `is_referenced_by_flow_output` and not
/// `is_referenced_by_other_node`).
fn llm_stream_outputs(prepared: &Prepared) -> Vec<String> {
    let read: std::collections::HashSet<usize> = prepared.steps.iter().flat_map(|s| s.deps.iter().copied()).collect();
    prepared
        .flow
        .outputs
        .iter()
        .filter_map(|output| {
            let i = prepared.step_index(output.reference.as_ref()?.value.node()?)?;
            let llm = matches!(prepared.steps[i].kind, exec::prepare::StepKind::Llm { .. });
            (llm && !read.contains(&i)).then(|| output.name.value.clone())
        })
        .collect()
}

/// 503 with `Retry-After`: every line thread is busy and the queue is full.
fn busy() -> Response {
    let message = "the server is busy: every line is running and the queue is full; retry later".to_string();
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message);
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_SECS));
    response
}

fn is_input_error(kind: &str) -> bool {
    matches!(kind, "InputTypeError" | "InputNotFound" | "InputParseError")
}

/// The request body as flow inputs, like promptflow: a JSON object; for a
/// flow with one input, a non-JSON body is that input's value. Inputs with
/// neither a value nor a default are refused (chat history defaults to []).
fn request_inputs(flow: &Flow, body: &[u8]) -> Result<Map<String, Json>, String> {
    if flow.inputs.is_empty() {
        return Ok(Map::new());
    }
    let data = match serde_json::from_slice::<Json>(body) {
        Ok(Json::Object(map)) => map,
        Ok(other) => return Err(format!("the request body must be a JSON object of inputs, got {other}")),
        Err(_) if flow.inputs.len() == 1 => {
            let mut map = Map::new();
            map.insert(flow.inputs[0].name.value.clone(), Json::String(String::from_utf8_lossy(body).into_owned()));
            map
        }
        Err(e) => return Err(format!("the request body is not JSON ({e}), and the flow has more than one input")),
    };
    let missing = flow.missing_inputs(&data);
    if missing.is_empty() {
        Ok(data)
    } else {
        Err(format!("Required input fields {missing:?} are missing in request data"))
    }
}

/// The OpenAPI document promptflow serves for a flow (its swagger.py).
pub fn swagger(flow: &Flow) -> Json {
    let name = flow.dir.canonicalize().ok().and_then(|d| Some(d.file_name()?.to_string_lossy().into_owned()));
    let name = name.unwrap_or_else(|| "flow".into());
    let mut info = json!({ "title": format!("Promptflow[{name}] API"), "version": "1.0.0", "x-flow-name": name });
    let mut properties = Map::new();
    for input in &flow.inputs {
        if input.is_chat_input {
            info["x-chat-input"] = json!(input.name.value);
            info["x-flow-type"] = json!("chat");
        }
        if input.is_chat_history {
            info["x-chat-history"] = json!(input.name.value);
        }
        let ty = input.ty.as_ref().map(|t| t.value.as_str()).unwrap_or("string");
        let mut schema = json!({ "type": schema_type(ty) });
        if let Some(default) = input.default.as_ref().filter(|d| !d.is_null()) {
            schema["default"] = default.clone();
        }
        properties.insert(input.name.value.clone(), schema);
    }
    let required: Vec<&str> = flow.inputs.iter().map(|i| i.name.value.as_str()).collect();
    let outputs: Map<String, Json> = flow.outputs.iter().map(|o| (o.name.value.clone(), json!({}))).collect();
    let example = std::fs::read_to_string(flow.dir.join("samples.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Json>(&t).ok())
        .and_then(|s| s.as_array()?.first().cloned())
        .unwrap_or_else(|| json!({}));
    json!({
        "openapi": "3.0.0",
        "info": info,
        "components": { "securitySchemes": { "bearerAuth": { "type": "http", "scheme": "bearer" } } },
        "security": [{ "bearerAuth": [] }],
        "paths": { "/score": { "post": {
            "summary": format!("run promptflow: {name} with an given input"),
            "requestBody": {
                "description": "promptflow input data",
                "required": !flow.inputs.is_empty(),
                "content": { "application/json": {
                    "schema": { "type": "object", "properties": properties, "required": required },
                    "example": example,
                } },
            },
            "responses": {
                "200": { "description": "successful operation", "content": { "application/json": {
                    "schema": { "type": "object", "properties": outputs },
                } } },
                "400": { "description": "Invalid input" },
                "default": { "description": "unexpected error" },
            },
        } } },
    })
}

fn schema_type(ty: &str) -> &'static str {
    match ty {
        "int" => "integer",
        "double" => "number",
        "bool" => "boolean",
        "list" => "array",
        "object" | "image" => "object",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/flows/support-router");
        let mut diags = model::diag::Diagnostics::default();
        model::flow::dag::load(&dir, &mut diags).unwrap()
    }

    #[test]
    fn inputs_are_checked_like_promptflow() {
        let flow = flow();
        assert!(request_inputs(&flow, br#"{"message": "hi", "customer_tier": "gold"}"#).is_ok());
        let missing = request_inputs(&flow, br#"{"customer_tier": "gold"}"#).unwrap_err();
        assert!(missing.contains("[\"message\"]"), "{missing}");
        assert!(request_inputs(&flow, b"[1, 2]").unwrap_err().contains("JSON object"));
        assert!(request_inputs(&flow, b"plain text").unwrap_err().contains("more than one input"));
    }

    fn job() -> (Job, tokio::sync::mpsc::UnboundedReceiver<Reply>) {
        let (reply, answer) = tokio::sync::mpsc::unbounded_channel();
        (Job { inputs: Map::new(), stream: false, reply }, answer)
    }

    #[test]
    fn a_full_queue_refuses_unless_abandoned_jobs_make_room() {
        let queue = Queue::new(2);
        let (a, a_answer) = job();
        let (b, _b_answer) = job();
        assert_eq!(queue.push(a), Ok(()));
        assert_eq!(queue.push(b), Ok(()));
        let (c, _c_answer) = job();
        assert_eq!(queue.push(c), Err(Refused::Full));
        drop(a_answer);
        let (d, _d_answer) = job();
        assert_eq!(queue.push(d), Ok(()), "the abandoned job made room");
        queue.close();
        let (e, _e_answer) = job();
        assert_eq!(queue.push(e), Err(Refused::Closed));
        assert!(queue.pop().is_some() && queue.pop().is_some(), "queued jobs are still served after close");
        assert!(queue.pop().is_none());
    }

    #[test]
    fn a_busy_server_says_when_to_retry_in_promptflows_error_shape() {
        let response = busy();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(response.into_body(), 4096))
            .unwrap();
        let body: Json = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "ServiceUnavailable");
        assert!(body["error"]["message"].as_str().unwrap().contains("busy"), "{body}");
    }

    #[test]
    fn abandoned_jobs_are_not_handed_to_a_line_thread() {
        let queue = Queue::new(4);
        let (gone, gone_answer) = job();
        let (waiting, _answer) = job();
        queue.push(gone).unwrap();
        queue.push(waiting).unwrap();
        drop(gone_answer);
        queue.close();
        assert!(queue.pop().is_some_and(|j| !j.abandoned()));
        assert!(queue.pop().is_none(), "the abandoned job was dropped");
    }

    #[test]
    fn swagger_describes_inputs_and_outputs() {
        let doc = swagger(&flow());
        let schema = &doc["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(schema["properties"]["message"]["type"], "string");
        assert_eq!(schema["required"][0], "message");
        assert_eq!(doc["info"]["x-flow-name"], "support-router");
    }
}
