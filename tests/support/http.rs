//! A minimal HTTP/1.1 loopback server for the fakes of external services:
//! it parses each request (keep-alive), hands it to the fake, and writes
//! the answer in one segment (a head and body in two writes meet Nagle and
//! delayed ACKs: 40 ms per request).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use serde_json::Value as Json;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Json,
    /// The body as text (forms, non-JSON bodies).
    pub text: String,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A query parameter's raw value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
    }
}

/// An answer: status, extra headers, JSON body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Json,
}

impl Answer {
    pub fn json(status: u16, body: Json) -> Answer {
        Answer { status, headers: vec![], body }
    }

    /// An XML answer (storage services' listings): the text as is.
    pub fn xml(status: u16, text: String) -> Answer {
        Answer { status, headers: vec![(RAW_BODY.into(), "application/xml".into())], body: Json::String(text) }
    }

    /// A web page: the text as is, as `text/html`.
    pub fn html(status: u16, text: String) -> Answer {
        Answer { status, headers: vec![(RAW_BODY.into(), "text/html; charset=utf-8".into())], body: Json::String(text) }
    }

    pub fn with_header(mut self, name: &str, value: String) -> Answer {
        self.headers.push((name.into(), value));
        self
    }
}

/// Marks an answer whose string body is sent as is, with this content type.
const RAW_BODY: &str = "x-fake-raw-body";

/// Starts a server on a loopback port; returns its base URL (`http://127.0.0.1:N`).
pub fn serve(handler: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || connection(stream, handler.as_ref()));
        }
    });
    url
}

fn connection(stream: TcpStream, handler: &(dyn Fn(&Received) -> Answer + Send + Sync)) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    // Keep-alive: serve requests until the client closes the connection.
    while let Some(req) = read_request(&mut reader) {
        let answer = handler(&req);
        let raw = answer.headers.iter().find(|(k, _)| k == RAW_BODY).map(|(_, v)| v.clone());
        let text = match (&answer.body, &raw) {
            (Json::String(s), Some(_)) => s.clone(),
            _ => answer.body.to_string(),
        };
        let mut head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            answer.status,
            raw.as_deref().unwrap_or("application/json"),
            text.len()
        );
        for (k, v) in answer.headers.iter().filter(|(k, _)| k != RAW_BODY) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&text);
        if (&stream).write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    let length: usize =
        headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let target = origin_form(&target);
    let (path, query) = target.split_once('?').map_or((target.clone(), String::new()), |(p, q)| (p.into(), q.into()));
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = serde_json::from_slice(&body).unwrap_or(Json::Null);
    Some(Received { method, path, query, headers, body, text, at: std::time::Instant::now() })
}

/// A request's target as a path and query: a client that reaches a fake as
/// its HTTP proxy (HTTP_PROXY naming it) writes the absolute URL instead.
fn origin_form(target: &str) -> String {
    match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned()),
        None => target.to_owned(),
    }
}
