//! Azure Blob Storage REST, the few calls an upload needs: HEAD a blob, PUT
//! a block blob, set its metadata, create a container (tests). Requests are
//! signed with the account key (Shared Key) or carry a SAS token, the two
//! credentials an Azure ML datastore hands out (`listSecrets`), or carry
//! the caller's Entra token for storage, as uploads to an identity-based
//! datastore do.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hmac::{KeyInit, Mac};

use model::secret::Secret;
use net::retry::{Next, Policy};

/// The storage API version sent with every request. A request with an
/// Entra token needs 2017-11-09 or later ("Authorize with Microsoft Entra
/// ID", <https://learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-directory>).
const VERSION: &str = "2021-08-06";
/// A 2xx answer: its headers (lower-cased names) and its body.
pub(crate) type Answer = (Vec<(String, String)>, String);

/// Retries of one blob call: azure-core's `RetryPolicy` makes 1 + 3 tries,
/// backing off from 0.5 s here (the waits of a long upload add up).
const RETRY: Policy = Policy { attempts: 4, backoff: Duration::from_millis(500), max_wait: Duration::from_secs(60) };

/// The resource of storage tokens (scope `https://storage.azure.com/.default`,
/// azure-storage-blob's `STORAGE_OAUTH_SCOPE`), the same in every cloud.
pub const STORAGE_RESOURCE: &str = "https://storage.azure.com";

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("cannot reach {url}: {message}")]
    Http { url: String, message: String },
    #[error("{method} {url} answered {status}: {message}")]
    Status { method: String, url: String, status: u16, message: String },
    #[error("the storage account key is not valid base64")]
    BadKey,
    #[error("cannot get an Azure token for storage: {0}")]
    Auth(String),
}

pub enum Credential {
    AccountKey(Secret),
    /// A SAS token (`sv=...&sig=...`), appended to every URL.
    Sas(Secret),
    /// The caller's Entra token for storage (`Authorization: Bearer`).
    Bearer(Arc<net::entra::TokenSource>),
}

/// A container: `{account_url}/{container}`.
pub struct Container {
    /// `https://{account}.blob.core.windows.net`, or an emulator's
    /// path-style `http://127.0.0.1:10000/devstoreaccount1`.
    pub account_url: String,
    pub account: String,
    pub name: String,
    pub credential: Credential,
    http: reqwest::blocking::Client,
}

impl Container {
    pub fn new(account_url: &str, account: &str, name: &str, credential: Credential) -> Result<Container, BlobError> {
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("flow-ci/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| BlobError::Http { url: account_url.into(), message: e.to_string() })?;
        Ok(Container {
            account_url: account_url.trim_end_matches('/').to_string(),
            account: account.into(),
            name: name.into(),
            credential,
            http,
        })
    }

    /// The same container through another HTTP client (a test's, trusting
    /// a test CA).
    pub fn with_http(mut self, http: reqwest::blocking::Client) -> Container {
        self.http = http;
        self
    }

    /// Creates the container; an existing one is fine.
    pub fn create(&self) -> Result<(), BlobError> {
        match self.request("PUT", "", &[("restype", "container")], &[], Vec::new()) {
            Ok(_) => Ok(()),
            Err(BlobError::Status { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The blob's metadata (`x-ms-meta-*`, names lower-cased), or `None` when it does not exist.
    pub fn metadata(&self, path: &str) -> Result<Option<Vec<(String, String)>>, BlobError> {
        match self.request("HEAD", path, &[], &[], Vec::new()) {
            Ok((headers, _)) => Ok(Some(
                headers.into_iter().filter_map(|(k, v)| Some((k.strip_prefix("x-ms-meta-")?.to_string(), v))).collect(),
            )),
            Err(BlobError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A text blob's content, or `None` when it does not exist.
    pub fn get_text(&self, path: &str) -> Result<Option<String>, BlobError> {
        match self.request("GET", path, &[], &[], Vec::new()) {
            Ok((_, body)) => Ok(Some(body)),
            Err(BlobError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn put(&self, path: &str, body: Vec<u8>) -> Result<(), BlobError> {
        let headers = [("content-type", "application/octet-stream"), ("x-ms-blob-type", "BlockBlob")];
        self.request("PUT", path, &[], &headers, body).map(|_| ())
    }

    pub fn set_metadata(&self, path: &str, metadata: &[(&str, &str)]) -> Result<(), BlobError> {
        let names: Vec<String> = metadata.iter().map(|(k, _)| format!("x-ms-meta-{k}")).collect();
        let headers: Vec<(&str, &str)> =
            names.iter().map(String::as_str).zip(metadata.iter().map(|(_, v)| *v)).collect();
        self.request("PUT", path, &[("comp", "metadata")], &headers, Vec::new()).map(|_| ())
    }

    /// (name, ETag) of the blobs under `prefix` (the first 5000).
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, String)>, BlobError> {
        let query = [("comp", "list"), ("prefix", prefix), ("restype", "container")];
        let (_, body) = self.request("GET", "", &query, &[], Vec::new())?;
        let field = |blob: &str, tag: &str| {
            let open = format!("<{tag}>");
            blob.split(&open).nth(1).and_then(|s| s.split(&format!("</{tag}>")).next()).map(unescape_xml)
        };
        Ok(body
            .split("<Blob>")
            .skip(1)
            .filter_map(|b| Some((field(b, "Name")?, field(b, "Etag").unwrap_or_default())))
            .collect())
    }

    /// One signed request, retried on the answers azure-core's
    /// `RetryPolicy` retries (408, 429, 500, 502, 503, 504; storage says
    /// ServerBusy and OperationTimedOut with them) and on a connection that
    /// fails, honouring `Retry-After`, else backing off exponentially: every
    /// blob call flow-ci makes is idempotent (a PUT writes the same bytes
    /// again). Answers other than 2xx are errors.
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, BlobError> {
        RETRY.run(|_| match self.request_once(method, path, query, headers, body.clone()) {
            Ok(done) => Ok(done),
            Err((error, wait)) if retryable(&error) => Err(Next::Retry(error, wait)),
            Err((error, _)) => Err(Next::Stop(error)),
        })
    }

    fn request_once(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, (BlobError, Option<Duration>)> {
        let fail = |e: BlobError| (e, None);
        let resource = if path.is_empty() { self.name.clone() } else { format!("{}/{}", self.name, encode_path(path)) };
        let mut url = format!("{}/{resource}", self.account_url);
        let mut pairs: Vec<String> =
            query.iter().map(|(k, v)| format!("{k}={}", net::http::percent_encode(v))).collect();
        if let Credential::Sas(token) = &self.credential {
            pairs.push(token.expose().trim_start_matches('?').to_string());
        }
        if !pairs.is_empty() {
            url = format!("{url}?{}", pairs.join("&"));
        }
        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut all: Vec<(String, String)> = vec![("x-ms-date".into(), date), ("x-ms-version".into(), VERSION.into())];
        all.extend(headers.iter().map(|(k, v)| (k.to_lowercase(), v.to_string())));
        // Version 2015-02-21 and later sign an empty Content-Length for 0.
        let length = if body.is_empty() { String::new() } else { body.len().to_string() };
        match &self.credential {
            Credential::AccountKey(key) => {
                let url_path =
                    url.split("://").nth(1).and_then(|rest| rest.find('/').map(|i| &rest[i..])).unwrap_or("/");
                let url_path = url_path.split('?').next().unwrap_or("/");
                let to_sign = string_to_sign(method, &length, &all, &self.account, url_path, query);
                all.push((
                    "authorization".into(),
                    format!("SharedKey {}:{}", self.account, sign(key, &to_sign).map_err(fail)?),
                ));
            }
            Credential::Bearer(tokens) => {
                let token = tokens.token().map_err(|e| fail(BlobError::Auth(e.message)))?;
                all.push(("authorization".into(), format!("Bearer {}", token.expose())));
            }
            Credential::Sas(_) => {}
        }
        let verb = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = self.http.request(verb, &url);
        for (k, v) in &all {
            req = req.header(k.as_str(), v.as_str());
        }
        if method == "PUT" {
            req = req.header("content-length", body.len()).body(body);
        }
        // The URL of a SAS request carries the token: never show it.
        let shown = url.split('?').next().unwrap_or_default().to_string();
        let resp = req
            .send()
            .map_err(|e| fail(BlobError::Http { url: shown.clone(), message: e.without_url().to_string() }))?;
        let status = resp.status().as_u16();
        let wait = net::http::retry_after(resp.headers());
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_lowercase(), v.to_str().ok()?.to_string())))
            .collect();
        let text = resp.text().unwrap_or_default();
        if !(200..300).contains(&status) {
            let code = text.split("<Code>").nth(1).and_then(|s| s.split("</Code>").next()).unwrap_or("");
            let message = headers.iter().find(|(k, _)| k == "x-ms-error-code").map_or(code, |(_, v)| v.as_str());
            let error = BlobError::Status { method: method.into(), url: shown, status, message: message.to_string() };
            return Err((error, wait));
        }
        Ok((headers, text))
    }
}

/// A failed connection, or an answer azure-core retries.
fn retryable(error: &BlobError) -> bool {
    match error {
        BlobError::Http { .. } => true,
        BlobError::Status { status, .. } => net::retry::transient(*status),
        BlobError::BadKey | BlobError::Auth(_) => false,
    }
}

/// The Shared Key string to sign (Blob service, version 2015-02-21 and later).
fn string_to_sign(
    method: &str,
    length: &str,
    headers: &[(String, String)],
    account: &str,
    url_path: &str,
    query: &[(&str, &str)],
) -> String {
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str());
    let mut ms: Vec<(&str, &str)> =
        headers.iter().filter(|(k, _)| k.starts_with("x-ms-")).map(|(k, v)| (k.as_str(), v.trim())).collect();
    ms.sort();
    let mut s = format!(
        "{method}\n{}\n{}\n{length}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n",
        get("content-encoding"),
        get("content-language"),
        get("content-md5"),
        get("content-type"),
        get("if-modified-since"),
        get("if-match"),
        get("if-none-match"),
        get("if-unmodified-since"),
        get("range"),
    );
    for (k, v) in ms {
        s.push_str(&format!("{k}:{v}\n"));
    }
    s.push_str(&format!("/{account}{url_path}"));
    let mut params: Vec<(String, &str)> = query.iter().map(|(k, v)| (k.to_lowercase(), *v)).collect();
    params.sort();
    for (k, v) in params {
        s.push_str(&format!("\n{k}:{v}"));
    }
    s
}

fn sign(key: &Secret, text: &str) -> Result<String, BlobError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(key.expose()).map_err(|_| BlobError::BadKey)?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|_| BlobError::BadKey)?;
    mac.update(text.as_bytes());
    Ok(b64.encode(mac.finalize().into_bytes()))
}

/// A blob path in a URL: each segment percent-encoded, `/` kept.
fn encode_path(path: &str) -> String {
    path.split('/').map(net::http::percent_encode).collect::<Vec<_>>().join("/")
}

pub(crate) fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback blob service answering `answers` in turn (one connection
    /// each); returns its URL and the number of requests it saw.
    fn storage(answers: Vec<&'static str>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/devstoreaccount1", listener.local_addr().unwrap());
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((stream, _)) = listener.accept() else { return };
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = reader.get_mut().write_all(answer.as_bytes());
            }
        });
        (url, seen)
    }

    const BUSY: &str = "HTTP/1.1 503 Server Busy\r\nRetry-After: 0\r\nx-ms-error-code: ServerBusy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const CREATED: &str = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const DENIED: &str = "HTTP/1.1 403 Forbidden\r\nx-ms-error-code: AuthorizationFailure\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

    #[test]
    fn a_busy_answer_is_retried_and_a_refusal_is_not() {
        let key = || Credential::Sas(Secret::new("sv=2021-08-06&sig=x".into()));
        let (url, seen) = storage(vec![BUSY, BUSY, CREATED]);
        let container = Container::new(&url, "devstoreaccount1", "c", key()).unwrap();
        container.put("a.txt", b"hello".to_vec()).unwrap();
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);

        let (url, seen) = storage(vec![DENIED, CREATED]);
        let container = Container::new(&url, "devstoreaccount1", "c", key()).unwrap();
        let err = container.put("a.txt", b"hello".to_vec()).unwrap_err();
        assert!(matches!(err, BlobError::Status { status: 403, .. }), "{err}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// The example of Microsoft's "Authorize with Shared Key" page, signed
    /// with the emulator's published key.
    #[test]
    fn the_string_to_sign_has_the_documented_shape() {
        let headers = vec![
            ("x-ms-date".to_string(), "Fri, 26 Jun 2015 23:39:12 GMT".to_string()),
            ("x-ms-version".to_string(), "2015-02-21".to_string()),
        ];
        let s = string_to_sign(
            "GET",
            "",
            &headers,
            "myaccount",
            "/mycontainer",
            &[("restype", "container"), ("comp", "metadata")],
        );
        assert_eq!(
            s,
            "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\nx-ms-version:2015-02-21\n/myaccount/mycontainer\ncomp:metadata\nrestype:container"
        );
        let key = Secret::new(
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==".into(),
        );
        assert_eq!(sign(&key, "x").unwrap().len(), 44, "a base64 HMAC-SHA256");
        assert!(matches!(sign(&Secret::new("not base64!".into()), "x"), Err(BlobError::BadKey)));
    }
}
