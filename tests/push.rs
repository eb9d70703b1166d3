//! `flow-ci flow push`: a local flow imported into the workspace as a
//! studio flow (`pfazure flow create`), and refreshed with `--update`,
//! against the loopback Azure (its file share and flow service).

mod support;

use serde_json::Value as Json;
use support::cloud::{Cloud, assert_no_violations};
use support::fake_aml::{self, Script};
use support::repo::run;

const FLOW: &str = "flows/support-router";

fn push(cloud: &Cloud, args: &[&str]) -> (Option<i32>, String, String) {
    run(cloud.flow_ci().args(["flow", "push", "--flow", FLOW]).args(args))
}

#[test]
fn a_flow_is_shared_to_the_workspace_as_pfazure_creates_it() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    std::fs::write(cloud.pr.dir.path().join(FLOW).join("requirements.txt"), "langdetect==1.0.9\n").unwrap();
    let (code, out, err) = push(&cloud, &["--set", "display_name=Support router", "type=chat", "tags.team=support"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);

    let printed: Json = serde_json::from_str(&out).unwrap();
    let name = printed["name"].as_str().unwrap();
    assert_eq!(printed["type"], "chat", "{out}");
    assert_eq!(printed["display_name"], "Support router");
    let url = printed["flow_portal_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("https://ml.azure.com/prompts/flow/{}/{name}/", fake_aml::WORKSPACE_ID)), "{url}");
    assert!(url.ends_with(&format!("?wsid={}", fake_aml::workspace_path())), "{url}");
    assert!(err.contains("studio: https://ml.azure.com/"), "{err}");

    // The service got what pfazure sends.
    let flow = cloud.fake.flow(name).unwrap();
    assert_eq!(flow["flowType"], "Chat");
    assert_eq!(flow["tags"]["team"], "support");
    let path = flow["flowDefinitionFilePath"].as_str().unwrap();
    // No JWT from the fake's token endpoint: pfazure's fallback alias.
    assert!(path.starts_with("Users/unknown_user/promptflow/support-router-"), "{path}");
    let folder = path.strip_suffix("/flow.dag.yaml").unwrap();

    // The folder in the share is the run snapshot: includes merged, the DAG rewritten.
    let files = cloud.fake.share_paths();
    for file in ["detect_intent.py", "technical.jinja2", "text_utils.py", "requirements.txt", "data.jsonl"] {
        assert!(files.contains(&format!("{folder}/{file}")), "{file} in {files:#?}");
    }
    let dag = cloud.fake.share_file(path).unwrap();
    assert!(!dag.contains("additional_includes") && dag.contains("python_requirements_txt"), "{dag}");
    let local = std::fs::read_to_string(cloud.pr.dir.path().join(FLOW).join("billing.py")).unwrap();
    assert_eq!(cloud.fake.share_file(&format!("{folder}/billing.py")).unwrap(), local);
    assert!(cloud.fake.calls().iter().any(|c| c.ends_with(&format!("{}/Flows", fake_aml::workspace_path()))));
}

#[test]
fn update_writes_the_flow_over_the_pushed_one_and_keeps_its_name() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, out, err) = push(&cloud, &["--set", "display_name=Router"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let name = serde_json::from_str::<Json>(&out).unwrap()["name"].as_str().unwrap().to_string();
    let path = cloud.fake.flow(&name).unwrap()["flowDefinitionFilePath"].as_str().unwrap().to_string();
    let billing = path.replace("flow.dag.yaml", "billing.py");
    assert!(!cloud.fake.share_file(&billing).unwrap().contains("refund desk"));

    cloud.pr.edit(&format!("{FLOW}/billing.py"), "def ", "# the refund desk answers\ndef ");
    // A file the flow no longer has leaves the share; the studio's own state stays.
    std::fs::remove_file(cloud.pr.dir.path().join(FLOW).join("data.jsonl")).unwrap();
    let folder = path.trim_end_matches("/flow.dag.yaml");
    let layout = format!("{folder}/.promptflow/flow.layout.json");
    cloud.fake.put_share_file(&layout, "{}");
    let (code, out, err) = push(&cloud, &["--update", &name, "--set", "description=Routes support messages"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    assert!(err.contains("flow push: updated `Router`"), "{err}");
    let flow = cloud.fake.flow(&name).unwrap();
    assert_eq!(flow["flowName"], "Router", "the display name is kept");
    assert_eq!(flow["description"], "Routes support messages");
    assert_eq!(flow["flowDefinitionFilePath"], path.as_str(), "the same folder");
    assert!(cloud.fake.share_file(&billing).unwrap().contains("refund desk"), "the edit reached the share");
    assert!(cloud.fake.share_file(&format!("{folder}/data.jsonl")).is_none(), "{:#?}", cloud.fake.share_paths());
    assert!(cloud.fake.share_file(&layout).is_some(), "the studio's layout is kept");
    assert!(err.contains("1 file(s) no longer in the flow removed"), "{err}");
    let put = format!("PUT /flow/api{}/Flows/{name}", fake_aml::workspace_path());
    assert_eq!(cloud.fake.calls().iter().filter(|c| **c == put).count(), 1);
}

#[test]
fn an_unknown_flow_or_type_is_invalid_input() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, _, err) = push(&cloud, &["--update", "no-such-flow"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("there is no flow no-such-flow in the workspace"), "{err}");
    let (code, _, err) = push(&cloud, &["--set", "type=rag"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not one of standard, chat, evaluation"), "{err}");
    assert!(cloud.fake.calls().iter().all(|c| !c.ends_with("/Flows")), "nothing created");
    assert_no_violations(&cloud.fake);
}

/// `azureml: push_flows: true`: check on the default branch pushes the flows
/// it checked, updating the studio flow an earlier build pushed; a build of
/// another branch pushes nothing.
#[test]
fn check_on_the_default_branch_keeps_the_studio_flows_current() {
    // Six lines a run: none fails (the fake fails every seventh), so the gates pass.
    let Some(cloud) = Cloud::start(Script { lines: 6, ..Script::default() }) else { return };
    let dir = cloud.pr.dir.path();
    support::repo::git(dir, &["switch", "--quiet", "main"]);
    let config = std::fs::read_to_string(dir.join(".flow-ci.yaml")).unwrap();
    std::fs::write(dir.join(".flow-ci.yaml"), format!("{config}azureml:\n  push_flows: true\n")).unwrap();
    cloud.pr.commit();
    let change = |marker: &str| {
        cloud.pr.edit(&format!("{FLOW}/billing.py"), "def ", &format!("# {marker}\ndef "));
        cloud.pr.commit();
        let args = ["check", "--base", "HEAD~1", "--backend", "azureml", "--publish", "none"];
        run(cloud.flow_ci().args(args))
    };

    let (code, out, err) = change("first merge");
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    assert!(err.contains("push_flows: flows/support-router → studio flow"), "{err}");
    assert!(err.contains("(created)"), "{err}");
    let creates = || cloud.fake.calls().iter().filter(|c| c.ends_with("/Flows") && c.starts_with("POST")).count();
    assert_eq!(creates(), 1, "only the changed flow");

    let (code, _, err) = change("second merge");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("(updated)"), "{err}");
    assert_eq!(creates(), 1, "the same studio flow, updated");
    let shared: Vec<String> = cloud.fake.share_paths().into_iter().filter(|p| p.ends_with("/billing.py")).collect();
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert!(cloud.fake.share_file(&shared[0]).unwrap().contains("second merge"));
    assert_no_violations(&cloud.fake);

    // A feature branch's build pushes nothing.
    support::repo::git(dir, &["switch", "--quiet", "-c", "feature"]);
    let (code, _, err) = change("on a branch");
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("push_flows:"), "{err}");
    assert!(!cloud.fake.share_file(&shared[0]).unwrap().contains("on a branch"));
}

/// In a sovereign cloud (`AZUREML_CURRENT_CLOUD`) the studio link is that
/// cloud's studio, on the Azure ML resource id as azure-ai-ml builds it.
#[test]
fn the_studio_url_is_the_clouds() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let (code, out, err) =
        run(cloud.flow_ci().env("AZUREML_CURRENT_CLOUD", "AzureUSGovernment").args(["flow", "push", "--flow", FLOW]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    let printed: Json = serde_json::from_str(&out).unwrap();
    let url = printed["flow_portal_url"].as_str().unwrap();
    assert!(url.starts_with("https://ml.azure.us/prompts/flow/"), "{url}");
}

/// The fake's file share checks signatures as Azure Files does: a request
/// signed with another key is refused (and recorded).
#[test]
fn the_file_share_refuses_a_wrong_signature() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let wrong = backend::azureml::blob::Credential::AccountKey(model::connection::Secret::new(
        "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==".into(),
    ));
    let share = backend::azureml::blob::Container::new(
        &format!("{}/files/devstoreaccount1", cloud.fake.url),
        "devstoreaccount1",
        fake_aml::SHARE,
        wrong,
    )
    .unwrap();
    let e = share.create_directory("Users").unwrap_err().to_string();
    assert!(e.contains("403"), "{e}");
    assert!(cloud.fake.violations().iter().any(|v| v.contains("Shared Key signature does not match")));
}

/// A cloud known only from ARM's metadata (`ARM_CLOUD_METADATA_URL`, as
/// azure-ai-ml reads it): its ARM, its login endpoint and its studio.
#[test]
fn a_cloud_from_arm_metadata_is_signed_in_to_and_linked() {
    let Some(cloud) = Cloud::start(Script::default()) else { return };
    let metadata = format!("{}/metadata/endpoints?api-version=2019-05-01", cloud.fake.url);
    let mut cmd = cloud.flow_ci();
    cmd.env_remove("AZURE_AUTHORITY_HOST").env_remove("FLOW_CI_ARM_URL").env("ARM_CLOUD_METADATA_URL", &metadata);
    let (code, out, err) = run(cmd.args(["flow", "push", "--flow", FLOW]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    let printed: Json = serde_json::from_str(&out).unwrap();
    assert!(printed["flow_portal_url"].as_str().unwrap().starts_with("https://ml.azure.us/"), "{out}");
    assert!(cloud.fake.calls().iter().any(|c| c == "GET /metadata/endpoints"));
}
