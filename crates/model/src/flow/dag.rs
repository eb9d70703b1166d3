//! The `flow.dag.yaml` model, read with positions.
//!
//! Key sets mirror what promptflow's `Flow.deserialize` / `Node.deserialize`
//! accept, so a file promptflow runs is never rejected for a key it knows.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::reference::Assignment;
use crate::decode::{Decoder, Fields};
use crate::diag::{Code, Diagnostics, did_you_mean};
use crate::yaml::{Node as Yaml, Pos, Spanned};

pub const FLOW_FILE: &str = "flow.dag.yaml";

const FLOW_KEYS: &[&str] = &[
    "$schema",
    "inputs",
    "outputs",
    "nodes",
    "node_variants",
    "environment",
    "environment_variables",
    "additional_includes",
    "language",
    "message_format",
    "name",
    "id",
    "display_name",
    "description",
    "tags",
    "type",
    "sample",
    // promptflow's assistant flows carry `version: 2`; pf warns "Unknown
    // field." and runs them (FlowSchema, unknown=RAISE turned into warnings).
    "version",
];
const INPUT_KEYS: &[&str] = &["type", "default", "description", "enum", "is_chat_input", "is_chat_history"];
const OUTPUT_KEYS: &[&str] = &["type", "reference", "description", "evaluation_only", "is_chat_output"];
const SOURCE_KEYS: &[&str] = &["type", "path", "tool"];
const ACTIVATE_KEYS: &[&str] = &["when", "is"];

/// Types a flow input may declare (promptflow `ValueType`, matched case-insensitively).
pub const VALUE_TYPES: &[&str] = &[
    "int",
    "double",
    "bool",
    "string",
    "list",
    "object",
    "image",
    "file_path",
    "secret",
    "prompt_template",
    "assistant_definition",
];

#[derive(Clone, Debug)]
pub struct Flow {
    /// The folder holding `flow.dag.yaml` (the working directory when it runs).
    pub dir: PathBuf,
    pub file: PathBuf,
    pub inputs: Vec<FlowInput>,
    pub outputs: Vec<FlowOutput>,
    pub nodes: Vec<Node>,
    pub node_variants: Vec<NodeVariants>,
    pub additional_includes: Vec<Spanned<String>>,
    pub environment_variables: Vec<(Spanned<String>, Spanned<String>)>,
    /// `environment.python_requirements_txt`, relative to `dir`.
    pub python_requirements_txt: Option<Spanned<String>>,
    /// `message_format`: `basic` (the default) or `openai-vision`, how image
    /// values are written in inputs and outputs.
    pub message_format: Option<Spanned<String>>,
}

impl Flow {
    /// A flow that declares nothing yet: what a `flow.dag.yaml` is read
    /// into, and what a port is planned from.
    pub fn empty(dir: PathBuf, file: PathBuf) -> Flow {
        Flow {
            dir,
            file,
            inputs: vec![],
            outputs: vec![],
            nodes: vec![],
            node_variants: vec![],
            additional_includes: vec![],
            environment_variables: vec![],
            python_requirements_txt: None,
            message_format: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FlowInput {
    pub name: Spanned<String>,
    /// Lower-cased; `None` when missing or invalid (already reported).
    pub ty: Option<Spanned<String>>,
    pub default: Option<Json>,
    pub is_chat_input: bool,
    pub is_chat_history: bool,
    /// `is_chat_history: false`: pf's flow test never takes an input named
    /// `chat_history` for the chat history then (_utils/flow_utils.py).
    pub not_chat_history: bool,
}

#[derive(Clone, Debug)]
pub struct FlowOutput {
    pub name: Spanned<String>,
    pub reference: Option<Spanned<Assignment>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    Python,
    Prompt,
    Llm,
    CustomLlm,
}

impl NodeType {
    const NAMES: &[&str] = &["python", "prompt", "llm", "custom_llm"];

    fn parse(s: &str) -> Option<NodeType> {
        Some(match s {
            "python" => NodeType::Python,
            "prompt" => NodeType::Prompt,
            "llm" => NodeType::Llm,
            "custom_llm" => NodeType::CustomLlm,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Code,
    Package,
    PackageWithPrompt,
}

#[derive(Clone, Debug)]
pub struct Source {
    pub kind: SourceKind,
    pub path: Option<Spanned<String>>,
    pub tool: Option<Spanned<String>>,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct Activate {
    pub when: Spanned<Assignment>,
    pub is: Json,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: Spanned<String>,
    pub ty: Option<Spanned<NodeType>>,
    pub source: Option<Source>,
    pub inputs: Vec<(Spanned<String>, Spanned<Assignment>)>,
    pub activate: Option<Activate>,
    pub aggregation: bool,
    pub use_variants: bool,
    pub connection: Option<Spanned<String>>,
    pub api: Option<Spanned<String>>,
    pub pos: Pos,
}

impl Node {
    /// Names of nodes this node waits for: node references in inputs and `activate.when`.
    pub fn dependencies(&self) -> impl Iterator<Item = (&str, Pos)> {
        let inputs = self.inputs.iter().filter_map(|(_, a)| Some((a.node()?, a.pos)));
        let when = self.activate.iter().filter_map(|a| Some((a.when.node()?, a.when.pos)));
        inputs.chain(when)
    }
}

#[derive(Clone, Debug)]
pub struct NodeVariants {
    pub node: Spanned<String>,
    pub default_variant_id: Option<Spanned<String>>,
    pub variants: Vec<(Spanned<String>, Node)>,
}

impl Flow {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name.value == name)
    }

    pub fn input(&self, name: &str) -> Option<&FlowInput> {
        self.inputs.iter().find(|i| i.name.value == name)
    }

    pub fn output(&self, name: &str) -> Option<&FlowOutput> {
        self.outputs.iter().find(|o| o.name.value == name)
    }

    pub fn variants_of(&self, node: &str) -> Option<&NodeVariants> {
        self.node_variants.iter().find(|v| v.node.value == node)
    }

    /// Declared inputs `given` has no value for and that have no default
    /// (chat history defaults to []): a line cannot run without them.
    pub fn missing_inputs(&self, given: &serde_json::Map<String, Json>) -> Vec<&str> {
        self.inputs
            .iter()
            .filter(|i| {
                !given.contains_key(&i.name.value) && i.default.as_ref().is_none_or(Json::is_null) && !i.is_chat_history
            })
            .map(|i| i.name.value.as_str())
            .collect()
    }

    /// Every concrete node definition: plain nodes plus each variant's node.
    pub fn all_node_definitions(&self) -> impl Iterator<Item = &Node> {
        let plain = self.nodes.iter().filter(|n| !n.use_variants);
        plain.chain(self.node_variants.iter().flat_map(|v| v.variants.iter().map(|(_, n)| n)))
    }
}

/// Reads `flow.dag.yaml` in `dir`. Problems go to `diags`; `None` when the file
/// cannot be read or is not YAML at all.
pub fn load(dir: &Path, diags: &mut Diagnostics) -> Option<Flow> {
    let file = dir.join(FLOW_FILE);
    let root = crate::flow::read_yaml(&file, diags)?;
    decode(dir, &root, diags)
}

/// Decodes an already parsed `flow.dag.yaml` of the flow in `dir`.
pub fn decode(dir: &Path, root: &Yaml, diags: &mut Diagnostics) -> Option<Flow> {
    let file = dir.join(FLOW_FILE);
    let mut d = Decoder::new(&file, diags);
    let fields = d.fields(root, "the flow", FLOW_KEYS)?;
    let mut flow = Flow::empty(dir.to_path_buf(), file.clone());
    if let Some(inputs) = fields.get("inputs") {
        flow.inputs = named_entries(&mut d, inputs, "`inputs`", decode_input);
    }
    if let Some(outputs) = fields.get("outputs") {
        flow.outputs = named_entries(&mut d, outputs, "`outputs`", decode_output);
    }
    match fields.get("nodes") {
        Some(nodes) => {
            for item in d.list(nodes, "`nodes`").unwrap_or_default() {
                flow.nodes.extend(decode_node(&mut d, item, None));
            }
        }
        None => {
            d.error(Code::MissingKey, fields.pos, "the flow has no `nodes`").hint =
                Some("add a `nodes:` list; a flow needs at least one node".into());
        }
    }
    if let Some(variants) = fields.get("node_variants") {
        flow.node_variants = named_entries(&mut d, variants, "`node_variants`", decode_variants);
    }
    if let Some(includes) = fields.get("additional_includes") {
        flow.additional_includes = d.string_list(includes, "`additional_includes` entries");
    }
    if let Some(env) = fields.get("environment_variables") {
        flow.environment_variables = environment_variables(&mut d, env);
    }
    if let Some(env) = fields.get("environment") {
        flow.python_requirements_txt = python_requirements(&mut d, env);
    }
    if let Some(format) = fields.get("message_format") {
        flow.message_format = d.string(format, "`message_format`");
    }
    Some(flow)
}

/// `environment_variables` as the values promptflow sets: lists and mappings
/// as `json.dumps` writes them, anything else as `str(v)`
/// (`promptflow/contracts/flow.py`, `get_environment_variables_with_overrides`).
fn environment_variables(d: &mut Decoder<'_>, env: &Yaml) -> Vec<(Spanned<String>, Spanned<String>)> {
    let Some(entries) = d.map(env, "`environment_variables`") else {
        return vec![];
    };
    d.check_keys(entries, "`environment_variables`", None);
    let text = |v: &Json| match v {
        Json::Array(_) | Json::Object(_) => crate::value::python_json_dumps(v),
        other => crate::value::python_str(other),
    };
    entries.iter().map(|(k, v)| (Spanned::new(k.key_text(), k.pos), Spanned::new(text(&v.to_json()), v.pos))).collect()
}

/// `environment.python_requirements_txt`. The other keys (`image`, ...) are
/// promptflow's deployment settings, which it does not check either.
fn python_requirements(d: &mut Decoder<'_>, env: &Yaml) -> Option<Spanned<String>> {
    let entries = d.map(env, "`environment`")?;
    let (_, value) = entries.iter().find(|(k, _)| k.as_str() == Some("python_requirements_txt"))?;
    d.string(value, "`environment.python_requirements_txt`")
}

/// Decodes `name: {...}` mappings (inputs, outputs, node_variants) in order.
fn named_entries<T>(
    d: &mut Decoder<'_>,
    node: &Yaml,
    what: &str,
    mut decode: impl FnMut(&mut Decoder<'_>, Spanned<String>, &Yaml) -> Option<T>,
) -> Vec<T> {
    let Some(entries) = d.map(node, what) else {
        return vec![];
    };
    d.check_keys(entries, what, None);
    entries.iter().filter_map(|(k, v)| decode(d, Spanned::new(k.key_text(), k.pos), v)).collect()
}

fn decode_input(d: &mut Decoder<'_>, name: Spanned<String>, node: &Yaml) -> Option<FlowInput> {
    let what = format!("input `{}`", name.value);
    let fields = d.fields(node, &what, INPUT_KEYS)?;
    let ty = match d.require(fields, "type", &what) {
        Some(t) => d.string(t, &format!("the type of {what}")).and_then(|t| {
            let lower = t.value.to_ascii_lowercase();
            if VALUE_TYPES.contains(&lower.as_str()) {
                Some(Spanned::new(lower, t.pos))
            } else {
                let hint = did_you_mean(&lower, VALUE_TYPES.iter().copied()).map_or_else(
                    || format!("use one of: {}", VALUE_TYPES.join(", ")),
                    |s| format!("did you mean `{s}`?"),
                );
                d.error(Code::InvalidValue, t.pos, format!("unknown type `{}` for {what}", t.value)).hint = Some(hint);
                None
            }
        }),
        None => None,
    };
    let flag =
        |d: &mut Decoder<'_>, key: &str| fields.get(key).and_then(|v| d.bool(v, &format!("`{key}`"))).unwrap_or(false);
    Some(FlowInput {
        ty,
        default: fields.get("default").map(Yaml::to_json),
        is_chat_input: flag(d, "is_chat_input"),
        is_chat_history: flag(d, "is_chat_history"),
        not_chat_history: fields.get("is_chat_history").map(Yaml::to_json) == Some(Json::Bool(false)),
        name,
    })
}

fn decode_output(d: &mut Decoder<'_>, name: Spanned<String>, node: &Yaml) -> Option<FlowOutput> {
    let what = format!("output `{}`", name.value);
    let fields = d.fields(node, &what, OUTPUT_KEYS)?;
    let reference = match fields.get("reference") {
        Some(r) if !is_empty_value(r) => Some(assignment(r)),
        _ => {
            d.error(Code::MissingKey, fields.pos, format!("{what} has no `reference`")).hint =
                Some("point it at a node or input, e.g. `reference: ${my_node.output}`".into());
            None
        }
    };
    Some(FlowOutput { name, reference })
}

fn is_empty_value(node: &Yaml) -> bool {
    matches!(&node.value, crate::yaml::Value::Null) || node.as_str() == Some("")
}

fn assignment(node: &Yaml) -> Spanned<Assignment> {
    Spanned::new(Assignment::parse(&node.to_json()), node.pos)
}

/// Decodes one node. `variant_of` names the node when decoding a variant, whose
/// node has no `name` key.
fn decode_node(d: &mut Decoder<'_>, item: &Yaml, variant_of: Option<&Spanned<String>>) -> Option<Node> {
    let entries = d.map(item, "a node")?;
    let fields_known = unknown_node_key_hints(d, entries);
    let fields = d.fields(item, "a node", fields_known)?;
    let name = match variant_of {
        Some(name) => name.clone(),
        None => d.require(fields, "name", "a node").and_then(|n| d.text(n, "a node's `name`"))?,
    };
    let what = format!("node `{}`", name.value);
    let use_variants = flag(d, fields, "use_variants");
    let ty = if use_variants {
        fields.get("type").and_then(|t| node_type(d, t, &what))
    } else {
        d.require(fields, "type", &what).and_then(|t| node_type(d, t, &what))
    };
    let source = fields.get("source").and_then(|s| decode_source(d, s, &what));
    if source.is_none() && !use_variants && !fields.has("source") && ty.is_some() {
        d.error(Code::MissingKey, fields.pos, format!("{what} does not have `source` defined")).hint =
            Some("add `source: {type: code, path: <file>}`".into());
    }
    let mut inputs = vec![];
    if let Some(node_inputs) = fields.get("inputs")
        && let Some(entries) = d.map(node_inputs, &format!("the inputs of {what}"))
    {
        d.check_keys(entries, &format!("the inputs of {what}"), None);
        inputs = entries.iter().map(|(k, v)| (Spanned::new(k.key_text(), k.pos), assignment(v))).collect();
    }
    let activate = fields.get("activate").and_then(|a| decode_activate(d, a, &what));
    let aggregation = flag(d, fields, "aggregation") || flag(d, fields, "reduce");
    let connection = fields.get("connection").and_then(|c| d.text(c, "`connection`"));
    let api = fields.get("api").and_then(|a| d.string(a, "`api`"));
    if let Some(api) = &api
        && !["chat", "completion"].contains(&api.value.as_str())
    {
        d.error(Code::InvalidValue, api.pos, format!("unknown api `{}` for {what}", api.value)).hint =
            Some("use `chat` or `completion`".into());
    }
    Some(Node { name, ty, source, inputs, activate, aggregation, use_variants, connection, api, pos: item.pos })
}

/// `deployment_name` at node level is a common slip: promptflow reads it from `inputs`.
fn unknown_node_key_hints(d: &mut Decoder<'_>, entries: &[(Yaml, Yaml)]) -> &'static [&'static str] {
    for (k, _) in entries {
        if k.as_str() == Some("deployment_name") {
            d.error(Code::UnknownKey, k.pos, "unknown key `deployment_name` in a node").hint =
                Some("promptflow reads `deployment_name` from the node's `inputs:`; move it there".into());
        }
    }
    NODE_KEYS
}

/// Keys of a node, plus `deployment_name`, which gets its own, better message above.
const NODE_KEYS: &[&str] = &[
    "name",
    "type",
    "source",
    "inputs",
    "tool",
    "reduce",
    "activate",
    "use_variants",
    "comment",
    "api",
    "provider",
    "connection",
    "module",
    "aggregation",
    "enable_cache",
    "deployment_name",
];

fn flag(d: &mut Decoder<'_>, fields: Fields<'_>, key: &str) -> bool {
    fields.get(key).and_then(|v| d.bool(v, &format!("`{key}`"))).unwrap_or(false)
}

fn node_type(d: &mut Decoder<'_>, node: &Yaml, what: &str) -> Option<Spanned<NodeType>> {
    let s = d.string(node, &format!("the type of {what}"))?;
    match NodeType::parse(&s.value) {
        Some(t) => Some(Spanned::new(t, s.pos)),
        None if s.value == "csharp" => {
            d.error(Code::InvalidValue, s.pos, format!("{what} is a `csharp` node, which flow-ci does not support"))
                .hint =
                Some("flow-ci runs python flows only; test C# flows with promptflow's own `pf flow test`".into());
            None
        }
        None => {
            let hint = did_you_mean(&s.value, NodeType::NAMES.iter().copied()).map_or_else(
                || format!("use one of: {}", NodeType::NAMES.join(", ")),
                |c| format!("did you mean `{c}`?"),
            );
            d.error(Code::InvalidValue, s.pos, format!("unknown node type `{}` for {what}", s.value)).hint = Some(hint);
            None
        }
    }
}

fn decode_source(d: &mut Decoder<'_>, node: &Yaml, what: &str) -> Option<Source> {
    let fields = d.fields(node, &format!("the source of {what}"), SOURCE_KEYS)?;
    let kind = match fields.get("type").and_then(|t| d.string(t, "`source.type`")) {
        None => SourceKind::Code,
        Some(t) => match t.value.as_str() {
            "code" => SourceKind::Code,
            "package" => SourceKind::Package,
            "package_with_prompt" => SourceKind::PackageWithPrompt,
            other => {
                d.error(Code::InvalidValue, t.pos, format!("unknown source type `{other}` for {what}")).hint =
                    Some("use `code`, `package` or `package_with_prompt`".into());
                return None;
            }
        },
    };
    let path = fields.get("path").and_then(|p| d.string(p, "`source.path`"));
    let tool = fields.get("tool").and_then(|t| d.string(t, "`source.tool`"));
    if kind == SourceKind::Code && path.is_none() {
        d.error(Code::MissingKey, fields.pos, format!("the source of {what} has no `path`"));
    }
    if kind != SourceKind::Code && tool.is_none() {
        d.error(Code::MissingKey, fields.pos, format!("the package source of {what} has no `tool`"));
    }
    Some(Source { kind, path, tool, pos: node.pos })
}

fn decode_activate(d: &mut Decoder<'_>, node: &Yaml, what: &str) -> Option<Activate> {
    let ctx = format!("`activate` of {what}");
    let fields = d.fields(node, &ctx, ACTIVATE_KEYS)?;
    let when = d.require(fields, "when", &ctx).map(assignment);
    let is = d.require(fields, "is", &ctx).map(Yaml::to_json);
    Some(Activate { when: when?, is: is? })
}

fn decode_variants(d: &mut Decoder<'_>, node_name: Spanned<String>, node: &Yaml) -> Option<NodeVariants> {
    let what = format!("the variants of `{}`", node_name.value);
    let fields = d.fields(node, &what, &["default_variant_id", "variants"])?;
    let default_variant_id = fields.get("default_variant_id").and_then(|v| d.text(v, "`default_variant_id`"));
    let mut variants = vec![];
    if let Some(list) = fields.get("variants") {
        let decoded = named_entries(d, list, &format!("`variants` of `{}`", node_name.value), |d, id, v| {
            let vf = d.fields(v, &format!("variant `{}`", id.value), &["node", "description"])?;
            let node = d.require(vf, "node", &format!("variant `{}`", id.value))?;
            Some((id, decode_node(d, node, Some(&node_name))?))
        });
        variants = decoded;
    }
    Some(NodeVariants { node: node_name, default_variant_id, variants })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> (Option<Flow>, Vec<crate::diag::Diagnostic>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FLOW_FILE), text).unwrap();
        let mut diags = Diagnostics::default();
        let flow = load(dir.path(), &mut diags);
        (flow, diags.into_sorted())
    }

    #[test]
    fn reads_a_typical_flow() {
        let (flow, diags) = load_str(
            "inputs:\n  url:\n    type: string\n    default: https://x\noutputs:\n  category:\n    type: string\n    reference: ${classify.output.category}\nnodes:\n- name: fetch\n  type: python\n  source: {type: code, path: fetch.py}\n  inputs:\n    url: ${inputs.url}\n- name: classify\n  type: llm\n  source: {type: code, path: classify.jinja2}\n  connection: aoai\n  api: chat\n  inputs:\n    deployment_name: gpt-4o\n    text: ${fetch.output}\n  activate:\n    when: ${inputs.url}\n    is: x\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let flow = flow.unwrap();
        assert_eq!(flow.inputs[0].default, Some(serde_json::json!("https://x")));
        assert_eq!(flow.nodes.len(), 2);
        let deps: Vec<_> = flow.nodes[1].dependencies().map(|(n, _)| n.to_string()).collect();
        assert_eq!(deps, vec!["fetch"]);
        assert_eq!(flow.nodes[1].name.pos, Pos::new(15, 9));
    }

    #[test]
    fn is_chat_history_false_is_kept_apart_from_no_flag() {
        let (flow, diags) = load_str(
            "inputs:\n  chat_history:\n    type: list\n    is_chat_history: false\n  other:\n    type: list\nnodes: []\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let flags: Vec<(bool, bool)> =
            flow.unwrap().inputs.iter().map(|i| (i.is_chat_history, i.not_chat_history)).collect();
        assert_eq!(flags, [(false, true), (false, false)]);
    }

    #[test]
    fn environment_variables_are_the_strings_promptflow_sets() {
        let (flow, diags) = load_str(
            "environment_variables:\n  n: 2\n  s: spawn\n  l: [1, 2]\n  m: {a: 1, b: \"2\"}\n  t: true\n  f: 1.5\n  r: ${conn.api_key}\nnodes: []\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let env: Vec<(String, String)> =
            flow.unwrap().environment_variables.into_iter().map(|(k, v)| (k.value, v.value)).collect();
        let expected = [
            ("n", "2"),
            ("s", "spawn"),
            ("l", "[1, 2]"),
            ("m", "{\"a\": 1, \"b\": \"2\"}"),
            ("t", "True"),
            ("f", "1.5"),
            ("r", "${conn.api_key}"),
        ];
        assert_eq!(env, expected.map(|(k, v)| (k.to_string(), v.to_string())));
    }

    #[test]
    fn csharp_nodes_are_not_supported_and_version_is_known() {
        let (_, diags) =
            load_str("version: 2\nnodes:\n- name: a\n  type: csharp\n  source: {type: package, tool: T}\n");
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].message.contains("`csharp` node, which flow-ci does not support"), "{diags:?}");
    }

    #[test]
    fn node_level_deployment_name_gets_a_specific_hint() {
        let (_, diags) =
            load_str("nodes:\n- name: a\n  type: llm\n  source: {path: a.jinja2}\n  deployment_name: gpt\n");
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].hint.as_deref().unwrap().contains("inputs"));
    }

    #[test]
    fn variants_are_decoded_with_the_node_name() {
        let (flow, diags) = load_str(
            "nodes:\n- name: summarize\n  use_variants: true\nnode_variants:\n  summarize:\n    default_variant_id: variant_0\n    variants:\n      variant_0:\n        node:\n          type: prompt\n          source: {type: code, path: a.jinja2}\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let flow = flow.unwrap();
        assert_eq!(flow.node_variants[0].variants[0].1.name.value, "summarize");
        assert_eq!(flow.all_node_definitions().count(), 1);
    }
}
