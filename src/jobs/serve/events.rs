//! Server-sent events as promptflow's serving writes them
//! (core/_serving/response_creator.py, ResponseCreator.generate and
//! format_event: `data: {json.dumps(...)}` and a blank line), sent while the
//! line runs: the outputs that are no generator first, then each item of the
//! one that is, as its node yields it.
//!
//! A generator that raises after the response has started ends the body
//! without its last chunk, as promptflow's does (the exception escapes
//! ResponseCreator.generate inside Flask's streamed response, and werkzeug
//! closes the connection): the client sees a response cut short, with no
//! error event, and the server logs why.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Frame;
use serde_json::{Map, Value as Json};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{Reply, error};
use exec::line::{LineEvent, Status};

pub(super) const ACCEPT_EVENT_STREAM: &str = "text/event-stream";
pub(super) const EVENT_STREAM_TYPE: &str = "text/event-stream; charset=utf-8";

/// The event with the outputs that are no generator; none when there are none.
pub(super) fn head_event(outputs: Map<String, Json>) -> Option<String> {
    (!outputs.is_empty()).then(|| format!("data: {}\n\n", model::value::python_json_dumps(&Json::Object(outputs))))
}

/// The event with one item of the output `field`.
pub(super) fn item_event(field: &str, item: Json) -> String {
    let event = Json::Object(Map::from_iter([(field.to_string(), item)]));
    format!("data: {}\n\n", model::value::python_json_dumps(&event))
}

/// The response to a line that sent its head while its generator still
/// runs: `early` are the items that came before the head; the rest come
/// from `replies` as the node yields them.
pub(super) fn stream_response(
    outputs: Map<String, Json>,
    mut streams: Vec<String>,
    llm_streams: &[String],
    early: Vec<(String, Json)>,
    replies: UnboundedReceiver<Reply>,
) -> Response {
    // An llm output is a generator too when a stream is asked for (see `llm_stream_outputs`).
    streams.extend(llm_streams.iter().filter(|name| outputs.contains_key(*name)).cloned());
    // ResponseCreator.__init__: MultipleStreamOutputFieldsNotSupported.
    if streams.len() != 1 {
        return error(StatusCode::BAD_REQUEST, "UserError", "Multiple stream output fields not supported.".into());
    }
    let field = streams.remove(0);
    let mut pending: VecDeque<Bytes> = head_event(outputs).map(Bytes::from).into_iter().collect();
    pending.extend(early.into_iter().filter(|(output, _)| *output == field).map(|(_, v)| item_event(&field, v).into()));
    let body = EventBody { pending, replies, field };
    ([(header::CONTENT_TYPE, EVENT_STREAM_TYPE)], Body::new(body)).into_response()
}

/// Why a stream ended before its generator did.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamBroken {
    #[error("the stream ended with the line failing: {0}")]
    Failed(String),
    #[error("the line thread went away")]
    Dropped,
}

/// The events still to send: those queued, then the line's as they come.
struct EventBody {
    pending: VecDeque<Bytes>,
    replies: UnboundedReceiver<Reply>,
    field: String,
}

impl axum::body::HttpBody for EventBody {
    type Data = Bytes;
    type Error = StreamBroken;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, StreamBroken>>> {
        if let Some(bytes) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        loop {
            let Some(reply) = std::task::ready!(self.replies.poll_recv(cx)) else {
                return Poll::Ready(Some(Err(StreamBroken::Dropped)));
            };
            match reply {
                Reply::Event(LineEvent::Item { output, value }) if output == self.field => {
                    return Poll::Ready(Some(Ok(Frame::data(item_event(&self.field, value).into()))));
                }
                Reply::Event(_) => {}
                Reply::Done(line) if line.status == Status::Completed => return Poll::Ready(None),
                Reply::Done(line) => {
                    let why = line.error.map(|e| e.message).unwrap_or_else(|| format!("{:?}", line.status));
                    tracing::warn!("a streamed response was cut short: {why}");
                    return Poll::Ready(Some(Err(StreamBroken::Failed(why))));
                }
            }
        }
    }
}
