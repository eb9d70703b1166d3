//! Entra ID tokens: for Azure OpenAI connections with `auth_mode: meid_token`
//! and for Azure Resource Manager / Azure ML (the `azureml` backend).
//!
//! Credentials are tried in this order: an explicit
//! `AZURE_OPENAI_AD_TOKEN` (Azure OpenAI only, as the openai SDK reads it); a
//! client secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`);
//! a federated token file (`AZURE_FEDERATED_TOKEN_FILE`, as workload identity
//! sets up); GitHub Actions' OIDC token service (`ACTIONS_ID_TOKEN_REQUEST_URL`,
//! with `id-token: write`); an Azure Pipelines service connection's OIDC token
//! (`AZURESUBSCRIPTION_*` with `SYSTEM_ACCESSTOKEN`); a managed identity (App
//! Service / Azure ML endpoints, else IMDS); the Azure CLI. The authority is
//! `AZURE_AUTHORITY_HOST` (loopback tests), else the one of the cloud
//! `AZUREML_CURRENT_CLOUD` names (sovereign clouds), and so is the audience
//! GitHub's ID token is asked for (`FLOW_CI_OIDC_AUDIENCE` sets it); a
//! credential goes only to an `https://` authority (or one on loopback).
//! Token endpoints are retried on 408/429/5xx and failed connections,
//! honouring `Retry-After`; IMDS as Microsoft's IMDS retry guidance says
//! ([`IMDS_RETRY`]). Tokens are reused until five minutes before they expire.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;

use crate::http::{percent_encode, retry_after, transport_error};
use crate::retry::{Policy, Resend, Verdict, transient};
use model::secret::Secret;

/// The resource of Azure OpenAI tokens.
pub const COGNITIVE_SERVICES: &str = "https://cognitiveservices.azure.com";
/// The audience Entra expects of GitHub's ID tokens (the default of azure/login).
const GITHUB_OIDC_AUDIENCE: &str = "api://AzureADTokenExchange";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The sign-in authority and the token-exchange audience of the cloud named
/// like `AZUREML_CURRENT_CLOUD` (azure-ai-ml `_azure_environments`:
/// `ACTIVE_DIRECTORY_ENDPOINT` per cloud; the audiences of Microsoft Learn's
/// "Configure an application to trust a managed identity": public
/// `api://AzureADTokenExchange`, Fairfax `...USGov`, Mooncake `...China`).
pub fn cloud_sign_in(cloud: Option<&str>) -> (&'static str, &'static str) {
    match cloud.map(str::to_ascii_lowercase).as_deref() {
        Some("azurechinacloud") => ("https://login.chinacloudapi.cn", "api://AzureADTokenExchangeChina"),
        Some("azureusgovernment") => ("https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov"),
        _ => (DEFAULT_AUTHORITY, GITHUB_OIDC_AUDIENCE),
    }
}
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The version azure-identity's `AzurePipelinesCredential` asks the OIDC endpoint for.
const AZURE_PIPELINES_OIDC_API_VERSION: &str = "7.1";
const IMDS_AUTHORITY: &str = "http://169.254.169.254";
/// Short, like azure-identity's IMDS probe (0.3 s): where there is no IMDS the
/// connection hangs, and a token must not wait on that.
const MANAGED_IDENTITY_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// IMDS may take seconds to issue a first token; it must still not hang forever.
const MANAGED_IDENTITY_TIMEOUT: Duration = Duration::from_secs(30);
/// IMDS's retries. Microsoft Learn, "Use managed identities on a VM to
/// acquire an access token", Retry guidance
/// (<https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token#retry-guidance>):
/// retry 404, 429 and 5xx with exponential backoff; 410 means IMDS is being
/// updated and is back within 70 seconds. MSAL's IMDS retry specification
/// (AzureAD/microsoft-authentication-library-for-dotnet,
/// `docs/imds_retry_based_on_errors.md`) makes that 3 retries from 1 s
/// (1 s, 2 s, 4 s) for 404/408/429/5xx and a retry every 10 s, 7 of them,
/// for 410: up to 8 tries in all.
const IMDS_RETRY: Policy = Policy { attempts: 8, backoff: Duration::from_secs(1), max_wait: Duration::from_secs(10) };
/// Tries of IMDS for an answer other than 410 (1 + 3 retries).
const IMDS_ATTEMPTS_NOT_410: u32 = 4;
/// The wait between tries while IMDS answers 410.
const IMDS_UPDATING_WAIT: Duration = Duration::from_secs(10);

/// One way of getting a token, in the order tried.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Credential {
    OpenAiToken,
    ClientSecret,
    FederatedTokenFile,
    GitHubOidc,
    AzurePipelines,
    ManagedIdentity,
    AzureCli,
}

const CHAIN: [Credential; 7] = [
    Credential::OpenAiToken,
    Credential::ClientSecret,
    Credential::FederatedTokenFile,
    Credential::GitHubOidc,
    Credential::AzurePipelines,
    Credential::ManagedIdentity,
    Credential::AzureCli,
];

impl Credential {
    fn name(self) -> &'static str {
        match self {
            Credential::OpenAiToken => "AZURE_OPENAI_AD_TOKEN",
            Credential::ClientSecret => "client secret",
            Credential::FederatedTokenFile => "federated token file",
            Credential::GitHubOidc => "GitHub Actions OIDC",
            Credential::AzurePipelines => "Azure Pipelines OIDC",
            Credential::ManagedIdentity => "managed identity",
            Credential::AzureCli => "Azure CLI",
        }
    }
}

/// Why a credential gave no token.
enum Miss {
    /// Not set up here: the next credential is tried.
    Unavailable(String),
    /// Set up but failing: the chain stops (as azure-identity's chains do), so
    /// that a broken service principal does not silently become someone's
    /// `az login`.
    Failed(String),
    /// Set up in a way flow-ci will not use (a credential for an `http://`
    /// authority): the chain stops, and the input is what is wrong.
    Refused(String),
}

/// Why no token was had: the chain's message, and whether it is the
/// user's settings that are wrong (exit 2) rather than a credential or a
/// service failing.
#[derive(Debug, Clone)]
pub struct TokenError {
    pub message: String,
    pub invalid_input: bool,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TokenError {}

impl From<String> for TokenError {
    fn from(message: String) -> TokenError {
        TokenError { message, invalid_input: false }
    }
}

type Attempt = Result<(Secret, Duration), Miss>;

fn unavailable<T>(why: impl Into<String>) -> Result<T, Miss> {
    Err(Miss::Unavailable(why.into()))
}

pub struct TokenSource {
    /// The resource tokens are for (`{resource}/.default` is the scope).
    resource: String,
    env: BTreeMap<String, String>,
    /// The caller's client. Bearer tokens sent with it (GitHub's and Azure
    /// Pipelines' OIDC requests) go in `Authorization`, which reqwest's
    /// default redirect policy removes on a redirect to another scheme, host
    /// or port (<https://docs.rs/reqwest/0.13/reqwest/redirect/index.html>);
    /// flow-ci's clients also use `http::same_origin_redirects`, so a client
    /// secret in a token request's body (re-sent on 307/308) stays too.
    http: reqwest::blocking::Client,
    /// The Azure CLI: its program and any arguments before ours (a stand-in
    /// in tests, which must not run the real `az`).
    az: Vec<String>,
    cached: Mutex<Option<(Secret, Instant)>>,
    /// Retries of the token endpoint, the OIDC token services and the
    /// App Service style managed identity endpoints.
    retry: Policy,
    /// Retries of IMDS ([`IMDS_RETRY`]).
    imds_retry: Policy,
}

impl TokenSource {
    /// Tokens for `resource` (e.g. `https://management.azure.com`), with
    /// credentials from the environment.
    pub fn from_env(http: reqwest::blocking::Client, resource: &str) -> TokenSource {
        // On Windows `az` is a batch file, which needs its extension to run.
        let az = if cfg!(windows) { "az.cmd" } else { "az" };
        TokenSource::new(http, resource, std::env::vars().collect(), &[az])
    }

    /// As `from_env`, signing in at `authority` unless `AZURE_AUTHORITY_HOST`
    /// names another (a cloud known from ARM's metadata).
    pub fn from_env_at(http: reqwest::blocking::Client, resource: &str, authority: Option<&str>) -> TokenSource {
        let mut source = TokenSource::from_env(http, resource);
        if let Some(authority) = authority.filter(|a| !a.is_empty()) {
            source.env.entry("AZURE_AUTHORITY_HOST".into()).or_insert_with(|| authority.to_string());
        }
        source
    }

    fn new(http: reqwest::blocking::Client, resource: &str, env: BTreeMap<String, String>, az: &[&str]) -> TokenSource {
        TokenSource {
            resource: resource.trim_end_matches('/').to_string(),
            env,
            http,
            az: az.iter().map(|a| a.to_string()).collect(),
            cached: Mutex::new(None),
            retry: Policy::AZURE,
            imds_retry: IMDS_RETRY,
        }
    }

    /// A bearer token for the resource.
    pub fn token(&self) -> Result<Secret, TokenError> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.fetch()?;
        let until = Instant::now() + lifetime.saturating_sub(Duration::from_secs(300));
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The values of `names`, or which of them are not set.
    fn require<const N: usize>(&self, names: [&str; N]) -> Result<[&str; N], Miss> {
        let missing: Vec<&str> = names.iter().copied().filter(|name| self.var(name).is_none()).collect();
        if !missing.is_empty() {
            return unavailable(format!("{} not set", missing.join(", ")));
        }
        Ok(names.map(|name| self.var(name).unwrap_or_default()))
    }

    /// Walks the chain; the error names every credential tried and why it gave nothing.
    fn fetch(&self) -> Result<(Secret, Duration), TokenError> {
        let mut tried = Vec::new();
        let chain = CHAIN.into_iter().filter(|c| *c != Credential::OpenAiToken || self.resource == COGNITIVE_SERVICES);
        for credential in chain {
            let name = credential.name();
            match self.attempt(credential) {
                Ok(token) => {
                    tracing::debug!("Entra ID token for {} from {name}", self.resource);
                    return Ok(token);
                }
                Err(Miss::Unavailable(why)) => {
                    tracing::debug!("Entra ID token for {}: {name} skipped: {why}", self.resource);
                    tried.push(format!("  - {name}: {why}"));
                }
                Err(Miss::Failed(why)) => {
                    tracing::debug!("Entra ID token for {}: {name} failed: {why}", self.resource);
                    tried.push(format!("  - {name}: {why}"));
                    return Err(format!(
                        "{name} failed for {} (later credentials are not tried, so that no other identity is used by accident; fix it, or unset its variables to use another):\n{}",
                        self.resource,
                        tried.join("\n")
                    )
                    .into());
                }
                Err(Miss::Refused(why)) => {
                    tracing::debug!("Entra ID token for {}: {name} refused: {why}", self.resource);
                    let message = format!("{name} for {}: {why}", self.resource);
                    return Err(TokenError { message, invalid_input: true });
                }
            }
        }
        Err(format!("no credential gave a token for {}:\n{}\n{}", self.resource, tried.join("\n"), self.fix()).into())
    }

    /// What to set up, for the error when every credential was unavailable.
    fn fix(&self) -> String {
        let mut ways = Vec::new();
        if self.resource == COGNITIVE_SERVICES {
            ways.push("set AZURE_OPENAI_AD_TOKEN");
        }
        ways.extend([
            "set AZURE_TENANT_ID + AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE",
            "on GitHub Actions set AZURE_TENANT_ID + AZURE_CLIENT_ID and give the job `permissions: id-token: write`",
            "on Azure Pipelines run in an AzureCLI@2 task with a workload identity federation service connection and `env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`",
            "on Azure give the machine a managed identity (a user-assigned one's client id in AZURE_CLIENT_ID or DEFAULT_IDENTITY_CLIENT_ID)",
            "or sign in with `az login`",
        ]);
        format!("to fix: {}", ways.join("; "))
    }

    fn attempt(&self, credential: Credential) -> Attempt {
        match credential {
            Credential::OpenAiToken => {
                let token = self.var("AZURE_OPENAI_AD_TOKEN").ok_or_else(|| Miss::Unavailable("not set".into()))?;
                Ok((Secret::new(token.to_string()), Duration::from_secs(3600)))
            }
            Credential::ClientSecret => {
                let [tenant, client, secret] =
                    self.require(["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"])?;
                self.token_request(tenant, &[("client_id", client), ("client_secret", secret)])
            }
            Credential::FederatedTokenFile => self.federated_token_file(),
            Credential::GitHubOidc => self.github_oidc(),
            Credential::AzurePipelines => self.azure_pipelines(),
            Credential::ManagedIdentity => self.managed_identity().map_err(Miss::Unavailable),
            Credential::AzureCli => self.azure_cli().map_err(Miss::Unavailable),
        }
    }

    fn federated_token_file(&self) -> Attempt {
        let [tenant, client, file] =
            self.require(["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"])?;
        let assertion = std::fs::read_to_string(file)
            .map_err(|e| Miss::Failed(format!("cannot read AZURE_FEDERATED_TOKEN_FILE {file}: {e}")))?;
        self.assertion_request(tenant, client, &assertion)
    }

    /// GitHub Actions OIDC (`permissions: id-token: write`): an ID token for
    /// Entra's federated credentials, from the runner's token service.
    fn github_oidc(&self) -> Attempt {
        let [tenant, client, url, bearer] = self
            .require([
                "AZURE_TENANT_ID",
                "AZURE_CLIENT_ID",
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            ])
            .map_err(|miss| match miss {
                // The runner sets the request URL only for jobs allowed ID tokens.
                Miss::Unavailable(why) if self.var("GITHUB_ACTIONS") == Some("true") => {
                    Miss::Unavailable(format!("{why} (does the job have `permissions: id-token: write`?)"))
                }
                miss => miss,
            })?;
        let assertion = self.github_oidc_token(url, bearer).map_err(Miss::Failed)?;
        self.assertion_request(tenant, client, &assertion)
    }

    fn github_oidc_token(&self, url: &str, bearer: &str) -> Result<String, String> {
        let audience =
            self.var("FLOW_CI_OIDC_AUDIENCE").unwrap_or_else(|| cloud_sign_in(self.var("AZUREML_CURRENT_CLOUD")).1);
        let url = with_query(url, &format!("audience={}", percent_encode(audience)));
        let request = self.http.get(&url).bearer_auth(bearer).build();
        let response = request
            .and_then(|request| crate::retry::send(&self.http, request, &self.retry, Resend::Always, transient_answer))
            .map_err(|e| format!("ID token request failed: {}", transport_error(&e)))?;
        let status = response.status();
        let json: Option<Json> = response.text().ok().and_then(|text| serde_json::from_str(&text).ok());
        match json.as_ref().and_then(|json| json.get("value")?.as_str()) {
            Some(token) if status.is_success() => Ok(token.to_string()),
            _ => Err(format!(
                "ID token request failed with {status} (does the job have `permissions: id-token: write`?)"
            )),
        }
    }

    /// An Azure Resource Manager service connection with workload identity
    /// federation, as azure-identity's `AzurePipelinesCredential`: the
    /// pipeline's OIDC endpoint gives an ID token for the connection's app.
    fn azure_pipelines(&self) -> Attempt {
        let [connection, client, tenant] = self.require([
            "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
            "AZURESUBSCRIPTION_CLIENT_ID",
            "AZURESUBSCRIPTION_TENANT_ID",
        ])?;
        // Pipelines keep System.AccessToken out of scripts unless mapped in.
        let [access_token] = self.require(["SYSTEM_ACCESSTOKEN"]).or_else(|_| {
            unavailable(
                "SYSTEM_ACCESSTOKEN not set: map it into the step (`env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`)",
            )
        })?;
        let [uri] = self.require(["SYSTEM_OIDCREQUESTURI"]).or_else(|_| {
            unavailable("SYSTEM_OIDCREQUESTURI not set (Azure Pipelines sets it; is this a pipeline step?)")
        })?;
        let assertion = self.azure_pipelines_oidc_token(uri, connection, access_token).map_err(Miss::Failed)?;
        self.assertion_request(tenant, client, &assertion)
    }

    fn azure_pipelines_oidc_token(&self, uri: &str, connection: &str, access_token: &str) -> Result<String, String> {
        const FIX: &str = "is the task using an Azure Resource Manager service connection with workload identity federation (AZURESUBSCRIPTION_SERVICE_CONNECTION_ID)? is SYSTEM_ACCESSTOKEN mapped into the step env (`env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`)?";
        let url = format!(
            "{}?api-version={AZURE_PIPELINES_OIDC_API_VERSION}&serviceConnectionId={}",
            uri.trim_end_matches('/'),
            percent_encode(connection)
        );
        let request = self
            .http
            .post(&url)
            .bearer_auth(access_token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            // A rejected token then gets 401, not a 203 sign-in page.
            .header("X-TFS-FedAuthRedirect", "Suppress")
            .body("")
            .build();
        let response = request
            .and_then(|request| crate::retry::send(&self.http, request, &self.retry, Resend::Always, transient_answer))
            .map_err(|e| format!("OIDC token request failed: {}; {FIX}", transport_error(&e)))?;
        let status = response.status();
        let json: Option<Json> = response.text().ok().and_then(|text| serde_json::from_str(&text).ok());
        let field = |key: &str| json.as_ref().and_then(|json| json.get(key)?.as_str());
        match field("oidcToken") {
            Some(token) if status == reqwest::StatusCode::OK => Ok(token.to_string()),
            _ => {
                let why = field("message").map(|m| format!(": {m}")).unwrap_or_default();
                Err(format!("OIDC token request failed with {status}{why}; {FIX}"))
            }
        }
    }

    /// A federated ID token exchanged for a token of the app registration.
    fn assertion_request(&self, tenant: &str, client: &str, assertion: &str) -> Attempt {
        self.token_request(
            tenant,
            &[("client_id", client), ("client_assertion_type", JWT_BEARER), ("client_assertion", assertion.trim())],
        )
    }

    /// The authority token requests go to: `AZURE_AUTHORITY_HOST`, else the
    /// cloud's. A credential (a client secret, a federated token) goes only
    /// to an `https://` authority, as azure-identity's `authority_host`
    /// check refuses any other scheme ("authority host doesn't use HTTPS
    /// scheme"); `http://` is allowed on loopback only, where tests run
    /// their fake authority and nothing crosses a network.
    fn authority(&self) -> Result<String, Miss> {
        let authority = self
            .var("AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|| cloud_sign_in(self.var("AZUREML_CURRENT_CLOUD")).0)
            .trim_end_matches('/')
            .to_string();
        let url = reqwest::Url::parse(&authority).map_err(|e| {
            Miss::Refused(format!(
                "AZURE_AUTHORITY_HOST `{authority}` is not a URL ({e}): set it to the sign-in authority, e.g. https://login.microsoftonline.com, or unset it"
            ))
        })?;
        match url.scheme() {
            "https" => Ok(authority),
            "http" if is_loopback(&url) => Ok(authority),
            _ => Err(Miss::Refused(format!(
                "AZURE_AUTHORITY_HOST `{authority}` does not use https: flow-ci sends a client secret or federated token only to an https:// authority (http is allowed on loopback only), as azure-identity refuses one; set it to https://..., e.g. https://login.microsoftonline.com, or unset it"
            ))),
        }
    }

    /// OAuth2 client credentials against `{authority}/{tenant}/oauth2/v2.0/token`,
    /// retried on 408/429/5xx and on failed connections, honouring
    /// `Retry-After` (Entra ID's throttling answers 429 with it: "Throttling
    /// and service limits" of the Microsoft identity platform): asking
    /// for a token again is harmless.
    fn token_request(&self, tenant: &str, credentials: &[(&str, &str)]) -> Attempt {
        let authority = self.authority()?;
        // The tenant goes into the URL's path (azure-identity checks it the same way).
        if !tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            return Err(Miss::Failed(format!("{tenant:?} is not a tenant id (letters, digits, '-' and '.')")));
        }
        let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
        let scope = format!("{}/.default", self.resource);
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials"), ("scope", &scope)];
        form.extend_from_slice(credentials);
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .build()
            .map_err(|e| Miss::Failed(format!("token request to {url}: {}", transport_error(&e))))?;
        let response = crate::retry::send(&self.http, request, &self.retry, Resend::Always, transient_answer)
            .map_err(|e| Miss::Failed(format!("token request to {url} failed: {}", transport_error(&e))))?;
        let status = response.status();
        let json: Json =
            response.json().map_err(|e| Miss::Failed(format!("token response from {url} is not JSON: {e}")))?;
        if !status.is_success() {
            let why = json.get("error_description").or_else(|| json.get("error")).and_then(Json::as_str).unwrap_or("");
            return Err(Miss::Failed(format!("token request to {url} failed with {status}: {why}")));
        }
        let token = json
            .get("access_token")
            .and_then(Json::as_str)
            .ok_or_else(|| Miss::Failed("the token response has no access_token".into()))?;
        Ok((Secret::new(token.to_string()), lifetime(&json, 3600)))
    }

    /// The host's managed identity: App Service style endpoints when their
    /// variables say so, else IMDS. Its failures never stop the chain: these
    /// endpoints exist on Azure hosts whether or not the user means to use them
    /// (an Azure ML compute instance with `az login`, say).
    fn managed_identity(&self) -> Result<(Secret, Duration), String> {
        // A user-assigned identity; when AZURE_CLIENT_ID belonged to a secret or
        // federated credential, that credential answered or stopped the chain.
        let client_id = self.var("AZURE_CLIENT_ID").or_else(|| self.var("DEFAULT_IDENTITY_CLIENT_ID"));
        let http = reqwest::blocking::Client::builder()
            // The endpoints are local or link-local: no proxy can reach them.
            .no_proxy()
            .connect_timeout(MANAGED_IDENTITY_CONNECT_TIMEOUT)
            .timeout(MANAGED_IDENTITY_TIMEOUT)
            // `X-IDENTITY-HEADER` / `secret` are custom headers, which reqwest's
            // default policy would forward to another host a redirect names.
            .redirect(crate::http::same_origin_redirects())
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        if let (Some(endpoint), Some(header)) = (self.var("IDENTITY_ENDPOINT"), self.var("IDENTITY_HEADER")) {
            if self.var("IDENTITY_SERVER_THUMBPRINT").is_some() {
                return Err("Service Fabric managed identity (IDENTITY_SERVER_THUMBPRINT) is not supported".into());
            }
            let url = self.managed_identity_url(endpoint, "2019-08-01", client_id.map(|id| ("client_id", id)));
            // `Metadata` is for Azure Automation's variant (as MSAL sends it).
            let request = http.get(url).header("X-IDENTITY-HEADER", header).header("Metadata", "true");
            return managed_identity_token(&http, request, &self.retry, Resend::Always, transient_answer)
                .map_err(|why| format!("IDENTITY_ENDPOINT {endpoint}: {why}"));
        }
        if let (Some(endpoint), Some(secret)) = (self.var("MSI_ENDPOINT"), self.var("MSI_SECRET")) {
            // The 2017 API (Azure ML's) names the user-assigned id `clientid`.
            let url = self.managed_identity_url(endpoint, "2017-09-01", client_id.map(|id| ("clientid", id)));
            return managed_identity_token(
                &http,
                http.get(url).header("secret", secret),
                &self.retry,
                Resend::Always,
                transient_answer,
            )
            .map_err(|why| format!("MSI_ENDPOINT {endpoint}: {why}"));
        }
        self.imds(&http, client_id)
    }

    /// The Instance Metadata Service of Azure VMs (and AKS, self-hosted agents
    /// on Azure); `AZURE_POD_IDENTITY_AUTHORITY_HOST` moves it, as in azure-identity.
    fn imds(&self, http: &reqwest::blocking::Client, client_id: Option<&str>) -> Result<(Secret, Duration), String> {
        let host = self.var("AZURE_POD_IDENTITY_AUTHORITY_HOST").unwrap_or(IMDS_AUTHORITY).trim_end_matches('/');
        let endpoint = format!("{host}/metadata/identity/oauth2/token");
        let url = self.managed_identity_url(&endpoint, "2018-02-01", client_id.map(|id| ("client_id", id)));
        // No connection is no IMDS (not an Azure host): the chain moves on at
        // once, as azure-identity's IMDS probe does.
        let request = http.get(url).header("Metadata", "true");
        managed_identity_token(http, request, &self.imds_retry, Resend::Never, imds_answer).map_err(|why| {
            let hint = match client_id {
                Some(id) => format!(" (is the identity with client id {id} assigned to this machine?)"),
                None => " (no IMDS, or no managed identity assigned to this machine)".into(),
            };
            format!("IMDS at {host}: {why}{hint}")
        })
    }

    fn managed_identity_url(&self, endpoint: &str, api_version: &str, id: Option<(&str, &str)>) -> String {
        let mut query = format!("api-version={api_version}&resource={}", percent_encode(&self.resource));
        if let Some((key, value)) = id {
            query.push_str(&format!("&{key}={}", percent_encode(value)));
        }
        with_query(endpoint, &query)
    }

    fn azure_cli(&self) -> Result<(Secret, Duration), String> {
        let (program, first) = self.az.split_first().ok_or("no Azure CLI program")?;
        let out = std::process::Command::new(program)
            .args(first)
            .args(["account", "get-access-token", "--resource", &self.resource, "--output", "json"])
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!("`{program}` not found (is the Azure CLI installed?)"),
                _ => format!("cannot run `{program}`: {e}"),
            })?;
        if !out.status.success() {
            return Err(format!(
                "`az account get-access-token` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let json: Json =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("Azure CLI output is not JSON: {e}"))?;
        let token = json.get("accessToken").and_then(Json::as_str).ok_or("Azure CLI gave no accessToken")?;
        // `expires_on` (az 2.54+) matters: az may hand out a cached token near its end.
        Ok((Secret::new(token.to_string()), lifetime(&json, 1800)))
    }
}

/// A managed identity endpoint's token: `access_token`, living `expires_in`
/// (IMDS) or until `expires_on` (App Service, Azure ML). Errors carry the
/// endpoint's own description, never the body (it may hold a token).
fn managed_identity_token(
    http: &reqwest::blocking::Client,
    request: reqwest::blocking::RequestBuilder,
    policy: &Policy,
    resend: Resend,
    verdict: fn(&reqwest::blocking::Response, u32) -> Verdict,
) -> Result<(Secret, Duration), String> {
    let response = request
        .build()
        .and_then(|request| crate::retry::send(http, request, policy, resend, verdict))
        .map_err(|e| transport_error(&e))?;
    let status = response.status();
    let json: Json = response.json().map_err(|_| format!("answered {status}, not with JSON"))?;
    if status.is_success()
        && let Some(token) = json.get("access_token").and_then(Json::as_str)
    {
        return Ok((Secret::new(token.to_string()), lifetime(&json, 3600)));
    }
    let why = ["error_description", "message", "error"].iter().find_map(|key| json.get(key)?.as_str());
    Err(format!("answered {status}: {}", why.unwrap_or("no access_token")))
}

/// Token endpoints: azure-core's transient answers, retried after their
/// `Retry-After`.
fn transient_answer(response: &reqwest::blocking::Response, _attempt: u32) -> Verdict {
    match transient(response.status().as_u16()) {
        true => Verdict::Retry(retry_after(response.headers())),
        false => Verdict::Keep,
    }
}

/// IMDS ([`IMDS_RETRY`]): 410 every 10 s (or when it says) for up to 70 s;
/// 404, 408, 429 and 5xx with exponential backoff, 3 retries.
fn imds_answer(response: &reqwest::blocking::Response, attempt: u32) -> Verdict {
    imds_status(response.status().as_u16(), retry_after(response.headers()), attempt)
}

fn imds_status(status: u16, asked: Option<Duration>, attempt: u32) -> Verdict {
    match status {
        410 => Verdict::Retry(Some(asked.unwrap_or(IMDS_UPDATING_WAIT))),
        404 | 408 | 429 | 500..=599 if attempt < IMDS_ATTEMPTS_NOT_410 => Verdict::Retry(asked),
        _ => Verdict::Keep,
    }
}

/// Whether a URL's host is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// How long a token lives: `expires_in`, else `expires_on` (epoch seconds)
/// from now; numbers or numeric strings (App Service sends strings).
fn lifetime(json: &Json, default_secs: u64) -> Duration {
    let number = |key: &str| json.get(key).and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let secs = number("expires_in").or_else(|| number("expires_on").map(|on| on.saturating_sub(now)));
    Duration::from_secs(secs.unwrap_or(default_secs))
}

fn with_query(url: &str, query: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARM: &str = "https://management.azure.com";

    /// A source with exactly `env` (never the process's). IMDS defaults to a
    /// closed loopback port and the CLI to a missing program, so no test
    /// reaches the real ones.
    fn source(resource: &str, env: &[(&str, &str)]) -> TokenSource {
        source_with_az(resource, env, &["/nonexistent/flow-ci-test-az"])
    }

    fn source_with_az(resource: &str, env: &[(&str, &str)], az: &[&str]) -> TokenSource {
        let mut env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.entry("AZURE_POD_IDENTITY_AUTHORITY_HOST".into()).or_insert_with(closed_port);
        let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
        let mut source = TokenSource::new(http, resource, env, az);
        // The real policies' tries, without their waits.
        source.retry.backoff = Duration::ZERO;
        source.retry.max_wait = Duration::ZERO;
        source.imds_retry.max_wait = Duration::ZERO;
        source
    }

    /// A loopback URL nothing listens on.
    fn closed_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn form_encoding() {
        assert_eq!(crate::http::percent_encode("a b/c:d"), "a%20b%2Fc%3Ad");
    }

    #[test]
    fn an_explicit_token_wins() {
        let source = source(COGNITIVE_SERVICES, &[("AZURE_OPENAI_AD_TOKEN", "tok")]);
        assert_eq!(source.token().unwrap().expose(), "tok");
    }

    #[test]
    fn an_explicit_openai_token_is_not_used_for_other_resources() {
        let error = source(ARM, &[("AZURE_OPENAI_AD_TOKEN", "tok")]).token().unwrap_err().message;
        assert!(!error.contains("AZURE_OPENAI_AD_TOKEN"), "{error}");
    }

    /// Answers loopback HTTP requests in turn with `answer(request line +
    /// headers + body)` (a status and a JSON body); returns the base URL and
    /// the requests seen.
    fn serve(n: usize, answer: fn(usize, &str) -> (u16, String)) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for i in 0..n {
                let (mut stream, _) = listener.accept().unwrap();
                let mut buf = vec![0; 65536];
                let mut text = String::new();
                // Headers, then the body by Content-Length.
                loop {
                    let got = stream.read(&mut buf).unwrap();
                    text.push_str(&String::from_utf8_lossy(&buf[..got]));
                    let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length || got == 0 {
                        break;
                    }
                }
                let (status, body) = answer(i, &text);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).unwrap();
                seen.push(text);
            }
            seen
        });
        (url, handle)
    }

    fn assert_has(request: &str, parts: &[&str]) {
        let lower = request.to_lowercase();
        for part in parts {
            assert!(request.contains(part) || lower.contains(&part.to_lowercase()), "{part} in {request}");
        }
    }

    #[test]
    fn a_sovereign_cloud_signs_in_at_its_authority_with_its_audience() {
        assert_eq!(
            cloud_sign_in(Some("AzureUSGovernment")),
            ("https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov")
        );
        assert_eq!(cloud_sign_in(Some("azurechinacloud")).1, "api://AzureADTokenExchangeChina");
        assert_eq!(cloud_sign_in(None), (DEFAULT_AUTHORITY, GITHUB_OIDC_AUDIENCE));
        let (url, seen) = serve(1, |_, _| (200, r#"{"value":"github-id-token"}"#.into()));
        let tokens = source(
            COGNITIVE_SERVICES,
            &[
                ("AZURE_TENANT_ID", "tenant-1"),
                ("AZURE_CLIENT_ID", "client-1"),
                ("AZUREML_CURRENT_CLOUD", "AzureUSGovernment"),
                // The exchange itself stays on loopback (a closed port).
                ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9"),
                ("ACTIONS_ID_TOKEN_REQUEST_URL", &format!("{url}/oidc?api-version=2.0")),
                ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-token"),
            ],
        );
        let _ = tokens.token();
        let seen = seen.join().unwrap();
        assert!(seen[0].contains("audience=api%3A%2F%2FAzureADTokenExchangeUSGov "), "{}", seen[0]);
        let (url, seen) = serve(1, |_, _| (200, r#"{"value":"github-id-token"}"#.into()));
        let tokens = source(
            COGNITIVE_SERVICES,
            &[
                ("AZURE_TENANT_ID", "tenant-1"),
                ("AZURE_CLIENT_ID", "client-1"),
                ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9"),
                ("FLOW_CI_OIDC_AUDIENCE", "api://custom-exchange"),
                ("ACTIONS_ID_TOKEN_REQUEST_URL", &format!("{url}/oidc?api-version=2.0")),
                ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-token"),
            ],
        );
        let _ = tokens.token();
        assert!(seen.join().unwrap()[0].contains("audience=api%3A%2F%2Fcustom-exchange "));
    }

    #[test]
    fn github_oidc_is_exchanged_for_an_entra_token() {
        let (url, seen) = serve(2, |_, req| {
            if req.starts_with("GET /oidc") {
                (200, r#"{"value":"github-id-token"}"#.into())
            } else {
                (200, r#"{"access_token":"entra-token","expires_in":3599}"#.into())
            }
        });
        let source = source(
            COGNITIVE_SERVICES,
            &[
                ("AZURE_TENANT_ID", "tenant-1"),
                ("AZURE_CLIENT_ID", "client-1"),
                ("AZURE_AUTHORITY_HOST", url.as_str()),
                ("ACTIONS_ID_TOKEN_REQUEST_URL", &format!("{url}/oidc?api-version=2.0")),
                ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-token"),
            ],
        );
        assert_eq!(source.token().unwrap().expose(), "entra-token");
        let seen = seen.join().unwrap();
        assert!(
            seen[0].starts_with("GET /oidc?api-version=2.0&audience=api%3A%2F%2FAzureADTokenExchange "),
            "{}",
            seen[0]
        );
        assert_has(&seen[0], &["authorization: bearer runner-token"]);
        assert!(seen[1].starts_with("POST /tenant-1/oauth2/v2.0/token "), "{}", seen[1]);
        assert_has(
            &seen[1],
            &[
                "grant_type=client_credentials",
                "scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default",
                "client_id=client-1",
                "client_assertion=github-id-token",
                "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
            ],
        );
    }

    fn azure_pipelines_env(url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_AUTHORITY_HOST", url.to_string()),
            ("SYSTEM_OIDCREQUESTURI", format!("{url}/oidc/")),
            ("SYSTEM_ACCESSTOKEN", "system-token".into()),
            ("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "connection-1".into()),
            ("AZURESUBSCRIPTION_CLIENT_ID", "client-2".into()),
            ("AZURESUBSCRIPTION_TENANT_ID", "tenant-2".into()),
        ]
    }

    fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn azure_pipelines_oidc_is_exchanged_for_an_entra_token() {
        let (url, seen) = serve(2, |_, req| {
            if req.starts_with("POST /oidc") {
                (200, r#"{"oidcToken":"pipelines-id-token"}"#.into())
            } else {
                (200, r#"{"access_token":"entra-token","expires_in":3599}"#.into())
            }
        });
        let env = azure_pipelines_env(&url);
        let source = source(ARM, &borrowed(&env));
        assert_eq!(source.token().unwrap().expose(), "entra-token");
        let seen = seen.join().unwrap();
        assert!(
            seen[0].starts_with("POST /oidc?api-version=7.1&serviceConnectionId=connection-1 HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert_has(
            &seen[0],
            &["authorization: bearer system-token", "content-type: application/json", "content-length: 0"],
        );
        assert!(seen[1].starts_with("POST /tenant-2/oauth2/v2.0/token "), "{}", seen[1]);
        assert_has(
            &seen[1],
            &[
                "grant_type=client_credentials",
                "scope=https%3A%2F%2Fmanagement.azure.com%2F.default",
                "client_id=client-2",
                "client_assertion=pipelines-id-token",
                "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
            ],
        );
    }

    #[test]
    fn azure_pipelines_oidc_errors_say_what_to_fix_and_stop_the_chain() {
        let (url, seen) = serve(1, |_, _| (401, r#"{"message":"TF400813: not authorized"}"#.into()));
        let env = azure_pipelines_env(&url);
        let error = source(ARM, &borrowed(&env)).token().unwrap_err().message;
        seen.join().unwrap();
        assert_has(
            &error,
            &[
                "Azure Pipelines OIDC failed",
                "401",
                "TF400813: not authorized",
                "workload identity federation",
                "SYSTEM_ACCESSTOKEN mapped into the step env",
            ],
        );
        assert!(!error.contains("system-token"), "{error}");
        assert!(!error.contains("Azure CLI"), "{error}");
    }

    #[test]
    fn azure_pipelines_without_the_access_token_says_to_map_it() {
        let env = azure_pipelines_env("http://127.0.0.1:9");
        let env: Vec<_> = borrowed(&env).into_iter().filter(|(k, _)| *k != "SYSTEM_ACCESSTOKEN").collect();
        let error = source(ARM, &env).token().unwrap_err().message;
        assert_has(&error, &["Azure Pipelines OIDC: SYSTEM_ACCESSTOKEN not set: map it", "Azure CLI:"]);
    }

    #[test]
    fn a_failing_client_secret_stops_the_chain_without_showing_the_secret() {
        let (url, seen) = serve(1, |_, _| {
            (401, r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret."}"#.into())
        });
        let env = [
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_CLIENT_SECRET", "very-secret-value"),
            ("AZURE_AUTHORITY_HOST", url.as_str()),
        ];
        let error = source(ARM, &env).token().unwrap_err().message;
        assert_has(&seen.join().unwrap()[0], &["client_secret=very-secret-value"]);
        assert_has(&error, &["client secret failed", "401", "AADSTS7000215"]);
        assert!(!error.contains("very-secret-value"), "{error}");
        assert!(!error.contains("managed identity") && !error.contains("Azure CLI"), "{error}");
    }

    #[test]
    fn app_service_managed_identity() {
        let (url, seen) = serve(1, |_, _| {
            let expires_on = now() + 7200;
            (200, format!(r#"{{"access_token":"mi-token","expires_on":"{expires_on}","token_type":"Bearer"}}"#))
        });
        let env = [
            ("IDENTITY_ENDPOINT", &*format!("{url}/msi/token")),
            ("IDENTITY_HEADER", "identity-header-value"),
            ("DEFAULT_IDENTITY_CLIENT_ID", "user-assigned-1"),
        ];
        let source = source(ARM, &env);
        assert_eq!(source.token().unwrap().expose(), "mi-token");
        let seen = seen.join().unwrap();
        assert!(
            seen[0].starts_with(
                "GET /msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fmanagement.azure.com&client_id=user-assigned-1 HTTP/1.1\r\n"
            ),
            "{}",
            seen[0]
        );
        assert_has(&seen[0], &["x-identity-header: identity-header-value", "metadata: true"]);
        // `expires_on` as a string of epoch seconds: cached until 5 minutes before.
        let cached = source.cached.lock().unwrap();
        let left = cached.as_ref().unwrap().1 - Instant::now();
        assert!(left > Duration::from_secs(6800) && left <= Duration::from_secs(6900), "{left:?}");
    }

    #[test]
    fn legacy_msi_endpoint_managed_identity() {
        let (url, seen) = serve(1, |_, _| (200, r#"{"access_token":"aml-token","expires_on":4102444800}"#.into()));
        let env = [
            ("MSI_ENDPOINT", &*format!("{url}/MSI/auth")),
            ("MSI_SECRET", "msi-secret-value"),
            ("AZURE_CLIENT_ID", "user-assigned-2"),
        ];
        assert_eq!(source("https://ml.azure.com", &env).token().unwrap().expose(), "aml-token");
        let seen = seen.join().unwrap();
        assert!(
            seen[0].starts_with(
                "GET /MSI/auth?api-version=2017-09-01&resource=https%3A%2F%2Fml.azure.com&clientid=user-assigned-2 HTTP/1.1\r\n"
            ),
            "{}",
            seen[0]
        );
        assert_has(&seen[0], &["secret: msi-secret-value"]);
    }

    #[test]
    fn imds_at_the_pod_identity_host() {
        let (url, seen) = serve(1, |_, _| (200, r#"{"access_token":"imds-token","expires_in":"86399"}"#.into()));
        let source = source("https://ml.azure.com/", &[("AZURE_POD_IDENTITY_AUTHORITY_HOST", &*format!("{url}/"))]);
        assert_eq!(source.token().unwrap().expose(), "imds-token");
        let seen = seen.join().unwrap();
        assert!(
            seen[0].starts_with(
                "GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fml.azure.com HTTP/1.1\r\n"
            ),
            "{}",
            seen[0]
        );
        assert_has(&seen[0], &["metadata: true"]);
    }

    #[test]
    fn imds_without_an_identity_falls_through() {
        let (url, seen) =
            serve(1, |_, _| (400, r#"{"error":"invalid_request","error_description":"Identity not found"}"#.into()));
        let env = [("AZURE_POD_IDENTITY_AUTHORITY_HOST", url.as_str()), ("AZURE_CLIENT_ID", "user-assigned-3")];
        let error = source(ARM, &env).token().unwrap_err().message;
        assert_has(&seen.join().unwrap()[0], &["&client_id=user-assigned-3 "]);
        assert_has(
            &error,
            &["managed identity: IMDS at", "400", "Identity not found", "client id user-assigned-3", "Azure CLI: "],
        );
    }

    #[test]
    fn every_credential_tried_is_named_when_all_fail() {
        let started = Instant::now();
        let error = source(COGNITIVE_SERVICES, &[]).token().unwrap_err().message;
        // A closed port refuses at once: unreachable IMDS costs nothing.
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert_has(
            &error,
            &[
                "no credential gave a token for https://cognitiveservices.azure.com",
                "  - AZURE_OPENAI_AD_TOKEN: not set",
                "  - client secret: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET not set",
                "  - federated token file: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE not set",
                "  - GitHub Actions OIDC: ",
                "  - Azure Pipelines OIDC: AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
                "  - managed identity: IMDS at http://127.0.0.1:",
                "cannot connect",
                "  - Azure CLI: `/nonexistent/flow-ci-test-az` not found",
                "to fix:",
                "az login",
                "permissions: id-token: write",
                "SYSTEM_ACCESSTOKEN",
            ],
        );
    }

    #[test]
    fn github_actions_without_id_token_permission_says_so() {
        let env = [("GITHUB_ACTIONS", "true"), ("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")];
        let error = source(ARM, &env).token().unwrap_err().message;
        assert_has(
            &error,
            &[
                "GitHub Actions OIDC: ACTIONS_ID_TOKEN_REQUEST_URL, ACTIONS_ID_TOKEN_REQUEST_TOKEN not set (does the job have `permissions: id-token: write`?)",
            ],
        );
    }

    #[cfg(unix)]
    #[test]
    fn unreachable_imds_falls_through_to_the_azure_cli() {
        let dir = tempfile::tempdir().unwrap();
        let (script, args) = (dir.path().join("az"), dir.path().join("args"));
        // Run by `sh`, not exec'd: a freshly written executable can be "busy".
        let body = format!(
            "echo \"$@\" > '{}'\necho '{{\"accessToken\":\"cli-token\",\"expires_on\":4102444800}}'\n",
            args.display()
        );
        std::fs::write(&script, body).unwrap();
        let source = source_with_az(ARM, &[], &["sh", script.to_str().unwrap()]);
        let started = Instant::now();
        assert_eq!(source.token().unwrap().expose(), "cli-token");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let args = std::fs::read_to_string(args).unwrap();
        assert_eq!(args.trim(), "account get-access-token --resource https://management.azure.com --output json");
    }

    #[test]
    fn lifetimes_from_expires_in_or_expires_on() {
        let secs = |json: Json| lifetime(&json, 7).as_secs();
        assert_eq!(secs(serde_json::json!({"expires_in": 3599})), 3599);
        assert_eq!(secs(serde_json::json!({"expires_in": "86399", "expires_on": "1"})), 86399);
        let left = secs(serde_json::json!({"expires_on": (now() + 600).to_string()}));
        assert!((598..=600).contains(&left), "{left}");
        assert_eq!(secs(serde_json::json!({"expires_on": 1})), 0);
        // App Service's old date strings: not epoch seconds, so the default.
        assert_eq!(secs(serde_json::json!({"expires_on": "1/16/2020 5:24:12 AM +00:00"})), 7);
        assert_eq!(secs(serde_json::json!({})), 7);
    }

    #[test]
    fn tenant_ids_cannot_change_the_token_url() {
        let env = [("AZURE_TENANT_ID", "../x?y"), ("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "s")];
        let error = source(ARM, &env).token().unwrap_err().message;
        assert_has(&error, &["client secret failed", "is not a tenant id"]);
    }

    const SECRET_ENV: [(&str, &str); 3] =
        [("AZURE_TENANT_ID", "tenant-1"), ("AZURE_CLIENT_ID", "client-1"), ("AZURE_CLIENT_SECRET", "s3cret-value")];

    fn with_authority<'a>(env: &[(&'a str, &'a str)], authority: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut env = env.to_vec();
        env.push(("AZURE_AUTHORITY_HOST", authority));
        env
    }

    #[test]
    fn a_busy_token_endpoint_is_asked_again() {
        // 503, 429 (throttled, with Retry-After), then the token.
        let (url, seen) = serve(3, |i, _| match i {
            0 => (503, r#"{"error":"temporarily_unavailable","error_description":"AADSTS90033"}"#.into()),
            1 => (429, r#"{"error":"too_many_requests"}"#.into()),
            _ => (200, r#"{"access_token":"entra-token","expires_in":3599}"#.into()),
        });
        let env = with_authority(&SECRET_ENV, &url);
        assert_eq!(source(ARM, &env).token().unwrap().expose(), "entra-token");
        let seen = seen.join().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|r| r.starts_with("POST /tenant-1/oauth2/v2.0/token ")), "{seen:?}");
    }

    #[test]
    fn a_refused_token_request_is_not_asked_again() {
        // One answer only: a retry would find nobody listening and say so
        // instead of AADSTS70011.
        let (url, seen) = serve(1, |_, _| {
            (400, r#"{"error":"invalid_scope","error_description":"AADSTS70011: The provided value for scope is not valid."}"#.into())
        });
        let env = with_authority(&SECRET_ENV, &url);
        let error = source(ARM, &env).token().unwrap_err();
        assert_eq!(seen.join().unwrap().len(), 1);
        assert_has(&error.message, &["client secret failed", "400", "AADSTS70011"]);
        assert!(!error.invalid_input, "a service's refusal is a failure, not bad input");
    }

    #[test]
    fn github_oidc_is_asked_again_when_the_runner_service_fails() {
        let (url, seen) = serve(3, |i, req| match (i, req.starts_with("GET /oidc")) {
            (0, _) => (502, r#"{"message":"bad gateway"}"#.into()),
            (_, true) => (200, r#"{"value":"github-id-token"}"#.into()),
            _ => (200, r#"{"access_token":"entra-token","expires_in":3599}"#.into()),
        });
        let oidc = format!("{url}/oidc?api-version=2.0");
        let env = [
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_AUTHORITY_HOST", url.as_str()),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", oidc.as_str()),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-token"),
        ];
        assert_eq!(source(ARM, &env).token().unwrap().expose(), "entra-token");
        let seen = seen.join().unwrap();
        assert!(seen[0].starts_with("GET /oidc") && seen[1].starts_with("GET /oidc"), "{seen:?}");
        assert!(seen[2].starts_with("POST /tenant-1/oauth2/v2.0/token "), "{}", seen[2]);
    }

    #[test]
    fn imds_updating_or_busy_is_asked_again() {
        // 410 (being updated), 404 (updating), 500, then the token.
        let (url, seen) = serve(4, |i, _| match i {
            0 => (410, r#"{"error":"gone"}"#.into()),
            1 => (404, r#"{"error":"not_found"}"#.into()),
            2 => (500, r#"{"error":"unknown_error"}"#.into()),
            _ => (200, r#"{"access_token":"imds-token","expires_in":"86399"}"#.into()),
        });
        let source = source(ARM, &[("AZURE_POD_IDENTITY_AUTHORITY_HOST", url.as_str())]);
        assert_eq!(source.token().unwrap().expose(), "imds-token");
        let seen = seen.join().unwrap();
        assert!(seen.iter().all(|r| r.starts_with("GET /metadata/identity/oauth2/token?")), "{seen:?}");
    }

    #[test]
    fn imds_retries_of_one_kind_are_bounded() {
        // 500 four times: 1 + 3 retries, then the chain goes on to the CLI.
        let (url, seen) = serve(4, |_, _| (500, r#"{"error":"unknown_error"}"#.into()));
        let error = source(ARM, &[("AZURE_POD_IDENTITY_AUTHORITY_HOST", url.as_str())]).token().unwrap_err();
        assert_eq!(seen.join().unwrap().len(), 4);
        assert_has(&error.message, &["managed identity: IMDS at", "500", "Azure CLI: "]);
        // 410 is retried up to 8 tries (70 s of 10 s waits).
        let answers: Vec<Verdict> = (1..=8).map(|attempt| imds_verdict(410, attempt)).collect();
        assert!(
            answers.iter().all(|v| matches!(v, Verdict::Retry(Some(w)) if *w == IMDS_UPDATING_WAIT)),
            "{answers:?}"
        );
        assert_eq!(IMDS_RETRY.attempts, 8);
        assert_eq!(imds_verdict(503, 4), Verdict::Keep);
        assert_eq!(imds_verdict(400, 1), Verdict::Keep);
    }

    fn imds_verdict(status: u16, attempt: u32) -> Verdict {
        imds_status(status, None, attempt)
    }

    #[test]
    fn a_client_secret_never_goes_to_an_http_authority() {
        for authority in ["http://login.example.com", "http://10.0.0.1:8080", "ftp://login.example.com"] {
            let env = with_authority(&SECRET_ENV, authority);
            let error = source(ARM, &env).token().unwrap_err();
            assert!(error.invalid_input, "{authority}: {}", error.message);
            assert_has(
                &error.message,
                &[
                    "client secret for https://management.azure.com",
                    "does not use https",
                    "https://login.microsoftonline.com",
                ],
            );
            assert!(!error.message.contains("s3cret-value"), "{}", error.message);
        }
        // A federated token neither; nothing is sent.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "federated-jwt").unwrap();
        let env = [
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
            ("AZURE_AUTHORITY_HOST", "http://login.example.com/"),
        ];
        let error = source(ARM, &env).token().unwrap_err();
        assert!(error.invalid_input && error.message.contains("federated token file for"), "{}", error.message);
        // Loopback (tests' fake authorities) is allowed, by name or address.
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            let url = reqwest::Url::parse(&format!("http://{host}:9/")).unwrap();
            assert!(is_loopback(&url), "{host}");
        }
        assert!(!is_loopback(&reqwest::Url::parse("http://localhost.example.com/").unwrap()));
    }
}
