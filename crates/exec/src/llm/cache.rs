//! The response cache: `<dir>/<2 hex>/<sha256>.json`, addressed by provider,
//! endpoint, deployment/model and the full request body, so re-running an
//! unchanged prompt costs nothing. Entries are written atomically; an entry
//! that does not parse or does not match its key is ignored (and rewritten
//! by the next successful call). Keys and tokens are never part of an entry.

use std::path::PathBuf;

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::request::Request;

#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

/// Bumped when the entry format or the key changes.
const VERSION: u64 = 1;

impl Cache {
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    /// The content address of a request.
    pub fn key(req: &Request) -> String {
        let endpoint = req.url.split('?').next().unwrap_or(&req.url);
        let material = json!({
            "v": VERSION,
            "provider": req.provider.name(),
            "endpoint": endpoint,
            "url": req.url,
            "model": req.model,
            "body": req.body,
        });
        let digest = Sha256::digest(material.to_string().as_bytes());
        base16ct::lower::encode_string(&digest)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// The cached response body, if a valid entry exists.
    pub fn get(&self, key: &str) -> Lookup {
        let path = self.path(key);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Corrupt(format!("{}: {e}", path.display())),
        };
        let entry: Json = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return Lookup::Corrupt(format!("{}: {e}", path.display())),
        };
        match (entry.get("key").and_then(Json::as_str), entry.get("response")) {
            (Some(k), Some(response)) if k == key && response.is_object() => Lookup::Hit(response.clone()),
            _ => Lookup::Corrupt(format!("{}: not a flow-ci cache entry for this request", path.display())),
        }
    }

    /// Stores a response; failures are reported, never fatal (the run goes on).
    pub fn put(&self, key: &str, req: &Request, response: &Json) -> Result<(), String> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.dir);
        let entry = json!({
            "key": key,
            "version": VERSION,
            "request": {"provider": req.provider.name(), "url": req.url, "model": req.model, "body": req.body},
            "response": response,
        });
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer_pretty(&mut tmp, &entry)?;
            std::io::Write::write_all(&mut tmp, b"\n")?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| format!("cannot write the LLM cache entry {}: {e}", path.display()))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Hit(Json),
    Miss,
    /// Unreadable or foreign; the reason is logged and the request is sent.
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::request::{Api, Provider};

    fn request(content: &str) -> Request {
        Request {
            provider: Provider::OpenAI,
            api: Api::Chat,
            url: "http://127.0.0.1:1/v1/chat/completions".into(),
            model: "m".into(),
            body: json!({"messages": [{"role": "user", "content": content}]}),
            returns_message: false,
        }
    }

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let req = request("hi");
        let key = Cache::key(&req);
        assert_ne!(key, Cache::key(&request("hi ")), "the body is part of the key");
        assert_eq!(cache.get(&key), Lookup::Miss);
        cache.put(&key, &req, &json!({"choices": []})).unwrap();
        assert_eq!(cache.get(&key), Lookup::Hit(json!({"choices": []})));
        std::fs::write(cache.path(&key), "{ truncated").unwrap();
        assert!(matches!(cache.get(&key), Lookup::Corrupt(_)));
        cache.put(&key, &req, &json!({"choices": [1]})).unwrap();
        assert_eq!(cache.get(&key), Lookup::Hit(json!({"choices": [1]})));
    }
}
