//! LLM throughput against an endpoint whose limits flow-ci is not told: a
//! one-LLM-node flow (the triage node of fixtures/flows/support-triage
//! alone) over ROWS rows against
//! the loopback fake Azure OpenAI (tests/support/fake_llm.rs) answering after
//! LATENCY ms and holding at most IN_FLIGHT requests (429 + retry-after-ms
//! beyond). No `llm:` setting, no cache. The limit's time is
//! rows / in-flight × latency.
//!
//! Run: `scripts/bench-llm` (release build, the three endpoints of issue 19),
//! or `cargo bench --bench llm -- [ROWS LATENCY_MS IN_FLIGHT [REPS]]`.
//! `FLOW_CI_PF=path/to/pf` also times `pf run create` (PF_WORKER_COUNT from
//! the environment, one repetition); `FLOW_CI_BIN` runs another flow-ci
//! binary; `BENCH_EXTRA` adds flow-ci flags; `BENCH_HEADERS=1` makes the
//! endpoint send x-ratelimit-remaining-* headers.
//! Exits non-zero when a run fails or a line fails.

#[path = "../tests/support/fake_llm.rs"]
mod fake_llm;
#[path = "../tests/support/http.rs"]
mod http;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const KEY: &str = "bench-key";

/// The triage node of fixtures/flows/support-triage, alone.
const FLOW: &str = "inputs:\n  ticket:\n    type: string\n  chat_history:\n    type: list\n    default: []\noutputs:\n  answer:\n    type: string\n    reference: ${triage.output}\nnodes:\n- name: triage\n  type: llm\n  source:\n    type: code\n    path: triage.jinja2\n  inputs:\n    deployment_name: gpt-4o-mini\n    temperature: 0\n    max_tokens: 50\n    response_format:\n      type: json_object\n    ticket: ${inputs.ticket}\n    chat_history: ${inputs.chat_history}\n  connection: aoai\n  api: chat\n";

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rows = args.first().copied().unwrap_or(400);
    let latency_ms = args.get(1).copied().unwrap_or(150);
    let in_flight = args.get(2).copied().unwrap_or(24);
    let reps = args.get(3).copied().unwrap_or(3).max(1);

    let fake = fake_llm::FakeLlm::start_with_latency(KEY, Duration::from_millis(latency_ms));
    fake.limit_in_flight(in_flight as usize);
    if std::env::var("BENCH_HEADERS").is_ok_and(|v| v == "1") {
        fake.send_rate_limit_headers();
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let flow = dir.path().join("flow");
    std::fs::create_dir_all(&flow).expect("flow dir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/flows/support-triage");
    std::fs::copy(fixture.join("triage.jinja2"), flow.join("triage.jinja2")).expect("copy the prompt");
    std::fs::write(flow.join("flow.dag.yaml"), FLOW).expect("write the flow");
    let data = dir.path().join("data.jsonl");
    let lines: String =
        (0..rows).map(|i| format!("{{\"ticket\": \"ticket {i}: I was charged twice for one order\"}}\n")).collect();
    std::fs::write(&data, lines).expect("write data");
    std::fs::write(
        dir.path().join(".flow-ci.yaml"),
        "connections:\n  aoai:\n    type: azure_open_ai\n    api_base: ${env:FAKE_URL}\n    api_key: bench-key\n    api_version: \"2024-02-01\"\n",
    )
    .expect("write config");
    let bin =
        std::env::var_os("FLOW_CI_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_flow-ci")), PathBuf::from);
    let extra: Vec<String> =
        std::env::var("BENCH_EXTRA").map(|e| e.split_whitespace().map(String::from).collect()).unwrap_or_default();

    let limit_secs = rows as f64 / in_flight as f64 * latency_ms as f64 / 1000.0;
    let mut walls = vec![];
    let (mut refused, mut peak) = (vec![], vec![]);
    for rep in 0..reps {
        let name = format!("bench{rep}");
        let before = fake.throttled();
        let started = Instant::now();
        let status = Command::new(&bin)
            .current_dir(dir.path())
            .env("FAKE_URL", &fake.url)
            .env("FLOW_CI_RUNS_DIR", dir.path().join("runs"))
            .env_remove("FLOW_CI_LLM_CONCURRENCY")
            .args(["run", "create", "--flow"])
            .arg(&flow)
            .arg("--data")
            .arg(&data)
            .args(["--column-mapping", "ticket=${data.ticket}", "--name", &name, "--no-cache"])
            .args(&extra)
            .stdout(Stdio::null())
            .status()
            .expect("run flow-ci");
        walls.push(started.elapsed().as_secs_f64());
        if !status.success() {
            fail(&format!("flow-ci exited {status}"));
        }
        let record: Json = read_json(&dir.path().join("runs").join(&name).join("run.json"));
        let failed = record["lines"]["failed"].as_u64().unwrap_or(u64::MAX);
        let completed = record["lines"]["completed"].as_u64().unwrap_or(0);
        if failed != 0 || completed != rows {
            fail(&format!("flow-ci: {completed} of {rows} lines completed, {failed} failed"));
        }
        refused.push(fake.throttled() - before);
        peak.push(record["llm"]["peak_in_flight"].as_u64().unwrap_or(0));
    }
    let violations = fake.violations();
    if !violations.is_empty() {
        fail(&format!("requests the service would refuse: {violations:?}"));
    }
    let wall = median(&walls);
    let rep = walls.iter().position(|w| *w == wall).unwrap_or(0);
    let pf = std::env::var_os("FLOW_CI_PF").map(|pf| run_pf(Path::new(&pf), &fake, dir.path(), &flow, &data, rows));
    println!(
        "| {latency_ms} ms / {in_flight} in flight | {rows} | {limit_secs:.2} s | {wall:.2} s ({:.2}x; {}) | {} of {} ({:.1}%) | {} | {} |",
        wall / limit_secs,
        walls.iter().map(|w| format!("{w:.2}")).collect::<Vec<_>>().join(", "),
        refused[rep],
        rows + refused[rep] as u64,
        refused[rep] as f64 * 100.0 / (rows + refused[rep] as u64) as f64,
        peak[rep],
        pf.map_or("–".to_string(), |(secs, refused)| format!("{secs:.1} s ({refused} answered 429)")),
    );
}

/// `pf run create` on the same flow and data: (seconds, 429s).
fn run_pf(pf: &Path, fake: &fake_llm::FakeLlm, dir: &Path, flow: &Path, data: &Path, rows: u64) -> (f64, usize) {
    let home = dir.join("pf-home");
    std::fs::create_dir_all(home.join(".promptflow")).expect("pf home");
    std::fs::write(home.join(".promptflow/pf.yaml"), "telemetry:\n  enabled: 'false'\ntrace:\n  destination: none\n")
        .expect("pf.yaml");
    let conn = dir.join("aoai.yaml");
    std::fs::write(
        &conn,
        format!(
            "name: aoai\ntype: azure_open_ai\napi_base: {}\napi_key: {KEY}\napi_type: azure\napi_version: \"2024-02-01\"\n",
            fake.url
        ),
    )
    .expect("connection file");
    let pf_cmd = || {
        let mut cmd = Command::new(pf);
        cmd.current_dir(dir).env("HOME", &home).env("PF_DISABLE_TRACING", "true").stdout(Stdio::null());
        cmd
    };
    let status = pf_cmd().args(["connection", "create", "--file"]).arg(&conn).status().expect("run pf");
    if !status.success() {
        fail("pf connection create failed");
    }
    let before = fake.throttled();
    let started = Instant::now();
    let status = pf_cmd()
        .args(["run", "create", "--flow"])
        .arg(flow)
        .arg("--data")
        .arg(data)
        .args(["--column-mapping", "ticket=${data.ticket}", "--name", "pf_bench", "--stream"])
        .status()
        .expect("run pf");
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        fail(&format!("pf run create exited {status}"));
    }
    let outputs = find(&home.join(".promptflow/.runs/pf_bench"), "output.jsonl")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map_or(0, |t| t.lines().filter(|l| !l.trim().is_empty()).count());
    if outputs as u64 != rows {
        fail(&format!("pf run create: {outputs} of {rows} lines have outputs"));
    }
    (secs, fake.throttled() - before)
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

fn read_json(path: &Path) -> Json {
    std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Json::Null)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn fail(message: &str) -> ! {
    eprintln!("bench-llm: {message}");
    std::process::exit(1);
}
