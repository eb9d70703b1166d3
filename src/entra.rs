//! Entra ID tokens: for Azure OpenAI connections with `auth_mode: meid_token`
//! and for Azure Resource Manager / Azure ML (the `azureml` backend).
//!
//! Tried in order: an explicit `AZURE_OPENAI_AD_TOKEN` (as the openai SDK
//! reads it); a client secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_CLIENT_SECRET`); a federated token file (`AZURE_FEDERATED_TOKEN_FILE`,
//! as workload identity sets up) or GitHub Actions' OIDC token service
//! (`ACTIONS_ID_TOKEN_REQUEST_URL`, with `id-token: write`); the Azure CLI. The
//! authority is `AZURE_AUTHORITY_HOST` (sovereign clouds, loopback tests).
//! Tokens are reused until five minutes before they expire.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::llm::connection::Secret;

/// The resource of Azure OpenAI tokens.
pub const COGNITIVE_SERVICES: &str = "https://cognitiveservices.azure.com";
/// The audience Entra expects of GitHub's ID tokens (the default of azure/login).
const GITHUB_OIDC_AUDIENCE: &str = "api://AzureADTokenExchange";

const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

pub struct TokenSource {
    /// The resource tokens are for (`{resource}/.default` is the scope).
    resource: String,
    env: BTreeMap<String, String>,
    http: reqwest::blocking::Client,
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl TokenSource {
    /// Tokens for `resource` (e.g. `https://management.azure.com`), with
    /// credentials from the environment.
    pub fn from_env(http: reqwest::blocking::Client, resource: &str) -> TokenSource {
        TokenSource {
            resource: resource.trim_end_matches('/').to_string(),
            env: std::env::vars().collect(),
            http,
            cached: Mutex::new(None),
        }
    }

    /// A bearer token for the resource.
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
        if let Some(token) = self.var("AZURE_OPENAI_AD_TOKEN").filter(|_| self.resource == COGNITIVE_SERVICES) {
            return Ok((Secret::new(token.to_string()), Duration::from_secs(3600)));
        }
        if let (Some(tenant), Some(client)) = (self.var("AZURE_TENANT_ID"), self.var("AZURE_CLIENT_ID")) {
            if let Some(secret) = self.var("AZURE_CLIENT_SECRET") {
                return self.token_request(tenant, &[("client_id", client), ("client_secret", secret)]);
            }
            let assertion = if let Some(file) = self.var("AZURE_FEDERATED_TOKEN_FILE") {
                Some(
                    std::fs::read_to_string(file)
                        .map_err(|e| format!("cannot read AZURE_FEDERATED_TOKEN_FILE {file}: {e}"))?,
                )
            } else {
                self.github_oidc_token()?
            };
            if let Some(assertion) = assertion {
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
        azure_cli(&self.resource).map_err(|cli| {
            format!(
                "set AZURE_OPENAI_AD_TOKEN, or AZURE_TENANT_ID + AZURE_CLIENT_ID with AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE or GitHub OIDC (`id-token: write`), or sign in with `az login` ({cli})"
            )
        })
    }

    /// GitHub Actions OIDC (`permissions: id-token: write`): an ID token for
    /// Entra's federated credentials, from the runner's token service.
    fn github_oidc_token(&self) -> Result<Option<String>, String> {
        let (Some(url), Some(bearer)) =
            (self.var("ACTIONS_ID_TOKEN_REQUEST_URL"), self.var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"))
        else {
            return Ok(None);
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}audience={}", crate::llm::percent_encode(GITHUB_OIDC_AUDIENCE));
        let response = self
            .http
            .get(&url)
            .bearer_auth(bearer)
            .send()
            .map_err(|e| format!("GitHub OIDC token request failed: {}", e.without_url()))?;
        let status = response.status();
        let json: Json = response.json().map_err(|e| format!("GitHub OIDC token response is not JSON: {e}"))?;
        match json.get("value").and_then(Json::as_str) {
            Some(token) if status.is_success() => Ok(Some(token.to_string())),
            _ => Err(format!(
                "GitHub OIDC token request failed with {status} (does the job have `permissions: id-token: write`?)"
            )),
        }
    }

    /// OAuth2 client credentials against `{authority}/{tenant}/oauth2/v2.0/token`.
    fn token_request(&self, tenant: &str, credentials: &[(&str, &str)]) -> Result<(Secret, Duration), String> {
        let authority = self.var("AZURE_AUTHORITY_HOST").unwrap_or(DEFAULT_AUTHORITY).trim_end_matches('/');
        let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
        let scope = format!("{}/.default", self.resource);
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials"), ("scope", &scope)];
        form.extend_from_slice(credentials);
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", crate::llm::percent_encode(k), crate::llm::percent_encode(v)))
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

fn azure_cli(resource: &str) -> Result<(Secret, Duration), String> {
    let out = std::process::Command::new("az")
        .args(["account", "get-access-token", "--resource", resource, "--output", "json"])
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
            resource: COGNITIVE_SERVICES.into(),
            env: [("AZURE_OPENAI_AD_TOKEN".to_string(), "tok".to_string())].into(),
            http: reqwest::blocking::Client::new(),
            cached: Mutex::new(None),
        };
        assert_eq!(source.token().unwrap().expose(), "tok");
    }

    /// Answers loopback HTTP requests in turn with `answer(request line +
    /// headers + body)`; returns the base URL and the requests seen.
    fn serve(n: usize, answer: fn(&str) -> String) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..n {
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
                let body = answer(&text);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).unwrap();
                seen.push(text);
            }
            seen
        });
        (url, handle)
    }

    #[test]
    fn github_oidc_is_exchanged_for_an_entra_token() {
        let (url, seen) = serve(2, |req| {
            if req.starts_with("GET /oidc") {
                r#"{"value":"github-id-token"}"#.into()
            } else {
                r#"{"access_token":"entra-token","expires_in":3599}"#.into()
            }
        });
        let env = [
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_AUTHORITY_HOST", url.as_str()),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &format!("{url}/oidc?api-version=2.0")),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-token"),
        ];
        let source = TokenSource {
            resource: COGNITIVE_SERVICES.into(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            http: reqwest::blocking::Client::new(),
            cached: Mutex::new(None),
        };
        assert_eq!(source.token().unwrap().expose(), "entra-token");
        let seen = seen.join().unwrap();
        assert!(
            seen[0].starts_with("GET /oidc?api-version=2.0&audience=api%3A%2F%2FAzureADTokenExchange "),
            "{}",
            seen[0]
        );
        assert!(seen[0].to_lowercase().contains("authorization: bearer runner-token"), "{}", seen[0]);
        assert!(seen[1].starts_with("POST /tenant-1/oauth2/v2.0/token "), "{}", seen[1]);
        for part in [
            "grant_type=client_credentials",
            "client_id=client-1",
            "client_assertion=github-id-token",
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        ] {
            assert!(seen[1].contains(part), "{part} in {}", seen[1]);
        }
    }
}
