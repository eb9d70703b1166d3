//! One batch or evaluation run from start to finish: prepare the flow, read
//! the data and the base run, map inputs, start python workers, check that
//! every node's code loads, run, and record the result in the run store.
//! `flow-ci run create` and `flow-ci check` both run through here.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::Value as Json;

use super::batch::{self, BaseRun, BatchOptions, MappingError, Progress};
use super::bind::{BindError, apply_overrides};
use super::line::RunError;
use super::pool::{PoolError, Python};
use super::prepare::{PrepareError, prepare};
use super::start::{StartOptions, start};
use crate::llm::proxy::{Context as ProxyContext, Proxy};
use crate::llm::{CallError, LlmSetup};
use crate::store::{LineCounts, RunRecord, RunStatus, Store, StoreError};
use model::data::DataError;
use model::flow::Flow;
use model::flow::port::Port;
use model::flow::reference::MappingSource;
use model::flow::run_file::{EnvironmentVariables, RunFile};

/// What to run, already resolved from a run file and/or flags.
#[derive(Clone, Debug)]
pub struct Job {
    pub name: String,
    pub flow: PathBuf,
    pub data: Option<PathBuf>,
    /// The base run of an evaluation run.
    pub base: Option<String>,
    pub mapping: Vec<(String, MappingSource)>,
    pub variant: Option<String>,
    pub run_file: Option<RunFile>,
    /// A Microsoft Agent Framework workflow run instead of the flow (`flow`
    /// is then its folder); its inputs are the mapping's keys.
    pub port: Option<Port>,
}

#[derive(Clone)]
pub struct JobOptions<'a> {
    pub python: Python,
    pub workers: usize,
    pub line_timeout: Duration,
    /// Replace an existing run of the same name.
    pub force: bool,
    pub cancel: &'a AtomicBool,
    /// Builds the progress reporter of a run (its name, its number of lines).
    pub progress: &'a (dyn Fn(&str, usize) -> Box<dyn Progress> + Sync),
    /// Connections, the LLM client and its settings.
    pub llm: &'a LlmSetup,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error("{}", .0.report())]
    Data(#[from] DataError),
    #[error("{0}")]
    Mapping(#[from] MappingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The flow's python requirements could not be installed.
    #[error(transparent)]
    Environment(#[from] crate::venv::EnvError),
    /// A node's code does not load (syntax, import, no single `@tool`).
    #[error("{}: {}", .0.kind, .0.message)]
    Load(RunError),
    /// A connection that does not exist or has no key.
    #[error(transparent)]
    Connection(#[from] BindError),
    /// A model call that could not be made (the run stopped).
    #[error(transparent)]
    Llm(CallError),
    #[error("{0}")]
    Client(String),
    /// The model proxy's connection (a port's, `llm.proxy`) cannot be used: undefined, wrong type, no endpoint.
    #[error("{0}")]
    Proxy(String),
}

impl JobError {
    /// Broken input is exit 2; a run that could not execute is exit 3.
    pub fn exit_code(&self) -> u8 {
        match self {
            JobError::Pool(_) | JobError::Client(_) => model::exit::FAILURE,
            JobError::Store(e) => e.exit_code(),
            JobError::Environment(e) => e.exit_code(),
            _ => model::exit::INVALID_INPUT,
        }
    }
}

/// Runs `job` and returns its finished record.
pub fn run(job: &Job, store: &Store, opts: &JobOptions<'_>) -> Result<RunRecord, JobError> {
    let mut prepared = match &job.port {
        Some(port) => {
            let inputs: Vec<String> = job.mapping.iter().map(|(k, _)| k.clone()).collect();
            if inputs.is_empty() {
                return Err(JobError::Mapping(MappingError::NoPortInputs));
            }
            crate::prepare::prepare_port(port, &inputs)
        }
        None => prepare(&job.flow, job.variant.as_deref())?,
    };
    if let Some(file) = &job.run_file {
        apply_overrides(&mut prepared, &file.connections);
    }
    let data = job.data.as_deref().map(model::data::load).transpose()?;
    let base = job.base.as_deref().map(|name| load_base(store, name)).transpose()?;
    let lines = batch::map_inputs(&prepared, &job.mapping, data.as_ref(), base.as_ref())?;
    let proxy = model_proxy(job, opts)?;
    let mut env = environment(&prepared.flow, job.run_file.as_ref());
    // The proxy's variables come last: they win over the run file's.
    env.extend(proxy.iter().flat_map(Proxy::env));
    let started = start(
        &prepared,
        StartOptions {
            python: opts.python.clone(),
            workers: opts.workers,
            env,
            line_timeout: opts.line_timeout,
            cancel: opts.cancel,
            llm: opts.llm,
            proxied: proxy.is_some(),
        },
    )?;
    let engine = started.engine();
    let mut writer = store.create(&job.name, opts.force)?;
    let progress = (opts.progress)(&job.name, lines.len());
    let batch_opts = BatchOptions {
        workers: line_threads(&prepared, opts),
        line_timeout: opts.line_timeout,
        cancel: opts.cancel,
        progress: progress.as_ref(),
    };
    let fatal = |e: CallError| started.llm().record_fatal(e);
    let stop = AtomicBool::new(false);
    let context = started.llm().client.map(|client| ProxyContext {
        client,
        usage: &started.llm().usage,
        timeout: opts.line_timeout,
        fatal: &fatal,
    });
    let record = std::thread::scope(|scope| {
        let _serving = proxy.as_ref().zip(context.as_ref()).map(|(p, ctx)| p.serve(scope, &stop, ctx));
        batch::run(&engine, &lines, &batch_opts, &mut writer, new_record(job))
    })?;
    if let Some(proxy) = &proxy {
        let refused = proxy.refusals();
        if !refused.is_empty() {
            tracing::warn!(
                "the model proxy of `{}` refused {} request(s); the first: {}",
                job.name,
                refused.len(),
                refused[0]
            );
        }
    }
    if let Some(client) = started.llm().client {
        for (deployment, stats) in client.limits() {
            tracing::info!(
                "llm limit of {deployment}: up to {} in flight, {} answered 429/503, sends paused {:.1}s by Retry-After (this flow-ci process so far)",
                stats.peak,
                stats.throttled,
                stats.paused.as_secs_f64()
            );
        }
    }
    match started.llm().fatal() {
        Some(e) => Err(JobError::Llm(e)),
        None => Ok(record),
    }
}

/// The model proxy of a run whose python code's model calls go through
/// flow-ci (a port's `connection`, else `llm.proxy` / `--model-connection`):
/// bound before the workers start, so their environment can point at it.
fn model_proxy(job: &Job, opts: &JobOptions<'_>) -> Result<Option<Proxy>, JobError> {
    let port_connection = job.port.as_ref().and_then(|p| p.connection.as_deref());
    let Some(name) = port_connection.or(opts.llm.proxy.as_deref()) else {
        return Ok(None);
    };
    let caller = match &job.port {
        Some(port) => format!("port {}", port.file.display()),
        None => format!("run {}", job.name),
    };
    let conn = opts.llm.connections.get(name, &caller).map_err(|e| JobError::Proxy(e.to_string()))?;
    let proxy = Proxy::bind(conn, &caller).map_err(|e| JobError::Proxy(e.to_string()))?;
    tracing::info!(
        "{caller}: python's own model calls go through flow-ci's model proxy to connection `{}`",
        proxy.connection()
    );
    Ok(Some(proxy))
}

/// Lines run at once: the worker count, raised to the LLM concurrency's
/// upper bound for flows that call a model (their lines mostly wait on the
/// network), so the adaptive limit can reach it; results are ordered by line.
fn line_threads(prepared: &super::prepare::Prepared, opts: &JobOptions<'_>) -> usize {
    let calls_model = prepared.steps.iter().any(|s| matches!(s.kind, super::prepare::StepKind::Llm { .. }));
    if calls_model { opts.workers.max(opts.llm.settings.concurrency) } else { opts.workers }
}

fn load_base(store: &Store, name: &str) -> Result<BaseRun, StoreError> {
    let record = store.load(name)?;
    // Images in output.jsonl are relative to the run's folder.
    let dir = store.dir(name)?;
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let outputs = store
        .outputs(name)?
        .into_iter()
        .map(|row| row.into_iter().map(|(k, v)| (k, resolve_output_images(&v, &dir))).collect())
        .collect();
    let data = record.data.as_deref().and_then(|p| model::data::load(p).ok());
    Ok(BaseRun { name: name.to_string(), outputs, data })
}

/// A base run's output images, in the format its flow wrote them: flow-ci
/// wrote the file, so a reference of either format is one of its images.
fn resolve_output_images(value: &Json, dir: &std::path::Path) -> Json {
    use crate::images::{Format, resolve_paths};
    resolve_paths(&resolve_paths(value, dir, Format::Basic), dir, Format::OpenaiVision)
}

/// Flow-level then run-file `environment_variables` (the run file wins).
pub fn environment(flow: &Flow, run_file: Option<&RunFile>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        flow.environment_variables.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect();
    if let Some(EnvironmentVariables::Map(vars)) = run_file.map(|f| &f.environment_variables) {
        for (k, v) in vars {
            env.retain(|(key, _)| *key != k.value);
            env.push((k.value.clone(), v.value.clone()));
        }
    }
    env
}

pub fn new_record(job: &Job) -> RunRecord {
    let file = job.run_file.as_ref();
    let pairs = |list: Option<&Vec<(model::yaml::Spanned<String>, model::yaml::Spanned<String>)>>| {
        list.into_iter().flatten().map(|(k, v)| (k.value.clone(), Json::String(v.value.clone()))).collect()
    };
    RunRecord {
        name: job.name.clone(),
        display_name: file.and_then(|f| f.display_name.as_ref().map(|d| d.value.clone())),
        flow: absolute(job.port.as_ref().map_or(&job.flow, |p| &p.file)),
        run_file: file.map(|f| absolute(&f.file)),
        data: job.data.as_deref().map(absolute),
        run: job.base.clone(),
        variant: job.variant.clone(),
        column_mapping: job.mapping.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
        status: RunStatus::Running,
        created_on: String::new(),
        end_time: None,
        duration_seconds: 0.0,
        lines: LineCounts::default(),
        error: None,
        aggregation_errors: vec![],
        tags: pairs(file.map(|f| &f.tags)),
        properties: pairs(file.map(|f| &f.properties)),
        backend: "local".into(),
        llm: None,
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).map(|a| model::paths::normalize(&a)).unwrap_or_else(|_| p.to_path_buf())
}
