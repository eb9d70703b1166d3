//! `flow-ci flow test`: one line of a flow, like `pf flow test`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::exec::line::{Engine, RunError, Status};
use crate::exec::pool::{Pool, PoolConfig, default_python};
use crate::exec::prepare::{PrepareError, prepare};
use crate::exit;
use crate::flow::run_file::RunFile;
use crate::llm::{Connections, LlmSetup, Settings};

#[derive(Debug, clap::Args)]
pub struct FlowArgs {
    #[command(subcommand)]
    pub command: FlowCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum FlowCommand {
    Test(TestArgs),
}

/// Options of the local executor, shared by `flow test` and `run create`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// Python interpreter for python nodes [default: $FLOW_CI_PYTHON, the active virtualenv, python3]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,

    /// Seconds a line may run before it fails (promptflow's PF_LINE_TIMEOUT_SEC)
    #[arg(long, value_name = "SECONDS", default_value_t = 600, env = "PF_LINE_TIMEOUT_SEC", hide_env_values = true)]
    pub line_timeout: u64,

    /// Model requests in flight at once, across all lines [default: llm.concurrency in .flow-ci.yaml, else 8]
    #[arg(long, value_name = "N", env = "FLOW_CI_LLM_CONCURRENCY", hide_env_values = true)]
    pub llm_concurrency: Option<usize>,

    /// Always call the model: do not read or write the LLM response cache
    #[arg(long)]
    pub no_cache: bool,

    /// Where LLM responses are cached
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".flow-ci/cache/llm",
        env = "FLOW_CI_CACHE_DIR",
        hide_env_values = true
    )]
    pub cache_dir: PathBuf,

    /// A promptflow connection file (the `pf connection create --file` YAML); repeatable
    #[arg(long = "connection", value_name = "FILE")]
    pub connection_files: Vec<PathBuf>,

    /// Retries of a model request after 429, 422, 5xx or a timeout (waits honour Retry-After)
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub llm_retries: u32,

    /// Seconds one model request may take
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub llm_timeout: u64,
}

impl ExecArgs {
    /// Python workers for `flow`, with its `environment_variables` (a run
    /// file's, when given, win) set in their environment.
    pub fn pool(
        &self,
        size: usize,
        flow: &crate::flow::Flow,
        run_file: Option<&RunFile>,
    ) -> Result<Pool, crate::exec::pool::PoolError> {
        Pool::new(PoolConfig {
            python: default_python(self.python.as_deref()),
            size,
            env: crate::exec::job::environment(flow, run_file),
        })
    }
}

impl ExecArgs {
    /// Connections and LLM settings: `.flow-ci.yaml` (`config`, else
    /// ./.flow-ci.yaml when present), `--connection` files and
    /// `PROMPTFLOW_CONNECTIONS`; flags win over the config. Problems in those
    /// files are printed and give exit 2.
    pub fn llm_setup(&self, config: Option<&std::path::Path>, err: &mut dyn Write) -> Result<LlmSetup, u8> {
        let mut diags = crate::diag::Diagnostics::default();
        let default = std::path::Path::new(crate::config::CONFIG_FILE);
        let config_file = config.or_else(|| default.is_file().then_some(default));
        let config = config_file.and_then(|file| crate::config::load(file, &mut diags));
        let (mut connections, llm) = match config {
            Some(c) => (c.connections, c.llm),
            None => (Connections::from_env(), Default::default()),
        };
        for file in &self.connection_files {
            connections.add_file(file, &mut diags);
        }
        if let Some(file) = crate::llm::connection::promptflow_connections_file()
            && let Err(e) = connections.add_promptflow_json(&file)
        {
            let _ = writeln!(err, "error: {e}");
            return Err(exit::INVALID_INPUT);
        }
        if diags.has_errors() {
            let base = std::env::current_dir().unwrap_or_default();
            for d in diags.into_sorted() {
                let _ = err.write_all(crate::diag::render_human(&d, &base).as_bytes());
            }
            return Err(exit::INVALID_INPUT);
        }
        let cache = !self.no_cache && llm.cache != Some(false);
        let settings = Settings {
            concurrency: self.llm_concurrency.or(llm.concurrency).unwrap_or(8).max(1),
            cache_dir: cache.then(|| self.cache_dir.clone()),
            retries: self.llm_retries,
            timeout: Duration::from_secs(self.llm_timeout.max(1)),
        };
        Ok(LlmSetup::new(connections, settings))
    }
}

/// Run one line of a flow and print its outputs as JSON (like `pf flow test`).
///
/// Inputs come from --inputs (strings, converted to each input's declared type),
/// then the first line of --input, then the flow's defaults. Aggregation nodes run
/// afterwards over one-item lists; their metrics are printed to stderr.
/// With --node, only that node runs, with inputs named by parameter or by
/// reference (`inputs.url`, `fetch.output`).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  flow-ci flow test --flow flows/web-classification\n  flow-ci flow test --flow flows/web-classification --inputs url=https://example.com text='a review'\n  flow-ci flow test --flow flows/web-classification --node classify --inputs text=hello"
)]
pub struct TestArgs {
    /// The flow folder (holding flow.dag.yaml)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub flow: PathBuf,

    /// Input values as name=value
    #[arg(long, value_name = "NAME=VALUE", num_args = 1.., value_parser = parse_key_value)]
    pub inputs: Vec<(String, String)>,

    /// A .jsonl file whose first line supplies inputs
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Run only this node
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    /// Use a variant: ${node_name.variant_id}
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,

    #[command(flatten)]
    pub exec: ExecArgs,
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, got `{s}`"))
}

pub fn run(args: FlowArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match args.command {
        FlowCommand::Test(t) => test(t, out, err),
    }
}

fn test(args: TestArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let prepared = match prepare(&args.flow, args.variant.as_deref()) {
        Ok(p) => p,
        Err(e) => return report_prepare_error(&e, err),
    };
    let inputs = match gather_inputs(&args) {
        Ok(i) => i,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return exit::INVALID_INPUT;
        }
    };
    let pool = match args.exec.pool(1, &prepared.flow, None) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return exit::FAILURE;
        }
    };
    let setup = match args.exec.llm_setup(None, err) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let cancel = AtomicBool::new(false);
    let loader = Engine {
        prepared: &prepared,
        pool: &pool,
        line_timeout: Duration::from_secs(args.exec.line_timeout),
        cancel: &cancel,
        llm: None,
    };
    let connected = loader
        .preload()
        .map_err(crate::exec::job::JobError::Load)
        .and_then(|params| crate::exec::job::connect(&prepared, &params, &setup));
    let llm = match connected {
        Ok(llm) => llm,
        Err(e) => return super::run::report_job_error(&e, err),
    };
    let engine = Engine { llm: Some(&llm), ..loader };
    if let Some(node) = &args.node {
        return match engine.run_single_node(node, &inputs) {
            Ok(record) => print_json(&record.output, out, err),
            Err(e) => report_run_error(&e, err),
        };
    }
    let missing = prepared.flow.missing_inputs(&inputs);
    if !missing.is_empty() {
        let quoted: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
        let _ = writeln!(err, "error: Required input(s) [{}] are missing for \"flow\".", quoted.join(", "));
        return exit::INVALID_INPUT;
    }
    let line = engine.run_line(&inputs, 0);
    flush_logs(&pool, err);
    if line.status != Status::Completed {
        return line.error.as_ref().map_or(exit::FAILURE, |e| report_run_error(e, err));
    }
    let aggregation = engine.run_aggregation(std::slice::from_ref(&line));
    for e in &aggregation.errors {
        let _ = writeln!(err, "warning: aggregation failed: {}: {}", e.kind, e.message);
    }
    if !aggregation.metrics.is_empty() {
        let _ = writeln!(err, "metrics: {}", Json::Object(aggregation.metrics.clone()));
    }
    print_json(&Json::Object(line.outputs), out, err)
}

/// Inputs by precedence: --inputs, then the first --input line.
fn gather_inputs(args: &TestArgs) -> Result<Map<String, Json>, String> {
    let mut inputs = Map::new();
    if let Some(file) = &args.input {
        let table = crate::data::load(file).map_err(|e| e.report())?;
        if let Some(first) = table.rows.into_iter().next() {
            inputs = first.values;
        }
    }
    for (k, v) in &args.inputs {
        inputs.insert(k.clone(), Json::String(v.clone()));
    }
    Ok(inputs)
}

/// Pretty JSON with 4-space indent, non-ASCII kept: what `pf flow test` prints.
pub fn print_json(value: &Json, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return exit::FAILURE;
    }
    buf.push(b'\n');
    match out.write_all(&buf) {
        Ok(()) => exit::OK,
        Err(e) => super::output_failed(&e, err),
    }
}

pub fn report_prepare_error(e: &PrepareError, err: &mut dyn Write) -> u8 {
    let base = std::env::current_dir().unwrap_or_default();
    match e {
        PrepareError::Invalid(diags) => {
            for d in diags {
                let _ = err.write_all(crate::diag::render_human(d, &base).as_bytes());
            }
            let _ = writeln!(err, "error: the flow has {} error(s); nothing was run", diags.len());
        }
        other => {
            let _ = writeln!(err, "error: {other}");
        }
    }
    exit::INVALID_INPUT
}

/// A failed line: the error, where it was raised, and the traceback.
pub fn report_run_error(e: &RunError, err: &mut dyn Write) -> u8 {
    let _ = writeln!(err, "error: {}: {}", e.kind, e.message);
    if let Some((file, line)) = &e.location {
        let _ = writeln!(err, "  --> {file}:{line}");
    }
    if let Some(tb) = &e.traceback {
        let _ = writeln!(err, "{}", tb.trim_end());
    }
    // Broken user code (syntax, import, no tool) is invalid input; the rest is a failed run.
    if e.kind == "ToolLoadError"
        || e.kind == "InputNotFound"
        || e.kind == "InputTypeError"
        || e.kind == "InputParseError"
    {
        exit::INVALID_INPUT
    } else {
        exit::FAILURE
    }
}

fn flush_logs(pool: &Pool, err: &mut dyn Write) {
    let logs = std::mem::take(&mut *pool.logs.lock().unwrap_or_else(|e| e.into_inner()));
    for line in logs {
        let _ = writeln!(err, "{line}");
    }
}
