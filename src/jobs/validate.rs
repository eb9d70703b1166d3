//! `flow-ci validate`: finds flows, run files and `.flow-ci.yaml` under the
//! given paths and checks each one once, including how they refer to each
//! other (a run file's flow and data, a config's run files and evaluations).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use model::config::{self, CONFIG_FILE, Config};
use model::data::{self, DataError, Table};
use model::diag::{Code, Diagnostic, Diagnostics};
use model::flow::run_check::{self, RunContext};
use model::flow::{self, FLOW_FILE, Flow, RunFile, run_file};
use model::paths::{boundary_root, is_inside, normalize};
use model::yaml::{Pos, Spanned};

/// What one `validate` call looked at and found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub diagnostics: Vec<Diagnostic>,
    pub flows: usize,
    pub run_files: usize,
    pub configs: usize,
}

impl Outcome {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Validates every target found under `paths`.
pub fn validate(paths: &[PathBuf]) -> Outcome {
    let mut v = Validator::default();
    for path in paths {
        v.target(path);
    }
    v.outcome()
}

/// Validates a config that a job has loaded already (it reads the file
/// once): `found` holds what loading it found, then every flow, run file
/// and evaluation the config names is checked as `validate` would.
pub fn validate_loaded(config: &Config, found: &[Diagnostic]) -> Outcome {
    let mut v = Validator { configs: 1, root: boundary_root(&absolute(&config.file)), ..Validator::default() };
    for d in found {
        v.diags.push(d.clone());
    }
    v.loaded_config(config);
    v.outcome()
}

#[derive(Default)]
struct Validator {
    diags: Diagnostics,
    /// Loaded and checked flows by normalized absolute folder.
    flows: HashMap<PathBuf, Option<Rc<Flow>>>,
    data: HashMap<PathBuf, Rc<Result<Table, DataError>>>,
    /// Run files already checked, with the base flow they were bound to.
    runs: HashSet<(PathBuf, Option<PathBuf>)>,
    configs: usize,
    /// The boundary of the current target: its repository, else the
    /// current folder or the target itself (see `paths::boundary_root`).
    root: PathBuf,
}

/// Kinds of files `validate` knows, recognised by name or content.
enum Target {
    Flow(PathBuf),
    Run(PathBuf),
    Config(PathBuf),
}

impl Validator {
    fn target(&mut self, path: &Path) {
        let abs = absolute(path);
        if !abs.exists() {
            self.diags.push(Diagnostic::error(Code::Io, path, Pos::START, "no such file or directory"));
            return;
        }
        self.root = boundary_root(&abs);
        let targets = discover(&abs);
        if targets.is_empty() {
            self.diags.push(
                Diagnostic::error(
                    Code::NothingToValidate,
                    path,
                    Pos::START,
                    "no flow.dag.yaml, run file or .flow-ci.yaml found here",
                )
                .with_hint("point validate at a flow folder, a run file, a .flow-ci.yaml, or a folder containing them"),
            );
        }
        for t in targets {
            match t {
                Target::Flow(dir) => {
                    self.flow(&dir);
                }
                Target::Run(file) => self.run_file(&file, None),
                Target::Config(file) => self.config(&file),
            }
        }
    }

    /// Loads and checks a flow once; later calls reuse the result.
    fn flow(&mut self, dir: &Path) -> Option<Rc<Flow>> {
        let key = normalize(&absolute(dir));
        if let Some(found) = self.flows.get(&key) {
            return found.clone();
        }
        let loaded = flow::dag::load(&key, &mut self.diags).map(Rc::new);
        if let Some(f) = &loaded {
            let root = self.root.clone();
            flow::dag_check::check_flow(f, &root, &mut self.diags);
        }
        self.flows.insert(key, loaded.clone());
        loaded
    }

    fn data(&mut self, path: &Path, run: &RunFile) -> Rc<Result<Table, DataError>> {
        let key = normalize(&absolute(path));
        if let Some(found) = self.data.get(&key) {
            return found.clone();
        }
        let loaded = Rc::new(data::load(&key));
        if let Err(e) = loaded.as_ref() {
            run_check::report_data_error(e, run, &mut self.diags);
        }
        self.data.insert(key, loaded.clone());
        loaded
    }

    fn run_file(&mut self, file: &Path, base_flow: Option<Rc<Flow>>) {
        let key = (normalize(&absolute(file)), base_flow.as_ref().map(|f| f.dir.clone()));
        if !self.runs.insert(key) {
            return;
        }
        let Some(run) = run_file::load(file, &mut self.diags) else {
            return;
        };
        let flow = self.run_flow(&run);
        let data = self.run_data(&run);
        let ctx = RunContext { flow: flow.as_deref(), data: data.as_deref(), base_flow: base_flow.as_deref() };
        run_check::check_run(&run, &ctx, &mut self.diags);
    }

    fn run_flow(&mut self, run: &RunFile) -> Option<Rc<Flow>> {
        let flow_ref = run.flow.as_ref()?;
        if flow_ref.value.starts_with("azureml:") {
            return None;
        }
        let dir = run.flow_dir()?;
        if !self.inside_repo(run, &dir, flow_ref, "flow") {
            return None;
        }
        if !dir.join(FLOW_FILE).is_file() {
            let msg = format!("flow `{}` is not a flow folder (no {FLOW_FILE})", flow_ref.value);
            self.diags.push(
                Diagnostic::error(Code::RunFlowMissing, &run.file, flow_ref.pos, msg)
                    .with_hint("`flow:` is relative to the run file's folder"),
            );
            return None;
        }
        self.flow(&dir)
    }

    fn run_data(&mut self, run: &RunFile) -> Option<Rc<Result<Table, DataError>>> {
        let path = run.local_data()?;
        let written = run.data.as_ref()?;
        if !self.inside_repo(run, &path, written, "data") {
            return None;
        }
        if !path.exists() {
            let msg = format!("data `{}` does not exist", written.value);
            self.diags.push(
                Diagnostic::error(Code::RunDataMissing, &run.file, written.pos, msg)
                    .with_hint("`data:` is relative to the run file's folder"),
            );
            return None;
        }
        Some(self.data(&path, run))
    }

    /// Whether `path` (written as `written` in the run file) stays in the repository.
    fn inside_repo(&mut self, run: &RunFile, path: &Path, written: &Spanned<String>, what: &str) -> bool {
        let root = self.root.clone();
        if is_inside(path, &root) {
            return true;
        }
        let msg = format!("{what} `{}` is outside the repository root {}", written.value, root.display());
        self.diags.push(Diagnostic::error(Code::PathOutsideRepo, &run.file, written.pos, msg));
        false
    }

    fn outcome(self) -> Outcome {
        let Validator { diags, flows, runs, configs, .. } = self;
        Outcome { diagnostics: diags.into_sorted(), flows: flows.len(), run_files: runs.len(), configs }
    }

    fn config(&mut self, file: &Path) {
        self.configs += 1;
        if let Some(config) = config::load(file, &mut self.diags) {
            self.loaded_config(&config);
        }
    }

    fn loaded_config(&mut self, config: &Config) {
        self.baseline_file(config);
        for entry in &config.flows {
            let flows = self.config_flows(config, entry);
            for (file_ref, base) in
                entry.run.iter().map(|r| (r, None)).chain(entry.evaluations.iter().map(|e| (e, flows.first().cloned())))
            {
                let path = config.resolve(&file_ref.value);
                if path.is_file() {
                    self.run_file(&path, base);
                } else {
                    let msg = format!("run file `{}` does not exist", file_ref.value);
                    self.diags.push(
                        Diagnostic::error(Code::ConfigRunMissing, &config.file, file_ref.pos, msg)
                            .with_hint("paths in .flow-ci.yaml are relative to its folder"),
                    );
                }
            }
            if let Some(port) = &entry.port {
                self.port(config, port);
            }
        }
    }

    /// A port's workflow file must exist inside the repository (its code
    /// runs in the check like a flow's).
    fn port(&mut self, config: &Config, port: &config::PortEntry) {
        let path = config.resolve(&port.workflow.value);
        let problem = if !path.is_file() {
            Some(format!("the port's workflow `{}` does not exist", port.workflow.value))
        } else if !is_inside(&path, &self.root) {
            Some(format!(
                "the port's workflow `{}` is outside the repository root {}",
                port.workflow.value,
                self.root.display()
            ))
        } else {
            None
        };
        if let Some(msg) = problem {
            self.diags.push(
                Diagnostic::error(Code::ConfigPortMissing, &config.file, port.workflow.pos, msg)
                    .with_hint("paths in .flow-ci.yaml are relative to its folder"),
            );
        }
        if let Some(name) = &port.connection
            && let Err(e) = config.connections.get(&name.value, &port.workflow.value)
        {
            self.diags.push(
                Diagnostic::error(Code::ConnectionUndefined, &config.file, name.pos, e.to_string())
                    .with_hint("define it under `connections:` (type azure_open_ai or open_ai)"),
            );
        }
    }

    /// `baseline: file:PATH` must name a file inside the repository (it is
    /// read and its numbers end up in the PR comment).
    fn baseline_file(&mut self, config: &Config) {
        let Some(Spanned { value: config::Baseline::File(path), pos }) = &config.baseline else { return };
        let full = config.resolve(path);
        let root = self.root.clone();
        if !is_inside(&full, &root) {
            let msg = format!("baseline `file:{path}` is outside the repository root {}", root.display());
            self.diags.push(
                Diagnostic::error(Code::PathOutsideRepo, &config.file, *pos, msg)
                    .with_hint("commit the baseline file (`check --write-baseline`) inside the repository"),
            );
        }
    }

    /// The flows a config entry's `path` (a folder or a glob) selects.
    fn config_flows(&mut self, config: &Config, entry: &config::FlowEntry) -> Vec<Rc<Flow>> {
        let dirs = match expand_flow_path(config.dir(), &entry.path.value) {
            Ok(dirs) => dirs,
            Err(message) => {
                self.diags.push(Diagnostic::error(Code::ConfigFlowNotFound, &config.file, entry.path.pos, message));
                return vec![];
            }
        };
        if dirs.is_empty() {
            let msg = format!("`{}` matches no flow folder (a folder with {FLOW_FILE})", entry.path.value);
            self.diags.push(
                Diagnostic::error(Code::ConfigFlowNotFound, &config.file, entry.path.pos, msg)
                    .with_hint("paths in .flow-ci.yaml are relative to its folder"),
            );
        }
        dirs.iter().filter_map(|d| self.flow(d)).collect()
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Flow folders selected by a config `path`: the folder itself, or every
/// flow folder below the config's folder matching the glob.
pub fn expand_flow_path(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    if !pattern.contains(['*', '?', '[', '{']) {
        let dir = base.join(pattern);
        return Ok(if dir.join(FLOW_FILE).is_file() { vec![dir] } else { vec![] });
    }
    let glob = globset::GlobBuilder::new(pattern.trim_end_matches('/'))
        .literal_separator(true)
        .build()
        .map_err(|e| format!("invalid glob `{pattern}`: {e}"))?
        .compile_matcher();
    let mut dirs: Vec<PathBuf> = discover(base)
        .into_iter()
        .filter_map(|t| match t {
            Target::Flow(dir) => Some(dir),
            _ => None,
        })
        .filter(|dir| dir.strip_prefix(base).is_ok_and(|rel| glob.is_match(rel)))
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Folders a search never enters: tool state, virtualenvs, dependencies.
const SKIPPED_DIRS: &[&str] =
    &[".git", ".flow-ci", ".promptflow", "__pycache__", "node_modules", ".venv", "venv", "target"];

/// Targets at `path`: a single file by its name/content, or everything below a folder.
fn discover(path: &Path) -> Vec<Target> {
    if path.is_file() {
        return classify(path).into_iter().collect();
    }
    let walker = ignore::WalkBuilder::new(path)
        .hidden(false)
        .filter_entry(|e| {
            !(e.file_type().is_some_and(|t| t.is_dir())
                && SKIPPED_DIRS.contains(&e.file_name().to_string_lossy().as_ref()))
        })
        .build();
    let mut targets: Vec<Target> = walker
        .flatten()
        .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
        .filter_map(|e| classify(e.path()))
        .collect();
    targets.sort_by(|a, b| target_path(a).cmp(target_path(b)));
    targets
}

/// Every run file below `base` (files with a top-level `flow:`), sorted.
pub fn run_files(base: &Path) -> Vec<PathBuf> {
    discover(base)
        .into_iter()
        .filter_map(|t| match t {
            Target::Run(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn target_path(t: &Target) -> &Path {
    match t {
        Target::Flow(p) | Target::Run(p) | Target::Config(p) => p,
    }
}

fn classify(file: &Path) -> Option<Target> {
    let name = file.file_name()?.to_str()?;
    if name == FLOW_FILE {
        return Some(Target::Flow(file.parent()?.to_path_buf()));
    }
    if name == CONFIG_FILE {
        return Some(Target::Config(file.to_path_buf()));
    }
    let is_yaml = name.ends_with(".yml") || name.ends_with(".yaml");
    (is_yaml && looks_like_run_file(file)).then(|| Target::Run(file.to_path_buf()))
}

/// A run file is a YAML mapping with a top-level `flow` key and no `nodes`
/// (or one that declares promptflow's Run schema). Recognised by parsing,
/// so every spelling YAML allows counts: a byte-order mark, a quoted
/// `'flow':`, flow style `{flow: ., data: …}`. Files that mention no `flow`
/// at all (CI workflows, most YAML) are skipped without parsing; a file that
/// does not parse but has a `flow:` line is taken as a run file so that its
/// syntax error is reported rather than the file silently skipped.
fn looks_like_run_file(file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    if !text.contains("flow") {
        return false;
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    match model::yaml::parse(text) {
        Ok(Some(root)) => {
            let schema = root.get("$schema").and_then(|s| s.as_str()).is_some_and(|s| s.contains("Run.schema.json"));
            schema || (root.get("flow").is_some() && root.get("nodes").is_none())
        }
        Ok(None) => false,
        Err(_) => text.lines().any(|l| l.trim_start_matches(['\'', '"']).starts_with("flow")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_files_are_recognised_in_every_yaml_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("bom.yml", "\u{feff}flow: .\ndata: d.jsonl\n", true),
            ("quoted.yml", "'flow': .\ndata: d.jsonl\n", true),
            ("double.yaml", "\"flow\": .\n", true),
            ("flowstyle.yml", "{flow: ., data: d.jsonl}\n", true),
            ("schema.yml", "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Run.schema.json\n", true),
            ("broken.yml", "flow: .\ndata: [unclosed\n", true),
            ("workflow.yml", "on: push\njobs: {build: {steps: [{run: echo flow}]}}\n", false),
            ("dag.yaml", "flow: x\nnodes: []\n", false),
            ("nested.yml", "outer:\n  flow: .\n", false),
        ];
        for (name, text, expected) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            assert_eq!(looks_like_run_file(&path), expected, "{name}");
        }
    }

    #[test]
    fn globs_do_not_cross_folders() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["flows/a", "flows/b", "flows/nested/c"] {
            std::fs::create_dir_all(dir.path().join(f)).unwrap();
            std::fs::write(dir.path().join(f).join(FLOW_FILE), "nodes: []\n").unwrap();
        }
        let found = expand_flow_path(dir.path(), "flows/*").unwrap();
        let names: Vec<_> = found.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(expand_flow_path(dir.path(), "flows/**").unwrap().len(), 3);
        assert_eq!(expand_flow_path(dir.path(), "flows/a").unwrap().len(), 1);
        assert!(expand_flow_path(dir.path(), "flows/zzz").unwrap().is_empty());
    }
}
