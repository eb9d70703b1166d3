//! HTTP to Azure Resource Manager and the Azure ML services: a bearer token
//! on every call (ARM's scope, as `pfazure` does), throttling and transient
//! failures retried the way azure-core does, and the services' error bodies
//! turned into their code and message.

use std::time::Duration;

use serde_json::Value as Json;

use super::AzureMlError;
use net::entra::TokenSource;
use net::http::retry_after;
use net::retry::{Next, Policy};

/// ARM and the Azure ML resource (whose token goes in `aml-user-token`).
pub struct Cloud {
    pub arm_url: String,
    pub arm_resource: String,
    pub ml_resource: String,
    /// The sign-in authority a cloud from ARM's metadata names.
    pub authority: Option<String>,
}

impl Cloud {
    /// `AZUREML_CURRENT_CLOUD` picks a sovereign cloud (as promptflow reads
    /// it); `FLOW_CI_ARM_URL` points ARM elsewhere (e.g. a loopback fake).
    pub fn from_env() -> Cloud {
        let (arm, ml) = match std::env::var("AZUREML_CURRENT_CLOUD").unwrap_or_default().to_lowercase().as_str() {
            "azurechinacloud" => ("https://management.chinacloudapi.cn", "https://ml.azure.cn"),
            "azureusgovernment" => ("https://management.usgovcloudapi.net", "https://ml.azure.us"),
            _ => ("https://management.azure.com", "https://ml.azure.com"),
        };
        let arm_url = std::env::var("FLOW_CI_ARM_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| arm.into());
        Cloud {
            arm_url: arm_url.trim_end_matches('/').into(),
            arm_resource: arm.into(),
            ml_resource: ml.into(),
            authority: None,
        }
    }

    /// `from_env`; without `AZUREML_CURRENT_CLOUD` but with
    /// `ARM_CLOUD_METADATA_URL`, the cloud ARM's metadata lists on that URL's
    /// host, as azure-ai-ml finds it (`_get_default_cloud_name`,
    /// `_get_clouds_by_metadata_url`): its ARM, its login endpoint, and
    /// `https://ml.azure.{suffix of its portal}` as the Azure ML resource.
    pub fn resolve() -> Result<Cloud, AzureMlError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (None, Some(url)) = (env("AZUREML_CURRENT_CLOUD"), env("ARM_CLOUD_METADATA_URL")) else {
            return Ok(Cloud::from_env());
        };
        check_scheme(&url)?;
        let failed = |message: String| AzureMlError::Http { url: path_of(&url), message };
        let response = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .and_then(|c| c.get(&url).send())
            .map_err(|e| failed(net::http::error_chain(&e)))?;
        let metadata: Json = response.json().map_err(|e| failed(format!("not cloud metadata: {e}")))?;
        let mut cloud = from_metadata(&metadata, &url).ok_or_else(|| {
            AzureMlError::Config(format!(
                "ARM_CLOUD_METADATA_URL ({}) lists no cloud whose resourceManager serves it",
                path_of(&url)
            ))
        })?;
        if let Some(arm) = env("FLOW_CI_ARM_URL") {
            cloud.arm_url = arm.trim_end_matches('/').into();
        }
        Ok(cloud)
    }
}

/// The cloud of ARM's metadata (`GET {ARM}/metadata/endpoints`, a list or
/// one cloud) whose `resourceManager` the metadata URL is on.
fn from_metadata(metadata: &Json, url: &str) -> Option<Cloud> {
    let clouds = match metadata {
        Json::Array(list) => list.iter().collect::<Vec<_>>(),
        one => vec![one],
    };
    clouds.into_iter().find_map(|cloud| {
        let arm = cloud.get("resourceManager")?.as_str()?;
        if !url.contains(arm) && !url.contains(arm.trim_end_matches('/')) {
            return None;
        }
        let portal = cloud.get("portal")?.as_str()?;
        let suffix = portal.split('.').skip(2).collect::<Vec<_>>().join(".").replace('/', "");
        let arm = arm.trim_end_matches('/').to_string();
        Some(Cloud {
            arm_url: arm.clone(),
            arm_resource: arm,
            ml_resource: format!("https://ml.azure.{suffix}"),
            authority: cloud.pointer("/authentication/loginEndpoint")?.as_str().map(|a| a.trim_end_matches('/').into()),
        })
    })
}

/// ARM and Azure ML calls: 5 tries, backing off from 0.8 s (azure-core's
/// factor) up to 2 minutes between tries (ARM's long throttling waits).
const RETRY: Policy = Policy { attempts: 5, backoff: Duration::from_millis(800), max_wait: Duration::from_secs(120) };

pub struct Client {
    http: reqwest::blocking::Client,
    arm_tokens: TokenSource,
    ml_tokens: TokenSource,
    pub arm_url: String,
    /// The studio of the cloud (`https://ml.azure.com`, `.cn`, `.us`): azure-ai-ml
    /// builds studio links on the Azure ML resource id (`studio_url_from_job_id`).
    pub studio: String,
    /// How calls are retried.
    retry: Policy,
}

/// The ARM API version of calls azure-ai-ml names no version for below (GA).
pub const ARM_API_VERSION: &str = "2024-04-01";

// The api-versions azure-ai-ml 1.35's MLClient sends per resource
// (`azure/ai/ml/_ml_client.py`: each *Operations class gets its own
// versioned `MachineLearningServicesMgmtClient`), so flow-ci asks ARM for
// what Microsoft's own client (and `az ml`) asks. tests/azure_conformance.rs
// reads them from a real MLClient and compares.
/// Workspaces (`WorkspaceOperations`, `_service_client_10_2024_preview_tsp`).
pub const WORKSPACE_API_VERSION: &str = "2024-10-01-preview";
/// Datastores, `listSecrets` included (`DatastoreOperations`, 2024-10-01-preview).
pub const DATASTORE_API_VERSION: &str = "2024-10-01-preview";
/// Model containers and versions (`ModelOperations`, `_service_client_08_2023_preview`).
pub const MODEL_API_VERSION: &str = "2023-08-01-preview";
/// Environment versions (`EnvironmentOperations`, `_service_client_04_2023_preview`).
pub const ENVIRONMENT_API_VERSION: &str = "2023-04-01-preview";
/// Online endpoints and their keys (`OnlineEndpointOperations`, `_service_client_02_2022_preview`).
pub const ENDPOINT_API_VERSION: &str = "2022-02-01-preview";
/// Online deployments (`OnlineDeploymentOperations`, `_service_client_04_2023_preview`).
pub const DEPLOYMENT_API_VERSION: &str = "2023-04-01-preview";

impl Client {
    pub fn new(cloud: Cloud) -> Result<Client, AzureMlError> {
        check_scheme(&cloud.arm_url)?;
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("flow-ci/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(120))
            // reqwest's default policy drops `Authorization` on a redirect to
            // another host, but not `aml-user-token` (a bearer token too):
            // tokens are only sent to their own origin.
            .redirect(net::http::same_origin_redirects())
            .build()
            .map_err(|e| AzureMlError::Http { url: cloud.arm_url.clone(), message: e.to_string() })?;
        Ok(Client {
            arm_tokens: TokenSource::from_env_at(http.clone(), &cloud.arm_resource, cloud.authority.as_deref()),
            ml_tokens: TokenSource::from_env_at(http.clone(), &cloud.ml_resource, cloud.authority.as_deref()),
            http,
            arm_url: cloud.arm_url,
            studio: cloud.ml_resource.clone(),
            retry: RETRY,
        })
    }

    /// Tokens for Azure Storage from the same credential chain, for
    /// identity-based datastores.
    pub fn storage_tokens(&self) -> TokenSource {
        TokenSource::from_env(self.http.clone(), super::blob::STORAGE_RESOURCE)
    }

    /// A token now, so a credential problem is reported before anything else.
    pub fn authenticate(&self) -> Result<(), AzureMlError> {
        self.arm_tokens.token().map(drop).map_err(AzureMlError::from_token)
    }

    /// The signed-in user's alias as promptflow-azure names it
    /// (`_utils/general.py` `get_user_alias_from_credential`): the ARM
    /// token's `upn` or `email` before the `@`, else its `oid` (a service
    /// principal), else `unknown_user` as `FlowFileStorageClient` falls back.
    pub fn user_alias(&self) -> Result<String, AzureMlError> {
        let token = self.arm_tokens.token().map_err(AzureMlError::from_token)?;
        Ok(alias_of(token.expose()).unwrap_or_else(|| "unknown_user".into()))
    }

    /// The bytes at a SAS URL (a snapshot file): no token is sent, the URL
    /// carries its own authorization, and errors never show its query.
    pub fn download(&self, url: &str) -> Result<Vec<u8>, AzureMlError> {
        check_scheme(url)?;
        let response = self.http.get(url).send().map_err(|e| http_error(url, &e.without_url()))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let (code, message) = service_error(&response.text().unwrap_or_default());
            return Err(AzureMlError::Service { method: "GET".into(), url: path_of(url), status, code, message });
        }
        Ok(response.bytes().map_err(|e| http_error(url, &e.without_url()))?.to_vec())
    }

    pub fn get(&self, url: &str) -> Result<Json, AzureMlError> {
        self.send(reqwest::Method::GET, url, None, false).map(|r| r.body)
    }

    /// `GET` with the status and headers (202 means "still going").
    pub fn get_reply(&self, url: &str) -> Result<Reply, AzureMlError> {
        self.send(reqwest::Method::GET, url, None, false)
    }

    /// `GET`, with 404 as `None`.
    pub fn get_optional(&self, url: &str) -> Result<Option<Json>, AzureMlError> {
        match self.get(url) {
            Ok(body) => Ok(Some(body)),
            Err(AzureMlError::Service { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn post(&self, url: &str, body: &Json) -> Result<Json, AzureMlError> {
        self.send(reqwest::Method::POST, url, Some(body), false).map(|r| r.body)
    }

    /// `POST` with no body and `Content-Length: 0` (cancel, listSecrets, listKeys).
    pub fn post_empty(&self, url: &str) -> Result<Json, AzureMlError> {
        self.send(reqwest::Method::POST, url, None, false).map(|r| r.body)
    }

    /// `POST` with the Azure ML token in `aml-user-token`, as BulkRuns/submit wants.
    pub fn post_as_user(&self, url: &str, body: &Json) -> Result<Json, AzureMlError> {
        self.send(reqwest::Method::POST, url, Some(body), true).map(|r| r.body)
    }

    /// `PUT` or `PATCH` of an ARM resource; the reply says how to follow a
    /// long-running operation.
    pub fn write(&self, method: reqwest::Method, url: &str, body: &Json) -> Result<Reply, AzureMlError> {
        self.send(method, url, Some(body), false)
    }

    /// Sends one call, retrying 408/429/5xx (honoring `Retry-After`); a 2xx
    /// body is returned as JSON (`null` when empty).
    fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Json>,
        user_token: bool,
    ) -> Result<Reply, AzureMlError> {
        self.retry.run(|_| {
            let response = self.request(method.clone(), url, body, user_token).map_err(Next::Stop)?;
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                let headers = response.headers();
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                let (async_operation, location) = (header("azure-asyncoperation"), header("location"));
                let retry_after = retry_after(headers);
                let text = response.text().map_err(|e| Next::Stop(http_error(url, &e)))?;
                let body: Json = if text.trim().is_empty() {
                    Json::Null
                } else {
                    serde_json::from_str(&text).unwrap_or(Json::String(text))
                };
                return Ok(Reply { status, async_operation, location, retry_after, body });
            }
            let wait = retry_after(response.headers());
            let text = response.text().unwrap_or_default();
            let (code, message) = service_error(&text);
            let error = AzureMlError::Service { method: method.to_string(), url: path_of(url), status, code, message };
            match retryable(&method, status, wait.is_some()) {
                true => Err(Next::Retry(error, wait)),
                false => Err(Next::Stop(error)),
            }
        })
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Json>,
        user_token: bool,
    ) -> Result<reqwest::blocking::Response, AzureMlError> {
        let token = self.arm_tokens.token().map_err(AzureMlError::from_token)?;
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(token.expose())
            .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string());
        if user_token {
            let ml = self.ml_tokens.token().map_err(AzureMlError::from_token)?;
            request = request.header("aml-user-token", ml.expose());
        }
        match body {
            Some(body) => request = request.json(body),
            // reqwest sends no Content-Length for a bodiless POST, and Azure's
            // front ends answer 411 Length Required (seanmonstar/reqwest#838,
            // Azure/azure-sdk-for-rust#166): say 0.
            None if method_has_body(&method) => {
                request = request.header(reqwest::header::CONTENT_LENGTH, 0).body(Vec::new());
            }
            None => {}
        }
        request.send().map_err(|e| http_error(url, &e))
    }
}

/// `upn`/`email` before the `@`, else `oid`, of a JWT's (unverified) claims.
fn alias_of(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Json = serde_json::from_slice(&bytes).ok()?;
    let text = |k: &str| claims.get(k).and_then(Json::as_str).filter(|v| !v.is_empty());
    match text("upn").or_else(|| text("email")) {
        Some(email) => email.split('@').next().map(str::to_string),
        None => text("oid").map(str::to_string),
    }
}

/// Methods whose requests carry a body (so a length, even when empty).
fn method_has_body(method: &reqwest::Method) -> bool {
    [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::PATCH].contains(method)
}

/// A successful answer and what ARM says about following it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// `Azure-AsyncOperation`: poll it until `status` is terminal.
    pub async_operation: Option<String>,
    /// `Location` (202 answers): poll it until it stops answering 202.
    pub location: Option<String>,
    pub retry_after: Option<Duration>,
    pub body: Json,
}

fn http_error(url: &str, e: &reqwest::Error) -> AzureMlError {
    AzureMlError::Http { url: path_of(url), message: net::http::error_chain(e) }
}

/// azure-core's policy as promptflow configures it: 408, 429 and 5xx except
/// 500 (a retried 500 turns into 409 on run creation) for reads; writes only
/// on 429, 503 and 504, or whenever the service says when to come back.
fn retryable(method: &reqwest::Method, status: u16, has_retry_after: bool) -> bool {
    let write = method != reqwest::Method::GET;
    match status {
        429 | 503 | 504 => true,
        408 | 502 => !write,
        500 => false,
        s if s >= 400 => has_retry_after,
        _ => false,
    }
}

/// The most specific error code (the deepest `innerError.code`) and the
/// message of an Azure ML or ARM error body.
pub fn service_error(text: &str) -> (String, String) {
    let Ok(json) = serde_json::from_str::<Json>(text) else {
        let snippet: String = text.chars().take(300).collect();
        return (String::new(), snippet);
    };
    let error = json.get("error").unwrap_or(&json);
    let message = error.get("message").and_then(Json::as_str).unwrap_or_default().to_string();
    let mut code = error.get("code").and_then(Json::as_str).unwrap_or_default().to_string();
    let mut inner = error.get("innerError");
    while let Some(i) = inner {
        if let Some(c) = i.get("code").and_then(Json::as_str) {
            code = c.to_string();
        }
        inner = i.get("innerError");
    }
    (code, message)
}

/// A URL without its query (api-version, SAS): what error messages show.
pub fn path_of(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// Plain `http://` only for loopback hosts (emulators and fakes).
pub fn check_scheme(url: &str) -> Result<(), AzureMlError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| AzureMlError::Config(format!("`{url}` is not a URL: {e}")))?;
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(AzureMlError::Config(format!("`{url}`: only https is allowed (plain http only for loopback hosts)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_inner_code_wins() {
        let body = r#"{"error":{"code":"UserError","message":"Run runId=x was not found","innerError":{"code":"NotFoundError","innerError":{"code":"RunNotFound"}}}}"#;
        assert_eq!(service_error(body), ("RunNotFound".into(), "Run runId=x was not found".into()));
        assert_eq!(service_error("<html>bad gateway</html>").1, "<html>bad gateway</html>");
    }

    #[test]
    fn retry_rules_follow_azure_core() {
        use reqwest::Method;
        assert!(retryable(&Method::POST, 429, false));
        assert!(!retryable(&Method::POST, 500, false));
        assert!(!retryable(&Method::GET, 500, false));
        assert!(retryable(&Method::GET, 502, false));
        assert!(!retryable(&Method::POST, 502, false));
        assert!(retryable(&Method::POST, 409, true));
        assert!(!retryable(&Method::POST, 404, false));
    }

    #[test]
    fn the_alias_is_the_upn_before_the_at_else_the_oid() {
        use base64::Engine as _;
        let jwt = |claims: &str| {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("{}.{}.sig", b64.encode(r#"{"alg":"RS256"}"#), b64.encode(claims))
        };
        assert_eq!(alias_of(&jwt(r#"{"upn":"ada@contoso.com","oid":"o-1"}"#)).as_deref(), Some("ada"));
        assert_eq!(alias_of(&jwt(r#"{"email":"bo@contoso.com"}"#)).as_deref(), Some("bo"));
        assert_eq!(alias_of(&jwt(r#"{"oid":"5f1e-sp"}"#)).as_deref(), Some("5f1e-sp"));
        assert_eq!(alias_of("not-a-jwt"), None);
    }

    #[test]
    fn a_cloud_is_found_in_arms_metadata() {
        let metadata = serde_json::json!([
            {"name": "AzureCloud", "portal": "https://portal.azure.com", "resourceManager": "https://management.azure.com/",
             "authentication": {"loginEndpoint": "https://login.microsoftonline.com/"}},
            {"name": "AzureUSGovernment", "portal": "https://portal.azure.us", "resourceManager": "https://management.usgovcloudapi.net/",
             "authentication": {"loginEndpoint": "https://login.microsoftonline.us/"}}
        ]);
        let cloud =
            from_metadata(&metadata, "https://management.usgovcloudapi.net/metadata/endpoints?api-version=2019-05-01")
                .unwrap();
        assert_eq!(cloud.arm_url, "https://management.usgovcloudapi.net");
        assert_eq!(cloud.ml_resource, "https://ml.azure.us");
        assert_eq!(cloud.authority.as_deref(), Some("https://login.microsoftonline.us"));
        assert!(from_metadata(&metadata, "https://example.net/metadata").is_none());
    }

    #[test]
    fn http_only_for_loopback() {
        assert!(check_scheme("http://127.0.0.1:8080").is_ok());
        assert!(check_scheme("http://localhost:1").is_ok());
        assert!(check_scheme("https://management.azure.com").is_ok());
        assert!(check_scheme("http://management.azure.com").is_err());
    }
}
