//! Reading the run store back for people (tables) and machines (JSON).

use std::io::Write;
use std::path::Path;

use comfy_table::{Table, presets};
use serde_json::{Map, Value as Json};

use exec::line::Status;
use exec::store::{RunRecord, Store, StoreError};
use model::value::python_str;

/// How a run is shown: a summary for people, or its `run.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ViewFormat {
    Text,
    Json,
}

pub enum ViewError {
    Store(StoreError),
    Output(std::io::Error),
}

impl From<StoreError> for ViewError {
    fn from(e: StoreError) -> Self {
        ViewError::Store(e)
    }
}

impl From<std::io::Error> for ViewError {
    fn from(e: std::io::Error) -> Self {
        ViewError::Output(e)
    }
}

/// Cells longer than this are cut with `…` in tables.
const CELL_WIDTH: usize = 60;

/// Pretty JSON; a NaN output or metric reads `NaN`, as in the run's files.
pub fn write_json(value: &Json, out: &mut dyn Write) -> std::io::Result<()> {
    let text = exec::nonfinite::to_text_indented(value, "  ")?;
    writeln!(out, "{text}")
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t
}

pub fn summary(
    record: &RunRecord,
    metrics: &Map<String, Json>,
    dir: &Path,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(out, "run:      {} ({})", record.name, record.status.as_str())?;
    writeln!(
        out,
        "lines:    {} completed, {} failed of {} in {:.2}s",
        record.lines.completed, record.lines.failed, record.lines.total, record.duration_seconds
    )?;
    if let Some(e) = &record.error {
        writeln!(out, "failures: {}", e.message)?;
    }
    for e in &record.aggregation_errors {
        writeln!(out, "aggregation failed: {}", e.message)?;
    }
    if !metrics.is_empty() {
        let list: Vec<String> = metrics.iter().map(|(k, v)| format!("{k}={}", python_str(v))).collect();
        writeln!(out, "metrics:  {}", list.join(", "))?;
    }
    if let Some(llm) = &record.llm {
        writeln!(
            out,
            "llm:      {} request(s), {} cache hit(s), {} retry(ies); tokens: {} prompt + {} completion = {}",
            llm.requests, llm.cache_hits, llm.retries, llm.prompt_tokens, llm.completion_tokens, llm.total_tokens
        )?;
        if llm.requests > 0 {
            writeln!(
                out,
                "limit:    up to {} in flight, {} answered 429/503, {:.1}s waited for the limit (summed over requests)",
                llm.peak_in_flight,
                llm.throttled,
                llm.waited_ms as f64 / 1000.0
            )?;
        }
    }
    writeln!(out, "store:    {}", dir.display())
}

pub fn show(store: &Store, name: &str, format: ViewFormat, out: &mut dyn Write) -> Result<(), ViewError> {
    let record = store.load(name)?;
    match format {
        ViewFormat::Json => write_json(&serde_json::to_value(&record).unwrap_or_default(), out)?,
        ViewFormat::Text => summary(&record, &store.metrics(name)?, &store.dir(name)?, out)?,
    }
    Ok(())
}

pub fn metrics(store: &Store, name: &str, out: &mut dyn Write) -> Result<(), ViewError> {
    store.load(name)?;
    write_json(&Json::Object(store.metrics(name)?), out)?;
    Ok(())
}

/// Like `pf run show-details`: `inputs.*` then `outputs.*` columns, failed
/// lines padded with "(Failed)".
pub fn details(
    store: &Store,
    name: &str,
    format: ViewFormat,
    limit: Option<usize>,
    out: &mut dyn Write,
) -> Result<(), ViewError> {
    store.load(name)?;
    let mut lines = store.details(name)?;
    if let Some(limit) = limit {
        lines.truncate(limit);
    }
    if format == ViewFormat::Json {
        write_json(&serde_json::to_value(&lines).unwrap_or_default(), out)?;
        return Ok(());
    }
    let input_keys = keys(lines.iter().map(|l| &l.inputs));
    let output_keys = keys(lines.iter().filter(|l| l.status == Status::Completed).map(|l| &l.outputs));
    let mut t = table();
    let mut header = vec!["inputs.line_number".to_string()];
    header.extend(input_keys.iter().map(|k| format!("inputs.{k}")));
    header.extend(output_keys.iter().map(|k| format!("outputs.{k}")));
    t.set_header(header);
    for line in &lines {
        let mut row = vec![line.line_number.to_string()];
        row.extend(input_keys.iter().map(|k| cell(line.inputs.get(k))));
        if line.status == Status::Completed {
            row.extend(output_keys.iter().map(|k| cell(line.outputs.get(k))));
        } else {
            row.extend(output_keys.iter().map(|_| "(Failed)".to_string()));
        }
        t.add_row(row);
    }
    writeln!(out, "{t}")?;
    Ok(())
}

fn keys<'a>(maps: impl Iterator<Item = &'a Map<String, Json>>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for map in maps {
        for k in map.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

fn cell(value: Option<&Json>) -> String {
    let text = value.map_or_else(String::new, python_str).replace('\n', "\\n");
    if text.chars().count() > CELL_WIDTH {
        format!("{}…", text.chars().take(CELL_WIDTH - 1).collect::<String>())
    } else {
        text
    }
}

pub fn list(store: &Store, format: ViewFormat, out: &mut dyn Write) -> Result<(), ViewError> {
    let runs = store.list()?;
    if format == ViewFormat::Json {
        write_json(&serde_json::to_value(&runs).unwrap_or_default(), out)?;
        return Ok(());
    }
    if runs.is_empty() {
        writeln!(out, "no runs in {}", store.root.display())?;
        return Ok(());
    }
    let mut t = table();
    t.set_header(vec!["name", "status", "created", "lines", "failed", "base run", "flow"]);
    for r in &runs {
        t.add_row(vec![
            r.name.clone(),
            r.status.as_str().to_string(),
            r.created_on.chars().take(19).collect(),
            r.lines.total.to_string(),
            r.lines.failed.to_string(),
            r.run.clone().unwrap_or_default(),
            r.flow.display().to_string(),
        ]);
    }
    writeln!(out, "{t}")?;
    Ok(())
}

/// metric, value in A, value in B, B - A.
type MetricRow<'a> = (String, Option<&'a Json>, Option<&'a Json>, Option<f64>);

pub fn compare(store: &Store, a: &str, b: &str, format: ViewFormat, out: &mut dyn Write) -> Result<(), ViewError> {
    let (ra, rb) = (store.load(a)?, store.load(b)?);
    let (ma, mb) = (store.metrics(a)?, store.metrics(b)?);
    let mut names: Vec<&String> = ma.keys().collect();
    names.extend(mb.keys().filter(|k| !ma.contains_key(*k)));
    let rows: Vec<MetricRow<'_>> = names
        .iter()
        .map(|k| {
            let (x, y) = (ma.get(*k), mb.get(*k));
            let delta = x.and_then(Json::as_f64).zip(y.and_then(Json::as_f64)).map(|(x, y)| y - x);
            ((*k).clone(), x, y, delta)
        })
        .collect();
    if format == ViewFormat::Json {
        let metrics: Vec<Json> =
            rows.iter().map(|(k, x, y, d)| serde_json::json!({"metric": k, a: x, b: y, "delta": d})).collect();
        let doc = serde_json::json!({"a": a, "b": b, "metrics": metrics, "lines": {a: ra.lines, b: rb.lines}});
        write_json(&doc, out)?;
        return Ok(());
    }
    let mut t = table();
    t.set_header(vec!["metric".to_string(), a.to_string(), b.to_string(), "Δ".to_string()]);
    for (k, x, y, d) in &rows {
        t.add_row(vec![k.clone(), cell(*x), cell(*y), d.map_or_else(String::new, |d| format!("{d:+.4}"))]);
    }
    t.add_row(vec![
        "failed lines".to_string(),
        ra.lines.failed.to_string(),
        rb.lines.failed.to_string(),
        String::new(),
    ]);
    writeln!(out, "{t}")?;
    Ok(())
}

/// After `--stream`: every line's status (unless each was printed as it
/// finished, as a local run does) and the workers' log lines.
pub fn stream_summary(store: &Store, name: &str, lines_streamed: bool, err: &mut dyn Write) {
    if !lines_streamed && let Ok(lines) = store.details(name) {
        for l in lines {
            let _ = writeln!(err, "{}", super::progress::line_result_text(&l));
        }
    }
    if let Ok(logs) = store.logs(name) {
        let _ = err.write_all(logs.as_bytes());
    }
}
