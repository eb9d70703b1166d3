//! Batch runs (`pf run create`): map data (and a base run's outputs) to flow
//! inputs, run every line on a pool of threads, aggregate, and record the run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};

use super::line::{Engine, LineRun, Status, iso8601};
use super::prepare::Prepared;
use crate::images::Format;
use crate::store::{ErrorSummary, LineCounts, RunRecord, RunStatus, RunWriter, StoreError};
use model::data::Table;
use model::flow::reference::MappingSource;

/// A base run, for evaluation runs: its outputs and its original data.
pub struct BaseRun {
    pub name: String,
    /// `output.jsonl` rows, each with `line_number`.
    pub outputs: Vec<Map<String, Json>>,
    /// The base run's data (`${run.inputs.x}`), when it had a local file.
    pub data: Option<Table>,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("The input for batch run is incorrect. Couldn't find these mapping relations: {}. Please make sure your input mapping keys and values match your YAML input section and input data.", missing.join(", "))]
    NotFound { missing: Vec<String>, line: usize },
    #[error("Line numbers are not aligned: the data has {data} rows but the base run's data has {base} rows")]
    NotAligned { data: usize, base: usize },
    #[error("Couldn't find any inputs data: the data is empty or every line of the base run failed")]
    Empty,
    #[error("The input for flow cannot be empty in batch mode. Please review your flow and provide valid inputs.")]
    NoInputs,
    /// A port declares no inputs: the column mapping names them.
    #[error(
        "a workflow's inputs come from the column mapping: pass --column-mapping NAME='${{data.column}}' for each (one input is the start message, several a dict)"
    )]
    NoPortInputs,
}

/// A line number and the flow inputs mapped for it.
pub type MappedLine = (usize, Map<String, Json>);

/// Each line's inputs after column mapping, with its line number.
pub fn map_inputs(
    prepared: &Prepared,
    mapping: &[(String, MappingSource)],
    data: Option<&Table>,
    base: Option<&BaseRun>,
) -> Result<Vec<MappedLine>, MappingError> {
    if prepared.flow.inputs.is_empty() {
        return Err(MappingError::NoInputs);
    }
    // Default mapping `${data.x}` for inputs without a default; the run file's mapping wins.
    let mut full: Vec<(String, MappingSource)> = prepared
        .flow
        .inputs
        .iter()
        .filter(|i| i.default.as_ref().is_none_or(Json::is_null))
        .filter(|i| !mapping.iter().any(|(k, _)| *k == i.name.value))
        .map(|i| (i.name.value.clone(), MappingSource::Data(i.name.value.clone())))
        .collect();
    full.extend(mapping.iter().cloned());

    let base_data = base.and_then(|b| b.data.as_ref());
    if let (Some(d), Some(b)) = (data, base_data)
        && d.rows.len() != b.rows.len()
        && !has_line_numbers(d)
        && !has_line_numbers(b)
    {
        return Err(MappingError::NotAligned { data: d.rows.len(), base: b.rows.len() });
    }
    let data_rows = data.map(rows_by_line).unwrap_or_default();
    let base_rows = base_data.map(rows_by_line).unwrap_or_default();
    let own_lines = if data.is_some() { &data_rows } else { &base_rows }.iter().map(|(n, _)| *n);
    let line_numbers: Vec<usize> = match (data.or(base_data), base) {
        (Some(_), Some(b)) => {
            let done: std::collections::HashSet<usize> = b.outputs.iter().filter_map(line_number).collect();
            own_lines.filter(|n| done.contains(n)).collect()
        }
        (Some(_), None) => own_lines.collect(),
        (None, Some(b)) => b.outputs.iter().filter_map(line_number).collect(),
        (None, None) => vec![],
    };
    if line_numbers.is_empty() {
        return Err(MappingError::Empty);
    }
    let outputs_by_line: std::collections::HashMap<usize, &Map<String, Json>> =
        base.map(|b| b.outputs.iter().filter_map(|r| Some((line_number(r)?, r))).collect()).unwrap_or_default();
    line_numbers
        .into_iter()
        .map(|n| {
            let mut inputs = Map::new();
            let mut missing = Vec::new();
            for (key, source) in &full {
                let value = match source {
                    MappingSource::Literal(v) => Some(v.clone()),
                    MappingSource::Data(c) => data.and_then(|t| cell(t, &data_rows, n, c, prepared.image_format())),
                    MappingSource::RunOutputs(c) => outputs_by_line.get(&n).and_then(|r| r.get(c)).cloned(),
                    MappingSource::RunInputs(c) => {
                        base_data.and_then(|t| cell(t, &base_rows, n, c, prepared.image_format()))
                    }
                    MappingSource::Unknown(_) => None,
                };
                match value {
                    Some(v) => {
                        inputs.insert(key.clone(), v);
                    }
                    None => missing.push(source.to_string()),
                }
            }
            if missing.is_empty() { Ok((n, inputs)) } else { Err(MappingError::NotFound { missing, line: n }) }
        })
        .collect()
}

/// Line `n`'s value of `column` (`rows`: [`rows_by_line`]), with relative image paths resolved against
/// its data file's folder (_batch_inputs_processor.py,
/// resolve_multimedia_data_recursively).
fn cell(table: &Table, rows: &[(usize, usize)], n: usize, column: &str, format: Format) -> Option<Json> {
    let i = rows.iter().find(|(line, _)| *line == n)?.1;
    let row = table.rows.get(i)?;
    let value = row.values.get(column)?;
    let dir = table.files.get(row.file).and_then(|f| std::path::absolute(f).ok());
    match dir.as_deref().and_then(std::path::Path::parent) {
        Some(dir) if crate::images::has_images(value, format) => Some(crate::images::resolve_paths(value, dir, format)),
        _ => Some(value.clone()),
    }
}

fn has_line_numbers(table: &Table) -> bool {
    table.rows.iter().any(|r| r.values.contains_key("line_number"))
}

/// Each line number with the row it reads, as promptflow merges batch inputs
/// (`batch/_batch_inputs_processor.py`, `_merge_input_dicts_by_line`): rows
/// are lines 0, 1, … unless a row has a `line_number` column; then each
/// row with one is that line (a later row of the same number replaces the
/// earlier one) and rows without one are left out. A `line_number` that is
/// not a whole number is left out too (pf would fail the run on it later).
fn rows_by_line(table: &Table) -> Vec<(usize, usize)> {
    if !has_line_numbers(table) {
        return (0..table.rows.len()).map(|i| (i, i)).collect();
    }
    let mut lines: Vec<(usize, usize)> = Vec::new();
    for (i, r) in table.rows.iter().enumerate() {
        let Some(n) = r.values.get("line_number").and_then(Json::as_u64).and_then(|n| usize::try_from(n).ok()) else {
            continue;
        };
        match lines.iter_mut().find(|(line, _)| *line == n) {
            Some(entry) => entry.1 = i,
            None => lines.push((n, i)),
        }
    }
    lines
}

fn line_number(row: &Map<String, Json>) -> Option<usize> {
    row.get("line_number").and_then(Json::as_u64).and_then(|n| usize::try_from(n).ok())
}

/// Receives progress as lines finish.
pub trait Progress: Sync {
    fn line_done(&self, done: usize, failed: usize, total: usize);
    /// One line's result, as soon as it finishes (in the order lines
    /// finish, before the run ends); `run create --stream` prints it.
    fn line_result(&self, _line: &LineRun) {}
    fn finish(&self);
}

pub struct BatchOptions<'a> {
    pub workers: usize,
    pub line_timeout: Duration,
    pub cancel: &'a AtomicBool,
    pub progress: &'a dyn Progress,
}

/// Runs all lines and aggregation, writing the store as lines finish.
/// `record` arrives with its identity fields set; status, counts and timing
/// are filled in here.
pub fn run(
    engine: &Engine<'_>,
    lines: &[MappedLine],
    opts: &BatchOptions<'_>,
    writer: &mut RunWriter,
    mut record: RunRecord,
) -> Result<RunRecord, StoreError> {
    let started = Instant::now();
    let start_wall = std::time::SystemTime::now();
    record.status = RunStatus::Running;
    record.created_on = iso8601(start_wall);
    record.lines = LineCounts { total: lines.len(), ..LineCounts::default() };
    writer.write_record(&record)?;
    writer.image_format = engine.prepared.image_format();

    let pool = engine.pool;
    let mut results: Vec<LineRun> = Vec::with_capacity(lines.len());
    let mut store_error = None;
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (tx, rx) = channel::<LineRun>();
        for _ in 0..opts.workers.clamp(1, lines.len().max(1)) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    if engine.stopping() {
                        break;
                    }
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some((number, inputs)) = lines.get(k) else { break };
                    if tx.send(engine.run_line(inputs, *number)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut failed = 0;
        for mut line in rx {
            if store_error.is_none() {
                store_error = writer.keep_images(&mut line).err();
            }
            if line.status != Status::Completed {
                failed += 1;
            }
            if store_error.is_none() {
                store_error = writer.append_line(&line).err();
            }
            opts.progress.line_result(&line);
            results.push(line);
            opts.progress.line_done(results.len(), failed, lines.len());
        }
    });
    opts.progress.finish();
    if let Some(e) = store_error {
        return Err(e);
    }
    results.sort_by_key(|l| l.line_number);
    // A line Canceled by a stopped worker means the run was stopped, even
    // when the signal's handler has not set the flag yet.
    let canceled = engine.stopping() || results.iter().any(|l| l.status == Status::Canceled);
    let aggregation = if canceled { Default::default() } else { engine.run_aggregation(&results) };

    let refs: Vec<&LineRun> = results.iter().collect();
    writer.write_outputs(&refs)?;
    writer.write_metrics(&aggregation.metrics)?;
    writer.append_logs(&std::mem::take(&mut *pool.logs.lock().unwrap_or_else(|e| e.into_inner())))?;

    let failed: Vec<&LineRun> = results.iter().filter(|l| l.status == Status::Failed).collect();
    record.lines = LineCounts {
        total: lines.len(),
        completed: results.iter().filter(|l| l.status == Status::Completed).count(),
        failed: failed.len(),
    };
    record.error = (!failed.is_empty()).then(|| summary(&failed, lines.len()));
    record.aggregation_errors = aggregation.errors;
    record.status = if canceled { RunStatus::Canceled } else { RunStatus::Completed };
    if let Some(llm) = engine.llm.filter(|l| l.client.is_some()) {
        record.llm = Some(llm.usage.summary());
        if let Some(fatal) = llm.fatal() {
            record.status = RunStatus::Failed;
            record.error = Some(ErrorSummary { message: fatal.to_string(), failed_lines: vec![], first_error: None });
        }
    }
    record.end_time = Some(iso8601(std::time::SystemTime::now()));
    record.duration_seconds = started.elapsed().as_secs_f64();
    writer.write_record(&record)?;
    Ok(record)
}

/// promptflow's "{failed}/{total} flow run failed, indexes: [...], exception of index i: ...".
pub fn summary(failed: &[&LineRun], total: usize) -> ErrorSummary {
    let indexes: Vec<usize> = failed.iter().map(|l| l.line_number).collect();
    let first = failed.first().and_then(|l| l.error.clone());
    let message = format!(
        "{}/{} flow run failed, indexes: [{}], exception of index {}: {}",
        failed.len(),
        total,
        indexes.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        indexes.first().copied().unwrap_or_default(),
        first.as_ref().map_or("", |e| e.message.as_str())
    );
    ErrorSummary { message, failed_lines: indexes, first_error: first }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[Json]) -> Table {
        let rows = rows
            .iter()
            .enumerate()
            .map(|(i, v)| model::data::Row { file: 0, line: i as u32 + 1, values: v.as_object().cloned().unwrap() })
            .collect();
        Table { files: vec![], rows }
    }

    #[test]
    fn rows_are_lines_in_order_without_a_line_number_column() {
        let t = table(&[serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]);
        assert_eq!(rows_by_line(&t), vec![(0, 0), (1, 1)]);
    }

    /// promptflow's eval-groundedness data numbers its rows 1 and 2.
    #[test]
    fn a_line_number_column_is_the_line_number() {
        let t = table(&[
            serde_json::json!({"q": "a", "line_number": 1}),
            serde_json::json!({"q": "b", "line_number": 2}),
            serde_json::json!({"q": "none"}),
            serde_json::json!({"q": "c", "line_number": 1}),
        ]);
        assert_eq!(rows_by_line(&t), vec![(1, 3), (2, 1)]);
    }
}
