//! The JSON Schema of `.flow-ci.yaml` (`flow-ci schema`, committed as
//! `schema/flow-ci.schema.json`), generated with schemars from the types
//! below. They describe the file as written, key for key, where [`Config`]
//! holds it as decoded (positions, resolved connections, gates by metric).
//!
//! The schema says what [`decode`](super::decode) says about the shape of the
//! file: the same keys (a test compares them with the decoder's key lists),
//! types, required keys, ranges and allowed values, and the same `null`s
//! (an empty `gates:` is an empty mapping, an empty `run:` is an error).
//! What a schema cannot see stays with `flow-ci validate`: duplicate keys
//! (JSON has none), `min` above `max` in one gate, and everything that looks
//! outside the file (flow folders, run files, workflow files, connections).
//!
//! Editors find the schema through a `# yaml-language-server:
//! $schema=<SCHEMA_URL>` comment or a top-level `$schema:` key: Red Hat's
//! yaml-language-server (VS Code's YAML extension) reads both (its
//! `getDollarSchema` takes `doc.root.properties['$schema']` when it is a
//! string, else the modeline). Draft-07: its README says it "supports JSON
//! Schema 7 and below".
//!
//! [`Config`]: super::Config

// The types below describe the file for the schema; nothing builds them.
#![allow(dead_code)]

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::Value as Json;

/// Where the committed schema is published: the address users put after
/// `$schema=` (raw file on the default branch of the repository).
pub const SCHEMA_URL: &str = "https://raw.githubusercontent.com/flow-ci/flow-ci/main/schema/flow-ci.schema.json";

/// The path of the committed schema in the repository.
pub const SCHEMA_PATH: &str = "schema/flow-ci.schema.json";

/// The schema as pretty-printed JSON with a final newline, the text of
/// [`SCHEMA_PATH`].
pub fn generate_text() -> String {
    let mut text = serde_json::to_string_pretty(&generate()).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// The schema of `.flow-ci.yaml` as a JSON value.
pub fn generate() -> Json {
    let generator = SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<FlowCiYaml>();
    let mut value = schema.to_value();
    strip_option_nulls(&mut value);
    tidy(&mut value);
    if let Json::Object(root) = &mut value {
        // `$schema`, `$id`, `title`, `description` first (serde_json keeps insertion order).
        root.insert("$id".into(), Json::String(SCHEMA_URL.into()));
        let mut rest = std::mem::take(root);
        for key in ["$schema", "$id", "title", "description"] {
            if let Some(v) = rest.remove(key) {
                root.insert(key.into(), v);
            }
        }
        root.extend(rest);
    }
    value
}

/// schemars lets every `Option` field be `null`; the decoder does not (an
/// empty `run:` is "must be a string, found null"). Those `null`s are
/// removed everywhere; the keys the decoder reads as an empty mapping or
/// list when `null` are marked with [`or_null`], a `oneOf` this leaves alone.
/// Also drops the `format` of numbers (`double`, `uint32`): Rust's widths
/// mean nothing to an editor.
fn strip_option_nulls(value: &mut Json) {
    match value {
        Json::Object(map) => {
            if let Some(Json::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            let any_of_null = map.get("anyOf").and_then(Json::as_array).is_some_and(|a| {
                a.len() == 2 && a.iter().any(|s| s.get("type").and_then(Json::as_str) == Some("null"))
            });
            if any_of_null && let Some(Json::Array(mut alternatives)) = map.remove("anyOf") {
                alternatives.retain(|s| s.get("type").and_then(Json::as_str) != Some("null"));
                let only = alternatives.remove(0);
                match only {
                    // draft-07 ignores keywords beside `$ref`: keep the field's description.
                    Json::Object(o) if o.contains_key("$ref") => {
                        map.insert("allOf".into(), Json::Array(vec![Json::Object(o)]));
                    }
                    Json::Object(o) => map.extend(o),
                    other => {
                        map.insert("allOf".into(), Json::Array(vec![other]));
                    }
                }
            }
            if map.get("type").and_then(Json::as_str).is_some_and(|t| t == "number" || t == "integer") {
                map.remove("format");
            }
            for v in map.values_mut() {
                strip_option_nulls(v);
            }
            if map.remove(OR_NULL).is_some() {
                allow_null(map);
            }
        }
        Json::Array(items) => items.iter_mut().for_each(strip_option_nulls),
        _ => {}
    }
}

/// Descriptions as paragraphs (doc comments wrap at 100 columns, an
/// editor's hover wraps by itself), and `allOf: [x]` with nothing beside it
/// as `x`.
fn tidy(value: &mut Json) {
    match value {
        Json::Object(map) => {
            map.values_mut().for_each(tidy);
            if let Some(Json::String(text)) = map.get_mut("description") {
                *text = text.split("\n\n").map(|p| p.replace('\n', " ")).collect::<Vec<_>>().join("\n\n");
            }
            if map.len() == 1
                && let Some(Json::Array(all)) = map.get_mut("allOf")
                && all.len() == 1
            {
                *value = all.remove(0);
            }
        }
        Json::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

/// A field the decoder reads as empty when it is `null` (`gates:` with
/// every gate commented out). Marked here, made so by [`strip_option_nulls`]
/// once schemars' own `null`s are gone: `null` joins the value's `type`
/// (an error inside the value is then reported at its place), else
/// `oneOf` the value and `null`.
fn or_null(schema: &mut Schema) {
    schema.insert(OR_NULL.into(), Json::Bool(true));
}

const OR_NULL: &str = "x-flow-ci-or-null";

fn allow_null(map: &mut serde_json::Map<String, Json>) {
    match map.get_mut("type") {
        Some(Json::String(t)) => {
            let t = std::mem::take(t);
            map.insert("type".into(), serde_json::json!([t, "null"]));
        }
        _ => {
            let mut inner = std::mem::take(map);
            for key in ["title", "description"] {
                if let Some(v) = inner.remove(key) {
                    map.insert(key.into(), v);
                }
            }
            let inner = match inner.remove("allOf") {
                Some(Json::Array(mut all)) if inner.is_empty() && all.len() == 1 => all.remove(0),
                Some(all) => {
                    inner.insert("allOf".into(), all);
                    Json::Object(inner)
                }
                None => Json::Object(inner),
            };
            map.insert("oneOf".into(), Json::Array(vec![inner, serde_json::json!({ "type": "null" })]));
        }
    }
}

/// flow-ci's configuration: which promptflow flows `flow-ci check` runs, with
/// which run files and evaluations, and the gates their metrics must pass.
/// Every key is optional. Paths are relative to this file's folder.
#[derive(JsonSchema)]
#[schemars(title = "flow-ci configuration (.flow-ci.yaml)", deny_unknown_fields)]
struct FlowCiYaml {
    /// The JSON Schema of this file, for editors (flow-ci ignores it), e.g.
    /// https://raw.githubusercontent.com/flow-ci/flow-ci/main/schema/flow-ci.schema.json
    #[serde(rename = "$schema")]
    schema: Option<String>,
    /// Where runs execute [default: local]; `--backend` wins.
    backend: Option<Backend>,
    /// The flows `check` runs when they change, each with its run file,
    /// evaluations and gates.
    #[schemars(transform = or_null)]
    flows: Option<Vec<FlowEntry>>,
    /// What metrics are compared with: `base-branch` (the same runs at the
    /// merge base, cached), `file:<metrics.json>`, or `none`.
    baseline: Option<Baseline>,
    /// The Azure ML workspace (`backend: azureml`, `deploy`, `flow push`);
    /// AZUREML_SUBSCRIPTION_ID / _RESOURCE_GROUP / _WORKSPACE_NAME fill the
    /// keys left out.
    #[schemars(transform = or_null)]
    azureml: Option<AzureMl>,
    /// `flow-ci deploy`: a flow on an Azure ML managed online endpoint.
    #[schemars(transform = or_null)]
    deploy: Option<Deploy>,
    /// Connections for llm nodes, by name. Values may hold `${env:VAR}` or
    /// `${env:VAR:-default}`.
    #[schemars(transform = or_null)]
    connections: Option<BTreeMap<String, ConnectionEntry>>,
    /// Model requests: response cache, concurrency, quotas and prices.
    #[schemars(transform = or_null)]
    llm: Option<Llm>,
}

/// Where runs execute.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Backend {
    /// On this machine, with promptflow's python workers.
    Local,
    /// As Azure ML runs in the workspace of `azureml:`.
    Azureml,
}

/// `base-branch`, `none` or `file:<path to a metrics file>`.
struct Baseline;

impl JsonSchema for Baseline {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Baseline".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "anyOf": [
                { "enum": ["base-branch", "none"] },
                { "pattern": "^file:.", "description": "a metrics file (metrics.json of a run), relative to this file" }
            ],
            "examples": ["base-branch", "none", "file:baseline/metrics.json"]
        })
    }
}

/// One flow (or a glob of flows) `check` runs.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, extend("dependencies" = { "port": ["run"], "parity": ["port"] }))]
struct FlowEntry {
    /// A flow folder (with flow.dag.yaml) or a glob such as `flows/*`.
    path: String,
    /// The run file (`pf run create --file` format) of the flow's batch run.
    run: Option<String>,
    /// Evaluation runs over the batch run; their metrics are gated.
    #[schemars(transform = or_null)]
    evaluations: Option<Vec<Evaluation>>,
    /// Limits on metrics, by metric name; `failed_lines` limits the share of
    /// failed lines.
    #[schemars(transform = or_null)]
    gates: Option<Gates>,
    /// The flow's Microsoft Agent Framework port, run beside it on the same
    /// data (needs `run`).
    port: Option<Port>,
    /// How close the port must stay to the flow (needs `port`).
    parity: Option<Parity>,
}

/// An evaluation run.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Evaluation {
    /// The evaluation's run file; its `run:` is bound to the flow's batch run.
    run: String,
}

/// Gates by metric name.
struct Gates;

impl JsonSchema for Gates {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Gates".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "properties": { "failed_lines": generator.subschema_for::<FailedLinesGate>() },
            "additionalProperties": generator.subschema_for::<Gate>()
        })
    }
}

/// Limits on one metric; set at least one of `min`, `max`, `max_drop`, `max_rise`.
#[derive(JsonSchema)]
#[schemars(
    deny_unknown_fields,
    extend(
        "anyOf" = [{ "required": ["min"] }, { "required": ["max"] }, { "required": ["max_drop"] }, { "required": ["max_rise"] }],
        "dependencies" = {
            "significance": { "anyOf": [{ "required": ["max_drop"] }, { "required": ["max_rise"] }] },
            "per_line": ["significance"]
        }
    )
)]
struct Gate {
    /// The least value the metric may have.
    min: Option<f64>,
    /// The greatest value the metric may have.
    max: Option<f64>,
    /// How far the metric may fall below the baseline: absolute (`0.02`) or
    /// relative (`"5%"`).
    max_drop: Option<Threshold>,
    /// How far the metric may rise above the baseline: absolute or relative.
    max_rise: Option<Threshold>,
    /// Fail a drop (or rise) only when a paired test over the lines finds it
    /// significant at this level (e.g. 0.05); needs `max_drop` or `max_rise`.
    #[schemars(range(min = 0.0, max = 1.0))]
    significance: Option<f64>,
    /// The evaluation output holding each line's score, for `significance`
    /// [default: the output named like the metric, else the only numeric one].
    per_line: Option<String>,
}

/// The share of lines that may fail.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct FailedLinesGate {
    /// The greatest share of failed lines (0–1; 0.01 is 1%).
    #[schemars(range(min = 0.0, max = 1.0))]
    max_ratio: f64,
}

/// A regression limit: absolute (`0.02`) or relative to the baseline (`"5%"`).
struct Threshold;

impl JsonSchema for Threshold {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Threshold".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "number", "minimum": 0 },
                // What `str::parse::<f64>` reads, before a `%`.
                { "type": "string", "pattern": "^\\s*\\+?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?\\s*%\\s*$" }
            ],
            "examples": [0.02, "5%"]
        })
    }
}

/// The flow's port to Microsoft Agent Framework.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Port {
    /// The Python file that defines the workflow, relative to this file.
    #[schemars(regex(pattern = r"\.py$"))]
    workflow: String,
    /// The function that builds the workflow [default: `create_workflow`, else `workflow`].
    factory: Option<Identifier>,
    /// The class of the start executor, when the workflow has several.
    start: Option<Identifier>,
    /// The connection (of `connections:`) the workflow's OpenAI / Azure OpenAI SDK calls go to,
    /// through flow-ci's model proxy: cached, paced and metered like `llm` nodes, the key kept from the workflow.
    connection: Option<String>,
}

/// A Python identifier (ASCII).
struct Identifier;

impl JsonSchema for Identifier {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Identifier".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" })
    }
}

/// Limits on the port against the flow on the same commit; set `agreement`,
/// `metrics` or both.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, extend("minProperties" = 1))]
struct Parity {
    /// The share of lines on which both give the same output.
    agreement: Option<Agreement>,
    /// Metric limits with the flow's value as the baseline (`max_drop` is how
    /// far the port may fall below the flow).
    #[schemars(transform = or_null)]
    metrics: Option<Gates>,
    /// A model's judgement, 1 to 5, of how similar the port's answers are to the flow's
    /// (the migration guide's phase-3 check), cached like llm nodes.
    similarity: Option<Similarity>,
}

/// A judged similarity of the port's outputs to the flow's.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Similarity {
    /// The judge's connection (of `connections:`).
    connection: String,
    /// The Azure OpenAI deployment or OpenAI model that judges.
    deployment: String,
    /// The output compared [default: every output, as JSON].
    output: Option<String>,
    /// The least mean score (the migration guide's parity_check.py uses 3.5).
    #[schemars(range(min = 1.0, max = 5.0))]
    min: f64,
}

/// Line-by-line agreement of one output.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Agreement {
    /// The output compared.
    output: String,
    /// The least share of lines that must agree (0.95 is 95%).
    #[schemars(range(min = 0.0, max = 1.0))]
    min: f64,
    /// How outputs are compared [default: normalized].
    compare: Option<Compare>,
}

/// How two outputs are compared.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Compare {
    /// Equal as JSON values.
    Exact,
    /// Labels: strings trimmed and case-folded, JSON text parsed, numbers by value.
    Normalized,
}

/// A YAML scalar read as text (`1` is "1").
struct Scalar;

impl JsonSchema for Scalar {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Scalar".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// The Azure ML workspace.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, inline)]
struct AzureMl {
    /// The workspace's subscription (a GUID).
    subscription_id: Option<Scalar>,
    /// The workspace's resource group.
    resource_group: Option<Scalar>,
    /// The workspace's name.
    workspace: Option<Scalar>,
    /// `true`: `check` on the default branch pushes the flows it checked to
    /// the workspace's studio (`flow-ci flow push`); a branch name: on that
    /// branch; `false`: never.
    push_flows: Option<PushFlows>,
}

/// `true`, `false` or a branch name.
struct PushFlows;

impl JsonSchema for PushFlows {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PushFlows".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "anyOf": [{ "type": "boolean" }, { "type": "string", "pattern": "\\S" }] })
    }
}

/// `flow-ci deploy`'s defaults (its flags win).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, inline)]
struct Deploy {
    /// The flow folder to deploy.
    flow: Option<Scalar>,
    /// The name the flow is registered under as a model [default: the endpoint's].
    model: Option<Scalar>,
    /// The environment image of the deployment.
    environment: Option<Scalar>,
    /// The managed online endpoint.
    endpoint: Option<Scalar>,
    /// The deployment on the endpoint (e.g. `blue`, `green`).
    deployment: Option<Scalar>,
    /// The VM size, e.g. `Standard_DS3_v2`.
    instance_type: Option<Scalar>,
    /// How many instances.
    instance_count: Option<Scalar>,
    /// The percentage of traffic the new deployment gets once its smoke test passes.
    traffic: Option<Scalar>,
}

/// A connection: defined here, or read from a promptflow connection file.
#[derive(JsonSchema)]
#[serde(untagged)]
enum ConnectionEntry {
    File(ConnectionFile),
    Inline(Connection),
}

/// A promptflow connection YAML file (`pf connection create --file` format).
#[derive(JsonSchema)]
struct ConnectionFile {
    /// The file, relative to this file; its `name` is replaced by the key.
    file: String,
}

/// A connection (promptflow's connection YAML, the name being the key).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Connection {
    /// The connection type.
    #[serde(rename = "type")]
    kind: ConnectionType,
    /// The schema of promptflow's connection file (ignored).
    #[serde(rename = "$schema")]
    schema: Option<Any>,
    /// Ignored: the key is the name.
    name: Option<Any>,
    /// Ignored (promptflow's custom connection module).
    module: Option<Any>,
    /// Ignored unless it is a file name (see the other form).
    file: Option<Any>,
    /// The key (secret); `${env:AZURE_OPENAI_API_KEY}` reads it from the environment.
    api_key: Option<ConnectionValue>,
    /// The endpoint, e.g. `https://NAME.openai.azure.com`.
    api_base: Option<ConnectionValue>,
    /// `azure` for Azure OpenAI.
    api_type: Option<ConnectionValue>,
    /// The API version, e.g. "2024-02-01" (quoted: a bare date is a date in YAML).
    api_version: Option<ConnectionValue>,
    /// `key`, or `meid_token` for Microsoft Entra ID tokens.
    auth_mode: Option<ConnectionValue>,
    /// The Azure resource ID of the Azure OpenAI account.
    resource_id: Option<ConnectionValue>,
    /// The OpenAI organization.
    organization: Option<ConnectionValue>,
    /// The base URL of an OpenAI or OpenAI-compatible endpoint.
    base_url: Option<ConnectionValue>,
    /// An Azure AI Content Safety resource's endpoint.
    endpoint: Option<ConnectionValue>,
    /// A custom connection's plain values.
    #[schemars(transform = or_null)]
    configs: Option<BTreeMap<String, ConnectionValue>>,
    /// A custom connection's secret values.
    #[schemars(transform = or_null)]
    secrets: Option<BTreeMap<String, ConnectionValue>>,
}

/// Any value.
struct Any;

impl JsonSchema for Any {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Any".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        Schema::from(true)
    }
}

/// A connection value: a scalar, `${env:VAR}`/`${env:VAR:-default}` expanded;
/// `null` leaves it unset.
struct ConnectionValue;

impl JsonSchema for ConnectionValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConnectionValue".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "oneOf": [{ "type": ["string", "number", "boolean"] }, { "type": "null" }] })
    }
}

/// The connection types flow-ci runs, spelled as promptflow accepts them:
/// `azure_open_ai`, `AzureOpenAI` and `AzureOpenAIConnection` are one type.
struct ConnectionType;

impl JsonSchema for ConnectionType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConnectionType".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": connection_type_pattern(),
            "examples": ["azure_open_ai", "open_ai", "serverless", "custom", "serp", "azure_content_safety"]
        })
    }
}

/// What `connection::Kind::parse` accepts: one of the names, any case, `_`
/// and `-` anywhere, optionally followed by `connection`.
fn connection_type_pattern() -> String {
    let spelled = |word: &str| -> String {
        word.chars().map(|c| format!("[{}{}][-_]*", c.to_ascii_lowercase(), c.to_ascii_uppercase())).collect()
    };
    let names: Vec<String> = ["azureopenai", "openai", "serverless", "custom", "serp", "azurecontentsafety"]
        .iter()
        .map(|w| spelled(w))
        .collect();
    format!("^[-_]*({})({})?$", names.join("|"), spelled("connection"))
}

/// `llm:`; command-line flags win.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, inline)]
struct Llm {
    /// `false` turns off the response cache (.flow-ci/cache/llm).
    cache: Option<bool>,
    /// The most requests in flight at once to one deployment (the limit adapts below it).
    #[schemars(range(min = 1))]
    concurrency: Option<u32>,
    /// Requests per minute each deployment allows (its quota).
    #[schemars(range(min = 1))]
    rpm: Option<u32>,
    /// Tokens per minute each deployment allows (its quota).
    #[schemars(range(min = 1))]
    tpm: Option<u32>,
    /// Prices per 1,000 tokens in USD, by deployment (Azure) or model (OpenAI),
    /// for the cost in reports.
    #[schemars(transform = or_null)]
    pricing: Option<BTreeMap<String, Price>>,
    /// The connection (of `connections:`) that python code calling the model itself (the openai SDK in
    /// python nodes, Agent Framework agents) reaches through flow-ci's model proxy: cached, paced, metered.
    proxy: Option<String>,
}

/// Prices per 1,000 tokens.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Price {
    /// USD per 1,000 prompt tokens, e.g. 0.00015.
    #[schemars(range(min = 0.0))]
    prompt: f64,
    /// USD per 1,000 completion tokens.
    #[schemars(range(min = 0.0))]
    completion: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The properties of the object at `def` (a definition's name, or a JSON
    /// pointer for the objects written inline).
    fn keys(schema: &Json, def: &str) -> Vec<String> {
        let object = if def.starts_with('/') || def.is_empty() {
            schema.pointer(def).unwrap_or_else(|| panic!("{def} in the schema"))
        } else {
            &schema["definitions"][def]
        };
        let mut keys: Vec<String> = object["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{def} has properties"))
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        keys.sort();
        keys
    }

    /// A key the decoder learns must be described in the schema (and the
    /// other way round): both lists are compared here.
    #[test]
    fn the_schema_has_the_keys_the_decoder_knows() {
        let schema = generate();
        let azureml: Vec<&str> = super::super::AZUREML_KEYS.iter().copied().chain([super::super::PUSH_FLOWS]).collect();
        for (def, known) in [
            ("", super::super::TOP_KEYS),
            ("FlowEntry", super::super::FLOW_KEYS),
            ("Evaluation", super::super::EVALUATION_KEYS),
            ("Gate", super::super::GATE_KEYS),
            ("FailedLinesGate", super::super::FAILED_LINES_KEYS),
            ("Port", super::super::PORT_KEYS),
            ("Parity", super::super::PARITY_KEYS),
            ("Agreement", super::super::AGREEMENT_KEYS),
            ("Similarity", super::super::SIMILARITY_KEYS),
            ("/properties/llm", super::super::LLM_KEYS),
            ("Price", super::super::PRICE_KEYS),
            ("/properties/azureml", &azureml),
            ("/properties/deploy", super::super::DEPLOY_KEYS),
            ("Connection", crate::connection::CONNECTION_KEYS),
        ] {
            assert_eq!(keys(&schema, def), sorted(known), "the keys of {def:?} in the schema and the decoder");
        }
        assert_eq!(schema["$id"], SCHEMA_URL);
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    }

    #[test]
    fn optional_keys_are_not_null_unless_the_decoder_reads_null_as_empty() {
        let schema = generate();
        assert_eq!(schema["definitions"]["FlowEntry"]["properties"]["run"]["type"], "string");
        assert_eq!(schema["definitions"]["Gate"]["properties"]["min"]["type"], "number");
        assert!(schema["definitions"]["FlowEntry"]["properties"]["port"].get("oneOf").is_none());
        let gates = &schema["definitions"]["FlowEntry"]["properties"]["gates"];
        assert_eq!(gates["type"], serde_json::json!(["object", "null"]), "{gates}");
        assert!(gates["description"].is_string(), "{gates}");
        assert!(!generate_text().contains(OR_NULL));
        assert!(!generate_text().contains("\"format\""), "no Rust number widths");
    }
}
