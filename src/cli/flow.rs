//! `flow-ci flow test`: one line of a flow, like `pf flow test`; `flow-ci
//! flow push`: the flow into the Azure ML workspace, like `pfazure flow create`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use super::exec_args::{ExecArgs, load_config};
use super::failure::{report_job_error, report_prepare_error, report_run_error};
use crate::jobs::push::{PushError, PushRequest};
use backend::azureml::flows::PushSpec;
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
    Push(PushArgs),
}

/// Import a flow into the Azure ML workspace as a flow the team can open and edit in the
/// studio (like `pfazure flow create`), or refresh one pushed before (--update).
///
/// The flow is uploaded as runs upload it (additional_includes merged in, flow.dag.yaml
/// rewritten as pfazure rewrites it) to the workspace's file share
/// (`workspaceworkingdirectory`, under Users/<you>/promptflow/<folder>-<timestamp>) and
/// registered with the flow service. --update NAME writes the flow over that flow's folder
/// (removing files the flow no longer has) and updates its display name, description and tags. Prints the flow as JSON (name,
/// type, display_name, path, flow_portal_url) and the studio URL. The workspace comes from
/// `azureml:` in .flow-ci.yaml, else AZUREML_* variables, else an Azure ML config.json.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  flow-ci flow push --flow flows/support-router \\\n    --set display_name='Support router' type=chat\n  flow-ci flow push --flow flows/support-router \\\n    --update 0f3c9a52-8d1e-4b7a-9c61-2f5e8a7d4b10"
)]
pub struct PushArgs {
    /// The flow folder (holding flow.dag.yaml)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub flow: PathBuf,

    /// display_name=..., type=standard|chat|evaluation, description=..., tags.KEY=VALUE
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,

    /// Refresh this workspace flow (the name `flow push` printed, the id in its studio URL)
    #[arg(long, value_name = "NAME")]
    pub update: Option<String>,

    /// The .flow-ci.yaml with `azureml:` [default: ./.flow-ci.yaml when there is one]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
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
    after_help = "Examples:\n  flow-ci flow test --flow flows/web-classification --inputs text=trailer\n  flow-ci flow test --flow flows/web-classification \\\n    --inputs url=https://example.com text='a review'\n  flow-ci flow test --flow flows/web-classification --node prepare \\\n    --inputs url=https://example.com text=hello"
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
        FlowCommand::Push(p) => push(p, out, err),
    }
}

/// `--set` as pfazure takes it.
fn push_spec(args: &PushArgs) -> Result<PushSpec, String> {
    let mut spec = PushSpec { update: args.update.clone(), ..PushSpec::default() };
    for (key, value) in &args.set {
        match key.as_str() {
            "display_name" => spec.display_name = Some(value.clone()),
            "type" => {
                backend::azureml::flows::service_type(value).map_err(|e| e.to_string())?;
                spec.flow_type = Some(value.to_lowercase());
            }
            "description" => spec.description = Some(value.clone()),
            k if k.starts_with("tags.") && k.len() > 5 => {
                spec.tags.insert(k[5..].to_string(), Json::String(value.clone()));
            }
            other => {
                return Err(format!("--set {other}: flow push sets display_name, type, description and tags.KEY"));
            }
        }
    }
    if spec.update.is_some() && spec.flow_type.is_some() {
        return Err("--set type: a workspace flow's type cannot change on --update".into());
    }
    Ok(spec)
}

fn push(args: PushArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let spec = match push_spec(&args) {
        Ok(s) => s,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return exit::INVALID_INPUT;
        }
    };
    let req = PushRequest { flow: args.flow.clone(), spec, config: args.config.clone() };
    match crate::jobs::push::run(&req) {
        Ok(flow) => {
            let verb = if flow.created { "created" } else { "updated" };
            let removed = if flow.removed > 0 {
                format!(", {} file(s) no longer in the flow removed", flow.removed)
            } else {
                String::new()
            };
            let _ = writeln!(
                err,
                "flow push: {verb} `{}` ({}, {} file(s) in {}{removed})",
                flow.display_name, flow.name, flow.files, flow.path
            );
            let _ = writeln!(err, "studio: {}", flow.studio_url);
            let json = serde_json::json!({
                "name": flow.name, "type": flow.flow_type, "display_name": flow.display_name,
                "path": flow.path, "flow_portal_url": flow.studio_url,
            });
            print_json(&json, out, err)
        }
        Err(PushError::Config(diags)) => {
            super::failure::print_diagnostics(&diags, err);
            exit::INVALID_INPUT
        }
        Err(PushError::Flow(e)) => report_prepare_error(&e, err),
        Err(PushError::Cloud(e)) => super::cloud::report(&e, err),
    }
}

fn test(args: TestArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let planned = match &args.node {
        Some(node) => exec::prepare::prepare_node(&args.flow, args.variant.as_deref(), node),
        None => prepare(&args.flow, args.variant.as_deref()),
    };
    let prepared = match planned {
        Ok(p) => p,
        Err(e) => return report_prepare_error(&e, err),
    };
    let mut inputs = match gather_inputs(&args) {
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
        proxied: false,
    };
    let started = match start(&prepared, options) {
        Ok(started) => started,
        Err(e) => return report_job_error(&e, err),
    };
    let engine = started.engine();
    if let Some(node) = &args.node {
        return match engine.run_single_node(node, &inputs) {
            Ok(record) => print_outputs(&args.flow, &record.output, prepared.image_format(), out, err),
            Err(e) => report_run_error(&e, err),
        };
    }
    warn_unknown_inputs(&prepared.flow, &args.inputs, err);
    default_chat_history(&prepared.flow, &mut inputs);
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
    print_outputs(&args.flow, &Json::Object(line.outputs), prepared.image_format(), out, err)
}

/// Prints a test's outputs with their images written where `pf flow test`
/// writes them, `<flow>/.promptflow/output/<uuid>.<ext>`, named by absolute
/// path (_sdk/_orchestrator/test_submitter.py, persist_multimedia_data into
/// the output folder).
fn print_outputs(
    flow: &Path,
    outputs: &Json,
    format: exec::images::Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let folder = if flow.is_file() { flow.parent().unwrap_or(Path::new(".")) } else { flow };
    let dir =
        std::path::absolute(folder.join(".promptflow/output")).unwrap_or_else(|_| folder.join(".promptflow/output"));
    match exec::images::persist(outputs, &dir, format) {
        Ok(persisted) => print_json(&persisted, out, err),
        Err(e) => {
            let _ = writeln!(err, "error: could not write the outputs' images: {e}");
            exit::FAILURE
        }
    }
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

/// pf flow test gives a chat history with no value and no default `[]`
/// (_sdk/_orchestrator/test_submitter.py, resolve_data: "When the flow is a
/// chat flow and chat_history has no default value, set an empty list"). The
/// chat history is the input flagged `is_chat_history`, else one named
/// `chat_history` unless flagged `is_chat_history: false` (_utils/flow_utils.py,
/// is_executable_chat_flow).
fn default_chat_history(flow: &model::flow::dag::Flow, inputs: &mut Map<String, Json>) {
    let history = flow
        .inputs
        .iter()
        .find(|i| i.is_chat_history)
        .or_else(|| flow.inputs.iter().find(|i| i.name.value == "chat_history" && !i.not_chat_history));
    if let Some(input) = history.filter(|i| i.default.as_ref().is_none_or(Json::is_null)) {
        inputs.entry(input.name.value.clone()).or_insert_with(|| Json::Array(vec![]));
    }
}
