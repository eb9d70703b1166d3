//! Binding connections to nodes before any line runs, so a connection that
//! does not exist (or a key that cannot be found when nothing is cached)
//! stops the run up front with the node, the connection and where flow-ci
//! looked.

use serde_json::Value as Json;

use super::prepare::{Prepared, Step, StepKind};
use crate::llm::{Bindings, Connections, NotFound};
use model::flow::reference::Assignment;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error(
        "llm node `{node}` has no `connection`; add one to flow.dag.yaml or set it in the run file's `connections:`"
    )]
    Unspecified { node: String },
    #[error("node `{node}` calls the model through connection `{connection}` ({origin}), but {why}")]
    NoKey { node: String, connection: String, origin: String, why: String },
    #[error("environment variable `{var}` refers to connection `{name}`, which is not defined; looked in {searched}")]
    EnvConnection { var: String, name: String, searched: String },
}

/// `${connection.key}` values of the flow's `environment_variables` replaced
/// by the connection's value, as promptflow resolves them before a run
/// (`_sdk/_orchestrator/utils.py`, `resolve_environment_variables`;
/// `core/_utils.py`, `update_dict_value_with_connections`). A connection
/// that does not exist stops the run when `in_flow` says the variable is one
/// of flow.dag.yaml's, as pf's ConnectionNotFoundError does (pf checks the
/// connections of the flow's own variables only, run-file values applied:
/// `contracts/flow.py`, `get_connection_names`); a variable only the run
/// file sets keeps its text, as pf's `resolve_connection_names` (raise_error
/// False) leaves it. A key the connection lacks leaves the text as written.
pub fn environment(
    env: Vec<(String, String)>,
    in_flow: impl Fn(&str) -> bool,
    connections: &Connections,
) -> Result<Vec<(String, String)>, BindError> {
    env.into_iter()
        .map(|(var, value)| {
            let Some((name, key)) = connection_reference(&value) else { return Ok((var, value)) };
            let conn = match connections.get(name, &var) {
                Ok(conn) => conn,
                Err(_) if !in_flow(&var) => return Ok((var, value)),
                Err(e) => {
                    return Err(BindError::EnvConnection {
                        var: var.clone(),
                        name: name.to_string(),
                        searched: e.searched,
                    });
                }
            };
            let resolved =
                conn.values.get(key).cloned().or_else(|| conn.secrets.get(key).map(|s| s.expose().to_string()));
            Ok((var.clone(), resolved.unwrap_or(value)))
        })
        .collect()
}

/// promptflow's `_match_reference`: `^\$\{([^.]+)\.([^.]+)}$` on the trimmed text.
fn connection_reference(value: &str) -> Option<(&str, &str)> {
    let inner = value.trim().strip_prefix("${")?.strip_suffix('}')?;
    let (name, key) = inner.split_once('.')?;
    (!name.is_empty() && !key.is_empty() && !key.contains('.')).then_some((name, key))
}

/// Resolves the connection of every llm node and of every connection-typed
/// python parameter (`python_params`, from preloading the tools) whose value
/// is a literal connection name.
pub fn bind(
    prepared: &Prepared,
    python_params: &[(String, String)],
    connections: &Connections,
) -> Result<Bindings, BindError> {
    let mut bindings = Bindings::default();
    for step in &prepared.steps {
        if let StepKind::Llm { connection, .. } = &step.kind {
            let name = connection.as_deref().ok_or_else(|| BindError::Unspecified { node: step.name.clone() })?;
            bindings.llm.insert(step.name.clone(), connections.get(name, &step.name)?);
        }
    }
    for (node, param) in python_params {
        let Some(step) = prepared.step_index(node).map(|i| &prepared.steps[i]) else { continue };
        let literal = step.inputs.iter().find(|(k, _)| k == param).map(|(_, a)| a);
        if let Some(Assignment::Literal(Json::String(name))) = literal {
            let conn = connections.get(name, node)?;
            bindings.python.entry(node.clone()).or_default().insert(param.clone(), conn);
        }
    }
    for step in &prepared.steps {
        for name in named_connections(step) {
            let conn = connections.get(&name, &step.name)?;
            bindings.named.entry(step.name.clone()).or_default().insert(name, conn);
        }
    }
    Ok(bindings)
}

/// promptflow-tools' Open Model LLM tool.
const OPEN_MODEL_LLM: &str = "promptflow.tools.open_model_llm.OpenModelLLM.call";

/// Connections a package tool looks up by name instead of receiving them as
/// an argument: Open Model LLM's `endpoint_name: localConnection/NAME` is
/// pf's local custom connection NAME (promptflow-tools
/// `open_model_llm.py`: `parse_endpoint_connection_type` splits on `/` and
/// lowercases the type; `CustomConnectionsContainer.
/// get_endpoint_from_local_custom_connection` reads it with
/// `PFClient().connections.get(NAME, with_secrets=True)`). flow-ci's
/// connection NAME is bound instead, and the worker hands it to the tool
/// when it asks for NAME. Other endpoint types (`connection/`,
/// `onlineEndpoint/`, `serverlessEndpoint/`) ask Azure and are left to the
/// tool.
pub fn named_connections(step: &Step) -> Vec<String> {
    let StepKind::Package { tool, .. } = &step.kind else { return vec![] };
    if tool != OPEN_MODEL_LLM {
        return vec![];
    }
    let endpoint = step.inputs.iter().find(|(k, _)| k == "endpoint_name").map(|(_, a)| a);
    let Some(Assignment::Literal(Json::String(endpoint))) = endpoint else { return vec![] };
    let mut parts = endpoint.split('/');
    match (parts.next(), parts.next()) {
        (Some(kind), Some(name)) if kind.eq_ignore_ascii_case("localConnection") => vec![name.to_string()],
        _ => vec![],
    }
}

/// Without a cache every llm node needs its key (or Entra ID) before starting.
pub fn require_keys(bindings: &Bindings) -> Result<(), BindError> {
    let mut nodes: Vec<_> = bindings.llm.iter().collect();
    nodes.sort_by(|a, b| a.0.cmp(b.0));
    for (node, conn) in nodes {
        if conn.uses_entra_id() {
            continue;
        }
        if let Err(why) = conn.api_key() {
            return Err(BindError::NoKey {
                node: node.clone(),
                connection: conn.name.clone(),
                origin: conn.origin.clone(),
                why,
            });
        }
    }
    Ok(())
}

/// A run file's `connections: {node: {connection, deployment_name, model}}`
/// applied to the plan: llm nodes get the connection and the deployment or
/// model as literal inputs; python nodes get the named inputs replaced.
pub fn apply_overrides(prepared: &mut Prepared, overrides: &model::flow::run_file::ConnectionOverrides) {
    for (node, settings) in overrides {
        let Some(i) = prepared.step_index(&node.value) else { continue };
        let step = &mut prepared.steps[i];
        for (key, value) in settings {
            match (&mut step.kind, key.value.as_str()) {
                (StepKind::Llm { connection, .. }, "connection") => *connection = Some(value.value.clone()),
                _ => {
                    let literal = Assignment::Literal(Json::String(value.value.clone()));
                    match step.inputs.iter_mut().find(|(k, _)| *k == key.value) {
                        Some((_, a)) => *a = literal,
                        None => step.inputs.push((key.value.clone(), literal)),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn connection_references_are_resolved_and_the_rest_kept() {
        let set = Connections::with_env(
            [
                ("AZURE_OPENAI_ENDPOINT".to_string(), "https://r.openai.azure.com/".to_string()),
                ("AZURE_OPENAI_API_KEY".to_string(), "k1".to_string()),
            ]
            .into(),
        );
        let env = vec![
            ("KEY".to_string(), " ${aoai.api_key} ".to_string()),
            ("MISSING_KEY".to_string(), "${aoai.nothing}".to_string()),
            ("PLAIN".to_string(), "${a.b.c}".to_string()),
        ];
        let resolved = environment(env, |_| true, &set).unwrap();
        assert_eq!(resolved[0].1, "k1");
        assert_eq!(resolved[1].1, "${aoai.nothing}");
        assert_eq!(resolved[2].1, "${a.b.c}");
    }

    #[test]
    fn a_missing_connection_names_the_variable() {
        let env = vec![("API_KEY".to_string(), "${nowhere.api_key}".to_string())];
        let err = environment(env, |_| true, &Connections::with_env(Default::default())).unwrap_err();
        assert!(err.to_string().starts_with("environment variable `API_KEY` refers to connection `nowhere`"), "{err}");
    }

    /// promptflow's own `examples/flows/standard/basic`: its run.yml sets
    /// `AZURE_OPENAI_API_KEY: ${open_ai_connection.api_key}`, which its
    /// flow.dag.yaml does not declare; pf runs it without the connection.
    #[test]
    fn a_run_file_variable_keeps_its_text_when_the_connection_is_missing() {
        let env = vec![("AZURE_OPENAI_API_KEY".to_string(), "${open_ai_connection.api_key}".to_string())];
        let kept = environment(env, |var| var == "DECLARED", &Connections::with_env(Default::default())).unwrap();
        assert_eq!(kept[0].1, "${open_ai_connection.api_key}");
    }
}

#[cfg(test)]
mod named_tests {
    use super::*;

    /// A custom_llm node with Open Model LLM: a package step given its
    /// template, naming its local connection as open_model_llm.py parses
    /// `endpoint_name` (the type case-insensitive, the name after `/`).
    fn prepared(endpoint: &str) -> Prepared {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chat.jinja2"), "user:\n{{q}}\n").unwrap();
        std::fs::write(
            dir.path().join("flow.dag.yaml"),
            format!(
                "inputs:\n  q:\n    type: string\noutputs:\n  a:\n    type: string\n    reference: ${{chat.output}}\nnodes:\n- name: chat\n  type: custom_llm\n  source:\n    type: package_with_prompt\n    tool: {OPEN_MODEL_LLM}\n    path: chat.jinja2\n  inputs:\n    endpoint_name: {endpoint}\n    api: chat\n    q: ${{inputs.q}}\n"
            ),
        )
        .unwrap();
        crate::prepare::prepare(dir.path(), None).unwrap()
    }

    #[test]
    fn open_model_llm_names_its_local_connection() {
        let plan = prepared("LocalConnection/llama");
        let step = &plan.steps[0];
        assert!(
            matches!(&step.kind, StepKind::Package { tool, template: Some(t) } if tool == OPEN_MODEL_LLM && t == "user:\n{{q}}\n"),
            "{:?}",
            step.kind
        );
        assert_eq!(named_connections(step), ["llama"]);
        for endpoint in ["onlineEndpoint/ep", "connection/llama", "llama"] {
            assert!(named_connections(&prepared(endpoint).steps[0]).is_empty(), "{endpoint}");
        }
    }
}
