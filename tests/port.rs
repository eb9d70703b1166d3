//! Ports: a Microsoft Agent Framework workflow run like a flow
//! (`run create --workflow`), with agent-framework-core from the package
//! registry installed into the port's own environment from its
//! requirements.txt (`fixtures/flows/web-classification-maf`, a port of the
//! example web-classification flow in the shape of promptflow's own
//! `examples/flows/standard/web-classification-maf`).
//!
//! One test, in phases, so the environment is built once (pip: ~20 s).

mod support;

use serde_json::Value as Json;
use support::fs::copy_tree;
use support::project::Project;

const PORT: &str = "flows/web-classification-maf/workflow.py";

fn fixtures() -> Project {
    let p = Project::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    copy_tree(&root, p.path(), &["invalid", ".ignore", "runs"]);
    p
}

fn run(p: &Project, args: &[&str]) -> (Option<i32>, String) {
    let out = p.flow_ci().args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

fn column(p: &Project, run: &str, name: &str) -> Vec<Json> {
    p.read_jsonl(&format!(".flow-ci/runs/{run}/output.jsonl")).iter().map(|r| r[name].clone()).collect()
}

#[test]
fn a_port_runs_like_a_flow_and_is_evaluated_like_one() {
    let p = fixtures();
    let data = ["--data", "flows/web-classification/data.jsonl"];
    let mapping = ["--column-mapping", "url=${data.url}", "text=${data.text}"];

    // The port, its two mapped inputs built into its start dataclass.
    let mut args = vec!["run", "create", "--workflow", PORT, "--start", "Page", "--name", "port"];
    args.extend(data.iter().chain(&mapping));
    let (code, out) = run(&p, &args);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("installing requirements.txt for flows/web-classification-maf"), "{out}");
    assert!(out.contains("60 completed, 0 failed of 60"), "{out}");
    // The flow on the same data: the port agrees on every line.
    let mut args = vec!["run", "create", "--flow", "flows/web-classification", "--name", "flow"];
    args.extend(data.iter().chain(&mapping));
    let (code, out) = run(&p, &args);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(column(&p, "port", "category"), column(&p, "flow", "category"));
    let lines: Vec<Json> = column(&p, "port", "line_number");
    assert_eq!(lines, (0..60).map(Json::from).collect::<Vec<_>>(), "output.jsonl in line order");

    // The flow's evaluation, unchanged, over each: `${run.outputs.category}`
    // is the key the port yields.
    for (base, eval) in [("port", "port-eval"), ("flow", "flow-eval")] {
        let args = ["run", "create", "--file", "flows/eval-accuracy/run.yml", "--run", base, "--name", eval];
        let (code, out) = run(&p, &args);
        assert_eq!(code, Some(0), "{out}");
    }
    let metrics = |name: &str| p.read_json(&format!(".flow-ci/runs/{name}/metrics.json"));
    assert_eq!(metrics("port-eval"), metrics("flow-eval"));
    assert!(metrics("port-eval")["accuracy"].as_f64().is_some(), "{}", metrics("port-eval"));

    // A port that raises on a line: that line fails, the run completes.
    p.write(
        "flows/web-classification-maf/strict.py",
        &format!(
            "{}\n\nclass Refuse(Executor):\n    @handler\n    async def run(self, page: Page, ctx: WorkflowContext[Page]) -> None:\n        if 'imdb' in page.url:\n            raise ValueError('no movies: ' + page.url)\n        await ctx.send_message(page)\n\n\ndef strict():\n    refuse, prepare, classify = Refuse(id='refuse'), Prepare(id='prepare'), Classify(id='classify')\n    return WorkflowBuilder(name='Strict', start_executor=refuse).add_edge(refuse, prepare).add_edge(prepare, classify).build()\n",
            std::fs::read_to_string(p.path().join(PORT)).unwrap()
        ),
    );
    let mut args = vec![
        "run",
        "create",
        "--workflow",
        "flows/web-classification-maf/strict.py:strict",
        "--start",
        "Page",
        "--name",
        "strict",
    ];
    args.extend(data.iter().chain(&mapping));
    let (code, out) = run(&p, &args);
    let total = column(&p, "flow", "category").len();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Execution failure in 'workflow': (ValueError) no movies: https://www.imdb.com/"), "{out}");
    let completed = column(&p, "strict", "category").len();
    assert!(completed > 0 && completed < total, "{completed} of {total} lines completed\n{out}");
    assert!(!out.contains("installing"), "the environment is reused: {out}");

    // The migration gate: `check` runs the port beside its flow and gates on parity.
    let config = std::fs::read_to_string(p.path().join(".flow-ci.yaml")).unwrap().replacen(
        "      failed_lines: { max_ratio: 0.0 }\n",
        "      failed_lines: { max_ratio: 0.0 }\n    port:\n      workflow: flows/web-classification-maf/workflow.py\n      start: Page\n    parity:\n      agreement: { output: category, min: 0.95 }\n      metrics:\n        accuracy: { max_drop: 0.02 }\n",
        1,
    );
    p.write(".flow-ci.yaml", &config);
    let (code, out) = run(&p, &["check", "--all"]);
    assert_eq!(code, Some(0), "{out}");
    let report = p.read_json(".flow-ci/report/report.json");
    let flow = &report["flows"][0];
    let parity: Vec<&Json> = flow["verdict"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["metric"].as_str().unwrap().starts_with("parity: "))
        .collect();
    assert_eq!(parity.len(), 2, "{flow:#}");
    assert!(parity.iter().all(|r| r["passed"] == true), "{flow:#}");
    assert_eq!(flow["parity"]["agreement"]["agreed"], 60);
    assert_eq!(flow["parity"]["metrics"]["accuracy"], flow["metrics"]["accuracy"]);
    let md = std::fs::read_to_string(p.path().join(".flow-ci/report/report.md")).unwrap();
    assert!(md.contains("**Migration parity**") && md.contains("Agreement on `category`: 60 of 60 lines."), "{md}");

    // The port's classifier loses its Academic signals: labels diverge, the gate fails and names the lines.
    let port = std::fs::read_to_string(p.path().join(PORT)).unwrap();
    p.write(
        PORT,
        &port
            .replace("\"abstract\", \"university\", \"research\", \"journal\", \"thesis\", \"citation\"", "\"thesis\""),
    );
    let (code, out) = run(&p, &["check", "--all"]);
    assert_eq!(code, Some(1), "{out}");
    let report = p.read_json(".flow-ci/report/report.json");
    let agreement = &report["flows"][0]["parity"]["agreement"];
    assert_eq!(agreement["differing_lines"], serde_json::json!([16, 17, 18, 20, 21, 22, 57, 58]), "{agreement:#}");
    assert_eq!(agreement["sample"][0], serde_json::json!({"line_number": 16, "flow": "Academic", "port": "None"}));
    let md = std::fs::read_to_string(p.path().join(".flow-ci/report/report.md")).unwrap();
    assert!(md.contains("Lines that differ: 16, 17, 18, 20, 21, 22, 57, 58."), "{md}");
    assert!(out.contains("the port and the flow agree on `category` in 52 of 60 lines"), "{out}");
    let junit = std::fs::read_to_string(p.path().join(".flow-ci/report/junit.xml")).unwrap();
    assert!(junit.contains("parity: agreement"), "{junit}");
}

#[test]
fn a_port_that_cannot_be_loaded_or_run_in_the_cloud_is_invalid_input() {
    let p = Project::new();
    // No requirements: nothing to install, the module fails before any line.
    p.write("port/workflow.py", "def build():\n    raise RuntimeError('never called')\n")
        .write("port/data.jsonl", "{\"x\": 1}\n");
    let base = ["run", "create", "--data", "port/data.jsonl", "--column-mapping", "x=${data.x}"];

    let (code, out) = run(&p, &[&base[..], &["--workflow", "port/workflow.py"]].concat());
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("workflow.py defines neither create_workflow() nor a module-level `workflow`"), "{out}");
    let (code, out) = run(&p, &[&base[..], &["--workflow", "port/workflow.py:make"]].concat());
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("workflow.py has no function make() that builds the workflow"), "{out}");
    let (code, out) = run(&p, &[&base[..], &["--workflow", "port/workflow.py:build", "--start", "Page"]].concat());
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("workflow.py has no class Page for the start message"), "{out}");

    let (code, out) = run(&p, &["run", "create", "--workflow", "port/workflow.py", "--data", "port/data.jsonl"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("a workflow's inputs come from the column mapping"), "{out}");
    let (code, out) = run(&p, &[&base[..], &["--workflow", "port/workflow.py:build", "--backend", "azureml"]].concat());
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("runs on the local backend only"), "{out}");
    let (code, out) = run(&p, &[&base[..], &["--workflow", "port/missing.py"]].concat());
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("the workflow file port/missing.py does not exist"), "{out}");
    assert!(
        !p.path().join(".flow-ci/runs").exists()
            || std::fs::read_dir(p.path().join(".flow-ci/runs")).unwrap().count() == 0
    );
}
