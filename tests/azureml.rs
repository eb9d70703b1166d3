//! `--backend azureml` end to end: the real binary against a loopback Azure
//! (tests/support/fake_aml.rs: Entra, ARM, the Azure ML run services) and a
//! real blob service (Azurite) for the datastore.

mod support;

use std::time::Duration;

use serde_json::{Value as Json, json};
use support::cloud::{Cloud, assert_no_violations};
use support::fake_aml::{self, Script};
use support::repo::run;

#[test]
fn a_batch_run_and_its_evaluation_run_in_the_workspace() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, out, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "triage"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    for status in ["Preparing", "Running", "Completed"] {
        assert!(err.contains(&format!("triage: {status}")), "progress shows {status}:\n{err}");
    }

    // The sequence pfazure follows.
    let calls = cloud.fake.calls();
    let ws = fake_aml::workspace_path();
    let first = |call: &str| calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("{call} in {calls:#?}"));
    let order = [
        format!("POST /{}/oauth2/v2.0/token", fake_aml::TENANT),
        format!("GET {ws}"),
        format!("GET {ws}/datastores"),
        format!("POST {ws}/datastores/{}/listSecrets", fake_aml::DATASTORE),
        format!("POST /history/v1.0{ws}/rundata"),
        format!("POST /flow/api{ws}/BulkRuns/submit"),
    ];
    let positions: Vec<usize> = order.iter().map(|c| first(c)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{order:#?} in order, got {calls:#?}");

    // The body, field by field.
    let submitted = cloud.fake.submitted();
    let body = &submitted[0];
    let id = body["runId"].as_str().unwrap().to_string();
    // `--name` is the run's name in the workspace, as with pfazure.
    assert_eq!(id, "triage");
    let content = body["tags"]["flow-ci.content"].as_str().unwrap();
    assert!(content.starts_with("support-triage_"), "{content}");
    assert_eq!(body["flowDefinitionDataStoreName"], fake_aml::DATASTORE);
    let blob_path = body["flowDefinitionBlobPath"].as_str().unwrap();
    assert!(
        blob_path.starts_with("LocalUpload/") && blob_path.ends_with("/support-triage/flow.dag.yaml"),
        "{blob_path}"
    );
    let data_uri = body["batchDataInput"]["dataUri"].as_str().unwrap();
    assert!(data_uri.starts_with("azureml://datastores/workspaceblobstore/paths/LocalUpload/"), "{data_uri}");
    assert!(data_uri.ends_with("/data.jsonl"), "{data_uri}");
    assert_eq!(body["inputsMapping"], json!({"ticket": "${data.ticket}"}));
    assert_eq!(body["connections"], json!({"triage": {"connection": "aoai", "deployment_name": "gpt-4o-mini"}}));
    assert_eq!(body["runDisplayName"], "support triage");
    assert_eq!(body["runtimeName"], "automatic");
    assert_eq!(body["tags"]["flow-ci.flow"], "flows/support-triage");
    assert_eq!(body["tags"]["flow-ci.commit"], cloud.pr.rev("HEAD"));
    assert_eq!(body["tags"]["flow-ci.branch"], "pr");
    // What the body names is really in the datastore (Azurite).
    let container = cloud.container();
    assert!(container.metadata(blob_path).unwrap().is_some(), "{blob_path} uploaded");
    let data_blob = data_uri.split("/paths/").nth(1).unwrap();
    assert!(container.metadata(data_blob).unwrap().is_some(), "{data_blob} uploaded");

    // Results came back into the run store: 30 lines over two pages (and
    // the empty one that ends the listing), every seventh failed;
    // promptflow's own metrics are hidden.
    let pages: Vec<String> =
        cloud.fake.received().iter().filter(|r| r.path.ends_with("/childRuns")).map(|r| r.query.clone()).collect();
    assert_eq!(pages, ["startIndex=0&endIndex=24", "startIndex=25&endIndex=49", "startIndex=30&endIndex=54"]);
    let record: Json = serde_json::from_str(&cloud.pr.read(".flow-ci/runs/triage/run.json")).unwrap();
    assert_eq!(record["backend"], "azureml");
    assert_eq!(record["properties"]["azureml.run_id"], id.as_str());
    assert_eq!(record["lines"], json!({"total": 30, "completed": 26, "failed": 4}));
    assert_eq!(cloud.pr.read(".flow-ci/runs/triage/output.jsonl").lines().count(), 26);
    assert!(cloud.pr.read(".flow-ci/runs/triage/logs.txt").contains("30 lines completed"));

    // The evaluation names the batch run by its cloud id.
    let (code, out, err) =
        cloud.run_create(&["--file", "flows/eval-accuracy/triage.run.yml", "--run", "triage", "--name", "eval"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    let eval = &cloud.fake.submitted()[1];
    assert_eq!(eval["variantRunId"], id.as_str());
    assert_eq!(
        eval["inputsMapping"],
        json!({"groundtruth": "${data.category}", "prediction": "${run.outputs.category}"})
    );
    let metrics = run(cloud.flow_ci().args(["run", "show-metrics", "--name", "eval"]));
    assert_eq!(serde_json::from_str::<Json>(&metrics.1).unwrap(), json!({"accuracy": 0.9}), "{metrics:?}");

    // A retried job finds its run instead of submitting it again, and
    // writes no blob: the snapshot is there already (ETags unchanged).
    let flow_prefix = blob_path.trim_end_matches("/flow.dag.yaml");
    let blobs = container.list(flow_prefix).unwrap();
    let (code, _, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "triage", "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("reusing {id}")), "{err}");
    assert_eq!(cloud.fake.submitted().len(), 2, "no second submit");
    assert_eq!(container.list(flow_prefix).unwrap(), blobs, "no blob was rewritten");
}

#[test]
fn throttling_is_retried_after_the_time_the_service_asks() {
    let Some(cloud) = Cloud::start(Script { throttle_first_submit: true, ..Script::default() }) else { return };
    let (code, out, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "t"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let submits: Vec<_> = cloud.fake.received().into_iter().filter(|r| r.path.ends_with("/BulkRuns/submit")).collect();
    assert_eq!(submits.len(), 2, "one 429, then the retry");
    assert!(submits[1].at - submits[0].at >= Duration::from_millis(950), "Retry-After: 1 was honoured");
    assert_no_violations(&cloud.fake);
}

#[test]
fn a_failed_run_exits_3_with_the_service_message() {
    let script = Script { statuses: vec!["Preparing", "Running", "Failed"], ..Script::default() };
    let Some(cloud) = Cloud::start(script) else { return };
    let (code, _, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "f"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("the python node `fetch` raised ValueError"), "{err}");
    let record: Json = serde_json::from_str(&cloud.pr.read(".flow-ci/runs/f/run.json")).unwrap();
    assert_eq!(record["status"], "Failed");
}

#[test]
fn an_auth_failure_exits_3_and_says_what_to_fix() {
    let Some(cloud) = Cloud::start(Script { refuse_token: true, ..Script::default() }) else { return };
    let (code, _, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("cannot get an Azure token") && err.contains("AADSTS7000215"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!err.contains(fake_aml::CLIENT_SECRET), "the secret is never printed");
    assert!(!cloud.fake.calls().iter().any(|c| c.contains("/workspaces/")), "nothing after the token failed");
}

#[test]
fn a_client_secret_is_never_sent_to_an_http_authority() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let mut cmd = cloud.flow_ci();
    // Plain http off loopback: azure-identity refuses such an authority too.
    cmd.env("AZURE_AUTHORITY_HOST", "http://login.example.com");
    let (code, _, err) =
        run(cmd.args(["run", "create", "--backend", "azureml", "--file", "flows/support-triage/run.yml"]));
    assert_eq!(code, Some(2), "a setting to fix is invalid input: {err}");
    assert!(
        err.contains("AZURE_AUTHORITY_HOST `http://login.example.com` does not use https")
            && err.contains("https://login.microsoftonline.com"),
        "{err}"
    );
    assert!(!err.contains(fake_aml::CLIENT_SECRET), "{err}");
    assert!(cloud.fake.calls().is_empty(), "nothing was sent: {:?}", cloud.fake.calls());
}

#[test]
fn github_oidc_signs_in_without_a_secret() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let mut cmd = cloud.flow_ci();
    cmd.env_remove("AZURE_CLIENT_SECRET")
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{}/oidc?api-version=2.0", cloud.fake.url))
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-token");
    let (code, out, err) =
        run(cmd.args(["run", "create", "--backend", "azureml", "--file", "flows/support-triage/run.yml"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let received = cloud.fake.received();
    let oidc = received.iter().find(|r| r.path == "/oidc").expect("the runner's token service was asked");
    assert_eq!(oidc.param("audience"), Some("api%3A%2F%2FAzureADTokenExchange"));
    assert_eq!(oidc.header("authorization"), Some("Bearer runner-token"));
    let token = received.iter().find(|r| r.path.ends_with("/oauth2/v2.0/token")).unwrap();
    assert!(token.text.contains(&format!("client_assertion={}", fake_aml::GITHUB_ID_TOKEN)), "{}", token.text);
    assert!(!token.text.contains("client_secret"), "{}", token.text);
    assert_no_violations(&cloud.fake);
}

#[test]
fn an_interrupt_or_a_termination_cancels_the_submitted_run() {
    for signal in ["INT", "TERM"] {
        interrupt_cancels(signal);
    }
}

fn interrupt_cancels(signal: &str) {
    let script = Script { statuses: vec!["Preparing", "Running"], ..Script::default() };
    let Some(cloud) = Cloud::start(script) else { return };
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("flow-ci"));
    let prepared = cloud.flow_ci();
    for (k, v) in prepared.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let child = cmd
        .current_dir(cloud.pr.dir.path())
        .args(["run", "create", "--backend", "azureml", "--file", "flows/support-triage/run.yml", "--name", "c"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the run is being polled, then interrupt.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !cloud.fake.calls().iter().any(|c| c.ends_with("/BulkRuns/submit")) {
        assert!(std::time::Instant::now() < until, "never submitted");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    send(signal, child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{signal}: {}", String::from_utf8_lossy(&out.stderr));
    let id = cloud.fake.submitted()[0]["runId"].as_str().unwrap().to_string();
    assert!(
        cloud.fake.calls().contains(&format!("POST /flow/api{}/BulkRuns/{id}/cancel", fake_aml::workspace_path())),
        "{:#?}",
        cloud.fake.calls()
    );
    let record: Json = serde_json::from_str(&cloud.pr.read(".flow-ci/runs/c/run.json")).unwrap();
    assert_eq!(record["status"], "Canceled");
}

fn send(signal: &str, pid: u32) {
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn check_runs_every_flow_in_the_workspace_and_gates_the_results() {
    let Some(cloud) = Cloud::start(Script { lines: 12, ..Script::default() }) else { return };
    let (code, out, err) = run(cloud.flow_ci().args(["check", "--all", "--backend", "azureml", "--publish", "none"]));
    assert_no_violations(&cloud.fake);
    let report: Json = serde_json::from_str(&cloud.pr.read(".flow-ci/report/report.json")).unwrap();
    let flows = report["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 4, "{out}\n{err}");
    // Batch runs: 12 lines, every seventh fails (1 of 12); evaluations: accuracy 0.9.
    let triage = flows.iter().find(|f| f["path"] == "flows/support-triage").unwrap();
    assert_eq!(triage["metrics"]["accuracy"], 0.9, "{triage:#}");
    assert_eq!(triage["lines"], json!([1, 12]));
    // Each flow links its cloud runs' studio pages, batch run first; the comment links the batch run.
    let studio = triage["studio_runs"].as_array().unwrap();
    assert_eq!(studio.len(), 2, "{triage:#}");
    assert!(studio[0]["url"].as_str().unwrap().contains("/prompts/flow/bulkrun/run/"), "{triage:#}");
    let md = cloud.pr.read(".flow-ci/report/report.md");
    assert!(md.contains(&format!("| [flows/support-triage]({}) |", studio[0]["url"].as_str().unwrap())), "{md}");
    let flaky = flows.iter().find(|f| f["path"] == "flows/flaky-parser").unwrap();
    assert!(flaky["errors"].as_array().unwrap().is_empty(), "{flaky:#}");
    // failed_lines max_ratio 0.0 fails where a line failed: exit 1, not 3.
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("failed_lines"), "{out}");
    // Evaluations were bound to their batch runs' cloud ids.
    let submitted = cloud.fake.submitted();
    let ids: Vec<&str> = submitted.iter().map(|b| b["runId"].as_str().unwrap()).collect();
    for eval in submitted.iter().filter(|b| b.get("variantRunId").is_some()) {
        assert!(ids.contains(&eval["variantRunId"].as_str().unwrap()), "{eval:#}");
    }
    assert_eq!(submitted.len(), 4 + 3, "4 batch runs and 3 evaluations");
}

#[test]
fn a_timeout_cancels_the_run_and_run_cancel_and_stream_reach_it_later() {
    let script = Script { statuses: vec!["Preparing", "Running"], ..Script::default() };
    let Some(cloud) = Cloud::start(script) else { return };
    let (code, _, err) =
        cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "slow", "--timeout", "1s"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("did not finish within --timeout"), "{err}");
    let id = cloud.fake.submitted()[0]["runId"].as_str().unwrap().to_string();
    let cancel_call = format!("POST /flow/api{}/BulkRuns/{id}/cancel", fake_aml::workspace_path());
    assert_eq!(cloud.fake.calls().iter().filter(|c| **c == cancel_call).count(), 1);

    // `run cancel` finds the run's workspace id in the store.
    let (code, out, err) = run(cloud.flow_ci().args(["run", "cancel", "--name", "slow"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&id), "{out}");
    assert_eq!(cloud.fake.calls().iter().filter(|c| **c == cancel_call).count(), 2);

    // `run stream` follows it to its end (Canceled: 130) and prints its log.
    let (code, _, err) = run(cloud.flow_ci().args(["run", "stream", "--name", "slow"]));
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("[flow-ci fake] run"), "the log is printed: {err}");
    assert_no_violations(&cloud.fake);
}

#[test]
fn run_stream_fetches_a_finished_run_again() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, _, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "s"]);
    assert_eq!(code, Some(0), "{err}");
    std::fs::remove_file(cloud.pr.dir.path().join(".flow-ci/runs/s/output.jsonl")).unwrap();
    let (code, out, err) = run(cloud.flow_ci().args(["run", "stream", "--name", "s"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("30 lines completed"), "{err}");
    assert!(out.contains("26 completed, 4 failed of 30"), "{out}");
    assert_eq!(cloud.pr.read(".flow-ci/runs/s/output.jsonl").lines().count(), 26);
    assert_eq!(cloud.fake.submitted().len(), 1, "nothing submitted");
}

#[test]
fn a_fork_pull_request_runs_nothing_in_the_cloud_and_says_so() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let event = cloud.pr.dir.path().join("event.json");
    std::fs::write(
        &event,
        json!({"pull_request": {"number": 7, "base": {"sha": cloud.pr.rev("main"), "repo": {"full_name": "o/r"}},
               "head": {"repo": {"full_name": "fork/r"}}}, "repository": {"full_name": "o/r"}})
        .to_string(),
    )
    .unwrap();
    let mut cmd = cloud.flow_ci();
    cmd.env_remove("AZURE_CLIENT_SECRET")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_REPOSITORY", "o/r");
    let (code, out, err) = run(cmd.args(["check", "--all", "--backend", "azureml", "--publish", "none"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("azureml: flows not run: this pull request comes from a fork"), "{err}");
    assert!(cloud.fake.calls().is_empty(), "{:#?}", cloud.fake.calls());
    let report: Json = serde_json::from_str(&cloud.pr.read(".flow-ci/report/report.json")).unwrap();
    assert!(report["flows"].as_array().unwrap().iter().all(|f| f["not_run"].as_str().unwrap().contains("Azure ML")));
}

#[test]
fn the_baseline_reuses_the_runs_a_build_of_the_base_commit_made() {
    let Some(cloud) = Cloud::start(Script { lines: 12, ..Script::default() }) else { return };
    // The push build of main ran every flow at main's commit.
    support::repo::git(cloud.pr.dir.path(), &["switch", "--quiet", "main"]);
    let (_, _, err) = run(cloud.flow_ci().args(["check", "--all", "--backend", "azureml", "--publish", "none"]));
    let on_main = cloud.fake.submitted().len();
    assert_eq!(on_main, 7, "{err}");
    // A PR changes one flow: its head runs are new, its baseline is found.
    support::repo::git(cloud.pr.dir.path(), &["switch", "--quiet", "pr"]);
    cloud.pr.edit("flows/support-triage/triage.jinja2", "", "Be brief.\n").commit();
    let (_, out, err) =
        run(cloud.flow_ci().args(["check", "--base", "main", "--backend", "azureml", "--publish", "none"]));
    assert_no_violations(&cloud.fake);
    let new: Vec<Json> = cloud.fake.submitted().into_iter().skip(on_main).collect();
    assert_eq!(new.len(), 2, "only the changed flow's batch run and evaluation: {new:#?}\n{out}\n{err}");
    assert!(new.iter().all(|b| b["tags"]["flow-ci.commit"] == cloud.pr.rev("HEAD")), "{new:#?}");
    assert_eq!(err.matches("reusing").count(), 2, "the base's batch run and evaluation: {err}");
    let report: Json = serde_json::from_str(&cloud.pr.read(".flow-ci/report/report.json")).unwrap();
    let triage = &report["flows"][0];
    assert_eq!(triage["baseline"]["accuracy"], 0.9, "{triage:#}");
}

#[test]
fn the_configured_backend_wins_in_the_github_action() {
    // action.yml's `backend` input defaults to empty: the action passes no
    // --backend, so `backend: azureml` in .flow-ci.yaml is what runs.
    let Some(cloud) = Cloud::start(Script { lines: 12, ..Script::default() }) else { return };
    cloud.pr.edit(".flow-ci.yaml", "backend: local", "backend: azureml");
    let mut cmd = cloud.flow_ci();
    // The runner sets INPUT_<NAME> for every input, with action.yml's default
    // when the workflow gives none.
    let action = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml")).unwrap();
    let action = model::yaml::parse(&action).unwrap().unwrap();
    for (name, input) in action.get("inputs").and_then(|i| i.as_map()).unwrap() {
        let default = input.get("default").and_then(|d| d.as_str()).unwrap_or_default().to_string();
        cmd.env(flow_ci::ci::action::variable(&name.key_text()), default);
    }
    let (_, out, err) = run(cmd.arg("action"));
    assert_no_violations(&cloud.fake);
    assert!(err.contains("backend azureml"), "{out}\n{err}");
    assert_eq!(cloud.fake.submitted().len(), 4 + 3, "every flow ran in the workspace\n{out}\n{err}");
}

#[test]
fn a_cancel_is_a_post_with_content_length_0_which_azure_front_ends_require() {
    let script = Script { statuses: vec!["Preparing", "Running"], ..Script::default() };
    let Some(cloud) = Cloud::start(script) else { return };
    let (code, _, err) =
        cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "slow", "--timeout", "1s"]);
    assert_eq!(code, Some(3), "{err}");
    let (code, _, err) = run(cloud.flow_ci().args(["run", "cancel", "--name", "slow"]));
    assert_eq!(code, Some(0), "a 411 Length Required would fail the cancel: {err}");
    let cancels: Vec<_> = cloud.fake.received().into_iter().filter(|r| r.path.ends_with("/cancel")).collect();
    assert_eq!(cancels.len(), 2, "the timeout's cancel and `run cancel`");
    assert!(cancels.iter().all(|r| r.header("content-length") == Some("0")), "{cancels:#?}");
    assert_no_violations(&cloud.fake);
}

#[test]
fn a_data_folder_is_sent_as_the_uploaded_folder_with_a_trailing_slash() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let lines = cloud.pr.read("flows/support-triage/data.jsonl");
    std::fs::create_dir_all(cloud.pr.dir.path().join("tickets")).unwrap();
    cloud.pr.write("tickets/part-1.jsonl", &lines);
    let (code, out, err) =
        cloud.run_create(&["--file", "flows/support-triage/run.yml", "--data", "tickets", "--name", "folder"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    // promptflow-azure names an uploaded folder `.../LocalUpload/{hash}/{folder}/`;
    // the fake checks that blobs exist below it.
    let uri = cloud.fake.submitted()[0]["batchDataInput"]["dataUri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("azureml://datastores/workspaceblobstore/paths/LocalUpload/"), "{uri}");
    assert!(uri.ends_with("/tickets/") && !uri.ends_with("/tickets/tickets/"), "{uri}");
    assert_no_violations(&cloud.fake);
}

#[test]
fn the_uploaded_flow_names_its_requirements_and_drops_merged_includes() {
    // The fake reads the uploaded flow.dag.yaml back from Azurite: no
    // additional_includes (web-classification has them) and, with a
    // requirements.txt beside it, environment.python_requirements_txt.
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    cloud.pr.write("flows/web-classification/requirements.txt", "bs4\n");
    let (code, out, err) =
        cloud.run_create(&["--file", "flows/web-classification/run.yml", "--name", "with-requirements"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
}

#[test]
fn every_line_is_fetched_when_pages_come_short_and_out_of_order() {
    let Some(cloud) = Cloud::start(Script { lines: 30, short_pages: true, ..Script::default() }) else { return };
    let (code, out, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "short-pages"]);
    assert_no_violations(&cloud.fake);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let details = cloud.pr.read(".flow-ci/runs/short-pages/details.jsonl");
    let numbers: Vec<u64> =
        details.lines().map(|l| serde_json::from_str::<Json>(l).unwrap()["line_number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..30).collect::<Vec<u64>>(), "all 30 lines, in order");
}

#[test]
fn a_run_stuck_not_responding_is_cancelled_instead_of_polled_forever() {
    let script = Script { statuses: vec!["Running", "NotResponding"], ..Script::default() };
    let Some(cloud) = Cloud::start(script) else { return };
    // No --timeout: only the stall limit (1 s here, 30 min by default) ends the wait.
    let (code, _, err) = run(cloud.flow_ci().env("FLOW_CI_AZUREML_STALL_SECS", "1").args([
        "run",
        "create",
        "--backend",
        "azureml",
        "--file",
        "flows/support-triage/run.yml",
        "--name",
        "stuck",
    ]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("stayed NotResponding for 1 s; it was cancelled"), "{err}");
    let id = cloud.fake.submitted()[0]["runId"].as_str().unwrap().to_string();
    let cancel_call = format!("POST /flow/api{}/BulkRuns/{id}/cancel", fake_aml::workspace_path());
    assert_eq!(cloud.fake.calls().iter().filter(|c| **c == cancel_call).count(), 1);
    assert_no_violations(&cloud.fake);
}

/// Uploads to an identity-based datastore, as azure-ai-ml makes them
/// (`_artifact_utilities.get_datastore_info`: credentialsType None skips
/// `listSecrets`; a refused `listSecrets` falls back to the caller's
/// credential): with an Entra token for storage, which Azurite (https,
/// `--oauth basic`) checks. Without a key nothing else would get in.
fn uploads_with_a_storage_token(datastore: fake_aml::DatastoreAuth, name: &str) -> Option<Cloud> {
    let cloud = Cloud::start(Script { datastore, ..Script::default() })?;
    let (code, out, err) = run(cloud.flow_ci().args(["run", "create", "--backend", "azureml", "-v"]).args([
        "--file",
        "flows/support-triage/run.yml",
        "--name",
        name,
    ]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    assert!(!err.contains(fake_aml::CLIENT_SECRET), "no secret in the log");
    assert!(err.contains("uploads use an Entra token for storage"), "-v says why: {err}");
    let scopes: Vec<String> = cloud
        .fake
        .received()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .filter_map(|r| r.text.split('&').find_map(|kv| kv.strip_prefix("scope=").map(str::to_string)))
        .collect();
    assert!(scopes.contains(&"https%3A%2F%2Fstorage.azure.com%2F.default".to_string()), "{scopes:?}");
    // What the run names is in the datastore.
    let body = &cloud.fake.submitted()[0];
    let container = cloud.container();
    for path in [
        body["flowDefinitionBlobPath"].as_str().unwrap(),
        body["batchDataInput"]["dataUri"].as_str().unwrap().split("/paths/").nth(1).unwrap(),
    ] {
        assert!(container.metadata(path).unwrap().is_some(), "{path} uploaded");
    }
    Some(cloud)
}

/// Azurite in this mode refuses what flow-ci could otherwise send: no
/// credential, or the ARM token.
fn storage_refuses_other_credentials(cloud: &Cloud) {
    let url = format!("{}/devstoreaccount1/{}/probe.txt", cloud.azurite.url, fake_aml::CONTAINER);
    let put = |auth: Option<&str>| {
        let mut req = cloud
            .azurite
            .http()
            .put(&url)
            .header("x-ms-version", "2021-08-06")
            .header("x-ms-blob-type", "BlockBlob")
            .body("x");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.send().unwrap().status().as_u16()
    };
    assert!(put(None) >= 400, "anonymous writes are refused");
    assert!(put(Some(&format!("Bearer {}", fake_aml::ARM_TOKEN))) >= 400, "the ARM token is refused");
}

#[test]
fn an_identity_based_datastore_is_written_with_an_entra_token_and_never_asked_for_secrets() {
    let Some(cloud) = uploads_with_a_storage_token(fake_aml::DatastoreAuth::Identity, "identity") else { return };
    assert!(!cloud.fake.calls().iter().any(|c| c.ends_with("/listSecrets")), "{:#?}", cloud.fake.calls());
    storage_refuses_other_credentials(&cloud);
}

#[test]
fn a_forbidden_list_secrets_falls_back_to_an_entra_token_for_storage() {
    let Some(cloud) = uploads_with_a_storage_token(fake_aml::DatastoreAuth::SecretsForbidden, "forbidden") else {
        return;
    };
    let asked = cloud.fake.calls().iter().filter(|c| c.ends_with("/listSecrets")).count();
    assert_eq!(asked, 1, "asked once, refused, not retried");
    storage_refuses_other_credentials(&cloud);
}

/// A run file's `identity:` is resolved against the workspace's
/// user-assigned identities and sent as their ARM id, as promptflow-azure's
/// `RunOperations._resolve_identity` does; `user_identity` sends none.
#[test]
fn the_run_files_identity_is_sent_as_the_workspaces_user_assigned_identity() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let original = cloud.pr.read("flows/support-triage/run.yml");
    let [(_, primary), (other_client, other)] = fake_aml::USER_IDENTITIES;
    let cases = [
        ("identity:\n  type: managed\n", Some(primary)),
        (&format!("identity:\n  type: managed\n  client_id: {other_client}\n") as &str, Some(other)),
        ("identity:\n  type: user_identity\n", None),
    ];
    for (n, (identity, expected)) in cases.into_iter().enumerate() {
        cloud.pr.write("flows/support-triage/run.yml", &format!("{original}{identity}"));
        let (code, out, err) =
            cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", &format!("identity-{n}")]);
        assert_eq!(code, Some(0), "{identity}\n{out}\n{err}");
        let body = cloud.fake.submitted().pop().unwrap();
        assert_eq!(body.get("identity").and_then(Json::as_str), expected, "{identity}");
    }
    assert_no_violations(&cloud.fake);

    // A client id the workspace does not have stops before any upload, at its line.
    let line = original.lines().count() + 1;
    cloud
        .pr
        .write("flows/support-triage/run.yml", &format!("{original}identity:\n  type: managed\n  client_id: nobody\n"));
    let submits = cloud.fake.submitted().len();
    let (code, _, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "identity-unknown"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("run.yml:{}:", line + 1)) && err.contains("nobody"), "{err}");
    assert!(err.contains("uai-client-primary"), "names the identities there are: {err}");
    assert_eq!(cloud.fake.submitted().len(), submits, "nothing submitted");
}

/// `run create --name N` makes N the run's name in the workspace, as
/// `pfazure run create --name N` does: a retried job (same content) finds
/// it, other content under that name is refused (pfazure refuses an
/// existing name), and `run show-details` / `run stream` reach it by N.
#[test]
fn a_named_run_is_that_run_in_the_workspace() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, out, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "nightly"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(cloud.fake.submitted()[0]["runId"], "nightly");

    // The retried job.
    let (code, _, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "nightly", "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("reusing nightly"), "{err}");
    assert_eq!(cloud.fake.submitted().len(), 1, "no second submit");

    // Other content under the same name.
    cloud.pr.edit("flows/support-triage/run.yml", "display_name: support triage", "display_name: support triage v2");
    let (code, _, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml", "--name", "nightly", "--force"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("run nightly already exists in the workspace with other content"), "{err}");
    assert_eq!(cloud.fake.submitted().len(), 1, "nothing submitted");

    // By its name.
    let (code, out, err) = run(cloud.flow_ci().args(["run", "show-details", "--name", "nightly"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ticket 29"), "{out}");
    let (code, out, err) = run(cloud.flow_ci().args(["run", "stream", "--name", "nightly"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("26 completed, 4 failed of 30"), "{out}");

    // Another job, whose run store never saw it: the workspace's run N.
    let runs = cloud.pr.dir.path().join(".flow-ci/runs");
    std::fs::remove_dir_all(&runs).unwrap();
    let (code, _, err) = run(cloud.flow_ci().args(["run", "show-details", "--name", "nightly"]));
    assert_eq!(code, Some(2), "only the store is read without --backend azureml: {err}");
    let (code, out, err) =
        run(cloud.flow_ci().args(["run", "show-details", "--name", "nightly", "--backend", "azureml"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ticket 29"), "{out}");
    std::fs::remove_dir_all(&runs).unwrap();
    let (code, out, err) = run(cloud.flow_ci().args(["run", "stream", "--name", "nightly", "--backend", "azureml"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("30 lines completed"), "the log is printed: {err}");
    assert!(out.contains("26 completed, 4 failed of 30"), "{out}");
    std::fs::remove_dir_all(&runs).unwrap();
    let (code, out, err) = run(cloud.flow_ci().args(["run", "cancel", "--name", "nightly", "--backend", "azureml"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cancel requested: nightly"), "{out}");
    let cancel = format!("POST /flow/api{}/BulkRuns/nightly/cancel", fake_aml::workspace_path());
    assert!(cloud.fake.calls().contains(&cancel), "{:#?}", cloud.fake.calls());
    let (code, _, err) = run(cloud.flow_ci().args(["run", "stream", "--name", "nobody", "--backend", "azureml"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("neither in the run store nor in workspace"), "{err}");
    assert_eq!(cloud.fake.submitted().len(), 1, "nothing submitted");
    assert_no_violations(&cloud.fake);
}

/// Without a name the id is derived from the content, so a retried CI job
/// (which names nothing) finds the run it submitted.
#[test]
fn an_unnamed_run_gets_an_id_from_its_content_which_a_retry_finds() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    for _ in 0..2 {
        let (code, out, err) = cloud.run_create(&["--file", "flows/support-triage/run.yml"]);
        assert_eq!(code, Some(0), "{out}\n{err}");
    }
    let submitted = cloud.fake.submitted();
    assert_eq!(submitted.len(), 1, "the retry reused the run");
    let id = submitted[0]["runId"].as_str().unwrap();
    assert!(id.starts_with("support-triage_") && id.len() == "support-triage_".len() + 16, "{id}");
    assert_eq!(submitted[0]["tags"]["flow-ci.content"], id);
    assert_no_violations(&cloud.fake);
}
