//! The text of the `.flow-ci.yaml` that `init` writes: every found flow
//! with its batch run and evaluations, gates proposed from what one run
//! measured, and comments that say where each number came from. Pure: the
//! facts come in, the text goes out.

use serde_json::{Map, Value as Json};

/// What `init` knows about one flow it found.
pub struct FlowFacts<'a> {
    /// The flow folder, relative to the config.
    pub path: &'a str,
    /// Its batch run file.
    pub run: String,
    /// Its evaluation run files, each with why it was taken as one.
    pub evaluations: Vec<(String, String)>,
    pub measured: Measured<'a>,
}

/// What running the flow once gave.
pub enum Measured<'a> {
    /// `--no-run`: nothing was run.
    NotRun,
    /// A run could not give results (the first reason).
    Failed(String),
    Ran {
        /// The evaluations' metrics.
        metrics: &'a Map<String, Json>,
        /// (failed, total) lines of the batch run.
        lines: (usize, usize),
    },
}

/// Everything the file says besides the flows.
pub struct Extras<'a> {
    /// Flow folders with no batch run file (listed, commented out).
    pub without_run: &'a [String],
    /// Top-level sections of the config being replaced, kept verbatim
    /// (`connections:`, `llm:`, `azureml:`, `deploy:`).
    pub kept: &'a [String],
}

/// The line above each kept section (not kept again by the next `init`).
const KEPT_NOTE: &str = "# Kept from the previous .flow-ci.yaml:";

/// How far past the measured value `min` (`max`) is proposed, for scores in 0–1.
const MARGIN: f64 = 0.05;
/// The change for the worse against the base branch a 0–1 score may take.
const MAX_CHANGE: f64 = 0.02;

const HEADER: &str = "\
# flow-ci configuration, written by `flow-ci init`. Every key is optional.
# `flow-ci validate` checks this file; `flow-ci check --all` runs every flow
# below and applies its gates; in a pull request, `flow-ci check --base REF`
# runs the flows the change touches and compares them with the base branch.
";

const MEASURED_NOTE: &str = "\
#
# The gates were proposed from one run of each flow on this commit: for a
# score between 0 and 1, `min` a little below the value measured and
# `max_drop` the regression allowed against the base branch (`max` and
# `max_rise` when its name says lower is better: an error or `none` rate, a
# latency, a cost); `failed_lines` the share of lines that failed. Check the
# direction of each, and tighten them as the flows improve.
";

const NOT_RUN_NOTE: &str = "\
#
# Nothing was run (`--no-run`), so the only gate is that no line fails. Add a
# gate per metric your evaluations log, e.g. `accuracy: { min: 0.8, max_drop: 0.02 }`,
# or run `flow-ci init --force` to have them proposed from a run.
";

/// The whole file.
pub fn render(flows: &[FlowFacts<'_>], extras: &Extras<'_>) -> String {
    let mut out = String::from(HEADER);
    let ran = flows.iter().any(|f| !matches!(f.measured, Measured::NotRun));
    out.push_str(if ran { MEASURED_NOTE } else { NOT_RUN_NOTE });
    out.push_str("backend: local          # local | azureml (runs on your Azure ML workspace, see `azureml:`)\n");
    out.push_str("baseline: base-branch   # compare with the same runs at the merge base | file:PATH | none\n");
    out.push_str("flows:\n");
    for flow in flows {
        flow_entry(&mut out, flow);
    }
    if !extras.without_run.is_empty() {
        out.push_str("# Flow folders without a batch run file: add a run.yml beside flow.dag.yaml\n");
        out.push_str("# (`flow: .`, `data:`, `column_mapping:`), then list them like the ones above.\n");
        for path in extras.without_run {
            out.push_str(&format!("#  - path: {}\n", yaml_scalar(path)));
        }
    }
    for block in extras.kept {
        out.push_str(KEPT_NOTE);
        out.push('\n');
        out.push_str(block.trim_end_matches('\n'));
        out.push('\n');
    }
    out
}

fn flow_entry(out: &mut String, flow: &FlowFacts<'_>) {
    out.push_str(&format!("  - path: {}\n", yaml_scalar(flow.path)));
    out.push_str(&format!("    run: {}\n", yaml_scalar(&flow.run)));
    if !flow.evaluations.is_empty() {
        out.push_str("    evaluations:\n");
        let width = flow.evaluations.iter().map(|(p, _)| yaml_scalar(p).len()).max().unwrap_or(0);
        for (path, why) in &flow.evaluations {
            let path = yaml_scalar(path);
            out.push_str(&format!("      - run: {path:<width$}   # {}\n", one_line(why)));
        }
    }
    let mut gates: Vec<(String, String)> = Vec::new();
    match &flow.measured {
        Measured::NotRun => gates.push(("failed_lines: { max_ratio: 0.0 }".into(), "no line may fail".into())),
        Measured::Failed(why) => {
            out.push_str(&format!("    # not measured: {}\n", one_line(why)));
            gates.push(("failed_lines: { max_ratio: 0.0 }".into(), "no line may fail".into()));
        }
        Measured::Ran { metrics, lines } => {
            for (name, value) in metrics.iter() {
                if name == model::config::FAILED_LINES {
                    continue; // the name of the built-in gate, not a metric's
                }
                if let Some(v) = value.as_f64().filter(|v| v.is_finite()) {
                    gates.push(propose(name, v));
                }
            }
            gates.push(failed_lines(*lines));
        }
    }
    out.push_str("    gates:\n");
    let width = gates.iter().map(|(g, _)| g.len()).max().unwrap_or(0);
    for (gate, note) in gates {
        out.push_str(&format!("      {gate:<width$}   # {note}\n"));
    }
}

/// Words in a metric's name that say lower is better (an error or
/// refusal rate, a latency, a cost).
const LOWER_IS_BETTER: &[&str] = &[
    "error", "fail", "none", "miss", "wrong", "latency", "loss", "cost", "time", "duration", "toxic", "halluc", "refus",
];

/// The gate proposed for a metric measured at `value`. A score in 0–1 gets
/// a bound a little past its value and a regression limit: `min` and
/// `max_drop`, or `max` and `max_rise` when its name says lower is better.
/// Other numbers are proposed commented out: their direction and scale are
/// not known.
fn propose(name: &str, value: f64) -> (String, String) {
    let key = yaml_scalar(name);
    let lower = name.to_ascii_lowercase();
    let lower_is_better = LOWER_IS_BETTER.iter().any(|w| lower.contains(w));
    let note = format!("measured {}", round4(value));
    match ((0.0..=1.0).contains(&value), lower_is_better) {
        (true, false) => {
            let min = floor_hundredths(value - MARGIN).max(0.0);
            (format!("{key}: {{ min: {min}, max_drop: {MAX_CHANGE} }}"), note)
        }
        (true, true) => {
            let max = ceil_hundredths(value + MARGIN).min(1.0);
            (format!("{key}: {{ max: {max}, max_rise: {MAX_CHANGE} }}"), format!("{note}; lower is better"))
        }
        (false, false) => (format!("# {key}: {{ max_drop: \"5%\" }}"), format!("{note}; max_rise if lower is better")),
        (false, true) => (format!("# {key}: {{ max_rise: \"5%\" }}"), format!("{note}; lower is better")),
    }
}

/// `failed_lines` at the share of lines measured failing, rounded up.
fn failed_lines((failed, total): (usize, usize)) -> (String, String) {
    let note = format!("measured {failed} of {total} line(s) failed");
    if failed == 0 || total == 0 {
        return ("failed_lines: { max_ratio: 0.0 }".into(), note);
    }
    let ratio = ceil_hundredths(failed as f64 / total as f64).min(1.0);
    (format!("failed_lines: {{ max_ratio: {ratio} }}"), note)
}

/// Rounded down to 0.01 (a value a hair under a hundredth from float
/// arithmetic counts as on it).
fn floor_hundredths(v: f64) -> f64 {
    ((v * 100.0) + 1e-9).floor() / 100.0
}

fn ceil_hundredths(v: f64) -> f64 {
    ((v * 100.0) - 1e-9).ceil() / 100.0
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// A path or name as a YAML scalar: plain when that reads back the same,
/// else double-quoted (a JSON string is a valid YAML double-quoted scalar).
fn yaml_scalar(text: &str) -> String {
    let chars_ok = text.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    // A leading letter keeps numbers (`1.0`), and `-` or `.` starts, plain.
    let start_ok = text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        || text.starts_with("./")
        || text.starts_with("../");
    let keyword = matches!(text.to_ascii_lowercase().as_str(), "true" | "false" | "null" | "yes" | "no" | "on" | "off");
    if chars_ok && start_ok && !keyword { text.to_string() } else { serde_json::to_string(text).unwrap_or_default() }
}

/// Text for a comment: one line, not too long.
fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 160 { format!("{}…", line.chars().take(160).collect::<String>()) } else { line }
}

/// The top-level sections of an existing config that `init` does not
/// derive (connections, LLM settings, the Azure ML workspace, deployment),
/// each as written with the comment lines just above it. `None` when the
/// text is not a YAML mapping.
pub fn kept_sections(text: &str) -> Option<Vec<String>> {
    const KEPT: &[&str] = &["connections", "llm", "azureml", "deploy"];
    let root = model::yaml::parse(text.strip_prefix('\u{feff}').unwrap_or(text)).ok()??;
    let entries = root.as_map()?;
    let lines: Vec<&str> = text.lines().collect();
    // Where each top-level key's section starts (0-based), with its comments.
    let starts: Vec<(String, usize)> = entries
        .iter()
        .filter(|(k, _)| k.pos.col == 1)
        .map(|(k, _)| {
            let mut start = (k.pos.line as usize).saturating_sub(1).min(lines.len());
            while start > 0 && lines[start - 1].starts_with('#') {
                start -= 1;
            }
            (k.key_text(), start)
        })
        .collect();
    if starts.len() != entries.len() {
        return None; // flow style (`{...}`): no sections to cut
    }
    let kept = starts
        .iter()
        .enumerate()
        .filter(|(_, (key, _))| KEPT.contains(&key.as_str()))
        .map(|(i, (_, start))| {
            let end = starts.get(i + 1).map_or(lines.len(), |(_, s)| *s);
            let section: Vec<&str> = lines[*start..end].iter().copied().filter(|l| *l != KEPT_NOTE).collect();
            section.join("\n")
        })
        .collect();
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_get_a_min_a_little_below_and_a_max_drop() {
        assert_eq!(propose("accuracy", 0.9).0, "accuracy: { min: 0.85, max_drop: 0.02 }");
        assert_eq!(propose("accuracy", 0.9167).0, "accuracy: { min: 0.86, max_drop: 0.02 }");
        assert_eq!(propose("rate", 1.0).0, "rate: { min: 0.95, max_drop: 0.02 }");
        assert_eq!(propose("rate", 0.01).0, "rate: { min: 0, max_drop: 0.02 }");
    }

    #[test]
    fn rates_named_for_what_goes_wrong_get_a_max_a_little_above() {
        assert_eq!(propose("none_rate", 0.1333).0, "none_rate: { max: 0.19, max_rise: 0.02 }");
        assert_eq!(propose("error_rate", 0.0).0, "error_rate: { max: 0.05, max_rise: 0.02 }");
        assert_eq!(propose("failure_rate", 0.99).0, "failure_rate: { max: 1, max_rise: 0.02 }");
    }

    #[test]
    fn other_numbers_are_proposed_commented_out() {
        let (gate, note) = propose("latency_ms", 412.5);
        assert_eq!(gate, "# latency_ms: { max_rise: \"5%\" }");
        assert!(note.contains("412.5"), "{note}");
        assert_eq!(propose("signals_per_line", 2.2333).0, "# signals_per_line: { max_drop: \"5%\" }");
    }

    #[test]
    fn failed_lines_is_the_measured_share_rounded_up() {
        assert_eq!(failed_lines((3, 12)).0, "failed_lines: { max_ratio: 0.25 }");
        assert_eq!(failed_lines((1, 3)).0, "failed_lines: { max_ratio: 0.34 }");
        assert_eq!(failed_lines((0, 60)).0, "failed_lines: { max_ratio: 0.0 }");
        assert_eq!(failed_lines((7, 7)).0, "failed_lines: { max_ratio: 1 }");
    }

    #[test]
    fn names_that_would_not_read_back_are_quoted() {
        assert_eq!(yaml_scalar("flows/web-classification"), "flows/web-classification");
        assert_eq!(yaml_scalar("exact match"), "\"exact match\"");
        assert_eq!(yaml_scalar("a: b"), "\"a: b\"");
        assert_eq!(yaml_scalar("true"), "\"true\"");
        assert_eq!(yaml_scalar("#x"), "\"#x\"");
    }

    #[test]
    fn kept_sections_carry_their_comments_and_stop_at_the_next_key() {
        let text = "backend: local\nflows:\n  - path: a\n# the endpoint\ndeploy:\n  endpoint: e\n\n# keys\nconnections:\n  aoai:\n    type: azure_open_ai\nbaseline: none\n";
        let kept = kept_sections(text).unwrap();
        assert_eq!(
            kept,
            vec![
                "# the endpoint\ndeploy:\n  endpoint: e\n".to_string(),
                "# keys\nconnections:\n  aoai:\n    type: azure_open_ai".to_string()
            ]
        );
    }

    #[test]
    fn a_rendered_config_reads_back_without_diagnostics() {
        let metrics: Map<String, Json> =
            serde_json::from_str(r#"{"accuracy": 0.9, "exact match": 0.5, "count": 12, "label": "x"}"#).unwrap();
        let flows = [FlowFacts {
            path: "flows/a",
            run: "flows/a/run.yml".into(),
            evaluations: vec![("flows/e/run.yml".into(), "it reads the same data".into())],
            measured: Measured::Ran { metrics: &metrics, lines: (1, 10) },
        }];
        let text = render(&flows, &Extras { without_run: &["flows/b".into()], kept: &[] });
        let root = model::yaml::parse(&text).unwrap().unwrap();
        let mut diags = model::diag::Diagnostics::default();
        let config = model::config::decode(std::path::Path::new(".flow-ci.yaml"), &root, &mut diags).unwrap();
        assert!(diags.into_sorted().is_empty(), "{text}");
        let gates: Vec<&str> = config.flows[0].gates.iter().map(|g| g.metric.value.as_str()).collect();
        assert_eq!(gates, ["accuracy", "exact match", "failed_lines"], "{text}");
        assert_eq!(config.flows[0].gates[2].max_ratio, Some(0.1));
    }
}
