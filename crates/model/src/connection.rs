//! Connections: the named endpoints and keys that `llm` nodes (and python
//! parameters typed as connections) use, resolved the way promptflow does.
//!
//! A name is looked up, in order, in `.flow-ci.yaml` `connections:` (inline,
//! or `file:` pointing at a `pf connection create --file` YAML), in connection
//! files given with `--connection`, in the executor's `PROMPTFLOW_CONNECTIONS`
//! JSON file, and finally in the standard environment variables
//! (`AZURE_OPENAI_ENDPOINT` / `AZURE_OPENAI_API_KEY`, `OPENAI_API_KEY` /
//! `OPENAI_BASE_URL`). Values may be `${env:VAR}` or `${env:VAR:-default}`.
//! Secrets are held in [`Secret`], which never prints its value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::decode::Decoder;
use crate::diag::{Code, Diagnostics};
pub use crate::secret::Secret;
use crate::yaml::{Node as Yaml, Value as YamlValue};

/// promptflow's default `api_version` for Azure OpenAI connections.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-02-01";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Keys a connection definition may have (promptflow's connection YAML schema,
/// plus `file:` in `.flow-ci.yaml`).
pub(crate) const CONNECTION_KEYS: &[&str] = &[
    "$schema",
    "name",
    "type",
    "module",
    "api_key",
    "api_base",
    "api_type",
    "api_version",
    "auth_mode",
    "resource_id",
    "organization",
    "base_url",
    "endpoint",
    "configs",
    "secrets",
    "file",
];

/// The keys of CONNECTION_KEYS that are not a value of the connection.
const STRUCTURE_KEYS: &[&str] = &["$schema", "name", "type", "module", "configs", "secrets", "file"];

/// Values promptflow's templates use for "fill this in"; treated as missing.
const PLACEHOLDERS: &[&str] = &["<user-input>", "<to-be-replaced>", "******", "<no-change>"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    AzureOpenAI,
    OpenAI,
    /// An OpenAI-compatible serverless endpoint (`/v1` is appended to api_base).
    Serverless,
    Custom,
    /// SerpAPI's key, for promptflow-tools' `serpapi` tool.
    Serp,
    /// An Azure AI Content Safety resource (`endpoint`, `api_key`,
    /// `api_version`), for promptflow-tools' `azure_content_safety` tool.
    AzureContentSafety,
}

impl Kind {
    /// The promptflow class name (`AzureOpenAIConnection`, ...).
    pub fn class_name(self) -> &'static str {
        match self {
            Kind::AzureOpenAI => "AzureOpenAIConnection",
            Kind::OpenAI => "OpenAIConnection",
            Kind::Serverless => "ServerlessConnection",
            Kind::Custom => "CustomConnection",
            Kind::Serp => "SerpConnection",
            Kind::AzureContentSafety => "AzureContentSafetyConnection",
        }
    }

    /// `azure_open_ai`, `AzureOpenAI`, `AzureOpenAIConnection` all name the same type.
    fn parse(text: &str) -> Option<Kind> {
        let norm: String = text.chars().filter(|c| *c != '_' && *c != '-').collect::<String>().to_lowercase();
        match norm.strip_suffix("connection").unwrap_or(&norm) {
            "azureopenai" => Some(Kind::AzureOpenAI),
            "openai" => Some(Kind::OpenAI),
            "serverless" => Some(Kind::Serverless),
            "custom" => Some(Kind::Custom),
            "serp" => Some(Kind::Serp),
            "azurecontentsafety" => Some(Kind::AzureContentSafety),
            _ => None,
        }
    }
}

/// A resolved connection.
#[derive(Clone, Debug)]
pub struct Connection {
    pub name: String,
    pub kind: Kind,
    /// Non-secret values (`api_base`, `api_version`, ...; a custom connection's `configs`).
    pub values: BTreeMap<String, String>,
    /// Secret values (`api_key`; a custom connection's `secrets`).
    pub secrets: BTreeMap<String, Secret>,
    /// Values that could not be resolved, with why (`environment variable X is not set`).
    pub unresolved: BTreeMap<String, String>,
    /// Where it was defined, for messages (`.flow-ci.yaml:12:3`, `environment`).
    pub origin: String,
}

impl Connection {
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The API key, or why there is none.
    pub fn api_key(&self) -> Result<&Secret, String> {
        match self.secrets.get("api_key") {
            Some(key) => Ok(key),
            None => Err(self.unresolved.get("api_key").cloned().unwrap_or_else(|| "it has no `api_key`".into())),
        }
    }

    /// Entra ID (`meid_token`) instead of a key.
    pub fn uses_entra_id(&self) -> bool {
        self.kind == Kind::AzureOpenAI && self.value("auth_mode") == Some("meid_token")
    }

    /// The object handed to python tools: promptflow's constructor arguments.
    pub fn to_python(&self) -> Json {
        let mut values = Map::new();
        let secrets: Map<String, Json> =
            self.secrets.iter().map(|(k, v)| (k.clone(), Json::String(v.expose().to_string()))).collect();
        let plain: Map<String, Json> = self.values.iter().map(|(k, v)| (k.clone(), Json::String(v.clone()))).collect();
        if self.kind == Kind::Custom {
            values.insert("configs".into(), Json::Object(plain));
            values.insert("secrets".into(), Json::Object(secrets));
        } else {
            values.extend(plain);
            values.extend(secrets);
        }
        values.insert("name".into(), Json::String(self.name.clone()));
        serde_json::json!({"type": self.kind.class_name(), "values": values})
    }
}

/// Where connections come from, and the definitions found there.
#[derive(Clone, Debug, Default)]
pub struct Connections {
    defined: Vec<Connection>,
    /// Places searched, for "not found" messages.
    searched: Vec<String>,
    /// Environment lookup (a function so tests do not touch the process environment).
    env: BTreeMap<String, String>,
}

/// A connection name that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("connection `{name}` used by node `{node}` is not defined; looked in {searched}")]
pub struct NotFound {
    pub name: String,
    pub node: String,
    pub searched: String,
}

impl Connections {
    /// Starts with the process environment as the fallback source.
    pub fn from_env() -> Connections {
        Connections::with_env(std::env::vars().collect())
    }

    pub fn with_env(env: BTreeMap<String, String>) -> Connections {
        Connections { defined: vec![], searched: vec![], env }
    }

    /// Adds the `connections:` mapping of a `.flow-ci.yaml`.
    pub fn add_config(&mut self, file: &Path, node: &Yaml, diags: &mut Diagnostics) {
        self.searched.push(format!("{} `connections:`", file.display()));
        let mut d = Decoder::new(file, diags);
        let Some(entries) = d.map(node, "`connections`") else { return };
        d.check_keys(entries, "`connections`", None);
        for (key, value) in entries {
            let name = key.key_text();
            if let Some(path) = value.get("file").and_then(Yaml::as_str) {
                let path = file.parent().unwrap_or(Path::new(".")).join(path);
                if let Some(mut conn) = load_file_with_env(&path, d.diags, &self.env) {
                    conn.name = name;
                    self.defined.push(conn);
                }
                continue;
            }
            let origin = format!("{}:{}", file.display(), key.pos);
            if let Some(conn) = decode(&mut d, value, Some(name), origin, &self.env) {
                self.defined.push(conn);
            }
        }
    }

    /// Adds a promptflow connection YAML file (`pf connection create --file` format).
    pub fn add_file(&mut self, path: &Path, diags: &mut Diagnostics) {
        self.searched.push(path.display().to_string());
        if let Some(conn) = load_file_with_env(path, diags, &self.env) {
            self.defined.push(conn);
        }
    }

    /// Adds promptflow's executor format: `{name: {type, value: {...}}}` in a JSON file.
    pub fn add_promptflow_json(&mut self, path: &Path) -> Result<(), String> {
        self.searched.push(format!("PROMPTFLOW_CONNECTIONS ({})", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let all: Map<String, Json> =
            serde_json::from_str(&text).map_err(|e| format!("{} is not a JSON object: {e}", path.display()))?;
        for (name, entry) in all {
            let kind = entry.get("type").and_then(Json::as_str).and_then(Kind::parse);
            let (Some(kind), Some(Json::Object(value))) = (kind, entry.get("value")) else {
                return Err(format!(
                    "{}: connection `{name}` needs a known `type` and a `value` object",
                    path.display()
                ));
            };
            let mut conn = empty(name, kind, format!("{}", path.display()));
            for (k, v) in value {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                conn.set(k, text, is_secret(kind, k));
            }
            self.defined.push(conn);
        }
        Ok(())
    }

    /// Finds `name` for `node`; standard environment variables are the last resort.
    pub fn get(&self, name: &str, node: &str) -> Result<Connection, NotFound> {
        if let Some(found) = self.defined.iter().rev().find(|c| c.name == name) {
            return Ok(found.clone());
        }
        self.standard_env(name).ok_or_else(|| NotFound {
            name: name.into(),
            node: node.into(),
            searched: self.searched_text(),
        })
    }

    fn searched_text(&self) -> String {
        let mut places = self.searched.clone();
        places.push("the environment (AZURE_OPENAI_ENDPOINT, OPENAI_API_KEY / OPENAI_BASE_URL)".into());
        places.join(", ")
    }

    /// `AZURE_OPENAI_ENDPOINT` (+ `AZURE_OPENAI_API_KEY`, `OPENAI_API_VERSION`)
    /// makes an Azure OpenAI connection; else `OPENAI_API_KEY` / `OPENAI_BASE_URL` an OpenAI one.
    fn standard_env(&self, name: &str) -> Option<Connection> {
        let var = |k: &str| self.env.get(k).filter(|v| !v.is_empty()).cloned();
        if let Some(endpoint) = var("AZURE_OPENAI_ENDPOINT") {
            let mut conn = empty(name.into(), Kind::AzureOpenAI, "environment (AZURE_OPENAI_ENDPOINT)".into());
            conn.set("api_base", endpoint, false);
            conn.set("api_type", "azure".into(), false);
            let version = var("AZURE_OPENAI_API_VERSION").or_else(|| var("OPENAI_API_VERSION"));
            conn.set("api_version", version.unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.into()), false);
            match var("AZURE_OPENAI_API_KEY") {
                Some(key) => conn.set("api_key", key, true),
                None => {
                    conn.unresolved
                        .insert("api_key".into(), "environment variable AZURE_OPENAI_API_KEY is not set".into());
                }
            }
            return Some(conn);
        }
        if var("OPENAI_API_KEY").is_none() && var("OPENAI_BASE_URL").is_none() {
            return None;
        }
        let mut conn = empty(name.into(), Kind::OpenAI, "environment (OPENAI_API_KEY / OPENAI_BASE_URL)".into());
        conn.set("base_url", var("OPENAI_BASE_URL").unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.into()), false);
        if let Some(org) = var("OPENAI_ORG_ID") {
            conn.set("organization", org, false);
        }
        match var("OPENAI_API_KEY") {
            Some(key) => conn.set("api_key", key, true),
            None => {
                conn.unresolved.insert("api_key".into(), "environment variable OPENAI_API_KEY is not set".into());
            }
        }
        Some(conn)
    }
}

fn empty(name: String, kind: Kind, origin: String) -> Connection {
    let mut conn = Connection {
        name,
        kind,
        values: BTreeMap::new(),
        secrets: BTreeMap::new(),
        unresolved: BTreeMap::new(),
        origin,
    };
    if kind == Kind::AzureOpenAI {
        conn.values.insert("api_type".into(), "azure".into());
        conn.values.insert("api_version".into(), DEFAULT_AZURE_API_VERSION.into());
        conn.values.insert("auth_mode".into(), "key".into());
    }
    conn
}

impl Connection {
    fn set(&mut self, key: &str, value: String, secret: bool) {
        if secret {
            if PLACEHOLDERS.contains(&value.trim()) || value.trim().is_empty() {
                self.unresolved.insert(key.into(), format!("its `{key}` is the placeholder `{value}`"));
            } else {
                self.unresolved.remove(key);
                self.secrets.insert(key.into(), Secret::new(value));
            }
        } else {
            self.values.insert(key.into(), value);
        }
    }
}

fn is_secret(kind: Kind, key: &str) -> bool {
    kind != Kind::Custom && key == "api_key"
}

fn load_file_with_env(path: &Path, diags: &mut Diagnostics, env: &BTreeMap<String, String>) -> Option<Connection> {
    let root = crate::flow::read_yaml(path, diags)?;
    let mut d = Decoder::new(path, diags);
    decode(&mut d, &root, None, path.display().to_string(), env)
}

/// One connection definition: `type`, then its fields; custom connections
/// have `configs:` and `secrets:` mappings.
fn decode(
    d: &mut Decoder<'_>,
    node: &Yaml,
    name: Option<String>,
    origin: String,
    env: &BTreeMap<String, String>,
) -> Option<Connection> {
    let fields = d.fields(node, "a connection", CONNECTION_KEYS)?;
    let name = match name {
        Some(n) => n,
        None => d.require(fields, "name", "a connection file").and_then(|n| d.string(n, "`name`"))?.value,
    };
    let ty = d.require(fields, "type", &format!("connection `{name}`")).and_then(|t| d.string(t, "`type`"))?;
    let Some(kind) = Kind::parse(&ty.value) else {
        d.error(Code::InvalidValue, ty.pos, format!("unknown connection type `{}`", ty.value)).hint =
            Some("use `azure_open_ai`, `open_ai`, `serverless`, `custom`, `serp` or `azure_content_safety`".into());
        return None;
    };
    let mut conn = empty(name, kind, origin);
    for key in CONNECTION_KEYS.iter().copied().filter(|k| !STRUCTURE_KEYS.contains(k)) {
        if let Some(value) = fields.get(key) {
            resolve_into(d, &mut conn, key, value, is_secret(kind, key), env);
        }
    }
    for (section, secret) in [("configs", false), ("secrets", true)] {
        let Some(map) = fields.get(section) else { continue };
        for (k, v) in d.map(map, &format!("`{section}`")).unwrap_or_default() {
            resolve_into(d, &mut conn, &k.key_text(), v, secret, env);
        }
    }
    Some(conn)
}

fn resolve_into(
    d: &mut Decoder<'_>,
    conn: &mut Connection,
    key: &str,
    node: &Yaml,
    secret: bool,
    env: &BTreeMap<String, String>,
) {
    let Some(text) = crate::yaml::scalar_text(&node.value).filter(|_| node.value != YamlValue::Null) else {
        if node.value != YamlValue::Null {
            d.error(Code::WrongType, node.pos, format!("`{key}` of a connection must be a string"));
        }
        return;
    };
    match expand_env(&text, env) {
        Ok(value) => conn.set(key, value, secret),
        Err(var) => {
            conn.unresolved.insert(key.into(), format!("environment variable {var} is not set"));
        }
    }
}

/// `${env:VAR}` and `${env:VAR:-default}` anywhere in a value; an unset
/// variable without a default is an error naming it.
pub fn expand_env(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let spec = &after[..end];
        let (var, default) = match spec.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (spec, None),
        };
        match (env.get(var).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(var.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The path of a `PROMPTFLOW_CONNECTIONS` file, when set.
pub fn promptflow_connections_file() -> Option<PathBuf> {
    std::env::var_os("PROMPTFLOW_CONNECTIONS").filter(|v| !v.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn config(text: &str, env_pairs: &[(&str, &str)]) -> (Connections, Diagnostics) {
        let root = crate::yaml::parse(text).unwrap().unwrap();
        let mut set = Connections::with_env(env(env_pairs));
        let mut diags = Diagnostics::default();
        set.add_config(Path::new(".flow-ci.yaml"), &root, &mut diags);
        (set, diags)
    }

    #[test]
    fn env_references_and_defaults() {
        let e = env(&[("A", "x"), ("EMPTY", "")]);
        assert_eq!(expand_env("${env:A}", &e).unwrap(), "x");
        assert_eq!(expand_env("pre-${env:A}-post", &e).unwrap(), "pre-x-post");
        assert_eq!(expand_env("${env:B:-https://d}", &e).unwrap(), "https://d");
        assert_eq!(expand_env("${env:EMPTY:-d}", &e).unwrap(), "d");
        assert_eq!(expand_env("${env:B}", &e).unwrap_err(), "B");
        assert_eq!(expand_env("plain", &e).unwrap(), "plain");
    }

    #[test]
    fn inline_definitions_resolve_env_and_hide_secrets() {
        let (set, diags) = config(
            "aoai:\n  type: azure_open_ai\n  api_base: ${env:EP:-https://example.openai.azure.com}\n  api_key: ${env:KEY}\n  api_version: 2024-06-01\n",
            &[("KEY", "sk-123")],
        );
        assert!(!diags.has_errors(), "{diags:?}");
        let conn = set.get("aoai", "classify").unwrap();
        assert_eq!(conn.kind, Kind::AzureOpenAI);
        assert_eq!(conn.value("api_base"), Some("https://example.openai.azure.com"));
        assert_eq!(conn.value("api_version"), Some("2024-06-01"));
        assert_eq!(conn.api_key().unwrap().expose(), "sk-123");
        assert!(!format!("{conn:?}").contains("sk-123"));
        assert_eq!(conn.origin, ".flow-ci.yaml:1:1");
    }

    #[test]
    fn a_missing_key_says_why() {
        let (set, _) = config("c:\n  type: open_ai\n  api_key: ${env:NOPE}\n", &[]);
        let err = set.get("c", "n").unwrap().api_key().unwrap_err();
        assert_eq!(err, "environment variable NOPE is not set");
        let (set, _) = config("c:\n  type: open_ai\n  api_key: <user-input>\n", &[]);
        assert!(set.get("c", "n").unwrap().api_key().unwrap_err().contains("placeholder"));
    }

    #[test]
    fn unknown_types_and_keys_are_diagnosed() {
        let (_, diags) = config("c:\n  type: azure_openai_x\n", &[]);
        assert!(diags.has_errors());
        let (_, diags) = config("c:\n  type: open_ai\n  api_kye: x\n", &[]);
        let text = format!("{diags:?}");
        assert!(text.contains("api_key"), "{text}");
    }

    #[test]
    fn custom_connections_keep_configs_and_secrets() {
        let (set, _) = config("c:\n  type: custom\n  configs: {endpoint: e}\n  secrets: {token: t}\n", &[]);
        let conn = set.get("c", "n").unwrap();
        assert_eq!(
            conn.to_python(),
            serde_json::json!({"type": "CustomConnection", "values": {"configs": {"endpoint": "e"}, "secrets": {"token": "t"}, "name": "c"}})
        );
    }

    /// promptflow-tools' serpapi and azure_content_safety tools take these
    /// (promptflow/core/_connection.py: SerpConnection(api_key),
    /// AzureContentSafetyConnection(api_key, endpoint, api_version, api_type)).
    #[test]
    fn serp_and_content_safety_connections_are_promptflow_s_objects() {
        let (set, diags) = config(
            "s:\n  type: serp\n  api_key: sk\ncs:\n  type: AzureContentSafetyConnection\n  endpoint: https://cs.example\n  api_key: k\n  api_version: '2023-10-01'\n",
            &[],
        );
        assert!(!diags.has_errors(), "{diags:?}");
        assert_eq!(
            set.get("s", "n").unwrap().to_python(),
            serde_json::json!({"type": "SerpConnection", "values": {"api_key": "sk", "name": "s"}})
        );
        let cs = set.get("cs", "n").unwrap();
        assert!(!format!("{cs:?}").contains("\"k\""), "the key is a secret");
        assert_eq!(
            cs.to_python(),
            serde_json::json!({"type": "AzureContentSafetyConnection", "values": {"endpoint": "https://cs.example", "api_version": "2023-10-01", "api_key": "k", "name": "cs"}})
        );
    }

    #[test]
    fn standard_env_vars_are_the_fallback() {
        let set = Connections::with_env(env(&[("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com/")]));
        let conn = set.get("anything", "n").unwrap();
        assert_eq!(conn.kind, Kind::AzureOpenAI);
        assert!(conn.api_key().unwrap_err().contains("AZURE_OPENAI_API_KEY"));
        let set = Connections::with_env(env(&[("OPENAI_API_KEY", "k")]));
        assert_eq!(set.get("x", "n").unwrap().value("base_url"), Some(DEFAULT_OPENAI_BASE_URL));
        let err = Connections::with_env(env(&[])).get("x", "classify").unwrap_err();
        assert!(err.to_string().contains("node `classify`"), "{err}");
        assert!(err.to_string().contains("AZURE_OPENAI_ENDPOINT"), "{err}");
    }

    #[test]
    fn promptflow_connection_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("conn.yaml");
        std::fs::write(&file, "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/OpenAIConnection.schema.json\nname: my_openai\ntype: open_ai\napi_key: ${env:MY_KEY}\nbase_url: http://127.0.0.1:9/v1\n").unwrap();
        let mut set = Connections::with_env(env(&[("MY_KEY", "abc")]));
        let mut diags = Diagnostics::default();
        set.add_file(&file, &mut diags);
        assert!(!diags.has_errors(), "{diags:?}");
        let conn = set.get("my_openai", "n").unwrap();
        assert_eq!(conn.kind, Kind::OpenAI);
        assert_eq!(conn.api_key().unwrap().expose(), "abc");
    }
}
