//! The run calls `pfazure` makes: submit, status (run history's `rundata`),
//! logs, per-line results (`childRuns`, 25 a page), metrics (`lastvalues`)
//! and cancel.

use serde_json::{Map, Value as Json, json};

use super::AzureMlError;
use super::client::Client;
use super::workspace::Workspace;

/// Lines fetched per `childRuns` call (promptflow's page size).
const PAGE: u64 = 25;

pub struct Service<'a> {
    pub client: &'a Client,
    pub workspace: &'a Workspace,
}

/// A run as run history describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunState {
    pub status: String,
    /// `error.error.message` of a failed or canceled run.
    pub error: Option<String>,
    pub display_name: Option<String>,
    /// The run's tags (`flow-ci.content`: what flow-ci derived from its
    /// flow, data, settings and commit; none on a run flow-ci did not submit).
    pub tags: Map<String, Json>,
}

impl RunState {
    /// `Completed`, `Failed` and `Canceled` end a run; every other status
    /// (NotStarted, Preparing, Running, Finalizing, ...) is still going.
    pub fn is_terminal(&self) -> bool {
        self.status == "Completed" || self.ended_unfinished()
    }

    /// The `flow-ci.content` tag.
    pub fn content(&self) -> Option<&str> {
        self.tags.get(super::submission::CONTENT_TAG).and_then(Json::as_str)
    }

    /// Failed or cancelled (the flow service spells it `Cancelled`).
    pub fn ended_unfinished(&self) -> bool {
        matches!(self.status.as_str(), "Failed" | "Canceled" | "Cancelled")
    }
}

impl Service<'_> {
    fn flow_url(&self, rest: &str) -> String {
        self.workspace.service_url("flow/api", rest)
    }

    /// Submits a run; the service answers with its id.
    pub fn submit(&self, body: &Json) -> Result<String, AzureMlError> {
        let answer = self.client.post_as_user(&self.flow_url("/BulkRuns/submit"), body)?;
        Ok(answer.as_str().map(str::to_string).unwrap_or_else(|| body["runId"].as_str().unwrap_or_default().into()))
    }

    /// The run's status, or `None` when there is no run with that id.
    pub fn state(&self, id: &str) -> Result<Option<RunState>, AzureMlError> {
        let url = self.workspace.service_url("history/v1.0", "/rundata");
        let body = json!({"runId": id, "selectRunMetadata": true, "selectRunDefinition": true, "selectJobSpecification": true});
        let answer = match self.client.post(&url, &body) {
            Ok(a) => a,
            Err(AzureMlError::Service { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = answer.get("runMetadata").unwrap_or(&answer);
        let text = |v: Option<&Json>| v.and_then(Json::as_str).map(str::to_string);
        Ok(Some(RunState {
            status: text(meta.get("status")).unwrap_or_else(|| "NotStarted".into()),
            error: text(meta.pointer("/error/error/message")),
            display_name: text(meta.get("displayName")),
            tags: meta.get("tags").and_then(Json::as_object).cloned().unwrap_or_default(),
        }))
    }

    /// A run's `azureml.promptflow.snapshot_id` (run history `rundata`
    /// properties, as promptflow-azure's `AsyncRunDownloader` reads it), or
    /// `None` for no such run.
    pub fn snapshot_id(&self, id: &str) -> Result<Option<String>, AzureMlError> {
        let url = self.workspace.service_url("history/v1.0", "/rundata");
        // The payload `pfazure run download` posts (`_get_run_data_from_run_history`).
        let body = json!({"runId": id, "selectRunMetadata": true, "selectRunDefinition": true, "selectJobSpecification": true});
        match self.client.post(&url, &body) {
            Ok(answer) => Ok(answer
                .pointer("/runMetadata/properties/azureml.promptflow.snapshot_id")
                .and_then(Json::as_str)
                .map(str::to_string)),
            Err(AzureMlError::Service { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The files of a run's flow snapshot and a SAS URL to read each
    /// (`POST content/v2.0{WS}/snapshots/sas`, a tree of `children` with
    /// `absoluteUrl` leaves: promptflow-azure's `_get_flow_snapshot_urls`).
    pub fn snapshot_files(&self, snapshot: &str) -> Result<Vec<(String, String)>, AzureMlError> {
        let url = self.workspace.service_url("content/v2.0", "/snapshots/sas");
        let tree = self.client.post(&url, &json!({ "snapshotOrAssetId": snapshot }))?;
        let mut files = Vec::new();
        walk_snapshot(&tree, "", &mut files);
        Ok(files)
    }

    /// The whole log so far (the service sends it as a JSON string).
    pub fn logs(&self, id: &str) -> Result<String, AzureMlError> {
        let answer = self.client.get(&self.flow_url(&format!("/BulkRuns/{id}/logContent")))?;
        Ok(match answer {
            Json::String(s) => s,
            Json::Null => String::new(),
            other => other.to_string(),
        })
    }

    /// Every line's record, sorted by `index`. Pages of 25 are asked for
    /// until one comes back empty: a page may hold fewer lines than asked
    /// (promptflow-azure's `_get_flow_runs_pagination` stops only on an
    /// empty page too) and lines need not come in order (pfazure sorts them
    /// by `index`).
    pub fn child_runs(&self, id: &str) -> Result<Vec<Json>, AzureMlError> {
        let index = |line: &Json| line.get("index").and_then(Json::as_u64);
        let mut lines: Vec<Json> = Vec::new();
        let mut start = 0u64;
        loop {
            let url =
                self.flow_url(&format!("/BulkRuns/{id}/childRuns?startIndex={start}&endIndex={}", start + PAGE - 1));
            let page = match self.client.get(&url)? {
                Json::Array(page) => page,
                _ => vec![],
            };
            // The next page starts after the highest line seen (or after this
            // range, when a page's lines carry no index).
            let next = page.iter().filter_map(index).max().map_or(start + PAGE, |i| i + 1);
            if page.is_empty() || next <= start {
                break;
            }
            lines.extend(page);
            start = next;
        }
        lines.sort_by_key(|l| index(l).unwrap_or(u64::MAX));
        lines.dedup_by(|a, b| index(a).is_some() && index(a) == index(b));
        Ok(lines)
    }

    /// Metrics the flow logged, without promptflow's own bookkeeping
    /// (`__pf__.*`, `*.completed`, `*.failed`, ...), as `pfazure` hides them.
    pub fn metrics(&self, id: &str) -> Result<Map<String, Json>, AzureMlError> {
        let url = self.workspace.service_url("metric/v2.0", &format!("/runs/{id}/lastvalues"));
        let answer = self.client.post(&url, &json!({}))?;
        let mut metrics = Map::new();
        for metric in answer.get("value").and_then(Json::as_array).into_iter().flatten() {
            let Some(name) = metric.get("name").and_then(Json::as_str) else { continue };
            let hidden = name.starts_with("__pf__")
                || [".completed", ".bypassed", ".failed", ".is_completed"].iter().any(|s| name.ends_with(s));
            let value = metric.pointer("/value/0/data").and_then(|d| d.get(name));
            if let (false, Some(value)) = (hidden, value) {
                metrics.insert(name.to_string(), value.clone());
            }
        }
        Ok(metrics)
    }

    pub fn cancel(&self, id: &str) -> Result<(), AzureMlError> {
        self.client.post_empty(&self.flow_url(&format!("/BulkRuns/{id}/cancel"))).map(drop)
    }

    /// The studio page of a run, in the cloud's studio.
    pub fn portal_url(&self, id: &str) -> String {
        format!(
            "{}/prompts/flow/bulkrun/run/{id}/details?wsid={}",
            self.client.studio,
            self.workspace.reference.arm_path()
        )
    }
}

/// (path below the snapshot, SAS URL) of every file of a snapshot tree.
fn walk_snapshot(node: &Json, path: &str, files: &mut Vec<(String, String)>) {
    if let Some(url) = node.get("absoluteUrl").and_then(Json::as_str).filter(|u| !u.is_empty()) {
        files.push((path.to_string(), url.to_string()));
    }
    for (name, child) in node.get("children").and_then(Json::as_object).into_iter().flatten() {
        let child_path = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
        walk_snapshot(child, &child_path, files);
    }
}
