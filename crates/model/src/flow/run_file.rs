//! Run files (`pf run create --file run.yml`): batch runs and evaluation runs.
//!
//! Paths in a run file are relative to the run file's folder, as in promptflow.

use std::path::{Path, PathBuf};

use super::reference::MappingSource;
use crate::decode::Decoder;
use crate::diag::{Code, Diagnostics};
use crate::yaml::{Node as Yaml, Pos, Spanned};

const RUN_KEYS: &[&str] = &[
    "$schema",
    "name",
    "display_name",
    "description",
    "tags",
    "properties",
    "flow",
    "data",
    "run",
    "column_mapping",
    "variant",
    "connections",
    "environment_variables",
    "resources",
    "identity",
    "runtime",
    "init",
];
const RESOURCES_KEYS: &[&str] = &["instance_type", "compute"];
/// promptflow's `ManagedIdentitySchema` (`type: managed`, `client_id`) and
/// `UserIdentitySchema` (`type: user_identity`), unknown keys refused.
const IDENTITY_KEYS: &[&str] = &["type", "client_id"];
/// What an llm node's connection override may set (promptflow rejects others).
pub const LLM_CONNECTION_KEYS: &[&str] = &["connection", "deployment_name", "model"];

#[derive(Clone, Debug)]
pub struct RunFile {
    pub file: PathBuf,
    pub name: Option<Spanned<String>>,
    pub display_name: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub tags: Vec<(Spanned<String>, Spanned<String>)>,
    pub properties: Vec<(Spanned<String>, Spanned<String>)>,
    pub flow: Option<Spanned<String>>,
    pub data: Option<Spanned<String>>,
    pub run: Option<Spanned<String>>,
    pub column_mapping: Vec<(Spanned<String>, Spanned<MappingSource>)>,
    pub variant: Option<Spanned<String>>,
    /// node → (key → value), e.g. `classify: {connection: aoai, deployment_name: gpt-4o}`.
    pub connections: ConnectionOverrides,
    pub environment_variables: EnvironmentVariables,
    pub resources: Resources,
    /// `runtime:`: the Azure ML runtime to run on (`automatic` by default).
    pub runtime: Option<Spanned<String>>,
    /// `identity:`: which identity a cloud run's session runs as.
    pub identity: Option<Spanned<RunIdentity>>,
    pub pos: Pos,
}

/// A cloud run's `identity:` (promptflow-devkit `IdentityKeys`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunIdentity {
    /// `type: user_identity`: the submitter's own identity, the default.
    User,
    /// `type: managed`: a user-assigned managed identity of the workspace,
    /// the one with `client_id`, else the workspace's primary one.
    Managed { client_id: Option<String> },
}

#[derive(Clone, Debug, Default)]
pub enum EnvironmentVariables {
    #[default]
    None,
    Map(Vec<(Spanned<String>, Spanned<String>)>),
    /// A `.env` file path.
    File(Spanned<String>),
}

#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub instance_type: Option<Spanned<String>>,
    pub compute: Option<Spanned<String>>,
}

impl RunFile {
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// `flow:` resolved against the run file's folder.
    pub fn flow_dir(&self) -> Option<PathBuf> {
        self.flow.as_ref().map(|f| self.dir().join(&f.value))
    }

    /// `data:` resolved against the run file's folder, unless it is remote
    /// (`azureml:` asset, URL), which only the cloud can read.
    pub fn local_data(&self) -> Option<PathBuf> {
        let data = self.data.as_ref()?;
        (!is_remote(&data.value)).then(|| self.dir().join(&data.value))
    }

    /// Whether this run consumes another run (an evaluation run).
    pub fn is_evaluation(&self) -> bool {
        self.run.is_some()
    }
}

/// Remote data references promptflow passes through to the service.
pub fn is_remote(path: &str) -> bool {
    path.starts_with("azureml:") || path.contains("://")
}

/// Reads a run file. `None` when it cannot be read or parsed at all.
pub fn load(file: &Path, diags: &mut Diagnostics) -> Option<RunFile> {
    let root = super::read_yaml(file, diags)?;
    decode(file, &root, diags)
}

pub fn decode(file: &Path, root: &Yaml, diags: &mut Diagnostics) -> Option<RunFile> {
    let mut d = Decoder::new(file, diags);
    let fields = d.fields(root, "the run file", RUN_KEYS)?;
    let text = |d: &mut Decoder<'_>, key: &str| fields.get(key).and_then(|v| d.text(v, &format!("`{key}`")));
    let mut run = RunFile {
        file: file.to_path_buf(),
        name: text(&mut d, "name"),
        display_name: text(&mut d, "display_name"),
        description: text(&mut d, "description"),
        tags: fields.get("tags").map(|t| d.string_map(t, "`tags`")).unwrap_or_default(),
        properties: fields.get("properties").map(|t| d.string_map(t, "`properties`")).unwrap_or_default(),
        flow: text(&mut d, "flow"),
        data: text(&mut d, "data"),
        run: text(&mut d, "run"),
        column_mapping: vec![],
        variant: text(&mut d, "variant"),
        connections: vec![],
        environment_variables: EnvironmentVariables::None,
        resources: Resources::default(),
        runtime: text(&mut d, "runtime"),
        identity: None,
        pos: root.pos,
    };
    for name in [&run.name, &run.run].into_iter().flatten() {
        if let Err(e) = super::run_name::check(&name.value) {
            d.error(Code::InvalidRunName, name.pos, e.to_string()).hint =
                Some("use letters, digits, `.`, `_` and `-`, e.g. `web_classification_batch`".into());
        }
    }
    if run.flow.is_none() && !fields.has("flow") {
        d.error(Code::MissingKey, fields.pos, "the run file has no `flow`").hint =
            Some("add `flow: <path to the flow folder>` (relative to this file)".into());
    }
    if let Some(mapping) = fields.get("column_mapping") {
        run.column_mapping = column_mapping(&mut d, mapping);
    }
    if let Some(conns) = fields.get("connections") {
        run.connections = connections(&mut d, conns);
    }
    if let Some(env) = fields.get("environment_variables") {
        run.environment_variables = match env.as_str() {
            Some(path) => EnvironmentVariables::File(Spanned::new(path.to_string(), env.pos)),
            None => EnvironmentVariables::Map(d.string_map(env, "`environment_variables`")),
        };
    }
    if let Some(res) = fields.get("resources").and_then(|r| d.fields(r, "`resources`", RESOURCES_KEYS)) {
        run.resources.instance_type = res.get("instance_type").and_then(|v| d.text(v, "`instance_type`"));
        run.resources.compute = res.get("compute").and_then(|v| d.text(v, "`compute`"));
    }
    if let Some(node) = fields.get("identity") {
        run.identity = identity(&mut d, node);
    }
    Some(run)
}

/// `identity: {type: managed, client_id: ...}` or `{type: user_identity}`
/// (the type is case-insensitive, as promptflow's `StringTransformedEnum`).
fn identity(d: &mut Decoder<'_>, node: &Yaml) -> Option<Spanned<RunIdentity>> {
    let fields = d.fields(node, "`identity`", IDENTITY_KEYS)?;
    let client_id = fields.get("client_id").and_then(|v| d.text(v, "`identity.client_id`"));
    let Some(ty) = fields.get("type").and_then(|v| d.text(v, "`identity.type`")) else {
        if !fields.has("type") {
            d.error(Code::MissingKey, fields.pos, "`identity` has no `type`").hint =
                Some("use `type: managed` (with an optional `client_id`) or `type: user_identity`".into());
        }
        return None;
    };
    let identity = match ty.value.to_lowercase().as_str() {
        "managed" => RunIdentity::Managed { client_id: client_id.map(|c| c.value) },
        "user_identity" => {
            if let Some(c) = client_id {
                d.error(Code::UnknownKey, c.pos, "`client_id` names a managed identity; `user_identity` has none")
                    .hint = Some("use `type: managed` to run as that identity, or drop `client_id`".into());
            }
            RunIdentity::User
        }
        other => {
            d.error(Code::InvalidValue, ty.pos, format!("unknown identity type `{other}`")).hint =
                Some("use `managed` or `user_identity`".into());
            return None;
        }
    };
    Some(Spanned::new(identity, fields.pos))
}

fn column_mapping(d: &mut Decoder<'_>, node: &Yaml) -> Vec<(Spanned<String>, Spanned<MappingSource>)> {
    let Some(entries) = d.map(node, "`column_mapping`") else {
        return vec![];
    };
    d.check_keys(entries, "`column_mapping`", None);
    let mapping: Vec<_> = entries
        .iter()
        .map(|(k, v)| (Spanned::new(k.key_text(), k.pos), Spanned::new(MappingSource::parse(&v.to_json()), v.pos)))
        .collect();
    if !mapping.is_empty() && mapping.iter().all(|(_, v)| !v.is_reference()) {
        d.error(Code::MappingSource, node.pos, "column mapping must contain at least one mapping binding").hint =
            Some("map an input from the data, e.g. `question: ${data.question}`".into());
    }
    mapping
}

/// node → its `key: value` overrides.
pub type ConnectionOverrides = Vec<(Spanned<String>, Vec<(Spanned<String>, Spanned<String>)>)>;

fn connections(d: &mut Decoder<'_>, node: &Yaml) -> ConnectionOverrides {
    let Some(entries) = d.map(node, "`connections`") else {
        return vec![];
    };
    d.check_keys(entries, "`connections`", None);
    entries
        .iter()
        .map(|(k, v)| {
            let name = Spanned::new(k.key_text(), k.pos);
            let settings = d.string_map(v, &format!("the connections of node `{}`", name.value));
            (name, settings)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_evaluation_run_file() {
        let text = "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Run.schema.json\nflow: ../eval\ndata: data.jsonl\nrun: base_run\ncolumn_mapping:\n  groundtruth: ${data.category}\n  prediction: ${run.outputs.category}\nconnections:\n  classify:\n    connection: aoai\n    deployment_name: gpt-4o\nresources:\n  instance_type: Standard_D2\ntags: {team: search, version: 2}\n";
        let root = crate::yaml::parse(text).unwrap().unwrap();
        let mut diags = Diagnostics::default();
        let run = decode(Path::new("runs/eval.yml"), &root, &mut diags).unwrap();
        assert!(diags.is_empty(), "{:?}", diags.into_sorted());
        assert!(run.is_evaluation());
        assert_eq!(run.flow_dir(), Some(PathBuf::from("runs/../eval")));
        assert_eq!(run.column_mapping[1].1.value, MappingSource::RunOutputs("category".into()));
        assert_eq!(run.connections[0].1[1].1.value, "gpt-4o");
        assert_eq!(run.tags[1].1.value, "2");
        assert_eq!(run.resources.instance_type.unwrap().value, "Standard_D2");
        assert_eq!(run.identity, None);
    }

    #[test]
    fn literal_only_mapping_is_rejected_like_promptflow() {
        let root = crate::yaml::parse("flow: .\ndata: d.jsonl\ncolumn_mapping: {a: 1}\n").unwrap().unwrap();
        let mut diags = Diagnostics::default();
        decode(Path::new("run.yml"), &root, &mut diags);
        assert_eq!(diags.into_sorted()[0].code, Code::MappingSource);
    }

    #[test]
    fn run_names_that_are_paths_are_refused_at_their_position() {
        let root = crate::yaml::parse("flow: .\nname: ../..\nrun: a/b\n").unwrap().unwrap();
        let mut diags = Diagnostics::default();
        decode(Path::new("run.yml"), &root, &mut diags);
        let found: Vec<_> = diags.into_sorted().into_iter().map(|d| (d.code, d.pos.line)).collect();
        assert_eq!(found, vec![(Code::InvalidRunName, 2), (Code::InvalidRunName, 3)]);
    }

    #[test]
    fn identity_is_read_as_promptflow_schemas_read_it() {
        let read = |text: &str| {
            let root = crate::yaml::parse(text).unwrap().unwrap();
            let mut diags = Diagnostics::default();
            let run = decode(Path::new("run.yml"), &root, &mut diags).unwrap();
            (
                run.identity.map(|i| i.value),
                diags.into_sorted().into_iter().map(|d| (d.code, d.pos.line)).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            read("flow: .\nidentity:\n  type: managed\n  client_id: 1234\n"),
            (Some(RunIdentity::Managed { client_id: Some("1234".into()) }), vec![])
        );
        assert_eq!(
            read("flow: .\nidentity: {type: Managed}\n"),
            (Some(RunIdentity::Managed { client_id: None }), vec![])
        );
        assert_eq!(read("flow: .\nidentity: {type: user_identity}\n"), (Some(RunIdentity::User), vec![]));
        assert_eq!(read("flow: .\nidentity:\n  type: system\n"), (None, vec![(Code::InvalidValue, 3)]));
        assert_eq!(read("flow: .\nidentity:\n  client_id: x\n"), (None, vec![(Code::MissingKey, 3)]));
        assert_eq!(
            read("flow: .\nidentity:\n  type: managed\n  resource_id: x\n"),
            (Some(RunIdentity::Managed { client_id: None }), vec![(Code::UnknownKey, 4)])
        );
    }

    #[test]
    fn remote_data_is_not_local() {
        assert!(is_remote("azureml:my-data:1"));
        assert!(is_remote("https://x/y.jsonl"));
        assert!(!is_remote("data/x.jsonl"));
    }
}
