//! `flow-ci flow test`: one line of a flow, like `pf flow test`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use super::exec_args::{ExecArgs, load_config};
use super::failure::{report_job_error, report_prepare_error, report_run_error};
use exec::line::Status;
use exec::pool::{Pool, default_python};
use exec::prepare::prepare;
use exec::start::{StartOptions, start};
use model::exit;

#[derive(Debug, clap::Args)]
pub struct FlowArgs {
    #[command(subcommand)]
    pub command: FlowCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum FlowCommand {
    Test(TestArgs),
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
    let config = match load_config(None, err) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let setup = match args.exec.llm_setup(config.as_ref(), err) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let cancel = AtomicBool::new(false);
    let options = StartOptions {
        python: default_python(args.exec.python.as_deref()),
        workers: 1,
        env: exec::job::environment(&prepared.flow, None),
        line_timeout: Duration::from_secs(args.exec.line_timeout),
        cancel: &cancel,
        llm: &setup,
    };
    let started = match start(&prepared, options) {
        Ok(started) => started,
        Err(e) => return report_job_error(&e, err),
    };
    let engine = started.engine();
    if let Some(node) = &args.node {
        return match engine.run_single_node(node, &inputs) {
            Ok(record) => print_json(&record.output, out, err),
            Err(e) => report_run_error(&e, err),
        };
    }
    warn_unknown_inputs(&prepared.flow, &args.inputs, err);
    let missing = prepared.flow.missing_inputs(&inputs);
    if !missing.is_empty() {
        let quoted: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
        let _ = writeln!(err, "error: Required input(s) [{}] are missing for \"flow\".", quoted.join(", "));
        return exit::INVALID_INPUT;
    }
    let line = engine.run_line(&inputs, 0);
    flush_logs(&started.pool, err);
    if line.status != Status::Completed {
        return line.error.as_ref().map_or(exit::FAILURE, |e| report_run_error(e, err));
    }
    let aggregation = engine.run_aggregation(std::slice::from_ref(&line));
    for e in &aggregation.errors {
        let _ = writeln!(err, "warning: aggregation failed: {}: {}", e.kind, e.message);
    }
    if !aggregation.metrics.is_empty() {
        let metrics = exec::nonfinite::to_text(&aggregation.metrics).unwrap_or_default();
        let _ = writeln!(err, "metrics: {metrics}");
    }
    print_json(&Json::Object(line.outputs), out, err)
}

/// An `--inputs` name the flow does not declare is ignored by promptflow
/// too, which hides a typo (`ulr=`): say so, with the closest input.
fn warn_unknown_inputs(flow: &model::flow::Flow, given: &[(String, String)], err: &mut dyn Write) {
    let declared: Vec<&str> = flow.inputs.iter().map(|i| i.name.value.as_str()).collect();
    for (name, _) in given.iter().filter(|(n, _)| !declared.contains(&n.as_str())) {
        let hint = match model::diag::did_you_mean(name, declared.iter().copied()) {
            Some(near) => format!("; did you mean `{near}`?"),
            None => format!("; the flow's inputs are: {}", declared.join(", ")),
        };
        let _ = writeln!(err, "warning: --inputs `{name}` is not an input of the flow and is ignored{hint}");
    }
}

/// Inputs by precedence: --inputs, then the first --input line.
fn gather_inputs(args: &TestArgs) -> Result<Map<String, Json>, String> {
    let mut inputs = Map::new();
    if let Some(file) = &args.input {
        let table = model::data::load(file).map_err(|e| e.report())?;
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
    // pf flow test's layout (four spaces); NaN outputs read `NaN` like Python's json.
    let Ok(text) = exec::nonfinite::to_text_indented(value, "    ") else { return exit::FAILURE };
    match writeln!(out, "{text}") {
        Ok(()) => exit::OK,
        Err(e) => super::output_failed(&e, err),
    }
}

fn flush_logs(pool: &Pool, err: &mut dyn Write) {
    let logs = std::mem::take(&mut *pool.logs.lock().unwrap_or_else(|e| e.into_inner()));
    for line in logs {
        let _ = writeln!(err, "{line}");
    }
}
