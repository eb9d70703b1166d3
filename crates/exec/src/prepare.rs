//! Turning a flow folder into an executable plan: the checks promptflow makes
//! before running, variant selection, stable topological order, template
//! sources read once, and a snapshot when `additional_includes` must be
//! copied next to the flow (as promptflow does for every run).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use model::diag::{Diagnostic, Diagnostics};
use model::flow::dag::{self, Flow, Node, NodeType, SourceKind};
use model::flow::port::Port;
use model::flow::reference::{Assignment, parse_variant};

/// What a node runs.
#[derive(Clone, Debug)]
pub enum StepKind {
    /// A python file with one `@tool` (path inside the working dir).
    Python { file: PathBuf },
    /// A package tool (`source: {type: package, tool: ID}`): the worker finds
    /// `ID` among the tools installed packages register under the
    /// `package_tools` entry point group, as promptflow does. A `custom_llm`
    /// node's tool (`source: {type: package_with_prompt, path: FILE}`) gets
    /// FILE's text as its `PromptTemplate` argument (`_tool_resolver.py`,
    /// `_integrate_prompt_in_package_node`).
    Package { tool: String, template: Option<String> },
    /// A Jinja template rendered with the node inputs.
    Prompt { template: String },
    /// An LLM call; run by the LLM module. `vision`: a gpt-4v tool
    /// (`custom_llm`), which sends the images in its inputs as content parts.
    Llm { template: String, api: String, connection: Option<String>, vision: bool },
    /// A Microsoft Agent Framework workflow (a port of the flow), run whole
    /// in a python worker: one fresh workflow per line.
    Workflow { file: PathBuf, factory: Option<String>, start: Option<String> },
}

impl StepKind {
    /// What a python worker loads for this step: a file, or (with an empty
    /// file) a package tool's id.
    pub fn python_tool(&self) -> Option<(PathBuf, Option<String>)> {
        match self {
            StepKind::Python { file } => Some((file.clone(), None)),
            StepKind::Package { tool, .. } => Some((PathBuf::new(), Some(tool.clone()))),
            _ => None,
        }
    }

    /// The prompt template a package tool is given (`custom_llm` nodes).
    pub fn prompt_template(&self) -> Option<String> {
        match self {
            StepKind::Package { template, .. } => template.clone(),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    pub inputs: Vec<(String, Assignment)>,
    pub activate: Option<(Assignment, Json)>,
    pub aggregation: bool,
    /// Indices of steps this one waits for (inputs and `activate.when`).
    pub deps: Vec<usize>,
}

/// A flow ready to run.
#[derive(Debug)]
pub struct Prepared {
    pub flow: Flow,
    /// Where python code runs (the flow folder, or its snapshot).
    pub working_dir: PathBuf,
    /// Steps in promptflow's stable topological order.
    pub steps: Vec<Step>,
    /// `(node, variant)` when a variant was selected explicitly.
    pub variant: Option<(String, String)>,
    /// Temporary snapshot folder to remove when done.
    snapshot: Option<tempfile::TempDir>,
}

impl Prepared {
    /// How the flow writes images (`message_format`).
    pub fn image_format(&self) -> crate::images::Format {
        crate::images::Format::of(self.flow.message_format.as_ref().map(|f| f.value.as_str()))
    }

    pub fn line_steps(&self) -> impl Iterator<Item = (usize, &Step)> {
        self.steps.iter().enumerate().filter(|(_, s)| !s.aggregation)
    }

    pub fn aggregation_steps(&self) -> impl Iterator<Item = (usize, &Step)> {
        self.steps.iter().enumerate().filter(|(_, s)| s.aggregation)
    }

    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    pub fn has_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    /// A port: its one step is the workflow, and its outputs are the
    /// workflow's (see `line::Engine::flow_outputs`).
    pub fn is_port(&self) -> bool {
        matches!(self.steps.as_slice(), [Step { kind: StepKind::Workflow { .. }, .. }])
    }
}

/// The name of a port's one step (in `details.jsonl` and errors).
pub const WORKFLOW_STEP: &str = "workflow";

/// A port as a flow the executor runs: its inputs are the names the column
/// mapping gives (taken as they are, no type conversion), its one step runs
/// the workflow, and the folder of its file is the working directory (its
/// `requirements.txt` builds its environment, as a flow's does).
pub fn prepare_port(port: &Port, inputs: &[String]) -> Prepared {
    use model::yaml::{Pos, Spanned};
    let spanned = |s: &str| Spanned::new(s.to_string(), Pos::START);
    let dir = port.dir();
    let flow = Flow {
        inputs: inputs
            .iter()
            .map(|name| dag::FlowInput {
                name: spanned(name),
                // Not a promptflow type: values reach the workflow unconverted.
                ty: Some(spanned("any")),
                default: None,
                is_chat_input: false,
                is_chat_history: false,
                not_chat_history: false,
            })
            .collect(),
        ..Flow::empty(dir.clone(), port.file.clone())
    };
    let step = Step {
        name: WORKFLOW_STEP.to_string(),
        kind: StepKind::Workflow { file: port.file.clone(), factory: port.factory.clone(), start: port.start.clone() },
        inputs: inputs.iter().map(|name| (name.clone(), Assignment::FlowInput(name.clone()))).collect(),
        activate: None,
        aggregation: false,
        deps: vec![],
    };
    Prepared { flow, working_dir: dir, steps: vec![step], variant: None, snapshot: None }
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("the flow has errors")]
    Invalid(Vec<Diagnostic>),
    #[error("{0}")]
    Variant(String),
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Loads, checks and plans the flow in `dir`. `variant` is `${node.variant_id}`.
pub fn prepare(dir: &Path, variant: Option<&str>) -> Result<Prepared, PrepareError> {
    plan(dir, variant, None)
}

/// The flow planned for `flow test --node NODE`: that node's step alone, so
/// another node's tool (a package tool, a file that does not import) or
/// connection is neither loaded nor bound, as promptflow resolves only the
/// node it runs (executor/flow_executor.py, FlowExecutor.load_and_exec_node).
/// No step when the flow has no such node (running it says so).
pub fn prepare_node(dir: &Path, variant: Option<&str>, node: &str) -> Result<Prepared, PrepareError> {
    plan(dir, variant, Some(node))
}

fn plan(dir: &Path, variant: Option<&str>, only: Option<&str>) -> Result<Prepared, PrepareError> {
    let mut diags = Diagnostics::default();
    let flow = dag::load(dir, &mut diags);
    if let Some(flow) = &flow {
        let root = model::paths::boundary_root(dir);
        model::flow::dag_check::check_flow(flow, &root, &mut diags);
    }
    let flow = match flow {
        Some(f) if !diags.has_errors() => f,
        _ => return Err(PrepareError::Invalid(diags.into_sorted().into_iter().filter(Diagnostic::is_error).collect())),
    };
    let variant = variant
        .map(|v| {
            parse_variant(v).ok_or_else(|| {
                PrepareError::Variant(format!("invalid variant `{v}`; write `${{node_name.variant_id}}`"))
            })
        })
        .transpose()?;
    // MultimediaProcessor.create: `basic` or `openai-vision`, in any case.
    let known = |f: &str| ["basic", "openai-vision"].iter().any(|k| f.eq_ignore_ascii_case(k));
    if let Some(format) = flow.message_format.as_ref().filter(|f| !known(&f.value)) {
        return Err(PrepareError::Variant(format!(
            "{}:{}:{}: Invalid message format '{}'. Supported message formats are ['basic', 'openai-vision'].",
            flow.file.display(),
            format.pos.line,
            format.pos.col,
            format.value
        )));
    }
    let nodes = resolve_variants(&flow, variant.as_ref())?;
    let snapshot = snapshot_if_needed(&flow)?;
    let working_dir = snapshot.as_ref().map_or_else(|| flow.dir.clone(), |s| s.path().to_path_buf());
    let order = topological_order(&nodes);
    let mut steps = Vec::with_capacity(nodes.len());
    for &i in order.iter().filter(|&&i| only.is_none_or(|name| nodes[i].name.value == name)) {
        steps.push(step(nodes[i], &working_dir)?);
    }
    let names: Vec<String> = steps.iter().map(|s| s.name.clone()).collect();
    for step in &mut steps {
        let refs = step.inputs.iter().map(|(_, a)| a).chain(step.activate.iter().map(|(w, _)| w));
        let mut deps: Vec<usize> =
            refs.filter_map(Assignment::node).filter_map(|n| names.iter().position(|x| x == n)).collect();
        deps.sort_unstable();
        deps.dedup();
        step.deps = deps;
    }
    Ok(Prepared { flow, working_dir, steps, variant, snapshot })
}

/// Each `use_variants` node replaced by the selected (or default) variant's node.
fn resolve_variants<'f>(flow: &'f Flow, selected: Option<&(String, String)>) -> Result<Vec<&'f Node>, PrepareError> {
    if let Some((node, id)) = selected {
        let v = flow
            .variants_of(node)
            .filter(|_| flow.node(node).is_some())
            .ok_or_else(|| PrepareError::Variant(format!("Node {node} not found in flow")))?;
        if !v.variants.iter().any(|(vid, _)| vid.value == *id) {
            return Err(PrepareError::Variant(format!("Variant {id} not found for node {node}")));
        }
    }
    flow.nodes
        .iter()
        .map(|node| {
            if !node.use_variants {
                return Ok(node);
            }
            let name = &node.name.value;
            let variants = flow
                .variants_of(name)
                .ok_or_else(|| PrepareError::Variant(format!("No variant for the node {name}.")))?;
            let id =
                match selected {
                    Some((n, id)) if n == name => id.clone(),
                    _ => variants.default_variant_id.as_ref().map(|d| d.value.clone()).ok_or_else(|| {
                        PrepareError::Variant(format!("Default variant id is not specified for {name}."))
                    })?,
                };
            variants
                .variants
                .iter()
                .find(|(vid, _)| vid.value == id)
                .map(|(_, n)| n)
                .ok_or_else(|| PrepareError::Variant(format!("Variant {id} not found for node {name}")))
        })
        .collect()
}

/// promptflow's stable order: repeatedly take the first node (in YAML order)
/// whose dependencies are all taken. Validation already ruled out cycles.
fn topological_order(nodes: &[&Node]) -> Vec<usize> {
    let names: HashSet<&str> = nodes.iter().map(|n| n.name.value.as_str()).collect();
    let mut done: HashSet<&str> = HashSet::new();
    let mut order = Vec::with_capacity(nodes.len());
    let mut remaining: Vec<usize> = (0..nodes.len()).collect();
    while let Some(at) =
        remaining.iter().position(|&i| nodes[i].dependencies().all(|(d, _)| done.contains(d) || !names.contains(d)))
    {
        let i = remaining.remove(at);
        done.insert(&nodes[i].name.value);
        order.push(i);
    }
    order.extend(remaining);
    order
}

fn step(node: &Node, working_dir: &Path) -> Result<Step, PrepareError> {
    let source_path = node
        .source
        .as_ref()
        .filter(|s| s.kind != SourceKind::Package)
        .and_then(|s| s.path.as_ref())
        .map(|p| working_dir.join(&p.value));
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| PrepareError::Io { path: path.to_path_buf(), source })
    };
    let name = node.name.value.clone();
    let package_tool = node
        .source
        .as_ref()
        .filter(|s| s.kind == SourceKind::Package)
        .and_then(|s| s.tool.as_ref())
        .map(|t| t.value.clone());
    refuse_images_in_prompts(node)?;
    let kind = match (node.ty.as_ref().map(|t| t.value), source_path) {
        (Some(NodeType::Python), Some(file)) => StepKind::Python { file },
        (Some(NodeType::Python), None) if let Some(tool) = package_tool => StepKind::Package { tool, template: None },
        (Some(NodeType::CustomLlm), Some(file)) if let Some(tool) = prompt_tool(node) => {
            StepKind::Package { tool, template: Some(read(&file)?) }
        }
        (Some(NodeType::Prompt), Some(file)) => StepKind::Prompt { template: read(&file)? },
        (Some(NodeType::Llm | NodeType::CustomLlm), Some(file)) => StepKind::Llm {
            template: read(&file)?,
            api: node.api.as_ref().map_or_else(|| "chat".to_string(), |a| a.value.clone()),
            connection: node.connection.as_ref().map(|c| c.value.clone()).or_else(|| vision_connection(node)),
            vision: is_vision_tool(node),
        },
        _ => {
            return Err(PrepareError::Variant(format!(
                "node `{name}` uses a package tool, which flow-ci cannot run locally"
            )));
        }
    };
    Ok(Step {
        name,
        kind,
        inputs: node.inputs.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect(),
        activate: node.activate.as_ref().map(|a| (a.when.value.clone(), a.is.clone())),
        aggregation: node.aggregation,
        deps: vec![],
    })
}

/// The package tool of a `custom_llm` node (`source: {type:
/// package_with_prompt, tool: ID}`), which promptflow loads as a package
/// tool given the prompt (`_tool_resolver.py`, `resolve_tool_by_node`).
/// promptflow-tools' gpt-4v tools are left to the LLM step (`llm::vision`).
fn prompt_tool(node: &Node) -> Option<String> {
    let source = node.source.as_ref().filter(|s| s.kind == SourceKind::PackageWithPrompt)?;
    let tool = &source.tool.as_ref()?.value;
    (!VISION_TOOLS.contains(&tool.as_str())).then(|| tool.clone())
}

/// promptflow-tools' gpt-4v chat tools, run natively like `llm` nodes
/// (`llm::vision`: images as content parts).
const VISION_TOOLS: &[&str] =
    &["promptflow.tools.aoai_gpt4v.AzureOpenAI.chat", "promptflow.tools.openai_gpt4v.OpenAI.chat"];

fn is_vision_tool(node: &Node) -> bool {
    let tool = node.source.as_ref().and_then(|s| s.tool.as_ref());
    node.ty.as_ref().is_some_and(|t| t.value == NodeType::CustomLlm)
        && tool.is_some_and(|t| VISION_TOOLS.contains(&t.value.as_str()))
}

/// A gpt-4v tool takes its connection as the `connection` input (the
/// class's `__init__` argument), a literal connection name.
fn vision_connection(node: &Node) -> Option<String> {
    if !is_vision_tool(node) {
        return None;
    }
    let (_, value) = node.inputs.iter().find(|(k, _)| k.value == "connection")?;
    match &value.value {
        Assignment::Literal(Json::String(name)) => Some(name.clone()),
        _ => None,
    }
}

/// promptflow-tools' other vision tool (`llm_vision`, any provider through
/// its own connection types) is not run yet: such a node is refused in one
/// line rather than sent to the model with its images as text.
fn refuse_images_in_prompts(node: &Node) -> Result<(), PrepareError> {
    let tool = node.source.as_ref().and_then(|s| s.tool.as_ref());
    if let Some(tool) = tool.filter(|t| t.value.starts_with("promptflow.tools.llm_vision.")) {
        return Err(PrepareError::Variant(format!(
            "node `{}` uses {}: images in chat prompts (vision tools) are not supported yet",
            node.name.value, tool.value
        )));
    }
    Ok(())
}

/// promptflow copies the flow and its `additional_includes` into one folder
/// before running; flows with includes run from such a snapshot here too.
pub fn snapshot_if_needed(flow: &Flow) -> Result<Option<tempfile::TempDir>, PrepareError> {
    if flow.additional_includes.is_empty() {
        return Ok(None);
    }
    stage(flow).map(Some)
}

/// A copy of the flow folder with its `additional_includes` merged in.
pub fn stage(flow: &Flow) -> Result<tempfile::TempDir, PrepareError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PrepareError::Io { path, source }
    };
    let snapshot = tempfile::Builder::new().prefix("flow-ci-snapshot-").tempdir().map_err(io(&flow.dir))?;
    copy_tree(&flow.dir, snapshot.path()).map_err(io(&flow.dir))?;
    for include in &flow.additional_includes {
        let src = flow.dir.join(&include.value);
        let Some(name) = src.file_name() else { continue };
        let dest = snapshot.path().join(name);
        if src.is_dir() { copy_tree(&src, &dest) } else { std::fs::copy(&src, &dest).map(|_| ()) }.map_err(io(&src))?;
    }
    Ok(snapshot)
}

/// Folders never copied into a snapshot: tool state and caches.
const SKIPPED: &[&str] = &[".promptflow", ".flow-ci", "__pycache__", ".git"];

fn copy_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if SKIPPED.contains(&name.to_string_lossy().as_ref()) {
            continue;
        }
        let target = dest.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
