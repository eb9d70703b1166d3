//! Python nodes load as promptflow loads them: the same flows in
//! `tests/flows/python-nodes` run through `pf` (the oracle, FLOW_CI_PF) and
//! flow-ci, in both worker modes (with promptflow installed in the worker's
//! interpreter, and through flow-ci's stand-in when `python3` lacks it), must
//! give the same outputs, and refuse the same class tools before any line.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value as Json;

mod support;
use support::fs::read_jsonl;
use support::pf::{PfWorkspace, last_json_object, pf, worker_pythons};
use support::served::Served;

/// A scratch copy of the flows (pf writes into flow folders) and a private
/// promptflow home.
struct Workspace {
    pf: PfWorkspace,
}

impl Workspace {
    fn new() -> Workspace {
        Workspace { pf: PfWorkspace::new("tests/flows/python-nodes") }
    }

    /// promptflow's own flows, vendored unchanged (`flows/` is
    /// `tests/vendor/promptflow`, so a flow keeps its path in promptflow's repository).
    fn vendored() -> Workspace {
        Workspace { pf: PfWorkspace::new("tests/vendor/promptflow") }
    }

    fn path(&self) -> &Path {
        self.pf.path()
    }

    fn pf_output(&self, args: &[&str]) -> Output {
        self.pf.pf_command(args).output().unwrap()
    }

    fn pf(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.pf.pf_ok(args).stdout).into_owned()
    }

    fn flow_ci(&self, python: Option<&Path>, args: &[&str]) -> Output {
        self.pf.flow_ci(python, args)
    }

    fn flow_ci_ok(&self, mode: &str, python: Option<&Path>, args: &[&str]) -> String {
        self.pf.flow_ci_ok(mode, python, args)
    }
}

/// A JSON file that may hold Python's `NaN` and `Infinity` tokens.
fn read_python_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    exec::nonfinite::parse(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

#[test]
fn flow_tests_match_pf() {
    let ws = Workspace::new();
    let cases: [(&str, &[&str]); 4] = [
        ("flows/node-env", &[]),
        ("flows/node-env", &["text=ada"]),
        ("flows/script_tool_with_init", &[]),
        ("flows/flow_with_sys_inject", &["text=hi"]),
    ];
    for (flow, inputs) in cases {
        let mut args = vec!["flow", "test", "--flow", flow];
        if !inputs.is_empty() {
            args.push("--inputs");
            args.extend(inputs);
        }
        let expected = last_json_object(&ws.pf(&args));
        for (mode, python) in worker_pythons() {
            let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &args)).unwrap();
            assert_eq!(ours, expected, "{flow} {inputs:?} ({mode}): flow-ci (left) differs from pf (right)");
        }
    }
    // A class tool whose __init__ takes a connection: pf reads it from its store, flow-ci from the file.
    ws.pf(&["connection", "create", "--file", "flows/class-connection/my_custom.yaml"]);
    let expected = last_json_object(&ws.pf(&["flow", "test", "--flow", "flows/class-connection", "--inputs", "q=y"]));
    assert_eq!(expected["out"], "> http://b/y (4)");
    for (mode, python) in worker_pythons() {
        let args = [
            "flow",
            "test",
            "--flow",
            "flows/class-connection",
            "--inputs",
            "q=y",
            "--connection",
            "flows/class-connection/my_custom.yaml",
        ];
        let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &args)).unwrap();
        assert_eq!(ours, expected, "class-connection ({mode})");
    }
    // The oracle saw what this flow is about, so the comparison means something.
    let env = last_json_object(&ws.pf(&["flow", "test", "--flow", "flows/node-env"]));
    assert_eq!(env["where"]["name"], "__pf_main__");
    assert_eq!(env["where"]["cwd_is_flow_folder"], true);
    assert_eq!(env["greeting"], "HELLO HELLO world!");
}

/// `--node` on a flow with additional_includes: the node reads an included
/// file relative to its working directory and imports an included module.
#[test]
fn single_node_tests_match_pf() {
    let ws = Workspace::new();
    let args = ["flow", "test", "--flow", "flows/node-env", "--node", "where", "--inputs", "text=ada"];
    let expected = last_json_object(&ws.pf(&args));
    assert_eq!(expected["greeting"], "HELLO", "the oracle read the included file");
    // pf prints a string output as it is; flow-ci prints JSON.
    let greet = ["flow", "test", "--flow", "flows/node-env", "--node", "greet", "--inputs", "who=ada"];
    let expected_greeting = ws.pf(&greet).lines().last().unwrap_or_default().to_string();
    assert_eq!(expected_greeting, "HELLO HELLO ada!");
    // Another node's package tool and the connections of others are not resolved
    // (pf does need them to exist; flow-ci never looks them up).
    for name in ["embedding_connection", "chat_connection"] {
        let file = ws.path().join(format!("{name}.yaml"));
        std::fs::write(&file, format!("name: {name}\ntype: azure_open_ai\napi_base: http://127.0.0.1:9\napi_key: unused\napi_type: azure\napi_version: '2024-02-01'\n")).unwrap();
        ws.pf(&["connection", "create", "--file", file.to_str().unwrap()]);
    }
    let alone = ["flow", "test", "--flow", "flows/node-only", "--node", "ok", "--inputs", "text=yo"];
    let expected_alone = ws.pf(&alone).lines().last().unwrap_or_default().to_string();
    assert_eq!(expected_alone, "ok: yo");
    for (mode, python) in worker_pythons() {
        let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &alone)).unwrap();
        assert_eq!(ours, Json::String(expected_alone.clone()), "--node ok ({mode})");
        let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &args)).unwrap();
        assert_eq!(ours, expected, "--node where ({mode})");
        let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &greet)).unwrap();
        assert_eq!(ours, Json::String(expected_greeting.clone()), "--node greet ({mode})");
    }
}

/// `--node` inputs as pf gives them (tests/flows/python-nodes/node-inputs):
/// a flow input converts to its declared type, a later `${scale.output.n}`
/// writes into the `${scale.output}` given before it, an aggregation node
/// gets 1-item lists, and a value that does not convert is pf's InputTypeError.
#[test]
fn single_node_inputs_are_resolved_as_in_pf() {
    let ws = Workspace::new();
    let scale = ["flow", "test", "--flow", "flows/node-inputs", "--node", "scale", "--inputs", "n=3"];
    let total =
        ["flow", "test", "--flow", "flows/node-inputs", "--node", "total", "--input", "flows/node-inputs/inputs.jsonl"];
    let expected_scale = last_json_object(&ws.pf(&scale));
    assert_eq!(expected_scale["n_type"], "int", "the oracle converted --inputs n=3");
    let expected_total = last_json_object(&ws.pf(&total));
    assert_eq!(expected_total["scaled"], serde_json::json!([{"n": 5}]), "the oracle merged scale's output");
    let bad = ["flow", "test", "--flow", "flows/node-inputs", "--node", "scale", "--inputs", "n=x"];
    let refused = "The input for node is incorrect. Value for input 'n' of node 'scale' is not type 'int'.";
    let pf_bad = ws.pf_output(&bad);
    assert!(
        String::from_utf8_lossy(&pf_bad.stdout).contains(refused)
            || String::from_utf8_lossy(&pf_bad.stderr).contains(refused)
    );
    for (mode, python) in worker_pythons() {
        let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &scale)).unwrap();
        assert_eq!(ours, expected_scale, "--node scale ({mode})");
        let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &total)).unwrap();
        assert_eq!(ours, expected_total, "--node total ({mode})");
        let out = ws.flow_ci(python.as_deref(), &bad);
        assert_eq!(out.status.code(), Some(2), "--node scale n=x ({mode})");
        assert!(String::from_utf8_lossy(&out.stderr).contains(refused), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn batch_runs_match_pf() {
    let ws = Workspace::new();
    ws.pf(&["run", "create", "--file", "flows/node-env/run.yml", "--name", "node_env"]);
    let expected = read_jsonl(&ws.path().join("home/.promptflow/.runs/node_env/flow_outputs/output.jsonl"));
    assert_eq!(expected.len(), 3);
    for (i, (mode, python)) in worker_pythons().into_iter().enumerate() {
        let name = format!("node_env_{i}");
        ws.flow_ci_ok(mode, python.as_deref(), &["run", "create", "--file", "flows/node-env/run.yml", "--name", &name]);
        let ours = read_jsonl(&ws.path().join("flow-ci-runs").join(&name).join("output.jsonl"));
        assert_eq!(ours, expected, "node-env batch ({mode}): flow-ci (left) differs from pf (right)");
    }
}

/// Class tools promptflow refuses when it resolves the node: both refuse
/// before any line runs, with promptflow's error kind and message.
#[test]
fn class_tools_promptflow_refuses_are_refused_before_any_line() {
    let ws = Workspace::new();
    let cases = [
        (
            "init-reference",
            "(InputTypeMismatch) Invalid input for 'Greeter.greet': Initialization input 'greeting' requires a literal value, but ${flow.text} was received.",
        ),
        (
            "init-missing",
            "(MissingRequiredInputs) Required inputs ['greeting'] are not provided for tool 'Greeter.greet'.",
        ),
        (
            "init-raises",
            "(ToolLoadError) Failed to load package tool 'Greeter.greet': (RuntimeError) no greeting today",
        ),
        ("literal-type", "(NodeInputValidationError) Input 'times'"),
    ];
    for (case, message) in cases {
        let flow = format!("flows/load-errors/{case}");
        let args = ["flow", "test", "--flow", flow.as_str()];
        let out = ws.pf_output(&args);
        let pf_text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{case}: the oracle refuses it");
        assert!(
            pf_text.contains(&format!("Tool load failed in 'greet': {message}")),
            "{case}: the oracle's message changed:\n{pf_text}"
        );
        assert!(!pf_text.contains("Executing node greet"), "{case}: the oracle ran no node");
        for (mode, python) in worker_pythons() {
            let ours = ws.flow_ci(python.as_deref(), &args);
            let stderr = String::from_utf8_lossy(&ours.stderr);
            assert_eq!(ours.status.code(), Some(2), "{case} ({mode}): {stderr}");
            assert!(stderr.contains(&format!("Failed in 'greet': {message}")), "{case} ({mode}):\n{stderr}");
            assert!(ours.stdout.is_empty(), "{case} ({mode}): no outputs");
        }
    }
}

/// `validate` no longer rejects what promptflow's import finds: the
/// multi-line `@tool(...)` decorator and class tools.
#[test]
fn validate_accepts_the_flows_promptflow_runs() {
    let ws = Workspace::new();
    for flow in ["flows/node-env", "flows/script_tool_with_init", "flows/flow_with_sys_inject"] {
        let out = ws.flow_ci(None, &["validate", flow]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{flow}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Nodes returning generators and async generators: a flow output that is
/// one is its items joined, in `flow test` and in batch runs, as pf gives.
#[test]
fn generator_outputs_are_joined_as_pf_joins_them() {
    let ws = Workspace::new();
    let cases: [(&str, &[&str]); 6] = [
        ("flows/generators", &["text=a b c"]),
        ("flows/chat_flow_with_python_node_streaming_output", &["question=hi", "chat_history=[]"]),
        ("flows/generators", &["text=déjà vu ✓"]),
        ("flows/async_generator_tools", &["count=3"]),
        ("flows/generator_nodes", &["text=hello world"]),
        // No chat_history: pf flow test gives it `[]`.
        ("flows/chat_flow_with_python_node_streaming_output", &["question=how are you"]),
    ];
    for (flow, inputs) in cases {
        let mut args = vec!["flow", "test", "--flow", flow, "--inputs"];
        args.extend(inputs);
        let expected = last_json_object(&ws.pf(&args));
        for (mode, python) in worker_pythons() {
            let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &args)).unwrap();
            assert_eq!(ours, expected, "{flow} {inputs:?} ({mode}): flow-ci (left) differs from pf (right)");
        }
    }
    let expected =
        last_json_object(&ws.pf(&["flow", "test", "--flow", "flows/async_generator_tools", "--inputs", "count=2"]));
    assert_eq!(expected["answer"], "Echo - 0Echo - 1", "the oracle joins an async generator");

    ws.pf(&["run", "create", "--file", "flows/generators/run.yml", "--name", "generators"]);
    let expected = read_jsonl(&ws.path().join("home/.promptflow/.runs/generators/flow_outputs/output.jsonl"));
    assert_eq!(expected.len(), 3);
    for (i, (mode, python)) in worker_pythons().into_iter().enumerate() {
        let name = format!("generators_{i}");
        ws.flow_ci_ok(
            mode,
            python.as_deref(),
            &["run", "create", "--file", "flows/generators/run.yml", "--name", &name],
        );
        let ours = read_jsonl(&ws.path().join("flow-ci-runs").join(&name).join("output.jsonl"));
        assert_eq!(ours, expected, "generators batch ({mode}): flow-ci (left) differs from pf (right)");
    }
}

/// `serve` answers as `pf flow serve` does: a flow output that is a
/// generator comes as server-sent events when Accept names
/// text/event-stream, joined JSON otherwise; two such outputs are refused;
/// an Accept neither can serve is 406.
#[test]
fn serve_streams_generator_outputs_as_pf_serve_does() {
    let ws = Workspace::new();
    let client = reqwest::blocking::Client::new();
    let cases: [(&str, &str, &[Option<&str>]); 4] = [
        (
            "flows/generator_nodes",
            r#"{"text": "hello big world"}"#,
            &[
                Some("text/event-stream"),
                Some("text/event-stream, application/json"),
                Some("application/json"),
                Some("text/plain"),
                None,
            ],
        ),
        (
            "flows/chat_flow_with_python_node_streaming_output",
            r#"{"question": "déjà ✓", "chat_history": []}"#,
            &[Some("text/event-stream"), Some("*/*")],
        ),
        ("flows/generators", r#"{"text": "a b"}"#, &[Some("text/event-stream"), Some("application/json")]),
        ("flows/script_tool_with_init", r#"{"input": "there"}"#, &[Some("text/event-stream"), Some("text/*")]),
    ];
    for (flow, body, accepts) in cases {
        let pf_server = Served::pf(&ws.pf, flow, &client);
        for (mode, python) in worker_pythons() {
            let ours = Served::flow_ci(ws.path(), flow, 1, python.as_deref(), &client);
            for accept in accepts {
                let (status, content_type, text) = pf_server.score(&client, *accept, body);
                let (our_status, our_type, our_text) = ours.score(&client, *accept, body);
                let what = format!("{flow} Accept {accept:?} ({mode})");
                assert_eq!((our_status, our_type.as_str()), (status, content_type.as_str()), "{what}: {our_text}");
                if content_type == "text/event-stream" {
                    assert!(text.starts_with("data: {"), "{what}: the oracle streamed: {text}");
                    assert_eq!(our_text, text, "{what}: events differ (left flow-ci, right pf)");
                } else {
                    let expected: Json = serde_json::from_str(&text).unwrap();
                    let got: Json = serde_json::from_str(&our_text).unwrap();
                    assert_eq!(got, expected, "{what}: bodies differ (left flow-ci, right pf)");
                }
            }
        }
    }
}

/// A flow's `environment_variables` reach its python nodes as pf sets them:
/// numbers and mappings as `str`/`json.dumps` text, `${connection.key}`
/// resolved from the connection (promptflow's own test flows,
/// test_configs/flows/flow_with_*environment_variables), and a connection
/// that does not exist stops the flow before it runs, as pf's
/// ConnectionNotFoundError does.
#[test]
fn environment_variables_match_pf() {
    let ws = PfWorkspace::new("tests/vendor/promptflow/src/promptflow/tests/test_configs/flows");
    let conn = ws.path().join("aoai.yaml");
    std::fs::write(
        &conn,
        "name: azure_open_ai_connection\ntype: azure_open_ai\napi_base: https://example.invalid\napi_key: env-secret-1\napi_type: azure\n",
    )
    .unwrap();
    let flow_ci = |args: &[&str]| {
        let mut cmd = Command::cargo_bin("flow-ci").unwrap();
        let python = pf().parent().unwrap().join("python");
        cmd.current_dir(ws.path()).env("FLOW_CI_PYTHON", python).env_remove("VIRTUAL_ENV");
        cmd.env_remove("AZURE_OPENAI_ENDPOINT").env_remove("OPENAI_API_KEY");
        cmd.args(args).output().unwrap()
    };
    let no_connection =
        ["flow", "test", "--flow", "flows/flow_with_connection_ref_environment_variables", "--inputs", "key=API_KEY"];
    let refused = ws.pf_command(&no_connection).output().unwrap();
    assert!(String::from_utf8_lossy(&refused.stdout).contains("ConnectionNotFoundError"), "the oracle refuses it too");
    let ours = flow_ci(&no_connection);
    let stderr = String::from_utf8_lossy(&ours.stderr);
    assert_eq!(ours.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "environment variable `API_KEY` refers to connection `azure_open_ai_connection`, which is not defined"
        ),
        "{stderr}"
    );
    ws.pf_ok(&["connection", "create", "--file", conn.to_str().unwrap()]);
    let cases: [(&str, &str); 4] = [
        ("flows/flow_with_environment_variables", "key=env1"),
        ("flows/flow_with_environment_variables", "key=env3"),
        ("flows/flow_with_environment_variables", "key=env4"),
        ("flows/flow_with_connection_ref_environment_variables", "key=API_KEY"),
    ];
    for (flow, input) in cases {
        let args = ["flow", "test", "--flow", flow, "--inputs", input];
        let expected = last_json_object(&String::from_utf8_lossy(&ws.pf_ok(&args).stdout));
        let out = flow_ci(&[&args[..], &["--connection", conn.to_str().unwrap()]].concat());
        assert_eq!(out.status.code(), Some(0), "{flow} {input}: {}", String::from_utf8_lossy(&out.stderr));
        let ours: Json = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ours, expected, "{flow} {input}: flow-ci (left) differs from pf (right)");
    }
}

/// The stand-in `promptflow` covers every import of promptflow's own DAG
/// flows that is not promptflow's SDK, executor internals or promptflow-tools
/// (`corpus-imports/probe.py` lists them with the flows that need them), and
/// what those flows do with them reads as under promptflow: connections by
/// index, as attributes, `keys()` and `**conn`, strong-type custom
/// connections, `InputSetting`, `promptflow.exceptions`.
#[test]
fn the_stand_in_covers_what_the_corpus_imports() {
    let ws = Workspace::new();
    let args = ["flow", "test", "--flow", "flows/corpus-imports"];
    let expected = last_json_object(&ws.pf(&args));
    assert_eq!(expected["seen"]["custom"]["index"], "secret", "the oracle read a custom connection by index");
    assert_eq!(expected["seen"]["strong type"]["attributes"], serde_json::json!(["sk", "http://u"]));
    for (mode, python) in worker_pythons() {
        let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &args)).unwrap();
        assert_eq!(ours, expected, "corpus-imports ({mode}): flow-ci (left) differs from pf (right)");
    }
}

/// A tool whose connection parameter is a `CustomStrongTypeConnection`
/// subclass gets that class, built from the custom connection's values
/// (promptflow's _tool_resolver.py, _convert_to_custom_strong_type_connection_value).
#[test]
fn custom_strong_type_connections_are_the_class_the_tool_names() {
    let ws = Workspace::vendored();
    let conn = ws.path().join("custom_connection_2.yaml");
    std::fs::write(
        &conn,
        "name: custom_connection_2\ntype: custom\nconfigs:\n  api_url: http://u\nsecrets:\n  api_key: k\n",
    )
    .unwrap();
    ws.pf(&["connection", "create", "--file", conn.to_str().unwrap()]);
    let flow = "flows/src/promptflow/tests/test_configs/flows/flow_with_script_tool_with_custom_strong_type_connection";
    let expected = last_json_object(&ws.pf(&["flow", "test", "--flow", flow]));
    assert_eq!(expected["out"], "connection_value is MyCustomConnection: True");
    for (mode, python) in worker_pythons() {
        let args = ["flow", "test", "--flow", flow, "--connection", conn.to_str().unwrap()];
        let ours: Json = serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &args)).unwrap();
        assert_eq!(ours, expected, "strong type connection ({mode})");
    }
}

/// NaN and infinities: a `double` input given `nan`, `inf`, `-Infinity` or
/// `1e400` is the float Python's `float()` makes of it, and outputs and
/// metrics holding them are written with Python's tokens, in batch runs
/// (output.jsonl, metrics.json) and `flow test`, as pf writes them.
#[test]
fn nan_and_infinity_match_pf_in_inputs_outputs_and_metrics() {
    let ws = Workspace::new();
    let vendored = Workspace::vendored();
    let nan_inf = "flows/src/promptflow/tests/test_configs/flows/flow-with-nan-inf-metrics";
    std::fs::write(vendored.path().join("numbers.jsonl"), "{\"number\": 1}\n{\"number\": 2}\n").unwrap();
    let runs: [(&Workspace, &[&str], &str); 2] = [
        (&ws, &["--file", "flows/nan-inputs/run.yml"], "nan_inputs"),
        (&vendored, &["--flow", nan_inf, "--data", "numbers.jsonl"], "nan_inf_metrics"),
    ];
    for (ws, run, name) in runs {
        let mut args = vec!["run", "create", "--name", name];
        args.extend(run);
        ws.pf(&args);
        let pf_run = ws.path().join("home/.promptflow/.runs").join(name);
        let expected = read_jsonl(&pf_run.join("flow_outputs/output.jsonl"));
        let expected_metrics = read_python_json(&pf_run.join("metrics.json"));
        assert!(expected.len() >= 2, "{name}: the oracle completed its lines");
        for (i, (mode, python)) in worker_pythons().into_iter().enumerate() {
            let ours_name = format!("{name}_{i}");
            let mut args = vec!["run", "create", "--name", ours_name.as_str()];
            args.extend(run);
            ws.flow_ci_ok(mode, python.as_deref(), &args);
            let store = ws.path().join("flow-ci-runs").join(&ours_name);
            assert_eq!(read_jsonl(&store.join("output.jsonl")), expected, "{name} outputs ({mode})");
            assert_eq!(read_python_json(&store.join("metrics.json")), expected_metrics, "{name} metrics ({mode})");
        }
    }
    let nan_inputs = read_jsonl(&ws.path().join("home/.promptflow/.runs/nan_inputs/flow_outputs/output.jsonl"));
    assert_eq!(nan_inputs.len(), 6, "the oracle parsed every row as a float");
    assert_eq!(nan_inputs[0]["x"], exec::nonfinite::from_f64(f64::NAN));
    for x in ["nan", "-inf", "1e400"] {
        let args = ["flow", "test", "--flow", "flows/nan-inputs", "--inputs", &format!("x={x}")];
        let expected = last_json_object(&ws.pf(&args));
        for (mode, python) in worker_pythons() {
            let ours: Json = exec::nonfinite::parse(&ws.flow_ci_ok(mode, python.as_deref(), &args)).unwrap();
            assert_eq!(ours, expected, "flow test x={x} ({mode})");
        }
    }
}

/// promptflow's `conditional-flow-for-if-else` example answers at random:
/// its content_safety_check node is `random.choice([True, False])`. With
/// that choice pinned (a sitecustomize on PYTHONPATH, for pf and for
/// flow-ci's workers alike) both take the same branch and give the same answer.
#[test]
fn conditional_flow_answers_as_pf_once_its_random_check_is_pinned() {
    let ws = Workspace::vendored();
    let pin = ws.path().join("pin");
    std::fs::create_dir_all(&pin).unwrap();
    std::fs::write(
        pin.join("sitecustomize.py"),
        "import os, random\n_choice = random.choice\n\
         def choice(seq):\n    \
             pinned = os.environ.get('PIN_CHOICE')\n    \
             return seq[int(pinned)] if pinned is not None and list(seq) == [True, False] else _choice(seq)\n\
         random.choice = choice\n",
    )
    .unwrap();
    let flow = "flows/examples/flows/standard/conditional-flow-for-if-else";
    let args = ["flow", "test", "--flow", flow];
    // The flow's requirements name promptflow: both interpreters are given as
    // they are, so no environment is built for it.
    let pythons =
        [("promptflow installed", pf().parent().unwrap().join("python")), ("python3", PathBuf::from("python3"))];
    let mut answers = Vec::new();
    for index in ["0", "1"] {
        let mut cmd = ws.pf.pf_command(&args);
        let out = cmd.env("PYTHONPATH", &pin).env("PIN_CHOICE", index).output().unwrap();
        assert!(out.status.success(), "pf: {}", String::from_utf8_lossy(&out.stderr));
        let expected = last_json_object(&String::from_utf8_lossy(&out.stdout));
        for (mode, python) in &pythons {
            let out = Command::cargo_bin("flow-ci")
                .unwrap()
                .current_dir(ws.path())
                .env("FLOW_CI_RUNS_DIR", ws.path().join("flow-ci-runs"))
                .env("FLOW_CI_PYTHON", python)
                .env("PYTHONPATH", &pin)
                .env("PIN_CHOICE", index)
                .args(args)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
            let ours: Json = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(ours, expected, "choice {index} ({mode}): flow-ci (left) differs from pf (right)");
        }
        answers.push(expected["answer"].clone());
    }
    assert_eq!(answers[1], "I'm not familiar with your query: What is Prompt flow?.", "False takes the default branch");
    assert_ne!(answers[0], answers[1], "True takes the other branch");
}

/// promptflow's `no_inputs_outputs`: `flow test` gives `{}` (pf drops the
/// `line_number` a line's outputs carry, test_submitter.py, flow_test), and a
/// batch run is refused before any line with pf's message
/// (executor/flow_validator.py, "cannot be empty in batch mode").
#[test]
fn a_flow_without_inputs_or_outputs_runs_as_pf_runs_it() {
    let ws = Workspace::vendored();
    let flow = "flows/src/promptflow/tests/test_configs/flows/no_inputs_outputs";
    let expected = last_json_object(&ws.pf(&["flow", "test", "--flow", flow]));
    assert_eq!(expected, serde_json::json!({}));
    std::fs::write(ws.path().join("rows.jsonl"), "{\"a\": 1}\n").unwrap();
    let batch = ["run", "create", "--flow", flow, "--data", "rows.jsonl", "--name", "no_inputs"];
    let pf_out = ws.pf_output(&batch);
    let message = "The input for flow cannot be empty in batch mode. Please review your flow and provide valid inputs.";
    assert!(String::from_utf8_lossy(&pf_out.stdout).contains(message), "the oracle refuses the batch run");
    for (mode, python) in worker_pythons() {
        let ours: Json =
            serde_json::from_str(&ws.flow_ci_ok(mode, python.as_deref(), &["flow", "test", "--flow", flow])).unwrap();
        assert_eq!(ours, expected, "flow test ({mode})");
        let out = ws.flow_ci(python.as_deref(), &batch);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "run create ({mode}): {stderr}");
        assert!(stderr.contains(message), "run create ({mode}): {stderr}");
    }
}

/// One server-sent event's text (its lines up to the blank one), `None` at
/// the end of the body; an error when the body is cut short.
fn next_event(body: &mut impl std::io::BufRead) -> std::io::Result<Option<String>> {
    let mut event = String::new();
    loop {
        let mut line = String::new();
        if body.read_line(&mut line)? == 0 {
            return Ok((!event.is_empty()).then_some(event));
        }
        if line == "\n" && !event.is_empty() {
            return Ok(Some(event));
        }
        event.push_str(&line);
    }
}

/// What a client of the stream sees: the events up to the first item (read
/// before the gate file exists: the generator waits for it after that
/// item), the events after it, and whether the body ended cleanly.
type Seen = (u16, Vec<String>, Vec<String>, bool);

fn read_stream(server: &Served, client: &reqwest::blocking::Client, gate: &Path, fail: bool) -> Seen {
    let body = serde_json::json!({"question": "one two three", "gate": gate, "fail": fail});
    let response =
        client.post(format!("{}/score", server.url)).header("accept", "text/event-stream").json(&body).send().unwrap();
    let status = response.status().as_u16();
    let mut reader = std::io::BufReader::new(response);
    let mut before = Vec::new();
    while let Some(event) = next_event(&mut reader).unwrap() {
        let first_item = event.contains("\"answer\"");
        before.push(event);
        if first_item {
            break;
        }
    }
    std::fs::write(gate, "").unwrap();
    let mut after = Vec::new();
    let clean = loop {
        match next_event(&mut reader) {
            Ok(Some(event)) => after.push(event),
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    (status, before, after, clean)
}

/// `serve` sends a generator's items as the node yields them, after the
/// outputs that are no generator, as `pf flow serve` does: the flow's
/// generator yields one item, then waits for a file this test creates only
/// once it has read that item from the open response. A generator that
/// raises after its first item cuts the body short on both sides (no error
/// event). The JSON answer is the joined text, as before.
#[test]
fn serve_streams_items_as_the_generator_yields_them_as_pf_serve_does() {
    let ws = Workspace::new();
    let client = reqwest::blocking::Client::new();
    let pf_server = Served::pf(&ws.pf, "flows/stream_gate", &client);
    let gate = |name: &str| ws.path().join(format!("gate-{name}"));
    let expected = read_stream(&pf_server, &client, &gate("pf"), false);
    assert_eq!(expected.1.len(), 2, "the oracle sends the other outputs, then the first item: {expected:?}");
    assert!(expected.3 && expected.2.len() == 2, "the oracle streamed: {expected:?}");
    let expected_broken = read_stream(&pf_server, &client, &gate("pf-broken"), true);
    assert!(!expected_broken.3, "the oracle cuts a broken stream short: {expected_broken:?}");
    let json_body = serde_json::json!({"question": "one two three", "gate": gate("pf")});
    let expected_json: Json =
        client.post(format!("{}/score", pf_server.url)).json(&json_body).send().unwrap().json().unwrap();
    for (mode, python) in worker_pythons() {
        let ours = Served::flow_ci(ws.path(), "flows/stream_gate", 2, python.as_deref(), &client);
        let seen = read_stream(&ours, &client, &gate(&format!("ours-{mode}")), false);
        assert_eq!(seen, expected, "({mode}): flow-ci (left) differs from pf (right)");
        let broken = read_stream(&ours, &client, &gate(&format!("ours-broken-{mode}")), true);
        assert_eq!(broken, expected_broken, "({mode}): a broken stream, flow-ci (left) differs from pf (right)");
        let json: Json = client.post(format!("{}/score", ours.url)).json(&json_body).send().unwrap().json().unwrap();
        assert_eq!(json, expected_json, "({mode}): the JSON answer, flow-ci (left) differs from pf (right)");
    }
}
