//! `flow-ci run visualize`: runs from the run store drawn as one HTML page
//! (`report::visualize`), and the page `check` writes beside `report.md`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::report::visualize::{LineView, RunView, html};
use exec::line::LineRun;
use exec::store::{Store, StoreError};

/// One stored run as the page shows it: its record, metrics and lines
/// (`details.jsonl`, else the completed lines of `output.jsonl`).
pub fn load(store: &Store, name: &str) -> Result<RunView, StoreError> {
    let record = store.load(name)?;
    let metrics = store.metrics(name)?;
    let lines = match store.details(name) {
        Ok(details) => details.iter().map(line_view).collect(),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            outputs_only(&store.outputs(name).unwrap_or_default())
        }
        Err(e) => return Err(e),
    };
    Ok(RunView {
        name: record.name.clone(),
        label: None,
        status: record.status.as_str().to_string(),
        flow: record.flow.display().to_string(),
        created_on: record.created_on.clone(),
        total: record.lines.total,
        completed: record.lines.completed,
        failed: record.lines.failed,
        metrics,
        lines,
    })
}

fn line_view(line: &LineRun) -> LineView {
    LineView {
        line_number: line.line_number as u64,
        status: serde_json::to_value(line.status).ok().and_then(|s| s.as_str().map(str::to_string)).unwrap_or_default(),
        inputs: line.inputs.clone(),
        outputs: line.outputs.clone(),
        error: line.error.as_ref().map(|e| format!("{}: {}", e.kind, e.message)),
    }
}

/// Lines from `output.jsonl` rows (completed lines, no inputs).
pub fn outputs_only(rows: &[Map<String, Json>]) -> Vec<LineView> {
    rows.iter()
        .filter_map(|row| {
            let line_number = row.get("line_number")?.as_u64()?;
            let outputs =
                row.iter().filter(|(k, _)| *k != "line_number").map(|(k, v)| (k.clone(), v.clone())).collect();
            Some(LineView { line_number, status: "Completed".into(), outputs, ..LineView::default() })
        })
        .collect()
}

/// The page of the stored runs `names`, the first the one others are compared with.
pub fn page(store: &Store, names: &[String]) -> Result<String, StoreError> {
    let runs = names.iter().map(|n| load(store, n)).collect::<Result<Vec<_>, _>>()?;
    let title = match names {
        [one] => format!("flow-ci run {one}"),
        _ => format!("flow-ci runs {}", names.join(" vs ")),
    };
    Ok(html(&title, &runs))
}

/// Where `run visualize` writes without `--html-path`: beside the run
/// store, `.flow-ci/visualize/<A>_vs_<B>.html`.
pub fn default_path(runs_dir: &Path, names: &[String]) -> PathBuf {
    let joined = names.join("_vs_");
    // Run names are file-name safe; many of them together may be too long for one.
    let file = if joined.len() <= 200 { format!("{joined}.html") } else { format!("{}_vs_more.html", names[0]) };
    runs_dir.parent().unwrap_or(Path::new(".")).join("visualize").join(file)
}

#[derive(Debug, thiserror::Error)]
pub enum VisualizeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// `run visualize`: the page of `names` written to `html_path` (else
/// [`default_path`]); returns where it went.
pub fn visualize(store: &Store, names: &[String], html_path: Option<&Path>) -> Result<PathBuf, VisualizeError> {
    let page = page(store, names)?;
    let path = html_path.map_or_else(|| default_path(&store.root, names), Path::to_path_buf);
    write(&path, &page).map_err(|source| VisualizeError::Write { path: path.clone(), source })?;
    Ok(path)
}

/// Writes `page` to `path`, creating its folder.
fn write(path: &Path, page: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_page_sits_beside_the_run_store() {
        let names = vec!["a".to_string(), "b".to_string()];
        assert_eq!(default_path(Path::new(".flow-ci/runs"), &names), Path::new(".flow-ci/visualize/a_vs_b.html"));
        let long = vec!["x".repeat(150), "y".repeat(150)];
        let path = default_path(Path::new(".flow-ci/runs"), &long);
        assert_eq!(path.file_name().unwrap().to_string_lossy(), format!("{}_vs_more.html", "x".repeat(150)));
    }

    #[test]
    fn output_rows_become_completed_lines() {
        let rows: Vec<Map<String, Json>> =
            vec![serde_json::from_str(r#"{"line_number": 2, "answer": "x"}"#).unwrap(), Map::new()];
        let lines = outputs_only(&rows);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line_number, 2);
        assert_eq!(lines[0].status, "Completed");
        assert_eq!(lines[0].outputs.keys().collect::<Vec<_>>(), vec!["answer"]);
    }
}
