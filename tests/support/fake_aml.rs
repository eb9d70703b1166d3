//! A loopback Azure: the Entra token endpoint, ARM (workspace, datastores,
//! `listSecrets`) and the Azure ML services `pfazure` calls (BulkRuns
//! submit, run history `rundata`, `logContent`, `childRuns`, metric
//! `lastvalues`, cancel), on the real paths with the real JSON shapes.
//!
//! It checks what the service would: the bearer token it issued for ARM on
//! every call, the Azure ML token in `aml-user-token` on submit, api-version
//! on ARM calls, a submit body with a flow, a run id and data or a base run
//! that exists. Violations are recorded and answered 4xx. Runs go
//! Preparing → Running → Completed over successive polls (or as scripted).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value as Json, json};

use super::http::{Answer, Received, serve};

pub const TENANT: &str = "tenant-1";
pub const CLIENT_ID: &str = "client-1";
pub const CLIENT_SECRET: &str = "client-secret-never-logged";
pub const SUBSCRIPTION: &str = "sub-1";
pub const RESOURCE_GROUP: &str = "rg-1";
pub const WORKSPACE: &str = "ws-1";
pub const ARM_TOKEN: &str = "arm-token-from-fake";
pub const ML_TOKEN: &str = "ml-token-from-fake";
/// The Entra ID token for Azure OpenAI (`meid_token` connections).
pub const AOAI_TOKEN: &str = "aoai-token-from-fake";
pub const DATASTORE: &str = "workspaceblobstore";
pub const CONTAINER: &str = "azureml-blobstore-fake";
/// The workspace's user-assigned identities: (client id, ARM id); the
/// first is its primary one.
pub const USER_IDENTITIES: [(&str, &str); 2] = [
    (
        "uai-client-primary",
        "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uai-runs",
    ),
    (
        "uai-client-other",
        "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uai-other",
    ),
];
/// The storage account of both datastores (Azurite's, for the blob one).
const ACCOUNT: &str = "devstoreaccount1";
/// The workspace's file share (the `workspaceworkingdirectory` datastore),
/// where the studio keeps the flows it edits.
pub const WORKING_DIRECTORY: &str = "workspaceworkingdirectory";
pub const SHARE: &str = "code-391ff5ac-6576-460f-ba4d-7e03433c68b6";
/// `properties.workspaceId`, the experiment id of flow calls.
pub const WORKSPACE_ID: &str = "00000000-1111-2222-3333-444444444444";
/// The GitHub OIDC token the fake's `/oidc` endpoint issues.
pub const GITHUB_ID_TOKEN: &str = "github-id-token-from-fake";

/// How the default datastore hands out access to its storage account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatastoreAuth {
    /// `credentialsType: AccountKey`; `listSecrets` hands out the key.
    AccountKey,
    /// An account-key datastore whose `listSecrets` the caller may not call
    /// (403 AuthorizationFailed, as ARM refuses a role without
    /// `datastores/listSecrets/action`).
    SecretsForbidden,
    /// An identity-based datastore (`credentialsType: None`, as in AI
    /// Foundry projects): it has no secret, so a `listSecrets` is a violation.
    Identity,
}

/// How runs behave.
#[derive(Clone)]
pub struct Script {
    /// Statuses a run reports on successive polls; the last one stays.
    pub statuses: Vec<&'static str>,
    /// `childRuns` answers at most 10 lines a page, last line first (the
    /// service does not promise full pages or an order).
    pub short_pages: bool,
    /// Lines each run has (pages of 25).
    pub lines: usize,
    /// Answer the first submit with 429 and `Retry-After: 1`.
    pub throttle_first_submit: bool,
    /// The token endpoint refuses the client.
    pub refuse_token: bool,
    /// The storage account key `listSecrets` hands out.
    pub account_key: String,
    /// A deployment's provisioning ends Failed.
    pub deployment_fails: bool,
    /// The deployed flow answers with the wrong shape.
    pub scoring_wrong: bool,
    /// The endpoint exists, with this traffic.
    pub existing_traffic: Option<Json>,
    /// The datastore's account (Azurite, path-style): a submitted data URI
    /// must name blobs that exist there, or the run would fail to read it.
    pub blob_url: Option<String>,
    /// The client the fake reads the datastore with (trusting Azurite's
    /// test CA when it speaks https).
    pub blob_http: Option<reqwest::blocking::Client>,
    pub datastore: DatastoreAuth,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            statuses: vec!["NotStarted", "Preparing", "Running", "Completed"],
            short_pages: false,
            lines: 30,
            throttle_first_submit: false,
            refuse_token: false,
            account_key: String::new(),
            deployment_fails: false,
            scoring_wrong: false,
            existing_traffic: None,
            blob_url: None,
            blob_http: None,
            datastore: DatastoreAuth::AccountKey,
        }
    }
}

pub struct FakeRun {
    pub body: Json,
    polls: usize,
    canceled: bool,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    violations: Vec<String>,
    runs: BTreeMap<String, FakeRun>,
    submits: usize,
    /// ARM resources by path below the workspace: models, environments, endpoints, deployments.
    resources: BTreeMap<String, Json>,
    /// Long-running operations: polls so far, and how they end.
    operations: Vec<(usize, &'static str)>,
    /// The file share: its directories and files (path below the share).
    share_dirs: std::collections::BTreeSet<String>,
    share_files: BTreeMap<String, Vec<u8>>,
    /// Workspace flows by id (`FlowDto`).
    flows: BTreeMap<String, Json>,
    /// The fake's own URL (the origin of snapshot SAS URLs).
    base_url: String,
}

/// The endpoint key `listKeys` hands out and scoring requires.
pub const ENDPOINT_KEY: &str = "endpoint-key-from-fake";

pub struct FakeAml {
    pub url: String,
    state: Arc<Mutex<State>>,
}

pub fn workspace_path() -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
    )
}

impl FakeAml {
    pub fn start(script: Script) -> FakeAml {
        let mut initial = State::default();
        if let Some(traffic) = &script.existing_traffic {
            // As ARM shows an endpoint someone created earlier: read-only
            // fields included, which a PUT may send back (ARM ignores them).
            initial.resources.insert(
                "/onlineEndpoints/support-router".into(),
                json!({"id": format!("{}/onlineEndpoints/support-router", workspace_path()), "name": "support-router",
                    "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints", "location": "eastus",
                    "tags": {"team": "support"},
                    "identity": {"type": "SystemAssigned", "principalId": "p-1", "tenantId": TENANT},
                    "properties": {"authMode": "Key", "traffic": traffic, "provisioningState": "Succeeded",
                        "properties": {"enforce_access_to_default_secret_stores": "enabled"}}}),
            );
        }
        let state = Arc::new(Mutex::new(initial));
        let shared = state.clone();
        let base = Arc::new(Mutex::new(String::new()));
        let base_in = base.clone();
        let url = serve(move |req| {
            let mut st = shared.lock().unwrap();
            st.received.push(req.clone());
            let url = base_in.lock().unwrap().clone();
            match respond(req, &mut st, &script, &url) {
                Ok(answer) => answer,
                Err((status, problem)) => {
                    st.violations.push(format!("{} {}: {problem}", req.method, req.path));
                    Answer::json(status, json!({"error": {"code": "FakeViolation", "message": problem}}))
                }
            }
        });
        *base.lock().unwrap() = url.clone();
        state.lock().unwrap().base_url = url.clone();
        if let Some(endpoint) = state.lock().unwrap().resources.get_mut("/onlineEndpoints/support-router") {
            endpoint["properties"]["scoringUri"] = json!(format!("{url}/score/support-router"));
        }
        FakeAml { url, state }
    }

    /// An ARM resource as last written (path below the workspace).
    pub fn resource(&self, path: &str) -> Option<Json> {
        self.state.lock().unwrap().resources.get(path).cloned()
    }

    /// A file in the workspace's file share, as text.
    pub fn share_file(&self, path: &str) -> Option<String> {
        self.state.lock().unwrap().share_files.get(path).map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// Writes a file in the share as the studio would (its directories too).
    pub fn put_share_file(&self, path: &str, text: &str) {
        let mut st = self.state.lock().unwrap();
        let parts: Vec<&str> = path.split('/').collect();
        for n in 1..parts.len() {
            st.share_dirs.insert(parts[..n].join("/"));
        }
        st.share_files.insert(path.into(), text.as_bytes().to_vec());
    }

    /// Every file in the share, by path.
    pub fn share_paths(&self) -> Vec<String> {
        self.state.lock().unwrap().share_files.keys().cloned().collect()
    }

    /// A workspace flow as the flow service stores it.
    pub fn flow(&self, id: &str) -> Option<Json> {
        self.state.lock().unwrap().flows.get(id).cloned()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    /// Submitted runs' bodies, in order.
    pub fn submitted(&self) -> Vec<Json> {
        let st = self.state.lock().unwrap();
        let mut runs: Vec<(&String, &FakeRun)> = st.runs.iter().collect();
        runs.sort_by_key(|(_, r)| r.body["__order"].as_u64());
        runs.into_iter().map(|(_, r)| r.body.clone()).collect()
    }

    /// Paths requested, with the method: `POST /.../BulkRuns/submit`.
    pub fn calls(&self) -> Vec<String> {
        self.received().iter().map(|r| format!("{} {}", r.method, r.path)).collect()
    }

    /// The environment that points flow-ci at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_CLIENT_ID", CLIENT_ID.into()),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET.into()),
            ("AZURE_AUTHORITY_HOST", self.url.clone()),
            ("FLOW_CI_ARM_URL", self.url.clone()),
            ("AZUREML_SUBSCRIPTION_ID", SUBSCRIPTION.into()),
            ("AZUREML_RESOURCE_GROUP", RESOURCE_GROUP.into()),
            ("AZUREML_WORKSPACE_NAME", WORKSPACE.into()),
            ("FLOW_CI_AZUREML_POLL_MS", "40".into()),
            ("FLOW_CI_FILE_URL", format!("{}/files/{ACCOUNT}", self.url)),
        ]
    }
}

type Outcome = Result<Answer, (u16, String)>;

fn respond(req: &Received, st: &mut State, script: &Script, url: &str) -> Outcome {
    if req.path == format!("/{TENANT}/oauth2/v2.0/token") {
        return token(req, script, url);
    }
    // ARM's cloud metadata (`GET /metadata/endpoints`), here for a cloud
    // whose ARM and login endpoint are this fake, its portal in Fairfax.
    if req.path == "/metadata/endpoints" {
        return Ok(Answer::json(
            200,
            json!([{"name": "FakeCloud", "portal": "https://portal.azure.us", "resourceManager": format!("{url}/"),
                "authentication": {"loginEndpoint": format!("{url}/"), "audiences": [format!("{url}/")]},
                "suffixes": {"storage": "core.usgovcloudapi.net"}}]),
        ));
    }
    if req.path == "/oidc" {
        return Ok(Answer::json(200, json!({ "value": GITHUB_ID_TOKEN })));
    }
    if let Some(endpoint) = req.path.strip_prefix("/score/") {
        return score(req, endpoint, st, script);
    }
    if let Some(rest) = req.path.strip_prefix("/snapshot-files/") {
        return snapshot_file(req, rest, st, script);
    }
    if let Some(rest) = req.path.strip_prefix(&format!("/files/{ACCOUNT}/{SHARE}")) {
        return file_share(req, rest, st, script);
    }
    // Azure's front ends answer a POST without a length 411 Length Required
    // (seanmonstar/reqwest#838, Azure/azure-sdk-for-rust#166).
    if req.method == "POST" && req.header("content-length").is_none() {
        return Err((411, "a POST needs Content-Length (send 0 for no body)".into()));
    }
    if req.header("authorization") != Some(&format!("Bearer {ARM_TOKEN}")) {
        return Err((401, format!("expected the ARM bearer token, got {:?}", req.header("authorization"))));
    }
    let ws = workspace_path();
    if let Some(n) = req.path.strip_prefix(&format!("{}/operations/", operations_path())) {
        return operation(n, st);
    }
    if let Some(rest) = req.path.strip_prefix(&ws) {
        let expected = api_version(rest);
        if req.param("api-version") != Some(expected) {
            return Err((
                400,
                format!("api-version {:?}: azure-ai-ml sends {expected} for this resource", req.param("api-version")),
            ));
        }
        if let Some(answer) = online(req, rest, st, script, url)? {
            return Ok(answer);
        }
        return arm(req, rest, script, url);
    }
    for service in ["/flow/api", "/history/v1.0", "/metric/v2.0", "/content/v2.0"] {
        if let Some(rest) = req.path.strip_prefix(&format!("{service}{ws}")) {
            return runs(req, service, rest, st, script);
        }
    }
    Err((404, format!("no such path {}", req.path)))
}

/// The api-version azure-ai-ml 1.35's MLClient sends for an ARM resource
/// below the workspace (`azure/ai/ml/_ml_client.py` gives each *Operations
/// class its own versioned client; tests/azure_conformance.rs reads them from
/// a real MLClient). Another version may work on Azure, but it is not what
/// Microsoft's client is known to work with.
pub fn api_version(rest: &str) -> &'static str {
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    match segments.first().copied() {
        None => "2024-10-01-preview",
        Some("datastores") => "2024-10-01-preview",
        Some("models") => "2023-08-01-preview",
        // CodeOperations: `_service_client_04_2023`.
        Some("codes") => "2023-04-01",
        Some("environments") => "2023-04-01-preview",
        Some("onlineEndpoints") if segments.get(2) == Some(&"deployments") => "2023-04-01-preview",
        Some("onlineEndpoints") => "2022-02-01-preview",
        // Resources flow-ci does not use yet: the GA version the specs publish.
        Some(_) => "2024-04-01",
    }
}

/// OAuth2 client credentials: a secret or a federated assertion.
fn token(req: &Received, script: &Script, url: &str) -> Outcome {
    let form: BTreeMap<String, String> =
        req.text.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), decode(v))).collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if req.method != "POST" || field("grant_type") != "client_credentials" || field("client_id") != CLIENT_ID {
        return Err((400, format!("bad token request: {}", req.text)));
    }
    let secret_ok = field("client_secret") == CLIENT_SECRET;
    let assertion_ok = field("client_assertion") == GITHUB_ID_TOKEN
        && field("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    if script.refuse_token || !(secret_ok || assertion_ok) {
        return Ok(Answer::json(
            401,
            json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
        ));
    }
    // The public cloud's resources, or a sovereign cloud's (AZUREML_CURRENT_CLOUD).
    let token = match field("scope") {
        "https://management.azure.com/.default"
        | "https://management.usgovcloudapi.net/.default"
        | "https://management.chinacloudapi.cn/.default" => ARM_TOKEN.to_string(),
        // A cloud from ARM's metadata: its resourceManager is this fake.
        scope if scope == format!("{url}/.default") => ARM_TOKEN.to_string(),
        "https://ml.azure.com/.default" | "https://ml.azure.us/.default" | "https://ml.azure.cn/.default" => {
            ML_TOKEN.to_string()
        }
        "https://storage.azure.com/.default" => storage_token(),
        // Azure OpenAI, as a meid_token connection asks for it (promptflow
        // 1.18.5's _core/token_provider.py: COGNITIVE_SCOPE; promptflow-tools'
        // common.py hands `connection.get_token` to the openai SDK as
        // `azure_ad_token_provider`).
        "https://cognitiveservices.azure.com/.default" => AOAI_TOKEN.to_string(),
        other => return Err((400, format!("unexpected scope {other}"))),
    };
    Ok(Answer::json(200, json!({"token_type": "Bearer", "access_token": token, "expires_in": 3599})))
}

/// A token for storage as Entra issues one: a JWT whose claims Azurite's
/// `--oauth basic` checks (`aud`, an `sts.windows.net` issuer, `iat`, `nbf`,
/// `exp`); the signature is not checked there, nor made here.
fn storage_token() -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"aud": "https://storage.azure.com", "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "appid": CLIENT_ID, "tid": TENANT});
    format!(
        "{}.{}.{}",
        b64.encode(json!({"typ": "JWT", "alg": "RS256"}).to_string()),
        b64.encode(claims.to_string()),
        b64.encode("unsigned-by-the-fake")
    )
}

pub fn decode(v: &str) -> String {
    let bytes = v.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// ARM: the workspace, its default datastore and the datastore's secret.
fn arm(req: &Received, rest: &str, script: &Script, url: &str) -> Outcome {
    if req.param("api-version").is_none() {
        return Err((400, "ARM calls need an api-version".into()));
    }
    match (req.method.as_str(), rest) {
        ("GET", "") => {
            let identities: Map<String, Json> = USER_IDENTITIES
                .iter()
                .map(|(client, id)| {
                    ((*id).to_string(), json!({"principalId": format!("p-{client}"), "clientId": client}))
                })
                .collect();
            Ok(Answer::json(
                200,
                json!({
                    "id": workspace_path(), "name": WORKSPACE, "location": "eastus", "kind": "Default",
                    "identity": {"type": "SystemAssigned,UserAssigned", "principalId": "p-ws", "tenantId": TENANT,
                        "userAssignedIdentities": identities},
                    "properties": {"workspaceId": WORKSPACE_ID, "discoveryUrl": format!("{url}/discovery"),
                        "primaryUserAssignedIdentity": USER_IDENTITIES[0].1}
                }),
            ))
        }
        ("GET", "/datastores") if req.param("isDefault") == Some("true") => {
            let credentials = match script.datastore {
                DatastoreAuth::Identity => "None",
                DatastoreAuth::AccountKey | DatastoreAuth::SecretsForbidden => "AccountKey",
            };
            Ok(Answer::json(
                200,
                json!({"value": [{"name": DATASTORE, "properties": {
                    "datastoreType": "AzureBlob", "accountName": "devstoreaccount1", "containerName": CONTAINER,
                    "endpoint": "core.windows.net", "credentials": {"credentialsType": credentials}, "isDefault": true}}]}),
            ))
        }
        ("POST", p) if p == format!("/datastores/{DATASTORE}/listSecrets") => match script.datastore {
            DatastoreAuth::AccountKey => {
                Ok(Answer::json(200, json!({"secretsType": "AccountKey", "key": script.account_key})))
            }
            DatastoreAuth::SecretsForbidden => Ok(Answer::json(
                403,
                json!({"error": {"code": "AuthorizationFailed", "message": format!(
                    "The client '{CLIENT_ID}' does not have authorization to perform action 'Microsoft.MachineLearningServices/workspaces/datastores/listSecrets/action' over scope '{}/datastores/{DATASTORE}' or the scope is invalid.",
                    workspace_path())}}),
            )),
            DatastoreAuth::Identity => {
                Err((400, "listSecrets on an identity-based datastore (credentialsType None): it has no secret".into()))
            }
        },
        // As ARM describes an Azure Files datastore (`AzureFileDatastore`).
        ("GET", p) if p == format!("/datastores/{WORKING_DIRECTORY}") => Ok(Answer::json(
            200,
            json!({"name": WORKING_DIRECTORY, "properties": {
                "datastoreType": "AzureFile", "accountName": ACCOUNT, "fileShareName": SHARE,
                "endpoint": "core.windows.net", "protocol": "https",
                "credentials": {"credentialsType": "AccountKey"}, "isDefault": false}}),
        )),
        ("POST", p) if p == format!("/datastores/{WORKING_DIRECTORY}/listSecrets") => {
            Ok(Answer::json(200, json!({"secretsType": "AccountKey", "key": script.account_key})))
        }
        _ => Err((404, format!("no ARM resource {rest}"))),
    }
}

fn runs(req: &Received, service: &str, rest: &str, st: &mut State, script: &Script) -> Outcome {
    match (req.method.as_str(), service, rest) {
        ("POST", "/flow/api", "/BulkRuns/submit") => submit(req, st, script),
        ("POST", "/flow/api", "/Flows") => create_flow(req, st),
        ("POST", "/content/v2.0", "/snapshots/sas") => snapshot_tree(req, st, script),
        ("GET", "/flow/api", "/Flows") => {
            if req.param("experimentId") != Some(WORKSPACE_ID) {
                return Err((400, format!("listing flows needs experimentId={WORKSPACE_ID}")));
            }
            Ok(Answer::json(200, Json::Array(st.flows.values().cloned().collect())))
        }
        (_, "/flow/api", r) if r.starts_with("/Flows/") => flow_call(req, &r["/Flows/".len()..], st),
        ("POST", "/history/v1.0", "/rundata") => rundata(req, st, script),
        ("POST", "/metric/v2.0", r) if r.ends_with("/lastvalues") => {
            let id = r.trim_start_matches("/runs/").trim_end_matches("/lastvalues");
            let run = st.runs.get(id).ok_or((404, format!("no run {id}")))?;
            let evaluation = run.body.get("variantRunId").is_some();
            let mut value = vec![
                json!({"name": "__pf__.lines.completed", "columns": {"__pf__.lines.completed": "Double"}, "value": [{"step": 0, "data": {"__pf__.lines.completed": script.lines}}]}),
            ];
            if evaluation {
                value.push(json!({"name": "accuracy", "columns": {"accuracy": "Double"}, "value": [{"step": 0, "data": {"accuracy": 0.9}}]}));
            }
            Ok(Answer::json(200, json!({ "value": value })))
        }
        ("GET", "/flow/api", r) if r.starts_with("/BulkRuns/") => {
            bulk_run_get(req, &r["/BulkRuns/".len()..], st, script)
        }
        ("POST", "/flow/api", r) if r.starts_with("/BulkRuns/") && r.ends_with("/cancel") => {
            let id = r.trim_start_matches("/BulkRuns/").trim_end_matches("/cancel");
            let run = st.runs.get_mut(id).ok_or((404, format!("no run {id}")))?;
            run.canceled = true;
            Ok(Answer::json(200, Json::Null))
        }
        _ => Err((404, format!("no such call {} {service}{rest}", req.method))),
    }
}

fn submit(req: &Received, st: &mut State, script: &Script) -> Outcome {
    if req.header("aml-user-token") != Some(ML_TOKEN) {
        return Err((401, "BulkRuns/submit needs the Azure ML token in aml-user-token".into()));
    }
    let body = &req.body;
    let text = |k: &str| body.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
    let id = text("runId");
    if id.is_empty()
        || text("flowDefinitionDataStoreName") != DATASTORE
        || !text("flowDefinitionBlobPath").ends_with("/flow.dag.yaml")
    {
        return Err((400, format!("submit body lacks a run id or flow: {body}")));
    }
    if let Some(uri) = body.pointer("/batchDataInput/dataUri").and_then(Json::as_str) {
        data_exists(uri, script)?;
    }
    uploaded_dag_runs(&text("flowDefinitionBlobPath"), script)?;
    // `identity` is the ARM id of one of the workspace's user-assigned
    // identities (promptflow-azure resolves a client id to it), not a client id.
    if let Some(identity) = body.get("identity")
        && !USER_IDENTITIES.iter().any(|(_, id)| Some(*id) == identity.as_str())
    {
        return Err((400, format!("identity {identity} is not a user-assigned identity of the workspace")));
    }
    let base = text("variantRunId");
    if body.pointer("/batchDataInput/dataUri").is_none() && base.is_empty() {
        return Err((400, "a run needs batchDataInput or variantRunId".into()));
    }
    if !base.is_empty() && !st.runs.contains_key(&base) {
        return Err((404, format!("base run {base} does not exist")));
    }
    if st.runs.contains_key(&id) {
        return Err((409, format!("run {id} already exists")));
    }
    st.submits += 1;
    if script.throttle_first_submit && st.submits == 1 {
        return Ok(Answer::json(429, json!({"error": {"code": "TooManyRequests", "message": "throttled"}}))
            .with_header("Retry-After", "1".into()));
    }
    let mut stored = body.clone();
    stored["__order"] = json!(st.runs.len());
    st.runs.insert(id.clone(), FakeRun { body: stored, polls: 0, canceled: false });
    Ok(Answer::json(200, json!(id)))
}

/// The uploaded flow.dag.yaml as the cloud runtime reads it: no
/// `additional_includes` (merged into the snapshot, their `../` paths do not
/// exist there), and `environment.python_requirements_txt` when the
/// snapshot holds a requirements.txt (else nothing is installed).
fn uploaded_dag_runs(dag_path: &str, script: &Script) -> Result<(), (u16, String)> {
    let Some(container) = container(script)? else { return Ok(()) };
    let text = container.get_text(dag_path).map_err(|e| (500, e.to_string()))?;
    let text = text.ok_or_else(|| (400, format!("{dag_path}: the flow was not uploaded")))?;
    let dag = model::yaml::parse(&text).ok().flatten().map(|n| n.to_json()).unwrap_or_default();
    if dag.get("additional_includes").is_some() {
        return Err((400, format!("{dag_path}: additional_includes left in the uploaded flow")));
    }
    let folder = dag_path.trim_end_matches("flow.dag.yaml");
    let has_requirements =
        container.metadata(&format!("{folder}requirements.txt")).map_err(|e| (500, e.to_string()))?;
    if has_requirements.is_some() && dag.pointer("/environment/python_requirements_txt").is_none() {
        return Err((400, format!("{dag_path}: requirements.txt uploaded but not named in the flow")));
    }
    Ok(())
}

/// The datastore's container in Azurite, when the test has one.
fn container(script: &Script) -> Result<Option<backend::azureml::blob::Container>, (u16, String)> {
    let Some(account_url) = &script.blob_url else { return Ok(None) };
    let credential =
        backend::azureml::blob::Credential::AccountKey(model::connection::Secret::new(script.account_key.clone()));
    let container = backend::azureml::blob::Container::new(account_url, "devstoreaccount1", CONTAINER, credential)
        .map_err(|e| (500, e.to_string()))?;
    Ok(Some(match &script.blob_http {
        Some(http) => container.with_http(http.clone()),
        None => container,
    }))
}

/// A datastore data URI names a blob (a file) or, ending in `/`, a folder
/// with blobs below it, as promptflow-azure uploads them.
fn data_exists(uri: &str, script: &Script) -> Result<(), (u16, String)> {
    let (Some(path), Some(container)) =
        (uri.strip_prefix(&format!("azureml://datastores/{DATASTORE}/paths/")), container(script)?)
    else {
        return Ok(());
    };
    let exists = if path.ends_with('/') {
        !container.list(path).map_err(|e| (500, e.to_string()))?.is_empty()
    } else {
        container.metadata(path).map_err(|e| (500, e.to_string()))?.is_some()
    };
    if exists { Ok(()) } else { Err((400, format!("data URI {uri}: nothing is at that path in the datastore"))) }
}

fn status_of(run: &FakeRun, script: &Script) -> &'static str {
    if run.canceled {
        return "Canceled";
    }
    script.statuses[run.polls.min(script.statuses.len() - 1)]
}

fn rundata(req: &Received, st: &mut State, script: &Script) -> Outcome {
    let id = req.body.get("runId").and_then(Json::as_str).ok_or((400, "rundata needs a runId".to_string()))?;
    let Some(run) = st.runs.get_mut(id) else {
        return Ok(Answer::json(
            404,
            json!({"error": {"code": "UserError", "message": format!("Run runId={id} was not found"),
                   "innerError": {"code": "NotFoundError"}}, "statusCode": 404}),
        ));
    };
    let status = status_of(run, script);
    run.polls += 1;
    let mut meta = json!({"runId": id, "status": status, "displayName": run.body["runDisplayName"],
        "tags": run.body["tags"], "runType": "azureml.promptflow.FlowRun",
        "properties": {"azureml.promptflow.snapshot_id": snapshot_id(id), "azureml.promptflow.definition_file_name": "flow.dag.yaml"}});
    if status == "Failed" {
        meta["error"] = json!({"error": {"code": "UserError", "message": "Flow run failed: the python node `fetch` raised ValueError"}});
    }
    Ok(Answer::json(200, json!({ "runMetadata": meta })))
}

fn bulk_run_get(req: &Received, rest: &str, st: &mut State, script: &Script) -> Outcome {
    let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
    let run = st.runs.get(id).ok_or((404, format!("no run {id}")))?;
    match what {
        "logContent" => {
            let mut log = format!("[flow-ci fake] run {id} submitted\n");
            if run.polls > 1 {
                log.push_str("[flow-ci fake] session ready, running lines\n");
            }
            if status_of(run, script) == "Completed" {
                log.push_str(&format!("[flow-ci fake] {} lines completed\n", script.lines));
            }
            Ok(Answer::json(200, json!(log)))
        }
        "childRuns" => {
            let start: usize =
                req.param("startIndex").and_then(|v| v.parse().ok()).ok_or((400, "startIndex".to_string()))?;
            let end: usize = req.param("endIndex").and_then(|v| v.parse().ok()).ok_or((400, "endIndex".to_string()))?;
            if end < start || end - start + 1 > 25 {
                return Err((400, format!("pages are at most 25 lines ({start}..={end})")));
            }
            let end = if script.short_pages { end.min(start + 9) } else { end };
            let mut lines: Vec<Json> = (start..=end.min(script.lines.saturating_sub(1)))
                .filter(|_| start < script.lines)
                .map(|i| child_run(id, i, run.body.get("variantRunId").is_some()))
                .collect();
            if script.short_pages {
                lines.reverse();
            }
            Ok(Answer::json(200, Json::Array(lines)))
        }
        _ => Err((404, format!("no BulkRuns call {what}"))),
    }
}

/// Line `i`: every seventh line of a batch run fails.
fn child_run(id: &str, i: usize, evaluation: bool) -> Json {
    let failed = !evaluation && i % 7 == 6;
    let output: Json = if failed {
        Json::Null
    } else if evaluation {
        json!({"grade": if i.is_multiple_of(10) { "Incorrect" } else { "Correct" }})
    } else {
        json!({"category": "billing", "answer": format!("answer {i}")})
    };
    let mut inputs = Map::new();
    inputs.insert("ticket".into(), json!(format!("ticket {i}")));
    inputs.insert("line_number".into(), json!(i));
    json!({
        "run_id": format!("{id}_{i}"), "status": if failed { "Failed" } else { "Completed" },
        "error": if failed { json!({"code": "UserError", "message": format!("line {i} failed")}) } else { Json::Null },
        "inputs": inputs, "output": output, "index": i, "parent_run_id": id, "root_run_id": id,
        "start_time": "2026-11-25T10:00:00.000000Z", "end_time": "2026-11-25T10:00:01.000000Z"
    })
}

fn operations_path() -> String {
    format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.MachineLearningServices/locations/eastus")
}

/// Models, environments, endpoints and deployments: `None` for other paths.
fn online(
    req: &Received,
    rest: &str,
    st: &mut State,
    script: &Script,
    url: &str,
) -> Result<Option<Answer>, (u16, String)> {
    let kind = ["/models/", "/environments/", "/onlineEndpoints/"].iter().find(|p| rest.starts_with(*p));
    if kind.is_none() || rest.ends_with("/listKeys") {
        if rest.ends_with("/listKeys") && req.method == "POST" {
            return Ok(Some(Answer::json(200, json!({"primaryKey": ENDPOINT_KEY, "secondaryKey": "other"}))));
        }
        return Ok(None);
    }
    if req.param("api-version").is_none() {
        return Err((400, "ARM calls need an api-version".into()));
    }
    match req.method.as_str() {
        "GET" if rest.starts_with("/models/") && rest.ends_with("/versions") => Ok(Some(model_versions(rest, st))),
        "GET" => Ok(Some(match st.resources.get(rest) {
            Some(r) => Answer::json(200, r.clone()),
            None => Answer::json(
                404,
                json!({"error": {"code": "ResourceNotFound", "message": format!("{rest} not found")}}),
            ),
        })),
        "PUT" => put(req, rest, st, script, url).map(Some),
        "PATCH" if rest.starts_with("/onlineEndpoints/") && !rest.contains("/deployments/") => {
            patch_endpoint(req, rest, st, url).map(Some)
        }
        _ => Err((405, format!("{} is not allowed on {rest}", req.method))),
    }
}

/// A workspace model's versions are positive integers (ARM answers 400
/// otherwise); each PUT moves the container's `latestVersion` and
/// `nextVersion` on.
fn put_model_version(rest: &str, body: &Json, st: &mut State) -> Outcome {
    let (container, version) = rest.split_once("/versions/").ok_or((404, format!("no model path {rest}")))?;
    let number: u64 = version
        .parse()
        .ok()
        .filter(|n| *n > 0 && !version.starts_with('0'))
        .ok_or((400, format!("model version {version} is not a positive integer")))?;
    let mut stored = body.clone();
    stored["id"] = json!(format!("{}{rest}", workspace_path()));
    stored["name"] = json!(version);
    st.resources.insert(rest.into(), stored.clone());
    let latest =
        st.resources.get(container).and_then(|c| c.pointer("/properties/latestVersion")?.as_str()?.parse().ok());
    let latest = latest.unwrap_or(0).max(number);
    let name = container.trim_start_matches("/models/");
    st.resources.insert(
        container.into(),
        json!({"name": name, "properties": {"latestVersion": latest.to_string(), "nextVersion": (latest + 1).to_string()}}),
    );
    Ok(Answer::json(201, stored))
}

/// `GET /models/{name}/versions`: one page, as ARM lists them.
fn model_versions(rest: &str, st: &State) -> Answer {
    let prefix = format!("{rest}/");
    let value: Vec<Json> =
        st.resources.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, v)| v.clone()).collect();
    Answer::json(200, json!({ "value": value }))
}

/// ARM's PATCH body of an endpoint (`PartialMinimalTrackedResourceWithIdentity`)
/// holds `tags` and `identity` only: anything else is ignored, as Azure
/// ignores it (a traffic change sent this way never happens).
fn patch_endpoint(req: &Received, rest: &str, st: &mut State, url: &str) -> Outcome {
    let endpoint = st.resources.get_mut(rest).ok_or((404, format!("no endpoint {rest}")))?;
    if let Some(tags) = req.body.get("tags") {
        endpoint["tags"] = tags.clone();
    }
    let ignored: Vec<&String> = req
        .body
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| *k != "tags" && *k != "identity")
        .collect();
    if !ignored.is_empty() {
        st.violations.push(format!(
            "PATCH {}: an endpoint's PATCH holds only tags and identity; Azure ignores {ignored:?}",
            req.path
        ));
    }
    let n = start_operation(st, "Succeeded");
    Ok(Answer::json(202, Json::Null)
        .with_header("Location", format!("{url}{}/operations/{n}?api-version=2024-04-01", operations_path()))
        .with_header("Retry-After", "0".into()))
}

/// A PUT of an existing endpoint replaces it: its traffic must add up to
/// 100 (or be empty) over deployments that exist.
fn check_traffic(rest: &str, traffic: &Json, st: &State) -> Result<(), (u16, String)> {
    let shares = traffic.as_object().ok_or((400, format!("traffic is not a map: {traffic}")))?;
    let total: u64 = shares.values().filter_map(Json::as_u64).sum();
    if !shares.is_empty() && total != 100 {
        return Err((400, format!("traffic must add up to 100, not {total}: {traffic}")));
    }
    let before = st.resources.get(rest).and_then(|e| e.pointer("/properties/traffic").cloned()).unwrap_or_default();
    for name in shares.keys() {
        if !st.resources.contains_key(&format!("{rest}/deployments/{name}")) && before.get(name).is_none() {
            return Err((400, format!("traffic names deployment {name}, which does not exist")));
        }
    }
    Ok(())
}

fn put(req: &Received, rest: &str, st: &mut State, script: &Script, url: &str) -> Outcome {
    let body = &req.body;
    let async_op = |st: &mut State, ends: &'static str| {
        let n = start_operation(st, ends);
        format!("{url}{}/operations/{n}?api-version=2024-04-01", operations_path())
    };
    if rest.starts_with("/models/") {
        let uri = body.pointer("/properties/modelUri").and_then(Json::as_str).unwrap_or_default();
        if !uri.starts_with(&format!("azureml://subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/workspaces/{WORKSPACE}/datastores/{DATASTORE}/paths/LocalUpload/")) {
            return Err((400, format!("modelUri {uri} is not a datastore path")));
        }
        if body.pointer("/properties/properties/is-promptflow") != Some(&json!("true")) {
            return Err((400, "a flow model needs properties.is-promptflow".into()));
        }
        // ARM takes any path; the deployment then finds no flow to serve.
        let folder = uri.split("/paths/").nth(1).unwrap_or_default().trim_end_matches('/');
        if let Some(container) = container(script)?
            && container.metadata(&format!("{folder}/flow.dag.yaml")).map_err(|e| (500, e.to_string()))?.is_none()
        {
            return Err((400, format!("modelUri {uri}: no flow.dag.yaml in that datastore folder")));
        }
        if st.resources.contains_key(rest) {
            return Err((409, "model versions are immutable".into()));
        }
        return put_model_version(rest, body, st);
    }
    if rest.starts_with("/environments/") {
        match (body.pointer("/properties/image"), body.pointer("/properties/build")) {
            (Some(_), None) => {}
            (None, Some(build)) => build_context_exists(build, script)?,
            _ => return Err((400, format!("an environment needs an image or a build, not both: {body}"))),
        }
        st.resources.insert(rest.into(), body.clone());
        return Ok(Answer::json(201, body.clone()));
    }
    if let Some((endpoint, deployment)) = rest.split_once("/deployments/") {
        let endpoint_name = endpoint.trim_start_matches("/onlineEndpoints/");
        if !st.resources.contains_key(endpoint) {
            return Err((404, format!("endpoint {endpoint_name} does not exist")));
        }
        let model = body.pointer("/properties/model").and_then(Json::as_str).unwrap_or_default();
        let model_path = model.strip_prefix(&workspace_path()).unwrap_or_default();
        if !st.resources.contains_key(model_path) {
            return Err((400, format!("deployment names model {model}, which is not registered")));
        }
        let env = body.pointer("/properties/environmentId").and_then(Json::as_str).unwrap_or_default();
        let Some(environment) = st.resources.get(env.strip_prefix(&workspace_path()).unwrap_or_default()) else {
            return Err((400, format!("deployment names environment {env}, which is not registered")));
        };
        requirements_installed(&st.resources[model_path], environment, script)?;
        if body.pointer("/properties/environmentVariables/PROMPTFLOW_RUN_MODE") != Some(&json!("serving"))
            || body.pointer("/sku/capacity").is_none()
        {
            return Err((400, format!("deployment body incomplete: {body}")));
        }
        let _ = deployment;
        st.resources.insert(rest.into(), body.clone());
        let op = async_op(st, if script.deployment_fails { "Failed" } else { "Succeeded" });
        return Ok(Answer::json(201, body.clone()).with_header("Azure-AsyncOperation", op));
    }
    // An endpoint.
    if body.pointer("/properties/authMode") != Some(&json!("Key")) || body.get("location") != Some(&json!("eastus")) {
        return Err((400, format!("endpoint body: {body}")));
    }
    // Without it the deployment's identity cannot read the workspace's
    // connections (prompt flow's "deploy a flow to an online endpoint" doc).
    if !st.resources.contains_key(rest)
        && body.pointer("/properties/properties/enforce_access_to_default_secret_stores") != Some(&json!("enabled"))
    {
        return Err((400, format!("a flow's endpoint needs enforce_access_to_default_secret_stores: enabled: {body}")));
    }
    let name = rest.trim_start_matches("/onlineEndpoints/");
    let mut stored = body.clone();
    stored["properties"]["scoringUri"] = json!(format!("{url}/score/{name}"));
    match body.pointer("/properties/traffic") {
        Some(traffic) if st.resources.contains_key(rest) => check_traffic(rest, traffic, st)?,
        _ => stored["properties"]["traffic"] = json!({}),
    }
    st.resources.insert(rest.into(), stored.clone());
    let op = async_op(st, "Succeeded");
    Ok(Answer::json(201, stored).with_header("Azure-AsyncOperation", op))
}

fn start_operation(st: &mut State, ends: &'static str) -> usize {
    st.operations.push((0, ends));
    st.operations.len() - 1
}

/// InProgress on the first poll, then how it ends; a `Location` operation
/// (no status body) answers 202 while in progress.
fn operation(n: &str, st: &mut State) -> Outcome {
    let n: usize = n.parse().map_err(|_| (404, format!("no operation {n}")))?;
    let (polls, ends) = st.operations.get_mut(n).ok_or((404, format!("no operation {n}")))?;
    *polls += 1;
    if *polls == 1 {
        return Ok(Answer::json(202, json!({"status": "InProgress"})));
    }
    let mut body = json!({"status": ends});
    if *ends == "Failed" {
        body["error"] = json!({"code": "ResourceNotReady", "message": "User container has crashed or terminated: the image could not start"});
    }
    Ok(Answer::json(200, body))
}

/// The deployed flow: support-router's outputs, for the deployment named
/// in `azureml-model-deployment`, with the endpoint key.
fn score(req: &Received, endpoint: &str, st: &State, script: &Script) -> Outcome {
    if req.header("authorization") != Some(&format!("Bearer {ENDPOINT_KEY}")) {
        return Ok(Answer::json(401, json!({"message": "key mismatch"})));
    }
    let deployment =
        req.header("azureml-model-deployment").ok_or((400, "score the new deployment by name".to_string()))?;
    if !st.resources.contains_key(&format!("/onlineEndpoints/{endpoint}/deployments/{deployment}")) {
        return Err((404, format!("no deployment {deployment}")));
    }
    if req.body.get("message").is_none() {
        return Err((400, format!("scoring body without the flow's inputs: {}", req.body)));
    }
    if script.scoring_wrong {
        return Ok(Answer::json(200, json!({"intent": 7})));
    }
    Ok(Answer::json(200, json!({"intent": "billing", "reply": "Billing will review your request."})))
}

/// Azure Files, the calls a flow push makes (Create Directory, Get
/// Directory Properties, Create File, Put Range), Shared Key signed with the
/// key `listSecrets` handed out. As the service: a directory or file needs
/// its parent directory (404 ParentNotFound), a directory is created once
/// (409 ResourceAlreadyExists), a range is written into a created file and
/// within its length. (Azurite has no Files service, hence this one.)
fn file_share(req: &Received, rest: &str, st: &mut State, script: &Script) -> Outcome {
    verify_shared_key(req, &script.account_key)?;
    let version = req.header("x-ms-version").ok_or((400, "Azure Files requests need x-ms-version".to_string()))?;
    // Before 2021-06-08 creating a directory or file needs its SMB properties.
    let creates = req.method == "PUT" && req.param("comp").is_none();
    let smb = ["x-ms-file-attributes", "x-ms-file-creation-time", "x-ms-file-last-write-time", "x-ms-file-permission"];
    if creates && version < "2021-06-08" && smb.iter().any(|h| req.header(h).is_none()) {
        return Err((400, format!("version {version} needs {smb:?} to create {rest}")));
    }
    let path = rest.trim_start_matches('/').to_string();
    let parent = path.rsplit_once('/').map_or(String::new(), |(p, _)| p.to_string());
    let parent_exists = parent.is_empty() || st.share_dirs.contains(&parent);
    let storage_error = |status: u16, code: &str| {
        Ok(Answer::json(status, json!({"Code": code}))).map(|a: Answer| a.with_header("x-ms-error-code", code.into()))
    };
    let comp = req.param("comp");
    match (req.method.as_str(), req.param("restype"), comp) {
        ("PUT", Some("directory"), None) => {
            if !parent_exists {
                return storage_error(404, "ParentNotFound");
            }
            if !st.share_dirs.insert(path) {
                return storage_error(409, "ResourceAlreadyExists");
            }
            Ok(Answer::json(201, Json::Null))
        }
        ("GET", Some("directory"), Some("list")) => {
            if !st.share_dirs.contains(&path) {
                return storage_error(404, "ResourceNotFound");
            }
            // Direct children, two a page (the service pages by NextMarker).
            let prefix = format!("{path}/");
            let child = |p: &String| p.strip_prefix(&prefix).filter(|rest| !rest.contains('/')).map(str::to_string);
            let mut entries: Vec<String> = st
                .share_files
                .keys()
                .filter_map(child)
                .map(|n| format!("<File><Name>{n}</Name><Properties /></File>"))
                .chain(
                    st.share_dirs.iter().filter_map(child).map(|n| format!("<Directory><Name>{n}</Name></Directory>")),
                )
                .collect();
            entries.sort();
            let start: usize = req.param("marker").and_then(|m| m.parse().ok()).unwrap_or(0);
            let page: Vec<String> = entries.iter().skip(start).take(2).cloned().collect();
            let next = if start + 2 < entries.len() { (start + 2).to_string() } else { String::new() };
            Ok(Answer::xml(
                200,
                format!(
                    "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ShareName=\"{SHARE}\" DirectoryPath=\"{path}\"><Entries>{}</Entries><NextMarker>{next}</NextMarker></EnumerationResults>",
                    page.concat()
                ),
            ))
        }
        ("DELETE", None, None) => {
            if st.share_files.remove(&path).is_none() {
                return storage_error(404, "ResourceNotFound");
            }
            Ok(Answer::json(202, Json::Null))
        }
        ("GET" | "HEAD", Some("directory"), None) => {
            if st.share_dirs.contains(&path) {
                Ok(Answer::json(200, Json::Null))
            } else {
                storage_error(404, "ResourceNotFound")
            }
        }
        ("PUT", None, None) => {
            if req.header("x-ms-type") != Some("file") {
                return Err((400, format!("Create File of {path} without x-ms-type: file")));
            }
            let length: usize = req
                .header("x-ms-content-length")
                .and_then(|v| v.parse().ok())
                .ok_or((400, format!("Create File of {path} without x-ms-content-length")))?;
            if req.header("content-length").is_some_and(|v| v != "0") {
                return Err((400, format!("Create File of {path} carries a body; content goes in Put Range")));
            }
            if !parent_exists {
                return storage_error(404, "ParentNotFound");
            }
            st.share_files.insert(path, vec![0; length]);
            Ok(Answer::json(201, Json::Null))
        }
        ("PUT", None, Some("range")) => {
            let Some(file) = st.share_files.get_mut(&path) else { return storage_error(404, "ResourceNotFound") };
            if req.header("x-ms-write") != Some("update") {
                return Err((400, format!("Put Range of {path} without x-ms-write: update")));
            }
            let range = req.header("x-ms-range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.split_once('-'));
            let (start, end): (usize, usize) = range
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .ok_or((400, format!("Put Range of {path} without a valid x-ms-range")))?;
            let bytes = req.text.as_bytes();
            if end < start || end >= file.len() || bytes.len() != end - start + 1 || end - start >= 4 * 1024 * 1024 {
                return storage_error(416, "InvalidRange");
            }
            file[start..=end].copy_from_slice(bytes);
            Ok(Answer::json(201, Json::Null))
        }
        _ => Err((400, format!("no Azure Files call {} {path}?{}", req.method, req.query))),
    }
}

/// Shared Key as the storage services check it ("Authorize with Shared
/// Key": the verb, the standard headers, the `x-ms-` headers sorted, then
/// `/{account}{path}` and the query parameters sorted), HMAC-SHA256 with the
/// account key.
fn verify_shared_key(req: &Received, key: &str) -> Result<(), (u16, String)> {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let header = |name: &str| req.header(name).unwrap_or_default().to_string();
    let length = header("content-length");
    let length = if length == "0" { String::new() } else { length };
    let mut ms: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.clone(), v.trim().to_string()))
        .collect();
    ms.sort();
    let mut text = format!(
        "{}\n{}\n{}\n{length}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n",
        req.method,
        header("content-encoding"),
        header("content-language"),
        header("content-md5"),
        header("content-type"),
        header("if-modified-since"),
        header("if-match"),
        header("if-none-match"),
        header("if-unmodified-since"),
        header("range"),
    );
    for (k, v) in ms {
        text.push_str(&format!("{k}:{v}\n"));
    }
    text.push_str(&format!("/{ACCOUNT}{}", req.path));
    let mut params: Vec<(String, String)> =
        req.query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_lowercase(), decode(v))).collect();
    params.sort();
    for (k, v) in params {
        text.push_str(&format!("\n{k}:{v}"));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&b64.decode(key).unwrap_or_default()).unwrap();
    mac.update(text.as_bytes());
    let expected = format!("SharedKey {ACCOUNT}:{}", b64.encode(mac.finalize().into_bytes()));
    if req.header("authorization") != Some(expected.as_str()) {
        return Err((403, format!("AuthenticationFailed: the Shared Key signature does not match (signed {text:?})")));
    }
    Ok(())
}

/// `POST /Flows` (`CreateFlowRequest`): the flow's definition must be a
/// flow.dag.yaml in the file share whose folder holds what the DAG names:
/// every node's source file (additional includes merged in), no
/// `additional_includes` left, and the requirements named when there is a
/// requirements.txt, or the studio's session cannot run it.
fn create_flow(req: &Received, st: &mut State) -> Outcome {
    let body = &req.body;
    let text = |k: &str| body.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
    if text("flowName").is_empty() {
        return Err((400, format!("a flow needs a flowName: {body}")));
    }
    let flow_type = text("flowType");
    if !["default", "chat", "evaluation"].iter().any(|t| t.eq_ignore_ascii_case(&flow_type)) {
        return Err((400, format!("flowType {flow_type:?} is not one of the service's FlowType values")));
    }
    let path = text("flowDefinitionFilePath");
    check_shared_flow(&path, st)?;
    let id = format!("{:08x}-0000-4000-8000-{:012x}", st.flows.len() + 1, st.flows.len() + 1);
    // FlowType as the service's enum spells it.
    let service_type = match flow_type.to_lowercase().as_str() {
        "chat" => "Chat",
        "evaluation" => "Evaluation",
        _ => "Default",
    };
    let dto = json!({
        "flowId": id, "flowName": text("flowName"), "description": body.get("description"),
        "tags": body.get("tags").cloned().unwrap_or(json!({})), "flowType": service_type,
        "experimentId": WORKSPACE_ID, "flowDefinitionFilePath": path,
        "flowResourceId": format!("azureml://locations/eastus/workspaces/{WORKSPACE_ID}/flows/{id}"),
        "isArchived": false, "createdDate": format!("2026-11-30T22:{:02}:00Z", st.flows.len()),
    });
    st.flows.insert(id, dto.clone());
    Ok(Answer::json(200, dto))
}

fn check_shared_flow(path: &str, st: &State) -> Result<(), (u16, String)> {
    let folder = path
        .strip_suffix("/flow.dag.yaml")
        .filter(|f| f.starts_with("Users/"))
        .ok_or((400, format!("flowDefinitionFilePath {path} is not a flow.dag.yaml under Users/")))?;
    let text = st.share_files.get(path).ok_or((400, format!("{path} is not in the file share")))?;
    let text = String::from_utf8_lossy(text);
    let dag = model::yaml::parse(&text).ok().flatten().map(|n| n.to_json()).unwrap_or_default();
    if dag.get("additional_includes").is_some() {
        return Err((400, format!("{path}: additional_includes left in the shared flow")));
    }
    if st.share_files.contains_key(&format!("{folder}/requirements.txt"))
        && dag.pointer("/environment/python_requirements_txt").is_none()
    {
        return Err((400, format!("{path}: requirements.txt shared but not named in the flow")));
    }
    for node in dag.get("nodes").and_then(Json::as_array).into_iter().flatten() {
        if let Some(source) = node.pointer("/source/path").and_then(Json::as_str)
            && !st.share_files.contains_key(&format!("{folder}/{source}"))
        {
            return Err((400, format!("{path}: node source {source} is not in the flow's folder")));
        }
    }
    Ok(())
}

/// `GET` and `PUT` (`UpdateFlowRequest`) of `/Flows/{id}`: both need the
/// workspace id as `experimentId` (promptflow-azure's `build_get_flow_request`
/// and `build_update_flow_request` require it).
fn flow_call(req: &Received, id: &str, st: &mut State) -> Outcome {
    if req.param("experimentId") != Some(WORKSPACE_ID) {
        return Err((
            400,
            format!("/Flows/{id} needs experimentId={WORKSPACE_ID}, got {:?}", req.param("experimentId")),
        ));
    }
    if !st.flows.contains_key(id) {
        return Ok(Answer::json(
            404,
            json!({"error": {"code": "UserError", "message": format!("Flow {id} not found"), "innerError": {"code": "FlowNotFound"}}}),
        ));
    }
    match req.method.as_str() {
        "GET" => Ok(Answer::json(200, st.flows[id].clone())),
        "PUT" => {
            let path = st.flows[id]["flowDefinitionFilePath"].as_str().unwrap_or_default().to_string();
            check_shared_flow(&path, st)?;
            let flow = st.flows.get_mut(id).unwrap();
            for key in ["flowName", "description", "tags"] {
                if let Some(value) = req.body.get(key) {
                    flow[key] = value.clone();
                }
            }
            Ok(Answer::json(200, flow.clone()))
        }
        other => Err((405, format!("{other} /Flows/{id}"))),
    }
}

/// An environment's build context as Azure ML's image build reads it: a
/// blob folder URL with a trailing `/` (azure-ai-ml: "EMS requires it") in
/// the datastore, holding the Dockerfile it names, FROM promptflow's
/// runtime, and what that Dockerfile copies.
fn build_context_exists(build: &Json, script: &Script) -> Result<(), (u16, String)> {
    let uri = build.get("contextUri").and_then(Json::as_str).unwrap_or_default();
    let dockerfile = build.get("dockerfilePath").and_then(Json::as_str).unwrap_or("Dockerfile");
    if !uri.ends_with('/') {
        return Err((400, format!("build.contextUri {uri} must end with /")));
    }
    let (Some(account_url), Some(container)) = (&script.blob_url, container(script)?) else { return Ok(()) };
    let folder = uri
        .strip_prefix(&format!("{account_url}/{CONTAINER}/"))
        .ok_or((400, format!("build.contextUri {uri} is not in the workspace's datastore")))?;
    let text = container
        .get_text(&format!("{folder}{dockerfile}"))
        .map_err(|e| (500, e.to_string()))?
        .ok_or((400, format!("build context {uri} has no {dockerfile}")))?;
    if !text.starts_with("FROM mcr.microsoft.com/azureml/promptflow/promptflow-runtime") {
        return Err((400, format!("{dockerfile} does not start from promptflow's runtime image: {text}")));
    }
    for line in text.lines().filter_map(|l| l.strip_prefix("COPY ")) {
        let source = line.split_whitespace().next().unwrap_or_default().trim_start_matches("./");
        if container.metadata(&format!("{folder}{source}")).map_err(|e| (500, e.to_string()))?.is_none() {
            return Err((400, format!("{dockerfile} copies {source}, which is not in the build context")));
        }
    }
    Ok(())
}

/// A flow that names a requirements file needs them in its environment: an
/// image built from a context that installs them (the bare runtime image
/// lacks them, and the deployment's first request fails to import).
fn requirements_installed(model: &Json, environment: &Json, script: &Script) -> Result<(), (u16, String)> {
    let Some(container) = container(script)? else { return Ok(()) };
    let uri = model.pointer("/properties/modelUri").and_then(Json::as_str).unwrap_or_default();
    let folder = uri.split("/paths/").nth(1).unwrap_or_default().trim_end_matches('/');
    let dag = container.get_text(&format!("{folder}/flow.dag.yaml")).map_err(|e| (500, e.to_string()))?;
    let dag = dag.and_then(|t| model::yaml::parse(&t).ok().flatten()).map(|n| n.to_json()).unwrap_or_default();
    let Some(file) = dag.pointer("/environment/python_requirements_txt").and_then(Json::as_str) else { return Ok(()) };
    let wanted = container.get_text(&format!("{folder}/{file}")).map_err(|e| (500, e.to_string()))?.unwrap_or_default();
    let Some(context) = environment.pointer("/properties/build/contextUri").and_then(Json::as_str) else {
        return Err((400, format!("the flow needs {file} but its environment is a bare image: {environment}")));
    };
    let folder = context.split(&format!("/{CONTAINER}/")).nth(1).unwrap_or_default();
    let built = container.get_text(&format!("{folder}requirements.txt")).map_err(|e| (500, e.to_string()))?;
    if built.as_deref() != Some(wanted.as_str()) {
        return Err((400, format!("the environment installs {built:?}, the flow needs {wanted:?}")));
    }
    Ok(())
}

/// The snapshot the service took of a run's flow.
fn snapshot_id(run: &str) -> String {
    format!("snapshot-{run}")
}

/// The SAS a snapshot file URL carries (the content service's URLs are
/// signed; a request without it is refused).
const SNAPSHOT_SAS: &str = "sv=2021-08-06&sr=b&sig=fake-snapshot-sas";

/// `POST content/v2.0{WS}/snapshots/sas`: the run's flow folder as a tree
/// of `children`, each file with an `absoluteUrl` (served below).
fn snapshot_tree(req: &Received, st: &State, script: &Script) -> Outcome {
    let sid = req.body.get("snapshotOrAssetId").and_then(Json::as_str).unwrap_or_default();
    let run = st.runs.iter().find(|(id, _)| snapshot_id(id) == sid).map(|(_, r)| r);
    let Some(run) = run else {
        return Ok(Answer::json(404, json!({"error": {"code": "NotFound", "message": "no snapshot"}})));
    };
    let folder = run.body["flowDefinitionBlobPath"].as_str().unwrap_or_default().trim_end_matches("flow.dag.yaml");
    let container = container(script)?.ok_or((500, "snapshots need the datastore".to_string()))?;
    let mut root = json!({"name": "", "absoluteUrl": null, "children": {}});
    for (blob, _) in container.list(folder).map_err(|e| (500, e.to_string()))? {
        let rel = blob.trim_start_matches(folder);
        let mut node = &mut root;
        let parts: Vec<&str> = rel.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let url =
                (i + 1 == parts.len()).then(|| format!("{}/snapshot-files/{sid}/{rel}?{SNAPSHOT_SAS}", st.base_url));
            node = node["children"]
                .as_object_mut()
                .unwrap()
                .entry(part.to_string())
                .or_insert_with(|| json!({"name": part, "absoluteUrl": url, "children": {}}));
        }
    }
    Ok(Answer::json(200, root))
}

/// A snapshot file by its SAS URL: no bearer token, the signature instead.
fn snapshot_file(req: &Received, rest: &str, st: &State, script: &Script) -> Outcome {
    if req.query != SNAPSHOT_SAS || req.header("authorization").is_some() {
        return Err((403, format!("a snapshot file is read with its SAS only: {:?}", req.header("authorization"))));
    }
    let (sid, rel) = rest.split_once('/').ok_or((404, "no snapshot file".to_string()))?;
    let run = st
        .runs
        .iter()
        .find(|(id, _)| snapshot_id(id) == sid)
        .map(|(_, r)| r)
        .ok_or((404, "no snapshot".to_string()))?;
    let folder = run.body["flowDefinitionBlobPath"].as_str().unwrap_or_default().trim_end_matches("flow.dag.yaml");
    let container = container(script)?.ok_or((500, "snapshots need the datastore".to_string()))?;
    let text = container.get_text(&format!("{folder}{rel}")).map_err(|e| (500, e.to_string()))?;
    text.map(|t| Answer::xml(200, t)).ok_or((404, format!("no snapshot file {rel}")))
}
