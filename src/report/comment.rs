//! What the PR comment says about where it came from and what it compared,
//! and the chart of metric changes. The job fills a [`CommentContext`] from
//! the CI host and git (the report knows no CI host); the renderers here
//! turn it, and the report, into Markdown.

use std::fmt::Write as _;

use serde::Serialize;

use super::render::{escape_code, escape_md};
use super::{FlowReport, Report};
use crate::gate::fmt;

/// Where a comment came from and how the forge shows it.
#[derive(Clone, Debug, Default)]
pub struct CommentContext {
    /// The CI run that produced the report (its web page).
    pub ci_run: Option<String>,
    /// The commits whose runs were compared.
    pub compared: Option<Compared>,
    /// How metric changes are drawn.
    pub charts: Charts,
}

/// The two sides of the comparison.
#[derive(Clone, Debug)]
pub struct Compared {
    /// The commit the baseline ran at (the merge base).
    pub base: String,
    /// The ref it was found from (`origin/main`).
    pub base_ref: String,
    /// The head commit.
    pub head: String,
    /// The head side is the working tree on top of `head` (no `--head`).
    pub working_tree: bool,
}

/// How a chart is drawn where the comment is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Charts {
    /// A Mermaid `xychart-beta` block: GitHub renders Mermaid in comments
    /// ("Creating diagrams", GitHub Docs).
    Mermaid,
    /// Text bars in a code block: Azure DevOps renders Mermaid in wikis
    /// only (azure-devops-docs `markdown-guidance.md` lists what pull
    /// request comments support, Mermaid not among them; only
    /// `wiki-markdown-guidance.md` has "Add Mermaid diagrams to a wiki page").
    #[default]
    Text,
}

/// One cloud run of a flow and its page in the Azure ML studio.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunLink {
    pub run: String,
    pub url: String,
}

/// `Compared … · [CI run](…)`: the line under the headline.
pub fn provenance(ctx: &CommentContext) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &ctx.compared {
        let head = if c.working_tree {
            format!("the working tree at `{}`", short(&c.head))
        } else {
            format!("head `{}`", short(&c.head))
        };
        parts.push(format!(
            "compared {head} with base `{}` (the merge base with `{}`)",
            short(&c.base),
            escape_code(&c.base_ref)
        ));
    }
    if let Some(url) = ctx.ci_run.as_deref().and_then(safe_url) {
        parts.push(format!("[CI run]({url})"));
    }
    if parts.is_empty() {
        return String::new();
    }
    let mut line = parts.join(" · ");
    if let Some(first) = line.get(..1) {
        line = first.to_uppercase() + &line[1..];
    }
    line + "\n\n"
}

/// A commit as shown: its first 12 hex digits (anything else is not shown).
fn short(sha: &str) -> String {
    sha.chars().take_while(char::is_ascii_hexdigit).take(12).collect()
}

/// The flow cell of the summary table: the flow's path, linked to its batch
/// run in the studio when it ran on Azure ML.
pub fn flow_cell(flow: &FlowReport) -> String {
    match flow.studio_runs.first().and_then(|r| safe_url(&r.url)) {
        Some(url) => format!("[{}]({url})", escape_md(&flow.path)),
        None => escape_md(&flow.path),
    }
}

/// `Azure ML studio: [run](…), [run](…)` in a flow's details.
pub fn studio_line(flow: &FlowReport) -> String {
    let links: Vec<String> = flow
        .studio_runs
        .iter()
        .filter_map(|r| Some(format!("[{}]({})", escape_md(&r.run), safe_url(&r.url)?)))
        .collect();
    if links.is_empty() { String::new() } else { format!("Azure ML studio: {}.\n\n", links.join(", ")) }
}

/// A URL as a Markdown link target: http(s) only, and percent-encoded where
/// a character could end the link or start markup.
pub fn safe_url(url: &str) -> Option<String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            ' ' | '(' | ')' | '[' | ']' | '<' | '>' | '"' | '\'' | '`' | '|' | '\\' | '{' | '}' | '^' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c if c.is_control() || !c.is_ascii() => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// Metrics per chart (the rest are in the table above it).
const CHART_METRICS: usize = 12;
/// Flows charted (the first ones with a baseline).
const CHART_FLOWS: usize = 10;

/// The metric changes against the baseline, one chart per flow that has a
/// baseline; empty when no flow has one.
pub fn chart_section(report: &Report, charts: Charts) -> String {
    let flows: Vec<(&FlowReport, Vec<Change>)> = report
        .flows
        .iter()
        .filter_map(|f| {
            let changes = changes(f);
            (!changes.is_empty()).then_some((f, changes))
        })
        .collect();
    if flows.is_empty() {
        return String::new();
    }
    let mut md = String::from("\nMetric changes against the baseline (head − base):\n");
    for (flow, changes) in flows.iter().take(CHART_FLOWS) {
        md.push('\n');
        match charts {
            Charts::Mermaid => md.push_str(&mermaid(&flow.path, changes)),
            Charts::Text => md.push_str(&text_chart(&flow.path, changes)),
        }
    }
    if flows.len() > CHART_FLOWS {
        let _ =
            writeln!(md, "\n{} more flow(s) changed; their numbers are in the table above.", flows.len() - CHART_FLOWS);
    }
    md
}

/// A metric's name, base value and head value.
type Change = (String, f64, f64);

/// Every numeric metric with a baseline value.
fn changes(flow: &FlowReport) -> Vec<Change> {
    let Some(base) = &flow.baseline else { return vec![] };
    flow.metrics
        .iter()
        .filter_map(|(name, head)| {
            let (h, b) = (head.as_f64()?, base.get(name)?.as_f64()?);
            (h.is_finite() && b.is_finite()).then(|| (name.clone(), b, h))
        })
        .take(CHART_METRICS)
        .collect()
}

/// Text for a Mermaid string: no quote, fence, directive or line break can
/// come from a flow's or metric's name.
fn mermaid_text(text: &str) -> String {
    let cleaned: String =
        text.chars().map(|c| if c.is_alphanumeric() || " _-./:".contains(c) { c } else { '_' }).take(40).collect();
    format!("\"{cleaned}\"")
}

/// A bar per metric: head − base, on an axis symmetric around zero.
fn mermaid(flow: &str, changes: &[Change]) -> String {
    let labels: Vec<String> = changes.iter().map(|(name, _, _)| mermaid_text(name)).collect();
    let deltas: Vec<f64> = changes.iter().map(|(_, b, h)| round(h - b)).collect();
    let reach = deltas.iter().fold(0.0_f64, |m, d| m.max(d.abs()));
    let reach = if reach == 0.0 { 0.01 } else { round(reach * 1.1) };
    let values: Vec<String> = deltas.iter().map(|d| fmt(*d)).collect();
    let mut md = String::from("```mermaid\nxychart-beta\n");
    let _ = writeln!(md, "    title {}", mermaid_text(flow));
    let _ = writeln!(md, "    x-axis [{}]", labels.join(", "));
    let _ = writeln!(md, "    y-axis \"head - base\" {} --> {}", fmt(-reach), fmt(reach));
    let _ = writeln!(md, "    bar [{}]", values.join(", "));
    md.push_str("```\n");
    md
}

/// Width of the longest text bar.
const BAR: usize = 20;

/// The same as text: a row per metric, base → head, the change as the
/// table shows it, and a bar as long as the change (relative to the
/// largest one in the flow).
fn text_chart(flow: &str, changes: &[Change]) -> String {
    let reach = changes.iter().fold(0.0_f64, |m, (_, b, h)| m.max((h - b).abs()));
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control() && *c != '`').take(40).collect() };
    let rows: Vec<[String; 4]> = changes
        .iter()
        .map(|(name, b, h)| {
            let d = round(h - b);
            let cells = if reach == 0.0 { 0 } else { ((d.abs() / reach) * BAR as f64).round().max(1.0) as usize };
            let (change, bar) = if d > 0.0 {
                (format!("▲ +{}", fmt(d)), "█".repeat(cells))
            } else if d < 0.0 {
                (format!("▼ {}", fmt(d)), "█".repeat(cells))
            } else {
                ("0".to_string(), String::new())
            };
            [clean(name), format!("{} → {}", fmt(*b), fmt(*h)), change, bar]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut body = format!("{}\n", clean(flow));
    for [name, values, change, bar] in &rows {
        let line = format!("  {name:<w0$}  {values:<w1$}  {change:<w2$}  {bar}");
        let _ = writeln!(body, "{}", line.trim_end());
    }
    format!("```\n{body}```\n")
}

fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Sets each flow's studio links from its runs' records: `portal_url`
/// gives the page of a run that ran on Azure ML, `None` a local run.
pub fn attach_studio_links(report: &mut Report, portal_url: impl Fn(&str) -> Option<String>) {
    for flow in &mut report.flows {
        let runs = flow.batch_run.iter().chain(&flow.evaluation_runs);
        flow.studio_runs = runs.filter_map(|run| Some(RunLink { run: run.clone(), url: portal_url(run)? })).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_charts_line_up_and_scale_to_the_largest_change() {
        let changes = vec![
            ("accuracy".to_string(), 0.9, 0.8),
            ("none_rate".to_string(), 0.1333, 0.2833),
            ("explained_rate".to_string(), 1.0, 1.0),
        ];
        let chart = text_chart("flows/web`classification", &changes);
        assert_eq!(
            chart,
            "```\nflows/webclassification\n  accuracy        0.9 → 0.8        ▼ -0.1   █████████████\n  none_rate       0.1333 → 0.2833  ▲ +0.15  ████████████████████\n  explained_rate  1 → 1            0\n```\n"
        );
    }

    #[test]
    fn mermaid_charts_draw_each_change_as_a_bar_on_a_symmetric_axis() {
        let changes = vec![("accuracy".to_string(), 0.9, 0.8), ("none_rate".to_string(), 0.1333, 0.2833)];
        assert_eq!(
            mermaid("flows/a", &changes),
            "```mermaid\nxychart-beta\n    title \"flows/a\"\n    x-axis [\"accuracy\", \"none_rate\"]\n    y-axis \"head - base\" -0.165 --> 0.165\n    bar [-0.1, 0.15]\n```\n"
        );
    }

    #[test]
    fn urls_cannot_end_the_link_or_start_markup() {
        assert_eq!(safe_url("javascript:alert(1)"), None);
        assert_eq!(
            safe_url("https://ml.azure.com/x?wsid=/a b)[c](d)<e>").as_deref(),
            Some("https://ml.azure.com/x?wsid=/a%20b%29%5Bc%5D%28d%29%3Ce%3E")
        );
    }

    #[test]
    fn mermaid_text_keeps_quotes_fences_and_directives_out() {
        assert_eq!(mermaid_text("acc\"uracy`%%{init}%%\nx"), "\"acc_uracy____init____x\"");
    }

    #[test]
    fn the_provenance_line_shows_short_commits_and_the_run() {
        let ctx = CommentContext {
            ci_run: Some("https://github.com/o/r/actions/runs/7".into()),
            compared: Some(Compared {
                base: "0123456789abcdef0123".into(),
                base_ref: "origin/main`".into(),
                head: "fedcba9876543210fedc".into(),
                working_tree: false,
            }),
            charts: Charts::Mermaid,
        };
        assert_eq!(
            provenance(&ctx),
            "Compared head `fedcba987654` with base `0123456789ab` (the merge base with `origin/main'`) · [CI run](https://github.com/o/r/actions/runs/7)\n\n"
        );
        assert_eq!(provenance(&CommentContext::default()), "");
    }
}

/// The whole comment as a forge shows it: links, commits, the chart, and
/// the limit.
#[cfg(test)]
mod comment_tests {
    use super::*;
    use crate::report::{ChangedLine, PromptDiff, markdown_with};
    use model::config::Gate;
    use serde_json::{Map, Value as Json, json};

    fn gate(metric: &str, min: f64) -> Gate {
        Gate {
            metric: model::yaml::Spanned::new(metric.to_string(), model::yaml::Pos::START),
            min: Some(min),
            max: None,
            max_drop: Some(model::config::Threshold::Absolute(0.02)),
            max_rise: None,
            max_ratio: None,
            significance: None,
            per_line: None,
        }
    }

    fn metrics(v: Json) -> Map<String, Json> {
        v.as_object().cloned().unwrap_or_default()
    }

    /// A flow with a baseline: its metrics, the baseline's, and the verdict of `gates`.
    fn flow(path: &str, head: Json, base: Json, gates: &[Gate]) -> FlowReport {
        let (head, base) = (metrics(head), metrics(base));
        let evidence = crate::gate::Evidence {
            head_metrics: Some(&head),
            base_metrics: Some(&base),
            head_lines: (0, 60),
            paired: &[],
        };
        FlowReport {
            lines: (0, 60),
            batch_run: Some(format!("check-{}", path.replace('/', "-"))),
            verdict: crate::gate::evaluate(gates, &evidence),
            metrics: head,
            baseline: Some(base),
            ..FlowReport::new(path.into(), vec!["files changed".into()])
        }
    }

    fn report() -> Report {
        let mut cloud = flow(
            "flows/web-classification",
            json!({"accuracy": 0.8, "explained_rate": 1.0}),
            json!({"accuracy": 0.9, "explained_rate": 1.0}),
            &[gate("accuracy", 0.85)],
        );
        cloud.evaluation_runs = vec!["check-flows-web-classification-eval-0".into()];
        let hostile = flow(
            "flows/<img src=x onerror=alert(1)>|`x`",
            json!({"acc\"ur`acy%%{init}%%": 0.95}),
            json!({"acc\"ur`acy%%{init}%%": 0.9}),
            &[],
        );
        let mut report =
            Report { passed: false, baseline: "base-branch".into(), flows: vec![cloud, hostile], skipped: vec![] };
        attach_studio_links(&mut report, |run| {
            run.starts_with("check-flows-web-classification").then(|| {
                format!("https://ml.azure.com/prompts/flow/bulkrun/run/{run}/details?wsid=/subscriptions/0000/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws")
            })
        });
        report
    }

    fn context(charts: Charts) -> CommentContext {
        CommentContext {
            ci_run: Some("https://github.com/octo/flows/actions/runs/1658821493".into()),
            compared: Some(Compared {
                base: "eea63f718c9c0123456789abcdef0123456789ab".into(),
                base_ref: "origin/main".into(),
                head: "3a7b39233d63fedcba9876543210fedcba987654".into(),
                working_tree: false,
            }),
            charts,
        }
    }

    #[test]
    fn the_github_comment_links_the_runs_names_the_commits_and_draws_mermaid() {
        let md = markdown_with(&report(), "<!-- flow-ci:report -->", &context(Charts::Mermaid));
        insta::assert_snapshot!("comment_github", md);
        assert!(md.contains("[CI run](https://github.com/octo/flows/actions/runs/1658821493)"), "{md}");
        assert!(md.contains("| [flows/web-classification](https://ml.azure.com/prompts/flow/bulkrun/run/check-flows-web-classification/details?wsid="), "{md}");
        assert!(md.contains("```mermaid\nxychart-beta\n"), "{md}");
        assert!(!md.contains("<img") && !md.contains("%%{init"), "untrusted text stays inert:\n{md}");
    }

    #[test]
    fn elsewhere_the_chart_is_text() {
        let md = markdown_with(&report(), "<!-- flow-ci:report -->", &context(Charts::Text));
        assert!(!md.contains("mermaid"), "{md}");
        let chart: String =
            md.lines().skip_while(|l| !l.starts_with("Metric changes")).take(9).collect::<Vec<_>>().join("\n");
        insta::assert_snapshot!("comment_text_chart", chart);
    }

    #[test]
    fn a_two_thousand_line_change_stays_under_githubs_limit() {
        let mut report = report();
        let big = &mut report.flows[0];
        big.prompt_diffs = vec![PromptDiff {
            file: "flows/web-classification/classify_prompt.jinja2".into(),
            diff: (0..2000).map(|i| format!("+line {i}: the prompt says something new about the category\n")).collect(),
        }];
        big.changed_lines = (0..2000)
            .map(|i| ChangedLine {
                line_number: i,
                inputs: metrics(json!({"url": format!("https://example.com/{i}"), "text": "x".repeat(200)})),
                base: metrics(json!({"category": "App"})),
                head: metrics(json!({"category": "Academic"})),
            })
            .collect();
        let md = markdown_with(&report, "<!-- flow-ci:report -->", &context(Charts::Mermaid));
        // GitHub's limit is 65,536 characters; bytes are at least as many.
        assert!(md.len() < 65_536, "{}", md.len());
        assert!(md.contains("over GitHub's comment limit"), "the cut is said");
        assert!(md.contains("[CI run]("), "the links stay");
        assert!(md.contains("```mermaid"), "the chart stays when the details go");
        assert_eq!(md.matches("<details>").count(), md.matches("</details>").count());
    }
}
