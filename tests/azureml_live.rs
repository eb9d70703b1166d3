//! Opt-in: a batch run and its evaluation in a real Azure ML workspace.
//!
//! Ignored by default, so a machine without a workspace never counts it as
//! a pass: `cargo test --test azureml_live -- --ignored` with the workspace
//! named (`AZUREML_SUBSCRIPTION_ID`, `AZUREML_RESOURCE_GROUP`,
//! `AZUREML_WORKSPACE_NAME`) and a credential at hand (`az login`, or a
//! service principal in `AZURE_TENANT_ID` / `AZURE_CLIENT_ID` /
//! `AZURE_CLIENT_SECRET`); without them it fails and says what is missing.
//! It submits web-classification over its 60 rows on serverless compute and
//! its accuracy evaluation; serverless sessions can take several minutes to
//! start.

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value as Json;

const VARS: [&str; 3] = ["AZUREML_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"];

#[test]
#[ignore = "needs a real Azure ML workspace: run with --ignored and AZUREML_SUBSCRIPTION_ID, AZUREML_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME"]
fn a_batch_run_and_its_evaluation_in_a_real_workspace() {
    let missing: Vec<&str> = VARS.iter().copied().filter(|v| std::env::var(v).map_or(true, |s| s.is_empty())).collect();
    assert!(missing.is_empty(), "the live test needs {} (and a signed-in credential)", missing.join(", "));
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let runs = tempfile::tempdir().unwrap();
    let flow_ci = |args: &[&str]| {
        let out = Command::cargo_bin("flow-ci")
            .unwrap()
            .current_dir(&fixtures)
            .env("FLOW_CI_RUNS_DIR", runs.path())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{err}");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let batch = ["run", "create", "--backend", "azureml", "--file", "flows/web-classification/run.yml"];
    let (code, _) = flow_ci(&[&batch[..], &["--name", "live-batch", "--timeout", "60m"]].concat());
    assert_eq!(code, Some(0));
    let record: Json =
        serde_json::from_str(&std::fs::read_to_string(runs.path().join("live-batch/run.json")).unwrap()).unwrap();
    assert_eq!(record["status"], "Completed");
    assert_eq!(record["lines"]["total"], 60);
    let eval =
        ["run", "create", "--backend", "azureml", "--file", "flows/eval-accuracy/run.yml", "--run", "live-batch"];
    let (code, _) = flow_ci(&[&eval[..], &["--name", "live-eval", "--timeout", "60m"]].concat());
    assert_eq!(code, Some(0));
    let (_, metrics) = flow_ci(&["run", "show-metrics", "--name", "live-eval"]);
    let metrics: Json = serde_json::from_str(&metrics).unwrap();
    assert!(metrics["accuracy"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{metrics}");
}
