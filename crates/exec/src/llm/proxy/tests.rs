//! The proxy between a loopback SDK-like client and a loopback provider that
//! answers like Azure OpenAI (Retry-After on 429, usage in answers).

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::llm::Settings;
use crate::llm::limit::Budget;
use model::connection::Secret;

/// What the provider saw: method, path, the `api-key` header, the body.
type Seen = Arc<Mutex<Vec<(String, String, Option<String>, String)>>>;

/// A provider that answers 429 (Retry-After: 7) to bodies containing
/// "throttle" and a Responses API answer otherwise.
fn provider() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                while let Ok(req) = http1::read_request(&mut reader) {
                    let body = String::from_utf8_lossy(&req.body).to_string();
                    log.lock().unwrap().push((
                        req.method.clone(),
                        req.target.clone(),
                        req.header("api-key").map(str::to_string),
                        body.clone(),
                    ));
                    let (status, headers, answer) = if body.contains("throttle") {
                        (
                            429,
                            vec![("Retry-After".to_string(), "7".to_string())],
                            json!({"error": {"code": "429", "message": "Rate limit"}}),
                        )
                    } else {
                        let usage = json!({"input_tokens": 11, "output_tokens": 3, "total_tokens": 14});
                        (
                            200,
                            vec![("x-ratelimit-remaining-requests".to_string(), "99".to_string())],
                            json!({"id": "resp_1", "output_text": "hi", "usage": usage}),
                        )
                    };
                    let mut headers = headers;
                    headers.push(("content-type".into(), "application/json".into()));
                    let bytes = serde_json::to_vec(&answer).unwrap();
                    if http1::write_response(&mut out, status, &headers, &bytes, false).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (origin, seen)
}

fn connection(api_base: &str) -> Connection {
    Connection {
        name: "aoai".into(),
        kind: Kind::AzureOpenAI,
        values: BTreeMap::from([("api_base".to_string(), api_base.to_string())]),
        secrets: BTreeMap::from([("api_key".to_string(), Secret::new("real-key-123".into()))]),
        unresolved: BTreeMap::new(),
        origin: "test".into(),
    }
}

fn client(cache: &std::path::Path) -> Client {
    Client::new(Settings {
        concurrency: 4,
        budget: Budget::default(),
        cache_dir: Some(cache.to_path_buf()),
        retries: 0,
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

/// Sends raw HTTP/1.1 to the proxy and returns the status line, headers and body.
fn send(addr: SocketAddr, raw: String) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn post(proxy: &Proxy, target: &str, token: &str, body: &str) -> (u16, String, String) {
    send(
        proxy.addr,
        format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\napi-key: {token}\r\ncontent-type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Runs `f` against a serving proxy for a provider at `origin`.
fn with_proxy(origin: &str, f: impl FnOnce(&Proxy, &Usage)) {
    let cache = tempfile::tempdir().unwrap();
    let client = client(cache.path());
    let usage = Usage::default();
    let fatal = |_: CallError| {};
    let ctx = Context { client: &client, usage: &usage, timeout: Duration::from_secs(10), fatal: &fatal };
    let proxy = Proxy::bind(connection(origin), "port workflow.py").unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _serving = proxy.serve(scope, &stop, &ctx);
        f(&proxy, &usage);
    });
}

#[test]
fn forwards_with_the_real_key_and_answers_the_second_time_from_the_cache() {
    let (origin, seen) = provider();
    with_proxy(&origin, |proxy, usage| {
        let body = r#"{"model":"gpt-4o","input":[{"role":"user","content":"hello"}],"stream":false}"#;
        let first = post(proxy, "/openai/v1/responses?api-version=preview", &proxy.token, body);
        assert_eq!(first.0, 200, "{first:?}");
        assert!(first.2.contains("resp_1"));
        assert!(first.1.contains("x-ratelimit-remaining-requests: 99"), "{}", first.1);
        let second = post(proxy, "/openai/v1/responses?api-version=preview", &proxy.token, body);
        assert_eq!(
            (second.0, serde_json::from_str::<Json>(&second.2).unwrap()),
            (200, serde_json::from_str::<Json>(&first.2).unwrap())
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "the second answer came from the cache");
        assert_eq!(seen[0].0, "POST");
        assert_eq!(seen[0].1, "/openai/v1/responses?api-version=preview");
        assert_eq!(seen[0].2.as_deref(), Some("real-key-123"));
        let summary = usage.summary();
        assert_eq!((summary.requests, summary.cache_hits), (1, 1));
        assert_eq!((summary.prompt_tokens, summary.completion_tokens, summary.total_tokens), (22, 6, 28));
        assert!(proxy.refusals().is_empty());
    });
}

#[test]
fn passes_retry_after_on_and_never_caches_a_429() {
    let (origin, seen) = provider();
    with_proxy(&origin, |proxy, usage| {
        let body = r#"{"model":"gpt-4o","input":"throttle me"}"#;
        let (status, head, answer) =
            post(proxy, "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", &proxy.token, body);
        assert_eq!(status, 429);
        assert!(head.to_ascii_lowercase().contains("retry-after: 7"), "{head}");
        assert!(answer.contains("Rate limit"));
        assert!(!answer.contains("real-key-123") && !head.contains("real-key-123"));
        assert_eq!(usage.summary().throttled, 1);
        assert_eq!(seen.lock().unwrap().len(), 1);
    });
}

#[test]
fn refuses_other_hosts_connect_wrong_tokens_and_paths_outside_the_api() {
    let (origin, seen) = provider();
    with_proxy(&origin, |proxy, _| {
        let body = r#"{"model":"m"}"#;
        assert_eq!(post(proxy, "http://evil.example/openai/v1/responses", &proxy.token, body).0, 403);
        assert_eq!(post(proxy, "http://127.0.0.2:1/openai/v1/responses", &proxy.token, body).0, 403);
        let connect = send(
            proxy.addr,
            "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n".into(),
        );
        assert_eq!(connect.0, 405);
        assert_eq!(
            post(proxy, "/openai/v1/responses", "real-key-123", body).0,
            401,
            "only the run's token opens the proxy"
        );
        assert_eq!(
            post(proxy, "/v1/responses", &proxy.token, body).0,
            404,
            "an Azure connection's API lives under /openai/"
        );
        // The proxy's own address in absolute form is the same as origin form.
        let own = format!("http://{}/openai/v1/responses", proxy.addr);
        assert_eq!(post(proxy, &own, &proxy.token, body).0, 200);
        assert_eq!(seen.lock().unwrap().len(), 1, "only the request to the proxy itself went on");
        let refusals = proxy.refusals();
        assert_eq!(refusals.len(), 5, "{refusals:?}");
        assert!(refusals.iter().all(|r| !r.contains("real-key-123")), "{refusals:?}");
    });
}

#[test]
fn urls_stay_on_the_configured_endpoint() {
    let azure = Upstream::new(connection("https://res.openai.azure.com/")).unwrap();
    assert_eq!(
        azure.url("/openai/v1/responses?api-version=preview").as_deref(),
        Some("https://res.openai.azure.com/openai/v1/responses?api-version=preview")
    );
    let climbed = azure.url("/openai/../../x");
    assert!(climbed.is_none_or(|u| u.starts_with("https://res.openai.azure.com/")), "dots never leave the host");
    assert_eq!(azure.url("/other"), None);
    assert_eq!(azure.model("/openai/deployments/gpt-35/chat/completions?x", None), "gpt-35");
    assert_eq!(azure.model("/openai/v1/responses", Some(&json!({"model": "gpt-4o"}))), "gpt-4o");
    let mut openai = connection("unused");
    openai.kind = Kind::OpenAI;
    openai.values = BTreeMap::from([("base_url".to_string(), "https://gateway.example/openai-v1".to_string())]);
    let openai = Upstream::new(openai).unwrap();
    assert_eq!(
        openai.url("/v1/chat/completions").as_deref(),
        Some("https://gateway.example/openai-v1/chat/completions")
    );
    assert_eq!(openai.url("/v1/../../elsewhere"), None, "a path may not climb out of the base");
    let mut custom = connection("x");
    custom.kind = Kind::Custom;
    assert!(matches!(Upstream::new(custom), Err(ProxyError::Kind { .. })));
}

#[test]
fn workers_get_the_token_never_the_key() {
    let proxy = Proxy::bind(connection("https://res.openai.azure.com"), "port w.py").unwrap();
    let env: BTreeMap<String, String> = proxy.env().into_iter().collect();
    assert_eq!(env["AZURE_OPENAI_ENDPOINT"], format!("http://{}", proxy.addr));
    assert_eq!(env["AZURE_OPENAI_API_KEY"], proxy.token);
    assert_eq!(env["OPENAI_BASE_URL"], format!("http://{}/openai/v1", proxy.addr));
    assert!(env["NO_PROXY"].contains("127.0.0.1"));
    assert!(env.values().all(|v| !v.contains("real-key-123")));
}
