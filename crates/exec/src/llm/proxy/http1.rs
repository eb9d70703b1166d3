//! Just enough HTTP/1.1 for the model proxy's one kind of client: the
//! OpenAI SDKs (httpx, requests, aiohttp) on loopback. Requests with a
//! `Content-Length` or a chunked body, `Expect: 100-continue`, keep-alive;
//! responses with a length or, for streamed answers, chunked.
//!
//! A blocking codec on purpose: the proxy serves a few dozen connections
//! from scoped threads that borrow the run's client and usage counters.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// The most a request head may hold; SDK requests are far below it.
const MAX_HEAD: usize = 64 * 1024;
/// The most a request body may hold (prompts with images are large, not this large).
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent: origin-form (`/openai/v1/responses?…`) or,
    /// from a client that takes us for a forward proxy, absolute-form.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection closed after the answer.
    pub fn wants_close(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection between requests (the normal end).
    Closed,
    /// A malformed or oversized request: answer 400 and close.
    Bad(String),
    /// The connection broke.
    Io,
}

/// Reads one request from a keep-alive connection.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Request, ReadError> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => return Err(ReadError::Closed),
        Ok(_) => {}
        Err(_) => return Err(ReadError::Io),
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err(ReadError::Bad(format!("not an HTTP request line: {:?}", line.trim_end())));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(format!("unsupported protocol {version}")));
    }
    let headers = read_headers(reader, line.len())?;
    let mut request = Request { method: method.to_string(), target: target.to_string(), headers, body: vec![] };
    if request.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(|_| ReadError::Io)?;
    }
    request.body = read_body(reader, &request)?;
    Ok(request)
}

fn read_headers(reader: &mut BufReader<TcpStream>, mut size: usize) -> Result<Vec<(String, String)>, ReadError> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|_| ReadError::Io)? == 0 {
            return Err(ReadError::Bad("the connection closed inside the request head".into()));
        }
        size += line.len();
        if size > MAX_HEAD {
            return Err(ReadError::Bad("the request head is larger than 64 KiB".into()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| ReadError::Bad(format!("not a header line: {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

fn read_body(reader: &mut BufReader<TcpStream>, request: &Request) -> Result<Vec<u8>, ReadError> {
    if request.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return read_chunked(reader);
    }
    let length = match request.header("content-length") {
        Some(v) => v.parse::<usize>().map_err(|_| ReadError::Bad(format!("Content-Length {v:?} is not a number")))?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(ReadError::Bad(format!("a request body of {length} bytes is larger than 64 MiB")));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|_| ReadError::Io)?;
    Ok(body)
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).map_err(|_| ReadError::Io)?;
        let hex = size_line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| ReadError::Bad(format!("not a chunk size: {:?}", size_line.trim())))?;
        if body.len() + size > MAX_BODY {
            return Err(ReadError::Bad("a chunked request body larger than 64 MiB".into()));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            read_headers(reader, 0)?;
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).map_err(|_| ReadError::Io)?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).map_err(|_| ReadError::Io)?;
    }
}

/// A complete answer with a known length.
pub fn write_response(
    out: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    write_head(out, status, headers, close)?;
    write!(out, "Content-Length: {}\r\n\r\n", body.len())?;
    out.write_all(body)?;
    out.flush()
}

/// An answer whose body is copied as it arrives (server-sent events), chunked.
pub fn write_streamed(
    out: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    body: &mut impl Read,
    close: bool,
) -> io::Result<()> {
    write_head(out, status, headers, close)?;
    out.write_all(b"Transfer-Encoding: chunked\r\n\r\n")?;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        write!(out, "{n:x}\r\n")?;
        out.write_all(&buf[..n])?;
        out.write_all(b"\r\n")?;
        out.flush()?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn write_head(out: &mut impl Write, status: u16, headers: &[(String, String)], close: bool) -> io::Result<()> {
    write!(out, "HTTP/1.1 {status} {}\r\n", reason(status))?;
    for (name, value) in headers {
        // Values come from the upstream's answer: no line breaks may pass.
        if !value.contains(['\r', '\n']) {
            write!(out, "{name}: {value}\r\n")?;
        }
    }
    if close {
        out.write_all(b"Connection: close\r\n")?;
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Sends `raw` to a fresh loopback connection and reads it back as a request.
    fn parse(raw: &'static [u8]) -> Result<Request, ReadError> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(raw).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
            sink
        });
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let request = read_request(&mut reader);
        drop(reader);
        let continued = writer.join().unwrap();
        if let Ok(r) = &request
            && r.header("expect").is_some()
        {
            assert_eq!(continued, b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        request
    }

    #[test]
    fn length_chunked_and_continue_bodies() {
        let r = parse(
            b"POST /openai/v1/responses?api-version=preview HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n{\"a\"",
        )
        .unwrap();
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.body.as_slice()),
            ("POST", "/openai/v1/responses?api-version=preview", &b"{\"a\""[..])
        );
        let r = parse(b"POST /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n").unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse(b"POST /v1/x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!(r.body, b"ok");
    }

    #[test]
    fn malformed_requests_are_bad_not_panics() {
        assert!(matches!(parse(b"GARBAGE\r\n\r\n"), Err(ReadError::Bad(_))));
        assert!(matches!(parse(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), Err(ReadError::Bad(_))));
        assert!(matches!(parse(b"POST / HTTP/1.1\r\nno colon\r\n\r\n"), Err(ReadError::Bad(_))));
        assert!(matches!(parse(b"POST / SPDY/3\r\n\r\n"), Err(ReadError::Bad(_))));
        assert!(matches!(parse(b""), Err(ReadError::Closed)));
    }

    #[test]
    fn header_values_with_line_breaks_are_dropped() {
        let mut out = Vec::new();
        let headers = vec![("a".to_string(), "1".to_string()), ("b".to_string(), "2\r\nX-Injected: 1".to_string())];
        write_response(&mut out, 429, &headers, b"{}", true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "HTTP/1.1 429 Too Many Requests\r\na: 1\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
            ),
            "{text}"
        );
        let mut out = Vec::new();
        write_streamed(&mut out, 200, &[], &mut &b"data: 1\n\n"[..], false).unwrap();
        assert!(String::from_utf8(out).unwrap().ends_with("\r\n\r\n9\r\ndata: 1\n\n\r\n0\r\n\r\n"));
    }
}
