//! Running one line of a flow, and the aggregation nodes after all lines,
//! with promptflow's semantics: input defaults and type conversion, nodes in
//! dependency order with independent ones in parallel, `activate` and bypass
//! rules, property access into node outputs, and flow outputs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::pool::{CallRequest, Pool, Progress, PyError, WorkflowCall};
use super::prepare::{Prepared, Step, StepKind};
use crate::llm::LlmRun;
use crate::llm::request::{Api, Escaped, NodeCall};
use model::flow::reference::{Assignment, PathStep, property_path};
use model::value::{ConvertError, convert, python_str};

mod stream;
pub use stream::{LineEvent, Observer};
use stream::{Watch, output_key_path};
mod single_node;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Status {
    Completed,
    Failed,
    Bypassed,
    Canceled,
    Running,
    NotStarted,
}

/// An error as promptflow reports it: a type name and a message.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct RunError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub traceback: Option<String>,
    /// The user's file and line where it was raised, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub location: Option<(String, u32)>,
}

impl RunError {
    fn new(kind: &str, message: String) -> RunError {
        RunError { kind: kind.into(), message, node: None, traceback: None, location: None }
    }

    fn from_python(node: &str, e: PyError) -> RunError {
        // A worker killed to stop the run: the line is Canceled, not Failed.
        if e.kind == "Canceled" {
            return RunError { node: Some(node.into()), ..RunError::new("Canceled", e.message) };
        }
        // A package tool the flow's python lacks: one line naming the node,
        // the tool and what to install (the worker's frames say nothing more).
        if e.kind == "PackageToolNotFoundError" {
            return RunError {
                node: Some(node.into()),
                ..RunError::new("ToolLoadError", format!("`{node}` {}", e.message))
            };
        }
        let kind = match (e.phase.as_str(), e.kind.as_str()) {
            (_, "LineExecutionTimeoutError") => "LineExecutionTimeoutError",
            // A flow input that is no image fails the line, not the node
            // (flow_executor.py, load_multimedia_data before any node runs).
            (_, "LoadMultimediaDataError") => {
                return RunError { node: Some(node.into()), ..RunError::new(&e.kind, e.message) };
            }
            ("load", _) => "ToolLoadError",
            _ => "ToolExecutionError",
        };
        let message = if kind == "ToolExecutionError" {
            format!("Execution failure in '{node}': ({}) {}", e.kind, e.message)
        } else {
            format!("Failed in '{node}': ({}) {}", e.kind, e.message)
        };
        RunError {
            kind: kind.into(),
            message,
            node: Some(node.into()),
            traceback: (!e.traceback.is_empty()).then_some(e.traceback),
            location: e.r#where,
        }
    }
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct NodeRun {
    pub node: String,
    pub status: Status,
    pub output: Json,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<RunError>,
    pub duration_ms: u64,
    /// A prompt node's output as promptflow's `PromptResult` with escaped roles.
    #[serde(skip)]
    pub escaped: Option<Escaped>,
    /// The generators a python node returned (see `pool::CallOutput::streams`).
    #[serde(skip)]
    pub streams: Streams,
}

/// Generators in a node's output: their key path and their items.
pub type Streams = Vec<(Vec<String>, Vec<Json>)>;

/// The result of one line.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct LineRun {
    pub line_number: usize,
    pub status: Status,
    /// Inputs after defaults and type conversion.
    pub inputs: Map<String, Json>,
    pub outputs: Map<String, Json>,
    pub nodes: Vec<NodeRun>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<RunError>,
    pub start_time: String,
    pub duration_ms: u64,
    /// Flow outputs that are a node's generator, with its items: promptflow
    /// keeps such an output a generator when `serve` is asked for a stream
    /// (flow_executor.py, exec_line with allow_generator_output) and joins
    /// it otherwise, as `outputs` has it.
    #[serde(skip)]
    pub streams: Vec<(String, Vec<Json>)>,
}

impl LineRun {
    fn node_output(&self, name: &str) -> Option<(&Json, Status)> {
        self.nodes.iter().find(|n| n.node == name).map(|n| (&n.output, n.status))
    }
}

/// Aggregation results: metrics and per-node records.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Aggregation {
    pub metrics: Map<String, Json>,
    pub nodes: Vec<NodeRun>,
    pub errors: Vec<RunError>,
}

/// Executes lines of one prepared flow.
pub struct Engine<'a> {
    pub prepared: &'a Prepared,
    pub pool: &'a Pool,
    pub line_timeout: Duration,
    pub cancel: &'a AtomicBool,
    /// LLM calls and connections; `None` when the flow has no llm nodes
    /// and no connection parameters.
    pub llm: Option<&'a LlmRun<'a>>,
}

/// Per-line execution state.
struct LineState {
    inputs: Map<String, Json>,
    status: Vec<Status>,
    outputs: Vec<Json>,
    escaped: Vec<Option<Escaped>>,
    records: Vec<Option<NodeRun>>,
}

impl LineState {
    fn new(steps: usize) -> LineState {
        LineState {
            inputs: Map::new(),
            status: vec![Status::NotStarted; steps],
            outputs: vec![Json::Null; steps],
            escaped: vec![None; steps],
            records: vec![None; steps],
        }
    }
}

impl Engine<'_> {
    /// Runs the line-level nodes for one row of inputs.
    pub fn run_line(&self, raw: &Map<String, Json>, line_number: usize) -> LineRun {
        self.run_line_with(raw, line_number, None)
    }

    /// `run_line`, telling `observer` the flow outputs that are generators
    /// item by item as their nodes yield, after the other outputs (see
    /// `LineEvent`): `serve` asked for a stream.
    pub fn run_line_observed(&self, raw: &Map<String, Json>, line_number: usize, observer: Observer) -> LineRun {
        self.run_line_with(raw, line_number, Some(observer))
    }

    fn run_line_with(&self, raw: &Map<String, Json>, line_number: usize, observer: Option<Observer>) -> LineRun {
        let started = Instant::now();
        let start_time = now_iso();
        let mut state = LineState::new(self.prepared.steps.len());
        let mut watch = observer.map(|o| Watch::new(o, self.prepared.steps.len()));
        let result = self.prepare_inputs(raw, line_number).and_then(|inputs| {
            state.inputs = inputs;
            self.run_nodes(&mut state, started, watch.as_mut())
        });
        let streams = if result.is_ok() { self.flow_output_streams(&state) } else { vec![] };
        let (status, error, outputs) = match result {
            Ok(()) => match self.flow_outputs(&state) {
                Ok(outputs) => (Status::Completed, None, outputs),
                Err(e) => (Status::Failed, Some(e), Map::new()),
            },
            Err(e) if e.kind == "Canceled" => (Status::Canceled, Some(e), Map::new()),
            Err(e) => (Status::Failed, Some(e), Map::new()),
        };
        LineRun {
            line_number,
            status,
            inputs: if state.inputs.is_empty() { raw.clone() } else { state.inputs },
            outputs,
            nodes: state.records.into_iter().flatten().collect(),
            error,
            start_time,
            duration_ms: millis(started.elapsed()),
            streams,
        }
    }

    /// Defaults for missing inputs, then every declared input present and converted.
    fn prepare_inputs(&self, raw: &Map<String, Json>, line: usize) -> Result<Map<String, Json>, RunError> {
        let mut inputs = raw.clone();
        for input in &self.prepared.flow.inputs {
            let name = &input.name.value;
            let value = match raw.get(name) {
                Some(v) => v.clone(),
                None => match &input.default {
                    Some(d) if !d.is_null() => d.clone(),
                    _ => {
                        return Err(RunError::new(
                            "InputNotFound",
                            format!(
                                "The input for flow is incorrect. The value for flow input '{name}' is not provided in line {line} of input data. Please review your input data or remove this input in your flow if it's no longer needed."
                            ),
                        ));
                    }
                },
            };
            let ty = input.ty.as_ref().map_or("string", |t| t.value.as_str());
            let converted = convert_input(ty, &value).map_err(|e| match e {
                ConvertError::Type => RunError::new(
                    "InputTypeError",
                    format!("The input for flow is incorrect. The value for flow input '{name}' in line {line} of input data does not match the expected type '{ty}'. Please change flow input type or adjust the input value in your input data."),
                ),
                ConvertError::Json => RunError::new(
                    "InputParseError",
                    format!("Failed to parse the flow input. The value for flow input '{name}' in line {line} of input data was interpreted as JSON string since its type is '{ty}'. However, the value '{}' is invalid for JSON parsing. Please make sure your inputs are properly formatted.", python_str(&value)),
                ),
            })?;
            inputs.insert(name.clone(), converted);
        }
        Ok(inputs)
    }

    /// Schedules line nodes: bypassable ones are settled first, then every
    /// ready node starts; independent nodes run on parallel threads. A
    /// watched line runs every node on its own thread, so this one hears
    /// the generators' items while they run.
    fn run_nodes(
        &self,
        state: &mut LineState,
        started: Instant,
        mut watch: Option<&mut Watch>,
    ) -> Result<(), RunError> {
        let deadline = started + self.line_timeout;
        std::thread::scope(|scope| {
            let (tx, rx) = channel::<NodeMessage>();
            let mut running = 0usize;
            // After a failure, the nodes in flight are heard out and the nodes
            // before the failed one in (topological) flow order still run, so
            // the failure reported is the first in flow order, not the first
            // in time: parallel nodes that fail give the same error on every
            // run. promptflow reports whichever its scheduler hears first.
            let mut failed: Option<(usize, RunError)> = None;
            loop {
                if self.cancel.load(Ordering::SeqCst) {
                    return Err(RunError::new("Canceled", "the run was canceled".into()));
                }
                let mut ready = self.settle_ready(state)?;
                if let Some((first, _)) = &failed {
                    ready.retain(|i| i < first);
                }
                // One ready node and nothing in flight: run it on this thread.
                if ready.len() == 1 && running == 0 && watch.is_none() {
                    let i = ready[0];
                    let record = self.exec_step(i, state, deadline)?;
                    self.record(state, i, record)?;
                    continue;
                }
                for i in ready {
                    let call = self.build_call(i, state)?;
                    state.status[i] = Status::Running;
                    let tx = tx.clone();
                    let watched = watch.is_some();
                    scope.spawn(move || {
                        let progress = |p| {
                            let _ = tx.send(NodeMessage::Progress(i, p));
                        };
                        let progress: &(dyn Fn(Progress) + Sync) = &progress;
                        let record = self.run_step(i, call, deadline, watched.then_some(progress));
                        let _ = tx.send(NodeMessage::Done(i, Box::new(record)));
                    });
                    running += 1;
                }
                if running == 0 {
                    return failed.map_or(Ok(()), |(_, e)| Err(e));
                }
                if let Some(watch) = watch.as_deref_mut() {
                    self.send_head(watch, state);
                }
                match rx.recv() {
                    Ok(NodeMessage::Progress(i, progress)) => {
                        if let Some(watch) = watch.as_deref_mut() {
                            self.on_progress(watch, i, progress);
                        }
                    }
                    Ok(NodeMessage::Done(i, record)) => {
                        running -= 1;
                        if let Err(e) = self.record(state, i, *record)
                            && failed.as_ref().is_none_or(|(first, _)| i < *first)
                        {
                            failed = Some((i, e));
                        }
                    }
                    Err(_) => return Err(RunError::new("SystemError", "a node thread ended without a result".into())),
                }
            }
        })
    }

    /// Marks bypassable nodes (repeatedly, since a bypass can make others
    /// bypassable) and returns the nodes ready to run.
    fn settle_ready(&self, state: &mut LineState) -> Result<Vec<usize>, RunError> {
        loop {
            let mut ready = Vec::new();
            let mut bypassed_any = false;
            for (i, step) in self.prepared.line_steps() {
                if state.status[i] != Status::NotStarted {
                    continue;
                }
                if !step.deps.iter().all(|&d| matches!(state.status[d], Status::Completed | Status::Bypassed)) {
                    continue;
                }
                if self.is_bypassed(step, state)? {
                    state.status[i] = Status::Bypassed;
                    state.records[i] = Some(NodeRun {
                        node: step.name.clone(),
                        status: Status::Bypassed,
                        output: Json::Null,
                        error: None,
                        duration_ms: 0,
                        escaped: None,
                        streams: vec![],
                    });
                    bypassed_any = true;
                } else {
                    ready.push(i);
                }
            }
            if !bypassed_any {
                return Ok(ready);
            }
        }
    }

    /// promptflow's `_is_node_bypassable`.
    fn is_bypassed(&self, step: &Step, state: &LineState) -> Result<bool, RunError> {
        if let Some((when, is)) = &step.activate {
            if let Some(n) = when.node().and_then(|n| self.prepared.step_index(n))
                && state.status[n] == Status::Bypassed
            {
                return Ok(true);
            }
            let value = self.resolve(when, state)?.0;
            return Ok(!python_eq(&value, is));
        }
        let refs: Vec<usize> =
            step.inputs.iter().filter_map(|(_, a)| a.node()).filter_map(|n| self.prepared.step_index(n)).collect();
        Ok(!refs.is_empty() && refs.iter().all(|&r| state.status[r] == Status::Bypassed))
    }

    /// The value of an assignment in this line, and whether it came from a bypassed node.
    fn resolve(&self, assignment: &Assignment, state: &LineState) -> Result<(Json, bool), RunError> {
        match assignment {
            Assignment::Literal(v) => Ok((v.clone(), false)),
            Assignment::FlowInput(name) => Ok((state.inputs.get(name).cloned().unwrap_or(Json::Null), false)),
            Assignment::Node { node, section, property } => {
                let i = self
                    .prepared
                    .step_index(node)
                    .ok_or_else(|| RunError::new("NodeReferenceNotFound", format!("node '{node}' not found")))?;
                if section != "output" {
                    return Err(RunError::new(
                        "UnsupportedReference",
                        format!(
                            "The section '{section}' of reference is currently unsupported. Please specify the output part of the node '{node}'."
                        ),
                    ));
                }
                let bypassed = state.status[i] == Status::Bypassed;
                Ok((access(&state.outputs[i], node, property)?, bypassed))
            }
        }
    }

    fn build_call(&self, i: usize, state: &LineState) -> Result<Invocation, RunError> {
        let step = &self.prepared.steps[i];
        let mut call = Invocation::default();
        for (name, assignment) in &step.inputs {
            let (value, bypassed) = self.resolve(assignment, state)?;
            match assignment {
                Assignment::Literal(_) => call.literals.push(name.clone()),
                Assignment::FlowInput(input) => {
                    call.inputs_to_escape.push(name.clone());
                    self.note_image(&mut call, name, input);
                }
                Assignment::Node { node, property, .. } if property.is_empty() => {
                    if let Some(escaped) = self.prepared.step_index(node).and_then(|j| state.escaped[j].clone()) {
                        call.prompt_results.push((name.clone(), escaped));
                    }
                }
                Assignment::Node { .. } => {}
            }
            if bypassed {
                call.bypassed.push(name.clone());
            }
            call.kwargs.insert(name.clone(), value);
        }
        Ok(call)
    }

    /// Marks a node input bound to a flow input of type `image`, which the
    /// worker loads as an `Image` (flow_executor.py, load_multimedia_data).
    fn note_image(&self, call: &mut Invocation, param: &str, input: &str) {
        let ty = self.prepared.flow.input(input).and_then(|i| i.ty.as_ref());
        if ty.is_some_and(|t| t.value == "image") {
            call.images.push(param.to_string());
        }
    }

    fn exec_step(&self, i: usize, state: &LineState, deadline: Instant) -> Result<NodeRun, RunError> {
        let call = self.build_call(i, state)?;
        Ok(self.run_step(i, call, deadline, None))
    }

    /// Runs one node; failures become a Failed (or Canceled) record, never a
    /// panic. `progress` asks a python node to report its generators' items.
    fn run_step(&self, i: usize, call: Invocation, deadline: Instant, progress: Option<ProgressSink>) -> NodeRun {
        self.run_step_with_metrics(i, call, deadline, progress).0
    }

    /// Runs one node and returns its record and the metrics it logged.
    fn run_step_with_metrics(
        &self,
        i: usize,
        call: Invocation,
        deadline: Instant,
        progress: Option<ProgressSink>,
    ) -> (NodeRun, Map<String, Json>) {
        let step = &self.prepared.steps[i];
        let started = Instant::now();
        let (status, output, error, metrics, escaped, streams) = match self.invoke(step, call, deadline, progress) {
            Ok(done) => (Status::Completed, done.output, None, done.metrics, done.escaped, done.streams),
            Err(e) if e.kind == "Canceled" => (Status::Canceled, Json::Null, Some(e), Map::new(), None, vec![]),
            Err(e) => (Status::Failed, Json::Null, Some(e), Map::new(), None, vec![]),
        };
        let duration_ms = millis(started.elapsed());
        (NodeRun { node: step.name.clone(), status, output, error, duration_ms, escaped, streams }, metrics)
    }

    fn invoke(
        &self,
        step: &Step,
        call: Invocation,
        deadline: Instant,
        progress: Option<ProgressSink>,
    ) -> Result<Invoked, RunError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return Err(RunError::new(
                "LineExecutionTimeoutError",
                format!("Line execution timeout for exceeding {} seconds", self.line_timeout.as_secs()),
            ));
        }
        let node_error =
            |kind: &str, message: String| RunError { node: Some(step.name.clone()), ..RunError::new(kind, message) };
        match &step.kind {
            StepKind::Python { .. } | StepKind::Package { .. } => {
                let connections = self.python_connections(step, &call);
                let (file, package) = step.kind.python_tool().unwrap_or_default();
                let req = CallRequest {
                    op: "call",
                    file,
                    package,
                    working_dir: self.prepared.working_dir.clone(),
                    kwargs: call.kwargs,
                    literals: call.literals,
                    bypassed: call.bypassed,
                    images: call.images,
                    vision: self.prepared.image_format() == crate::images::Format::OpenaiVision,
                    aggregation: step.aggregation,
                    connections,
                    named_connections: self.named_connections(step),
                    prompt_template: step.kind.prompt_template(),
                    workflow: None,
                    stream: progress.is_some(),
                };
                match self.pool.call_observed(&req, budget, progress.unwrap_or(&|_| {})) {
                    Ok(Ok(out)) => {
                        Ok(Invoked { output: out.output, metrics: out.metrics, escaped: None, streams: out.streams })
                    }
                    Ok(Err(py)) => Err(RunError::from_python(&step.name, py)),
                    Err(e) => Err(RunError::new("SystemError", e.to_string())),
                }
            }
            StepKind::Workflow { file, factory, start } => {
                let req = CallRequest {
                    op: "call",
                    file: file.clone(),
                    working_dir: self.prepared.working_dir.clone(),
                    kwargs: call.kwargs,
                    literals: vec![],
                    bypassed: vec![],
                    images: vec![],
                    vision: false,
                    aggregation: false,
                    connections: Map::new(),
                    named_connections: Map::new(),
                    prompt_template: None,
                    package: None,
                    workflow: Some(WorkflowCall { factory: factory.clone(), start: start.clone() }),
                    stream: false,
                };
                match self.pool.call(&req, budget) {
                    Ok(Ok(out)) => {
                        Ok(Invoked { output: out.output, metrics: Map::new(), escaped: None, streams: vec![] })
                    }
                    Ok(Err(py)) => Err(RunError::from_python(&step.name, py)),
                    Err(e) => Err(RunError::new("SystemError", e.to_string())),
                }
            }
            StepKind::Prompt { .. } | StepKind::Llm { vision: false, .. }
                if !call.images.is_empty()
                    || call.kwargs.values().any(|v| crate::images::has_images(v, self.prepared.image_format())) =>
            {
                // promptflow renders an Image as `Image(<sha1>)` or, in vision
                // tools, as a content part; neither is done here yet.
                Err(node_error(
                    "UnsupportedInput",
                    format!(
                        "images in the inputs of {} nodes are not supported yet",
                        if matches!(step.kind, StepKind::Prompt { .. }) { "prompt" } else { "llm" }
                    ),
                ))
            }
            StepKind::Prompt { template } => {
                let (inputs_to_escape, prompt_results) = (call.inputs_to_escape.clone(), call.prompt_results.clone());
                let vars = prompt_vars(call);
                let render_error = |e: String| {
                    node_error(
                        "JinjaTemplateError",
                        format!("Failed to render jinja template: {e}. Please modify your prompt to fix the issue."),
                    )
                };
                let text = model::flow::template::render(template, &vars).map_err(render_error)?;
                let escaped =
                    crate::llm::request::escape_prompt_result(template, &vars, &inputs_to_escape, &prompt_results)
                        .map_err(render_error)?;
                Ok(Invoked { output: Json::String(text), metrics: Map::new(), escaped, streams: vec![] })
            }
            StepKind::Llm { template, api, vision, .. } => {
                let llm = self.llm.ok_or_else(|| node_error("SystemError", "LLM calls are not set up".into()))?;
                let api = Api::parse(api).ok_or_else(|| {
                    node_error(
                        "InvalidApi",
                        format!("The api '{api}' of node '{}' is not chat or completion.", step.name),
                    )
                })?;
                let node_call = NodeCall {
                    node: &step.name,
                    template,
                    api,
                    kwargs: call.kwargs,
                    literals: call.literals,
                    inputs_to_escape: call.inputs_to_escape,
                    prompt_results: call.prompt_results,
                    vision: vision.then(|| crate::llm::vision::Vision {
                        format: self.prepared.image_format(),
                        image_inputs: call.images,
                        working_dir: &self.prepared.working_dir,
                    }),
                };
                let output = llm.call(&node_call, deadline).map_err(|(kind, message)| node_error(&kind, message))?;
                Ok(Invoked { output, metrics: Map::new(), escaped: None, streams: vec![] })
            }
        }
    }

    /// Connection objects for a python node's connection-typed parameters.
    fn python_connections(&self, step: &Step, call: &Invocation) -> Map<String, Json> {
        let Some(bound) = self.llm.and_then(|llm| llm.bindings.python.get(&step.name)) else {
            return Map::new();
        };
        call.kwargs.keys().filter_map(|param| Some((param.clone(), bound.get(param)?.to_python()))).collect()
    }

    /// Connections a python node's tool looks up by name (`bind::named_connections`).
    fn named_connections(&self, step: &Step) -> Map<String, Json> {
        let Some(named) = self.llm.and_then(|llm| llm.bindings.named.get(&step.name)) else {
            return Map::new();
        };
        named.iter().map(|(name, conn)| (name.clone(), conn.to_python())).collect()
    }

    fn record(&self, state: &mut LineState, i: usize, record: NodeRun) -> Result<(), RunError> {
        state.status[i] = record.status;
        state.outputs[i] = record.output.clone();
        state.escaped[i] = record.escaped.clone();
        let error = record.error.clone();
        state.records[i] = Some(record);
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn flow_outputs(&self, state: &LineState) -> Result<Map<String, Json>, RunError> {
        if self.prepared.is_port() {
            return Ok(port_outputs(&state.outputs[0]));
        }
        let mut outputs = Map::new();
        for output in &self.prepared.flow.outputs {
            let Some(reference) = &output.reference else { continue };
            // Outputs of aggregation nodes are dropped from line outputs, as in promptflow.
            if let Some(i) = reference.value.node().and_then(|n| self.prepared.step_index(n))
                && self.prepared.steps[i].aggregation
            {
                continue;
            }
            let (value, _) = self.resolve(&reference.value, state)?;
            outputs.insert(output.name.value.clone(), value);
        }
        Ok(outputs)
    }

    /// The flow outputs that name a generator a node returned: `${n.output}`
    /// when the output is one, `${n.output.key}` when it sits under `key`.
    fn flow_output_streams(&self, state: &LineState) -> Vec<(String, Vec<Json>)> {
        let mut streams = Vec::new();
        for output in &self.prepared.flow.outputs {
            let Some(Assignment::Node { node, section, property }) = output.reference.as_ref().map(|r| &r.value) else {
                continue;
            };
            let Some(record) = self.prepared.step_index(node).and_then(|i| state.records[i].as_ref()) else {
                continue;
            };
            if section != "output" || record.streams.is_empty() {
                continue;
            }
            if let Some((_, items)) =
                output_key_path(property).and_then(|p| record.streams.iter().find(|(at, _)| *at == p))
            {
                streams.push((output.name.value.clone(), items.clone()));
            }
        }
        streams
    }

    /// Runs aggregation nodes once over the completed lines.
    pub fn run_aggregation(&self, lines: &[LineRun]) -> Aggregation {
        let mut agg = Aggregation::default();
        let completed: Vec<&LineRun> = lines.iter().filter(|l| l.status == Status::Completed).collect();
        let mut state = LineState::new(self.prepared.steps.len());
        let far = Instant::now() + self.line_timeout;
        for (i, step) in self.prepared.aggregation_steps() {
            if step.deps.iter().any(|&d| self.prepared.steps[d].aggregation && state.status[d] == Status::Failed) {
                continue;
            }
            let call = match self.aggregation_call(step, &completed, &state) {
                Ok(call) => call,
                Err(e) => {
                    agg.errors.push(e);
                    continue;
                }
            };
            let (record, metrics) = self.run_step_with_metrics(i, call, far, None);
            agg.metrics.extend(metrics);
            agg.errors.extend(record.error.clone());
            state.status[i] = record.status;
            state.outputs[i] = record.output.clone();
            agg.nodes.push(record);
        }
        agg
    }

    /// Aggregation inputs: per-line references become lists over completed
    /// lines; literals stay scalar; references to aggregation nodes are scalar.
    fn aggregation_call(&self, step: &Step, lines: &[&LineRun], state: &LineState) -> Result<Invocation, RunError> {
        let mut call = Invocation::default();
        for (name, assignment) in &step.inputs {
            let value = match assignment {
                Assignment::Literal(v) => {
                    call.literals.push(name.clone());
                    v.clone()
                }
                Assignment::FlowInput(input) => {
                    self.note_image(&mut call, name, input);
                    Json::Array(lines.iter().map(|l| l.inputs.get(input).cloned().unwrap_or(Json::Null)).collect())
                }
                Assignment::Node { node, property, .. } => match self.prepared.step_index(node) {
                    Some(i) if self.prepared.steps[i].aggregation => access(&state.outputs[i], node, property)?,
                    _ => {
                        let values: Result<Vec<Json>, RunError> = lines
                            .iter()
                            .map(|l| l.node_output(node).map_or(Ok(Json::Null), |(out, _)| access(out, node, property)))
                            .collect();
                        Json::Array(values?)
                    }
                },
            };
            call.kwargs.insert(name.clone(), value);
        }
        Ok(call)
    }
}

impl Engine<'_> {
    /// Imports every python node's file once, so a syntax or import error is
    /// reported (with its file and line) before any line runs. Returns the
    /// `(node, parameter)` pairs typed as connections.
    pub fn preload(&self) -> Result<Vec<(String, String)>, RunError> {
        let mut connection_params = Vec::new();
        for step in &self.prepared.steps {
            let loaded = match &step.kind {
                StepKind::Python { .. } | StepKind::Package { .. } => {
                    self.pool.call(&load_request(step, self.prepared), self.line_timeout)
                }
                StepKind::Workflow { file, factory, start } => {
                    let workflow = WorkflowCall { factory: factory.clone(), start: start.clone() };
                    self.pool.preload(file, &self.prepared.working_dir, Some(&workflow), self.line_timeout)
                }
                _ => continue,
            };
            match loaded {
                Ok(Ok(out)) => {
                    let params = out.output.get("connection_params").and_then(Json::as_array);
                    for param in params.into_iter().flatten().filter_map(Json::as_str) {
                        connection_params.push((step.name.clone(), param.to_string()));
                    }
                }
                Ok(Err(py)) => return Err(RunError::from_python(&step.name, py)),
                Err(e) => return Err(RunError::new("SystemError", e.to_string())),
            }
        }
        Ok(connection_params)
    }

    /// True when the run must stop (Ctrl-C, or an LLM call that cannot be made).
    pub fn stopping(&self) -> bool {
        self.cancel.load(Ordering::SeqCst) || self.llm.is_some_and(LlmRun::has_fatal)
    }
}

/// Loading a python node: its literal inputs with their values and the
/// others as their reference text, so the worker can build a class tool
/// (`__init__` takes literal inputs only) and name a reference given to it.
fn load_request(step: &Step, prepared: &Prepared) -> CallRequest {
    let (file, package) = step.kind.python_tool().unwrap_or_default();
    let mut kwargs = Map::new();
    let mut literals = Vec::new();
    for (name, assignment) in &step.inputs {
        let value = match assignment {
            Assignment::Literal(v) => {
                literals.push(name.clone());
                v.clone()
            }
            // promptflow's InputAssignment.serialize (contracts/flow.py) writes flow inputs as `${flow.x}`.
            Assignment::FlowInput(input) => Json::String(format!("${{flow.{input}}}")),
            Assignment::Node { node, section, property } if property.is_empty() => {
                Json::String(format!("${{{node}.{section}}}"))
            }
            Assignment::Node { node, section, property } => Json::String(format!("${{{node}.{section}.{property}}}")),
        };
        kwargs.insert(name.clone(), value);
    }
    CallRequest {
        op: "load",
        file,
        package,
        working_dir: prepared.working_dir.clone(),
        kwargs,
        literals,
        bypassed: vec![],
        images: vec![],
        vision: prepared.image_format() == crate::images::Format::OpenaiVision,
        aggregation: step.aggregation,
        connections: Map::new(),
        named_connections: Map::new(),
        prompt_template: step.kind.prompt_template(),
        workflow: None,
        stream: false,
    }
}

/// What a node's thread tells the line's thread.
enum NodeMessage {
    /// The node's generators, as the worker reports them while it runs.
    Progress(usize, Progress),
    Done(usize, Box<NodeRun>),
}

/// Where a python node's worker reports its generators (`pool::Progress`).
type ProgressSink<'a> = &'a (dyn Fn(Progress) + Sync);

/// Arguments for one node call.
#[derive(Default)]
struct Invocation {
    kwargs: Map<String, Json>,
    literals: Vec<String>,
    bypassed: Vec<String>,
    /// Inputs bound to flow inputs of type `image`.
    images: Vec<String>,
    /// Inputs bound to flow inputs (role lines escaped for prompt/llm nodes).
    inputs_to_escape: Vec<String>,
    /// Inputs that are prompt-node outputs carrying escaped roles.
    prompt_results: Vec<(String, Escaped)>,
}

/// What a node produced.
struct Invoked {
    output: Json,
    metrics: Map<String, Json>,
    escaped: Option<Escaped>,
    streams: Streams,
}

/// Prompt tool arguments. Literals keep their YAML type (a list stays a list
/// for `{% for %}`, as the promptflow oracle shows); empty literals are
/// dropped so the template sees them undefined.
fn prompt_vars(call: Invocation) -> Map<String, Json> {
    call.kwargs
        .into_iter()
        .filter(|(k, v)| !(call.literals.contains(k) && (v.is_null() || v.as_str() == Some(""))))
        .collect()
}

/// `${node.output.a.b[0]}` access into a node's output.
fn access(value: &Json, node: &str, property: &str) -> Result<Json, RunError> {
    let mut current = value;
    for step in property_path(property) {
        let next = match (&step, current) {
            (PathStep::Key(k), Json::Object(map)) => map.get(k),
            (PathStep::Index(i), Json::Array(items)) => items.get(*i),
            // promptflow indexes dicts with `[0]` as a key lookup of the integer.
            (PathStep::Index(_), _) | (PathStep::Key(_), _) => None,
        };
        current = next.ok_or_else(|| {
            RunError::new("InvalidReferenceProperty", format!("Invalid property '{property}' when accessing the node '{node}'. Please check the properties of the node output."))
        })?;
    }
    Ok(current.clone())
}

/// Python's `==` on JSON values: `1 == 1.0 == True`, no other coercion.
/// A port's line outputs: the workflow's one output when it is a dict (its
/// keys are the columns, as a flow's outputs are: `${run.outputs.category}`),
/// else `output` holding the one output, or the list of several.
fn port_outputs(outputs: &Json) -> Map<String, Json> {
    let list = outputs.as_array().map(Vec::as_slice).unwrap_or_default();
    match list {
        [Json::Object(map)] => map.clone(),
        [one] => Map::from_iter([("output".to_string(), one.clone())]),
        many => Map::from_iter([("output".to_string(), Json::Array(many.to_vec()))]),
    }
}

pub fn python_eq(a: &Json, b: &Json) -> bool {
    fn number(v: &Json) -> Option<f64> {
        match v {
            Json::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }
    match (a, b) {
        (Json::Null, Json::Null) => true,
        (Json::String(x), Json::String(y)) => x == y,
        (Json::Array(x), Json::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| python_eq(p, q)),
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| python_eq(v, w)))
        }
        _ => matches!((number(a), number(b)), (Some(x), Some(y)) if x == y),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Current UTC time as ISO 8601 (no time zone crate needed).
pub fn now_iso() -> String {
    iso8601(SystemTime::now())
}

pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_micros())
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `convert`, but a NaN or infinite double (an earlier run's output read
/// back from the store) stays the float it is, as in promptflow.
fn convert_input(ty: &str, value: &Json) -> Result<Json, ConvertError> {
    if ty == "double" && crate::nonfinite::as_non_finite(value).is_some() {
        return Ok(value.clone());
    }
    convert(ty, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_equality() {
        assert!(python_eq(&json!(1), &json!(1.0)));
        assert!(python_eq(&json!(true), &json!(1)));
        assert!(!python_eq(&json!("true"), &json!(true)));
        assert!(python_eq(&json!({"a": [1, 2]}), &json!({"a": [1.0, 2]})));
        assert!(!python_eq(&json!(null), &json!(0)));
    }

    #[test]
    fn property_access() {
        let v = json!({"a": {"b": [10, {"c": 3}]}});
        assert_eq!(access(&v, "n", "a.b[1].c").unwrap(), json!(3));
        assert_eq!(access(&v, "n", "").unwrap(), v);
        let err = access(&v, "n", "a.x").unwrap_err();
        assert_eq!(err.kind, "InvalidReferenceProperty");
        assert!(access(&Json::Null, "n", "a").is_err());
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000)), "2025-11-24T16:00:00.000000Z");
    }
}
