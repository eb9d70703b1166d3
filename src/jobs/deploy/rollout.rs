//! The rollout: register a flow and serve it from a managed online
//! endpoint, safely. The flow folder becomes a model (the next integer
//! version, its content hash kept in a property, so an unchanged flow finds
//! its version and is not registered twice), the
//! deployment is created or updated, smoke-tested with a sample line whose
//! output must have the shape the local executor gives, and only then does
//! traffic move to it. A failed smoke test leaves traffic where it was (and
//! takes back what an updated deployment held).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use backend::azureml::online::{self, Call, Target};
use backend::azureml::workspace::WorkspaceRef;
use backend::azureml::{AzureMlError, Session};
use model::config::Config;

use super::pin::Pinned;
use backend::azureml::snapshot::Snapshot;

/// `deploy:` with its defaults applied.
#[derive(Clone, Debug, Serialize)]
pub struct Spec {
    pub flow: PathBuf,
    pub model: String,
    /// `deploy.environment`: an image used as is, or `azureml:name:version`;
    /// `None`: promptflow's runtime image, built with the flow's requirements when it has some.
    pub environment: Option<String>,
    pub endpoint: String,
    pub deployment: String,
    pub instance_type: String,
    pub instance_count: u32,
    /// Percent of traffic the new deployment gets once it passes.
    pub traffic: u32,
    /// The smoke test's inputs: the first line of the flow's batch run.
    pub sample: Map<String, Json>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Cloud(#[from] AzureMlError),
    #[error("the smoke test failed: {0}")]
    Smoke(String),
    #[error("{0}")]
    Gates(String),
}

impl DeployError {
    pub fn exit_code(&self) -> u8 {
        match self {
            DeployError::Config(_) => model::exit::INVALID_INPUT,
            DeployError::Cloud(e) => e.exit_code(),
            DeployError::Smoke(_) | DeployError::Gates(_) => model::exit::GATE_FAILED,
        }
    }
}

/// Reads `deploy:`: `endpoint` is required; `flow` may be left out when the
/// config names one flow. The sample line comes from the flow's run file.
pub fn spec(config: &Config) -> Result<Spec, DeployError> {
    let get = |key: &str| config.deploy.iter().find(|(k, _)| k.value == key).map(|(_, v)| v.value.clone());
    let base = config.file.parent().unwrap_or(Path::new("."));
    let flow = match (get("flow"), config.flows.as_slice()) {
        (Some(flow), _) => flow,
        (None, [only]) => only.path.value.clone(),
        _ => {
            return Err(DeployError::Config(format!(
                "{}: `deploy:` needs `flow:` (which flow to deploy)",
                config.file.display()
            )));
        }
    };
    let endpoint = get("endpoint")
        .ok_or_else(|| DeployError::Config(format!("{}: `deploy:` needs `endpoint:`", config.file.display())))?;
    let number = |key: &str, default: u32, max: u32| -> Result<u32, DeployError> {
        match get(key) {
            None => Ok(default),
            Some(v) => v.parse().ok().filter(|n| *n <= max).ok_or_else(|| {
                DeployError::Config(format!(
                    "{}: deploy.{key} is `{v}`; use a whole number up to {max}",
                    config.file.display()
                ))
            }),
        }
    };
    let flow_dir = base.join(&flow);
    let run_file = config
        .flows
        .iter()
        .find(|f| f.path.value == flow)
        .and_then(|f| f.run.as_ref().map(|r| base.join(&r.value)))
        .unwrap_or_else(|| flow_dir.join("run.yml"));
    Ok(Spec {
        model: get("model").unwrap_or_else(|| backend::azureml::submission::folder_name(&flow_dir)),
        environment: get("environment"),
        deployment: get("deployment").unwrap_or_else(|| "blue".into()),
        instance_type: get("instance_type").unwrap_or_else(|| "Standard_DS3_v2".into()),
        instance_count: number("instance_count", 1, 100)?,
        traffic: number("traffic", 100, 100)?,
        sample: sample_inputs(&flow_dir, &run_file)?,
        flow: flow_dir,
        endpoint,
    })
}

/// The first line of the run file's data, mapped as the batch run maps it.
fn sample_inputs(flow_dir: &Path, run_file: &Path) -> Result<Map<String, Json>, DeployError> {
    let prepared = exec::prepare::prepare(flow_dir, None).map_err(|e| DeployError::Config(e.to_string()))?;
    let mut diags = model::diag::Diagnostics::default();
    let run = model::flow::run_file::load(run_file, &mut diags);
    let data = run
        .as_ref()
        .and_then(|r| r.local_data())
        .map(|p| model::data::load(&p))
        .transpose()
        .map_err(|e| DeployError::Config(e.report()))?;
    let mapping: Vec<_> =
        run.iter().flat_map(|r| &r.column_mapping).map(|(k, v)| (k.value.clone(), v.value.clone())).collect();
    let lines = exec::batch::map_inputs(&prepared, &mapping, data.as_ref(), None).unwrap_or_default();
    let inputs = lines.into_iter().next().map(|(_, inputs)| inputs).unwrap_or_default();
    let missing = prepared.flow.missing_inputs(&inputs);
    if !missing.is_empty() {
        return Err(DeployError::Config(format!(
            "the smoke test has no value for {} of {}: give the flow a run file with data ({})",
            missing.join(", "),
            flow_dir.display(),
            run_file.display()
        )));
    }
    Ok(inputs)
}

impl Spec {
    fn target(
        &self,
        workspace: WorkspaceRef,
        arm_url: String,
        datastore: &str,
        location: &str,
        content: Content<'_>,
        provenance: &backend::azureml::Provenance,
    ) -> Target {
        let Content { hash: content_hash, path: model_path, pinned, .. } = content;
        let mut tags = Map::new();
        tags.insert("flow-ci.flow".into(), json!(Session::repo_path(&self.flow)));
        if let Some(commit) = &provenance.commit {
            tags.insert("flow-ci.commit".into(), json!(commit));
        }
        match pinned {
            Some(Pinned::Cloud { id, .. }) => {
                tags.insert("flow-ci.run".into(), json!(id));
            }
            Some(Pinned::Local { run, .. }) | Some(Pinned::Workspace { id: run }) => {
                tags.insert("flow-ci.run".into(), json!(run));
            }
            None => {}
        }
        Target {
            workspace,
            arm_url,
            model: self.model.clone(),
            // Resolved against the registry before the model is used.
            model_version: "{nextVersion}".into(),
            content_hash: content_hash.into(),
            model_path: model_path.into(),
            datastore: datastore.into(),
            environment: content.environment,
            endpoint: self.endpoint.clone(),
            deployment: self.deployment.clone(),
            instance_type: self.instance_type.clone(),
            instance_count: self.instance_count,
            model_properties: model_properties(&self.flow),
            tags,
            location: location.into(),
        }
    }
}

/// What the model is registered from: the content hash and datastore
/// folder of the flow, and the run it was pinned to.
struct Content<'a> {
    hash: &'a str,
    path: &'a str,
    pinned: Option<&'a Pinned>,
    environment: online::Environment,
}

/// `deploy.environment` as the deployment names it: `azureml:name:version`
/// is an environment the user registered; anything else an image.
fn named_environment(text: &str, workspace: &WorkspaceRef) -> Result<online::Environment, DeployError> {
    let Some(asset) = text.strip_prefix("azureml:") else { return Ok(online::Environment::Image(text.into())) };
    match asset.trim_start_matches('/').split_once(':') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() && !version.contains(':') => Ok(
            online::Environment::Existing(format!("{}/environments/{name}/versions/{version}", workspace.arm_path())),
        ),
        _ => Err(DeployError::Config(format!(
            "deploy.environment `{text}`: name an environment version as azureml:<name>:<version>, or give an image"
        ))),
    }
}

/// The requirements file a flow's DAG names (`environment.python_requirements_txt`;
/// the uploaded DAG names requirements.txt when the folder has one), read by `read`.
fn flow_requirements(
    read: &dyn Fn(&str) -> Result<Option<String>, DeployError>,
) -> Result<Option<String>, DeployError> {
    let Some(dag) = read(model::flow::FLOW_FILE)? else { return Ok(None) };
    let dag = model::yaml::parse(&dag).ok().flatten().map(|n| n.to_json()).unwrap_or_default();
    match dag.pointer("/environment/python_requirements_txt").and_then(Json::as_str) {
        Some(file) => read(file),
        None => Ok(None),
    }
}

/// The build context of a flow's environment: a `Dockerfile` from the
/// runtime image that installs `requirements.txt`, and that file.
fn build_context(requirements: &str) -> Result<(tempfile::TempDir, Snapshot), DeployError> {
    let io = |e: std::io::Error| DeployError::Config(format!("cannot write the environment's build context: {e}"));
    let dir = tempfile::tempdir().map_err(io)?;
    let root = dir.path().join("environment");
    std::fs::create_dir(&root).map_err(io)?;
    std::fs::write(root.join("Dockerfile"), online::dockerfile(online::DEFAULT_IMAGE)).map_err(io)?;
    std::fs::write(root.join("requirements.txt"), requirements).map_err(io)?;
    let snapshot = Snapshot::of(&root).map_err(io)?.named("promptflow-environment");
    Ok((dir, snapshot))
}

/// promptflow's model properties; chat flows also name their chat input and output.
fn model_properties(flow_dir: &Path) -> Map<String, Json> {
    let mut properties = Map::new();
    properties.insert("is-promptflow".into(), json!("true"));
    properties
        .insert("azureml.promptflow.source_flow_id".into(), json!(backend::azureml::submission::folder_name(flow_dir)));
    let mut diags = model::diag::Diagnostics::default();
    if let Some(flow) = model::flow::dag::load(flow_dir, &mut diags)
        && let Some(chat) = flow.inputs.iter().find(|i| i.is_chat_input)
    {
        properties.insert("azureml.promptflow.mode".into(), json!("chat"));
        properties.insert("azureml.promptflow.chat_input".into(), json!(chat.name.value));
        if let [only] = flow.outputs.as_slice() {
            properties.insert("azureml.promptflow.chat_output".into(), json!(only.name.value));
        }
    }
    properties
}

/// `--dry-run`: every call, computed offline (no sign-in, nothing sent).
pub fn dry_run(
    spec: &Spec,
    workspace: WorkspaceRef,
    arm_url: String,
    pinned: Option<&Pinned>,
) -> Result<Vec<Call>, DeployError> {
    let (snapshot, _staged) = backend::azureml::run::flow_snapshot(&spec.flow)?;
    let (datastore, hash, path) = match pinned {
        Some(Pinned::Cloud { datastore, path, hash, .. }) => (datastore.clone(), hash.clone(), path.clone()),
        _ => ("<default datastore>".into(), snapshot.hash.clone(), snapshot.prefix()),
    };
    let environment = match &spec.environment {
        Some(text) => named_environment(text, &workspace)?,
        None => {
            let read = |file: &str| Ok(std::fs::read_to_string(snapshot.root.join(file)).ok());
            match flow_requirements(&read)? {
                Some(requirements) => {
                    let (_dir, context) = build_context(&requirements)?;
                    online::Environment::Build {
                        context_uri: format!(
                            "https://<account>.blob.core.windows.net/<container>/{}/",
                            context.prefix()
                        ),
                        hash: context.hash,
                    }
                }
                None => online::Environment::Image(online::DEFAULT_IMAGE.into()),
            }
        }
    };
    let target = spec.target(
        workspace,
        arm_url,
        &datastore,
        "<workspace location>",
        Content { hash: &hash, path: &path, pinned, environment },
        &Default::default(),
    );
    let mut traffic = Map::new();
    traffic.insert(spec.deployment.clone(), json!(spec.traffic));
    Ok(target.plan(&traffic))
}

/// What a deploy did.
#[derive(Clone, Debug, Serialize)]
pub struct Deployed {
    pub endpoint: String,
    pub deployment: String,
    pub model: String,
    pub model_version: String,
    pub model_registered: bool,
    pub scoring_uri: String,
    pub smoke_test: String,
    pub traffic_before: Map<String, Json>,
    pub traffic: Map<String, Json>,
    pub passed: bool,
}

/// The deploy itself. `expected` is the sample's output from the local executor.
pub fn deploy(
    session: &Session,
    spec: &Spec,
    expected: &Map<String, Json>,
    provenance: &backend::azureml::Provenance,
    pinned: Option<&Pinned>,
) -> Result<Deployed, DeployError> {
    let say = |text: &str| session.say(text);
    let client = session.client();
    let poll = session.settings.poll;
    let deadline = session.settings.deadline;
    let datastore = session.datastore()?;
    let mut requirements = None;
    let (hash, path) = match pinned {
        Some(Pinned::Cloud { run, id, datastore: store, path, hash }) => {
            run_snapshot(session, &datastore, (run, id), store, path)?;
            say(&format!("model: the flow run {id} ran ({store}/{path}), not uploaded again"));
            if spec.environment.is_none() {
                let read = |file: &str| {
                    Ok(datastore.container.get_text(&format!("{path}/{file}")).map_err(AzureMlError::from)?)
                };
                requirements = flow_requirements(&read)?;
            }
            (hash.clone(), path.clone())
        }
        Some(Pinned::Workspace { id }) => {
            let (_dir, snapshot) = workspace_snapshot(session, id, &spec.flow)?;
            if spec.environment.is_none() {
                let read = |file: &str| Ok(std::fs::read_to_string(snapshot.root.join(file)).ok());
                requirements = flow_requirements(&read)?;
            }
            let written = backend::azureml::snapshot::upload(&datastore.container, &snapshot)
                .map_err(AzureMlError::from)?
                .written;
            say(&format!(
                "model: the flow snapshot of run {id} ({} file(s), {})",
                snapshot.files.len(),
                if written == 0 { "already in the datastore" } else { "copied to the datastore" }
            ));
            (snapshot.hash.clone(), snapshot.prefix())
        }
        _ => {
            let (snapshot, _staged) = backend::azureml::run::flow_snapshot(&spec.flow)?;
            if spec.environment.is_none() {
                let read = |file: &str| Ok(std::fs::read_to_string(snapshot.root.join(file)).ok());
                requirements = flow_requirements(&read)?;
            }
            if let Some(pinned) = pinned.filter(|p| p.hash().is_some_and(|h| h != snapshot.hash)) {
                return Err(DeployError::Config(format!(
                    "{} changed during the deploy; run {} ran other content",
                    spec.flow.display(),
                    pinned.run()
                )));
            }
            backend::azureml::snapshot::upload(&datastore.container, &snapshot).map_err(AzureMlError::from)?;
            (snapshot.hash.clone(), snapshot.prefix())
        }
    };
    let ws = session.workspace();
    let environment = match (&spec.environment, requirements) {
        (Some(text), _) => named_environment(text, &ws.reference)?,
        (None, Some(requirements)) => {
            // Uploaded like a flow (content-addressed): the same requirements
            // reuse the same context and environment version.
            let (_dir, context) = build_context(&requirements)?;
            backend::azureml::snapshot::upload(&datastore.container, &context).map_err(AzureMlError::from)?;
            let c = &datastore.container;
            say("environment: promptflow's runtime image with the flow's requirements (built by Azure ML)");
            online::Environment::Build {
                context_uri: format!("{}/{}/{}/", c.account_url, c.name, context.prefix()),
                hash: context.hash,
            }
        }
        (None, None) => online::Environment::Image(online::DEFAULT_IMAGE.into()),
    };
    let mut target = spec.target(
        ws.reference.clone(),
        client.arm_url.clone(),
        &datastore.name,
        &ws.location,
        Content { hash: &hash, path: &path, pinned, environment },
        provenance,
    );
    let model_registered = register_model(session, &mut target)?;
    if target.registers_environment() && client.get_optional(&target.environment_url())?.is_none() {
        let reply = client.write(reqwest::Method::PUT, &target.environment_url(), &target.environment_body())?;
        online::wait_for(client, &reply, "environment", poll, deadline, &say)?;
    }
    let traffic_before = match client.get_optional(&target.endpoint_url())? {
        Some(endpoint) => endpoint_traffic(&endpoint),
        None => {
            let reply = client.write(reqwest::Method::PUT, &target.endpoint_url(), &target.endpoint_body())?;
            online::wait_for(client, &reply, &format!("endpoint {}", target.endpoint), poll, deadline, &say)?;
            Map::new()
        }
    };
    if traffic_before.get(&spec.deployment).and_then(Json::as_u64).unwrap_or(0) > 0 {
        say(&format!(
            "warning: deployment {} serves traffic and is updated in place; alternate deployment names (blue/green) to keep the old one serving while the new one is tested",
            spec.deployment
        ));
    }
    let reply = client.write(reqwest::Method::PUT, &target.deployment_url(), &target.deployment_body())?;
    online::wait_for(client, &reply, &format!("deployment {}", target.deployment), poll, deadline, &say)?;

    // No body, as azure-ai-ml's build_online_endpoints_list_keys_request sends none.
    let keys = client.post_empty(&target.keys_url())?;
    let key = keys.get("primaryKey").and_then(Json::as_str).unwrap_or_default().to_string();
    let endpoint = client.get(&target.endpoint_url())?;
    let scoring_uri = endpoint.pointer("/properties/scoringUri").and_then(Json::as_str).unwrap_or_default().to_string();
    let smoke = smoke_test(&scoring_uri, &key, &spec.deployment, &spec.sample, expected);
    let mut deployed = Deployed {
        endpoint: spec.endpoint.clone(),
        deployment: spec.deployment.clone(),
        model: target.model.clone(),
        model_version: target.model_version.clone(),
        model_registered,
        scoring_uri,
        smoke_test: String::new(),
        traffic_before: traffic_before.clone(),
        traffic: traffic_before.clone(),
        passed: smoke.is_ok(),
    };
    let new_traffic = match &smoke {
        Ok(()) => online::shifted_traffic(&traffic_before, &spec.deployment, spec.traffic),
        // Roll back: the failed deployment gets nothing (when others can serve).
        Err(_) => online::shifted_traffic(&traffic_before, &spec.deployment, 0),
    };
    deployed.smoke_test = match &smoke {
        Ok(()) => "passed".into(),
        Err(why) => why.clone(),
    };
    if !online::same_traffic(&new_traffic, &traffic_before) {
        deployed.traffic = set_traffic(session, &target, &new_traffic)?;
    }
    match smoke {
        Ok(()) => Ok(deployed),
        Err(why) => {
            say(&format!("traffic: {} (unchanged for the new deployment)", Json::Object(deployed.traffic.clone())));
            Err(DeployError::Smoke(why))
        }
    }
}

/// A cloud run's flow, before a model is registered from it: the run is
/// still in the workspace and completed, and its flow folder is in the
/// default datastore (the one models are registered from) with its DAG.
fn run_snapshot(
    session: &Session,
    datastore: &backend::azureml::workspace::Datastore,
    (run, id): (&str, &str),
    store: &str,
    path: &str,
) -> Result<(), DeployError> {
    let state = session.service().state(id)?;
    match state {
        Some(state) if state.status == "Completed" => {}
        Some(state) => {
            return Err(DeployError::Config(format!("run {run} ({id}) is {} in the workspace", state.status)));
        }
        None => return Err(DeployError::Config(format!("run {run} ({id}) is no longer in the workspace"))),
    }
    if store != datastore.name {
        return Err(DeployError::Config(format!(
            "run {run}'s flow is in datastore {store}, not the workspace's default {}",
            datastore.name
        )));
    }
    let dag = format!("{path}/{}", model::flow::FLOW_FILE);
    if datastore.container.metadata(&dag).map_err(AzureMlError::from)?.is_none() {
        return Err(DeployError::Config(format!("run {run}'s flow is no longer in the datastore ({dag} is missing)")));
    }
    Ok(())
}

/// The flow snapshot of a workspace run (run history's
/// `azureml.promptflow.snapshot_id`, its files through the content
/// service's SAS URLs, as `pfazure run download` reads them), written to a
/// folder named like the deploy's flow; the run must be Completed.
fn workspace_snapshot(session: &Session, id: &str, flow: &Path) -> Result<(tempfile::TempDir, Snapshot), DeployError> {
    let service = session.service();
    match service.state(id)? {
        Some(state) if state.status == "Completed" => {}
        Some(state) => return Err(DeployError::Config(format!("run {id} is {} in the workspace", state.status))),
        None => {
            return Err(DeployError::Config(format!("--run {id}: no such run in the run store or the workspace")));
        }
    }
    let snapshot_id = service.snapshot_id(id)?.ok_or_else(|| {
        DeployError::Config(format!("run {id} has no flow snapshot (azureml.promptflow.snapshot_id)"))
    })?;
    let files = service.snapshot_files(&snapshot_id)?;
    if !files.iter().any(|(path, _)| path == model::flow::FLOW_FILE) {
        return Err(DeployError::Config(format!("run {id}'s snapshot has no {}", model::flow::FLOW_FILE)));
    }
    let io = |e: std::io::Error| DeployError::Config(format!("cannot write run {id}'s snapshot: {e}"));
    let dir = tempfile::tempdir().map_err(io)?;
    let root = dir.path().join(backend::azureml::submission::folder_name(flow));
    for (path, url) in &files {
        // Only plain relative paths: a snapshot names files below its root.
        if path.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            return Err(DeployError::Config(format!("run {id}'s snapshot names `{path}`, not a path below it")));
        }
        let target = root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&target, session.client().download(url)?).map_err(io)?;
    }
    let snapshot = Snapshot::of(&root).map_err(io)?;
    Ok((dir, snapshot))
}

/// Finds the model version holding this flow's content, or registers the
/// next integer version; sets `target.model_version`. True when registered now.
fn register_model(session: &Session, target: &mut Target) -> Result<bool, DeployError> {
    let client = session.client();
    if let Some(version) = online::registered_version(client, target)? {
        target.model_version = version;
        session.say(&format!(
            "model {} version {}: already registered (same content)",
            target.model, target.model_version
        ));
        return Ok(false);
    }
    target.model_version = online::next_version(client, target)?;
    client.write(reqwest::Method::PUT, &target.model_url(), &target.model_body())?;
    session.say(&format!("model {} version {}: registered", target.model, target.model_version));
    Ok(true)
}

/// Gives the endpoint `traffic` by a PUT of the whole endpoint (ARM's PATCH
/// ignores traffic; see `online::traffic_body`), waits for it, and returns
/// the traffic the endpoint then has.
fn set_traffic(
    session: &Session,
    target: &Target,
    traffic: &Map<String, Json>,
) -> Result<Map<String, Json>, DeployError> {
    let client = session.client();
    let say = |text: &str| session.say(text);
    let current = client.get(&target.endpoint_url())?;
    let body = online::traffic_body(&current, traffic);
    let reply = client.write(reqwest::Method::PUT, &target.endpoint_url(), &body)?;
    online::wait_for(client, &reply, "traffic", session.settings.poll, session.settings.deadline, &say)?;
    Ok(endpoint_traffic(&client.get(&target.endpoint_url())?))
}

fn endpoint_traffic(endpoint: &Json) -> Map<String, Json> {
    endpoint.pointer("/properties/traffic").and_then(Json::as_object).cloned().unwrap_or_default()
}

/// Scores the sample on the new deployment (not the endpoint's current
/// mix) and compares the answer's shape with the local executor's.
fn smoke_test(
    scoring_uri: &str,
    key: &str,
    deployment: &str,
    sample: &Map<String, Json>,
    expected: &Map<String, Json>,
) -> Result<(), String> {
    backend::azureml::client::check_scheme(scoring_uri).map_err(|e| e.to_string())?;
    let http =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().map_err(|e| e.to_string())?;
    let response = http
        .post(scoring_uri)
        .bearer_auth(key)
        .header("azureml-model-deployment", deployment)
        .json(sample)
        .send()
        .map_err(|e| format!("cannot reach {}: {e}", backend::azureml::client::path_of(scoring_uri)))?;
    let status = response.status();
    let text = response.text().unwrap_or_default();
    if !status.is_success() {
        let snippet: String = text.chars().take(300).collect();
        return Err(format!("the deployment answered {status}: {snippet}"));
    }
    let answer: Map<String, Json> = serde_json::from_str(&text).map_err(|_| {
        format!("the deployment's answer is not a JSON object: {}", text.chars().take(200).collect::<String>())
    })?;
    shape_difference(expected, &answer).map_or(Ok(()), Err)
}

/// How two outputs differ in shape (keys and JSON types), if they do.
pub fn shape_difference(expected: &Map<String, Json>, got: &Map<String, Json>) -> Option<String> {
    let kind = |v: &Json| match v {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    };
    let mut problems = Vec::new();
    for (key, value) in expected {
        match got.get(key) {
            None => problems.push(format!("`{key}` is missing")),
            Some(v) if kind(v) != kind(value) && !value.is_null() => {
                problems.push(format!("`{key}` is a {} (locally a {})", kind(v), kind(value)));
            }
            _ => {}
        }
    }
    problems.extend(got.keys().filter(|k| !expected.contains_key(*k)).map(|k| format!("`{k}` is not a flow output")));
    (!problems.is_empty()).then(|| format!("the output differs from the local run's: {}", problems.join(", ")))
}

/// The sample's output from the embedded executor: what the deployment's
/// answer must look like.
pub fn run_locally(
    spec: &Spec,
    python: exec::pool::Python,
    llm: &exec::llm::LlmSetup,
    line_timeout: Duration,
) -> Result<Map<String, Json>, DeployError> {
    use exec::line::Status;
    use exec::start::{StartOptions, start};
    let local = |e: String| DeployError::Config(format!("the sample line does not run locally: {e}"));
    let prepared = exec::prepare::prepare(&spec.flow, None).map_err(|e| local(e.to_string()))?;
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let options = StartOptions {
        python,
        workers: 1,
        env: exec::job::environment(&prepared.flow, None),
        line_timeout,
        cancel: &cancel,
        llm,
        proxied: false,
    };
    let started = start(&prepared, options).map_err(|e| local(e.to_string()))?;
    let engine = started.engine();
    let line = engine.run_line(&spec.sample, 0);
    match (line.status, line.error) {
        (Status::Completed, _) => Ok(line.outputs),
        (_, error) => {
            Err(local(error.map_or_else(|| "it did not complete".into(), |e| format!("{}: {}", e.kind, e.message))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_compare_keys_and_types() {
        let local = json!({"intent": "billing", "reply": "ok"});
        let local = local.as_object().unwrap();
        assert_eq!(shape_difference(local, json!({"intent": "x", "reply": "y"}).as_object().unwrap()), None);
        let wrong = shape_difference(local, json!({"intent": 3, "extra": 1}).as_object().unwrap()).unwrap();
        assert!(
            wrong.contains("`reply` is missing") && wrong.contains("`intent` is a number") && wrong.contains("`extra`"),
            "{wrong}"
        );
    }
}
