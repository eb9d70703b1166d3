//! LLM nodes: connections, the requests promptflow-tools would send, the
//! HTTP client with retries and a response cache, and token usage.

pub mod cache;
pub mod chat;
pub mod client;
pub mod limit;
pub mod message;
pub mod proxy;
pub mod request;
pub mod setup;
pub mod vision;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value as Json;

pub use client::{CallError, Client, Forward, Forwarded, ForwardedBody, Settings, Tokens, Usage, UsageSummary};
pub use model::connection::{Connection, Connections, NotFound};
use request::NodeCall;

/// Which connection each node uses, resolved before any line runs.
#[derive(Clone, Debug, Default)]
pub struct Bindings {
    /// `llm` node → its connection.
    pub llm: HashMap<String, Connection>,
    /// python node → parameter → the connection passed as that argument.
    pub python: HashMap<String, HashMap<String, Connection>>,
    /// python node → connection name → the connection its tool looks up by
    /// that name (`bind::named_connections`).
    pub named: HashMap<String, HashMap<String, Connection>>,
}

/// LLM calls of one run: the shared client, this run's bindings and usage,
/// and the first error that must stop the whole run (a missing key).
pub struct LlmRun<'a> {
    pub client: Option<&'a Client>,
    pub bindings: Bindings,
    pub usage: Usage,
    fatal: Mutex<Option<CallError>>,
}

impl<'a> LlmRun<'a> {
    pub fn new(client: Option<&'a Client>, bindings: Bindings) -> LlmRun<'a> {
        LlmRun { client, bindings, usage: Usage::default(), fatal: Mutex::new(None) }
    }

    /// Runs an `llm` node: builds the request and gets the answer (cached or not).
    /// Errors are promptflow's `(kind, message)`.
    pub fn call(&self, call: &NodeCall<'_>, deadline: Instant) -> Result<Json, (String, String)> {
        let conn = self
            .bindings
            .llm
            .get(call.node)
            .ok_or_else(|| ("InvalidConnection".to_string(), format!("node `{}` has no connection", call.node)))?;
        let req = request::build(call, conn).map_err(|e| (e.kind.to_string(), e.message))?;
        let client =
            self.client.ok_or_else(|| ("SystemError".to_string(), "the LLM client is not available".to_string()))?;
        match client.complete(call.node, conn, &req, &self.usage, deadline) {
            Ok(output) => Ok(output),
            Err(e @ CallError::MissingKey { .. }) => {
                let message = e.to_string();
                self.record_fatal(e);
                Err(("MissingConnectionKey".into(), message))
            }
            Err(CallError::Failed { kind, message }) => Err((kind.to_string(), message)),
        }
    }

    /// Records an error that must stop the run (the first one wins).
    pub fn record_fatal(&self, e: CallError) {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
    }

    /// The error that made the run stop, if any.
    pub fn fatal(&self) -> Option<CallError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn has_fatal(&self) -> bool {
        self.fatal.lock().map(|f| f.is_some()).unwrap_or(true)
    }
}

/// What every run of one flow-ci invocation shares for LLM calls: the
/// connection definitions and one HTTP client (created on first use, so
/// flows without llm nodes never start it).
pub struct LlmSetup {
    pub connections: Connections,
    pub settings: Settings,
    /// The connection python code's own model calls reach through the
    /// model proxy (`llm.proxy`, `--model-connection`); a port's wins.
    pub proxy: Option<String>,
    client: std::sync::OnceLock<Result<Client, String>>,
}

impl LlmSetup {
    pub fn new(connections: Connections, settings: Settings) -> LlmSetup {
        LlmSetup { connections, settings, proxy: None, client: std::sync::OnceLock::new() }
    }

    pub fn client(&self) -> Result<&Client, String> {
        self.client.get_or_init(|| Client::new(self.settings.clone())).as_ref().map_err(Clone::clone)
    }

    pub fn cache_enabled(&self) -> bool {
        self.settings.cache_dir.is_some()
    }
}
