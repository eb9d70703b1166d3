//! Servers a test starts (`pf flow serve`, `flow-ci serve`) and scores
//! against, killed when dropped.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::pf::PfWorkspace;

pub struct Served {
    child: Child,
    pub url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// `pf flow serve --source FLOW` in the workspace, once it answers /health.
    pub fn pf(ws: &PfWorkspace, flow: &str, client: &reqwest::blocking::Client) -> Served {
        let port = free_port();
        let cmd =
            ws.pf_command(&["flow", "serve", "--source", flow, "--port", &port.to_string(), "--skip-open-browser"]);
        Served::start(cmd, port, client)
    }

    /// `flow-ci serve --flow FLOW --workers N` in `dir` with the workers on
    /// `python` (None: the default `python3`), once it answers /health.
    pub fn flow_ci(
        dir: &Path,
        flow: &str,
        workers: usize,
        python: Option<&Path>,
        client: &reqwest::blocking::Client,
    ) -> Served {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flow-ci"));
        cmd.args(["serve", "--flow", flow, "--port", &port.to_string(), "--workers", &workers.to_string()])
            .current_dir(dir)
            .env_remove("VIRTUAL_ENV");
        match python {
            Some(python) => cmd.env("FLOW_CI_PYTHON", python),
            None => cmd.env_remove("FLOW_CI_PYTHON"),
        };
        Served::start(cmd, port, client)
    }

    fn start(mut cmd: Command, port: u16, client: &reqwest::blocking::Client) -> Served {
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let served = Served { child, url: format!("http://127.0.0.1:{port}") };
        for _ in 0..240 {
            if client.get(format!("{}/health", served.url)).send().is_ok_and(|r| r.status().is_success()) {
                return served;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        panic!("{} never answered /health", served.url);
    }

    /// Status, content type (without parameters) and body of a scoring call.
    pub fn score(&self, client: &reqwest::blocking::Client, accept: Option<&str>, body: &str) -> (u16, String, String) {
        let mut request = client
            .post(format!("{}/score", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        (status, content_type, response.text().unwrap())
    }

    /// Status and JSON answer (null when the body is no JSON) of a scoring call.
    pub fn score_json(&self, client: &reqwest::blocking::Client, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let (status, _, text) = self.score(client, None, &body.to_string());
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
