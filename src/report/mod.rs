//! The report of one `check`: what ran, what the gates said, and what
//! changed against the baseline, as one [`Report`] value that the renderers
//! turn into the console summary, `report.md` (the PR comment body),
//! `junit.xml` and `report.json`. The report knows no forge: publishing is
//! `publish`'s job.

mod comment;
mod render;
pub mod visualize;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::gate::Verdict;

pub use comment::{Charts, CommentContext, Compared, RunLink, attach_studio_links};
pub use render::{MARKDOWN_LIMIT, console, escape_md, escape_xml, junit, markdown, markdown_with};

/// The verdict of one check: every planned flow, and the flows skipped.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub passed: bool,
    pub baseline: String,
    pub flows: Vec<FlowReport>,
    pub skipped: Vec<String>,
}

/// The result of one flow's runs and gates.
#[derive(Clone, Debug, Serialize)]
pub struct FlowReport {
    pub path: String,
    pub reasons: Vec<String>,
    pub batch_run: Option<String>,
    pub evaluation_runs: Vec<String>,
    pub lines: (usize, usize),
    pub metrics: Map<String, Json>,
    pub baseline: Option<Map<String, Json>>,
    pub verdict: Verdict,
    /// Runs that could not run, with why.
    pub errors: Vec<FlowError>,
    /// Why the flow was not run (it needs secrets this build does not have).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
    /// Lines whose outputs differ from the base run's (a sample).
    pub changed_lines: Vec<ChangedLine>,
    /// Unified diffs of the flow's prompt templates against the base.
    pub prompt_diffs: Vec<PromptDiff>,
    /// Model calls of the flow's runs (batch and evaluations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmUsage>,
    /// The same at the baseline, when the baseline ran here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_llm: Option<LlmUsage>,
    #[serde(skip)]
    pub scores: Scores,
    /// The flow's port run beside it on the same data (its gates are in
    /// `verdict`, named `parity: ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parity: Option<ParityReport>,
    /// The studio pages of the flow's runs that ran on Azure ML (batch
    /// run first, then its evaluations).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub studio_runs: Vec<RunLink>,
    /// The base batch run's `output.jsonl` rows, when the baseline ran
    /// (what the run viewer page compares the head's lines with).
    #[serde(skip)]
    pub base_outputs: Vec<Map<String, Json>>,
}

/// The port side of a flow: its runs, metrics and how far it agrees with the flow.
#[derive(Clone, Debug, Serialize)]
pub struct ParityReport {
    /// The port's workflow file, as the config names it.
    pub workflow: String,
    pub batch_run: Option<String>,
    pub evaluation_runs: Vec<String>,
    /// (failed, total) lines of the port's run.
    pub lines: (usize, usize),
    pub metrics: Map<String, Json>,
    pub agreement: Option<AgreementReport>,
    /// The judge's 1–5 scores of the port's answers against the flow's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<SimilarityReport>,
    #[serde(skip)]
    pub scores: Scores,
}

/// A model's 1–5 judgement of how similar the port's outputs are to the flow's.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SimilarityReport {
    /// The output judged; `None`: every output, as JSON.
    pub output: Option<String>,
    /// The mean score of the judged lines (`None`: none could be judged).
    pub mean: Option<f64>,
    /// Lines judged, and lines of the flow's run.
    pub judged: usize,
    pub total: usize,
    /// Lines with their score, lowest first (at most ten).
    pub lowest: Vec<(u64, f64)>,
    /// Why lines could not be judged (a side failed the line, the judge's answer had no score).
    pub unjudged: Vec<String>,
    /// Requests sent to the judge, and answers from the cache.
    pub requests: u64,
    pub cache_hits: u64,
}

/// Line agreement on one output: how many lines, and a sample of those that differ.
#[derive(Clone, Debug, Serialize)]
pub struct AgreementReport {
    pub output: String,
    pub agreed: usize,
    pub total: usize,
    /// Every differing line number (sorted).
    pub differing_lines: Vec<u64>,
    /// The first differing lines with both sides' values.
    pub sample: Vec<DifferingLine>,
}

/// One line on which the port and the flow disagree (`null`: that side failed the line).
#[derive(Clone, Debug, Serialize)]
pub struct DifferingLine {
    pub line_number: u64,
    pub flow: Json,
    pub port: Json,
}

/// Model calls and tokens of a flow's runs, and their estimated cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmUsage {
    pub requests: u64,
    pub cache_hits: u64,
    /// Answers 429 / 503 (retried).
    pub throttled: u64,
    /// The most requests in flight to one deployment while these runs sent.
    #[serde(default)]
    pub peak_in_flight: u64,
    /// Time requests waited for the deployment's limit, summed over requests.
    #[serde(default)]
    pub waited_ms: u64,
    /// Tokens of every answer used, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Tokens by deployment (Azure) or model (OpenAI).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub by_model: std::collections::BTreeMap<String, exec::llm::Tokens>,
    /// Estimated cost from `llm.pricing` (its currency), when it prices every deployment used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Deployments or models used that `llm.pricing` does not price.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced: Vec<String>,
}

impl LlmUsage {
    /// Adds one run's usage.
    pub fn add(&mut self, run: &exec::llm::UsageSummary) {
        self.requests += run.requests;
        self.cache_hits += run.cache_hits;
        self.throttled += run.throttled;
        self.peak_in_flight = self.peak_in_flight.max(run.peak_in_flight);
        self.waited_ms += run.waited_ms;
        self.prompt_tokens += run.prompt_tokens;
        self.completion_tokens += run.completion_tokens;
        self.total_tokens += run.total_tokens;
        for (model, t) in &run.by_model {
            let entry = self.by_model.entry(model.clone()).or_default();
            entry.prompt_tokens += t.prompt_tokens;
            entry.completion_tokens += t.completion_tokens;
        }
    }

    /// Sets the cost from the config's prices.
    pub fn price(&mut self, llm: &model::config::LlmConfig) {
        let tokens = self.by_model.iter().map(|(m, t)| (m.as_str(), t.prompt_tokens, t.completion_tokens));
        match llm.cost(tokens) {
            Some(Ok(cost)) => (self.cost, self.unpriced) = (Some(cost), vec![]),
            Some(Err(unpriced)) => (self.cost, self.unpriced) = (None, unpriced),
            None => (self.cost, self.unpriced) = (None, vec![]),
        }
    }
}

impl Report {
    /// Prices every flow's model calls (head and baseline) with `llm.pricing`.
    pub fn price(&mut self, llm: &model::config::LlmConfig) {
        for flow in &mut self.flows {
            for usage in [&mut flow.llm, &mut flow.baseline_llm].into_iter().flatten() {
                usage.price(llm);
            }
        }
    }
}

impl FlowReport {
    /// A flow before anything ran.
    pub fn new(path: String, reasons: Vec<String>) -> FlowReport {
        FlowReport {
            path,
            reasons,
            batch_run: None,
            evaluation_runs: vec![],
            lines: (0, 0),
            metrics: Map::new(),
            baseline: None,
            verdict: Verdict::default(),
            errors: vec![],
            not_run: None,
            changed_lines: vec![],
            prompt_diffs: vec![],
            llm: None,
            baseline_llm: None,
            scores: Scores::new(),
            parity: None,
            studio_runs: vec![],
            base_outputs: vec![],
        }
    }
}

/// A run of the flow that could not run. In `report.json` it is its message.
#[derive(Clone, Debug)]
pub struct FlowError {
    pub message: String,
    /// It stopped for a missing model key (on a fork's build that is "not
    /// run" rather than failed).
    pub missing_key: bool,
    /// It stopped on the user's input (data, mapping, requirements that do
    /// not install): the check is then exit 2, not 3, as a run would be.
    pub invalid_input: bool,
}

impl std::fmt::Display for FlowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Serialize for FlowError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.message)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PromptDiff {
    pub file: String,
    pub diff: String,
}

/// A line whose output differs from the baseline's.
#[derive(Clone, Debug, Serialize)]
pub struct ChangedLine {
    pub line_number: u64,
    pub inputs: Map<String, Json>,
    pub base: Map<String, Json>,
    pub head: Map<String, Json>,
}

/// Numeric and boolean per-line outputs of the evaluations: output name →
/// line number → score. `significance` pairs head and base lines from these.
pub type Scores = std::collections::BTreeMap<String, std::collections::BTreeMap<u64, f64>>;
