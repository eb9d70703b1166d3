//! The baseline of a check: the same runs at the merge base (cached by a
//! content hash of everything they read), or a committed metrics file.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::flows::{Runner, in_parallel, run_flow};
use super::plan::{Plan, PlannedFlow};
use super::{CheckError, CheckRequest, canonical};
use crate::detect::git::Git;
use crate::report::{Report, Scores};
use backend::Target;
use exec::store::Store;
use model::config::Backend;
use model::diag::Diagnostics;
use model::flow::run_file;

/// What is known about a flow at the base: metrics, and (for base-branch
/// baselines) the batch run's outputs, to show lines whose output changed.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct BaseData {
    pub metrics: Map<String, Json>,
    #[serde(default)]
    pub outputs: Vec<Map<String, Json>>,
    #[serde(default)]
    pub scores: Scores,
    /// The base runs' model calls (absent from baselines cached by earlier versions).
    #[serde(default)]
    pub llm: Option<crate::report::LlmUsage>,
}

/// Baselines by flow path.
pub(super) type Baselines = std::collections::HashMap<String, BaseData>;

/// `base-branch`: the same flows, run files and evaluations at the merge
/// base of `--base` and the head, checked out in a temporary git worktree.
/// Without `--base` there is nothing to compare with.
pub(super) fn base_branch_metrics(
    plan: &Plan,
    req: &CheckRequest,
    runner: &Runner<'_>,
) -> Result<Option<Baselines>, CheckError> {
    let Some(base) = &req.base else { return Ok(None) };
    let git = Git::open(Path::new("."))?;
    let head = git.resolve(req.head.as_deref().unwrap_or("HEAD"))?;
    let merge_base = git.merge_base(&git.resolve(base)?, &head)?;
    // Cloud runs of the baseline are for the merge base: a run a build of
    // that commit already made has the same id and is reused, not re-run.
    let provenance = backend::azureml::Provenance { commit: Some(merge_base.clone()), branch: Some(base.clone()) };
    let target = match &runner.target {
        Target::AzureMl(cloud) => Target::AzureMl(backend::CloudRun { provenance, ..cloud.clone() }),
        Target::Local => Target::Local,
    };
    let runner = &Runner { target, ..runner.clone() };
    let root = canonical(&git.root);
    let cache = BaselineCache { dir: req.runs_dir.parent().unwrap_or(Path::new(".")).join("cache/baseline") };
    let mut metrics = Baselines::new();
    let mut missing = Vec::new();
    for flow in &plan.flows {
        let key = baseline_key(&git, &root, &merge_base, flow, plan.backend)?;
        match cache.get(&key) {
            Some(m) => {
                tracing::info!("baseline of {} from cache ({key})", flow.path);
                metrics.insert(flow.path.clone(), m);
            }
            None => missing.push((flow, key)),
        }
    }
    if missing.is_empty() {
        return Ok(Some(metrics));
    }
    let scratch =
        tempfile::Builder::new().prefix("flow-ci-base-").tempdir().map_err(|e| CheckError::Baseline(e.to_string()))?;
    let tree = scratch.path().join("tree");
    git.add_worktree(&tree, &merge_base)?;
    let store = Store::new(scratch.path().join("runs"));
    let in_base = |p: &Path| canonical(p).strip_prefix(&root).ok().map(|rel| tree.join(rel));
    let computed = in_parallel(&missing, req.parallel, |(flow, key)| {
        let (Some(run), Some(dir)) = (flow.run_file.as_deref().and_then(in_base), in_base(&flow.dir)) else {
            return None;
        };
        if !dir.join(model::flow::FLOW_FILE).is_file() || !run.is_file() {
            return None; // a flow new in this change has no baseline
        }
        let base_flow = PlannedFlow {
            run_file: Some(run),
            evaluations: flow.evaluations.iter().filter_map(|e| in_base(e)).filter(|e| e.is_file()).collect(),
            dir,
            // Parity is the port against the flow on the same commit: the
            // baseline runs the flow only.
            port: None,
            ..(*flow).clone()
        };
        tracing::info!("baseline of {}: running it at {merge_base}", flow.path);
        let report = run_flow(&base_flow, &store, runner);
        if !report.errors.is_empty() {
            return None;
        }
        let outputs = report.batch_run.as_deref().and_then(|b| store.outputs(b).ok()).unwrap_or_default();
        let data = BaseData { metrics: report.metrics, outputs, scores: report.scores, llm: report.llm };
        cache.put(key, &data);
        Some((flow.path.clone(), data))
    });
    metrics.extend(computed.into_iter().flatten());
    let _ = git.remove_worktree(&tree);
    Ok(Some(metrics))
}

/// Base metrics by content hash, under `.flow-ci/cache/baseline/`.
struct BaselineCache {
    dir: PathBuf,
}

impl BaselineCache {
    fn get(&self, key: &str) -> Option<BaseData> {
        let text = std::fs::read_to_string(self.dir.join(format!("{key}.json"))).ok()?;
        // A corrupt entry is ignored and rewritten after the base runs again.
        serde_json::from_str(&text).ok()
    }

    fn put(&self, key: &str, data: &BaseData) {
        let text = serde_json::to_string(data).unwrap_or_default();
        let write = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(self.dir.join(format!("{key}.json")), text));
        if let Err(e) = write {
            tracing::warn!("cannot cache the baseline in {}: {e}", self.dir.display());
        }
    }
}

/// A content hash of everything the base runs read: the flow folder, its run
/// and evaluation files, the flows and data those name, and the flow's
/// includes, as they are at the merge base (git blob ids), plus the flow-ci
/// version. An unchanged base gets the same key and is never run again.
fn baseline_key(
    git: &Git,
    root: &Path,
    merge_base: &str,
    flow: &PlannedFlow,
    backend: Backend,
) -> Result<String, CheckError> {
    use sha2::Digest;
    let rel = |p: &Path| canonical(p).strip_prefix(root).ok().map(|r| r.to_string_lossy().replace('\\', "/"));
    let mut paths: Vec<String> = Vec::new();
    paths.extend(rel(&flow.dir));
    let mut diags = Diagnostics::default();
    for file in flow.run_file.iter().chain(&flow.evaluations) {
        paths.extend(rel(file));
        if let Some(run) = run_file::load(file, &mut diags) {
            paths.extend(run.flow_dir().as_deref().and_then(rel));
            paths.extend(run.local_data().as_deref().and_then(rel));
        }
    }
    if let Some(f) = model::flow::dag::load(&flow.dir, &mut diags) {
        paths.extend(f.additional_includes.iter().filter_map(|i| rel(&flow.dir.join(&i.value))));
    }
    paths.sort();
    paths.dedup();
    let listing = git.tree_listing(merge_base, &paths)?;
    let mut hasher = sha2::Sha256::new();
    hasher.update(concat!("flow-ci baseline v2 ", env!("CARGO_PKG_VERSION")).as_bytes());
    hasher.update(&listing);
    hasher.update(backend.as_str().as_bytes());
    Ok(base16ct::lower::encode_string(&hasher.finalize()))
}

/// `file:PATH` baselines: `{"flows": {"<flow path>": {"metric": value}}}`.
pub(super) fn load_baseline(plan: &Plan, path: &str) -> Result<Baselines, CheckError> {
    let base_dir = plan.config.as_deref().and_then(Path::parent).unwrap_or(Path::new("."));
    let full = base_dir.join(path);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| CheckError::Baseline(format!("cannot read baseline {}: {e}", full.display())))?;
    let doc: Json = serde_json::from_str(&text)
        .map_err(|e| CheckError::Baseline(format!("{} is not a flow-ci baseline file: {e}", full.display())))?;
    let flows = doc.get("flows").and_then(Json::as_object).cloned().unwrap_or_default();
    Ok(flows
        .into_iter()
        .filter_map(|(path, m)| Some((path, BaseData { metrics: m.as_object()?.clone(), ..BaseData::default() })))
        .collect())
}

/// The baseline file `--write-baseline` produces from a report.
pub fn baseline_document(report: &Report) -> Json {
    let flows: Map<String, Json> =
        report.flows.iter().map(|f| (f.path.clone(), Json::Object(f.metrics.clone()))).collect();
    serde_json::json!({ "flows": flows })
}
