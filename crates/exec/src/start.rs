//! Starting the executor for one flow: python workers in the flow's
//! environment (its requirements installed, see `venv`) with its variables
//! and without the CI's credentials, every node's code loaded before the first line (a broken
//! tool is an error at start-up, not on every line), and connections bound
//! (a missing key stops here unless cached answers may serve). `run
//! create`, `check`, `flow test`, `serve` and `deploy` all start here.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::bind::{bind, require_keys};
use crate::job::JobError;
use crate::line::Engine;
use crate::llm::{LlmRun, LlmSetup};
use crate::pool::{Pool, PoolConfig, Python};
use crate::prepare::Prepared;

pub struct StartOptions<'a> {
    /// The base (or fixed) interpreter; see `venv::interpreter`.
    pub python: Python,
    /// Python worker processes.
    pub workers: usize,
    /// The workers' extra environment (see `job::environment`).
    pub env: Vec<(String, String)>,
    pub line_timeout: Duration,
    pub cancel: &'a AtomicBool,
    pub llm: &'a LlmSetup,
    /// The workers' model calls come through the model proxy: the run
    /// needs the LLM client even without `llm` nodes.
    pub proxied: bool,
}

/// A flow ready to run lines.
pub struct Started<'a> {
    prepared: &'a Prepared,
    pub pool: Pool,
    llm: LlmRun<'a>,
    line_timeout: Duration,
    cancel: &'a AtomicBool,
}

impl<'a> Started<'a> {
    /// The engine that runs lines, single nodes and aggregations.
    pub fn engine(&self) -> Engine<'_> {
        Engine {
            prepared: self.prepared,
            pool: &self.pool,
            line_timeout: self.line_timeout,
            cancel: self.cancel,
            llm: Some(&self.llm),
        }
    }

    /// The model calls of this start: usage and the error that stopped them.
    pub fn llm(&self) -> &LlmRun<'a> {
        &self.llm
    }
}

/// Starts workers for `prepared`, loads its code and binds its connections.
pub fn start<'a>(prepared: &'a Prepared, opts: StartOptions<'a>) -> Result<Started<'a>, JobError> {
    let python = crate::venv::interpreter(&opts.python, &prepared.flow, Path::new(crate::venv::ENVS_DIR))?;
    let flow_vars: Vec<&str> = prepared.flow.environment_variables.iter().map(|(k, _)| k.value.as_str()).collect();
    let env = crate::bind::environment(opts.env, |var| flow_vars.contains(&var), &opts.llm.connections)?;
    let config = PoolConfig { python: python.path, size: opts.workers, env, isolated: python.own_env };
    let pool = Pool::new(config)?;
    let loader = Engine { prepared, pool: &pool, line_timeout: opts.line_timeout, cancel: opts.cancel, llm: None };
    let connection_params = loader.preload().map_err(JobError::Load)?;
    let bindings = bind(prepared, &connection_params, &opts.llm.connections)?;
    if !opts.llm.cache_enabled() {
        require_keys(&bindings)?;
    }
    let needs_client = !bindings.llm.is_empty() || opts.proxied;
    let client = if needs_client { Some(opts.llm.client().map_err(JobError::Client)?) } else { None };
    let llm = LlmRun::new(client, bindings);
    Ok(Started { prepared, pool, llm, line_timeout: opts.line_timeout, cancel: opts.cancel })
}
