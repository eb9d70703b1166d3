//! Workspace flows: a local flow folder imported into the workspace as a
//! flow the team opens and edits in the studio, as `pfazure flow create`
//! does (promptflow-azure 1.18.5 `operations/_flow_operations.py`
//! `create_or_update`): the flow snapshot as runs upload it (additional
//! includes merged, the DAG rewritten) is copied into the file share of the
//! `workspaceworkingdirectory` datastore under
//! `Users/{alias}/promptflow/{folder}-{mm-dd-YYYY-HH-MM-SS}`, then
//! `POST {services}flow/api{WS}/Flows` (`CreateFlowRequest`) registers it.
//!
//! An update (`--update ID`) writes the snapshot over the flow's folder in
//! the share (the folder the studio reads and edits) and then sends the
//! metadata as pfazure's update does: `PUT .../Flows/{id}?experimentId={workspaceId}`
//! (`UpdateFlowRequest`: flowName, description, tags).

use std::path::Path;

use serde_json::{Map, Value as Json, json};

use super::blob::{Container, Credential};
use super::client::{DATASTORE_API_VERSION, check_scheme};
use super::{AzureMlError, Session};
use model::secret::Secret;

/// The datastore of the workspace's file share (promptflow-azure
/// `_constants/_flow.py` `DEFAULT_STORAGE`).
pub const WORKING_DIRECTORY: &str = "workspaceworkingdirectory";

/// The tag naming the repository folder a pushed flow came from (how
/// `check`'s `push_flows` finds the studio flow to update).
pub const FLOW_TAG: &str = "flow-ci.flow";

/// promptflow-azure's `PROMPTFLOW_FILE_SHARE_DIR`.
const FILE_SHARE_DIR: &str = "promptflow";

/// A flow type as `pfazure flow create --set type=...` takes it, and as the
/// service spells it (promptflow-devkit `CLIENT_FLOW_TYPE_2_SERVICE_FLOW_TYPE`).
pub const FLOW_TYPES: [(&str, &str); 3] = [("standard", "default"), ("chat", "chat"), ("evaluation", "evaluation")];

/// What to push, and as what.
#[derive(Clone, Debug, Default)]
pub struct PushSpec {
    /// `--set display_name=...`; default the folder's name and a timestamp.
    pub display_name: Option<String>,
    /// `standard` (default), `chat` or `evaluation`.
    pub flow_type: Option<String>,
    /// Default: the DAG's `description`.
    pub description: Option<String>,
    /// Merged over the DAG's `tags`.
    pub tags: Map<String, Json>,
    /// Refresh this existing flow (its id, the `name` pfazure prints) instead of creating one.
    pub update: Option<String>,
}

/// A flow in the workspace, as the service describes it (`FlowDto`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct WorkspaceFlow {
    /// `flowId`: what `--update` and `pfazure flow show --name` take.
    pub name: String,
    pub display_name: String,
    /// The client's spelling (`standard`, `chat`, `evaluation`).
    pub flow_type: String,
    /// `flowDefinitionFilePath` in the file share.
    pub path: String,
    pub studio_url: String,
    pub created: bool,
    /// Files written to the share.
    pub files: usize,
    /// Files of an earlier push removed from the share (`--update`).
    pub removed: usize,
}

/// Creates (or with `spec.update`, refreshes) the workspace flow of `flow`.
pub fn push(session: &Session, flow: &Path, spec: &PushSpec) -> Result<WorkspaceFlow, AzureMlError> {
    let flow_type = service_type(spec.flow_type.as_deref().unwrap_or("standard"))?;
    let (snapshot, _staged) = super::run::flow_snapshot(flow)?;
    let dag = read_dag(&snapshot.root)?;
    let share = working_directory(session)?;
    let service = Flows { session };
    match &spec.update {
        Some(id) => {
            let existing = service.get(id)?;
            let path = text(&existing, "flowDefinitionFilePath");
            let folder = path.strip_suffix(&format!("/{}", model::flow::FLOW_FILE)).ok_or_else(|| {
                AzureMlError::Config(format!(
                    "flow {id} is defined by `{path}`, not a {} flow-ci can refresh",
                    model::flow::FLOW_FILE
                ))
            })?;
            if !share.directory_exists(folder)? {
                return Err(AzureMlError::Config(format!(
                    "flow {id}'s folder `{folder}` is not in the `{WORKING_DIRECTORY}` file share"
                )));
            }
            let files = upload(&share, &snapshot, folder)?;
            let removed = remove_stale(&share, &snapshot, folder, "")?;
            let mut body = Map::new();
            let display = spec.display_name.clone().unwrap_or_else(|| text(&existing, "flowName"));
            body.insert("flowName".into(), json!(display));
            if let Some(d) = spec.description.clone().or_else(|| dag_text(&dag, "description")) {
                body.insert("description".into(), json!(d));
            }
            let tags = merged_tags(&dag, spec, flow);
            if !tags.is_empty() {
                body.insert("tags".into(), Json::Object(tags));
            }
            service.update(id, &Json::Object(body))?;
            let updated = service.get(id)?;
            Ok(WorkspaceFlow { removed, ..described(session, &updated, false, files) })
        }
        None => {
            let alias = session.client().user_alias()?;
            let root = format!("Users/{alias}/{FILE_SHARE_DIR}");
            let mut parent = String::new();
            for part in root.split('/') {
                parent = if parent.is_empty() { part.to_string() } else { format!("{parent}/{part}") };
                share.create_directory(&parent)?;
            }
            let stamp = timestamp(std::time::SystemTime::now());
            let folder = format!("{root}/{}-{stamp}", snapshot.name);
            if share.directory_exists(&folder)? {
                return Err(AzureMlError::Config(format!(
                    "`{folder}` already exists in the `{WORKING_DIRECTORY}` file share; push again in a second"
                )));
            }
            share.create_directory(&folder)?;
            let files = upload(&share, &snapshot, &folder)?;
            let display = spec.display_name.clone().unwrap_or_else(|| format!("{}-{stamp}", snapshot.name));
            let mut body = Map::new();
            body.insert("flowName".into(), json!(display));
            body.insert("flowDefinitionFilePath".into(), json!(format!("{folder}/{}", model::flow::FLOW_FILE)));
            body.insert("flowType".into(), json!(flow_type));
            if let Some(d) = spec.description.clone().or_else(|| dag_text(&dag, "description")) {
                body.insert("description".into(), json!(d));
            }
            let tags = merged_tags(&dag, spec, flow);
            if !tags.is_empty() {
                body.insert("tags".into(), Json::Object(tags));
            }
            let created = service.create(&Json::Object(body))?;
            Ok(described(session, &created, true, files))
        }
    }
}

/// `standard` → `default`; anything else is refused as pfazure refuses it.
pub fn service_type(client: &str) -> Result<&'static str, AzureMlError> {
    FLOW_TYPES
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(client))
        .map(|(_, s)| *s)
        .ok_or_else(|| AzureMlError::Config(format!("flow type `{client}` is not one of standard, chat, evaluation")))
}

fn client_type(service: &str) -> String {
    FLOW_TYPES
        .iter()
        .find(|(_, s)| s.eq_ignore_ascii_case(service))
        .map_or_else(|| service.to_lowercase(), |(c, _)| c.to_string())
}

fn read_dag(root: &Path) -> Result<Json, AzureMlError> {
    let mut diags = model::diag::Diagnostics::default();
    let dag = model::flow::read_yaml(&root.join(model::flow::FLOW_FILE), &mut diags)
        .ok_or_else(|| AzureMlError::Config(format!("cannot read the flow in {}", root.display())))?;
    Ok(dag.to_json())
}

fn dag_text(dag: &Json, key: &str) -> Option<String> {
    dag.get(key).and_then(Json::as_str).map(str::to_string)
}

/// The id of the workspace flow tagged `key: value` (the newest when several
/// are), from the flow service's list (`GET .../Flows?experimentId=...`,
/// promptflow-azure's `build_list_flows_request`); archived flows are skipped.
pub fn find_by_tag(session: &Session, key: &str, value: &str) -> Result<Option<String>, AzureMlError> {
    let flows = Flows { session };
    let url = flows.url(&format!("/Flows?experimentId={}", flows.experiment()));
    let list = session.client().get(&url)?;
    let mut found: Vec<&Json> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f.get("isArchived") != Some(&json!(true)))
        .filter(|f| f.pointer(&format!("/tags/{}", key.replace('~', "~0").replace('/', "~1"))) == Some(&json!(value)))
        .collect();
    found.sort_by_key(|f| text(f, "createdDate"));
    Ok(found.last().map(|f| text(f, "flowId")))
}

/// The DAG's tags (as pfazure takes them from the flow file), then `--set
/// tags.k=v`, then where the flow lives in its repository (`flow-ci.flow`).
fn merged_tags(dag: &Json, spec: &PushSpec, flow: &Path) -> Map<String, Json> {
    let mut tags: Map<String, Json> = dag
        .get("tags")
        .and_then(Json::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!(v.as_str().map_or_else(|| v.to_string(), str::to_string))))
        .collect();
    tags.extend(spec.tags.clone());
    tags.insert(FLOW_TAG.into(), json!(Session::repo_path(flow)));
    tags
}

fn text(json: &Json, key: &str) -> String {
    json.get(key).and_then(Json::as_str).unwrap_or_default().to_string()
}

/// What the service answered, with the studio page: the service's
/// `studioPortalEndpoint` when it gives one, else the flow's page in the cloud's studio.
fn described(session: &Session, dto: &Json, created: bool, files: usize) -> WorkspaceFlow {
    let name = text(dto, "flowId");
    let workspace = session.workspace();
    let studio_url = Some(text(dto, "studioPortalEndpoint")).filter(|u| !u.is_empty()).unwrap_or_else(|| {
        format!(
            "{}/prompts/flow/{}/{name}/details?wsid={}",
            session.client().studio,
            workspace.id,
            workspace.reference.arm_path()
        )
    });
    WorkspaceFlow {
        display_name: text(dto, "flowName"),
        flow_type: client_type(&text(dto, "flowType")),
        path: text(dto, "flowDefinitionFilePath"),
        studio_url,
        created,
        files,
        removed: 0,
        name,
    }
}

/// The snapshot's folders, then its files, below `folder` in the share.
fn upload(share: &Container, snapshot: &super::snapshot::Snapshot, folder: &str) -> Result<usize, AzureMlError> {
    let mut dirs: Vec<String> = snapshot
        .files
        .iter()
        .flat_map(|(rel, _)| {
            let parts: Vec<&str> = rel.split('/').collect();
            (1..parts.len()).map(move |n| parts[..n].join("/"))
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        share.create_directory(&format!("{folder}/{dir}"))?;
    }
    for (rel, path) in &snapshot.files {
        let bytes =
            std::fs::read(path).map_err(|e| AzureMlError::Config(format!("cannot read {}: {e}", path.display())))?;
        share.upload_file(&format!("{folder}/{rel}"), &bytes)?;
    }
    Ok(snapshot.files.len())
}

/// Folders of a studio flow that are the studio's and the runtime's own
/// state (tool metadata, layout, caches), never the flow's: left alone.
const STUDIO_STATE: &[&str] = &[".promptflow", "__pycache__", ".runs"];

/// Deletes the files below `folder/rel` that the snapshot no longer has
/// (a file deleted or renamed since the last push); returns how many.
fn remove_stale(
    share: &Container,
    snapshot: &super::snapshot::Snapshot,
    folder: &str,
    rel: &str,
) -> Result<usize, AzureMlError> {
    let dir = if rel.is_empty() { folder.to_string() } else { format!("{folder}/{rel}") };
    let (files, dirs) = share.list_directory(&dir)?;
    let mut removed = 0;
    for file in files {
        let path = if rel.is_empty() { file.clone() } else { format!("{rel}/{file}") };
        if !snapshot.files.iter().any(|(r, _)| *r == path) {
            share.delete_file(&format!("{folder}/{path}"))?;
            removed += 1;
        }
    }
    for sub in dirs.iter().filter(|d| !STUDIO_STATE.contains(&d.as_str())) {
        let path = if rel.is_empty() { sub.clone() } else { format!("{rel}/{sub}") };
        removed += remove_stale(share, snapshot, folder, &path)?;
    }
    Ok(removed)
}

/// The `workspaceworkingdirectory` file share and its credentials
/// (`listSecrets`, as azure-ai-ml's `get_datastore_info` reads them).
fn working_directory(session: &Session) -> Result<Container, AzureMlError> {
    let client = session.client();
    let ws = format!("{}{}/datastores/{WORKING_DIRECTORY}", client.arm_url, session.workspace().reference.arm_path());
    let store = client.get(&format!("{ws}?api-version={DATASTORE_API_VERSION}"))?;
    let p = store.get("properties").unwrap_or(&Json::Null);
    let field = |k: &str| p.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
    if field("datastoreType") != "AzureFile" {
        return Err(AzureMlError::Config(format!(
            "the `{WORKING_DIRECTORY}` datastore is {}, not the Azure file share the studio keeps flows in",
            field("datastoreType")
        )));
    }
    let (account, share, endpoint) = (field("accountName"), field("fileShareName"), field("endpoint"));
    let secrets = client.post_empty(&format!("{ws}/listSecrets?api-version={DATASTORE_API_VERSION}"))?;
    let secret = |k: &str| {
        secrets.get(k).and_then(Json::as_str).map(|v| Secret::new(v.to_string())).ok_or_else(|| {
            AzureMlError::Config(format!("the `{WORKING_DIRECTORY}` datastore's listSecrets answer has no `{k}`"))
        })
    };
    let credential = match secrets.get("secretsType").and_then(Json::as_str) {
        Some("AccountKey") => Credential::AccountKey(secret("key")?),
        Some("Sas") => Credential::Sas(secret("sasToken")?),
        other => {
            return Err(AzureMlError::Config(format!(
                "the `{WORKING_DIRECTORY}` datastore has credentials of type {}; `flow push` needs an account key or a SAS token",
                other.unwrap_or("none")
            )));
        }
    };
    let account_url = std::env::var("FLOW_CI_FILE_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        format!("https://{account}.file.{}", if endpoint.is_empty() { "core.windows.net" } else { &endpoint })
    });
    check_scheme(&account_url)?;
    Ok(Container::new(&account_url, &account, &share, credential)?)
}

/// The flow service's Flows calls.
struct Flows<'a> {
    session: &'a Session,
}

impl Flows<'_> {
    fn url(&self, rest: &str) -> String {
        self.session.workspace().service_url("flow/api", rest)
    }

    fn create(&self, body: &Json) -> Result<Json, AzureMlError> {
        self.session.client().post(&self.url("/Flows"), body)
    }

    /// For flow calls the experiment id is the workspace id (promptflow-azure
    /// `flow_service_caller.update_flow`, `FlowOperations.get`).
    fn experiment(&self) -> String {
        net::http::percent_encode(&self.session.workspace().id)
    }

    fn get(&self, id: &str) -> Result<Json, AzureMlError> {
        let url = self.url(&format!("/Flows/{}?experimentId={}", net::http::percent_encode(id), self.experiment()));
        match self.session.client().get(&url) {
            Err(AzureMlError::Service { status: 404, .. }) => Err(AzureMlError::Config(format!(
                "there is no flow {id} in the workspace; `--update` takes the flow's name (the id in its studio URL)"
            ))),
            other => other,
        }
    }

    fn update(&self, id: &str, body: &Json) -> Result<(), AzureMlError> {
        let url = self.url(&format!("/Flows/{}?experimentId={}", net::http::percent_encode(id), self.experiment()));
        self.session.client().write(reqwest::Method::PUT, &url, body).map(drop)
    }
}

/// `mm-dd-YYYY-HH-MM-SS` (UTC), the suffix pfazure gives the folder and the
/// default display name.
pub fn timestamp(at: std::time::SystemTime) -> String {
    let secs = at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{month:02}-{day:02}-{year:04}-{:02}-{:02}-{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timestamp_is_pfazures_format() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        // date -u -d @1795000000 +%m-%d-%Y-%H-%M-%S
        assert_eq!(timestamp(at), "11-18-2026-11-06-40");
        assert_eq!(timestamp(std::time::UNIX_EPOCH), "01-01-1970-00-00-00");
    }

    #[test]
    fn flow_types_are_the_services() {
        assert_eq!(service_type("standard").unwrap(), "default");
        assert_eq!(service_type("Chat").unwrap(), "chat");
        assert!(service_type("rag").is_err());
        assert_eq!(client_type("Default"), "standard");
    }
}
