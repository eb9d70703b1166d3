//! `flow-ci serve` for real: the binary on an ephemeral port, scored over
//! HTTP, compared with `flow-ci flow test`, and stopped with SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

mod support;
use support::fake_llm::FakeLlm;

struct Server {
    child: Option<Child>,
    url: String,
}

/// A test that fails midway still stops its server.
impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Server {
    fn start(flow: &str) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flow-ci"));
        cmd.args(["serve", "--flow", flow, "--port", "0", "--workers", "2"]).current_dir(fixtures());
        Server::spawn(cmd)
    }

    /// `flow-ci serve --port 0 ARGS` with at most 256 file descriptors (soft
    /// and hard limit, as on a small container), so running out is reached.
    fn start_with_256_fds(args: &[&str]) -> Server {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_flow-ci"), "serve", "--port", "0"])
            .args(args)
            .current_dir(fixtures());
        Server::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("{line}"));
        Server { url: url.to_string(), child: Some(child) }
    }

    fn addr(&self) -> SocketAddr {
        self.url.trim_start_matches("http://").parse().unwrap()
    }

    fn score(&self, client: &reqwest::blocking::Client, body: &str) -> (u16, Json) {
        let resp = client
            .post(format!("{}/score", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json().unwrap())
    }

    /// SIGTERM, then the exit status and stderr.
    fn terminate(mut self) -> (Option<i32>, String) {
        let child = self.child.take().unwrap();
        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn flow_test(flow: &str, inputs: &[(&str, &str)]) -> Json {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flow-ci"));
    cmd.args(["flow", "test", "--flow", flow, "--inputs"]).current_dir(fixtures());
    for (k, v) in inputs {
        cmd.arg(format!("{k}={v}"));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn scores_like_flow_test_refuses_bad_inputs_and_stops_on_sigterm() {
    let server = Server::start("flows/support-router");
    let client = reqwest::blocking::Client::new();
    let health: Json = client.get(format!("{}/health", server.url)).send().unwrap().json().unwrap();
    assert_eq!(health["status"], "Healthy");

    let (status, outputs) =
        server.score(&client, r#"{"message": "The app crashes when I log in", "customer_tier": "gold"}"#);
    assert_eq!(status, 200, "{outputs}");
    let expected =
        flow_test("flows/support-router", &[("message", "The app crashes when I log in"), ("customer_tier", "gold")]);
    assert_eq!(outputs, expected);

    let (status, body) = server.score(&client, r#"{"customer_tier": "gold"}"#);
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "UserError");
    assert!(body["error"]["message"].as_str().unwrap().contains("[\"message\"] are missing"), "{body}");
    let (status, body) = server.score(&client, "[1, 2]");
    assert_eq!(
        (status, body["error"]["message"].as_str().unwrap()),
        (400, "the request body must be a JSON object of inputs, got [1,2]")
    );

    let swagger: Json = client.get(format!("{}/swagger.json", server.url)).send().unwrap().json().unwrap();
    let schema = &swagger["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["properties"]["customer_tier"], json!({"type": "string", "default": "standard"}));

    // 50 requests at once, each answered with its own outputs.
    let messages = ["I was charged twice", "The app crashes on start", "Where is my parcel?"];
    let answers: Vec<(u16, Json)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (server, client) = (&server, &client);
                scope.spawn(move || server.score(client, &json!({ "message": messages[i % 3] }).to_string()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let expected: Vec<Json> = messages.iter().map(|m| flow_test("flows/support-router", &[("message", m)])).collect();
    for (i, (status, outputs)) in answers.iter().enumerate() {
        assert_eq!(*status, 200);
        assert_eq!(outputs, &expected[i % 3], "request {i}");
    }

    let (code, stderr) = server.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}

/// A flow `x → t(x) → y` whose python node is `code`, in a temp folder.
fn one_node_flow(code: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flow.dag.yaml"),
        "inputs:\n  x:\n    type: string\noutputs:\n  y:\n    type: string\n    reference: ${t.output}\nnodes:\n- name: t\n  type: python\n  source:\n    type: code\n    path: t.py\n  inputs:\n    x: ${inputs.x}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("t.py"), code).unwrap();
    dir
}

#[test]
fn a_broken_tool_stops_the_server_before_it_listens() {
    let dir = one_node_flow("from promptflow.core import tool\n\n@tool\ndef t(x: str) -> str:\n    return x +\n");
    let out = Command::new(env!("CARGO_BIN_EXE_flow-ci"))
        .args(["serve", "--port", "0", "--flow"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "never listened");
    assert!(String::from_utf8_lossy(&out.stderr).contains("SyntaxError"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn silent_connections_do_not_stop_health_from_answering() {
    let server = Server::start_with_256_fds(&["--flow", "flows/support-router", "--workers", "1"]);
    // More connections than the server has file descriptors, each with a
    // partial request line, then silence (slowloris).
    let silent: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&server.addr(), Duration::from_secs(2)).ok()?;
            s.write_all(b"GET /hea").ok()?;
            Some(s)
        })
        .collect();
    assert!(silent.len() > 256, "the kernel's backlog took the rest: {}", silent.len());
    // The server closes connections that send no request head in time and
    // accepts again; without that /health waits forever.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let health = client.get(format!("{}/health", server.url)).send().expect("/health answers within 20 s");
    assert_eq!(health.status(), 200);
    drop(silent);
}

#[test]
fn abandoned_requests_are_not_run_before_the_next_one() {
    let dir = one_node_flow(
        "import time\nfrom promptflow.core import tool\n\n@tool\ndef t(x: str) -> str:\n    time.sleep(0.5)\n    return x\n",
    );
    let flow = dir.path().to_str().unwrap();
    // One line at a time: 40 abandoned lines would take 20 s.
    let server = Server::start_with_256_fds(&["--flow", flow, "--workers", "1", "--llm-concurrency", "1"]);
    let body = r#"{"x": "abandoned"}"#;
    let request = format!(
        "POST /score HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Whole requests from clients that give up after half a second (a
    // client timeout) and leave before their answers.
    let abandoned: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&server.addr(), Duration::from_secs(2)).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(abandoned);
    // A real client, which honours 503's Retry-After, gets its answer in bounded time.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(8)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let answer = loop {
        let resp = client
            .post(format!("{}/score", server.url))
            .header("content-type", "application/json")
            .body(r#"{"x": "real"}"#)
            .send()
            .expect("answered within 8 s");
        if resp.status() != 503 || Instant::now() > deadline {
            break (resp.status().as_u16(), resp.json::<Json>().unwrap());
        }
        let body: Json = resp.json().unwrap();
        assert_eq!(body["error"]["code"], "ServiceUnavailable", "{body}");
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(answer, (200, json!({"y": "real"})));
}

/// A chat flow whose answer is an llm node's output no other node reads:
/// asked for `text/event-stream`, promptflow streams that output
/// (enable_streaming_for_llm_flow), so flow-ci answers with events too, the
/// other outputs first (ResponseCreator.generate). flow-ci sends the model a
/// request without `stream` (the fake refuses `stream: true`), so the answer is
/// one event where promptflow sends one per delta.
#[test]
fn an_llm_answer_is_an_event_when_a_stream_is_asked_for() {
    const KEY: &str = "serve-key";
    let fake = FakeLlm::start(KEY);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flow.dag.yaml"),
        "inputs:\n  question:\n    type: string\noutputs:\n  question:\n    type: string\n    reference: ${inputs.question}\n  answer:\n    type: string\n    reference: ${chat.output}\nnodes:\n- name: chat\n  type: llm\n  source:\n    type: code\n    path: chat.jinja2\n  inputs:\n    deployment_name: gpt-4o-mini\n    question: ${inputs.question}\n  connection: aoai\n  api: chat\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("chat.jinja2"), "# user:\n{{question}}\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flow-ci"));
    cmd.args(["serve", "--flow", dir.path().to_str().unwrap(), "--port", "0", "--workers", "1", "--no-cache"])
        .env("AZURE_OPENAI_ENDPOINT", &fake.url)
        .env("AZURE_OPENAI_API_KEY", KEY);
    let server = Server::spawn(cmd);
    let client = reqwest::blocking::Client::new();
    let ask = |accept: &str| {
        let response = client
            .post(format!("{}/score", server.url))
            .header("accept", accept)
            .body(r#"{"question": "déjà vu?"}"#)
            .send()
            .unwrap();
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        (response.status().as_u16(), content_type, response.text().unwrap())
    };
    let (status, content_type, body) = ask("text/event-stream");
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream; charset=utf-8"), "{body}");
    assert_eq!(
        body,
        "data: {\"question\": \"d\\u00e9j\\u00e0 vu?\"}\n\ndata: {\"answer\": \"echo: d\\u00e9j\\u00e0 vu?\"}\n\n"
    );
    let (status, content_type, body) = ask("application/json");
    assert_eq!((status, content_type.as_str()), (200, "application/json"), "{body}");
    assert_eq!(
        serde_json::from_str::<Json>(&body).unwrap(),
        json!({"question": "déjà vu?", "answer": "echo: déjà vu?"})
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}
