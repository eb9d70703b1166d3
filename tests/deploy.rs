//! `flow-ci deploy` end to end: the real binary against a loopback Azure
//! (models, environments, online endpoints and deployments with their
//! long-running operations, keys, scoring) and Azurite for the datastore.
//! The example config deploys support-router as `green` with 10 % traffic.

mod support;

use serde_json::{Value as Json, json};
use support::cloud::{Cloud, assert_no_violations};
use support::fake_aml::{self, Script};
use support::repo::run;

const ENDPOINT: &str = "/onlineEndpoints/support-router";

fn calls_to(cloud: &Cloud, method: &str, rest: &str) -> usize {
    let path = format!("{method} {}{rest}", fake_aml::workspace_path());
    cloud.fake.calls().iter().filter(|c| **c == path).count()
}

fn model_path(cloud: &Cloud) -> String {
    let calls = cloud.fake.calls();
    let model = calls.iter().find(|c| c.contains("/models/support-router/versions/")).expect("a model call");
    model.split(&fake_aml::workspace_path()).nth(1).unwrap().to_string()
}

#[test]
fn a_flow_is_registered_deployed_smoke_tested_and_given_its_traffic() {
    let script = Script { existing_traffic: Some(json!({"blue": 100})), ..Script::default() };
    let Some(cloud) = Cloud::start(script) else { return };
    let outputs = cloud.pr.dir.path().join("github-output");
    let (code, out, err) = run(cloud.flow_ci().env("GITHUB_OUTPUT", &outputs).arg("deploy"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);

    // The model: the flow folder in the datastore, promptflow's properties,
    // the next integer version (its content hash in a property).
    let model = model_path(&cloud);
    let registered = cloud.fake.resource(&model).unwrap();
    assert_eq!(registered["properties"]["properties"]["azureml.promptflow.source_flow_id"], "support-router");
    let uri = registered["properties"]["modelUri"].as_str().unwrap();
    let blob = uri.split("/paths/").nth(1).unwrap();
    assert!(cloud.container().metadata(&format!("{blob}/flow.dag.yaml")).unwrap().is_some(), "{uri} uploaded");

    // The deployment body, and both operations followed to the end.
    let deployment = cloud.fake.resource(&format!("{ENDPOINT}/deployments/green")).unwrap();
    assert_eq!(deployment["properties"]["instanceType"], "Standard_DS3_v2");
    assert_eq!(deployment["sku"]["capacity"], 1);
    assert!(deployment["properties"]["model"].as_str().unwrap().ends_with(&model), "{deployment:#}");
    let polls = cloud.fake.calls().iter().filter(|c| c.contains("/locations/eastus/operations/")).count();
    assert!(polls >= 4, "the deployment's and the traffic's Azure-AsyncOperation were polled: {polls}");
    assert_eq!(calls_to(&cloud, "PUT", ENDPOINT), 1, "the endpoint existed: one PUT, for its traffic");

    // Scored with the key, on the new deployment; then 10 % moved to it.
    let score = cloud.fake.received().into_iter().find(|r| r.path == "/score/support-router").unwrap();
    assert_eq!(score.header("azureml-model-deployment"), Some("green"));
    assert_eq!(score.body["message"], "I was charged twice for my invoice");
    let endpoint = cloud.fake.resource(ENDPOINT).unwrap();
    assert_eq!(endpoint["properties"]["traffic"], json!({"blue": 90, "green": 10}));

    // Outputs for later steps, and the report.
    let written = std::fs::read_to_string(&outputs).unwrap();
    let version = model.rsplit('/').next().unwrap();
    assert!(written.contains(&format!("model-version={version}\n")), "{written}");
    assert!(written.contains("deployment-name=green\n") && written.contains("endpoint-url=http://"), "{written}");
    let report: Json = serde_json::from_str(&cloud.pr.read(".flow-ci/report/deploy.json")).unwrap();
    assert_eq!(report["smoke_test"], "passed");
    assert!(out.contains("| traffic | {\"blue\":100} → {\"blue\":90,\"green\":10} |"), "{out}");

    // The same flow again: the model version exists and is not registered twice.
    let (code, _, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("already registered"), "{err}");
    assert_eq!(calls_to(&cloud, "PUT", &model), 1);
    assert_no_violations(&cloud.fake);
}

#[test]
fn a_new_endpoint_is_created_and_the_deployment_gets_all_traffic() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, out, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    assert_eq!(calls_to(&cloud, "PUT", ENDPOINT), 2, "one to create the endpoint, one for its traffic");
    assert_eq!(cloud.fake.resource(ENDPOINT).unwrap()["properties"]["traffic"], json!({"green": 100}));
}

#[test]
fn a_failed_smoke_test_leaves_traffic_where_it_was() {
    let script = Script { existing_traffic: Some(json!({"blue": 100})), scoring_wrong: true, ..Script::default() };
    let Some(cloud) = Cloud::start(script) else { return };
    let (code, out, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("the smoke test failed") && err.contains("`reply` is missing"), "{err}");
    assert!(err.contains("`intent` is a number (locally a string)"), "{err}");
    assert_eq!(calls_to(&cloud, "PUT", ENDPOINT), 0, "no traffic change was sent");
    assert_eq!(cloud.fake.resource(ENDPOINT).unwrap()["properties"]["traffic"], json!({"blue": 100}));
    assert_no_violations(&cloud.fake);
}

#[test]
fn a_deployment_that_fails_to_provision_exits_3_with_azures_reason() {
    let script = Script { existing_traffic: Some(json!({"blue": 100})), deployment_fails: true, ..Script::default() };
    let Some(cloud) = Cloud::start(script) else { return };
    let (code, _, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("deployment green ended Failed (ResourceNotReady)") && err.contains("User container has crashed"),
        "{err}"
    );
    assert_eq!(calls_to(&cloud, "PUT", ENDPOINT), 0);
    assert!(
        cloud.fake.received().iter().all(|r| !r.path.starts_with("/score/")),
        "no smoke test of a failed deployment"
    );
}

#[test]
fn a_failed_check_stops_the_deploy() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    std::fs::create_dir_all(cloud.pr.dir.path().join(".flow-ci/report")).unwrap();
    cloud.pr.write(".flow-ci/report/report.json", r#"{"passed": false, "flows": []}"#);
    let (code, _, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("says a gate failed") && err.contains("--ignore-gates"), "{err}");
    assert!(cloud.fake.calls().is_empty(), "{:#?}", cloud.fake.calls());
}

#[test]
fn the_dry_run_prints_every_call_and_sends_none() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, out, err) = run(cloud.flow_ci().args(["deploy", "--dry-run"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(cloud.fake.calls().is_empty(), "{:#?}", cloud.fake.calls());
    let ws = fake_aml::workspace_path();
    for line in [
        format!(
            "PUT {}{ws}/onlineEndpoints/support-router/deployments/green?api-version=2023-04-01-preview",
            cloud.fake.url
        ),
        format!("PUT {}{ws}/onlineEndpoints/support-router?api-version=2022-02-01-preview", cloud.fake.url),
    ] {
        assert!(out.contains(&line), "{line} in\n{out}");
    }
    assert!(out.contains("\"PROMPTFLOW_RUN_MODE\": \"serving\""), "{out}");
    assert!(!out.contains("PATCH") && out.contains("# shift traffic"), "traffic moves by a PUT: {out}");
    assert!(err.contains("smoke test inputs: {\"message\":\"I was charged twice"), "{err}");
}

#[test]
fn a_live_deployment_that_fails_its_smoke_test_loses_its_traffic() {
    let script =
        Script { existing_traffic: Some(json!({"blue": 50, "green": 50})), scoring_wrong: true, ..Script::default() };
    let Some(cloud) = Cloud::start(script) else { return };
    let (code, _, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("updated in place"), "the in-place update is called out: {err}");
    // Zero shares are left out, as azure-ai-ml leaves them out.
    assert_eq!(cloud.fake.resource(ENDPOINT).unwrap()["properties"]["traffic"], json!({"blue": 100}));
    assert_no_violations(&cloud.fake);
}

#[test]
fn a_new_endpoint_lets_the_flow_read_the_workspace_connections() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, out, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let endpoint = cloud.fake.resource(ENDPOINT).unwrap();
    assert_eq!(endpoint["properties"]["properties"]["enforce_access_to_default_secret_stores"], "enabled");
    assert_eq!(endpoint["identity"]["type"], "SystemAssigned");
    assert_no_violations(&cloud.fake);
}

#[test]
fn traffic_moves_by_a_put_of_the_whole_endpoint_and_the_report_reads_it_back() {
    let script = Script { existing_traffic: Some(json!({"blue": 100})), ..Script::default() };
    let Some(cloud) = Cloud::start(script) else { return };
    let (code, out, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    assert_eq!(calls_to(&cloud, "PATCH", ENDPOINT), 0, "ARM's PATCH of an endpoint ignores properties");
    let endpoint = cloud.fake.resource(ENDPOINT).unwrap();
    assert_eq!(endpoint["properties"]["traffic"], json!({"blue": 90, "green": 10}));
    // The PUT replaced the endpoint with what it was, but for its traffic.
    assert_eq!(endpoint["properties"]["authMode"], "Key");
    assert_eq!(endpoint["tags"], json!({"team": "support"}));
    assert_eq!(endpoint["properties"]["properties"]["enforce_access_to_default_secret_stores"], "enabled");
    // What the report says is what the endpoint has.
    let report: Json = serde_json::from_str(&cloud.pr.read(".flow-ci/report/deploy.json")).unwrap();
    assert_eq!(report["traffic"], endpoint["properties"]["traffic"]);
    let last_get =
        cloud.fake.calls().iter().rposition(|c| *c == format!("GET {}{ENDPOINT}", fake_aml::workspace_path()));
    let put = cloud.fake.calls().iter().rposition(|c| *c == format!("PUT {}{ENDPOINT}", fake_aml::workspace_path()));
    assert!(last_get > put, "the traffic is read back after the PUT");
}

#[test]
fn model_versions_are_integers_and_an_unchanged_flow_reuses_its_version() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, out, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    let first = cloud.fake.resource("/models/support-router/versions/1").expect("version 1 registered");
    let hash = first["properties"]["properties"]["flow-ci.content-hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64, "the flow's content hash is kept with the model: {first:#}");

    // Unchanged: version 1 is found by its hash and reused.
    let (code, _, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("version 1: already registered"), "{err}");
    assert!(cloud.fake.resource("/models/support-router/versions/2").is_none());

    // Changed: the next integer version. (A comment in flow.dag.yaml would
    // not do: the uploaded DAG is rewritten without comments, as pfazure does.)
    let code_file = "flows/support-router/detect_intent.py";
    let source = cloud.pr.read(code_file);
    cloud.pr.write(code_file, &format!("{source}\n# changed\n"));
    let (code, _, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(0), "{err}");
    let second = cloud.fake.resource("/models/support-router/versions/2").expect("version 2 registered");
    assert_ne!(second["properties"]["properties"]["flow-ci.content-hash"], json!(hash));
    let deployment = cloud.fake.resource(&format!("{ENDPOINT}/deployments/green")).unwrap();
    assert!(deployment["properties"]["model"].as_str().unwrap().ends_with("/models/support-router/versions/2"));
    let report: Json = serde_json::from_str(&cloud.pr.read(".flow-ci/report/deploy.json")).unwrap();
    assert_eq!(report["model_version"], "2");
    assert_no_violations(&cloud.fake);
}

/// The model's datastore folder (`LocalUpload/{hash}/{flow}`).
fn model_folder(cloud: &Cloud) -> String {
    let registered = cloud.fake.resource(&model_path(cloud)).unwrap();
    let uri = registered["properties"]["modelUri"].as_str().unwrap().to_string();
    uri.split("/paths/").nth(1).unwrap().trim_end_matches('/').to_string()
}

#[test]
fn deploy_run_registers_the_flow_a_cloud_run_ran_without_uploading_it_again() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, _, err) = cloud.run_create(&["--file", "flows/support-router/run.yml", "--name", "evaluated"]);
    assert_eq!(code, Some(0), "{err}");
    let submitted = cloud.fake.submitted()[0].clone();
    let ran = submitted["flowDefinitionBlobPath"].as_str().unwrap().trim_end_matches("/flow.dag.yaml").to_string();
    // Edited after the run: the deploy must not pick this up.
    cloud.pr.edit("flows/support-router/billing.py", "def ", "# edited after the run\ndef ");

    let (code, out, err) = run(cloud.flow_ci().args(["deploy", "--run", "evaluated"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    assert_eq!(model_folder(&cloud), ran, "the model is the run's flow folder");
    let model = cloud.fake.resource(&model_path(&cloud)).unwrap();
    assert_eq!(model["properties"]["tags"]["flow-ci.run"], submitted["runId"]);
    let uploaded: Vec<String> = cloud.container().list("LocalUpload/").unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(
        uploaded
            .iter()
            .filter(|n| n.ends_with("/flow.dag.yaml"))
            .all(|n| n.starts_with(&ran) || !n.contains("support-router")),
        "the edited flow was not uploaded: {uploaded:#?}"
    );
    assert!(err.contains("not uploaded again"), "{err}");
}

#[test]
fn deploy_run_of_a_local_run_refuses_a_flow_changed_since() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, _, err) =
        run(cloud.flow_ci().args(["run", "create", "--file", "flows/support-router/run.yml", "--name", "local"]));
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(cloud.flow_ci().args(["deploy", "--run", "local"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    let model = cloud.fake.resource(&model_path(&cloud)).unwrap();
    assert_eq!(model["properties"]["tags"]["flow-ci.run"], "local");

    cloud.pr.edit("flows/support-router/billing.py", "def ", "# edited after the run\ndef ");
    let before = cloud.fake.calls().len();
    let (code, _, err) = run(cloud.flow_ci().args(["deploy", "--run", "local"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("changed since run local") && err.contains("deploy what was evaluated"), "{err}");
    assert_eq!(cloud.fake.calls().len(), before, "refused before signing in");

    // A run of another flow is not this deploy's flow.
    let (code, _, err) =
        run(cloud.flow_ci().args(["run", "create", "--file", "flows/flaky-parser/run.yml", "--name", "other"]));
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(cloud.flow_ci().args(["deploy", "--run", "other"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("but `deploy:` deploys"), "{err}");
}

#[test]
fn a_flow_with_requirements_is_served_from_an_image_built_with_them() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    std::fs::write(cloud.pr.dir.path().join("flows/support-router/requirements.txt"), "langdetect==1.0.9\n").unwrap();
    let (code, out, err) = run(cloud.flow_ci().arg("deploy"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    let deployment = cloud.fake.resource(&format!("{ENDPOINT}/deployments/green")).unwrap();
    let env_id = deployment["properties"]["environmentId"].as_str().unwrap();
    let environment = cloud.fake.resource(env_id.strip_prefix(&fake_aml::workspace_path()).unwrap()).unwrap();
    assert!(environment["properties"].get("image").is_none(), "{environment:#}");
    let context = environment["properties"]["build"]["contextUri"].as_str().unwrap();
    assert_eq!(environment["properties"]["build"]["dockerfilePath"], "Dockerfile");
    let folder = context.split(&format!("/{}/", fake_aml::CONTAINER)).nth(1).unwrap();
    let dockerfile = cloud.container().get_text(&format!("{folder}Dockerfile")).unwrap().unwrap();
    assert!(dockerfile.contains("RUN pip install -r requirements.txt"), "{dockerfile}");
    assert_eq!(
        cloud.container().get_text(&format!("{folder}requirements.txt")).unwrap().as_deref(),
        Some("langdetect==1.0.9\n")
    );

    // Named in deploy.environment: that environment, registered by the user, as is.
    cloud.pr.edit(".flow-ci.yaml", "  traffic: 10", "  traffic: 10\n  environment: azureml:team-runtime:3");
    let (code, out, _) = run(cloud.flow_ci().args(["deploy", "--dry-run"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("/environments/team-runtime/versions/3\""), "{out}");
    assert!(!out.contains("/environments/flow-ci-promptflow-runtime"), "nothing registered: {out}");
}

#[test]
fn deploy_run_of_a_workspace_run_deploys_its_snapshot() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, _, err) = cloud.run_create(&["--file", "flows/support-router/run.yml", "--name", "elsewhere"]);
    assert_eq!(code, Some(0), "{err}");
    let submitted = cloud.fake.submitted()[0].clone();
    let id = submitted["runId"].as_str().unwrap();
    let ran = submitted["flowDefinitionBlobPath"].as_str().unwrap().trim_end_matches("/flow.dag.yaml").to_string();
    cloud.pr.edit("flows/support-router/billing.py", "def ", "# edited after the run\ndef ");

    // Not in this run store (pfazure submitted it, say): the workspace's snapshot.
    let empty = tempfile::tempdir().unwrap();
    let runs_dir = empty.path().to_str().unwrap();
    let (code, out, err) = run(cloud.flow_ci().args(["deploy", "--run", id, "--runs-dir", runs_dir]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    assert_eq!(model_folder(&cloud), ran, "the snapshot is the run's content, so the run's folder");
    assert!(err.contains("already in the datastore"), "{err}");
    assert!(cloud.fake.calls().iter().any(|c| c.ends_with("/content/v2.0") || c.contains("/snapshots/sas")));

    let (code, _, err) = run(cloud.flow_ci().args(["deploy", "--run", "no-such-run", "--runs-dir", runs_dir]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no such run in the run store or the workspace"), "{err}");
}
