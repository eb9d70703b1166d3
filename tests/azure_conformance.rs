//! Conformance with Microsoft's own Azure clients: every request flow-ci
//! sends to the loopback Azure (tests/support/fake_aml.rs records them)
//! during `run create`, a cancelled run, `deploy` (with the image, with an
//! environment built from the flow's requirements, and `--run` of a stored
//! or a workspace-only run) and `flow push` (create, `--update`) is built again, for the
//! same inputs, by promptflow-azure's and azure-ai-ml's request builders
//! (tests/conformance/azure/builders.py, which cites each one), and the two
//! must agree: method, path, query (api-version included), and every body
//! field flow-ci sends present, with the same value, in what the client
//! makes of it after reading it into its own model class. A field the client
//! does not know, a value of the wrong type, or a field its model requires
//! and flow-ci omits is a failure.
//!
//! The clients come from PyPI, every package pinned (scripts/venvs/pfazure.txt,
//! scripts/venvs/azure-sdk.txt; scripts/test installs them), in two venvs:
//! promptflow-azure 1.18.5 imports azure-ai-ml's `_restclient.v2022_10_01`,
//! which azure-ai-ml removed in 1.33, so it runs beside azure-ai-ml 1.32.0
//! (target/pfazure-venv), and the ARM builders come from azure-ai-ml 1.35.2
//! (target/azure-sdk-venv). Without them the test is skipped, except under
//! CI=true, where it must run.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Std, Stdio};

use serde_json::{Map, Value as Json, json};
use support::cloud::{Cloud, assert_no_violations};
use support::fake_aml::{self, Script};
use support::http::Received;
use support::repo::run;

/// A venv's python: `$var`, else `target/<venv>/bin/python`.
fn python(var: &str, venv: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join(venv).join("bin/python"));
    if candidate.exists() {
        return Some(candidate);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "Microsoft's Azure clients are the conformance oracle but {} does not exist: run scripts/test (it installs them into target/{venv}) or set {var}",
        candidate.display()
    );
    eprintln!("skipped: {} does not exist (scripts/test installs it)", candidate.display());
    None
}

/// Which client operation a recorded request is, or `None` for the calls
/// no builder makes (Entra's token endpoint, the GitHub OIDC token, the
/// long-running operations ARM names in `Azure-AsyncOperation`, which
/// azure-mgmt-core's ARMPolling follows as given, and the storage calls:
/// the file share `flow push` writes (`/files/`, azure-storage-file-share's
/// REST, which promptflow-azure drives through that SDK) and the snapshot
/// files read by the SAS URLs the content service hands out).
fn operation(req: &Received) -> Option<&'static str> {
    let ws = fake_aml::workspace_path();
    let path = req.path.as_str();
    if path.contains("/oauth2/") || path == "/oidc" || path.contains("/operations/") {
        return None;
    }
    if path.starts_with("/files/") || path.starts_with("/snapshot-files/") {
        return None;
    }
    if path == format!("/content/v2.0{ws}/snapshots/sas") {
        return Some("content.snapshots_sas");
    }
    if path.starts_with("/score/") {
        return Some("score");
    }
    let method = req.method.as_str();
    if let Some(rest) = path.strip_prefix(&format!("/flow/api{ws}")) {
        return Some(match (method, rest) {
            ("POST", "/BulkRuns/submit") => "bulk_runs.submit",
            ("POST", r) if r.ends_with("/cancel") => "bulk_runs.cancel",
            ("GET", r) if r.ends_with("/childRuns") => "bulk_runs.child_runs",
            ("GET", r) if r.ends_with("/logContent") => "bulk_runs.log_content",
            ("POST", "/Flows") => "flows.create",
            ("GET", "/Flows") => "flows.list",
            ("GET", r) if r.starts_with("/Flows/") => "flows.get",
            ("PUT", r) if r.starts_with("/Flows/") => "flows.update",
            _ => panic!("no builder is known for {method} {path}: add it to tests/conformance/azure/builders.py"),
        });
    }
    if path == format!("/history/v1.0{ws}/rundata") {
        return Some("history.rundata");
    }
    if path.starts_with(&format!("/metric/v2.0{ws}/runs/")) && path.ends_with("/lastvalues") {
        return Some("metric.lastvalues");
    }
    let rest = path.strip_prefix(&ws).unwrap_or_else(|| panic!("{method} {path} is no Azure ML call"));
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    Some(match (method, segments.as_slice()) {
        ("GET", []) => "workspaces.get",
        ("GET", ["datastores"]) => "datastores.list",
        ("GET", ["datastores", _]) => "datastores.get",
        ("POST", ["datastores", _, "listSecrets"]) => "datastores.list_secrets",
        ("GET", ["models", _]) => "model_containers.get",
        ("GET", ["models", _, "versions"]) => "model_versions.list",
        ("GET", ["models", _, "versions", _]) => "model_versions.get",
        ("PUT", ["models", _, "versions", _]) => "model_versions.create_or_update",
        ("GET", ["environments", _, "versions", _]) => "environment_versions.get",
        ("PUT", ["environments", _, "versions", _]) => "environment_versions.create_or_update",
        ("GET", ["onlineEndpoints", _]) => "online_endpoints.get",
        ("PUT", ["onlineEndpoints", _]) => "online_endpoints.create_or_update",
        ("POST", ["onlineEndpoints", _, "listKeys"]) => "online_endpoints.list_keys",
        ("GET", ["onlineEndpoints", _, "deployments", _]) => "online_deployments.get",
        ("PUT", ["onlineEndpoints", _, "deployments", _]) => "online_deployments.create_or_update",
        _ => panic!("no builder is known for {method} {path}: add it to tests/conformance/azure/builders.py"),
    })
}

/// promptflow-azure's operations (run services); the rest are azure-ai-ml's.
fn is_promptflow(op: &str) -> bool {
    op.starts_with("bulk_runs.")
        || op.starts_with("metric.")
        || op.starts_with("history.")
        || op.starts_with("flows.")
        || op.starts_with("content.")
}

fn query_map(query: &str) -> Map<String, Json> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (fake_aml::decode(k), json!(fake_aml::decode(v)))
        })
        .collect()
}

fn recorded(op: &str, req: &Received) -> Json {
    let headers: Map<String, Json> = req
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("azureml-model-deployment") || k.eq_ignore_ascii_case("content-type"))
        .map(|(k, v)| (k.to_ascii_lowercase(), json!(v)))
        .collect();
    json!({
        "op": op, "method": req.method, "path": fake_aml::decode(&req.path), "query": query_map(&req.query),
        "body": if req.text.is_empty() { Json::Null } else { req.body.clone() },
        "headers": headers,
    })
}

/// The builders' requests for `requests` (one python process).
fn build(python: &PathBuf, requests: &[Json]) -> Vec<Json> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/azure/builders.py");
    let mut child = Std::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(Json::Array(requests.to_vec()).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "builders.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Where `sent` has a field `built` lacks or holds otherwise.
fn differences(sent: &Json, built: &Json, at: &str, out: &mut Vec<String>) {
    match (sent, built) {
        (Json::Object(s), Json::Object(b)) => {
            for (k, v) in s {
                match b.get(k) {
                    Some(w) => differences(v, w, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k} = {v} is not in the client's request")),
                }
            }
        }
        _ if sent == built => {}
        _ => out.push(format!("{at}: flow-ci sends {sent}, the client {built}")),
    }
}

fn compare(sent: &Json, result: &Json) -> Vec<String> {
    let mut problems: Vec<String> =
        result["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    let built = &result["expected"];
    if built.is_null() {
        problems.push("the client built no request".into());
        return problems;
    }
    for key in ["method", "path", "query"] {
        if sent[key] != built[key] {
            problems.push(format!("{key}: flow-ci sends {}, the client {}", sent[key], built[key]));
        }
    }
    match (&sent["body"], &built["body"]) {
        (Json::Null, Json::Null) => {}
        (s, b) => differences(s, b, "body", &mut problems),
    }
    // promptflow's literal payloads (rundata, lastvalues): nothing missing either.
    if built["exact"] == json!(true) {
        let mut missing = Vec::new();
        differences(&built["body"], &sent["body"], "body", &mut missing);
        problems.extend(missing.into_iter().map(|m| format!("promptflow sends it, flow-ci does not: {m}")));
    }
    // Scoring: the headers azure-ai-ml's invoke sets (but the key).
    if let Some(headers) = built.get("headers").and_then(Json::as_object) {
        for (name, value) in headers {
            if sent["headers"].get(name) != Some(value) {
                problems.push(format!(
                    "header {name}: {value} is what the client sends, flow-ci {}",
                    sent["headers"][name]
                ));
            }
        }
    }
    problems
}

/// The requests flow-ci makes for a batch run and its evaluation, a
/// cancelled run, a deploy that creates the endpoint, and one that moves
/// traffic on an existing endpoint.
fn scenarios() -> Option<Vec<Received>> {
    let mut received = Vec::new();

    let cloud = Cloud::start(Script::default())?;
    let (code, out, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "triage"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, out, err) =
        cloud.run_create(&["--file", "flows/eval-accuracy/triage.run.yml", "--run", "triage", "--name", "eval"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    received.extend(cloud.fake.received());

    let cloud = Cloud::start(Script { statuses: vec!["Preparing", "Running"], ..Script::default() })?;
    let (code, _, err) =
        cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "slow", "--timeout", "1s"]);
    assert_eq!(code, Some(3), "{err}");
    assert_no_violations(&cloud.fake);
    received.extend(cloud.fake.received());

    let cloud = Cloud::start(Script::default())?;
    let (code, out, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    received.extend(cloud.fake.received());

    let cloud = Cloud::start(Script { existing_traffic: Some(json!({"blue": 100})), ..Script::default() })?;
    let (code, out, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    received.extend(cloud.fake.received());

    // `flow push` (the studio's flows API), then `--update` of that flow.
    let cloud = Cloud::start(Script::default())?;
    let push = || {
        let mut cmd = cloud.flow_ci();
        cmd.args(["flow", "push", "--flow", "flows/support-router"]);
        cmd
    };
    let (code, out, err) = run(push().args(["--set", "display_name=Router", "type=chat", "tags.team=support"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let name = serde_json::from_str::<Json>(&out).unwrap()["name"].as_str().unwrap().to_string();
    let (code, out, err) = run(push().args(["--update", &name, "--set", "description=Routes tickets"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    received.extend(cloud.fake.received());

    // `deploy --run` of a run in the store and of one only the workspace
    // knows, of a flow with requirements: its environment is built from
    // them (a `build:` context).
    let cloud = Cloud::start(Script::default())?;
    std::fs::write(cloud.pr.dir.path().join("flows/support-router/requirements.txt"), "langdetect==1.0.9\n").unwrap();
    let (code, _, err) = cloud.run_create(&["--file", "flows/support-router/run.yml", "--name", "evaluated"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(cloud.flow_ci().args(["deploy", "--run", "evaluated"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let id = cloud.fake.submitted().last().unwrap()["runId"].as_str().unwrap().to_string();
    let empty = tempfile::tempdir().unwrap();
    let runs_dir = empty.path().to_str().unwrap();
    let (code, out, err) = run(cloud.flow_ci().args(["deploy", "--run", &id, "--runs-dir", runs_dir]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    received.extend(cloud.fake.received());
    Some(received)
}

#[test]
fn every_azure_request_is_the_one_microsofts_clients_build() {
    let (Some(pfazure), Some(azure_ml)) =
        (python("FLOW_CI_PFAZURE_PYTHON", "pfazure-venv"), python("FLOW_CI_AZURE_ML_PYTHON", "azure-sdk-venv"))
    else {
        return;
    };
    let Some(received) = scenarios() else { return };

    // One of each distinct request (polls repeat themselves).
    let mut seen = BTreeSet::new();
    let (mut promptflow, mut arm) = (Vec::new(), Vec::new());
    for req in &received {
        let Some(op) = operation(req) else { continue };
        let sent = recorded(op, req);
        if seen.insert(sent.to_string()) {
            if is_promptflow(op) { &mut promptflow } else { &mut arm }.push(sent);
        }
    }
    let mut results = build(&pfazure, &promptflow);
    results.extend(build(&azure_ml, &arm));
    let sent: Vec<&Json> = promptflow.iter().chain(&arm).collect();

    let mut failures = BTreeMap::<String, Vec<String>>::new();
    for (sent, result) in sent.iter().zip(&results) {
        let problems = compare(sent, result);
        if !problems.is_empty() {
            let key = format!("{} {} {}", sent["op"].as_str().unwrap(), sent["method"], sent["path"]);
            failures.entry(key).or_default().extend(problems);
        }
    }
    assert!(failures.is_empty(), "flow-ci and Microsoft's clients disagree:\n{failures:#?}");

    // Every call the issue names was compared.
    let ops: BTreeSet<&str> = sent.iter().map(|s| s["op"].as_str().unwrap()).collect();
    for op in [
        "bulk_runs.submit",
        "bulk_runs.cancel",
        "bulk_runs.child_runs",
        "bulk_runs.log_content",
        "metric.lastvalues",
        "history.rundata",
        "workspaces.get",
        "datastores.list",
        "datastores.list_secrets",
        "model_containers.get",
        "model_versions.list",
        "model_versions.create_or_update",
        "environment_versions.create_or_update",
        "online_endpoints.get",
        "online_endpoints.create_or_update",
        "online_endpoints.list_keys",
        "online_deployments.create_or_update",
        "score",
        "flows.create",
        "flows.get",
        "flows.update",
        "content.snapshots_sas",
    ] {
        assert!(ops.contains(op), "{op} was not compared: {ops:?}");
    }
    // The traffic change is a PUT of the endpoint that exists (two PUT
    // bodies of support-router: one creating it, one with the traffic).
    let endpoint_puts = sent.iter().filter(|s| s["op"] == "online_endpoints.create_or_update").count();
    assert!(endpoint_puts >= 3, "create, traffic on a new endpoint, traffic on an existing one: {endpoint_puts}");
    // The environment built from the flow's requirements (a `build:`
    // context, azure-ai-ml's BuildContext) was compared beside the image one.
    let environments: Vec<&Json> =
        sent.iter().filter(|s| s["op"] == "environment_versions.create_or_update").copied().collect();
    assert!(
        environments.iter().any(|e| e["body"]["properties"]["build"]["contextUri"].is_string()),
        "{environments:#?}"
    );
    assert!(environments.iter().any(|e| e["body"]["properties"]["image"].is_string()), "{environments:#?}");
    // `deploy --run` registered the run's flow (tagged with the run).
    assert!(
        sent.iter().any(|s| s["op"] == "model_versions.create_or_update"
            && s["body"]["properties"]["tags"]["flow-ci.run"].is_string()),
        "deploy --run's model was compared"
    );
}
