//! Images in chat prompts: promptflow-tools' gpt-4v tools
//! (`aoai_gpt4v.AzureOpenAI.chat`, `openai_gpt4v.OpenAI.chat`, `custom_llm`
//! nodes) through pf (the oracle, FLOW_CI_PF) and flow-ci against the
//! loopback fake model (tests/support/fake_llm.rs): the request bodies must
//! be equal as JSON (`![image](...)` and image lines as `image_url` content
//! parts with the image's bytes as a `data:` URL, promptflow-tools 1.6
//! common.py to_content_str_or_list) and so must the outputs.
//!
//! Flows: promptflow's describe-image example (Azure OpenAI, an image a
//! python node makes with PIL, so the workers run pf's interpreter) and
//! tests/flows/vision/ask (OpenAI, `message_format: openai-vision`, an image
//! flow input, a list with an image content part and a caption, and a
//! `detail` the request does not carry).

mod support;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value as Json;
use support::fake_llm::FakeLlm;
use support::pf::{PfWorkspace, last_json_object, pf};

const KEY: &str = "test-key-0123456789";

/// tests/flows/vision and promptflow's describe-image under `flows/`, with
/// pf connections to `fake` (`aoai_gpt4v_connection`, Azure OpenAI, and
/// `vision_connection`, OpenAI) and the same connections as files for flow-ci.
fn workspace(fake: &FakeLlm) -> (PfWorkspace, Vec<PathBuf>) {
    let ws = PfWorkspace::new("tests/flows/vision");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("tests/vendor/promptflow/examples/flows/standard/describe-image");
    support::fs::copy_tree(&example, &ws.path().join("flows/describe-image"), &[]);
    let url = &fake.url;
    let connections = [
        (
            "aoai.yaml",
            format!(
                "name: aoai_gpt4v_connection\ntype: azure_open_ai\napi_key: {KEY}\napi_base: {url}\napi_type: azure\napi_version: \"2024-02-01\"\n"
            ),
        ),
        ("openai.yaml", format!("name: vision_connection\ntype: open_ai\napi_key: {KEY}\nbase_url: {url}/v1\n")),
    ];
    let files = connections
        .iter()
        .map(|(file, text)| {
            let path = ws.path().join(file);
            std::fs::write(&path, text).unwrap();
            ws.pf_ok(&["connection", "create", "--file", path.to_str().unwrap()]);
            path
        })
        .collect();
    (ws, files)
}

/// flow-ci ARGS in the workspace with the connection files, pf's interpreter
/// (describe-image imports PIL) and no cache; it must succeed.
fn flow_ci(ws: &PfWorkspace, connections: &[PathBuf], args: &[&str]) -> Vec<u8> {
    let mut cmd = Command::cargo_bin("flow-ci").unwrap();
    cmd.current_dir(ws.path()).env("FLOW_CI_RUNS_DIR", ws.path().join("flow-ci-runs")).env_remove("VIRTUAL_ENV");
    cmd.env("FLOW_CI_PYTHON", pf().parent().unwrap().join("python"));
    for var in ["AZURE_OPENAI_ENDPOINT", "OPENAI_API_KEY", "FLOW_CI_CACHE_DIR", "PROMPTFLOW_CONNECTIONS"] {
        cmd.env_remove(var);
    }
    cmd.args(args).arg("--no-cache");
    for file in connections {
        cmd.arg("--connection").arg(file);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "flow-ci {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The content parts of the last user message of a request body.
fn user_parts(body: &Json) -> Vec<Json> {
    let messages = body["messages"].as_array().unwrap();
    let user = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
    user["content"].as_array().cloned().unwrap_or_default()
}

#[test]
fn vision_tools_send_the_request_pf_sends() {
    let fake = FakeLlm::start(KEY);
    let (ws, connections) = workspace(&fake);
    let dot = ws.path().join("flows/ask/dot.png");
    let image = format!("input_image={}", dot.display());
    let cases: [(&str, &[&str]); 2] = [("flows/describe-image", &[image.as_str()]), ("flows/ask", &[])];
    for (flow, inputs) in cases {
        let mut args = vec!["flow", "test", "--flow", flow];
        if !inputs.is_empty() {
            args.push("--inputs");
            args.extend(inputs);
        }
        let before = fake.count();
        let expected = last_json_object(&String::from_utf8_lossy(&ws.pf_ok(&args).stdout));
        let received = fake.received();
        assert_eq!(received.len(), before + 1, "{flow}: pf made one request");
        let pf_request = received.last().cloned().unwrap();
        let ours: Json = serde_json::from_slice(&flow_ci(&ws, &connections, &args)).unwrap();
        let our_request = fake.received().last().cloned().unwrap();
        assert_eq!((&our_request.path, &our_request.query), (&pf_request.path, &pf_request.query), "{flow}");
        assert_eq!(our_request.body, pf_request.body, "{flow}: request bodies differ (left flow-ci, right pf)");
        assert_eq!(ours["answer"], expected["answer"], "{flow}: answers differ (left flow-ci, right pf)");
        // The oracle sent images as content parts, so the comparison saw them.
        let parts = user_parts(&pf_request.body);
        let images = parts.iter().filter(|p| p["type"] == "image_url").count();
        assert_eq!(images, if flow.ends_with("ask") { 2 } else { 1 }, "{flow}: {parts:?}");
        let url = parts.iter().find(|p| p["type"] == "image_url").unwrap()["image_url"]["url"].as_str().unwrap();
        assert!(url.starts_with("data:image/png;base64,"), "{flow}: {url}");
    }
    assert_eq!(fake.violations(), Vec::<String>::new());
}

/// The batch run of tests/flows/vision/ask with two lines sends pf's bodies.
#[test]
fn a_vision_batch_run_sends_the_bodies_pf_sends() {
    let fake = FakeLlm::start(KEY);
    let (ws, connections) = workspace(&fake);
    let data = ws.path().join("lines.jsonl");
    let rows = [
        r#"{"question": "One?", "more": [{"type": "image_file", "image_file": {"path": "flows/ask/dot.png"}}]}"#,
        r#"{"question": "Two?", "more": ["no image here"]}"#,
    ];
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let data = data.to_str().unwrap();
    let mapping = ["--column-mapping", "question=${data.question}", "more=${data.more}"];
    let run = |name: &'static str| -> Vec<&str> {
        [&["run", "create", "--flow", "flows/ask", "--data", data, "--name", name], &mapping[..]].concat()
    };
    let before = fake.count();
    ws.pf_ok(&run("pf_ask"));
    let pf_bodies = sorted_bodies(&fake.received()[before..]);
    let before = fake.count();
    flow_ci(&ws, &connections, &run("ours_ask"));
    assert_eq!(sorted_bodies(&fake.received()[before..]), pf_bodies, "batch request bodies (left flow-ci)");
    assert_eq!(pf_bodies.len(), 2);
    let outputs = |dir: &Path| support::fs::read_jsonl(&dir.join("output.jsonl"));
    let pf_dir = ws.path().join("home/.promptflow/.runs/pf_ask/flow_outputs");
    assert_eq!(outputs(&ws.path().join("flow-ci-runs/ours_ask")), outputs(&pf_dir), "outputs (left flow-ci)");
}

/// Bodies as JSON values (key order aside), in a stable order.
fn sorted_bodies(received: &[support::fake_llm::Received]) -> Vec<Json> {
    let mut bodies: Vec<Json> = received.iter().map(|r| r.body.clone()).collect();
    bodies.sort_by_key(|b| b["messages"].to_string());
    bodies
}
