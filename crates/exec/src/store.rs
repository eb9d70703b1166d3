//! The run store: one folder per run under `.flow-ci/runs/` (or
//! `--runs-dir` / `FLOW_CI_RUNS_DIR`), in a layout close to promptflow's:
//! `run.json`, `output.jsonl`, `metrics.json`, `details.jsonl`, `logs.txt`.
//!
//! `details.jsonl` is appended line by line while a run executes, so a run
//! that is interrupted or crashes still leaves what it completed on disk.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::line::{LineRun, RunError, Status};
use crate::nonfinite;
use model::flow::run_name::{self, InvalidRunName};

pub const RUN_FILE: &str = "run.json";
pub const OUTPUT_FILE: &str = "output.jsonl";
pub const METRICS_FILE: &str = "metrics.json";
pub const DETAILS_FILE: &str = "details.jsonl";
pub const LOGS_FILE: &str = "logs.txt";
/// The images of a run's lines (inputs, node outputs, outputs), one file
/// each, named by a UUID as promptflow names them.
pub const IMAGES_DIR: &str = "images";
/// Beside the runs: one lock file per run being written (not a run name:
/// names cannot start with a dot).
const LOCKS_DIR: &str = ".locks";

/// `run.json`: what ran, on what, and how it went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub flow: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_file: Option<PathBuf>,
    /// The data file (what `${run.inputs.x}` of a later run reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// The base run of an evaluation run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub column_mapping: Map<String, Json>,
    pub status: RunStatus,
    pub created_on: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default)]
    pub duration_seconds: f64,
    pub lines: LineCounts,
    /// Index of each failed line and the first error, like promptflow's summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregation_errors: Vec<RunError>,
    #[serde(default)]
    pub tags: Map<String, Json>,
    #[serde(default)]
    pub properties: Map<String, Json>,
    pub backend: String,
    /// Model calls: requests, cache hits, retries and tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<crate::llm::UsageSummary>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    Canceled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "Running",
            RunStatus::Completed => "Completed",
            RunStatus::Failed => "Failed",
            RunStatus::Canceled => "Canceled",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCounts {
    pub total: usize,
    pub completed: usize,
    pub failed: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorSummary {
    pub message: String,
    pub failed_lines: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<RunError>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run `{name}` already exists in {}", dir.display())]
    Exists { name: String, dir: PathBuf },
    #[error("no run named `{name}` in {}", dir.display())]
    NotFound { name: String, dir: PathBuf, recent: Vec<String> },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a valid run store file: {source}", path.display())]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error(transparent)]
    InvalidName(#[from] InvalidRunName),
    /// `--force` replaces runs only: a folder without `run.json`, or a
    /// symlink, is somebody else's and stays.
    #[error("{} exists but is not a stored run (no {RUN_FILE}); --force replaces runs only", dir.display())]
    NotARun { dir: PathBuf },
    #[error(transparent)]
    Image(#[from] crate::images::PersistError),
    #[error("run `{name}` is being written by another flow-ci right now")]
    Busy { name: String },
}

impl StoreError {
    /// A name or an existing folder in the way is the user's input (exit 2);
    /// a store that cannot be read or written is a failure (exit 3).
    pub fn exit_code(&self) -> u8 {
        match self {
            StoreError::Io { .. } | StoreError::Corrupt { .. } => model::exit::FAILURE,
            _ => model::exit::INVALID_INPUT,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::Exists { .. } => Some("choose another --name, or pass --force to replace it".into()),
            StoreError::NotFound { recent, .. } if recent.is_empty() => {
                Some("no runs yet; create one with `flow-ci run create`".into())
            }
            StoreError::NotFound { recent, .. } => Some(format!("recent runs: {}", recent.join(", "))),
            StoreError::NotARun { .. } => Some("choose another --name, or move that folder away yourself".into()),
            StoreError::Busy { .. } => Some("wait for it to finish, or choose another --name".into()),
            _ => None,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// The store root: `--runs-dir`, else `FLOW_CI_RUNS_DIR`, else `.flow-ci/runs`.
pub fn root(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("FLOW_CI_RUNS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".flow-ci/runs"))
}

pub struct Store {
    pub root: PathBuf,
    /// Wait for a run another flow-ci is writing instead of refusing.
    wait: bool,
}

impl Store {
    pub fn new(root: PathBuf) -> Store {
        Store { root, wait: false }
    }

    /// A store whose writers wait for a run another flow-ci is writing (two
    /// `check`s in one repository run the same names) instead of refusing.
    pub fn waiting(self) -> Store {
        Store { wait: true, ..self }
    }

    /// The folder of run `name`: always one plain component below the root,
    /// so no name reaches outside the store.
    pub fn dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join(run_name::check(name)?))
    }

    /// Creates an empty run folder. An existing run is replaced only with
    /// `force`, and only when that folder really is a run (a directory, not a
    /// symlink, holding `run.json`).
    pub fn create(&self, name: &str, force: bool) -> Result<RunWriter, StoreError> {
        let dir = self.dir(name)?;
        let lock = self.lock(name)?;
        match std::fs::symlink_metadata(&dir) {
            Ok(_) if !force => return Err(StoreError::Exists { name: name.into(), dir }),
            Ok(meta) if meta.is_dir() && dir.join(RUN_FILE).is_file() => {
                std::fs::remove_dir_all(&dir).map_err(io(&dir))?
            }
            Ok(_) => return Err(StoreError::NotARun { dir }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        RunWriter::open(dir, lock)
    }

    /// Opens an existing run to write its results again (a cloud run
    /// fetched anew): its line records start empty, other files stay.
    pub fn reopen(&self, name: &str) -> Result<RunWriter, StoreError> {
        let lock = self.lock(name)?;
        self.load(name)?;
        RunWriter::open(self.dir(name)?, lock)
    }

    /// An advisory lock on run `name`, held by its writer: two flow-ci
    /// writing the same run at once mixed their files (run.json of one,
    /// details.jsonl of the other). The lock file lives beside the runs, not
    /// in the run folder `--force` removes.
    fn lock(&self, name: &str) -> Result<File, StoreError> {
        let locks = self.root.join(LOCKS_DIR);
        std::fs::create_dir_all(&locks).map_err(io(&locks))?;
        let path = locks.join(format!("{}.lock", run_name::check(name)?));
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if self.wait => {
                tracing::warn!("run `{name}` is being written by another flow-ci; waiting for it");
                file.lock().map_err(io(&path))?;
                Ok(file)
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Busy { name: name.into() }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }

    /// Sets one property of a stored run's record (its lines untouched),
    /// under the run's lock.
    pub fn set_property(&self, name: &str, key: &str, value: Json) -> Result<RunRecord, StoreError> {
        let _lock = self.lock(name)?;
        let mut record = self.load(name)?;
        record.properties.insert(key.into(), value);
        write_json_atomic(&self.dir(name)?.join(RUN_FILE), &record)?;
        Ok(record)
    }

    pub fn load(&self, name: &str) -> Result<RunRecord, StoreError> {
        let path = self.dir(name)?.join(RUN_FILE);
        if !path.is_file() {
            return Err(StoreError::NotFound { name: name.into(), dir: self.root.clone(), recent: self.recent(5) });
        }
        read_json(&path)
    }

    /// Names of the newest runs, newest first.
    pub fn recent(&self, limit: usize) -> Vec<String> {
        let mut runs = self.list().unwrap_or_default();
        runs.truncate(limit);
        runs.into_iter().map(|r| r.name).collect()
    }

    /// Every readable run, newest first.
    pub fn list(&self) -> Result<Vec<RunRecord>, StoreError> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Ok(vec![]) };
        let mut runs: Vec<RunRecord> =
            entries.flatten().filter_map(|e| read_json::<RunRecord>(&e.path().join(RUN_FILE)).ok()).collect();
        runs.sort_by(|a, b| b.created_on.cmp(&a.created_on).then_with(|| a.name.cmp(&b.name)));
        Ok(runs)
    }

    /// `logs.txt`, empty when the run wrote none.
    pub fn logs(&self, name: &str) -> Result<String, StoreError> {
        let path = self.dir(name)?.join(LOGS_FILE);
        match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            other => other.map_err(io(&path)),
        }
    }

    /// `output.jsonl` rows (each with `line_number`).
    pub fn outputs(&self, name: &str) -> Result<Vec<Map<String, Json>>, StoreError> {
        read_jsonl(&self.dir(name)?.join(OUTPUT_FILE))
    }

    pub fn metrics(&self, name: &str) -> Result<Map<String, Json>, StoreError> {
        let path = self.dir(name)?.join(METRICS_FILE);
        if !path.exists() {
            return Ok(Map::new());
        }
        read_json(&path)
    }

    /// Per-line records, in line order.
    pub fn details(&self, name: &str) -> Result<Vec<LineRun>, StoreError> {
        let path = self.dir(name)?.join(DETAILS_FILE);
        let file = File::open(&path).map_err(io(&path))?;
        let mut lines = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(io(&path))?;
            if line.trim().is_empty() {
                continue;
            }
            lines.push(
                nonfinite::parse::<LineRun>(&line)
                    .map_err(|source| StoreError::Corrupt { path: path.clone(), source })?,
            );
        }
        lines.sort_by_key(|l| l.line_number);
        Ok(lines)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    nonfinite::parse(&text).map_err(|source| StoreError::Corrupt { path: path.to_path_buf(), source })
}

fn read_jsonl(path: &Path) -> Result<Vec<Map<String, Json>>, StoreError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| nonfinite::parse(l).map_err(|source| StoreError::Corrupt { path: path.to_path_buf(), source }))
        .collect()
}

/// Writes one run's folder as it progresses.
pub struct RunWriter {
    pub dir: PathBuf,
    /// How the run's flow writes images (`message_format`).
    pub image_format: crate::images::Format,
    details: BufWriter<File>,
    /// The run's lock, released when the writer is dropped.
    _lock: File,
}

impl RunWriter {
    /// A writer for `dir`, with `details.jsonl` started empty.
    fn open(dir: PathBuf, lock: File) -> Result<RunWriter, StoreError> {
        let details_path = dir.join(DETAILS_FILE);
        let details = BufWriter::new(File::create(&details_path).map_err(io(&details_path))?);
        Ok(RunWriter { dir, details, _lock: lock, image_format: crate::images::Format::Basic })
    }

    pub fn write_record(&self, record: &RunRecord) -> Result<(), StoreError> {
        write_json_atomic(&self.dir.join(RUN_FILE), record)
    }

    /// The line with its images written to the run's `images/` folder and
    /// named by absolute path, as promptflow's run details name them
    /// (`process_multimedia_in_run_info`); later nodes (aggregation) read
    /// them from there.
    pub fn keep_images(&self, line: &mut LineRun) -> Result<(), StoreError> {
        // Absolute: workers read them from the flow's folder.
        let dir = std::path::absolute(self.dir.join(IMAGES_DIR)).map_err(io(&self.dir))?;
        let persist = |map: &Map<String, Json>| -> Result<Map<String, Json>, StoreError> {
            match crate::images::persist(&Json::Object(map.clone()), &dir, self.image_format)? {
                Json::Object(map) => Ok(map),
                _ => Ok(map.clone()),
            }
        };
        line.inputs = persist(&line.inputs)?;
        line.outputs = persist(&line.outputs)?;
        for node in &mut line.nodes {
            node.output = crate::images::persist(&node.output, &dir, self.image_format)?;
        }
        Ok(())
    }

    /// Appends one finished line; flushed at once so progress survives a crash.
    pub fn append_line(&mut self, line: &LineRun) -> Result<(), StoreError> {
        let path = self.dir.join(DETAILS_FILE);
        let text = nonfinite::to_text(line).map_err(|source| StoreError::Corrupt { path: path.clone(), source })?;
        writeln!(self.details, "{text}").and_then(|()| self.details.flush()).map_err(io(&path))
    }

    /// `output.jsonl`: completed lines only, by line number, outputs after `line_number`.
    pub fn write_outputs(&self, lines: &[&LineRun]) -> Result<(), StoreError> {
        let path = self.dir.join(OUTPUT_FILE);
        let mut completed: Vec<&&LineRun> = lines.iter().filter(|l| l.status == Status::Completed).collect();
        completed.sort_by_key(|l| l.line_number);
        let mut out = BufWriter::new(File::create(&path).map_err(io(&path))?);
        let dir = std::path::absolute(&self.dir).map_err(io(&self.dir))?;
        for line in completed {
            let mut row = Map::new();
            row.insert("line_number".into(), Json::from(line.line_number));
            // Images relative to output.jsonl's folder, as promptflow writes them.
            row.extend(
                line.outputs
                    .iter()
                    .map(|(k, v)| (k.clone(), crate::images::relative_paths(v, &dir, self.image_format))),
            );
            let text = nonfinite::to_text(&row).map_err(|source| StoreError::Corrupt { path: path.clone(), source })?;
            writeln!(out, "{text}").map_err(io(&path))?;
        }
        out.flush().map_err(io(&path))
    }

    pub fn write_metrics(&self, metrics: &Map<String, Json>) -> Result<(), StoreError> {
        write_json_atomic(&self.dir.join(METRICS_FILE), metrics)
    }

    /// Replaces `logs.txt` (a cloud run's whole log).
    pub fn write_logs(&self, text: &str) -> Result<(), StoreError> {
        let path = self.dir.join(LOGS_FILE);
        std::fs::write(&path, text).map_err(io(&path))
    }

    pub fn append_logs(&self, lines: &[String]) -> Result<(), StoreError> {
        let path = self.dir.join(LOGS_FILE);
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        for line in lines {
            writeln!(file, "{line}").map_err(io(&path))?;
        }
        Ok(())
    }
}

/// Writes through a temporary file so readers never see half a document.
/// Non-finite floats are written as Python's `NaN` / `Infinity` tokens.
fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let tmp = path.with_extension("json.tmp");
    let text = nonfinite::to_text_indented(value, "  ")
        .map_err(|source| StoreError::Corrupt { path: path.to_path_buf(), source })?;
    std::fs::write(&tmp, text + "\n").map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
