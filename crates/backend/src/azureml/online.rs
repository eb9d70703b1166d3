//! Azure ML v2 ARM for serving a flow: a model asset holding the flow
//! folder (with promptflow's properties), the promptflow runtime
//! environment, a managed online endpoint and a deployment, their
//! long-running operations, the endpoint's key, scoring and traffic.
//! URLs and bodies are built here once, for the calls and for `--dry-run`.

use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};

use super::AzureMlError;
use super::client::{
    Client, DEPLOYMENT_API_VERSION, ENDPOINT_API_VERSION, ENVIRONMENT_API_VERSION, MODEL_API_VERSION, Reply,
};
use super::workspace::WorkspaceRef;

/// The image promptflow's own deployment examples serve flows with.
pub const DEFAULT_IMAGE: &str = "mcr.microsoft.com/azureml/promptflow/promptflow-runtime:latest";
/// The environment flow-ci registers that image as.
pub const ENVIRONMENT: &str = "flow-ci-promptflow-runtime";

/// The Dockerfile of a flow with requirements: the runtime image with them
/// installed, as prompt flow's "Deploy a flow to online endpoint for
/// real-time inference" doc builds its custom environment
/// (`image_build_with_requirements/Dockerfile`).
pub fn dockerfile(base: &str) -> String {
    format!("FROM {base}\nCOPY ./requirements.txt .\nRUN pip install -r requirements.txt\n")
}

/// The environment a deployment serves the flow in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Environment {
    /// An image used as is (registered as a version of [`ENVIRONMENT`]).
    Image(String),
    /// An image built by Azure ML from a context folder in the datastore:
    /// `contextUri` is the folder's blob URL with a trailing `/` (azure-ai-ml
    /// `_check_and_upload_env_build_context`: "EMS requires it"), holding a
    /// `Dockerfile` (`BuildContext` → REST `build: {contextUri, dockerfilePath}`).
    Build { context_uri: String, hash: String },
    /// An environment version the user registered (`azureml:name:version`), by ARM id.
    Existing(String),
}

/// The model property (and tag) holding the flow's content hash: how an
/// unchanged flow finds the version it was registered as.
pub const CONTENT_HASH: &str = "flow-ci.content-hash";

/// What to deploy, resolved from `deploy:` and the flow.
#[derive(Clone, Debug)]
pub struct Target {
    pub workspace: WorkspaceRef,
    pub arm_url: String,
    pub model: String,
    /// A positive integer, as a workspace registry requires: the version
    /// that holds this content, or the container's `nextVersion`.
    pub model_version: String,
    /// The flow snapshot's content hash, kept with the model (see `CONTENT_HASH`).
    pub content_hash: String,
    /// `LocalUpload/{hash}/{flow}` in the datastore.
    pub model_path: String,
    pub datastore: String,
    pub environment: Environment,
    pub endpoint: String,
    pub deployment: String,
    pub instance_type: String,
    pub instance_count: u32,
    /// Promptflow's model properties (`is-promptflow`, chat input/output).
    pub model_properties: Map<String, Json>,
    pub tags: Map<String, Json>,
    pub location: String,
}

/// One ARM call: what `--dry-run` prints and what a deploy sends.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Call {
    pub method: &'static str,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    pub why: String,
}

impl Target {
    fn ws(&self) -> String {
        format!("{}{}", self.arm_url, self.workspace.arm_path())
    }

    /// `rest` below the workspace, with the api-version azure-ai-ml uses for it.
    fn url(&self, rest: &str, api_version: &str) -> String {
        format!("{}{rest}?api-version={api_version}", self.ws())
    }

    pub fn model_id(&self) -> String {
        format!("{}/models/{}/versions/{}", self.workspace.arm_path(), self.model, self.model_version)
    }

    /// An image's version is a digest of its name; a build's, of its context.
    pub fn environment_version(&self) -> String {
        use sha2::Digest;
        match &self.environment {
            Environment::Image(image) => {
                base16ct::lower::encode_string(&sha2::Sha256::digest(image.as_bytes()))[..12].to_string()
            }
            Environment::Build { hash, .. } => format!("build-{}", &hash[..hash.len().min(12)]),
            Environment::Existing(id) => id.rsplit('/').next().unwrap_or_default().to_string(),
        }
    }

    /// The environment's ARM id, as the deployment names it.
    pub fn environment_id(&self) -> String {
        match &self.environment {
            Environment::Existing(id) => id.clone(),
            _ => format!(
                "{}/environments/{ENVIRONMENT}/versions/{}",
                self.workspace.arm_path(),
                self.environment_version()
            ),
        }
    }

    /// Whether flow-ci registers the environment (not one the user named).
    pub fn registers_environment(&self) -> bool {
        !matches!(self.environment, Environment::Existing(_))
    }

    pub fn model_url(&self) -> String {
        self.url(&format!("/models/{}/versions/{}", self.model, self.model_version), MODEL_API_VERSION)
    }

    /// The model's versions (paged with `nextLink`).
    pub fn model_versions_url(&self) -> String {
        self.url(&format!("/models/{}/versions", self.model), MODEL_API_VERSION)
    }

    /// The model container, whose `nextVersion` a new version takes.
    pub fn model_container_url(&self) -> String {
        self.url(&format!("/models/{}", self.model), MODEL_API_VERSION)
    }

    pub fn model_body(&self) -> Json {
        let w = &self.workspace;
        let mut properties = self.model_properties.clone();
        properties.insert(CONTENT_HASH.into(), json!(self.content_hash));
        let mut tags = self.tags.clone();
        tags.insert(CONTENT_HASH.into(), json!(self.content_hash));
        json!({"properties": {
            "modelUri": format!(
                "azureml://subscriptions/{}/resourceGroups/{}/workspaces/{}/datastores/{}/paths/{}",
                w.subscription_id, w.resource_group, w.workspace, self.datastore, self.model_path
            ),
            "modelType": "custom_model",
            "description": "A prompt flow, registered by flow-ci",
            "tags": tags,
            "properties": properties,
        }})
    }

    pub fn environment_url(&self) -> String {
        self.url(
            &format!("/environments/{ENVIRONMENT}/versions/{}", self.environment_version()),
            ENVIRONMENT_API_VERSION,
        )
    }

    pub fn environment_body(&self) -> Json {
        let route = |path: &str| json!({"path": path, "port": 8080});
        let mut properties = json!({
            "osType": "Linux",
            "description": "promptflow's serving runtime",
            "inferenceConfig": {"livenessRoute": route("/health"), "readinessRoute": route("/health"), "scoringRoute": route("/score")},
        });
        match &self.environment {
            Environment::Image(image) => properties["image"] = json!(image),
            Environment::Build { context_uri, .. } => {
                properties["build"] = json!({"contextUri": context_uri, "dockerfilePath": "Dockerfile"});
                properties["description"] = json!("promptflow's serving runtime with the flow's requirements");
            }
            Environment::Existing(_) => {}
        }
        json!({ "properties": properties })
    }

    pub fn endpoint_url(&self) -> String {
        self.url(&format!("/onlineEndpoints/{}", self.endpoint), ENDPOINT_API_VERSION)
    }

    /// `enforce_access_to_default_secret_stores` lets the endpoint's identity
    /// read the workspace's connections, which a deployed flow resolves at
    /// start-up (prompt flow's "Deploy a flow to online endpoint for
    /// real-time inference" doc, its endpoint YAML's `properties:`).
    pub fn endpoint_body(&self) -> Json {
        json!({
            "location": self.location,
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "authMode": "Key",
                "properties": {"enforce_access_to_default_secret_stores": "enabled"},
            },
        })
    }

    pub fn deployment_url(&self) -> String {
        self.url(&format!("/onlineEndpoints/{}/deployments/{}", self.endpoint, self.deployment), DEPLOYMENT_API_VERSION)
    }

    pub fn deployment_body(&self) -> Json {
        let w = &self.workspace;
        let overrides = format!(
            "deployment.subscription_id={},deployment.resource_group={},deployment.workspace_name={},deployment.endpoint_name={},deployment.deployment_name={}",
            w.subscription_id, w.resource_group, w.workspace, self.endpoint, self.deployment
        );
        json!({
            "location": self.location,
            "sku": {"name": "Default", "capacity": self.instance_count},
            "properties": {
                "endpointComputeType": "Managed",
                "model": self.model_id(),
                "environmentId": self.environment_id(),
                "instanceType": self.instance_type,
                "environmentVariables": {"PROMPTFLOW_RUN_MODE": "serving", "PRT_CONFIG_OVERRIDE": overrides},
                "requestSettings": {"requestTimeout": "PT5M"},
                "livenessProbe": {"initialDelay": "PT10M"},
            }
        })
    }

    pub fn keys_url(&self) -> String {
        self.url(&format!("/onlineEndpoints/{}/listKeys", self.endpoint), ENDPOINT_API_VERSION)
    }

    /// Every call a deploy makes, in order (the dry run's listing).
    pub fn plan(&self, traffic: &Map<String, Json>) -> Vec<Call> {
        let call = |method, url: String, body: Option<Json>, why: &str| Call { method, url, body, why: why.into() };
        let mut calls = vec![
            call(
                "GET",
                self.model_versions_url(),
                None,
                "is this content registered? (a version whose flow-ci.content-hash matches; then the model PUT is skipped)",
            ),
            call("GET", self.model_container_url(), None, "the model's nextVersion (1 for a new model)"),
            call("PUT", self.model_url(), Some(self.model_body()), "register the flow folder as a model"),
            call("GET", self.environment_url(), None, "is the runtime environment registered?"),
            call("PUT", self.environment_url(), Some(self.environment_body()), "register the runtime environment"),
            call("GET", self.endpoint_url(), None, "does the endpoint exist? (then its PUT is skipped)"),
            call(
                "PUT",
                self.endpoint_url(),
                Some(self.endpoint_body()),
                "create the endpoint; wait on Azure-AsyncOperation",
            ),
            call(
                "PUT",
                self.deployment_url(),
                Some(self.deployment_body()),
                "create or update the deployment; wait on Azure-AsyncOperation",
            ),
            call("POST", self.keys_url(), None, "the endpoint key, for the smoke test"),
            call(
                "POST",
                "{scoringUri}".into(),
                None,
                "smoke test the new deployment (azureml-model-deployment header)",
            ),
            call("GET", self.endpoint_url(), None, "the endpoint as it is, to change only its traffic"),
            call(
                "PUT",
                self.endpoint_url(),
                Some(traffic_body(&self.endpoint_body(), traffic)),
                "shift traffic, only when the smoke test passed (the whole endpoint); wait on Azure-AsyncOperation",
            ),
            call("GET", self.endpoint_url(), None, "the traffic the endpoint really has, for the report"),
        ];
        if !self.registers_environment() {
            calls.retain(|c| c.url != self.environment_url());
        }
        calls
    }
}

/// The version of `target.model` registered with this content, if any.
pub fn registered_version(client: &Client, target: &Target) -> Result<Option<String>, AzureMlError> {
    let mut url = Some(target.model_versions_url());
    while let Some(page_url) = url.take() {
        let Some(page) = client.get_optional(&page_url)? else { return Ok(None) };
        let versions = page.get("value").and_then(Json::as_array).into_iter().flatten();
        if let Some(found) = versions.into_iter().find(|v| holds_hash(v, &target.content_hash)) {
            return Ok(found.get("name").and_then(Json::as_str).map(str::to_string));
        }
        url = page.get("nextLink").and_then(Json::as_str).map(str::to_string);
    }
    Ok(None)
}

fn holds_hash(version: &Json, hash: &str) -> bool {
    let property = version.pointer("/properties/properties").and_then(|p| p.get(CONTENT_HASH));
    property.and_then(Json::as_str) == Some(hash)
}

/// The version a new registration takes: the container's `nextVersion`,
/// "1" for a new model, as azure-ai-ml's `ModelOperations.create_or_update`
/// does when no version is given (`_asset_utils._get_next_version_from_container`).
pub fn next_version(client: &Client, target: &Target) -> Result<String, AzureMlError> {
    let container = client.get_optional(&target.model_container_url())?;
    let next = container.as_ref().and_then(|c| c.pointer("/properties/nextVersion"));
    Ok(match next {
        Some(Json::String(v)) => v.clone(),
        Some(Json::Number(n)) => n.to_string(),
        _ => "1".into(),
    })
}

/// The PUT body that gives `endpoint` (as ARM's GET shows it) `traffic`
/// and changes nothing else. ARM's PATCH of an endpoint
/// (`PartialMinimalTrackedResourceWithIdentity` in azure-rest-api-specs'
/// machinelearningservices swagger) holds only `tags` and `identity`, so
/// traffic moves by a PUT of the whole endpoint, as azure-ai-ml's
/// `OnlineEndpointOperations.begin_create_or_update` does, with zero
/// shares left out (its `_strip_zeroes_from_traffic`). Read-only fields
/// are dropped.
pub fn traffic_body(endpoint: &Json, traffic: &Map<String, Json>) -> Json {
    let mut body = Map::new();
    for key in ["location", "tags", "kind", "sku"] {
        if let Some(value) = endpoint.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), value.clone());
        }
    }
    if let Some(identity) = endpoint.get("identity").and_then(Json::as_object) {
        let kept = identity.iter().filter(|(k, _)| *k == "type" || *k == "userAssignedIdentities");
        body.insert("identity".into(), Json::Object(kept.map(|(k, v)| (k.clone(), v.clone())).collect()));
    }
    let mut properties = endpoint.get("properties").and_then(Json::as_object).cloned().unwrap_or_default();
    for read_only in ["scoringUri", "swaggerUri", "provisioningState"] {
        properties.remove(read_only);
    }
    let shares = traffic.iter().filter(|(_, v)| v.as_u64().unwrap_or(0) > 0);
    properties.insert("traffic".into(), Json::Object(shares.map(|(k, v)| (k.clone(), v.clone())).collect()));
    body.insert("properties".into(), Json::Object(properties));
    Json::Object(body)
}

/// The traffic after a shift: `percent` to `deployment`, the rest split
/// over the others in proportion to what they had (all of it when alone).
pub fn shifted_traffic(current: &Map<String, Json>, deployment: &str, percent: u32) -> Map<String, Json> {
    let others: Vec<(&String, u64)> = current
        .iter()
        .filter(|(name, _)| *name != deployment)
        .map(|(name, v)| (name, v.as_u64().unwrap_or(0)))
        .collect();
    let total: u64 = others.iter().map(|(_, v)| v).sum();
    let mut traffic = Map::new();
    if total == 0 {
        traffic.insert(deployment.into(), json!(100));
        for (name, _) in others {
            traffic.insert(name.clone(), json!(0));
        }
        return traffic;
    }
    let rest = 100 - u64::from(percent.min(100));
    let mut given = 0;
    for (i, (name, share)) in others.iter().enumerate() {
        // The last one takes the rounding remainder, so the sum is 100.
        let value = if i + 1 == others.len() { rest - given } else { rest * share / total };
        given += value;
        traffic.insert((*name).clone(), json!(value));
    }
    traffic.insert(deployment.into(), json!(percent.min(100)));
    traffic
}

/// Whether two traffic maps send the same shares (a missing deployment has 0).
pub fn same_traffic(a: &Map<String, Json>, b: &Map<String, Json>) -> bool {
    let share = |m: &Map<String, Json>, k: &str| m.get(k).and_then(Json::as_u64).unwrap_or(0);
    a.keys().chain(b.keys()).all(|k| share(a, k) == share(b, k))
}

/// Follows a long-running ARM operation: `Azure-AsyncOperation` until its
/// `status` is terminal, or `Location` until it stops answering 202.
pub fn wait_for(
    client: &Client,
    reply: &Reply,
    what: &str,
    poll: Duration,
    deadline: Option<Instant>,
    say: &dyn Fn(&str),
) -> Result<(), AzureMlError> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let status = if let Some(url) = &reply.async_operation {
            let op = client.get(url)?;
            let status = op.get("status").and_then(Json::as_str).unwrap_or("InProgress").to_string();
            if status.eq_ignore_ascii_case("Failed") || status.eq_ignore_ascii_case("Canceled") {
                let (code, message) = super::client::service_error(&op.to_string());
                return Err(AzureMlError::Operation { what: what.into(), status, code, message });
            }
            status
        } else if let Some(url) = &reply.location {
            match client.get_reply(url)?.status {
                202 => "InProgress".to_string(),
                _ => "Succeeded".to_string(),
            }
        } else {
            "Succeeded".to_string()
        };
        if status != last {
            say(&format!("{what}: {status} ({}s)", started.elapsed().as_secs()));
            last = status.clone();
        }
        if status.eq_ignore_ascii_case("Succeeded") {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(AzureMlError::Config(format!("{what} did not finish within --timeout")));
        }
        std::thread::sleep(reply.retry_after.unwrap_or(poll).min(poll));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(pairs: &[(&str, u64)]) -> Map<String, Json> {
        pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
    }

    #[test]
    fn a_traffic_put_keeps_the_endpoint_and_drops_zero_shares_and_read_only_fields() {
        let endpoint = json!({"id": "/x", "name": "e", "location": "eastus", "tags": {"a": "b"},
            "identity": {"type": "SystemAssigned", "principalId": "p"},
            "properties": {"authMode": "Key", "scoringUri": "https://s", "provisioningState": "Succeeded",
                "traffic": {"blue": 100}, "properties": {"enforce_access_to_default_secret_stores": "enabled"}}});
        let body = traffic_body(&endpoint, &traffic(&[("blue", 0), ("green", 100)]));
        assert_eq!(
            body,
            json!({"location": "eastus", "tags": {"a": "b"}, "identity": {"type": "SystemAssigned"},
                "properties": {"authMode": "Key", "traffic": {"green": 100},
                    "properties": {"enforce_access_to_default_secret_stores": "enabled"}}})
        );
    }

    #[test]
    fn traffic_shifts_take_from_the_others_in_proportion() {
        assert_eq!(shifted_traffic(&Map::new(), "green", 10), traffic(&[("green", 100)]));
        assert_eq!(shifted_traffic(&traffic(&[("blue", 100)]), "green", 10), traffic(&[("blue", 90), ("green", 10)]));
        assert_eq!(
            shifted_traffic(&traffic(&[("a", 50), ("b", 50), ("green", 0)]), "green", 25),
            traffic(&[("a", 37), ("b", 38), ("green", 25)])
        );
        assert_eq!(shifted_traffic(&traffic(&[("blue", 100)]), "green", 100), traffic(&[("blue", 0), ("green", 100)]));
        // A rollback of a deployment that had nothing changes nothing.
        let before = traffic(&[("blue", 100)]);
        assert!(same_traffic(&shifted_traffic(&before, "green", 0), &before));
        assert!(!same_traffic(
            &shifted_traffic(&traffic(&[("blue", 50), ("green", 50)]), "green", 0),
            &before.clone().into_iter().chain([("green".to_string(), json!(50))]).collect()
        ));
    }
}
