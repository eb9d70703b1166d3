//! The JSON Schema of `.flow-ci.yaml` (schema/flow-ci.schema.json): it is
//! what `flow-ci schema` prints, and it accepts and rejects what
//! `flow-ci validate` does, on every config in the repository and on a
//! table of configs, each valid one or with one mistake of shape.
//!
//! The instance an editor checks is the YAML as JSON; here it is read with
//! flow-ci's YAML reader (YAML 1.2 core schema, as VS Code's YAML extension
//! reads it) and checked with the `jsonschema` crate, a validator apart from
//! schemars that wrote the schema.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value as Json;

const REGENERATE: &str = "cargo run -q -- schema > schema/flow-ci.schema.json";

/// The codes of the mistakes a schema can see: the file's shape. The others
/// (a flow folder that does not exist, a connection defined nowhere) look
/// outside the file.
const SHAPE_CODES: &[&str] =
    &["wrong-type", "unknown-key", "missing-key", "invalid-value", "invalid-gate", "duplicate-key"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn flow_ci(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("flow-ci").expect("binary builds");
    cmd.current_dir(dir).env_remove("GITHUB_ACTIONS").env_remove("TF_BUILD").env_remove("FLOW_CI_LOG");
    cmd
}

fn committed_schema() -> Json {
    let text =
        std::fs::read_to_string(repo_root().join("schema/flow-ci.schema.json")).expect("the schema is committed");
    serde_json::from_str(&text).expect("the committed schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&committed_schema()).expect("the schema is a valid draft-07 schema")
}

/// The file as the JSON an editor checks.
fn instance(text: &str) -> Json {
    model::yaml::parse(text).expect("the case is YAML").expect("the case is not empty").to_json()
}

/// The schema's errors, as `instance path: message`.
fn schema_errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    let json = instance(text);
    validator.iter_errors(&json).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

/// `flow-ci validate --format json` on the config alone: the diagnostics of
/// its shape, as `line:column code message`.
fn validate_shape_errors(config: &Path) -> Vec<String> {
    let output = flow_ci(config.parent().unwrap())
        .args(["validate", "--format", "json"])
        .arg(config.file_name().unwrap())
        .output()
        .expect("flow-ci runs");
    let doc: Json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("validate --format json printed JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
    });
    doc["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["severity"] == "error" && SHAPE_CODES.contains(&d["code"].as_str().unwrap_or_default()))
        .map(|d| format!("{}:{} {} {}", d["line"], d["column"], d["code"].as_str().unwrap(), d["message"]))
        .collect()
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let output = flow_ci(&repo_root()).arg("schema").output().expect("flow-ci runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let generated = String::from_utf8(output.stdout).expect("UTF-8");
    let committed = std::fs::read_to_string(repo_root().join("schema/flow-ci.schema.json")).unwrap_or_default();
    assert!(
        generated == committed,
        "schema/flow-ci.schema.json is not what `flow-ci schema` prints; regenerate it with\n  {REGENERATE}"
    );
    let schema = committed_schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["$id"], model::config::schema::SCHEMA_URL);
}

/// Every `.flow-ci.yaml` below fixtures/ and examples/: the schema accepts
/// it exactly when `validate` finds nothing wrong with its shape.
#[test]
fn every_config_in_the_repository_gets_the_same_verdict_from_the_schema_and_validate() {
    let validator = validator();
    let mut configs = vec![];
    let mut dirs = vec![repo_root().join("fixtures"), repo_root().join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() && entry.file_name() != ".flow-ci" {
                dirs.push(path);
            } else if entry.file_name() == ".flow-ci.yaml" {
                configs.push(path);
            }
        }
    }
    assert!(configs.len() >= 4, "found {configs:?}");
    let (mut accepted, mut rejected) = (0, 0);
    for config in &configs {
        let text = std::fs::read_to_string(config).unwrap();
        let by_schema = schema_errors(&validator, &text);
        let by_validate = validate_shape_errors(config);
        assert_eq!(
            by_schema.is_empty(),
            by_validate.is_empty(),
            "{}:\n schema: {by_schema:#?}\n validate: {by_validate:#?}",
            config.display()
        );
        if by_schema.is_empty() { accepted += 1 } else { rejected += 1 }
    }
    // fixtures/.flow-ci.yaml and the cases that are wrong elsewhere are
    // accepted; fixtures/invalid/config-unknown-key is not.
    assert!(accepted >= 3 && rejected >= 1, "accepted {accepted}, rejected {rejected}");
}

/// (name, file, whether it is valid). Valid files use every key; each
/// invalid one has one mistake of shape.
const CASES: &[(&str, &str, bool)] = &[
    ("empty mapping", "{}\n", true),
    (
        "the editor's comment and $schema",
        "# yaml-language-server: $schema=https://raw.githubusercontent.com/flow-ci/flow-ci/main/schema/flow-ci.schema.json\n$schema: https://raw.githubusercontent.com/flow-ci/flow-ci/main/schema/flow-ci.schema.json\nbackend: azureml\n",
        true,
    ),
    (
        "flows with every gate kind",
        "backend: local\nflows:\n  - path: flows/*\n    run: flows/a/run.yml\n    evaluations:\n      - run: flows/eval/run.yml\n    gates:\n      accuracy: { min: 0.8, max: 1, max_drop: 0.02, max_rise: '5%' }\n      f1: { max_drop: ' 2.5 % ', significance: 0.05, per_line: correct }\n      latency: { max_rise: 10 }\n      failed_lines: { max_ratio: 0.0 }\nbaseline: base-branch\n",
        true,
    ),
    ("baseline file", "baseline: 'file:baseline/metrics.json'\n", true),
    ("baseline none", "baseline: none\n", true),
    (
        "port and parity",
        "flows:\n  - path: flows/wc\n    run: flows/wc/run.yml\n    port: { workflow: flows/wc-maf/workflow.py, factory: build, start: Page_1 }\n    parity:\n      agreement: { output: category, min: 0.95, compare: exact }\n      metrics:\n        accuracy: { max_drop: 0.02 }\n        failed_lines: { max_ratio: 0.1 }\n",
        true,
    ),
    (
        "parity with metrics only, left empty",
        "flows:\n  - path: a\n    run: a/run.yml\n    port: { workflow: w.py }\n    parity:\n      metrics:\n",
        true,
    ),
    (
        "llm budgets and prices",
        "llm:\n  cache: false\n  concurrency: 32\n  rpm: 600\n  tpm: 100000.0\n  pricing:\n    gpt-4o-mini: { prompt: 0.00015, completion: 0.0006 }\n    big: { prompt: 5, completion: 0 }\n",
        true,
    ),
    (
        "azureml with push_flows",
        "azureml:\n  subscription_id: 00000000-0000-0000-0000-000000000000\n  resource_group: rg\n  workspace: 2024\n  push_flows: true\n",
        true,
    ),
    ("push_flows to a branch", "azureml: { push_flows: release }\n", true),
    (
        "deploy",
        "deploy:\n  flow: flows/support-router\n  model: router\n  environment: azureml:env:1\n  endpoint: support-router\n  deployment: green\n  instance_type: Standard_DS3_v2\n  instance_count: 1\n  traffic: 10\n",
        true,
    ),
    (
        "connections with environment references",
        "connections:\n  aoai:\n    type: azure_open_ai\n    api_base: ${env:AZURE_OPENAI_ENDPOINT:-https://x.openai.azure.com}\n    api_key: ${env:AZURE_OPENAI_API_KEY}\n    api_version: \"2024-02-01\"\n    auth_mode: meid_token\n    resource_id:\n  oai: { type: OpenAIConnection, api_key: k, organization: 7, base_url: https://api.openai.com/v1 }\n  slm: { type: Serverless, api_base: https://e.example }\n  mine:\n    type: custom\n    $schema: https://azuremlschemas.azureedge.net/promptflow/latest/CustomConnection.schema.json\n    name: ignored\n    module: promptflow.connections\n    configs: { base: b, n: 1 }\n    secrets:\n  from-file: { file: connections/aoai.yaml }\n",
        true,
    ),
    ("empty keys read as empty", "flows:\nconnections:\nllm:\n  pricing:\nazureml:\ndeploy:\n", true),
    ("empty gates and evaluations", "flows:\n  - path: a\n    evaluations:\n    gates:\n", true),
    // One mistake each.
    ("unknown top key", "flow:\n  - path: a\n", false),
    ("$schema not a string", "$schema: 3\n", false),
    ("typo in a flow entry", "flows:\n  - path: a\n    gate: { acc: { min: 1 } }\n", false),
    ("flows not a list", "flows: { path: a }\n", false),
    ("flow without path", "flows:\n  - run: a/run.yml\n", false),
    ("empty run", "flows:\n  - path: a\n    run:\n", false),
    ("path not a string", "flows:\n  - path: [a]\n", false),
    ("evaluation without run", "flows:\n  - path: a\n    evaluations: [{ path: e }]\n", false),
    ("typo in a gate", "flows:\n  - path: a\n    gates: { acc: { mni: 1 } }\n", false),
    ("gate without a limit", "flows:\n  - path: a\n    gates: { acc: {} }\n", false),
    ("empty gate", "flows:\n  - path: a\n    gates: { acc: }\n", false),
    (
        "significance without a regression limit",
        "flows:\n  - path: a\n    gates: { acc: { min: 0.5, significance: 0.05 } }\n",
        false,
    ),
    (
        "per_line without significance",
        "flows:\n  - path: a\n    gates: { acc: { max_drop: 0.1, per_line: x } }\n",
        false,
    ),
    ("significance above 1", "flows:\n  - path: a\n    gates: { acc: { max_drop: 0.1, significance: 5 } }\n", false),
    ("max_ratio above 1", "flows:\n  - path: a\n    gates: { failed_lines: { max_ratio: 2 } }\n", false),
    (
        "failed_lines takes max_ratio only",
        "flows:\n  - path: a\n    gates: { failed_lines: { max_ratio: 0.1, min: 0 } }\n",
        false,
    ),
    ("max_ratio on a metric", "flows:\n  - path: a\n    gates: { acc: { max_ratio: 0.1 } }\n", false),
    ("negative drop", "flows:\n  - path: a\n    gates: { acc: { max_drop: -0.1 } }\n", false),
    ("negative percentage", "flows:\n  - path: a\n    gates: { acc: { max_drop: '-5%' } }\n", false),
    ("a drop in words", "flows:\n  - path: a\n    gates: { acc: { max_drop: five } }\n", false),
    ("min as text", "flows:\n  - path: a\n    gates: { acc: { min: high } }\n", false),
    ("unknown backend", "backend: cloud\n", false),
    ("unknown baseline", "baseline: main-branch\n", false),
    ("baseline file without a path", "baseline: 'file:'\n", false),
    ("port without run", "flows:\n  - path: a\n    port: { workflow: w.py }\n", false),
    (
        "parity without port",
        "flows:\n  - path: a\n    run: r.yml\n    parity: { metrics: { acc: { max_drop: 0.1 } } }\n",
        false,
    ),
    (
        "parity without a limit",
        "flows:\n  - path: a\n    run: r.yml\n    port: { workflow: w.py }\n    parity: {}\n",
        false,
    ),
    ("port without workflow", "flows:\n  - path: a\n    run: r.yml\n    port: { factory: f }\n", false),
    ("workflow not a .py file", "flows:\n  - path: a\n    run: r.yml\n    port: { workflow: w.txt }\n", false),
    (
        "factory not an identifier",
        "flows:\n  - path: a\n    run: r.yml\n    port: { workflow: w.py, factory: 1x }\n",
        false,
    ),
    (
        "agreement as a percentage",
        "flows:\n  - path: a\n    run: r.yml\n    port: { workflow: w.py }\n    parity: { agreement: { output: c, min: 95 } }\n",
        false,
    ),
    (
        "unknown compare",
        "flows:\n  - path: a\n    run: r.yml\n    port: { workflow: w.py }\n    parity: { agreement: { output: c, min: 0.9, compare: fuzzy } }\n",
        false,
    ),
    (
        "agreement without output",
        "flows:\n  - path: a\n    run: r.yml\n    port: { workflow: w.py }\n    parity: { agreement: { min: 0.9 } }\n",
        false,
    ),
    ("typo in llm", "llm: { rpms: 60 }\n", false),
    ("rpm zero", "llm: { rpm: 0 }\n", false),
    ("tpm fractional", "llm: { tpm: 1.5 }\n", false),
    ("concurrency in words", "llm: { concurrency: lots }\n", false),
    ("cache as text", "llm: { cache: 'no' }\n", false),
    ("negative price", "llm: { pricing: { gpt: { prompt: -1, completion: 1 } } }\n", false),
    ("price without completion", "llm: { pricing: { gpt: { prompt: 1 } } }\n", false),
    ("typo in azureml", "azureml: { workspce: w }\n", false),
    ("push_flows as a list", "azureml: { push_flows: [main] }\n", false),
    ("push_flows empty", "azureml: { push_flows: ' ' }\n", false),
    ("workspace as a list", "azureml: { workspace: [w] }\n", false),
    ("typo in deploy", "deploy: { endpont: e }\n", false),
    ("traffic as a list", "deploy: { traffic: [10] }\n", false),
    ("connection without type", "connections:\n  aoai: { api_key: k }\n", false),
    ("unknown connection type", "connections:\n  aoai: { type: azure }\n", false),
    ("connection value as a list", "connections:\n  aoai: { type: azure_open_ai, api_key: [k] }\n", false),
    ("typo in a connection", "connections:\n  aoai: { type: azure_open_ai, api_kye: k }\n", false),
    ("connection not a mapping", "connections:\n  aoai: azure_open_ai\n", false),
];

#[test]
fn the_schema_and_validate_agree_on_each_case() {
    let validator = validator();
    let dir = tempfile::tempdir().unwrap();
    let mut disagreements = vec![];
    for (name, text, valid) in CASES {
        let case = dir.path().join(name.replace([' ', '$'], "-"));
        std::fs::create_dir_all(&case).unwrap();
        let config = case.join(".flow-ci.yaml");
        std::fs::write(&config, text).unwrap();
        let by_schema = schema_errors(&validator, text);
        let by_validate = validate_shape_errors(&config);
        if by_schema.is_empty() != *valid || by_validate.is_empty() != *valid {
            disagreements
                .push(format!("{name} (valid: {valid}):\n  schema: {by_schema:?}\n  validate: {by_validate:?}"));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// The issue's acceptance: a typo gets the same error from both, the key
/// named and placed in the same flow entry.
#[test]
fn a_typo_is_the_same_error_from_the_schema_and_validate() {
    let text = "flows:\n  - path: a\n    gatse: { acc: { min: 1 } }\n";
    let json = instance(text);
    let validator = validator();
    let errors: Vec<_> = validator.iter_errors(&json).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].instance_path().as_str(), "/flows/0");
    match errors[0].kind() {
        jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
            assert_eq!(unexpected, &["gatse".to_string()]);
        }
        other => panic!("expected an unknown property, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(".flow-ci.yaml");
    std::fs::write(&config, text).unwrap();
    assert_eq!(validate_shape_errors(&config), ["3:5 unknown-key \"unknown key `gatse` in a `flows` entry\""]);
}

/// The `.flow-ci.yaml` examples in README.md (the YAML blocks whose keys
/// are all config keys) are valid for both.
#[test]
fn the_readme_config_examples_are_valid_for_both() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let schema = committed_schema();
    let top: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    let validator = validator();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (i, block) in readme.split("```yaml\n").skip(1).filter_map(|b| b.split("```").next()).enumerate() {
        let Ok(Some(root)) = model::yaml::parse(block) else { continue };
        let Some(entries) = root.as_map() else { continue };
        if entries.is_empty() || !entries.iter().all(|(k, _)| top.contains(&k.key_text().as_str())) {
            continue;
        }
        let case = dir.path().join(format!("block-{i}"));
        std::fs::create_dir_all(&case).unwrap();
        let config = case.join(".flow-ci.yaml");
        std::fs::write(&config, block).unwrap();
        assert_eq!(schema_errors(&validator, block), Vec::<String>::new(), "README block:\n{block}");
        assert_eq!(validate_shape_errors(&config), Vec::<String>::new(), "README block:\n{block}");
        checked += 1;
    }
    assert!(checked >= 4, "README's config examples: found {checked}");
}
