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
    let (code, out, err) = push(&cloud, &["--update", &name, "--set", "description=Routes support messages"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_no_violations(&cloud.fake);
    assert!(err.contains("flow push: updated `Router`"), "{err}");
    let flow = cloud.fake.flow(&name).unwrap();
    assert_eq!(flow["flowName"], "Router", "the display name is kept");
    assert_eq!(flow["description"], "Routes support messages");
    assert_eq!(flow["flowDefinitionFilePath"], path.as_str(), "the same folder");
    assert!(cloud.fake.share_file(&billing).unwrap().contains("refund desk"), "the edit reached the share");
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
