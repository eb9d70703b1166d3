//! One run on Azure ML from start to finish: upload the flow and data,
//! find the run a retried job already submitted or submit it, wait with
//! progress (cancelling on interrupt or timeout), and copy its logs, lines
//! and metrics into the local run store, so `run show`, gates and reports
//! read a cloud run exactly like a local one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};

use super::service::{RunState, Service};
use super::snapshot::{self, Snapshot};
use super::submission::{self, Provenance, Uploads};
use super::{AzureMlError, Session};
use exec::job::Job;
use exec::line::{LineRun, RunError, Status};
use exec::store::{LineCounts, RunRecord, RunStatus, RunWriter, Store};

/// The run-store property holding a run's id in the workspace.
pub const RUN_ID_PROPERTY: &str = "azureml.run_id";

/// The run-store property holding the content hash of the flow a run ran
/// (azure-ai-ml's hash of the snapshot as uploaded), local or cloud.
pub const FLOW_HASH_PROPERTY: &str = "flow-ci.flow_hash";

/// The run-store properties naming the datastore folder a cloud run's flow
/// was submitted from (`flowDefinitionDataStoreName`, and
/// `flowDefinitionBlobPath` without `/flow.dag.yaml`): content-addressed,
/// so `deploy --run` registers the model from exactly what the run ran.
pub const FLOW_DATASTORE_PROPERTY: &str = "azureml.flow_datastore";
pub const FLOW_PATH_PROPERTY: &str = "azureml.flow_path";

/// How long to wait for a cancelled run to say so.
const CANCEL_WAIT: Duration = Duration::from_secs(60);

/// Where a run goes: the session, and the commit and branch it is for (the
/// baseline's runs are for the merge base).
#[derive(Clone)]
pub struct CloudRun<'a> {
    pub session: &'a Session,
    pub provenance: Provenance,
    /// The run's id in the workspace when the user named it (`run create
    /// --name N`, as `pfazure run create --name N` makes N the run's name);
    /// else an id derived from the content, which a retried job finds again.
    pub name: Option<String>,
}

/// Runs `job` in the workspace and records it in `store` under `job.name`.
pub fn run(
    cloud: &CloudRun<'_>,
    job: &Job,
    store: &Store,
    cancel: &AtomicBool,
    force: bool,
) -> Result<RunRecord, AzureMlError> {
    let session = cloud.session;
    let service = session.service();
    let identity = match job.run_file.as_ref().and_then(|f| Some((f, f.identity.as_ref()?))) {
        Some((file, identity)) => session.workspace().run_identity(&file.file, identity)?,
        None => None,
    };
    let uploads = upload(session, job, store)?;
    let flow_path = Session::repo_path(&job.flow);
    let submit = Submit {
        job,
        uploads: &uploads,
        identity: identity.as_deref(),
        provenance: &cloud.provenance,
        flow_path: &flow_path,
    };
    let id = match &cloud.name {
        Some(name) => find_or_submit_named(session, &service, &submit, name)?,
        None => find_or_submit(session, &service, &submit)?,
    };
    let mut writer = store.create(&job.name, force)?;
    let mut record = exec::job::new_record(job);
    record.backend = "azureml".into();
    record.created_on = exec::line::now_iso();
    record.properties.insert(RUN_ID_PROPERTY.into(), json!(id));
    record.properties.insert("azureml.portal_url".into(), json!(service.portal_url(&id)));
    record.properties.insert(FLOW_DATASTORE_PROPERTY.into(), json!(uploads.datastore));
    record.properties.insert(FLOW_PATH_PROPERTY.into(), json!(uploads.flow_prefix));
    if let Some(hash) = uploads.flow_prefix.strip_prefix("LocalUpload/").and_then(|p| p.split('/').next()) {
        record.properties.insert(FLOW_HASH_PROPERTY.into(), json!(hash));
    }
    writer.write_record(&record)?;
    follow(session, &id, cancel, &mut writer, record)
}

/// Waits for a run and records how it ended.
fn follow(
    session: &Session,
    id: &str,
    cancel: &AtomicBool,
    writer: &mut RunWriter,
    mut record: RunRecord,
) -> Result<RunRecord, AzureMlError> {
    let service = session.service();
    let started = Instant::now();
    let state = wait(session, &service, &record.name, id, cancel)?;
    record.end_time = Some(exec::line::now_iso());
    record.duration_seconds += started.elapsed().as_secs_f64();
    finish(&service, id, state, writer, record)
}

/// The workspace id of a stored run, when it ran on Azure ML.
pub fn cloud_id(record: &RunRecord) -> Option<&str> {
    record.properties.get(RUN_ID_PROPERTY).and_then(Json::as_str)
}

/// `run stream`: follows a stored Azure ML run until it ends (printing its
/// log with `stream`), then fetches its results into the store again.
pub fn attach(session: &Session, store: &Store, name: &str, cancel: &AtomicBool) -> Result<RunRecord, AzureMlError> {
    let log = store.dir(name)?.join(exec::store::LOGS_FILE);
    let (record, id) = stored_cloud_run(store, name, &format!("its log is {}", log.display()))?;
    let mut writer = store.reopen(name)?;
    follow(session, &id, cancel, &mut writer, record)
}

/// `run stream` / `run show-details` with `--backend azureml` for a run this
/// store does not have: the workspace's run of that name (its id there, as
/// `pfazure run show-details --name N` finds it), followed to its end and
/// fetched into the store under the same name.
pub fn fetch(session: &Session, store: &Store, name: &str, cancel: &AtomicBool) -> Result<RunRecord, AzureMlError> {
    let service = session.service();
    let state = workspace_run(session, name)?;
    let tag = |k: &str| state.tags.get(k).and_then(Json::as_str).map(str::to_string);
    let record = RunRecord {
        name: name.into(),
        display_name: state.display_name.clone(),
        flow: tag("flow-ci.flow").unwrap_or_default().into(),
        run_file: None,
        data: None,
        run: None,
        variant: None,
        column_mapping: Map::new(),
        status: exec::store::RunStatus::Running,
        created_on: exec::line::now_iso(),
        end_time: None,
        duration_seconds: 0.0,
        lines: LineCounts::default(),
        error: None,
        aggregation_errors: vec![],
        tags: state.tags.clone(),
        properties: [
            (RUN_ID_PROPERTY.to_string(), json!(name)),
            ("azureml.portal_url".to_string(), json!(service.portal_url(name))),
        ]
        .into_iter()
        .collect(),
        backend: "azureml".into(),
        llm: None,
    };
    let mut writer = store.create(name, false)?;
    writer.write_record(&record)?;
    follow(session, name, cancel, &mut writer, record)
}

/// `run cancel`: asks the workspace to cancel a stored Azure ML run.
/// With `in_workspace`, a run the store does not have is the workspace's
/// run of that name.
pub fn cancel(session: &Session, store: &Store, name: &str, in_workspace: bool) -> Result<String, AzureMlError> {
    let id = match stored_cloud_run(store, name, "stop it with Ctrl-C where it runs") {
        Ok((_, id)) => id,
        Err(AzureMlError::Store(exec::store::StoreError::NotFound { .. })) if in_workspace => {
            workspace_run(session, name)?;
            name.to_string()
        }
        Err(e) => return Err(e),
    };
    session.service().cancel(&id)?;
    Ok(id)
}

/// The workspace's run `name`, or an error saying it is nowhere.
fn workspace_run(session: &Session, name: &str) -> Result<super::service::RunState, AzureMlError> {
    session.service().state(name)?.ok_or_else(|| {
        AzureMlError::Config(format!(
            "run `{name}` is neither in the run store nor in workspace `{}`",
            session.workspace().reference.workspace
        ))
    })
}

/// A stored run and its workspace id; `local` says what to do instead for a local run.
fn stored_cloud_run(store: &Store, name: &str, local: &str) -> Result<(RunRecord, String), AzureMlError> {
    let record = store.load(name)?;
    let id = cloud_id(&record)
        .ok_or_else(|| AzureMlError::Config(format!("run `{name}` ran locally; {local}")))?
        .to_string();
    Ok((record, id))
}

/// Uploads the flow (with its `additional_includes`) and a local data
/// file; resolves an evaluation's base run to its id in the workspace.
fn upload(session: &Session, job: &Job, store: &Store) -> Result<Uploads, AzureMlError> {
    let datastore = session.datastore()?;
    let (flow_snapshot, _staged) = flow_snapshot(&job.flow)?;
    let flow_prefix = snapshot::upload(&datastore.container, &flow_snapshot)?.prefix;
    let data_uri = match (&job.data, job.run_file.as_ref().and_then(|f| f.data.as_ref())) {
        (Some(path), _) => {
            let data = Snapshot::of(path).map_err(|e| io_error(path, e))?;
            let prefix = snapshot::upload(&datastore.container, &data)?.prefix;
            Some(format!("azureml://datastores/{}/paths/{}", datastore.name, data_path(path, &prefix)))
        }
        (None, Some(remote)) if model::flow::run_file::is_remote(&remote.value) => Some(remote.value.clone()),
        _ => None,
    };
    let base_run = job.base.as_ref().map(|base| {
        // A run of this store knows its cloud id; any other name is taken
        // as a run id in the workspace (as `pfazure run create --run` does).
        store.load(base).ok().and_then(|r| cloud_id(&r).map(str::to_string)).unwrap_or_else(|| base.clone())
    });
    Ok(Uploads { datastore: datastore.name.clone(), flow_prefix, data_uri, base_run })
}

/// The datastore path of uploaded data. A folder's prefix already ends in
/// its name (`LocalUpload/{hash}/{folder}`) and is named with a trailing
/// `/`; a file's blob is `LocalUpload/{hash}/{file}`. That is the
/// `relative_path` promptflow-azure's data upload hands back (azure-ai-ml
/// `_artifact_utilities._upload_and_generate_remote_uri`, used by
/// promptflow-azure's `RunOperations._resolve_data_to_asset_id`).
fn data_path(path: &Path, prefix: &str) -> String {
    if path.is_dir() {
        format!("{prefix}/")
    } else {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{prefix}/{file}")
    }
}

/// The flow folder as uploaded: with its `additional_includes` copied in
/// (the staging folder lives as long as the returned guard).
pub fn flow_snapshot(flow: &Path) -> Result<(Snapshot, Option<tempfile::TempDir>), AzureMlError> {
    let mut diags = model::diag::Diagnostics::default();
    let unreadable = || AzureMlError::Config(format!("cannot read the flow in {}", flow.display()));
    let loaded = model::flow::dag::load(flow, &mut diags).ok_or_else(unreadable)?;
    let dag = model::flow::read_yaml(&flow.join(model::flow::FLOW_FILE), &mut diags).ok_or_else(unreadable)?;
    let requirements = flow.join(REQUIREMENTS_FILE).is_file()
        || loaded
            .additional_includes
            .iter()
            .any(|i| Path::new(&i.value).file_name() == Some(REQUIREMENTS_FILE.as_ref()));
    let rewritten = cloud_dag(dag.to_json(), requirements);
    let staged = match (&rewritten, loaded.additional_includes.is_empty()) {
        (None, true) => None,
        _ => Some(exec::prepare::stage(&loaded).map_err(|e| AzureMlError::Config(e.to_string()))?),
    };
    if let (Some(dag), Some(dir)) = (&rewritten, &staged) {
        // JSON is YAML: the runtime reads it as promptflow's own dump would.
        let path = dir.path().join(model::flow::FLOW_FILE);
        let text = serde_json::to_string_pretty(dag).unwrap_or_default() + "\n";
        std::fs::write(&path, text).map_err(|e| io_error(&path, e))?;
    }
    let root = staged.as_ref().map_or(flow, |t| t.path());
    let snapshot = Snapshot::of(root).map_err(|e| io_error(root, e))?.named(&submission::folder_name(flow));
    Ok((snapshot, staged))
}

/// The requirements file promptflow-azure adds to an uploaded flow.
const REQUIREMENTS_FILE: &str = "requirements.txt";

/// `flow.dag.yaml` as pfazure uploads it (promptflow-azure's
/// `Flow._try_build_local_code`): `additional_includes` removed once they
/// are merged into the snapshot (the cloud runtime would look for
/// `../common`), and `environment.python_requirements_txt` set when the
/// folder has a requirements.txt and the DAG names none (else the
/// automatic runtime installs nothing). `None` when nothing changes.
fn cloud_dag(mut dag: Json, has_requirements: bool) -> Option<Json> {
    let map = dag.as_object_mut()?;
    let mut changed = map.remove("additional_includes").is_some();
    let named = map.get("environment").and_then(|e| e.get("python_requirements_txt")).is_some();
    if has_requirements && !named {
        let environment = map.entry("environment").or_insert_with(|| json!({}));
        if environment.is_null() {
            *environment = json!({});
        }
        if let Some(env) = environment.as_object_mut() {
            env.insert("python_requirements_txt".into(), json!(REQUIREMENTS_FILE));
            changed = true;
        }
    }
    changed.then_some(dag)
}

fn io_error(path: &Path, e: std::io::Error) -> AzureMlError {
    AzureMlError::Config(format!("cannot read {}: {e}", path.display()))
}

/// What a submission is made of.
struct Submit<'a> {
    job: &'a Job,
    uploads: &'a Uploads,
    /// The ARM id of the identity the run file's `identity:` resolved to.
    identity: Option<&'a str>,
    provenance: &'a Provenance,
    flow_path: &'a str,
}

impl Submit<'_> {
    /// The id derived from the content (also the run's `flow-ci.content` tag).
    fn content(&self) -> String {
        submission::run_id(self.job, self.uploads, self.provenance)
    }

    /// Submits the run as `id`; a submit whose answer was lost and was sent
    /// again (409) is the run submitted.
    fn send(&self, session: &Session, service: &Service<'_>, id: &str) -> Result<String, AzureMlError> {
        let mut body = submission::body(self.job, id, self.uploads, self.provenance, self.flow_path);
        if let Some(identity) = self.identity {
            body["identity"] = json!(identity);
        }
        body["tags"][submission::CONTENT_TAG] = json!(self.content());
        let id = match service.submit(&body) {
            Ok(id) => id,
            Err(AzureMlError::Service { status: 409, .. }) => id.to_string(),
            Err(e) => return Err(e),
        };
        session.say(&format!("{}: submitted {id}\n  {}", self.job.name, service.portal_url(&id)));
        Ok(id)
    }
}

/// The id derived from the inputs; reused when that run exists and did not
/// fail, else the next free `{id}_2`, `{id}_3`, ...
fn find_or_submit(session: &Session, service: &Service<'_>, submit: &Submit<'_>) -> Result<String, AzureMlError> {
    let first = submit.content();
    for attempt in 1..=20 {
        let id = if attempt == 1 { first.clone() } else { format!("{first}_{attempt}") };
        match service.state(&id)? {
            None => return submit.send(session, service, &id),
            Some(state) if state.ended_unfinished() => continue,
            Some(state) => {
                session
                    .say(&format!("{}: reusing {id} ({}; same flow, data and commit)", submit.job.name, state.status));
                return Ok(id);
            }
        }
    }
    Err(AzureMlError::Config(format!(
        "runs {first} to {first}_20 all failed; change the flow or its data to start afresh"
    )))
}

/// The user's name as the run's id. A run of that name made by this same
/// content (its `flow-ci.content` tag) is reused, so a retried job finds it;
/// any other run of that name is refused, as `pfazure run create` refuses
/// an existing name (the service answers 409 to its submit).
fn find_or_submit_named(
    session: &Session,
    service: &Service<'_>,
    submit: &Submit<'_>,
    name: &str,
) -> Result<String, AzureMlError> {
    let Some(state) = service.state(name)? else {
        return submit.send(session, service, name);
    };
    if state.content() != Some(submit.content().as_str()) {
        return Err(AzureMlError::Config(format!(
            "run {name} already exists in the workspace with other content (another flow, data, settings or commit); pass another --name, or none to let flow-ci derive the id from the content"
        )));
    }
    if state.ended_unfinished() {
        return Err(AzureMlError::Config(format!(
            "run {name} already exists in the workspace and ended {}; pass another --name to run it again",
            state.status
        )));
    }
    session.say(&format!("{}: reusing {name} ({}; same flow, data and commit)", submit.job.name, state.status));
    Ok(name.to_string())
}

/// Polls until the run ends: 1 s at first, doubling up to the session's
/// interval. Prints each status change (and new log text with `stream`).
fn wait(
    session: &Session,
    service: &Service<'_>,
    name: &str,
    id: &str,
    cancel: &AtomicBool,
) -> Result<RunState, AzureMlError> {
    let started = Instant::now();
    let mut interval = Duration::from_secs(1).min(session.settings.poll);
    let mut last_status = String::new();
    let mut since = Instant::now();
    let mut shown = 0;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return cancel_run(session, service, name, id);
        }
        if session.settings.deadline.is_some_and(|d| Instant::now() >= d) {
            cancel_run(session, service, name, id)?;
            return Err(AzureMlError::Timeout { run: id.into() });
        }
        let state = service.state(id)?.ok_or_else(|| AzureMlError::Vanished { run: id.into() })?;
        if state.status != last_status {
            session.say(&format!("{name}: {} ({}s)", state.status, started.elapsed().as_secs()));
            last_status = state.status.clone();
            since = Instant::now();
        }
        if STALLED.contains(&state.status.as_str()) && since.elapsed() >= session.settings.stall {
            cancel_run(session, service, name, id)?;
            let secs = session.settings.stall.as_secs();
            let waited = if secs < 120 { format!("{secs} s") } else { format!("{} min", secs / 60) };
            return Err(AzureMlError::Stalled { run: id.into(), status: state.status, waited });
        }
        if session.settings.stream {
            let logs = service.logs(id)?;
            if let Some(new) = logs.get(shown..).filter(|s| !s.is_empty()) {
                session.say(new.trim_end());
                shown = logs.len();
            }
        }
        if state.is_terminal() {
            return Ok(state);
        }
        sleep_unless(cancel, interval);
        interval = (interval * 2).min(session.settings.poll);
    }
}

/// Statuses a run can sit in without making progress or ending.
const STALLED: &[&str] = &["Paused", "NotResponding"];

/// Sleeps up to `d`, waking early when `cancel` is set.
fn sleep_unless(cancel: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !cancel.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

/// Asks the service to cancel and waits (bounded) for it to be Canceled.
fn cancel_run(session: &Session, service: &Service<'_>, name: &str, id: &str) -> Result<RunState, AzureMlError> {
    session.say(&format!("{name}: cancelling {id}"));
    service.cancel(id)?;
    let until = Instant::now() + CANCEL_WAIT;
    loop {
        let state = service.state(id)?.ok_or_else(|| AzureMlError::Vanished { run: id.into() })?;
        if state.is_terminal() || Instant::now() >= until {
            return Ok(RunState { status: "Canceled".into(), ..state });
        }
        std::thread::sleep(Duration::from_secs(1).min(session.settings.poll));
    }
}

/// Copies the finished run into the store: logs always; lines and metrics
/// when it completed. A failed run is an error carrying the service's message.
fn finish(
    service: &Service<'_>,
    id: &str,
    state: RunState,
    writer: &mut RunWriter,
    mut record: RunRecord,
) -> Result<RunRecord, AzureMlError> {
    writer.write_logs(&service.logs(id).unwrap_or_default())?;
    match state.status.as_str() {
        "Completed" => {
            let lines: Vec<LineRun> = service.child_runs(id)?.iter().map(line_run).collect();
            for line in &lines {
                writer.append_line(line)?;
            }
            writer.write_outputs(&lines.iter().collect::<Vec<_>>())?;
            writer.write_metrics(&service.metrics(id)?)?;
            let failed: Vec<&LineRun> = lines.iter().filter(|l| l.status == Status::Failed).collect();
            record.lines = LineCounts {
                total: lines.len(),
                completed: lines.iter().filter(|l| l.status == Status::Completed).count(),
                failed: failed.len(),
            };
            record.error = (!failed.is_empty()).then(|| exec::batch::summary(&failed, lines.len()));
            record.status = RunStatus::Completed;
            writer.write_record(&record)?;
            Ok(record)
        }
        "Failed" => {
            let message = state.error.unwrap_or_else(|| "the service gave no reason".into());
            record.status = RunStatus::Failed;
            record.error =
                Some(exec::store::ErrorSummary { message: message.clone(), failed_lines: vec![], first_error: None });
            writer.write_record(&record)?;
            Err(AzureMlError::RunFailed { run: id.into(), message })
        }
        _ => {
            record.status = RunStatus::Canceled;
            writer.write_record(&record)?;
            Ok(record)
        }
    }
}

/// A `childRuns` entry (snake_case) as a local line record.
fn line_run(child: &Json) -> LineRun {
    let mut inputs: Map<String, Json> = child.get("inputs").and_then(Json::as_object).cloned().unwrap_or_default();
    let line_number = child
        .get("index")
        .and_then(Json::as_u64)
        .or_else(|| inputs.get("line_number").and_then(Json::as_u64))
        .unwrap_or_default() as usize;
    inputs.remove("line_number");
    let status = match child.get("status").and_then(Json::as_str).unwrap_or_default() {
        "Completed" => Status::Completed,
        "Canceled" | "Cancelled" => Status::Canceled,
        "Bypassed" => Status::Bypassed,
        "NotStarted" => Status::NotStarted,
        "Running" => Status::Running,
        _ => Status::Failed,
    };
    let error = child.get("error").filter(|e| !e.is_null()).map(|e| RunError {
        kind: e.get("code").and_then(Json::as_str).unwrap_or("UserError").to_string(),
        message: e.get("message").and_then(Json::as_str).map_or_else(|| e.to_string(), str::to_string),
        node: None,
        traceback: None,
        location: None,
    });
    LineRun {
        line_number,
        status,
        inputs,
        outputs: child.get("output").and_then(Json::as_object).cloned().unwrap_or_default(),
        nodes: vec![],
        error,
        start_time: child.get("start_time").and_then(Json::as_str).unwrap_or_default().to_string(),
        duration_ms: 0,
        streams: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uploaded_dag_is_rewritten_as_pfazure_rewrites_it() {
        let dag = json!({"nodes": [], "additional_includes": ["../common"], "environment": null});
        let cloud = cloud_dag(dag, true).unwrap();
        assert_eq!(cloud, json!({"nodes": [], "environment": {"python_requirements_txt": "requirements.txt"}}));
        // A named requirements file is kept; nothing to change is None.
        let named = json!({"nodes": [], "environment": {"python_requirements_txt": "deps/req.txt"}});
        assert_eq!(cloud_dag(named, true), None);
        assert_eq!(cloud_dag(json!({"nodes": []}), false), None);
    }

    #[test]
    fn child_runs_become_line_records() {
        let ok = json!({"run_id":"r_0","status":"Completed","inputs":{"url":"u","line_number":3},"output":{"category":"App"},"index":3,"start_time":"2026-01-01T00:00:00Z"});
        let line = line_run(&ok);
        assert_eq!((line.line_number, line.status), (3, Status::Completed));
        assert_eq!(Json::Object(line.inputs), json!({"url": "u"}));
        assert_eq!(line.outputs["category"], "App");
        let failed = json!({"status":"Failed","inputs":{"line_number":4},"output":null,"index":4,"error":{"code":"UserError","message":"boom"}});
        let line = line_run(&failed);
        assert_eq!(line.status, Status::Failed);
        assert_eq!(line.error.unwrap().message, "boom");
        assert!(line.outputs.is_empty());
    }
}
