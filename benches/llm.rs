//! LLM throughput: a 200-row LLM flow (fixtures/flows/support-triage) against
//! the loopback fake chat-completions server answering after 200 ms, with
//! `--llm-concurrency 16` and no cache. The ideal is 200 × 0.2 s / 16 = 2.5 s.
//! Run: cargo bench --bench llm [-- ROWS LATENCY_MS CONCURRENCY]; BENCH_EXTRA adds flags (e.g. "--workers 1").

#[path = "../tests/support/fake_llm.rs"]
mod fake_llm;
#[path = "../tests/support/http.rs"]
mod http;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rows = args.first().copied().unwrap_or(200);
    let latency_ms = args.get(1).copied().unwrap_or(200);
    let concurrency = args.get(2).copied().unwrap_or(16);

    let fake = fake_llm::FakeLlm::start_with_latency("bench-key", Duration::from_millis(latency_ms));
    let dir = tempfile::tempdir().expect("temp dir");
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/flows/support-triage");
    let data = dir.path().join("data.jsonl");
    let lines: String = (0..rows).map(|i| format!("{{\"ticket\": \"ticket {i}: I was charged twice\"}}\n")).collect();
    std::fs::write(&data, lines).expect("write data");
    std::fs::write(
        dir.path().join(".flow-ci.yaml"),
        "connections:\n  aoai:\n    type: azure_open_ai\n    api_base: ${env:FAKE_URL}\n    api_key: bench-key\n",
    )
    .expect("write config");

    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_flow-ci"))
        .current_dir(dir.path())
        .env("FAKE_URL", &fake.url)
        .env("FLOW_CI_RUNS_DIR", dir.path().join("runs"))
        .args(["run", "create", "--flow"])
        .arg(&flow)
        .args(["--data"])
        .arg(&data)
        .args(["--column-mapping", "ticket=${data.ticket}", "--name", "bench", "--no-cache"])
        .args(["--llm-concurrency", &concurrency.to_string()])
        .args(
            std::env::var("BENCH_EXTRA")
                .map(|e| e.split_whitespace().map(String::from).collect::<Vec<_>>())
                .unwrap_or_default(),
        )
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run flow-ci");
    let wall = started.elapsed().as_secs_f64();
    let received = fake.received();
    if let (Some(first), Some(last)) = (received.first(), received.last()) {
        println!(
            "first request after {:.2} s, last request at {:.2} s",
            first.at.duration_since(started).as_secs_f64(),
            last.at.duration_since(started).as_secs_f64()
        );
    }
    assert!(status.success(), "flow-ci failed");
    assert_eq!(fake.count() as u64, rows, "one request per row");
    let ideal = rows as f64 * latency_ms as f64 / 1000.0 / concurrency as f64;
    println!(
        "llm: {rows} rows, {latency_ms} ms latency, concurrency {concurrency}: {wall:.2} s (ideal {ideal:.2} s, {:+.0}%)",
        (wall / ideal - 1.0) * 100.0
    );
}
