//! Entra ID tokens for Azure OpenAI connections with `auth_mode: meid_token`.
//!
//! Tried in order: an explicit `AZURE_OPENAI_AD_TOKEN` (as the openai SDK
//! reads it); a client secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_CLIENT_SECRET`); a federated token file (`AZURE_FEDERATED_TOKEN_FILE`,
//! as workload identity and `azure/login` OIDC set up); the Azure CLI. The
//! authority is `AZURE_AUTHORITY_HOST` (sovereign clouds, loopback tests).
//! Tokens are reused until five minutes before they expire.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::connection::Secret;

const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

pub struct TokenSource {
    env: BTreeMap<String, String>,
    http: reqwest::blocking::Client,
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl TokenSource {
    pub fn from_env(http: reqwest::blocking::Client) -> TokenSource {
        TokenSource { env: std::env::vars().collect(), http, cached: Mutex::new(None) }
    }

    /// A bearer token for Azure OpenAI.
    pub fn token(&self) -> Result<Secret, String> {
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

    fn fetch(&self) -> Result<(Secret, Duration), String> {
        if let Some(token) = self.var("AZURE_OPENAI_AD_TOKEN") {
            return Ok((Secret::new(token.to_string()), Duration::from_secs(3600)));
        }
        if let (Some(tenant), Some(client)) = (self.var("AZURE_TENANT_ID"), self.var("AZURE_CLIENT_ID")) {
            if let Some(secret) = self.var("AZURE_CLIENT_SECRET") {
                return self.token_request(tenant, &[("client_id", client), ("client_secret", secret)]);
            }
            if let Some(file) = self.var("AZURE_FEDERATED_TOKEN_FILE") {
                let assertion = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read AZURE_FEDERATED_TOKEN_FILE {file}: {e}"))?;
                return self.token_request(
                    tenant,
                    &[
                        ("client_id", client),
                        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                        ("client_assertion", assertion.trim()),
                    ],
                );
            }
        }
        azure_cli().map_err(|cli| {
            format!(
                "set AZURE_OPENAI_AD_TOKEN, or AZURE_TENANT_ID + AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE, or sign in with `az login` ({cli})"
            )
        })
    }

    /// OAuth2 client credentials against `{authority}/{tenant}/oauth2/v2.0/token`.
    fn token_request(&self, tenant: &str, credentials: &[(&str, &str)]) -> Result<(Secret, Duration), String> {
        let authority = self.var("AZURE_AUTHORITY_HOST").unwrap_or(DEFAULT_AUTHORITY).trim_end_matches('/');
        let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials"), ("scope", SCOPE)];
        form.extend_from_slice(credentials);
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", super::percent_encode(k), super::percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .map_err(|e| format!("token request to {url} failed: {e}"))?;
        let status = response.status();
        let json: Json = response.json().map_err(|e| format!("token response from {url} is not JSON: {e}"))?;
        if !status.is_success() {
            let why = json.get("error_description").or_else(|| json.get("error")).and_then(Json::as_str).unwrap_or("");
            return Err(format!("token request to {url} failed with {status}: {why}"));
        }
        let token = json.get("access_token").and_then(Json::as_str).ok_or("the token response has no access_token")?;
        let lifetime =
            json.get("expires_in").and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).unwrap_or(3600);
        Ok((Secret::new(token.to_string()), Duration::from_secs(lifetime)))
    }
}

fn azure_cli() -> Result<(Secret, Duration), String> {
    let out = std::process::Command::new("az")
        .args(["account", "get-access-token", "--resource", "https://cognitiveservices.azure.com", "--output", "json"])
        .output()
        .map_err(|e| format!("Azure CLI not available: {e}"))?;
    if !out.status.success() {
        return Err(format!("`az account get-access-token` failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let json: Json = serde_json::from_slice(&out.stdout).map_err(|e| format!("Azure CLI output is not JSON: {e}"))?;
    let token = json.get("accessToken").and_then(Json::as_str).ok_or("Azure CLI gave no accessToken")?;
    Ok((Secret::new(token.to_string()), Duration::from_secs(1800)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(crate::llm::percent_encode("a b/c:d"), "a%20b%2Fc%3Ad");
    }

    #[test]
    fn an_explicit_token_wins() {
        let source = TokenSource {
            env: [("AZURE_OPENAI_AD_TOKEN".to_string(), "tok".to_string())].into(),
            http: reqwest::blocking::Client::new(),
            cached: Mutex::new(None),
        };
        assert_eq!(source.token().unwrap().expose(), "tok");
    }
}
