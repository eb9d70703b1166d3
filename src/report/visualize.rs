//! `run visualize`'s page: one self-contained HTML file (inline CSS and
//! script, nothing fetched) showing runs side by side: their metrics, each
//! line's inputs and outputs with a text filter and "failed only" /
//! "differing only", and word diffs of every output that differs from the
//! first run's.
//!
//! Run data is untrusted (model outputs, data files). It enters the page only
//! as JSON inside `<script type="application/json">`, with `<`, `>` and `&`
//! written as `\u003c`, `\u003e`, `\u0026` so no text can close the element,
//! and the page's script puts it into the document with `textContent`, never
//! as markup. Diffs are computed here, so the script only draws them.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::render::escape_xml;

const CSS: &str = include_str!("visualize/viewer.css");
const SCRIPT: &str = include_str!("visualize/viewer.js");

/// Lines whose values are longer than this many bytes are compared as whole
/// values, not word by word (a word diff of two megabytes is unreadable).
const WORD_DIFF_LIMIT: usize = 20_000;

/// One run as the page shows it.
#[derive(Clone, Debug, Default)]
pub struct RunView {
    pub name: String,
    /// What the run is in this comparison ("base", "head"), if anything.
    pub label: Option<String>,
    pub status: String,
    pub flow: String,
    pub created_on: String,
    /// Completed and failed lines of all.
    pub total: usize,
    pub completed: usize,
    pub failed: usize,
    pub metrics: Map<String, Json>,
    /// The run's lines; empty when only its metrics are known.
    pub lines: Vec<LineView>,
}

/// One line of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineView {
    pub line_number: u64,
    /// `Completed`, `Failed`, …
    pub status: String,
    pub inputs: Map<String, Json>,
    pub outputs: Map<String, Json>,
    pub error: Option<String>,
}

/// The page's data: what the script reads from the JSON element.
#[derive(Debug, Serialize, PartialEq)]
struct Page {
    title: String,
    runs: Vec<RunHead>,
    metrics: Vec<MetricRow>,
    lines: Vec<Row>,
}

#[derive(Debug, Serialize, PartialEq)]
struct RunHead {
    name: String,
    label: Option<String>,
    status: String,
    flow: String,
    created_on: String,
    total: usize,
    completed: usize,
    failed: usize,
    /// No per-line results are known (a baseline kept as metrics only).
    metrics_only: bool,
}

#[derive(Debug, Serialize, PartialEq)]
struct MetricRow {
    name: String,
    /// The value in each run, as text; `None` where the run has no such metric.
    values: Vec<Option<String>>,
    /// Each run's value minus the first run's, where both are numbers.
    deltas: Vec<Option<f64>>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Row {
    line: u64,
    inputs: Vec<(String, String)>,
    cells: Vec<Cell>,
    /// Some run failed this line or has no result for it.
    failed: bool,
    /// Some run's outputs differ from the first run's.
    differs: bool,
}

#[derive(Debug, Serialize, PartialEq)]
struct Cell {
    /// `Completed`, `Failed`, … or `Missing` (the run has no such line).
    status: String,
    outputs: Vec<Output>,
    error: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Output {
    key: String,
    text: String,
    /// Against the first run's value of the same key, when they differ:
    /// `[tag, text]` pieces, tag `=` (both), `-` (first run only), `+` (this run only).
    diff: Option<Vec<(char, String)>>,
}

/// The HTML page of `runs` (the first is what the others are compared with).
pub fn html(title: &str, runs: &[RunView]) -> String {
    let page = page(title, runs);
    let data = embed_json(&serde_json::to_string(&page).unwrap_or_else(|_| "{}".into()));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n\
         <noscript>This page draws the runs with JavaScript; the data is in the page source.</noscript>\n\
         <script type=\"application/json\" id=\"flow-ci-data\">{data}</script>\n\
         <script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        escape_xml(title)
    )
}

/// JSON that cannot end its `<script>` element nor open a comment in it:
/// `<`, `>` and `&` become JSON escapes, which `JSON.parse` reads back.
fn embed_json(json: &str) -> String {
    json.replace('&', "\\u0026").replace('<', "\\u003c").replace('>', "\\u003e")
}

fn page(title: &str, runs: &[RunView]) -> Page {
    let heads = runs
        .iter()
        .map(|r| RunHead {
            name: r.name.clone(),
            label: r.label.clone(),
            status: r.status.clone(),
            flow: r.flow.clone(),
            created_on: r.created_on.clone(),
            total: r.total,
            completed: r.completed,
            failed: r.failed,
            metrics_only: r.lines.is_empty(),
        })
        .collect();
    Page { title: title.to_string(), runs: heads, metrics: metric_rows(runs), lines: rows(runs) }
}

fn metric_rows(runs: &[RunView]) -> Vec<MetricRow> {
    let mut names: Vec<&String> = Vec::new();
    for run in runs {
        for name in run.metrics.keys() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let values: Vec<Option<&Json>> = runs.iter().map(|r| r.metrics.get(name)).collect();
            let first = values.first().copied().flatten().and_then(Json::as_f64);
            MetricRow {
                name: name.clone(),
                values: values.iter().map(|v| v.map(text)).collect(),
                deltas: values.iter().map(|v| Some(v.and_then(Json::as_f64)? - first?)).collect(),
            }
        })
        .collect()
}

/// Every line number any run has, in order, with each run's result.
fn rows(runs: &[RunView]) -> Vec<Row> {
    let mut numbers: Vec<u64> = runs.iter().flat_map(|r| r.lines.iter().map(|l| l.line_number)).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let with_lines: Vec<&RunView> = runs.iter().filter(|r| !r.lines.is_empty()).collect();
    numbers
        .into_iter()
        .map(|n| {
            let found: Vec<Option<&LineView>> =
                with_lines.iter().map(|r| r.lines.iter().find(|l| l.line_number == n)).collect();
            let inputs = found
                .iter()
                .flatten()
                .map(|l| &l.inputs)
                .find(|i| !i.is_empty())
                .map(|i| i.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default();
            let first = found.first().copied().flatten().filter(|l| l.status == "Completed");
            let cells: Vec<Cell> =
                found.iter().enumerate().map(|(i, line)| cell(*line, first.filter(|_| i > 0))).collect();
            let failed = cells.iter().any(|c| c.status != "Completed");
            let differs = cells.iter().skip(1).any(|c| c.outputs.iter().any(|o| o.diff.is_some()))
                || cells.iter().skip(1).any(|c| c.status != cells[0].status);
            Row { line: n, inputs, cells, failed, differs }
        })
        .collect()
}

/// A run's result on one line, its outputs diffed against `first`'s.
fn cell(line: Option<&LineView>, first: Option<&LineView>) -> Cell {
    let Some(line) = line else {
        return Cell { status: "Missing".into(), outputs: vec![], error: None };
    };
    let outputs = if line.status == "Completed" {
        line.outputs
            .iter()
            .map(|(key, value)| {
                let text = text(value);
                let diff = first.and_then(|f| {
                    let before = f.outputs.get(key).map(self::text).unwrap_or_default();
                    (f.outputs.get(key) != Some(value)).then(|| word_diff(&before, &text))
                });
                Output { key: key.clone(), text, diff }
            })
            .collect()
    } else {
        vec![]
    };
    Cell { status: line.status.clone(), outputs, error: line.error.clone() }
}

/// A value as people read it: a string as itself, anything else as JSON
/// (Python's NaN and Infinity as their tokens).
fn text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => exec::nonfinite::to_text_indented(other, "  ").unwrap_or_else(|_| other.to_string()),
    }
}

/// `before` → `after` as pieces tagged `=`, `-`, `+`, adjacent pieces of one
/// tag merged. Values too long for a word diff are one `-` and one `+`.
fn word_diff(before: &str, after: &str) -> Vec<(char, String)> {
    if before.len() + after.len() > WORD_DIFF_LIMIT {
        return [('-', before), ('+', after)]
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(tag, t)| (tag, t.to_string()))
            .collect();
    }
    let (old, new) = (tokens(before), tokens(after));
    let diff = similar::TextDiff::configure().timeout(Duration::from_secs(1)).diff_slices(&old, &new);
    let mut pieces: Vec<(char, String)> = Vec::new();
    for change in diff.iter_all_changes() {
        let tag = match change.tag() {
            similar::ChangeTag::Equal => '=',
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
        };
        match pieces.last_mut() {
            Some((last, text)) if *last == tag => text.push_str(change.value()),
            _ => pieces.push((tag, change.value().to_string())),
        }
    }
    pieces
}

/// Words, runs of white space, and each other character alone: `download,`
/// against `download, netflix` keeps `download` and adds `, netflix`.
fn tokens(text: &str) -> Vec<&str> {
    #[derive(PartialEq)]
    enum Kind {
        Word,
        Space,
        Other,
    }
    let kind = |c: char| {
        if c.is_alphanumeric() || c == '_' {
            Kind::Word
        } else if c.is_whitespace() {
            Kind::Space
        } else {
            Kind::Other
        }
    };
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut last: Option<Kind> = None;
    for (i, c) in text.char_indices() {
        let k = kind(c);
        if i > start && (last.as_ref() != Some(&k) || k == Kind::Other) {
            tokens.push(&text[start..i]);
            start = i;
        }
        last = Some(k);
    }
    if start < text.len() {
        tokens.push(&text[start..]);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(n: u64, status: &str, inputs: Json, outputs: Json) -> LineView {
        LineView {
            line_number: n,
            status: status.into(),
            inputs: inputs.as_object().cloned().unwrap_or_default(),
            outputs: outputs.as_object().cloned().unwrap_or_default(),
            error: (status == "Failed").then(|| "ValueError: boom".to_string()),
        }
    }

    fn run(name: &str, lines: Vec<LineView>, metrics: Json) -> RunView {
        RunView {
            name: name.into(),
            status: "Completed".into(),
            total: lines.len(),
            completed: lines.iter().filter(|l| l.status == "Completed").count(),
            failed: lines.iter().filter(|l| l.status == "Failed").count(),
            metrics: metrics.as_object().cloned().unwrap_or_default(),
            lines,
            ..RunView::default()
        }
    }

    /// The JSON the page embeds, read back as the script reads it.
    fn embedded(html: &str) -> Json {
        let start = html.find("id=\"flow-ci-data\">").expect("data element") + "id=\"flow-ci-data\">".len();
        let end = start + html[start..].find("</script>").expect("end of the data element");
        serde_json::from_str(&html[start..end]).expect("the embedded data is JSON")
    }

    #[test]
    fn markup_in_run_data_cannot_leave_the_data_element() {
        let hostile = "</script><script>alert(1)</script><!-- & -->";
        let a = run("a", vec![line(0, "Completed", json!({"q": hostile}), json!({"answer": hostile}))], json!({}));
        let html = html("<b>title</b>", &[a]);
        // The only `</script>` tags are the page's own two.
        assert_eq!(html.matches("</script>").count(), 2, "{html}");
        assert!(!html.contains("<!--"), "{html}");
        assert!(html.contains("<title>&lt;b&gt;title&lt;/b&gt;</title>"), "{html}");
        let data = embedded(&html);
        assert_eq!(data["lines"][0]["cells"][0]["outputs"][0]["text"], hostile);
        assert_eq!(data["lines"][0]["inputs"][0], json!(["q", hostile]));
        assert_eq!(data["title"], "<b>title</b>");
    }

    #[test]
    fn the_page_fetches_nothing() {
        let a = run("a", vec![line(0, "Completed", json!({"url": "https://example.com/x.js"}), json!({}))], json!({}));
        let html = html("t", &[a]);
        for needle in [" src=", "<link", "@import", "url(", "fetch(", "XMLHttpRequest", "innerHTML"] {
            assert!(!html.contains(needle), "{needle} in the page");
        }
        // The data's URL is in the JSON only, escaped as data.
        assert!(html.contains("https://example.com/x.js"));
    }

    #[test]
    fn outputs_that_differ_from_the_first_run_carry_a_word_diff() {
        let base = run(
            "base",
            vec![
                line(0, "Completed", json!({"text": "a"}), json!({"category": "ham", "score": 1})),
                line(1, "Completed", json!({"text": "b"}), json!({"category": "the quick fox", "score": 1})),
                line(2, "Completed", json!({"text": "c"}), json!({"category": "spam", "score": 1})),
            ],
            json!({"accuracy": 0.5}),
        );
        let head = run(
            "head",
            vec![
                line(0, "Completed", json!({"text": "a"}), json!({"category": "ham", "score": 1})),
                line(1, "Completed", json!({"text": "b"}), json!({"category": "the slow fox", "score": 1})),
                line(2, "Failed", json!({"text": "c"}), json!({})),
            ],
            json!({"accuracy": 0.75, "f1": 0.5}),
        );
        let page = page("t", &[base, head]);
        let rows = &page.lines;
        assert_eq!(rows.len(), 3);
        assert!(!rows[0].differs && !rows[0].failed);
        assert!(rows[1].differs && !rows[1].failed);
        let category = &rows[1].cells[1].outputs[0];
        assert_eq!(category.key, "category");
        assert_eq!(
            category.diff,
            Some(vec![('=', "the ".into()), ('-', "quick".into()), ('+', "slow".into()), ('=', " fox".into())])
        );
        assert_eq!(rows[1].cells[1].outputs[1].diff, None, "the same score has no diff");
        assert_eq!(rows[1].cells[0].outputs[0].diff, None, "the first run is what others are compared with");
        assert!(rows[2].differs && rows[2].failed);
        assert_eq!(rows[2].cells[1].status, "Failed");
        assert_eq!(rows[2].cells[1].error.as_deref(), Some("ValueError: boom"));
        assert_eq!(page.metrics[0].name, "accuracy");
        assert_eq!(page.metrics[0].values, vec![Some("0.5".into()), Some("0.75".into())]);
        assert_eq!(page.metrics[0].deltas, vec![Some(0.0), Some(0.25)]);
        assert_eq!(page.metrics[1].values, vec![None, Some("0.5".into())]);
        assert_eq!(page.metrics[1].deltas, vec![None, None]);
    }

    #[test]
    fn a_line_one_run_lacks_is_missing_there_and_counts_as_failed() {
        let a = run("a", vec![line(0, "Completed", json!({}), json!({"x": 1}))], json!({}));
        let b = run("b", vec![line(1, "Completed", json!({}), json!({"x": 1}))], json!({}));
        let page = page("t", &[a, b]);
        assert_eq!(page.lines.len(), 2);
        assert_eq!(page.lines[0].cells[1].status, "Missing");
        assert_eq!(page.lines[1].cells[0].status, "Missing");
        assert!(page.lines.iter().all(|r| r.failed && r.differs));
    }

    #[test]
    fn a_run_known_by_its_metrics_only_has_no_column_of_lines() {
        let head = run("head", vec![line(0, "Completed", json!({}), json!({"x": 1}))], json!({"m": 1}));
        let base = RunView { label: Some("base".into()), ..run("base", vec![], json!({"m": 2})) };
        let page = page("t", &[base, head]);
        assert!(page.runs[0].metrics_only);
        assert_eq!(page.lines[0].cells.len(), 1);
        assert_eq!(page.metrics[0].deltas, vec![Some(0.0), Some(-1.0)]);
    }

    #[test]
    fn non_finite_values_read_as_python_writes_them() {
        let nan = exec::nonfinite::from_f64(f64::NAN);
        let a = run("a", vec![line(0, "Completed", json!({}), json!({"s": nan.clone()}))], json!({"m": nan}));
        let page = page("t", &[a]);
        assert_eq!(page.metrics[0].values, vec![Some("NaN".into())]);
        assert_eq!(page.lines[0].cells[0].outputs[0].text, "NaN");
    }

    #[test]
    fn words_are_compared_apart_from_their_punctuation() {
        assert_eq!(tokens("install, download  ok!?"), vec!["install", ",", " ", "download", "  ", "ok", "!", "?"]);
        assert_eq!(tokens(""), Vec::<&str>::new());
        assert_eq!(
            word_diff("install, download", "install, download, netflix"),
            vec![('=', "install, download".into()), ('+', ", netflix".into())]
        );
        assert_eq!(
            word_diff("{\"a\": 1}", "{\"a\": 2}"),
            vec![('=', "{\"a\": ".into()), ('-', "1".into()), ('+', "2".into()), ('=', "}".into())]
        );
    }

    #[test]
    fn long_values_are_diffed_whole() {
        let before = "a ".repeat(WORD_DIFF_LIMIT);
        let diff = word_diff(&before, "b");
        assert_eq!(diff, vec![('-', before), ('+', "b".into())]);
    }
}
