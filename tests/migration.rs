//! The migration gate on promptflow's own pair: `web-classification` and
//! its Microsoft Agent Framework port `web-classification-maf`, with the
//! evaluation flow they share (`eval-classification-accuracy`), vendored
//! unchanged from microsoft/promptflow at 6e76ef49 (MIT, see
//! tests/vendor/promptflow). Both sides fetch their pages from a loopback
//! web server and ask a loopback model that speaks chat completions (the
//! flow's `open_ai_connection`) and Azure OpenAI's v1 Responses API (what
//! agent-framework-openai 1.17's `OpenAIChatClient` sends); the port's calls
//! reach it through flow-ci's model proxy. Agent Framework is pinned in
//! `FLOW_CI_MAF_PYTHON` (scripts/test builds it).

mod support;

use serde_json::Value as Json;
use support::fake_llm::FakeLlm;
use support::fs::copy_tree;
use support::http::{Answer, serve};
use support::project::Project;

const KEY: &str = "sk-migration-test-key-4711";
const FLOW: &str = "examples/flows/standard/web-classification";
const PORT: &str = "examples/flows/standard/web-classification-maf/workflow.py";

/// The pages the data points at: path, text, the category it is.
/// Channel and Movie name their category late in the text, so a port that
/// reads only the first 40 characters of the summary loses them.
const PAGES: &[(&str, &str, &str)] = &[
    (
        "/watch?v=kYqRtjDBci8",
        "Lo-fi beats to relax and study to, streamed all day. Subscribe to the channel for a new mix every week.",
        "Channel",
    ),
    (
        "/abs/2307.04767",
        "Abstract: we study retrieval for code generation; research from a university lab, with a paper and code.",
        "Academic",
    ),
    (
        "/store/apps/details?id=com.twitter.android",
        "Install the app to join the conversation. Download it free on your phone.",
        "App",
    ),
    (
        "/title/tt0111161",
        "A banker is sent to prison for life in 1947. The 1994 drama film is starring Tim Robbins.",
        "Movie",
    ),
    ("/in/ada-lovelace", "Ada Lovelace, profile: mathematician and writer. 2,400 followers.", "Profile"),
    ("/docs/manual", "Printable PDF manual of the dishwasher, twelve pages.", "PDF"),
    ("/blog/tomatoes", "Tomatoes need sun, water and patience; here is how we grow ours.", "None"),
];

fn maf_python() -> String {
    std::env::var("FLOW_CI_MAF_PYTHON")
        .expect("FLOW_CI_MAF_PYTHON names a python with Agent Framework pinned (scripts/test builds target/maf-venv)")
}

/// promptflow's pair and a config that gates the port on parity.
fn project(model: &str) -> Project {
    let p = Project::new();
    let vendor = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vendor/promptflow");
    // Only the pair and their evaluation: the rest of the vendored tree is tests/corpus.rs's.
    for folder in [
        FLOW,
        "examples/flows/standard/web-classification-maf",
        "examples/flows/evaluation/eval-classification-accuracy",
    ] {
        copy_tree(&vendor.join(folder), &p.path().join(folder), &[]);
    }
    let site = serve(|req| {
        let target = if req.query.is_empty() { req.path.clone() } else { format!("{}?{}", req.path, req.query) };
        match PAGES.iter().find(|(path, ..)| *path == target) {
            Some((_, text, _)) => Answer::html(200, format!("<html><body><p>{text}</p></body></html>")),
            None => Answer::html(404, "not found".into()),
        }
    });
    // The data: promptflow's columns, pages on the loopback site.
    let data: String = PAGES
        .iter()
        .map(|(path, _, answer)| {
            serde_json::json!({"url": format!("{site}{path}"), "answer": answer, "evidence": "Both"}).to_string() + "\n"
        })
        .collect();
    p.write(&format!("{FLOW}/data.jsonl"), &data);
    p.write(
        ".flow-ci.yaml",
        &format!(
            "backend: local\nflows:\n  - path: {FLOW}\n    run: {FLOW}/run.yml\n    evaluations:\n      - run: {FLOW}/run_evaluation.yml\n    gates:\n      accuracy: {{ min: 0.8 }}\n    port:\n      workflow: {PORT}\n      connection: aoai\n    parity:\n      agreement: {{ output: category, min: 0.95 }}\n      metrics:\n        accuracy: {{ max_drop: 0.0 }}\n      similarity: {{ connection: aoai, deployment: gpt-4o, output: category, min: 3.5 }}\nconnections:\n  open_ai_connection:\n    type: open_ai\n    api_key: ${{env:MIGRATION_MODEL_KEY}}\n    base_url: {model}/v1\n  aoai:\n    type: azure_open_ai\n    api_base: {model}\n    api_key: ${{env:MIGRATION_MODEL_KEY}}\n    api_version: \"2024-02-01\"\n"
        ),
    );
    p
}

fn check(p: &Project) -> (Option<i32>, String) {
    let out = p
        .flow_ci()
        .args(["check", "--all"])
        .env("FLOW_CI_PYTHON", maf_python())
        .env("MIGRATION_MODEL_KEY", KEY)
        // The port reads its deployment as promptflow's example says (.env.example).
        .env("AZURE_OPENAI_DEPLOYMENT", "gpt-35-turbo")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// Requests the model got from the flow (chat completions), the port
/// (Responses API) and the similarity judge (an Azure deployment).
fn sides(model: &FakeLlm) -> (usize, usize, usize) {
    let received = model.received();
    let count = |path: &str| received.iter().filter(|r| r.path == path).count();
    let counts = (
        count("/v1/chat/completions"),
        count("/openai/v1/responses"),
        count("/openai/deployments/gpt-4o/chat/completions"),
    );
    assert_eq!(counts.0 + counts.1 + counts.2, received.len(), "no other request");
    counts
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)) {
            found.push(path.display().to_string());
        }
    }
    found
}

/// Each side's batch run record (flow, port), for the timing line the test prints.
fn runs(p: &Project) -> [Json; 2] {
    let report = p.read_json(".flow-ci/report/report.json");
    let flow = &report["flows"][0];
    let run = |name: &Json| p.read_json(&format!(".flow-ci/runs/{}/run.json", name.as_str().unwrap_or_default()));
    [run(&flow["batch_run"]), run(&flow["parity"]["batch_run"])]
}

fn sides_timing(runs: &[Json; 2]) -> String {
    let side = |r: &Json| {
        format!(
            "{:.2} s, {} requests, {} from the cache",
            r["duration_seconds"].as_f64().unwrap_or(0.0),
            r["llm"]["requests"],
            r["llm"]["cache_hits"]
        )
    };
    format!("flow {}; port {}", side(&runs[0]), side(&runs[1]))
}

fn run_llm(p: &Project, name: &str) -> Json {
    p.read_json(&format!(".flow-ci/runs/{name}/run.json"))["llm"].clone()
}

#[test]
fn promptflows_web_classification_and_its_agent_framework_port_pass_the_parity_gate() {
    let model = FakeLlm::start(KEY);
    let p = project(&model.url);
    let lines = PAGES.len();

    // First run: both sides ask the model, twice per line (summary, category).
    let started = std::time::Instant::now();
    let (code, out) = check(&p);
    let first = started.elapsed();
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(model.violations(), Vec::<String>::new(), "the model refused requests\n{out}");
    assert_eq!(sides(&model), (2 * lines, 2 * lines, lines), "{out}");
    let report = p.read_json(".flow-ci/report/report.json");
    let flow = &report["flows"][0];
    assert_eq!(flow["metrics"]["accuracy"], 1.0, "{flow:#}");
    assert_eq!(flow["parity"]["metrics"]["accuracy"], 1.0, "the same evaluation over the port's outputs\n{flow:#}");
    assert_eq!(flow["parity"]["agreement"]["agreed"], lines, "{flow:#}");
    let md = std::fs::read_to_string(p.path().join(".flow-ci/report/report.md")).unwrap();
    assert!(md.contains("**Migration parity**"), "{md}");
    assert!(md.contains(&format!("Agreement on `category`: {lines} of {lines} lines.")), "{md}");
    let similarity = &flow["parity"]["similarity"];
    assert_eq!(
        (similarity["mean"].as_f64(), similarity["judged"].as_u64()),
        (Some(5.0), Some(lines as u64)),
        "{similarity:#}"
    );
    assert!(
        md.contains(&format!("Judged similarity of `category` (1–5): mean 5.00 of 5 over {lines} of {lines} lines.")),
        "{md}"
    );
    let port_run = flow["parity"]["batch_run"].as_str().expect("the port's batch run").to_string();
    let port_llm = run_llm(&p, &port_run);
    assert_eq!(port_llm["requests"], 2 * lines, "the port's calls are counted like llm nodes': {port_llm:#}");
    assert!(port_llm["prompt_tokens"].as_u64().unwrap() > 0, "{port_llm:#}");

    // The key never reaches the output, the run store or the cache.
    assert!(!out.contains(KEY), "{out}");
    assert_eq!(files_holding(&p.path().join(".flow-ci"), KEY), Vec::<String>::new());

    let first_runs = runs(&p);

    // Second run: every answer of either side comes from the cache.
    let started = std::time::Instant::now();
    let (code, out) = check(&p);
    let cached = started.elapsed();
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(sides(&model), (2 * lines, 2 * lines, lines), "no new request from either side or the judge\n{out}");
    let port_llm = run_llm(&p, &port_run);
    assert_eq!((port_llm["requests"].as_u64(), port_llm["cache_hits"].as_u64()), (Some(0), Some(2 * lines as u64)));
    eprintln!("check, both sides, {lines} lines: first run {first:.1?}, cached run {cached:.1?}");
    eprintln!("first: {}\ncached: {}", sides_timing(&first_runs), sides_timing(&runs(&p)));

    // The port reads only the start of the summary: Channel and Movie become None.
    let port = std::fs::read_to_string(p.path().join(PORT)).unwrap();
    assert!(port.contains("f\"Text content: {summary}.\\nOUTPUT:\""), "the vendored prompt changed");
    p.write(
        PORT,
        &port.replace("f\"Text content: {summary}.\\nOUTPUT:\"", "f\"Text content: {summary[:40]}.\\nOUTPUT:\""),
    );
    let (code, out) = check(&p);
    assert_eq!(code, Some(1), "{out}");
    let report = p.read_json(".flow-ci/report/report.json");
    let agreement = &report["flows"][0]["parity"]["agreement"];
    assert_eq!(agreement["differing_lines"], serde_json::json!([0, 3]), "{agreement:#}");
    assert_eq!(agreement["sample"][0], serde_json::json!({"line_number": 0, "flow": "Channel", "port": "None"}));
    assert!(
        out.contains(&format!("the port and the flow agree on `category` in {} of {lines} lines", lines - 2)),
        "{out}"
    );
    let md = std::fs::read_to_string(p.path().join(".flow-ci/report/report.md")).unwrap();
    assert!(md.contains("Lines that differ: 0, 3."), "{md}");
    // The judge gives those two lines 1 of 5: the mean stays above 3.5.
    let similarity = &report["flows"][0]["parity"]["similarity"];
    assert_eq!(similarity["lowest"][0], serde_json::json!([0, 1.0]), "{similarity:#}");
    assert_eq!(similarity["lowest"][1], serde_json::json!([3, 1.0]), "{similarity:#}");
    assert!(md.contains("Lowest: line 0: 1, line 3: 1."), "{md}");
    let results = report["flows"][0]["verdict"]["results"].as_array().unwrap();
    let judged = results.iter().find(|r| r["metric"] == "parity: similarity").expect("the similarity gate");
    assert_eq!(judged["passed"], true, "{judged:#}");
    assert_eq!(model.violations(), Vec::<String>::new());
}

/// A python node that calls the model with the `openai` SDK itself: with
/// `llm.proxy` its calls go through flow-ci (cached, counted), and it sees
/// the run's token, never the key.
#[test]
fn a_python_nodes_own_openai_calls_go_through_the_model_proxy() {
    let model = FakeLlm::start(KEY);
    let p = Project::new();
    p.write(
        "flows/ask/flow.dag.yaml",
        "inputs:\n  question:\n    type: string\noutputs:\n  answer:\n    type: string\n    reference: ${ask.output.answer}\n  key_seen:\n    type: string\n    reference: ${ask.output.key}\nnodes:\n- name: ask\n  type: python\n  source:\n    type: code\n    path: ask.py\n  inputs:\n    question: ${inputs.question}\n",
    )
    .write(
        "flows/ask/ask.py",
        "import os\n\nfrom openai import OpenAI\nfrom promptflow.core import tool\n\n\n@tool\ndef ask(question: str) -> dict:\n    # OPENAI_BASE_URL and OPENAI_API_KEY come from the environment.\n    answer = OpenAI().chat.completions.create(\n        model=\"gpt-4o-mini\", messages=[{\"role\": \"user\", \"content\": question}]\n    )\n    return {\"answer\": answer.choices[0].message.content, \"key\": os.environ[\"OPENAI_API_KEY\"]}\n",
    )
    .write("flows/ask/data.jsonl", "{\"q\": \"hello\"}\n{\"q\": \"how are you\"}\n{\"q\": \"bye\"}\n")
    .write(
        ".flow-ci.yaml",
        &format!("llm:\n  proxy: oai\nconnections:\n  oai:\n    type: open_ai\n    api_key: ${{env:MIGRATION_MODEL_KEY}}\n    base_url: {}/v1\n", model.url),
    );
    let run = |name: &str| {
        let out = p
            .flow_ci()
            .args([
                "run",
                "create",
                "--flow",
                "flows/ask",
                "--data",
                "flows/ask/data.jsonl",
                "--column-mapping",
                "question=${data.q}",
                "--name",
                name,
            ])
            .env("FLOW_CI_PYTHON", maf_python())
            .env("MIGRATION_MODEL_KEY", KEY)
            .env("OPENAI_API_KEY", KEY)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(!text.contains(KEY), "{text}");
    };
    run("first");
    assert_eq!((model.count(), model.violations()), (3, vec![]));
    let outputs = p.read_jsonl(".flow-ci/runs/first/output.jsonl");
    assert_eq!(outputs[0]["answer"], "echo: hello");
    let seen = outputs[0]["key_seen"].as_str().unwrap();
    assert!(seen.starts_with("flow-ci-proxy-"), "the node sees the run's token, not the key: {seen}");
    assert_eq!(run_llm(&p, "first")["requests"], 3);
    run("second");
    assert_eq!(model.count(), 3, "answered from the cache");
    assert_eq!(
        (run_llm(&p, "second")["requests"].as_u64(), run_llm(&p, "second")["cache_hits"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(files_holding(&p.path().join(".flow-ci"), KEY), Vec::<String>::new());
}
