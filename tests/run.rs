//! The local executor driven through the binary: `flow test`, `run create`
//! (batch and evaluation), failures that stay on their line, worker crashes
//! and hangs, and the run store commands.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};
use support::project::Project;

/// A classifier flow (python + prompt) and an evaluation flow with aggregation.
fn classification_project() -> Project {
    let p = Project::new();
    p.write(
        "flows/classify/flow.dag.yaml",
        r#"inputs:
  text:
    type: string
  strict:
    type: bool
    default: false
outputs:
  category:
    type: string
    reference: ${decide.output.category}
  prompt:
    type: string
    reference: ${render.output}
nodes:
- name: render
  type: prompt
  source:
    type: code
    path: prompt.jinja2
  inputs:
    text: ${inputs.text}
    labels: '["spam", "ham"]'
- name: decide
  type: python
  source:
    type: code
    path: decide.py
  inputs:
    prompt: ${render.output}
    text: ${inputs.text}
    strict: ${inputs.strict}
"#,
    )
    .write("flows/classify/prompt.jinja2", "# system:\nClassify into {{ labels }}.\n# user:\n{{ text }}\n")
    .write(
        "flows/classify/decide.py",
        r#"from promptflow.core import tool


@tool
def decide(prompt: str, text: str, strict: bool) -> dict:
    if "boom" in text:
        raise ValueError("cannot classify: " + text)
    return {"category": "spam" if "win" in text.lower() else "ham", "length": len(prompt)}
"#,
    )
    .write(
        "flows/classify/data.jsonl",
        &(0..12)
            .map(|i| {
                let text = match i {
                    3 => "boom goes the parser".to_string(),
                    i if i % 2 == 0 => format!("WIN a prize {i}"),
                    i => format!("meeting notes {i}"),
                };
                let label = if i % 2 == 0 { "spam" } else { "ham" };
                json!({"text": text, "label": label}).to_string() + "\n"
            })
            .collect::<String>(),
    )
    .write("flows/classify/run.yml", "flow: .\ndata: data.jsonl\ncolumn_mapping:\n  text: ${data.text}\n")
    .write(
        "flows/eval/flow.dag.yaml",
        r#"inputs:
  groundtruth:
    type: string
  prediction:
    type: string
outputs:
  grade:
    type: string
    reference: ${grade.output}
nodes:
- name: grade
  type: python
  source:
    type: code
    path: grade.py
  inputs:
    groundtruth: ${inputs.groundtruth}
    prediction: ${inputs.prediction}
- name: accuracy
  type: python
  source:
    type: code
    path: accuracy.py
  inputs:
    grades: ${grade.output}
  aggregation: true
"#,
    )
    .write(
        "flows/eval/grade.py",
        "from promptflow.core import tool\n\n\n@tool\ndef grade(groundtruth: str, prediction: str) -> str:\n    return \"Correct\" if groundtruth == prediction else \"Incorrect\"\n",
    )
    .write(
        "flows/eval/accuracy.py",
        "from promptflow.core import log_metric, tool\n\n\n@tool\ndef accuracy(grades: list) -> float:\n    value = round(grades.count(\"Correct\") / len(grades), 4)\n    log_metric(\"accuracy\", value)\n    return value\n",
    )
    .write(
        "flows/eval/run.yml",
        "flow: .\ndata: ../classify/data.jsonl\nrun: classify_base\ncolumn_mapping:\n  groundtruth: ${data.label}\n  prediction: ${run.outputs.category}\n",
    );
    p
}

#[test]
fn flow_test_prints_the_outputs_of_one_line() {
    let p = classification_project();
    let out =
        p.flow_ci().args(["flow", "test", "--flow", "flows/classify", "--inputs", "text=You WIN"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["category"], "spam");
    assert_eq!(doc["prompt"], "# system:\nClassify into [\"spam\", \"ham\"].\n# user:\nYou WIN\n");
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("{\n    \"category\""), "4-space indent like pf");
}

#[test]
fn flow_test_reports_missing_inputs_and_node_errors() {
    let p = classification_project();
    let out = p.flow_ci().args(["flow", "test", "--flow", "flows/classify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Required input(s) ['text'] are missing for \"flow\"."));
    // A typo in an input name is ignored, as in promptflow, but not silently.
    let out = p.flow_ci().args(["flow", "test", "--flow", "flows/classify", "--inputs", "txet=hi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: --inputs `txet` is not an input of the flow and is ignored; did you mean `text`?"),
        "{stderr}"
    );
    let out = p.flow_ci().args(["flow", "test", "--flow", "flows/classify", "--inputs", "text=boom"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Execution failure in 'decide': (ValueError) cannot classify: boom"), "{stderr}");
    assert!(stderr.contains("decide.py:7"), "points at the raising line: {stderr}");
}

#[test]
fn flow_test_runs_a_single_node_with_named_inputs() {
    let p = classification_project();
    let out = p
        .flow_ci()
        .args([
            "flow",
            "test",
            "--flow",
            "flows/classify",
            "--node",
            "decide",
            "--inputs",
            "prompt=p",
            "inputs.text=win",
            "strict=false",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc, json!({"category": "spam", "length": 1}));
}

#[test]
fn batch_and_evaluation_runs_fill_the_store() {
    let p = classification_project();
    let out = p
        .flow_ci()
        .args(["run", "create", "--file", "flows/classify/run.yml", "--name", "classify_base"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("11 completed, 1 failed of 12"), "{stdout}");

    let outputs = p.read_jsonl(".flow-ci/runs/classify_base/output.jsonl");
    assert_eq!(outputs.len(), 11, "the failed line is left out");
    assert!(outputs.iter().all(|o| o["line_number"] != 3));
    assert_eq!(outputs[0]["line_number"], 0);
    assert_eq!(outputs[0]["category"], "spam");
    let record = p.read_json(".flow-ci/runs/classify_base/run.json");
    assert_eq!(record["status"], "Completed");
    assert_eq!(record["error"]["failed_lines"], json!([3]));
    let details = p.read_jsonl(".flow-ci/runs/classify_base/details.jsonl");
    let failed = details.iter().find(|d| d["line_number"] == 3).unwrap();
    assert_eq!(failed["status"], "Failed");
    assert!(failed["error"]["traceback"].as_str().unwrap().contains("ValueError: cannot classify"));

    let out = p.flow_ci().args(["run", "create", "--file", "flows/eval/run.yml", "--name", "eval"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let eval_outputs = p.read_jsonl(".flow-ci/runs/eval/output.jsonl");
    assert_eq!(eval_outputs.len(), 11, "lines failed in the base run are skipped");
    assert_eq!(p.read_json(".flow-ci/runs/eval/metrics.json"), json!({"accuracy": 1.0}));

    let out = p.flow_ci().args(["run", "show-metrics", "--name", "eval"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<Json>(&out.stdout).unwrap(), json!({"accuracy": 1.0}));
    // Local runs: cancel says there is no service to ask (no sign-in), stream says its log is empty.
    let out = p.flow_ci().args(["run", "cancel", "--name", "eval"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run eval ran locally (Completed); only Azure ML runs are canceled"), "{stderr}");
    let out = p.flow_ci().args(["run", "stream", "--name", "eval"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run eval ran locally (Completed); its log is empty"));
    let out = p.flow_ci().args(["run", "list", "--format", "json"]).output().unwrap();
    let runs: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
    let out = p.flow_ci().args(["run", "show-details", "--name", "classify_base"]).output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("inputs.text") && table.contains("outputs.category") && table.contains("(Failed)"),
        "{table}"
    );
    let out = p.flow_ci().args(["run", "compare", "eval", "eval", "--format", "json"]).output().unwrap();
    let cmp: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cmp["metrics"][0]["delta"], 0.0);
}

#[test]
fn run_names_are_unique_unless_forced() {
    let p = classification_project();
    let create = |extra: &[&str]| {
        let mut args = vec!["run", "create", "--file", "flows/classify/run.yml", "--name", "r1"];
        args.extend(extra);
        p.flow_ci().args(&args).output().unwrap()
    };
    assert_eq!(create(&[]).status.code(), Some(0));
    let out = create(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(create(&["--force"]).status.code(), Some(0));
}

#[test]
fn a_missing_base_run_lists_recent_runs() {
    let p = classification_project();
    p.flow_ci().args(["run", "create", "--file", "flows/classify/run.yml", "--name", "earlier"]).assert().success();
    let out = p.flow_ci().args(["run", "create", "--file", "flows/eval/run.yml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no run named `classify_base`") && stderr.contains("recent runs: earlier"), "{stderr}");
}

#[test]
fn invalid_run_files_stop_before_running() {
    let p = classification_project();
    p.write("flows/classify/bad.yml", "flow: .\ndata: data.jsonl\ncolumn_mapping:\n  text: ${data.txt}\n");
    let out = p.flow_ci().args(["run", "create", "--file", "flows/classify/bad.yml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "flows/classify/bad.yml:4:9: error: column `txt` (mapped to input `text`) is not in data `data.jsonl`"
        ),
        "{stderr}"
    );
    assert!(!p.path().join(".flow-ci/runs").exists(), "nothing ran");
}

/// A python interpreter reachable under a unique path, so this test can count
/// its own worker processes while other tests run.
fn unique_python(p: &Project) -> PathBuf {
    let real = real_python();
    let link = p.path().join("bin/python3-under-test");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(real, &link).unwrap();
    link
}

/// The interpreter itself, not a pyenv-style shim that dispatches on its name.
fn real_python() -> PathBuf {
    let out = std::process::Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn processes_running(marker: &Path) -> usize {
    let out = std::process::Command::new("pgrep").args(["-f", &marker.display().to_string()]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn crashing_and_hanging_lines_fail_alone_and_leave_no_workers() {
    let p = Project::new();
    p.write(
        "flow/flow.dag.yaml",
        "inputs:\n  mode:\n    type: string\noutputs:\n  out:\n    type: string\n    reference: ${act.output}\nnodes:\n- name: act\n  type: python\n  source:\n    type: code\n    path: act.py\n  inputs:\n    mode: ${inputs.mode}\n",
    )
    .write(
        "flow/act.py",
        "import os\nimport time\nfrom promptflow.core import tool\n\n\n@tool\ndef act(mode: str) -> str:\n    if mode == \"crash\":\n        os._exit(1)\n    if mode == \"hang\":\n        time.sleep(120)\n    return mode.upper()\n",
    )
    .write("flow/data.jsonl", "{\"mode\": \"a\"}\n{\"mode\": \"crash\"}\n{\"mode\": \"b\"}\n{\"mode\": \"hang\"}\n{\"mode\": \"c\"}\n");
    let python = unique_python(&p);
    let out = p
        .flow_ci()
        .args([
            "run",
            "create",
            "--flow",
            "flow",
            "--data",
            "flow/data.jsonl",
            "--name",
            "chaos",
            "--line-timeout",
            "2",
            "--workers",
            "2",
        ])
        .arg("--python")
        .arg(&python)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let outputs = p.read_jsonl(".flow-ci/runs/chaos/output.jsonl");
    let done: Vec<&str> = outputs.iter().map(|o| o["out"].as_str().unwrap()).collect();
    assert_eq!(done, vec!["A", "B", "C"]);
    let record = p.read_json(".flow-ci/runs/chaos/run.json");
    assert_eq!(record["error"]["failed_lines"], json!([1, 3]));
    let details = p.read_jsonl(".flow-ci/runs/chaos/details.jsonl");
    let kind = |n: u64| details.iter().find(|d| d["line_number"] == n).unwrap()["error"]["type"].clone();
    assert_eq!(kind(1), "ToolExecutionError");
    assert_eq!(kind(3), "LineExecutionTimeoutError");
    assert_eq!(processes_running(&python), 0, "every python worker exited with the run");
}

#[test]
fn ctrl_c_cancels_the_run_and_keeps_what_finished() {
    let p = Project::new();
    p.write(
        "flow/flow.dag.yaml",
        "inputs:\n  n:\n    type: int\noutputs:\n  out:\n    type: int\n    reference: ${wait.output}\nnodes:\n- name: wait\n  type: python\n  source:\n    type: code\n    path: wait.py\n  inputs:\n    n: ${inputs.n}\n",
    )
    .write("flow/wait.py", "import time\nfrom promptflow.core import tool\n\n\n@tool\ndef wait(n: int) -> int:\n    time.sleep(0.0 if n < 2 else 0.5)\n    return n\n")
    .write("flow/data.jsonl", &(0..40).map(|n| format!("{{\"n\": {n}}}\n")).collect::<String>());
    let bin = assert_cmd::cargo::cargo_bin("flow-ci");
    let mut child = std::process::Command::new(bin)
        .args(["run", "create", "--flow", "flow", "--data", "flow/data.jsonl", "--name", "stopped", "--workers", "1"])
        .current_dir(p.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a few lines are done, then interrupt like Ctrl-C does.
    let details = p.path().join(".flow-ci/runs/stopped/details.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&details).map_or(0, |t| t.lines().count()) < 3 {
        assert!(std::time::Instant::now() < deadline, "run made no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let record = p.read_json(".flow-ci/runs/stopped/run.json");
    assert_eq!(record["status"], "Canceled");
    let done = p.read_jsonl(".flow-ci/runs/stopped/output.jsonl").len();
    assert!((3..40).contains(&done), "kept the {done} finished lines, not more");
}

#[test]
fn variants_are_selected_like_promptflow() {
    let p = Project::new();
    p.write(
        "flow/flow.dag.yaml",
        "inputs:\n  text:\n    type: string\noutputs:\n  out:\n    type: string\n    reference: ${greet.output}\nnodes:\n- name: greet\n  use_variants: true\nnode_variants:\n  greet:\n    default_variant_id: variant_0\n    variants:\n      variant_0:\n        node:\n          type: prompt\n          source:\n            type: code\n            path: hello.jinja2\n          inputs:\n            text: ${inputs.text}\n      variant_1:\n        node:\n          type: prompt\n          source:\n            type: code\n            path: hi.jinja2\n          inputs:\n            text: ${inputs.text}\n",
    )
    .write("flow/hello.jinja2", "Hello {{ text }}")
    .write("flow/hi.jinja2", "Hi {{ text }}!");
    let test = |extra: &[&str]| {
        let mut args = vec!["flow", "test", "--flow", "flow", "--inputs", "text=Ada"];
        args.extend(extra);
        let out = p.flow_ci().args(&args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(test(&[]).1.contains("\"out\": \"Hello Ada\""));
    assert!(test(&["--variant", "${greet.variant_1}"]).1.contains("\"out\": \"Hi Ada!\""));
    let (code, _, stderr) = test(&["--variant", "${greet.variant_9}"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("Variant variant_9 not found for node greet"), "{stderr}");
}

#[test]
fn csv_data_and_flag_mappings_drive_a_run() {
    let p = classification_project();
    p.write("in.csv", "message,gold\nWIN big,spam\nhello there,ham\n");
    let out = p
        .flow_ci()
        .args([
            "run",
            "create",
            "--flow",
            "flows/classify",
            "--data",
            "in.csv",
            "--column-mapping",
            "text=${data.message}",
            "--name",
            "csv",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let outputs = p.read_jsonl(".flow-ci/runs/csv/output.jsonl");
    let cats: Vec<&str> = outputs.iter().map(|o| o["category"].as_str().unwrap()).collect();
    assert_eq!(cats, vec!["spam", "ham"]);
    let record = p.read_json(".flow-ci/runs/csv/run.json");
    assert_eq!(record["column_mapping"]["text"], "${data.message}");
}

#[test]
fn environment_variables_reach_python_nodes_and_run_files_override_them() {
    let p = Project::new();
    p.write(
        "flow/flow.dag.yaml",
        "inputs:\n  key:\n    type: string\noutputs:\n  value:\n    type: string\n    reference: ${read.output}\nnodes:\n- name: read\n  type: python\n  source:\n    type: code\n    path: read.py\n  inputs:\n    key: ${inputs.key}\nenvironment_variables:\n  GREETING: hello\n  TARGET: flow\n",
    )
    .write("flow/read.py", "import os\nfrom promptflow.core import tool\n\n\n@tool\ndef read(key: str) -> str:\n    return os.environ.get(key, \"<unset>\")\n")
    .write("flow/data.jsonl", "{\"key\": \"GREETING\"}\n{\"key\": \"TARGET\"}\n")
    .write("flow/run.yml", "flow: .\ndata: data.jsonl\nenvironment_variables:\n  TARGET: run-file\n");
    let out = p.flow_ci().args(["flow", "test", "--flow", "flow", "--inputs", "key=TARGET"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<Json>(&out.stdout).unwrap(), json!({"value": "flow"}));
    p.flow_ci().args(["run", "create", "--file", "flow/run.yml", "--name", "env"]).assert().success();
    let values: Vec<Json> =
        p.read_jsonl(".flow-ci/runs/env/output.jsonl").into_iter().map(|o| o["value"].clone()).collect();
    assert_eq!(values, vec![json!("hello"), json!("run-file")]);
}

/// A flow whose python node returns NaN on one line, and an aggregation
/// node logging a NaN metric next to a normal one.
fn nan_project() -> Project {
    let p = Project::new();
    p.write(
        "flow/flow.dag.yaml",
        "inputs:\n  x:\n    type: string\noutputs:\n  score:\n    type: double\n    reference: ${score.output}\nnodes:\n- name: score\n  type: python\n  source:\n    type: code\n    path: score.py\n  inputs:\n    x: ${inputs.x}\n- name: summarize\n  type: python\n  source:\n    type: code\n    path: summarize.py\n  inputs:\n    scores: ${score.output}\n  aggregation: true\n",
    )
    .write("flow/score.py", "from promptflow.core import tool\n\n\n@tool\ndef score(x: str) -> float:\n    return float(x)\n")
    .write(
        "flow/summarize.py",
        "import math\nfrom promptflow.core import tool, log_metric\n\n\n@tool\ndef summarize(scores: list) -> int:\n    log_metric(\"mean\", sum(scores) / len(scores))\n    log_metric(\"nan_lines\", sum(1 for s in scores if math.isnan(s)))\n    return len(scores)\n",
    )
    .write("flow/data.jsonl", "{\"x\": \"nan\"}\n{\"x\": \"1.5\"}\n")
    .write(
        "eval/flow.dag.yaml",
        "inputs:\n  score:\n    type: double\noutputs:\n  is_nan:\n    type: bool\n    reference: ${check.output}\nnodes:\n- name: check\n  type: python\n  source:\n    type: code\n    path: check.py\n  inputs:\n    score: ${inputs.score}\n",
    )
    .write("eval/check.py", "import math\nfrom promptflow.core import tool\n\n\n@tool\ndef check(score: float) -> bool:\n    return math.isnan(score)\n")
    .write("eval/run.yml", "flow: .\nrun: nan\ncolumn_mapping:\n  score: ${run.outputs.score}\n");
    p
}

#[test]
fn nan_outputs_and_metrics_are_kept_like_promptflow() {
    let p = nan_project();
    let out = p
        .flow_ci()
        .args(["run", "create", "--flow", "flow", "--data", "flow/data.jsonl", "--name", "nan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let run = p.path().join(".flow-ci/runs/nan");
    // Python's json.dump writes NaN as a bare token, and so does promptflow's output.jsonl.
    let outputs = std::fs::read_to_string(run.join("output.jsonl")).unwrap();
    let rows: Vec<&str> = outputs.lines().collect();
    assert_eq!(rows, vec![r#"{"line_number":0,"score":NaN}"#, r#"{"line_number":1,"score":1.5}"#]);
    // The NaN came back into python as a float: one NaN line, and a NaN mean.
    let metrics = std::fs::read_to_string(run.join("metrics.json")).unwrap();
    assert!(metrics.contains("\"mean\": NaN") && metrics.contains("\"nan_lines\": 1"), "{metrics}");
    assert!(std::fs::read_to_string(run.join("details.jsonl")).unwrap().contains("\"score\":NaN"));
    // flow-ci reads its own files back.
    for view in ["show", "show-details", "show-metrics"] {
        let out = p.flow_ci().args(["run", view, "--name", "nan"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "run {view}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // An evaluation reads the NaN through `${run.outputs.score}` into a double input.
    let out = p.flow_ci().args(["run", "create", "--file", "eval/run.yml", "--name", "nan_eval"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let checked: Vec<Json> =
        p.read_jsonl(".flow-ci/runs/nan_eval/output.jsonl").iter().map(|o| o["is_nan"].clone()).collect();
    assert_eq!(checked, vec![json!(true), json!(false)]);
}

/// A flow whose second line sleeps in python after writing the worker's pid.
fn sleeping_project() -> Project {
    let p = Project::new();
    p.write(
        "flow/flow.dag.yaml",
        "inputs:\n  n:\n    type: int\noutputs:\n  out:\n    type: int\n    reference: ${wait.output}\nnodes:\n- name: wait\n  type: python\n  source:\n    type: code\n    path: wait.py\n  inputs:\n    n: ${inputs.n}\n",
    )
    .write(
        "flow/wait.py",
        "import os\nimport time\nfrom promptflow.core import tool\n\n\n@tool\ndef wait(n: int) -> int:\n    if n > 0:\n        with open(os.path.join(os.path.dirname(__file__), 'worker.pid.tmp'), 'w') as f:\n            f.write(str(os.getpid()))\n        os.rename(os.path.join(os.path.dirname(__file__), 'worker.pid.tmp'), os.path.join(os.path.dirname(__file__), 'worker.pid'))\n        time.sleep(30)\n    return n\n",
    )
    .write("flow/data.jsonl", "{\"n\": 0}\n{\"n\": 1}\n");
    p
}

fn spawn_run(p: &Project, name: &str, own_group: bool) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("flow-ci"));
    cmd.args(["run", "create", "--flow", "flow", "--data", "flow/data.jsonl", "--name", name, "--workers", "1"])
        .current_dir(p.path())
        .env_remove("FLOW_CI_RUNS_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(p.path().join("stderr.txt")).unwrap());
    if own_group {
        cmd.process_group(0);
    }
    cmd.spawn().unwrap()
}

/// Waits (bounded) until `ready` holds.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The worker's pid, once the sleeping line has started.
fn sleeping_worker(p: &Project) -> String {
    let pid_file = p.path().join("flow/worker.pid");
    wait_for("the sleeping line", || pid_file.exists());
    std::fs::read_to_string(pid_file).unwrap()
}

fn exit_code(child: &mut std::process::Child) -> Option<i32> {
    let mut status = None;
    wait_for("flow-ci to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.and_then(|s| s.code())
}

fn signal(sig: &str, target: &str) {
    std::process::Command::new("kill").args([sig, "--", target]).status().unwrap();
}

#[test]
fn a_second_ctrl_c_stops_the_line_in_flight_and_still_records_the_run() {
    let p = sleeping_project();
    let mut child = spawn_run(&p, "stopped", false);
    let worker = sleeping_worker(&p);
    let pid = child.id().to_string();
    signal("-INT", &pid);
    let stderr = p.path().join("stderr.txt");
    wait_for("the first Ctrl-C", || std::fs::read_to_string(&stderr).unwrap().contains("interrupted"));
    signal("-INT", &pid);
    assert_eq!(exit_code(&mut child), Some(130), "{}", std::fs::read_to_string(&stderr).unwrap());
    let record = p.read_json(".flow-ci/runs/stopped/run.json");
    assert_eq!(record["status"], "Canceled");
    let outputs = p.read_jsonl(".flow-ci/runs/stopped/output.jsonl");
    assert_eq!(outputs, vec![json!({"line_number": 0, "out": 0})]);
    let details = p.read_jsonl(".flow-ci/runs/stopped/details.jsonl");
    let stopped = details.iter().find(|d| d["line_number"] == 1).unwrap();
    assert_eq!((&stopped["status"], &stopped["nodes"][0]["status"]), (&json!("Canceled"), &json!("Canceled")));
    assert!(!Path::new(&format!("/proc/{}", worker.trim())).exists(), "python worker {worker} was left running");
}

#[test]
fn sigterm_to_the_process_group_cancels_the_line_in_flight() {
    let p = sleeping_project();
    let mut child = spawn_run(&p, "terminated", true);
    let worker = sleeping_worker(&p);
    signal("-TERM", &format!("-{}", child.id()));
    assert_eq!(exit_code(&mut child), Some(130), "{}", std::fs::read_to_string(p.path().join("stderr.txt")).unwrap());
    let record = p.read_json(".flow-ci/runs/terminated/run.json");
    assert_eq!(record["status"], "Canceled");
    let details = p.read_jsonl(".flow-ci/runs/terminated/details.jsonl");
    assert_eq!(details.iter().find(|d| d["line_number"] == 1).unwrap()["status"], "Canceled", "{details:?}");
    assert!(!Path::new(&format!("/proc/{}", worker.trim())).exists(), "python worker {worker} was left running");
}

/// `run create --stream` prints each line's result when that line finishes,
/// not after the run: line 1 waits until the test has read line 0's result
/// from flow-ci's stderr (a file the test then writes), so a run that held
/// its results back would see line 1 fail waiting (after 60 s), and a
/// streamed one completes both. Errors are streamed with their message.
#[test]
fn run_create_stream_prints_each_line_as_it_finishes() {
    use std::io::BufRead;
    let p = Project::new();
    let go = p.path().join("go");
    p.write(
        "flow/flow.dag.yaml",
        "inputs:\n  n:\n    type: int\noutputs:\n  out:\n    type: int\n    reference: ${step.output}\nnodes:\n- name: step\n  type: python\n  source:\n    type: code\n    path: step.py\n  inputs:\n    n: ${inputs.n}\n",
    )
    .write(
        "flow/step.py",
        &format!(
            "import os, time\nfrom promptflow.core import tool\n\n\n@tool\ndef step(n: int) -> int:\n    if n == 1:\n        for _ in range(600):\n            if os.path.exists({go:?}):\n                break\n            time.sleep(0.1)\n        else:\n            raise TimeoutError('line 0 was not streamed before line 1 ended')\n    if n == 2:\n        raise ValueError('no two')\n    return n\n",
            go = go.to_str().unwrap()
        ),
    )
    .write("flow/data.jsonl", "{\"n\": 0}\n{\"n\": 1}\n{\"n\": 2}\n");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("flow-ci"))
        .args(["run", "create", "--flow", "flow", "--data", "flow/data.jsonl", "--name", "streamed", "--workers", "1"])
        .arg("--stream")
        .current_dir(p.path())
        .env_remove("GITHUB_ACTIONS")
        .env_remove("TF_BUILD")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if line.starts_with("line ") {
            seen.push(line.trim_end().to_string());
        }
        if line.starts_with("line 0: ") {
            std::fs::write(&go, "").unwrap();
        }
        line.clear();
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(
        seen,
        ["line 0: Completed", "line 1: Completed", "line 2: Failed: Execution failure in 'step': (ValueError) no two"],
        "printed once each, as they finished"
    );
    let record = p.read_json(".flow-ci/runs/streamed/run.json");
    assert_eq!((record["lines"]["completed"].clone(), record["lines"]["failed"].clone()), (json!(2), json!(1)));
}

/// Parallel nodes that fail give the same error on every run: the first
/// failing node in flow order, not the first to fail in time. `early` writes
/// a file and raises; `slow` waits for that file, so `early` always fails
/// first in time, and `late` (after `slow`, before `early` in the flow) has
/// not even started then: it still runs, and its failure is the one
/// reported. promptflow reports whichever failure its scheduler hears first
/// (`_flow_nodes_scheduler.py`, `futures.wait(..., FIRST_COMPLETED)`), which
/// is why promptflow's own eval-summarization named a different node from
/// one run to the next.
#[test]
fn the_failure_reported_for_a_line_is_the_first_in_flow_order() {
    let p = Project::new();
    let gate = p.path().join("gate");
    let gate = gate.to_str().unwrap();
    let node = |name: &str, input: &str| {
        format!(
            "- name: {name}\n  type: python\n  source:\n    type: code\n    path: {name}.py\n  inputs:\n    n: {input}\n"
        )
    };
    let tool = |name: &str, body: &str| {
        format!("import os, time\nfrom promptflow.core import tool\n\n\n@tool\ndef {name}(n: int) -> int:\n{body}")
    };
    p.write(
        "flow/flow.dag.yaml",
        &format!(
            "inputs:\n  n:\n    type: int\noutputs:\n  a:\n    type: int\n    reference: ${{late.output}}\n  b:\n    type: int\n    reference: ${{early.output}}\nnodes:\n{}{}{}",
            node("slow", "${inputs.n}"),
            node("late", "${slow.output}"),
            node("early", "${inputs.n}"),
        ),
    )
    .write(
        "flow/slow.py",
        &tool(
            "slow",
            &format!("    for _ in range(600):\n        if os.path.exists({gate:?}):\n            return n\n        time.sleep(0.1)\n    raise TimeoutError('early never ran')\n"),
        ),
    )
    .write("flow/late.py", &tool("late", "    raise ValueError('late')\n"))
    .write("flow/early.py", &tool("early", &format!("    open({gate:?}, 'w').close()\n    raise ValueError('early')\n")))
    .write("flow/data.jsonl", "{\"n\": 0}\n");
    let out = p
        .flow_ci()
        .args(["run", "create", "--flow", "flow", "--data", "flow/data.jsonl", "--name", "both_fail"])
        .args(["--workers", "2", "--stream"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 0: Failed: Execution failure in 'late': (ValueError) late"), "{stderr}");
}
