//! `.flow-ci.yaml`: which flows to check, with which run files, evaluations and
//! gates. Every key is optional; unknown keys are errors with a suggestion.

use std::path::{Path, PathBuf};

use crate::decode::{Decoder, Fields};
use crate::diag::{Code, Diagnostics};
use crate::yaml::{Node as Yaml, Pos, Spanned};

pub mod schema;

pub const CONFIG_FILE: &str = ".flow-ci.yaml";

const TOP_KEYS: &[&str] = &["$schema", "backend", "flows", "baseline", "azureml", "deploy", "connections", "llm"];
const LLM_KEYS: &[&str] = &["cache", "concurrency", "rpm", "tpm", "pricing", "proxy"];
const PRICE_KEYS: &[&str] = &["prompt", "completion"];
const FLOW_KEYS: &[&str] = &["path", "run", "evaluations", "gates", "port", "parity"];
const PORT_KEYS: &[&str] = &["workflow", "factory", "start", "connection"];
const PARITY_KEYS: &[&str] = &["agreement", "metrics", "similarity"];
const SIMILARITY_KEYS: &[&str] = &["connection", "deployment", "output", "min"];
const AGREEMENT_KEYS: &[&str] = &["output", "min", "compare"];
const EVALUATION_KEYS: &[&str] = &["run"];
const GATE_KEYS: &[&str] = &["min", "max", "max_drop", "max_rise", "significance", "per_line"];
const FAILED_LINES_KEYS: &[&str] = &["max_ratio"];
const AZUREML_KEYS: &[&str] = &["subscription_id", "resource_group", "workspace"];
const DEPLOY_KEYS: &[&str] =
    &["flow", "model", "environment", "endpoint", "deployment", "instance_type", "instance_count", "traffic"];

/// The gate name that limits the share of failed lines instead of a metric.
pub const FAILED_LINES: &str = "failed_lines";

#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub backend: Option<Spanned<Backend>>,
    pub flows: Vec<FlowEntry>,
    pub baseline: Option<Spanned<Baseline>>,
    pub azureml: Vec<(Spanned<String>, Spanned<String>)>,
    pub deploy: Vec<(Spanned<String>, Spanned<String>)>,
    /// `azureml: push_flows:`: `check` on that branch pushes the flows it
    /// checked to the workspace's studio (`flow-ci flow push`).
    pub push_flows: Option<Spanned<PushFlows>>,
    /// `connections:` definitions (environment references resolved).
    pub connections: crate::connection::Connections,
    pub llm: LlmConfig,
}

/// Which builds push the flows they check to the studio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushFlows {
    /// `true`: builds of the repository's default branch.
    DefaultBranch,
    /// A branch name: builds of that branch.
    Branch(String),
}

/// The `azureml:` key that is not part of the workspace's name.
const PUSH_FLOWS: &str = "push_flows";

/// Where runs execute (also the `--backend` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Backend {
    Local,
    #[cfg_attr(feature = "clap", value(name = "azureml"))]
    AzureMl,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::AzureMl => "azureml",
        }
    }
}

impl Config {
    /// `--backend` when given, else `backend:`, else local.
    pub fn backend_or(config: Option<&Config>, flag: Option<Backend>) -> Backend {
        flag.or_else(|| config.and_then(|c| c.backend.as_ref()).map(|b| b.value)).unwrap_or(Backend::Local)
    }

    /// The `azureml:` keys (the workspace), as plain strings.
    pub fn azureml_keys(&self) -> Vec<(String, String)> {
        self.azureml.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Baseline {
    BaseBranch,
    File(String),
    None,
}

#[derive(Clone, Debug)]
pub struct FlowEntry {
    /// A flow folder or a glob (`flows/*`), relative to the config's folder.
    pub path: Spanned<String>,
    pub run: Option<Spanned<String>>,
    pub evaluations: Vec<Spanned<String>>,
    pub gates: Vec<Gate>,
    /// The flow's Microsoft Agent Framework port, run beside it.
    pub port: Option<PortEntry>,
    /// How close the port must stay to the flow (needs `port`).
    pub parity: Option<Parity>,
    pub pos: Pos,
}

/// `port:` of a flow: its workflow file (relative to the config's folder)
/// and, optionally, its factory and start class (see `flow::port::Port`).
#[derive(Clone, Debug, PartialEq)]
pub struct PortEntry {
    pub workflow: Spanned<String>,
    pub factory: Option<Spanned<String>>,
    pub start: Option<Spanned<String>>,
    /// The connection the workflow's OpenAI SDK calls go to, through
    /// flow-ci's model proxy (cached, paced, metered, key kept from it).
    pub connection: Option<Spanned<String>>,
}

/// `parity:` of a flow: the port against the flow on the same commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Parity {
    /// Share of lines whose output the two sides agree on.
    pub agreement: Option<Agreement>,
    /// Metric limits, the flow's value as the baseline (`max_drop` is how
    /// far the port may fall below the flow; `min`/`max` bound the port).
    pub metrics: Vec<Gate>,
    /// A model's 1–5 judgement of how similar the port's answers are to the flow's.
    pub similarity: Option<Similarity>,
    pub pos: Pos,
}

/// `similarity:` of `parity`: the migration guide's phase-3 check
/// (azure-ai-evaluation's SimilarityEvaluator, 1–5, mean at least 3.5 in
/// its `parity_check.py`) asked of a configured connection, cached.
#[derive(Clone, Debug, PartialEq)]
pub struct Similarity {
    /// The judge's connection (`connections:`).
    pub connection: Spanned<String>,
    /// The Azure deployment or OpenAI model that judges.
    pub deployment: Spanned<String>,
    /// The output compared; `None`: every output, as JSON.
    pub output: Option<Spanned<String>>,
    /// The least mean score (1–5).
    pub min: f64,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    /// The output compared line by line.
    pub output: Spanned<String>,
    /// The least share of lines that must agree (0–1).
    pub min: f64,
    pub compare: Compare,
    pub pos: Pos,
}

/// How two outputs are compared for `agreement`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// Equal as JSON values.
    Exact,
    /// Labels: strings trimmed and case-folded, JSON text parsed, numbers by value.
    Normalized,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    pub metric: Spanned<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_drop: Option<Threshold>,
    pub max_rise: Option<Threshold>,
    /// Only for `failed_lines`.
    pub max_ratio: Option<f64>,
    pub significance: Option<f64>,
    /// The evaluation output holding each line's score, for `significance`
    /// [default: the output named like the metric, else the only numeric one].
    pub per_line: Option<Spanned<String>>,
}

/// `llm:` settings; command-line flags win.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LlmConfig {
    /// `false` disables the response cache.
    pub cache: Option<bool>,
    /// The most model requests in flight at once to one deployment (the
    /// limit adapts below it).
    pub concurrency: Option<usize>,
    /// Requests per minute each deployment allows (its quota).
    pub rpm: Option<u64>,
    /// Tokens per minute each deployment allows (its quota).
    pub tpm: Option<u64>,
    /// Prices per 1,000 tokens by deployment (Azure) or model (OpenAI).
    pub pricing: Vec<Price>,
    /// The connection that python code calling the model itself (the
    /// `openai` SDK in python nodes, Agent Framework agents) reaches through
    /// flow-ci's model proxy, in every run (a port's `connection` wins).
    pub proxy: Option<Spanned<String>>,
}

/// `llm.pricing.<deployment or model>`: prices per 1,000 tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Price {
    pub name: String,
    pub prompt: f64,
    pub completion: f64,
}

impl LlmConfig {
    /// The estimated cost of `tokens` (deployment or model → prompt and
    /// completion tokens); `None` without prices or when one of them has no
    /// price (the names without one are the `Err`).
    pub fn cost<'a>(&self, tokens: impl IntoIterator<Item = (&'a str, u64, u64)>) -> Option<Result<f64, Vec<String>>> {
        if self.pricing.is_empty() {
            return None;
        }
        let (mut total, mut unpriced) = (0.0, vec![]);
        for (name, prompt, completion) in tokens {
            match self.pricing.iter().find(|p| p.name == name) {
                Some(p) => total += prompt as f64 / 1000.0 * p.prompt + completion as f64 / 1000.0 * p.completion,
                None => unpriced.push(name.to_string()),
            }
        }
        Some(if unpriced.is_empty() { Ok(total) } else { Err(unpriced) })
    }
}

/// A regression limit: absolute (`0.02`) or relative to the baseline (`"5%"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    Absolute(f64),
    Percent(f64),
}

impl Config {
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// A path from the config resolved against the config's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.dir().join(path)
    }
}

/// The config to use: `explicit` (`--config`), else `./.flow-ci.yaml` when
/// there is one.
pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit.map(Path::to_path_buf).or_else(|| Path::new(CONFIG_FILE).is_file().then(|| PathBuf::from(CONFIG_FILE)))
}

/// A config read once by a job, with where it came from and what reading
/// it found (warnings, and errors `validate` reports with the rest).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: Config,
    pub diagnostics: Vec<crate::diag::Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(crate::diag::Diagnostic::is_error)
    }
}

/// Finds the config ([`find`]) and reads it once. `Ok(None)`: there is
/// none; `Err`: it cannot be read or parsed at all (its diagnostics).
pub fn read(explicit: Option<&Path>) -> Result<Option<Loaded>, Vec<crate::diag::Diagnostic>> {
    let Some(path) = find(explicit) else { return Ok(None) };
    let mut diags = Diagnostics::default();
    match load(&path, &mut diags) {
        Some(config) => Ok(Some(Loaded { path, config, diagnostics: diags.into_sorted() })),
        None => Err(diags.into_sorted()),
    }
}

/// [`read`] for the commands that use a config without validating the rest
/// of the repository: any error in it (with every diagnostic) is `Err`.
pub fn read_valid(explicit: Option<&Path>) -> Result<Option<Config>, Vec<crate::diag::Diagnostic>> {
    match read(explicit)? {
        Some(loaded) if loaded.has_errors() => Err(loaded.diagnostics),
        loaded => Ok(loaded.map(|l| l.config)),
    }
}

/// Reads `.flow-ci.yaml`; `None` when it cannot be read or parsed. A job
/// reads it once and passes the value down (the debug event lets tests
/// count the reads).
pub fn load(file: &Path, diags: &mut Diagnostics) -> Option<Config> {
    tracing::debug!(target: "flow_ci::config", "reading {}", file.display());
    let root = crate::flow::read_yaml(file, diags)?;
    decode(file, &root, diags)
}

/// Decodes an already parsed `.flow-ci.yaml` located at `file`.
pub fn decode(file: &Path, root: &Yaml, diags: &mut Diagnostics) -> Option<Config> {
    let mut d = Decoder::new(file, diags);
    let fields = d.fields(root, "`.flow-ci.yaml`", TOP_KEYS)?;
    let mut config = Config {
        file: file.to_path_buf(),
        backend: None,
        flows: vec![],
        baseline: None,
        azureml: vec![],
        deploy: vec![],
        push_flows: None,
        connections: crate::connection::Connections::from_env(),
        llm: LlmConfig::default(),
    };
    // `$schema:` is for editors (config::schema); only its type is checked.
    let _ = fields.get("$schema").and_then(|s| d.string(s, "`$schema`"));
    config.backend = fields.get("backend").and_then(|b| backend(&mut d, b));
    config.baseline = fields.get("baseline").and_then(|b| baseline(&mut d, b));
    if let Some(flows) = fields.get("flows") {
        for item in d.list(flows, "`flows`").unwrap_or_default() {
            config.flows.extend(flow_entry(&mut d, item));
        }
    }
    if let Some(node) = fields.get("azureml") {
        let known: Vec<&str> = AZUREML_KEYS.iter().copied().chain([PUSH_FLOWS]).collect();
        if let Some(entries) = d.map(node, "`azureml`") {
            d.check_keys(entries, "`azureml`", Some(&known));
            config.azureml = entries
                .iter()
                .filter(|(k, _)| AZUREML_KEYS.contains(&k.key_text().as_str()))
                .filter_map(|(k, v)| Some((Spanned::new(k.key_text(), k.pos), d.text(v, "`azureml`")?)))
                .collect();
        }
        config.push_flows = push_flows(&mut d, node);
    }
    if let Some(node) = fields.get("deploy") {
        config.deploy = checked_string_map(&mut d, node, "`deploy`", DEPLOY_KEYS);
    }
    if let Some(node) = fields.get("llm")
        && let Some(llm) = d.fields(node, "`llm`", LLM_KEYS)
    {
        config.llm.cache = llm.get("cache").and_then(|v| d.bool(v, "`cache` of `llm`"));
        config.llm.concurrency = llm.get("concurrency").and_then(|v| positive_int(&mut d, v, "concurrency"));
        config.llm.rpm = llm.get("rpm").and_then(|v| positive_int(&mut d, v, "rpm")).map(|n| n as u64);
        if let Some(node) = llm.get("pricing") {
            config.llm.pricing = pricing(&mut d, node);
        }
        config.llm.tpm = llm.get("tpm").and_then(|v| positive_int(&mut d, v, "tpm")).map(|n| n as u64);
        config.llm.proxy = llm.get("proxy").and_then(|v| d.string(v, "`proxy` of `llm`"));
    }
    if let Some(node) = fields.get("connections") {
        config.connections.add_config(file, node, d.diags);
    }
    Some(config)
}

/// `llm.pricing`: `{<deployment or model>: {prompt: USD, completion: USD}}` per 1,000 tokens.
fn pricing(d: &mut Decoder<'_>, node: &Yaml) -> Vec<Price> {
    let Some(entries) = d.map(node, "`pricing` of `llm`") else { return vec![] };
    d.check_keys(entries, "`pricing` of `llm`", None);
    let mut prices = vec![];
    for (key, value) in entries {
        let name = key.key_text();
        let what = format!("`pricing.{name}` of `llm`");
        let Some(fields) = d.fields(value, &what, PRICE_KEYS) else { continue };
        let mut price = |k: &str| -> Option<f64> {
            let node = d.require(fields, k, &what)?;
            let n = d.number(node, &format!("`{k}` of {what}"))?;
            if n.is_finite() && n >= 0.0 {
                return Some(n);
            }
            d.error(Code::InvalidValue, node.pos, format!("`{k}` of {what} must be a price of at least 0, not {n}"))
                .hint = Some("prices are per 1,000 tokens, e.g. `prompt: 0.00015`".into());
            None
        };
        if let (Some(prompt), Some(completion)) = (price("prompt"), price("completion")) {
            prices.push(Price { name, prompt, completion });
        }
    }
    prices
}

/// A whole number ≥ 1 under `llm:`; anything else is an error at its position.
fn positive_int(d: &mut Decoder<'_>, node: &Yaml, key: &str) -> Option<usize> {
    let n = d.number(node, &format!("`{key}` of `llm`"))?;
    if n >= 1.0 && n.fract() == 0.0 && n <= u32::MAX as f64 {
        return Some(n as usize);
    }
    d.error(Code::InvalidValue, node.pos, format!("`{key}` of `llm` must be a whole number of at least 1, not {n}"))
        .hint = Some(format!("e.g. `{key}: {}`", if key == "tpm" { "30000" } else { "60" }));
    None
}

/// `push_flows: true` (the default branch) or a branch name; `false` is off.
fn push_flows(d: &mut Decoder<'_>, azureml: &Yaml) -> Option<Spanned<PushFlows>> {
    let entries = match &azureml.value {
        crate::yaml::Value::Map(entries) => entries,
        _ => return None,
    };
    let (_, node) = entries.iter().find(|(k, _)| k.key_text() == PUSH_FLOWS)?;
    let value = match &node.value {
        crate::yaml::Value::Bool(true) => PushFlows::DefaultBranch,
        crate::yaml::Value::Bool(false) => return None,
        crate::yaml::Value::Str(branch) if !branch.trim().is_empty() => PushFlows::Branch(branch.trim().to_string()),
        _ => {
            d.error(Code::InvalidValue, node.pos, "`push_flows` of `azureml` must be true, false or a branch name")
                .hint =
                Some("`push_flows: true` pushes the flows `check` runs on the default branch to the studio".into());
            return None;
        }
    };
    Some(Spanned::new(value, node.pos))
}

fn checked_string_map(
    d: &mut Decoder<'_>,
    node: &Yaml,
    what: &str,
    known: &[&str],
) -> Vec<(Spanned<String>, Spanned<String>)> {
    let Some(entries) = d.map(node, what) else {
        return vec![];
    };
    d.check_keys(entries, what, Some(known));
    d.string_map(node, what).into_iter().filter(|(k, _)| known.contains(&k.value.as_str())).collect()
}

fn backend(d: &mut Decoder<'_>, node: &Yaml) -> Option<Spanned<Backend>> {
    let s = d.string(node, "`backend`")?;
    let value = match s.value.as_str() {
        "local" => Backend::Local,
        "azureml" => Backend::AzureMl,
        other => {
            d.error(Code::InvalidValue, s.pos, format!("unknown backend `{other}`")).hint =
                Some("use `local` or `azureml`".into());
            return None;
        }
    };
    Some(Spanned::new(value, s.pos))
}

fn baseline(d: &mut Decoder<'_>, node: &Yaml) -> Option<Spanned<Baseline>> {
    let s = d.string(node, "`baseline`")?;
    let value = match s.value.as_str() {
        "base-branch" => Baseline::BaseBranch,
        "none" => Baseline::None,
        other => match other.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Baseline::File(path.to_string()),
            _ => {
                d.error(Code::InvalidValue, s.pos, format!("unknown baseline `{other}`")).hint =
                    Some("use `base-branch`, `file:<path to metrics file>` or `none`".into());
                return None;
            }
        },
    };
    Some(Spanned::new(value, s.pos))
}

fn flow_entry(d: &mut Decoder<'_>, node: &Yaml) -> Option<FlowEntry> {
    let fields = d.fields(node, "a `flows` entry", FLOW_KEYS)?;
    let path = d.require(fields, "path", "a `flows` entry").and_then(|p| d.string(p, "`path`"))?;
    let run = fields.get("run").and_then(|r| d.string(r, "`run`"));
    let mut evaluations = vec![];
    if let Some(evals) = fields.get("evaluations") {
        for item in d.list(evals, "`evaluations`").unwrap_or_default() {
            let Some(ef) = d.fields(item, "an `evaluations` entry", EVALUATION_KEYS) else {
                continue;
            };
            evaluations.extend(d.require(ef, "run", "an `evaluations` entry").and_then(|r| d.string(r, "`run`")));
        }
    }
    let gates = fields.get("gates").map(|g| gates(d, g)).unwrap_or_default();
    let port = fields.get("port").and_then(|p| port_entry(d, p));
    let parity = fields.get("parity").and_then(|p| parity(d, p));
    if let Some(parity) = &parity
        && port.is_none()
    {
        d.error(Code::Gate, parity.pos, "`parity` compares the flow with its port, but the entry has no `port`").hint =
            Some("add `port: { workflow: path/to/workflow.py }`".into());
    }
    if port.is_some() && run.is_none() {
        d.error(
            Code::MissingKey,
            fields.key_pos("port"),
            "a `port` runs on the flow's data, but the entry has no `run`",
        )
        .hint = Some("add `run:` with the flow's run file; the port gets its data and column mapping".into());
    }
    Some(FlowEntry { path, run, evaluations, gates, port, parity, pos: node.pos })
}

fn port_entry(d: &mut Decoder<'_>, node: &Yaml) -> Option<PortEntry> {
    let fields = d.fields(node, "`port`", PORT_KEYS)?;
    let workflow = d.require(fields, "workflow", "`port`").and_then(|w| d.string(w, "`workflow` of `port`"))?;
    if !workflow.value.ends_with(".py") {
        d.error(
            Code::InvalidValue,
            workflow.pos,
            format!("`workflow` of `port` is `{}`, not a .py file", workflow.value),
        )
        .hint = Some("name the Python file that defines create_workflow() or `workflow`".into());
    }
    let mut identifier = |key: &str| {
        let value = fields.get(key).and_then(|v| d.string(v, &format!("`{key}` of `port`")))?;
        match crate::flow::port::identifier(&value.value) {
            Ok(_) => Some(value),
            Err(e) => {
                d.error(Code::InvalidValue, value.pos, format!("`{key}` of `port`: {e}"));
                None
            }
        }
    };
    let factory = identifier("factory");
    let start = identifier("start");
    let connection = fields.get("connection").and_then(|v| d.string(v, "`connection` of `port`"));
    Some(PortEntry { workflow, factory, start, connection })
}

fn parity(d: &mut Decoder<'_>, node: &Yaml) -> Option<Parity> {
    let fields = d.fields(node, "`parity`", PARITY_KEYS)?;
    let agreement = fields.get("agreement").and_then(|a| agreement(d, a));
    let metrics = fields.get("metrics").map(|g| gates(d, g)).unwrap_or_default();
    let similarity = fields.get("similarity").and_then(|a| similarity(d, a));
    if !fields.has("agreement") && !fields.has("metrics") && !fields.has("similarity") {
        d.error(Code::Gate, node.pos, "`parity` sets no limit").hint = Some(
            "set `agreement: { output: NAME, min: 0.95 }` and/or `metrics: { accuracy: { max_drop: 0.02 } }`".into(),
        );
    }
    Some(Parity { agreement, metrics, similarity, pos: node.pos })
}

fn similarity(d: &mut Decoder<'_>, node: &Yaml) -> Option<Similarity> {
    let what = "`similarity` of `parity`";
    let fields = d.fields(node, what, SIMILARITY_KEYS)?;
    let mut text = |key: &str| d.require(fields, key, what).and_then(|v| d.string(v, &format!("`{key}` of {what}")));
    let (connection, deployment) = (text("connection"), text("deployment"));
    let output = fields.get("output").and_then(|o| d.string(o, &format!("`output` of {what}")));
    let min = d.require(fields, "min", what).and_then(|m| d.number(m, &format!("`min` of {what}")))?;
    if !(1.0..=5.0).contains(&min) {
        d.error(Code::Gate, fields.key_pos("min"), format!("`min` of {what} must be between 1 and 5, found {min}"))
            .hint = Some("it is the least mean score on the 1–5 scale; the migration guide uses 3.5".into());
    }
    Some(Similarity { connection: connection?, deployment: deployment?, output, min, pos: node.pos })
}

fn agreement(d: &mut Decoder<'_>, node: &Yaml) -> Option<Agreement> {
    let what = "`agreement` of `parity`";
    let fields = d.fields(node, what, AGREEMENT_KEYS)?;
    let output = d.require(fields, "output", what).and_then(|o| d.string(o, &format!("`output` of {what}")))?;
    let min = d.require(fields, "min", what).and_then(|m| d.number(m, &format!("`min` of {what}")))?;
    if !(0.0..=1.0).contains(&min) {
        d.error(Code::Gate, fields.key_pos("min"), format!("`min` of {what} must be between 0 and 1, found {min}"))
            .hint = Some("it is the share of lines that must agree: 0.95 is 95%".into());
    }
    let compare = match fields.get("compare").and_then(|c| d.string(c, &format!("`compare` of {what}"))) {
        None => Compare::Normalized,
        Some(c) if c.value == "exact" => Compare::Exact,
        Some(c) if c.value == "normalized" => Compare::Normalized,
        Some(c) => {
            d.error(Code::InvalidValue, c.pos, format!("unknown `compare` `{}`", c.value)).hint =
                Some("use `normalized` (labels: trimmed, case-folded; JSON by value) or `exact`".into());
            Compare::Normalized
        }
    };
    Some(Agreement { output, min, compare, pos: node.pos })
}

fn gates(d: &mut Decoder<'_>, node: &Yaml) -> Vec<Gate> {
    let Some(entries) = d.map(node, "`gates`") else {
        return vec![];
    };
    d.check_keys(entries, "`gates`", None);
    entries.iter().filter_map(|(k, v)| gate(d, Spanned::new(k.key_text(), k.pos), v)).collect()
}

fn gate(d: &mut Decoder<'_>, metric: Spanned<String>, node: &Yaml) -> Option<Gate> {
    let what = format!("gate `{}`", metric.value);
    let known = if metric.value == FAILED_LINES { FAILED_LINES_KEYS } else { GATE_KEYS };
    let fields = d.fields(node, &what, known)?;
    if fields_empty(fields, known) {
        d.error(Code::Gate, fields.pos, format!("{what} sets no limit")).hint =
            Some(format!("set one of: {}", known.join(", ")));
    }
    let num = |d: &mut Decoder<'_>, key: &str| fields.get(key).and_then(|v| d.number(v, &format!("`{key}` of {what}")));
    let gate = Gate {
        min: num(d, "min"),
        max: num(d, "max"),
        max_drop: fields.get("max_drop").and_then(|v| threshold(d, v, &what)),
        max_rise: fields.get("max_rise").and_then(|v| threshold(d, v, &what)),
        max_ratio: num(d, "max_ratio"),
        significance: num(d, "significance"),
        per_line: fields.get("per_line").and_then(|v| d.string(v, &format!("`per_line` of {what}"))),
        metric,
    };
    check_ranges(d, &gate, fields, &what);
    Some(gate)
}

/// Whether a gate sets no limit (`significance` and `per_line` only refine one).
fn fields_empty(fields: Fields<'_>, known: &[&str]) -> bool {
    known.iter().filter(|k| !["significance", "per_line"].contains(k)).all(|k| !fields.has(k))
}

fn check_ranges(d: &mut Decoder<'_>, gate: &Gate, fields: Fields<'_>, what: &str) {
    if let (Some(min), Some(max)) = (gate.min, gate.max)
        && min > max
    {
        d.error(Code::Gate, fields.key_pos("min"), format!("{what} has `min` {min} above `max` {max}"));
    }
    if gate.significance.is_some() && gate.max_drop.is_none() && gate.max_rise.is_none() {
        d.error(
            Code::Gate,
            fields.key_pos("significance"),
            format!("`significance` of {what} needs `max_drop` or `max_rise`"),
        )
        .hint = Some("significance decides whether a regression against the baseline is real or noise".into());
    }
    if gate.per_line.is_some() && gate.significance.is_none() {
        d.error(
            Code::Gate,
            fields.key_pos("per_line"),
            format!("`per_line` of {what} is only used with `significance`"),
        );
    }
    for (key, value) in [("max_ratio", gate.max_ratio), ("significance", gate.significance)] {
        if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
            d.error(Code::Gate, fields.key_pos(key), format!("`{key}` of {what} must be between 0 and 1, found {v}"));
        }
    }
}

/// `0.02` (absolute) or `"5%"` (relative to the baseline value).
fn threshold(d: &mut Decoder<'_>, node: &Yaml, what: &str) -> Option<Threshold> {
    let parsed = match &node.value {
        crate::yaml::Value::Int(i) => Some(Threshold::Absolute(*i as f64)),
        crate::yaml::Value::Float(f) => Some(Threshold::Absolute(*f)),
        crate::yaml::Value::Str(s) => {
            s.trim().strip_suffix('%').and_then(|p| p.trim().parse().ok()).map(Threshold::Percent)
        }
        _ => None,
    };
    match parsed {
        Some(Threshold::Absolute(v) | Threshold::Percent(v)) if v < 0.0 => {
            d.error(Code::Gate, node.pos, format!("a regression limit of {what} cannot be negative"));
            None
        }
        Some(t) => Some(t),
        None => {
            d.error(Code::Gate, node.pos, format!("regression limit of {what} must be a number or a percentage"))
                .hint = Some("write `0.02` for an absolute drop or `\"5%\"` for a relative one".into());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> (Option<Config>, Vec<crate::diag::Diagnostic>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(CONFIG_FILE);
        std::fs::write(&file, text).unwrap();
        let mut diags = Diagnostics::default();
        let config = load(&file, &mut diags);
        (config, diags.into_sorted())
    }

    #[test]
    fn llm_budgets_are_whole_numbers_with_positions() {
        let (config, diags) = load_str("llm:\n  concurrency: 32\n  rpm: 600\n  tpm: 100000\n");
        assert!(diags.is_empty(), "{diags:?}");
        let llm = config.unwrap().llm;
        assert_eq!((llm.concurrency, llm.rpm, llm.tpm), (Some(32), Some(600), Some(100_000)));

        let (config, diags) = load_str("llm:\n  rpm: 0\n  tpm: 1.5\n  concurrency: lots\n");
        let found: Vec<(u32, u32, &str)> = diags.iter().map(|d| (d.pos.line, d.pos.col, d.code.as_str())).collect();
        assert_eq!(found, vec![(2, 8, "invalid-value"), (3, 8, "invalid-value"), (4, 16, "wrong-type")], "{diags:?}");
        assert!(diags[0].message.contains("`rpm` of `llm`") && diags[0].hint.is_some(), "{diags:?}");
        assert_eq!(config.unwrap().llm, LlmConfig::default());

        let (_, diags) = load_str("llm:\n  rpms: 60\n");
        assert_eq!(diags[0].code.as_str(), "unknown-key");
    }

    #[test]
    fn llm_pricing_is_per_thousand_tokens_by_deployment() {
        let (config, diags) = load_str(
            "llm:\n  pricing:\n    gpt-4o-mini: { prompt: 0.15, completion: 0.6 }\n    big: { prompt: 5, completion: 15 }\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let llm = config.unwrap().llm;
        assert_eq!(llm.pricing.len(), 2);
        let cost = llm.cost([("gpt-4o-mini", 2000, 1000), ("big", 1000, 0)]).unwrap().unwrap();
        assert!((cost - (0.3 + 0.6 + 5.0)).abs() < 1e-9, "{cost}");
        assert_eq!(llm.cost([("other", 1, 1)]), Some(Err(vec!["other".to_string()])));
        assert_eq!(LlmConfig::default().cost([("gpt-4o-mini", 1, 1)]), None);

        let (_, diags) = load_str("llm:\n  pricing:\n    gpt: { prompt: -1, completoin: 2 }\n");
        let found: Vec<(u32, &str)> = diags.iter().map(|d| (d.pos.line, d.code.as_str())).collect();
        assert_eq!(found, vec![(3, "missing-key"), (3, "invalid-value"), (3, "unknown-key")], "{diags:?}");
    }

    #[test]
    fn reads_the_design_example() {
        let (config, diags) = load_str(
            "backend: local\nflows:\n  - path: flows/web-classification\n    run: flows/web-classification/run.yml\n    evaluations:\n      - run: flows/eval-accuracy/run.yml\n    gates:\n      accuracy: { min: 0.85, max_drop: 0.02 }\n      f1: { max_drop: '5%' }\n      failed_lines: { max_ratio: 0.01 }\nbaseline: base-branch\nazureml: { subscription_id: s, resource_group: r, workspace: w }\ndeploy: { endpoint: e, deployment: blue, instance_type: Standard_DS3_v2, traffic: 10 }\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let config = config.unwrap();
        assert_eq!(config.backend.unwrap().value, Backend::Local);
        assert_eq!(config.baseline.unwrap().value, Baseline::BaseBranch);
        let entry = &config.flows[0];
        assert_eq!(entry.evaluations[0].value, "flows/eval-accuracy/run.yml");
        assert_eq!(entry.gates[0].min, Some(0.85));
        assert_eq!(entry.gates[0].max_drop, Some(Threshold::Absolute(0.02)));
        assert_eq!(entry.gates[1].max_drop, Some(Threshold::Percent(5.0)));
        assert_eq!(entry.gates[2].max_ratio, Some(0.01));
        assert_eq!(config.deploy.len(), 4);
    }

    #[test]
    fn a_port_and_its_parity_limits() {
        let (config, diags) = load_str(
            "flows:\n  - path: flows/wc\n    run: flows/wc/run.yml\n    port: { workflow: flows/wc-maf/workflow.py, start: Page }\n    parity:\n      agreement: { output: category, min: 0.95 }\n      metrics:\n        accuracy: { max_drop: 0.02 }\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let entry = &config.unwrap().flows[0];
        let port = entry.port.as_ref().unwrap();
        assert_eq!((port.workflow.value.as_str(), port.factory.as_ref()), ("flows/wc-maf/workflow.py", None));
        assert_eq!(port.start.as_ref().unwrap().value, "Page");
        let parity = entry.parity.as_ref().unwrap();
        let agreement = parity.agreement.as_ref().unwrap();
        assert_eq!(
            (agreement.output.value.as_str(), agreement.min, agreement.compare),
            ("category", 0.95, Compare::Normalized)
        );
        assert_eq!(parity.metrics[0].max_drop, Some(Threshold::Absolute(0.02)));

        let (_, diags) = load_str(
            "flows:\n  - path: a\n    parity: {}\n  - path: b\n    port: { workflow: w.txt, factory: 1x }\n    parity:\n      agreement: { output: c, min: 95, compare: fuzzy }\n",
        );
        let found: Vec<_> = diags.iter().map(|d| (d.code.as_str(), d.pos.line)).collect();
        assert_eq!(
            found,
            vec![
                ("invalid-gate", 3),
                ("invalid-gate", 3),
                ("missing-key", 5),
                ("invalid-value", 5),
                ("invalid-value", 5),
                ("invalid-gate", 7),
                ("invalid-value", 7)
            ],
            "{diags:#?}"
        );
    }

    #[test]
    fn push_flows_is_true_false_or_a_branch() {
        let (config, diags) = load_str("azureml: { workspace: w, push_flows: true }\n");
        assert!(diags.is_empty(), "{diags:?}");
        let config = config.unwrap();
        assert_eq!(config.push_flows.as_ref().unwrap().value, PushFlows::DefaultBranch);
        assert_eq!(config.azureml_keys(), vec![("workspace".to_string(), "w".to_string())], "not a workspace key");
        let (config, _) = load_str("azureml:\n  push_flows: release\n");
        assert_eq!(config.unwrap().push_flows.unwrap().value, PushFlows::Branch("release".into()));
        let (config, _) = load_str("azureml:\n  push_flows: false\n");
        assert!(config.unwrap().push_flows.is_none());
        let (_, diags) = load_str("azureml:\n  workspace: w\n  push_flows: [main]\n");
        let found: Vec<_> = diags.iter().map(|d| (d.code.as_str(), d.pos.line, d.pos.col)).collect();
        assert_eq!(found, vec![("invalid-value", 3, 15)]);
        let (_, diags) = load_str("azureml:\n  push_flow: true\n");
        assert!(diags[0].hint.as_deref().unwrap_or_default().contains("push_flows"), "{diags:?}");
    }

    #[test]
    fn typos_and_bad_gates_are_reported() {
        let (_, diags) = load_str(
            "baseline: 'file:'\nflows:\n  - path: a\n    gatse: {}\n    gates:\n      acc: {mni: 1}\n      f1: {min: 2, max: 1}\n      failed_lines: {max_ratio: 2}\n",
        );
        let codes: Vec<_> = diags.iter().map(|d| (d.code.as_str(), d.pos.line)).collect();
        assert_eq!(
            codes,
            vec![
                ("invalid-value", 1),
                ("unknown-key", 4),
                ("invalid-gate", 6),
                ("unknown-key", 6),
                ("invalid-gate", 7),
                ("invalid-gate", 8)
            ]
        );
        assert_eq!(diags[1].hint.as_deref(), Some("did you mean `gates`?"));
    }

    #[test]
    fn significance_refines_a_regression_limit() {
        let (config, diags) = load_str(
            "flows:\n  - path: a\n    gates:\n      acc: {max_drop: 0.01, significance: 0.05, per_line: correct}\n      f1: {min: 0.5, significance: 0.05}\n      f2: {max_drop: 0.1, per_line: x}\n",
        );
        let found: Vec<_> = diags.iter().map(|d| (d.pos.line, d.message.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (5, "`significance` of gate `f1` needs `max_drop` or `max_rise`"),
                (6, "`per_line` of gate `f2` is only used with `significance`")
            ]
        );
        assert_eq!(config.unwrap().flows[0].gates[0].per_line.as_ref().unwrap().value, "correct");
    }
}
