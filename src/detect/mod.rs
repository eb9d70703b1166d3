//! Which flows a change touches, through their dependencies.
//!
//! A flow is affected by files in its folder, by its `additional_includes` and
//! node sources outside the folder, by the run files, data and evaluation
//! flows `.flow-ci.yaml` ties to it, and by the config itself. Only flow files
//! that can reach outside their folder are parsed, so a repository with ten
//! thousand flows is mapped in milliseconds.

pub mod git;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::detect::git::{Change, Git, GitError};
use model::config::{self, CONFIG_FILE, Config};
use model::diag::Diagnostics;
use model::flow::dag::{self, SourceKind};
use model::flow::{FLOW_FILE, run_file};
use model::paths::normalize;

#[derive(Clone, Debug)]
pub struct Request {
    /// Where to start looking for the repository.
    pub dir: PathBuf,
    pub base: String,
    /// `None`: compare with the working tree (uncommitted and untracked files included).
    pub head: Option<String>,
    /// `.flow-ci.yaml`; default: the one in `dir`, else at the repository root.
    pub config: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not inside the repository at {}", path.display(), root.display())]
    ConfigOutsideRepo { path: PathBuf, root: PathBuf },
}

impl DetectError {
    pub fn hint(&self) -> Option<String> {
        match self {
            DetectError::Git(e) => e.hint(),
            _ => None,
        }
    }
}

/// Why a flow is selected. Paths are relative to the repository root.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// The flow folder is new.
    Added,
    /// The flow folder moved (its `flow.dag.yaml` was renamed).
    Renamed { from: String },
    /// Files inside the flow folder changed.
    Files { files: Vec<String> },
    /// An `additional_includes` entry changed.
    Include { files: Vec<String> },
    /// A node source outside the flow folder changed.
    SharedSource { files: Vec<String> },
    /// A run file or its data, tied to the flow by `.flow-ci.yaml`, changed.
    RunFile { files: Vec<String> },
    /// An evaluation flow the flow is evaluated with changed.
    Evaluation { flow: String },
    /// The flow's port (its Agent Framework workflow's folder) changed.
    Port { files: Vec<String> },
    /// `.flow-ci.yaml` changed: every flow is re-checked.
    Config { file: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct FlowChange {
    pub path: String,
    pub reasons: Vec<Reason>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Detection {
    pub base: String,
    pub merge_base: String,
    /// The head commit, or `None` for the working tree.
    pub head: Option<String>,
    pub changed_files: usize,
    pub total_flows: usize,
    pub flows: Vec<FlowChange>,
    /// Flow folders whose `flow.dag.yaml` was deleted.
    pub removed: Vec<String>,
}

/// What a dependency means for the flows depending on it.
#[derive(Clone, Copy, Debug)]
enum DepKind {
    Include,
    SharedSource,
    RunFile,
    Port,
}

/// A file or folder outside a flow folder that flows depend on.
struct Dependency {
    path: String,
    is_dir: bool,
    flow: usize,
    kind: DepKind,
}

pub fn detect(req: &Request) -> Result<Detection, DetectError> {
    detect_with(req, None)
}

/// [`detect`] with the config a job has loaded already: when the head is
/// the working tree, `config` is that file's content and is not read again.
pub fn detect_with(req: &Request, preloaded: Option<&Config>) -> Result<Detection, DetectError> {
    let started = std::time::Instant::now();
    let phase = |name: &str| tracing::debug!("detect: {name} after {:?}", started.elapsed());
    let git = Git::open(&req.dir)?;
    let base_sha = git.resolve(&req.base)?;
    let head_sha = match &req.head {
        Some(h) => Some(git.resolve(h)?),
        None => None,
    };
    let merge_base = git.merge_base(&base_sha, head_sha.as_deref().unwrap_or("HEAD"))?;
    phase("refs resolved");
    let crate::detect::git::Comparison { changes, files } = git.compare(&merge_base, head_sha.as_deref())?;
    phase("changes and files listed");
    let blobs: HashMap<&str, &str> = files.iter().filter_map(|f| Some((f.path.as_str(), f.blob.as_deref()?))).collect();
    let tree = Tree { git: &git, blobs: head_sha.is_some().then_some(&blobs) };

    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let flow_dirs = flow_dirs(&paths);
    let flow_index: HashMap<&str, usize> = flow_dirs.iter().enumerate().map(|(i, d)| (d.as_str(), i)).collect();
    let mut deps = flow_dependencies(&tree, &flow_dirs)?;
    phase("flow dependencies read");
    let config = find_config(req, &git)?;
    let evaluations = match &config {
        Some(rel) => {
            let loaded = preloaded.filter(|_| req.head.is_none());
            config_dependencies(&tree, rel, loaded, &flow_dirs, &flow_index, &mut deps)?
        }
        None => vec![],
    };

    let mut reasons: Vec<BTreeMap<&'static str, Reason>> = vec![BTreeMap::new(); flow_dirs.len()];
    let mut removed = BTreeSet::new();
    for change in &changes {
        record_flow_lifecycle(change, &flow_index, &mut reasons, &mut removed);
        for path in change.paths() {
            if config.as_deref() == Some(path) {
                for r in reasons.iter_mut() {
                    r.insert("config", Reason::Config { file: path.to_string() });
                }
            }
            if let Some(i) = owning_flow(path, &flow_index) {
                push_file(&mut reasons[i], "files", path);
            }
            for dep in deps.iter().filter(|d| d.path == path || (d.is_dir && is_below(path, &d.path))) {
                let key = match dep.kind {
                    DepKind::Include => "include",
                    DepKind::SharedSource => "shared-source",
                    DepKind::RunFile => "run-file",
                    DepKind::Port => "port",
                };
                push_file(&mut reasons[dep.flow], key, path);
            }
        }
    }
    // Evaluation flows: a changed evaluator re-checks every flow evaluated with it.
    for (flow, eval_flow) in evaluations {
        if flow != eval_flow && !reasons[eval_flow].is_empty() {
            reasons[flow].insert("evaluation", Reason::Evaluation { flow: flow_dirs[eval_flow].clone() });
        }
    }

    let flows = flow_dirs
        .iter()
        .zip(reasons)
        .filter(|(_, r)| !r.is_empty())
        .map(|(path, r)| FlowChange { path: display_dir(path), reasons: r.into_values().collect() })
        .collect();
    Ok(Detection {
        base: req.base.clone(),
        merge_base,
        head: head_sha,
        changed_files: changes.len(),
        total_flows: flow_dirs.len(),
        flows,
        removed: removed.into_iter().map(|d| display_dir(&d)).collect(),
    })
}

/// Files at the compared head: the working tree, or a commit's blobs by path.
struct Tree<'a> {
    git: &'a Git,
    blobs: Option<&'a HashMap<&'a str, &'a str>>,
}

impl Tree<'_> {
    fn read_many(&self, paths: &[String]) -> Result<HashMap<String, Vec<u8>>, DetectError> {
        match self.blobs {
            Some(blobs) => {
                let found: Vec<(&String, &str)> =
                    paths.iter().filter_map(|p| Some((p, *blobs.get(p.as_str())?))).collect();
                let ids: Vec<&str> = found.iter().map(|(_, id)| *id).collect();
                let objects = self.git.read_objects(&ids)?;
                Ok(found.into_iter().zip(objects).filter_map(|((p, _), o)| Some((p.clone(), o?))).collect())
            }
            None => Ok(read_in_parallel(&self.git.root, paths)),
        }
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, DetectError> {
        Ok(self.read_many(&[path.to_string()])?.remove(path))
    }
}

/// Reads working-tree files on every core: thousands of small reads are
/// bound by system-call latency, not bandwidth.
fn read_in_parallel(root: &Path, paths: &[String]) -> HashMap<String, Vec<u8>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let chunk = paths.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|p| std::fs::read(root.join(p)).ok().map(|b| (p.clone(), b)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

/// Folders (relative, `""` for the root) holding a `flow.dag.yaml`, sorted.
fn flow_dirs(files: &[&str]) -> Vec<String> {
    let mut dirs: Vec<String> = files
        .iter()
        .filter_map(|f| {
            if *f == FLOW_FILE {
                Some(String::new())
            } else {
                f.strip_suffix(FLOW_FILE).and_then(|d| d.strip_suffix('/')).map(str::to_string)
            }
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

fn display_dir(dir: &str) -> String {
    if dir.is_empty() { ".".into() } else { dir.to_string() }
}

fn is_below(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// The nearest flow folder containing `path`.
fn owning_flow(path: &str, flows: &HashMap<&str, usize>) -> Option<usize> {
    let mut dir = path;
    while let Some(cut) = dir.rfind('/') {
        dir = &dir[..cut];
        if let Some(&i) = flows.get(dir) {
            return Some(i);
        }
    }
    flows.get("").copied()
}

fn push_file(reasons: &mut BTreeMap<&'static str, Reason>, key: &'static str, path: &str) {
    let entry = reasons.entry(key).or_insert_with(|| match key {
        "include" => Reason::Include { files: vec![] },
        "shared-source" => Reason::SharedSource { files: vec![] },
        "run-file" => Reason::RunFile { files: vec![] },
        "port" => Reason::Port { files: vec![] },
        _ => Reason::Files { files: vec![] },
    });
    if let Reason::Files { files }
    | Reason::Include { files }
    | Reason::SharedSource { files }
    | Reason::RunFile { files }
    | Reason::Port { files } = entry
        && !files.iter().any(|f| f == path)
    {
        files.push(path.to_string());
    }
}

/// Added, renamed and deleted `flow.dag.yaml` files mark flows as new, moved or removed.
fn record_flow_lifecycle(
    change: &Change,
    flows: &HashMap<&str, usize>,
    reasons: &mut [BTreeMap<&'static str, Reason>],
    removed: &mut BTreeSet<String>,
) {
    let dir_of = |p: &str| -> Option<String> {
        if p == FLOW_FILE {
            Some(String::new())
        } else {
            p.strip_suffix(FLOW_FILE).and_then(|d| d.strip_suffix('/')).map(str::to_string)
        }
    };
    match change {
        Change::Added(p) => {
            if let Some(&i) = dir_of(p).as_deref().and_then(|d| flows.get(d)) {
                reasons[i].insert("added", Reason::Added);
            }
        }
        Change::Renamed { from, to } => {
            if let (Some(old), Some(&i)) = (dir_of(from), dir_of(to).as_deref().and_then(|d| flows.get(d))) {
                reasons[i].insert("renamed", Reason::Renamed { from: display_dir(&old) });
            } else if let Some(old) = dir_of(from).filter(|d| !flows.contains_key(d.as_str())) {
                removed.insert(old);
            }
        }
        Change::Deleted(p) => {
            if let Some(old) = dir_of(p).filter(|d| !flows.contains_key(d.as_str())) {
                removed.insert(old);
            }
        }
        Change::Modified(_) => {}
    }
}

/// Joins a path written relative to `dir` onto it, repository-relative.
/// `None` when it escapes the repository.
fn join_rel(dir: &str, path: &str) -> Option<String> {
    let joined = normalize(&Path::new(dir).join(path));
    let text = joined.to_string_lossy().replace('\\', "/");
    (!text.starts_with("..") && !Path::new(&text).is_absolute()).then_some(text)
}

/// Includes and outside-folder sources of every flow. Only files mentioning
/// `additional_includes` or `..` can reach outside their folder; the rest are
/// never parsed.
fn flow_dependencies(tree: &Tree<'_>, flow_dirs: &[String]) -> Result<Vec<Dependency>, DetectError> {
    let paths: Vec<String> = flow_dirs
        .iter()
        .map(|d| if d.is_empty() { FLOW_FILE.to_string() } else { format!("{d}/{FLOW_FILE}") })
        .collect();
    let contents = tree.read_many(&paths)?;
    let mut deps = Vec::new();
    for (i, (dir, path)) in flow_dirs.iter().zip(&paths).enumerate() {
        let Some(bytes) = contents.get(path) else {
            continue;
        };
        if !contains(bytes, b"additional_includes") && !contains(bytes, b"..") {
            continue;
        }
        let Ok(Some(root)) = model::yaml::parse(&String::from_utf8_lossy(bytes)) else {
            continue;
        };
        let mut ignored = Diagnostics::default();
        let Some(flow) = dag::decode(Path::new(dir), &root, &mut ignored) else {
            continue;
        };
        for inc in &flow.additional_includes {
            if let Some(target) = join_rel(dir, &inc.value) {
                let is_dir = !tree.git.root.join(&target).is_file();
                deps.push(Dependency { path: target, is_dir, flow: i, kind: DepKind::Include });
            }
        }
        let sources =
            flow.all_node_definitions().filter_map(|n| n.source.as_ref()).filter(|s| s.kind != SourceKind::Package);
        for src in sources.filter_map(|s| s.path.as_ref()) {
            if let Some(target) = join_rel(dir, &src.value).filter(|t| !is_below(t, dir)) {
                deps.push(Dependency { path: target, is_dir: false, flow: i, kind: DepKind::SharedSource });
            }
        }
    }
    Ok(deps)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The config's path relative to the repository root, if there is one.
fn find_config(req: &Request, git: &Git) -> Result<Option<String>, DetectError> {
    let candidates = match &req.config {
        Some(explicit) => vec![explicit.clone()],
        None => vec![req.dir.join(CONFIG_FILE), git.root.join(CONFIG_FILE)],
    };
    let root = git.root.canonicalize().unwrap_or_else(|_| git.root.clone());
    for candidate in candidates {
        let Ok(abs) = candidate.canonicalize() else {
            if req.config.is_some() {
                return Err(DetectError::Io {
                    path: candidate,
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            }
            continue;
        };
        let rel = abs
            .strip_prefix(&root)
            .map_err(|_| DetectError::ConfigOutsideRepo { path: candidate.clone(), root: root.clone() })?;
        return Ok(Some(rel.to_string_lossy().replace('\\', "/")));
    }
    Ok(None)
}

/// The config as the head has it; `None` when it is absent or broken
/// (`validate` reports that).
fn read_config(tree: &Tree<'_>, config_rel: &str) -> Result<Option<Config>, DetectError> {
    tracing::debug!(target: "flow_ci::config", "reading {config_rel} as the head has it");
    let Some(bytes) = tree.read(config_rel)? else {
        return Ok(None);
    };
    let Ok(Some(root)) = model::yaml::parse(&String::from_utf8_lossy(&bytes)) else {
        return Ok(None);
    };
    let mut ignored = Diagnostics::default();
    Ok(config::decode(Path::new(config_rel), &root, &mut ignored))
}

/// Adds run files, data and evaluation flows from `.flow-ci.yaml` as
/// dependencies; returns (flow, evaluation flow) pairs.
fn config_dependencies(
    tree: &Tree<'_>,
    config_rel: &str,
    loaded: Option<&Config>,
    flow_dirs: &[String],
    flow_index: &HashMap<&str, usize>,
    deps: &mut Vec<Dependency>,
) -> Result<Vec<(usize, usize)>, DetectError> {
    let read;
    let config = match loaded {
        Some(config) => config,
        None => match read_config(tree, config_rel)? {
            Some(config) => {
                read = config;
                &read
            }
            None => return Ok(vec![]),
        },
    };
    let config_dir = Path::new(config_rel).parent().map_or_else(String::new, |p| p.to_string_lossy().into_owned());
    // One batch read for every run file the config names.
    let run_paths: Vec<String> = config
        .flows
        .iter()
        .flat_map(|e| e.run.iter().chain(&e.evaluations))
        .filter_map(|r| join_rel(&config_dir, &r.value))
        .collect();
    let contents = tree.read_many(&run_paths)?;
    let mut pairs = Vec::new();
    for entry in &config.flows {
        let flows = select_flows(&config_dir, &entry.path.value, flow_dirs);
        // A port is checked with its flow: any file of its folder counts.
        let port_dir = entry.port.as_ref().and_then(|p| {
            let file = join_rel(&config_dir, &p.workflow.value)?;
            Some(Path::new(&file).parent().map_or_else(String::new, |d| d.to_string_lossy().into_owned()))
        });
        if let Some(dir) = port_dir {
            for &flow in &flows {
                deps.push(Dependency { path: dir.clone(), is_dir: true, flow, kind: DepKind::Port });
            }
        }
        let run_files = entry.run.iter().chain(&entry.evaluations).filter_map(|r| join_rel(&config_dir, &r.value));
        for run_path in run_files {
            let run_deps = run_file_dependencies(&run_path, contents.get(&run_path).map(Vec::as_slice));
            for &flow in &flows {
                for path in std::iter::once(&run_path).chain(&run_deps.files) {
                    deps.push(Dependency { path: path.clone(), is_dir: false, flow, kind: DepKind::RunFile });
                }
                if let Some(&eval) = run_deps.flow.as_deref().and_then(|f| flow_index.get(f)) {
                    pairs.push((flow, eval));
                }
            }
        }
    }
    Ok(pairs)
}

fn select_flows(config_dir: &str, pattern: &str, flow_dirs: &[String]) -> Vec<usize> {
    let Some(joined) = join_rel(config_dir, pattern.trim_end_matches('/')) else {
        return vec![];
    };
    if !pattern.contains(['*', '?', '[', '{']) {
        return flow_dirs.iter().position(|d| *d == joined).into_iter().collect();
    }
    let Ok(glob) = globset::GlobBuilder::new(&joined).literal_separator(true).build() else {
        return vec![];
    };
    let matcher = glob.compile_matcher();
    flow_dirs.iter().enumerate().filter(|(_, d)| matcher.is_match(d.as_str())).map(|(i, _)| i).collect()
}

struct RunDeps {
    /// The run file's flow folder.
    flow: Option<String>,
    /// Its local data file.
    files: Vec<String>,
}

fn run_file_dependencies(run_path: &str, contents: Option<&[u8]>) -> RunDeps {
    let mut deps = RunDeps { flow: None, files: vec![] };
    let Some(bytes) = contents else {
        return deps;
    };
    let Ok(Some(root)) = model::yaml::parse(&String::from_utf8_lossy(bytes)) else {
        return deps;
    };
    let mut ignored = Diagnostics::default();
    let Some(run) = run_file::decode(Path::new(run_path), &root, &mut ignored) else {
        return deps;
    };
    let run_dir = Path::new(run_path).parent().map_or_else(String::new, |p| p.to_string_lossy().into_owned());
    deps.flow = run.flow.as_ref().and_then(|f| join_rel(&run_dir, &f.value));
    if let Some(data) = run.data.as_ref().filter(|d| !run_file::is_remote(&d.value)) {
        deps.files.extend(join_rel(&run_dir, &data.value));
    }
    deps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_dirs_and_owners() {
        let files = ["flows/a/flow.dag.yaml", "flows/a/x.py", "flows/b c/flow.dag.yaml", "README.md"];
        let dirs = flow_dirs(&files);
        assert_eq!(dirs, vec!["flows/a", "flows/b c"]);
        let index: HashMap<&str, usize> = dirs.iter().enumerate().map(|(i, d)| (d.as_str(), i)).collect();
        assert_eq!(owning_flow("flows/a/sub/x.py", &index), Some(0));
        assert_eq!(owning_flow("flows/ab/x.py", &index), None);
        assert_eq!(owning_flow("flows/b c/p.jinja2", &index), Some(1));
    }

    #[test]
    fn relative_joins_stay_in_the_repository() {
        assert_eq!(join_rel("flows/a", "../common/u.py").as_deref(), Some("flows/common/u.py"));
        assert_eq!(join_rel("flows/a", "../../../x"), None);
        assert_eq!(join_rel("", "data.jsonl").as_deref(), Some("data.jsonl"));
    }

    #[test]
    fn globs_select_flow_folders() {
        let dirs = vec!["flows/a".to_string(), "flows/b".to_string(), "other/c".to_string()];
        assert_eq!(select_flows("", "flows/*", &dirs), vec![0, 1]);
        assert_eq!(select_flows("flows", "b", &dirs), vec![1]);
    }
}
