//! Which workspace, and what the service says about it: the regional
//! endpoint runs are submitted to (from the workspace's `discoveryUrl`) and
//! the default datastore uploads go to (with its credentials).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;

use super::AzureMlError;
use super::blob::{Container, Credential};
use super::client::{Client, DATASTORE_API_VERSION, WORKSPACE_API_VERSION, check_scheme};
use model::flow::run_file::RunIdentity;
use model::secret::Secret;

/// A workspace's ARM coordinates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceRef {
    pub subscription_id: String,
    pub resource_group: String,
    pub workspace: String,
}

/// The three keys, with where each may come from.
const KEYS: [(&str, &str, &str); 3] = [
    ("subscription_id", "AZUREML_SUBSCRIPTION_ID", "subscription_id"),
    ("resource_group", "AZUREML_RESOURCE_GROUP", "resource_group"),
    ("workspace", "AZUREML_WORKSPACE_NAME", "workspace_name"),
];

impl WorkspaceRef {
    /// Each key from `.flow-ci.yaml`'s `azureml:`, else the environment
    /// (`AZUREML_SUBSCRIPTION_ID`, `AZUREML_RESOURCE_GROUP`,
    /// `AZUREML_WORKSPACE_NAME`), else an Azure ML `config.json` (in the
    /// current folder or a parent, or their `.azureml/`), as azure-ai-ml finds it.
    pub fn resolve(
        config: &[(String, String)],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<WorkspaceRef, AzureMlError> {
        let file = find_config_json(&std::env::current_dir().unwrap_or_default());
        let from_file: Json = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Json::Null);
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for (key, var, json_key) in KEYS {
            let value = config
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| env(var).filter(|v| !v.is_empty()))
                .or_else(|| from_file.get(json_key).and_then(Json::as_str).map(str::to_string));
            match value {
                Some(v) => values.push(v),
                None => missing.push(format!("`{key}` ({var})")),
            }
        }
        if !missing.is_empty() {
            return Err(AzureMlError::Config(format!(
                "the Azure ML workspace is not known: missing {}; set them under `azureml:` in .flow-ci.yaml, in the environment, or in an Azure ML config.json",
                missing.join(", ")
            )));
        }
        let workspace = values.pop().unwrap_or_default();
        let resource_group = values.pop().unwrap_or_default();
        let subscription_id = values.pop().unwrap_or_default();
        Ok(WorkspaceRef { subscription_id, resource_group, workspace })
    }

    /// `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{w}`
    pub fn arm_path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            self.subscription_id, self.resource_group, self.workspace
        )
    }
}

fn find_config_json(start: &Path) -> Option<PathBuf> {
    start.ancestors().flat_map(|dir| [dir.join("config.json"), dir.join(".azureml/config.json")]).find(|p| {
        // Only an Azure ML config (other tools use config.json too).
        std::fs::read_to_string(p).is_ok_and(|t| t.contains("\"workspace_name\""))
    })
}

/// A workspace as the service describes it.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub reference: WorkspaceRef,
    pub location: String,
    /// `properties.workspaceId`.
    pub id: String,
    /// The regional services: `https://{region}.api.azureml.ms/`.
    pub services: String,
    /// `properties.primaryUserAssignedIdentity`: an identity's ARM id.
    pub primary_identity: Option<String>,
    /// `identity.userAssignedIdentities`: (ARM id, client id) of each.
    pub user_identities: Vec<(String, String)>,
}

impl Workspace {
    /// `GET {WS}`; the services URL is the `discoveryUrl` cut before `discovery`.
    pub fn open(client: &Client, reference: WorkspaceRef) -> Result<Workspace, AzureMlError> {
        let url = format!("{}{}?api-version={WORKSPACE_API_VERSION}", client.arm_url, reference.arm_path());
        let json = client.get(&url)?;
        let properties = json.get("properties").unwrap_or(&Json::Null);
        let kind = json.get("kind").and_then(Json::as_str).unwrap_or("Default");
        if kind.eq_ignore_ascii_case("hub") {
            return Err(AzureMlError::Config(format!(
                "workspace `{}` is a hub; runs are submitted to a project (or a plain workspace): set `workspace` to a project's name",
                reference.workspace
            )));
        }
        let discovery = properties.get("discoveryUrl").and_then(Json::as_str).unwrap_or_default();
        let services = match discovery.find("discovery") {
            Some(i) => discovery[..i].to_string(),
            None => {
                return Err(AzureMlError::Config(format!(
                    "workspace `{}` has no usable discoveryUrl (`{discovery}`)",
                    reference.workspace
                )));
            }
        };
        check_scheme(&services)?;
        let user_identities = json
            .pointer("/identity/userAssignedIdentities")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
            .map(|(id, v)| (id.clone(), v.get("clientId").and_then(Json::as_str).unwrap_or_default().to_string()))
            .collect();
        Ok(Workspace {
            primary_identity: properties
                .get("primaryUserAssignedIdentity")
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            user_identities,
            location: json.get("location").and_then(Json::as_str).unwrap_or_default().to_string(),
            id: properties.get("workspaceId").and_then(Json::as_str).unwrap_or_default().to_string(),
            services: format!("{}/", services.trim_end_matches('/')),
            reference,
        })
    }

    /// The submit body's `identity` for a run file's `identity:`, as
    /// promptflow-azure's `RunOperations._resolve_identity` (1.18.5) resolves
    /// it: `user_identity` sends nothing (the submitter's identity is the
    /// default); `managed` sends the ARM id of the workspace's user-assigned
    /// identity with that `client_id`, else of its primary one
    /// (`Run._to_rest_object` puts it in `SubmitBulkRunRequest.identity`).
    pub fn run_identity(
        &self,
        file: &Path,
        identity: &model::yaml::Spanned<RunIdentity>,
    ) -> Result<Option<String>, AzureMlError> {
        let at = format!("{}:{}", file.display(), identity.pos);
        let ws = &self.reference.workspace;
        match &identity.value {
            RunIdentity::User => Ok(None),
            RunIdentity::Managed { client_id: None } => self.primary_identity.clone().map(Some).ok_or_else(|| {
                AzureMlError::Config(format!(
                    "{at}: `identity: {{type: managed}}` runs as the workspace's primary user-assigned identity, and workspace `{ws}` has none; name one with `client_id`, or give the workspace a primary user-assigned identity"
                ))
            }),
            RunIdentity::Managed { client_id: Some(client) } => self
                .user_identities
                .iter()
                .find(|(_, c)| c.eq_ignore_ascii_case(client))
                .map(|(id, _)| Some(id.clone()))
                .ok_or_else(|| {
                    let known: Vec<&str> = self.user_identities.iter().map(|(_, c)| c.as_str()).collect();
                    AzureMlError::Config(format!(
                        "{at}: workspace `{ws}` has no user-assigned identity with client id {client} (it has: {}); assign that identity to the workspace or use one of its client ids",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ))
                }),
        }
    }

    /// `{services}{service}{WS}{rest}`, e.g. `("flow/api", "/BulkRuns/submit")`.
    pub fn service_url(&self, service: &str, rest: &str) -> String {
        format!("{}{service}{}{rest}", self.services, self.reference.arm_path())
    }

    /// The default datastore and a client for its container, with the
    /// credentials `listSecrets` hands out, or the caller's Entra token for
    /// an identity-based datastore.
    pub fn default_datastore(&self, client: &Client) -> Result<Datastore, AzureMlError> {
        let ws = format!("{}{}", client.arm_url, self.reference.arm_path());
        let list = client.get(&format!(
            "{ws}/datastores?api-version={DATASTORE_API_VERSION}&isDefault=true&count=30&orderByAsc=false"
        ))?;
        let store = list.get("value").and_then(|v| v.get(0)).ok_or_else(|| {
            AzureMlError::Config(format!("workspace `{}` has no default datastore", self.reference.workspace))
        })?;
        let name = store.get("name").and_then(Json::as_str).unwrap_or_default().to_string();
        let p = store.get("properties").unwrap_or(&Json::Null);
        let field = |k: &str| p.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
        let kind = field("datastoreType");
        if kind != "AzureBlob" {
            return Err(AzureMlError::Config(format!(
                "the default datastore `{name}` is {kind}; flow-ci uploads to Azure Blob datastores only"
            )));
        }
        let (account, container, endpoint) = (field("accountName"), field("containerName"), field("endpoint"));
        let credential = datastore_credential(client, &format!("{ws}/datastores/{name}"), &name, p)?;
        let account_url = std::env::var("FLOW_CI_BLOB_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
            format!("https://{account}.blob.{}", if endpoint.is_empty() { "core.windows.net" } else { &endpoint })
        });
        check_scheme(&account_url)?;
        let container = Container::new(&account_url, &account, &container, credential)?;
        Ok(Datastore { name, container })
    }
}

/// How uploads to the datastore authenticate, as azure-ai-ml decides it
/// (`_artifacts/_artifact_utilities.py::get_datastore_info`, 1.35.2): an
/// identity-based datastore (`credentials.credentialsType: None`) is not
/// asked for secrets ("Identity-based datastore detected. Skipping
/// _list_secrets call"), and when `listSecrets` is refused the caller's own
/// credential is used instead; both then upload with an Entra token for
/// storage (azure-storage-blob's `StorageBearerTokenCredentialPolicy`, scope
/// `https://storage.azure.com/.default`). Otherwise the key or SAS token
/// `listSecrets` hands out.
fn datastore_credential(
    client: &Client,
    datastore_url: &str,
    name: &str,
    properties: &Json,
) -> Result<Credential, AzureMlError> {
    let kind = properties.pointer("/credentials/credentialsType").and_then(Json::as_str).unwrap_or_default();
    if kind.eq_ignore_ascii_case("none") {
        tracing::debug!(
            "datastore {name} is identity-based (credentialsType None): no listSecrets; uploads use an Entra token for storage"
        );
        return Ok(Credential::Bearer(Arc::new(client.storage_tokens())));
    }
    // No body, as azure-ai-ml's build_datastores_list_secrets_request
    // (arm_ml_service/operations/_operations.py) sends none.
    let url = format!("{datastore_url}/listSecrets?api-version={DATASTORE_API_VERSION}");
    let secrets = match client.post_empty(&url) {
        Ok(secrets) => secrets,
        // azure-ai-ml falls back on any HttpResponseError; a 403 is the one
        // that means "you may not read the key" (AuthorizationFailed on
        // datastores/listSecrets/action), anything else stays an error.
        Err(AzureMlError::Service { status: 403, code, .. }) => {
            tracing::debug!(
                "listSecrets on datastore {name} was refused ({code}); uploads use an Entra token for storage"
            );
            return Ok(Credential::Bearer(Arc::new(client.storage_tokens())));
        }
        Err(e) => return Err(e),
    };
    match secrets.get("secretsType").and_then(Json::as_str) {
        Some("AccountKey") => Ok(Credential::AccountKey(Secret::new(secret(&secrets, "key")?))),
        Some("Sas") => Ok(Credential::Sas(Secret::new(secret(&secrets, "sasToken")?))),
        other => Err(AzureMlError::Config(format!(
            "the default datastore `{name}` has credentials of type {}; flow-ci needs an account key, a SAS token or an identity-based datastore",
            other.unwrap_or("none")
        ))),
    }
}

fn secret(json: &Json, key: &str) -> Result<String, AzureMlError> {
    json.get(key)
        .and_then(Json::as_str)
        .map(str::to_string)
        .ok_or_else(|| AzureMlError::Config(format!("the datastore's listSecrets answer has no `{key}`")))
}

pub struct Datastore {
    pub name: String,
    pub container: Container,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_beats_environment() {
        let config = vec![("workspace".to_string(), "from-config".to_string())];
        let env = |k: &str| match k {
            "AZUREML_SUBSCRIPTION_ID" => Some("sub".to_string()),
            "AZUREML_RESOURCE_GROUP" => Some("rg".to_string()),
            "AZUREML_WORKSPACE_NAME" => Some("from-env".to_string()),
            _ => None,
        };
        let ws = WorkspaceRef::resolve(&config, &env).unwrap();
        assert_eq!(ws.workspace, "from-config");
        assert_eq!(
            ws.arm_path(),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/from-config"
        );
    }

    #[test]
    fn missing_keys_are_named() {
        let e = WorkspaceRef::resolve(&[], &|_| None).unwrap_err().to_string();
        // (A config.json above the test's folder would fill them; there is none in this repository.)
        assert!(e.contains("AZUREML_SUBSCRIPTION_ID") && e.contains("AZUREML_WORKSPACE_NAME"), "{e}");
    }
}
