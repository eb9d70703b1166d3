//! Images in python nodes, compared with promptflow (the oracle, FLOW_CI_PF)
//! in both worker modes: inputs of type image in every form pf loads
//! (path strings, base64 text, `data:image/...;path|base64` dicts with paths
//! relative to the data file, images in lists and dicts, literal inputs of
//! parameters annotated `Image`), `Image` values between nodes and into
//! aggregation nodes, and image outputs persisted as files referenced with
//! pf's dict form. File names are UUIDs on both sides, so images compare by
//! their dict key, extension and content.
//!
//! Flows: `tests/flows/images` (flow-ci's own, deterministic) and promptflow's
//! test flows vendored under `tests/vendor/promptflow` (their random
//! `pick_an_image` flows are left out: the oracle picks a different image on
//! each run).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};
use sha2::Digest;

mod support;
use support::fs::read_jsonl;
use support::pf::{PfWorkspace, last_json_object, worker_pythons};
use support::served::Served;

const VENDORED: &str = "tests/vendor/promptflow/src/promptflow/tests/test_configs/flows";

/// `flows/` holds tests/flows/images and the vendored promptflow flows.
fn workspace() -> PfWorkspace {
    let ws = PfWorkspace::new("tests/flows/images");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for flow in [
        "python_tool_with_composite_image",
        "python_tool_with_image_nested_api_calls",
        "eval_flow_with_composite_image",
        "chat_flow_with_image",
        "chat_flow_with_openai_vision_image",
        "python_tool_with_openai_vision_image",
    ] {
        support::fs::copy_tree(&root.join(VENDORED).join(flow), &ws.path().join("flows").join(flow), &[]);
    }
    ws
}

/// Every `data:image/...;path` dict (an `image_file` content part in an
/// openai-vision flow) replaced by its key, its file's extension and the
/// SHA-256 of its content; the file must exist (relative paths are relative
/// to `base`) and lie under `inside`.
fn by_content(value: &Json, base: &Path, inside: &Path) -> Json {
    let vision = value.get("image_file").and_then(|f| f.get("path")).filter(|_| value["type"] == "image_file");
    if let Some(path) = vision.and_then(Json::as_str) {
        return by_digest("image_file", path, base, inside);
    }
    match value {
        Json::Array(items) => Json::Array(items.iter().map(|v| by_content(v, base, inside)).collect()),
        Json::Object(map)
            if map.len() == 1 && map.keys().all(|k| k.starts_with("data:image/") && k.ends_with(";path")) =>
        {
            let (key, path) = map.iter().next().unwrap();
            by_digest(key, path.as_str().unwrap(), base, inside)
        }
        Json::Object(map) => {
            Json::Object(map.iter().map(|(k, v)| (k.clone(), by_content(v, base, inside))).collect::<Map<_, _>>())
        }
        other => other.clone(),
    }
}

fn by_digest(key: &str, path: &str, base: &Path, inside: &Path) -> Json {
    let path = base.join(path);
    assert!(path.starts_with(inside), "{} is not under {}", path.display(), inside.display());
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
    json!({"image": key, "ext": ext, "sha256": base16ct::lower::encode_string(&sha2::Sha256::digest(bytes))})
}

fn encoded(ws: &PfWorkspace) -> String {
    std::fs::read_to_string(ws.path().join("flows/kinds/encoded.txt")).unwrap().trim().to_string()
}

#[test]
fn flow_tests_match_pf_by_image_content() {
    let ws = workspace();
    let encoded = format!("encoded={}", encoded(&ws));
    let cases: [(&str, &[&str]); 7] = [
        ("kinds", &[encoded.as_str()]),
        // Images inside a chat history's dicts and a chat input's list.
        ("chat_flow_with_image", &[]),
        ("python_tool_with_composite_image", &[]),
        ("python_tool_with_image_nested_api_calls", &[]),
        ("eval_flow_with_composite_image", &[]),
        // message_format: openai-vision, images as `image_file` content parts
        // in the inputs (a chat history's too) and the outputs.
        ("chat_flow_with_openai_vision_image", &[]),
        ("python_tool_with_openai_vision_image", &[]),
    ];
    for (flow, inputs) in cases {
        let folder = format!("flows/{flow}");
        let mut args = vec!["flow", "test", "--flow", folder.as_str()];
        if !inputs.is_empty() {
            args.push("--inputs");
            args.extend(inputs);
        }
        // pf flow test writes them to <flow>/.promptflow/output, by absolute path.
        let output_dir = ws.path().join(&folder).join(".promptflow/output");
        let expected = by_content(
            &last_json_object(&String::from_utf8_lossy(&ws.pf_ok(&args).stdout)),
            Path::new("/"),
            &output_dir,
        );
        for (mode, python) in worker_pythons() {
            let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &args)).unwrap();
            let ours = by_content(&ours, Path::new("/"), &output_dir);
            assert_eq!(ours, expected, "{flow} ({mode}): flow-ci (left) differs from pf (right)");
        }
    }
    // The oracle saw every kind of input as an Image, and one node's image
    // arrived in the next as an Image again.
    let expected = last_json_object(&String::from_utf8_lossy(
        &ws.pf_ok(&["flow", "test", "--flow", "flows/kinds", "--inputs", &encoded]).stdout,
    ));
    assert_eq!(expected["described"], "Image image/png 73; Image image/png 69; Image image/png 71");
    assert_eq!(expected["again"]["is_image"], true);
}

#[test]
fn batch_runs_match_pf_by_image_content() {
    let ws = workspace();
    // Inputs with defaults are mapped only when the mapping names them.
    let cases: [(&str, &str, &str, &[&str]); 4] = [
        ("kinds", "flows/kinds", "flows/kinds/data/lines.jsonl", &["album=${data.album}"]),
        (
            "composite",
            "flows/python_tool_with_composite_image",
            "flows/python_tool_with_composite_image/inputs.jsonl",
            &["image_list=${data.image_list}", "image_dict=${data.image_dict}"],
        ),
        (
            "eval_composite",
            "flows/eval_flow_with_composite_image",
            "flows/eval_flow_with_composite_image/inputs.jsonl",
            &[],
        ),
        (
            "vision_chat",
            "flows/chat_flow_with_openai_vision_image",
            "flows/chat_flow_with_openai_vision_image/inputs.jsonl",
            &["chat_history=${data.chat_history}", "question=${data.question}"],
        ),
    ];
    for (name, flow, data, mapping) in cases {
        let mut args = vec!["run", "create", "--flow", flow, "--data", data];
        if !mapping.is_empty() {
            args.push("--column-mapping");
            args.extend(mapping);
        }
        let pf_run = format!("pf_{name}");
        let mut pf_args = args.clone();
        pf_args.extend(["--name", pf_run.as_str()]);
        ws.pf_ok(&pf_args);
        let pf_outputs = ws.path().join("home/.promptflow/.runs").join(&pf_run).join("flow_outputs");
        let expected: Vec<Json> = read_jsonl(&pf_outputs.join("output.jsonl"))
            .iter()
            .map(|row| by_content(row, &pf_outputs, &pf_outputs))
            .collect();
        assert_eq!(expected.len(), 2, "{name}: the oracle ran both lines");
        for (i, (mode, python)) in worker_pythons().into_iter().enumerate() {
            let run = format!("{name}_{i}");
            let mut ours_args = args.clone();
            ours_args.extend(["--name", run.as_str()]);
            ws.flow_ci_ok(mode, python.as_deref(), &ours_args);
            // Relative to output.jsonl's folder, as pf's, and inside the run's folder.
            let dir = ws.path().join("flow-ci-runs").join(&run);
            let ours: Vec<Json> = read_jsonl(&dir.join("output.jsonl"))
                .iter()
                .map(|row| by_content(row, &dir, &dir.join("images")))
                .collect();
            assert_eq!(ours, expected, "{name} ({mode}): flow-ci (left) differs from pf (right)");
            // Aggregation nodes got Images (eval_flow_with_composite_image asserts it).
            let record: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
            assert!(record.get("aggregation_errors").is_none(), "{name} ({mode}): {record}");
        }
    }
}

/// An image flow-ci cannot load fails the line with promptflow's message
/// naming the input, never a crash.
#[test]
fn an_image_that_cannot_be_loaded_names_its_input() {
    let ws = workspace();
    let args = ["flow", "test", "--flow", "flows/kinds", "--inputs", "encoded=missing.png"];
    let pf_out = ws.pf_command(&args).output().unwrap();
    let pf_text = String::from_utf8_lossy(&pf_out.stderr).into_owned() + &String::from_utf8_lossy(&pf_out.stdout);
    let message = "Failed to load image for input 'encoded': (FileNotFoundError)";
    assert!(pf_text.contains(message), "the oracle's message changed:\n{pf_text}");
    for (mode, python) in worker_pythons() {
        let out = ws.flow_ci(python.as_deref(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "({mode}) a failed line: {stderr}");
        assert!(stderr.contains(message), "({mode}):\n{stderr}");
    }
}

/// What flow-ci cannot do with images yet it says in one line naming the
/// feature, before any model call: images reaching a prompt or llm node
/// (the gpt-4v tools send them: tests/vision.rs).
#[test]
fn images_flow_ci_cannot_run_yet_are_named_in_one_line() {
    let ws = workspace();
    let cases = [("prompt-image", "images in the inputs of prompt nodes are not supported yet")];
    for (flow, message) in cases {
        let folder = format!("flows/{flow}");
        for (mode, python) in worker_pythons() {
            let out = ws.flow_ci(python.as_deref(), &["flow", "test", "--flow", &folder]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(matches!(out.status.code(), Some(2 | 3)), "{flow} ({mode}): {stderr}");
            assert!(stderr.contains(message), "{flow} ({mode}):\n{stderr}");
            assert!(!stderr.contains("panicked"), "{flow} ({mode}):\n{stderr}");
        }
    }
}

/// `serve` takes images in a request as pf's serving does (base64 and path
/// dicts, a path string) and answers with each image as its base64 dict
/// (core/_serving/flow_invoker.py, convert_multimedia_data_to_base64_dict).
#[test]
fn serve_takes_and_returns_images_as_pf_serve_does() {
    let ws = workspace();
    let client = reqwest::blocking::Client::new();
    let encoded = encoded(&ws);
    let body = json!({
        "encoded": {"data:image/png;base64": encoded},
        "album": [{"data:image/gif;path": "data/tiny.gif"}, {"data:image/png;base64": encoded}],
    });
    let pf_server = Served::pf(&ws, "flows/kinds", &client);
    let (status, expected) = pf_server.score_json(&client, &body);
    assert_eq!(status, 200, "the oracle answered: {expected}");
    assert!(expected["picture"]["data:image/png;base64"].is_string(), "the oracle's form changed: {expected}");
    for (mode, python) in worker_pythons() {
        let ours = Served::flow_ci(ws.path(), "flows/kinds", 1, python.as_deref(), &client);
        assert_eq!(
            ours.score_json(&client, &body),
            (200, expected.clone()),
            "({mode}): flow-ci (left) differs from pf (right)"
        );
    }
}
