//! Renderers of one [`Report`]: a console table, `report.md` (the PR comment
//! body) and `junit.xml` (`report.json` is its serde form). Text from runs
//! and PR data is untrusted: Markdown and XML escape it so it cannot inject
//! markup.

use std::fmt::Write as _;

use comfy_table::{Table, presets};

use super::comment::{self, CommentContext};
use super::{FlowReport, LlmUsage, ParityReport, Report, SimilarityReport};
use crate::gate::{Check, GateResult, fmt};

/// GitHub rejects comments over 65,536 characters; leave room for the marker.
pub const MARKDOWN_LIMIT: usize = 60_000;

/// The console summary: one table per flow.
pub fn console(report: &Report) -> String {
    let mut out = String::new();
    for flow in &report.flows {
        let _ = writeln!(out, "{} ({})", flow.path, flow.reasons.join(", "));
        for e in &flow.errors {
            let _ = writeln!(out, "  error: {e}");
        }
        if let Some(why) = &flow.not_run {
            let _ = writeln!(out, "  not run: {why}");
        }
        let mut t = Table::new();
        t.load_style(presets::UTF8_FULL_CONDENSED);
        t.set_header(vec!["metric", "base", "head", "Δ", "gate", "verdict"]);
        for r in &flow.verdict.results {
            t.add_row(vec![
                r.metric.clone(),
                r.base.map(fmt).unwrap_or_else(|| "–".into()),
                r.head.map(fmt).unwrap_or_else(|| "–".into()),
                delta(r).unwrap_or_default(),
                r.limit.clone(),
                if r.passed { "pass".into() } else { format!("FAIL: {}", r.explanation) },
            ]);
        }
        if let Some(llm) = &flow.llm {
            let _ = writeln!(out, "  {}", llm_line(llm, flow.baseline_llm.as_ref()));
        }
        if flow.verdict.results.is_empty() {
            let _ = writeln!(out, "  no gates configured; metrics: {}", metric_list(flow));
        } else {
            let _ = writeln!(out, "{t}");
        }
    }
    for path in &report.skipped {
        let _ = writeln!(out, "{path}: skipped (not changed)");
    }
    let failed = report.flows.iter().filter(|f| !f.verdict.passed() || !f.errors.is_empty()).count();
    let _ = writeln!(
        out,
        "{}: {} flow(s) checked, {} failed, {} skipped (baseline: {})",
        if report.passed { "PASSED" } else { "FAILED" },
        report.flows.len(),
        failed,
        report.skipped.len(),
        report.baseline
    );
    out
}

/// `llm: 12 request(s), 0 cache hit(s), 0 answered 429; tokens: 1,234 (base 1,200); est. cost: 0.0012 (base 0.0011)`
fn llm_line(llm: &LlmUsage, base: Option<&LlmUsage>) -> String {
    let mut line = format!(
        "llm: {} request(s), {} cache hit(s), up to {} in flight, {} answered 429/503, {:.1}s waited for the limit; tokens: {}",
        llm.requests,
        llm.cache_hits,
        llm.peak_in_flight,
        llm.throttled,
        llm.waited_ms as f64 / 1000.0,
        thousands(llm.total_tokens)
    );
    if let Some(base) = base {
        let _ = write!(line, " (base {})", thousands(base.total_tokens));
    }
    if let Some(cost) = llm.cost {
        let _ = write!(line, "; est. cost: {}", money(cost));
        if let Some(base) = base.and_then(|b| b.cost) {
            let _ = write!(line, " (base {})", money(base));
        }
    } else if !llm.unpriced.is_empty() {
        let _ = write!(line, "; no price in llm.pricing for {}", llm.unpriced.join(", "));
    }
    line
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A cost in the pricing's currency: 4 decimals, more for tiny amounts.
fn money(cost: f64) -> String {
    if cost != 0.0 && cost.abs() < 0.0001 { format!("{cost:.2e}") } else { format!("{cost:.4}") }
}

/// The PR comment's model usage table: tokens and estimated cost per flow, head vs base.
fn llm_table(report: &Report) -> String {
    let mut md = String::new();
    let flows: Vec<&FlowReport> = report.flows.iter().filter(|f| f.llm.is_some()).collect();
    if flows.is_empty() {
        return md;
    }
    let priced = flows.iter().any(|f| f.llm.as_ref().is_some_and(|l| l.cost.is_some()));
    let _ = writeln!(
        md,
        "
Model usage (tokens of every answer used, cached ones included):
"
    );
    if priced {
        let _ = writeln!(md, "| flow | calls | base tokens | head tokens | Δ | base est. cost | head est. cost |");
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    } else {
        let _ = writeln!(md, "| flow | calls | base tokens | head tokens | Δ |");
        let _ = writeln!(md, "|---|---|---|---|---|");
    }
    for flow in flows {
        let Some(head) = &flow.llm else { continue };
        let base = flow.baseline_llm.as_ref();
        let delta = base.map_or(String::new(), |b| {
            let d = head.total_tokens as i128 - b.total_tokens as i128;
            match d {
                0 => "0".into(),
                d if d > 0 => format!("▲ +{}", thousands(d as u64)),
                d => format!("▼ -{}", thousands(d.unsigned_abs() as u64)),
            }
        });
        let _ = write!(
            md,
            "| {} | {} | {} | {} | {delta} |",
            escape_md(&flow.path),
            head.requests + head.cache_hits,
            base.map_or("–".into(), |b| thousands(b.total_tokens)),
            thousands(head.total_tokens),
        );
        if priced {
            let cost = |u: Option<&LlmUsage>| u.and_then(|u| u.cost).map_or("–".into(), money);
            let _ = write!(md, " {} | {} |", cost(base), cost(Some(head)));
        }
        let _ = writeln!(md);
    }
    md
}

fn metric_list(flow: &FlowReport) -> String {
    if flow.metrics.is_empty() {
        return "none".into();
    }
    flow.metrics.iter().map(|(k, v)| format!("{k}={}", model::value::python_str(v))).collect::<Vec<_>>().join(", ")
}

fn delta(r: &GateResult) -> Option<String> {
    let (head, base) = (r.head?, r.base?);
    if r.check == Check::FailedLines {
        return None;
    }
    Some(change(head, base))
}

/// `head − base` with an arrow: `▲ +0.05`, `▼ -0.1`, `0`.
fn change(head: f64, base: f64) -> String {
    let d = head - base;
    if d.abs() < 1e-12 {
        "0".into()
    } else if d > 0.0 {
        format!("▲ +{}", fmt(d))
    } else {
        format!("▼ {}", fmt(d))
    }
}

/// `report.md` with nothing said about where it came from (no CI run, no
/// commits) and charts as text.
pub fn markdown(report: &Report, marker: &str) -> String {
    markdown_with(report, marker, &CommentContext::default())
}

/// `report.md`: headline, what was compared and the CI run, metric diff
/// table, model usage, the chart of metric changes, then per-flow details.
pub fn markdown_with(report: &Report, marker: &str, ctx: &CommentContext) -> String {
    let mut md = String::new();
    let mut sections = Vec::new();
    let _ = writeln!(md, "{marker}");
    // A run that could not execute says so: its gates only echo it.
    let headline = if report.passed {
        "✅ **flow-ci: all gates passed**"
    } else if report.flows.iter().any(|f| !f.errors.is_empty()) {
        "❌ **flow-ci: runs failed**"
    } else if report.flows.iter().any(|f| !f.verdict.passed()) {
        "❌ **flow-ci: gates failed**"
    } else {
        // Only `--on-missing-secrets fail` fails a check with nothing failed.
        "❌ **flow-ci: flows not run**"
    };
    let _ = writeln!(
        md,
        "{headline} · {} flow(s) checked · baseline: {}\n",
        report.flows.len(),
        escape_md(&report.baseline)
    );
    md.push_str(&comment::provenance(ctx));
    let _ = writeln!(md, "| flow | metric | base | head | Δ | gate | |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for flow in &report.flows {
        // The first row links the flow's studio run, the rest name it.
        let mut flow_cell = comment::flow_cell(flow);
        for r in &flow.verdict.results {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                std::mem::replace(&mut flow_cell, escape_md(&flow.path)),
                escape_md(&r.metric),
                r.base.map(fmt).unwrap_or_else(|| "–".into()),
                r.head.map(fmt).unwrap_or_else(|| "–".into()),
                delta(r).unwrap_or_default(),
                escape_md(&r.limit),
                if r.passed { "✅" } else { "❌" }
            );
        }
        if !flow.errors.is_empty() {
            let _ = writeln!(md, "| {flow_cell} | run | | | | runs completed | ❌ |");
        }
        if flow.not_run.is_some() {
            let _ = writeln!(md, "| {flow_cell} | run | | | | not run | ⏭️ |");
        }
    }
    md.push_str(&llm_table(report));
    // The chart is a section of its own: under the limit it is dropped
    // whole, never cut inside its code block.
    let chart = comment::chart_section(report, ctx.charts);
    if !chart.is_empty() {
        sections.push(("the metric chart".to_string(), chart));
    }
    for flow in &report.flows {
        sections.push((flow.path.clone(), flow_section(flow)));
    }
    let mut tail = String::new();
    if !report.skipped.is_empty() {
        let _ = writeln!(tail, "\nNot changed, not run: {}", escape_md(&report.skipped.join(", ")));
    }
    cap(md, &sections, &tail)
}

fn flow_icon(flow: &FlowReport) -> &'static str {
    if flow.not_run.is_some() {
        "⏭️"
    } else if flow.verdict.passed() && flow.errors.is_empty() {
        "✅"
    } else {
        "❌"
    }
}

/// One flow's `<details>` block: why it ran, its gates, prompt diffs and
/// changed lines. A block is kept or dropped whole, so no fence or
/// `<details>` is ever left open.
fn flow_section(flow: &FlowReport) -> String {
    let mut md = String::new();
    let icon = flow_icon(flow);
    let _ = writeln!(md, "\n<details><summary>{icon} {}</summary>\n", escape_md(&flow.path));
    let _ = writeln!(md, "Selected because: {}.\n", escape_md(&flow.reasons.join(", ")));
    md.push_str(&comment::studio_line(flow));
    let (failed, total) = flow.lines;
    match &flow.not_run {
        Some(why) => {
            let _ = writeln!(md, "⏭️ Not run: {}.\n", escape_md(why));
        }
        None => {
            let _ = writeln!(md, "Lines: {total} run, {failed} failed.\n");
        }
    }
    for e in &flow.errors {
        let _ = writeln!(md, "- ❌ {}", escape_md(&e.message));
    }
    for r in &flow.verdict.results {
        let _ = writeln!(
            md,
            "- {} `{}` {}: {}",
            if r.passed { "✅" } else { "❌" },
            escape_code(&r.metric),
            escape_md(&r.limit),
            escape_md(&r.explanation)
        );
    }
    for d in &flow.prompt_diffs {
        let diff = shorten_lines(&d.diff, DIFF_CHARS, "the whole diff is in report.json");
        let fence = fence_for(&diff);
        let _ = writeln!(md, "\nPrompt change in `{}`:\n\n{fence}diff\n{diff}{fence}", escape_code(&d.file));
    }
    if !flow.changed_lines.is_empty() {
        let _ = writeln!(md, "\nLines whose output changed (first {}):\n", flow.changed_lines.len());
        let _ = writeln!(md, "| line | inputs | base output | head output |\n|---|---|---|---|");
        for l in &flow.changed_lines {
            let _ = writeln!(md, "| {} | {} | {} | {} |", l.line_number, cell(&l.inputs), cell(&l.base), cell(&l.head));
        }
    }
    if let Some(parity) = &flow.parity {
        parity_section(flow, parity, &mut md);
    }
    let _ = writeln!(md, "\n</details>");
    md
}

/// "Migration parity": the flow and its port side by side on this commit.
fn parity_section(flow: &FlowReport, parity: &ParityReport, md: &mut String) {
    let _ = writeln!(
        md,
        "\n**Migration parity**: the port `{}` against the flow, on the same data at this commit \
         (in the `parity:` rows above, base is the flow and head the port).\n",
        escape_code(&parity.workflow)
    );
    let (failed, total) = parity.lines;
    let _ = writeln!(md, "Port lines: {total} run, {failed} failed.\n");
    let mut names: Vec<&String> = flow.metrics.keys().chain(parity.metrics.keys()).collect();
    names.sort();
    names.dedup();
    if !names.is_empty() {
        let _ = writeln!(md, "| metric | flow | port | Δ |\n|---|---|---|---|");
        for name in names {
            let (f, p) = (flow.metrics.get(name), parity.metrics.get(name));
            let shown = |v: Option<&serde_json::Value>| v.map_or_else(|| "–".to_string(), model::value::python_str);
            let change = match (f.and_then(serde_json::Value::as_f64), p.and_then(serde_json::Value::as_f64)) {
                (Some(f), Some(p)) => change(p, f),
                _ => String::new(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {change} |",
                escape_md(name),
                escape_md(&shown(f)),
                escape_md(&shown(p))
            );
        }
    }
    if let Some(sim) = &parity.similarity {
        similarity_lines(sim, md);
    }
    let Some(a) = &parity.agreement else { return };
    let _ = writeln!(md, "\nAgreement on `{}`: {} of {} lines.", escape_code(&a.output), a.agreed, a.total);
    if a.sample.is_empty() {
        return;
    }
    let lines: Vec<String> = a.differing_lines.iter().map(u64::to_string).collect();
    let _ =
        writeln!(md, "\nLines that differ: {}.\n", shorten_lines(&lines.join(", "), CELL_CHARS, "all in report.json"));
    let _ = writeln!(md, "| line | flow | port |\n|---|---|---|");
    for d in &a.sample {
        let value = |v: &serde_json::Value| cell(&serde_json::Map::from_iter([(a.output.clone(), v.clone())]));
        let _ = writeln!(md, "| {} | {} | {} |", d.line_number, value(&d.flow), value(&d.port));
    }
}

/// The judged similarity: the mean, and the lowest lines.
fn similarity_lines(sim: &SimilarityReport, md: &mut String) {
    let what = sim.output.as_deref().map_or("the outputs".to_string(), |o| format!("`{}`", escape_code(o)));
    let mean = sim.mean.map_or("no line could be judged".to_string(), |m| format!("mean {m:.2} of 5"));
    let _ = writeln!(md, "\nJudged similarity of {what} (1–5): {mean} over {} of {} lines.", sim.judged, sim.total);
    let low: Vec<String> = sim.lowest.iter().filter(|(_, s)| *s < 5.0).map(|(l, s)| format!("line {l}: {s}")).collect();
    if !low.is_empty() {
        let _ = writeln!(md, "Lowest: {}.", shorten_lines(&low.join(", "), CELL_CHARS, "all in report.json"));
    }
}

/// A table cell for model or data text: compact JSON, escaped, shortened.
fn cell(values: &serde_json::Map<String, serde_json::Value>) -> String {
    let text: String =
        values.iter().map(|(k, v)| format!("{k}: {}", model::value::python_str(v))).collect::<Vec<_>>().join("; ");
    let short: String = if text.chars().count() > CELL_CHARS {
        text.chars().take(CELL_CHARS).collect::<String>() + "…"
    } else {
        text
    };
    escape_md(&short)
}

/// Characters of untrusted text per table cell.
const CELL_CHARS: usize = 160;

/// A code fence longer than any backtick run in `text`, so the text cannot
/// close the block early.
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

/// Characters of one prompt diff in the comment (report.json has it whole).
const DIFF_CHARS: usize = 20_000;

/// `text` cut to whole lines within `max` characters, saying how much was
/// cut and where the rest is.
fn shorten_lines(text: &str, max: usize, rest: &str) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let kept = &text[..text[..cut].rfind('\n').map_or(0, |i| i + 1)];
    format!("{kept}… {} more characters ({rest})\n", text.len() - kept.len())
}

/// Keeps the comment under GitHub's limit by whole sections: the summary
/// table (cut between rows if it alone is too long), then each flow's block
/// while it fits; the flows that do not fit are named with a pointer to
/// report.json. Every fence and `<details>` that is opened is closed.
fn cap(head: String, sections: &[(String, String)], tail: &str) -> String {
    let total = head.len() + sections.iter().map(|(_, s)| s.len()).sum::<usize>() + tail.len();
    if total <= MARKDOWN_LIMIT {
        return head + &sections.iter().map(|(_, s)| s.as_str()).collect::<String>() + tail;
    }
    // Room for the notice, which names up to NAMED flows left out.
    const NAMED: usize = 20;
    let budget = MARKDOWN_LIMIT - 600 - 100 * sections.len().min(NAMED);
    let mut md = shorten_lines(&head, budget, "the whole table is in report.json");
    let mut left_out: Vec<&str> = Vec::new();
    for (name, section) in sections {
        if left_out.is_empty() && md.len() + section.len() <= budget {
            md.push_str(section);
        } else {
            left_out.push(name);
        }
    }
    let _ = write!(md, "\n… the report is {total} characters, over GitHub's comment limit");
    if !left_out.is_empty() {
        let named: Vec<String> = left_out.iter().take(NAMED).map(|n| escape_md(n)).collect();
        let more = left_out.len().saturating_sub(NAMED);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        let _ = write!(md, ": the details of {}{more} are left out", named.join(", "));
    }
    let _ = writeln!(md, "; the full report is in report.json.");
    md
}

/// Escapes text for Markdown table cells and prose: HTML is neutralised,
/// Markdown punctuation and @mentions cannot take effect, newlines and
/// pipes cannot break the table.
pub fn escape_md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '|' => out.push_str("&#124;"),
            '\n' | '\r' => out.push(' '),
            // `@` would ping people; a zero-width joiner keeps it readable but inert.
            '@' => out.push_str("@\u{200b}"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Inside backticks only the backtick itself (and newlines) need care.
pub(super) fn escape_code(text: &str) -> String {
    text.replace('`', "'").replace(['\n', '\r'], " ")
}

/// `junit.xml`: one test suite per flow, one test case per gate.
pub fn junit(report: &Report) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let tests: usize = report.flows.iter().map(|f| f.verdict.results.len() + usize::from(!f.errors.is_empty())).sum();
    let failures: usize =
        report.flows.iter().map(|f| f.verdict.failed().count() + usize::from(!f.errors.is_empty())).sum();
    let _ = writeln!(xml, "<testsuites name=\"flow-ci\" tests=\"{tests}\" failures=\"{failures}\">");
    for flow in &report.flows {
        let suite_failures = flow.verdict.failed().count() + usize::from(!flow.errors.is_empty());
        let cases = flow.verdict.results.len() + usize::from(!flow.errors.is_empty());
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{cases}\" failures=\"{suite_failures}\">",
            escape_xml(&flow.path)
        );
        if !flow.errors.is_empty() {
            let _ = writeln!(xml, "    <testcase name=\"runs complete\" classname=\"{}\">", escape_xml(&flow.path));
            let _ = writeln!(
                xml,
                "      <failure message=\"{}\"/>",
                escape_xml(&flow.errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))
            );
            let _ = writeln!(xml, "    </testcase>");
        }
        for r in &flow.verdict.results {
            let name = format!("{} {}", r.metric, r.limit);
            if r.passed {
                let _ = writeln!(
                    xml,
                    "    <testcase name=\"{}\" classname=\"{}\"/>",
                    escape_xml(&name),
                    escape_xml(&flow.path)
                );
            } else {
                let _ = writeln!(
                    xml,
                    "    <testcase name=\"{}\" classname=\"{}\">",
                    escape_xml(&name),
                    escape_xml(&flow.path)
                );
                let _ = writeln!(xml, "      <failure message=\"{}\"/>", escape_xml(&r.explanation));
                let _ = writeln!(xml, "    </testcase>");
            }
        }
        let _ = writeln!(xml, "  </testsuite>");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// XML attribute/text escaping; characters XML 1.0 forbids (controls other
/// than tab, newline and carriage return, and U+FFFE/U+FFFF; see the `Char`
/// production of the XML 1.0 spec) are dropped, so junit.xml stays well-formed
/// whatever an error message holds.
pub fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 && c != '\t' => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escaping_drops_what_xml_forbids() {
        assert_eq!(escape_xml("a\u{FFFE}b\u{FFFF}c\u{1}d\te\r"), "abcd\te&#13;");
    }

    /// Every fence and `<details>` opened in `md` is closed.
    fn assert_balanced(md: &str) {
        assert_eq!(md.matches("<details>").count(), md.matches("</details>").count(), "{md}");
        let mut open: Option<String> = None;
        for line in md.lines() {
            let ticks: String = line.chars().take_while(|c| *c == '`').collect();
            if ticks.len() < 3 {
                continue;
            }
            match &open {
                Some(fence) if line == fence => open = None,
                Some(_) => {}
                None => open = Some(ticks),
            }
        }
        assert_eq!(open, None, "a code fence is left open");
    }

    #[test]
    fn a_capped_comment_keeps_whole_sections_and_closes_what_it_opens() {
        let big_diff: String = (0..4000).map(|i| format!("+line {i} with ```` ticks\n")).collect();
        let flows: Vec<FlowReport> = (0..6)
            .map(|i| {
                let mut flow = FlowReport::new(format!("flows/f{i}"), vec!["changed".into()]);
                flow.prompt_diffs.push(crate::report::PromptDiff { file: "p.jinja2".into(), diff: big_diff.clone() });
                flow
            })
            .collect();
        let report = Report { passed: true, baseline: "none".into(), flows, skipped: vec![] };
        let md = markdown(&report, "<!-- m -->");
        assert!(md.len() <= MARKDOWN_LIMIT, "{}", md.len());
        assert_balanced(&md);
        assert!(md.contains("flows/f0"), "the first flows are kept whole");
        assert!(md.contains("the details of flows/f"), "the flows left out are named");
        // A flow's diff is shortened inside its own closed fence.
        assert!(md.contains("more characters (the whole diff is in report.json)"));
    }

    #[test]
    fn markdown_escaping_keeps_injections_inert() {
        let evil = "</details><img src=x onerror=alert(1)> @octocat **bold** | cell\n# heading";
        let escaped = escape_md(evil);
        assert!(!escaped.contains('<') && !escaped.contains('>'), "{escaped}");
        assert!(!escaped.contains("@octocat"), "{escaped}");
        assert!(!escaped.contains('\n') && !escaped.contains(" | "), "{escaped}");
        assert!(escaped.contains("\\*\\*bold\\*\\*"), "{escaped}");
    }

    #[test]
    fn fences_outgrow_backticks_in_the_text() {
        assert_eq!(fence_for("plain"), "```");
        assert_eq!(fence_for("has ```` four"), "`````");
    }

    #[test]
    fn xml_escaping() {
        assert_eq!(escape_xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn long_reports_are_capped_with_a_note() {
        let md = "x\n".repeat(MARKDOWN_LIMIT);
        let capped = cap(md, &[], "");
        assert!(capped.len() <= MARKDOWN_LIMIT, "{}", capped.len());
        assert!(capped.ends_with("the full report is in report.json.\n"));
    }
}

#[cfg(test)]
mod llm_tests {
    use super::*;

    fn usage(prompt: u64, completion: u64, cost: Option<f64>) -> LlmUsage {
        let mut by_model = std::collections::BTreeMap::new();
        by_model.insert(
            "gpt-4o-mini".to_string(),
            exec::llm::Tokens { prompt_tokens: prompt, completion_tokens: completion },
        );
        LlmUsage {
            requests: 380,
            cache_hits: 20,
            throttled: 3,
            peak_in_flight: 24,
            waited_ms: 1500,
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            by_model,
            cost,
            unpriced: vec![],
        }
    }

    fn report(priced: bool) -> Report {
        let price = |p: u64, c: u64| priced.then(|| p as f64 / 1000.0 * 0.00015 + c as f64 / 1000.0 * 0.0006);
        let triage = FlowReport {
            lines: (0, 400),
            llm: Some(usage(41_230, 2_400, price(41_230, 2_400))),
            baseline_llm: Some(usage(38_000, 2_400, price(38_000, 2_400))),
            ..FlowReport::new("flows/support-triage".into(), vec!["prompt changed".into()])
        };
        let new_flow = FlowReport {
            llm: Some(usage(1_000, 50, price(1_000, 50))),
            ..FlowReport::new("flows/new|flow".into(), vec!["new flow".into()])
        };
        let python = FlowReport::new("flows/python-only".into(), vec!["code changed".into()]);
        Report { passed: true, baseline: "base-branch".into(), flows: vec![triage, new_flow, python], skipped: vec![] }
    }

    #[test]
    fn the_comment_shows_tokens_and_cost_per_flow_head_vs_base() {
        let md = markdown(&report(true), "<!-- flow-ci -->");
        let table: String =
            md.lines().skip_while(|l| !l.starts_with("Model usage")).take(6).collect::<Vec<_>>().join("\n");
        insta::assert_snapshot!("llm_usage_priced", table);
        let md = markdown(&report(false), "<!-- flow-ci -->");
        let table: String =
            md.lines().skip_while(|l| !l.starts_with("Model usage")).take(6).collect::<Vec<_>>().join("\n");
        insta::assert_snapshot!("llm_usage_unpriced", table);
        // Without model calls there is no table.
        let none = Report { flows: vec![FlowReport::new("f".into(), vec![])], ..report(false) };
        assert!(!markdown(&none, "m").contains("Model usage"));
    }

    #[test]
    fn the_console_names_requests_throttling_tokens_and_cost() {
        let text = console(&report(true));
        assert!(
            text.contains("  llm: 380 request(s), 20 cache hit(s), up to 24 in flight, 3 answered 429/503, 1.5s waited for the limit; tokens: 43,630 (base 40,400); est. cost: 0.0076 (base 0.0071)"),
            "{text}"
        );
        let mut unpriced = report(false);
        unpriced.flows[0].llm.as_mut().unwrap().unpriced = vec!["gpt-4o-mini".into()];
        assert!(console(&unpriced).contains("; no price in llm.pricing for gpt-4o-mini"));
    }

    #[test]
    fn thousands_and_money() {
        assert_eq!(
            (thousands(0), thousands(999), thousands(1000), thousands(1234567)),
            ("0".into(), "999".into(), "1,000".into(), "1,234,567".into())
        );
        assert_eq!((money(0.0), money(1.23456), money(0.00001)), ("0.0000".into(), "1.2346".into(), "1.00e-5".into()));
    }
}
