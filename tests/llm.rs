//! LLM nodes end to end: the flow-ci binary against a loopback fake of the
//! Azure OpenAI / OpenAI chat-completions API (tests/support/fake_llm.rs),
//! which checks every request's method, path, api-version, auth header and
//! body. Covers both providers, run-file connection overrides, retries,
//! the response cache, missing keys, connection objects in python nodes,
//! and the recorded responses shipped with the example flow.

mod support;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{Value as Json, json};
use support::fake_aml::{AOAI_TOKEN, FakeAml, Script};
use support::fake_llm::{FakeLlm, classify};
use support::fs::{copy_tree, read_jsonl};

const KEY: &str = "test-key-0123456789";

/// A copy of fixtures/ (flows and .flow-ci.yaml) with its own run store and cache.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        copy_tree(&fixtures.join("flows"), &dir.path().join("flows"), &[]);
        std::fs::copy(fixtures.join(".flow-ci.yaml"), dir.path().join(".flow-ci.yaml")).unwrap();
        Workspace { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// flow-ci in the workspace, with no model credentials from the outside.
    fn flow_ci(&self) -> Command {
        let mut cmd = Command::cargo_bin("flow-ci").unwrap();
        cmd.current_dir(self.path()).env("FLOW_CI_RUNS_DIR", self.path().join("runs"));
        for var in [
            "AZURE_OPENAI_ENDPOINT",
            "AZURE_OPENAI_API_KEY",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "FLOW_CI_CACHE_DIR",
            "FLOW_CI_LLM_CONCURRENCY",
            "PROMPTFLOW_CONNECTIONS",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// flow-ci pointed at `fake` as the Azure OpenAI endpoint, caching in the workspace.
    fn against(&self, fake: &FakeLlm) -> Command {
        let mut cmd = self.flow_ci();
        cmd.env("AZURE_OPENAI_ENDPOINT", &fake.url)
            .env("AZURE_OPENAI_API_KEY", KEY)
            .env("FLOW_CI_CACHE_DIR", self.path().join("cache"));
        cmd
    }

    fn run_json(&self, name: &str) -> Json {
        read_json(&self.path().join("runs").join(name).join("run.json"))
    }

    fn outputs(&self, name: &str) -> Vec<Json> {
        std::fs::read_to_string(self.path().join("runs").join(name).join("output.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn read_json(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tickets() -> Vec<(String, String)> {
    let data = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/flows/support-triage/data.jsonl"),
    )
    .unwrap();
    data.lines()
        .map(|l| {
            let row: Json = serde_json::from_str(l).unwrap();
            (row["ticket"].as_str().unwrap().to_string(), row["category"].as_str().unwrap().to_string())
        })
        .collect()
}

const SYSTEM: &str = "You triage customer support tickets. Reply with JSON only:\n{\"category\": \"<category>\"} where <category> is one of billing, technical, shipping, other.";

fn create(cmd: &mut Command, args: &[&str]) -> assert_cmd::assert::Assert {
    cmd.args(["run", "create"]).args(args).assert()
}

/// A run of the example flow over `tickets` against `fake`; it must succeed.
fn run_tickets(ws: &Workspace, fake: &FakeLlm, name: &str, tickets: &[&str], extra: &[&str]) {
    let data: String = tickets.iter().map(|t| format!("{}\n", json!({"ticket": t}))).collect();
    ws.write("tickets.jsonl", &data);
    let mut args = vec!["--flow", "flows/support-triage", "--data", "tickets.jsonl", "--name", name];
    args.extend(["--column-mapping", "ticket=${data.ticket}"]);
    args.extend(extra);
    create(&mut ws.against(fake), &args).success();
}

#[test]
fn azure_openai_requests_are_what_promptflow_sends() {
    let fake = FakeLlm::start(KEY);
    let ws = Workspace::new();
    create(&mut ws.against(&fake), &["--file", "flows/support-triage/run.yml", "--name", "triage"]).success();

    assert_eq!(fake.violations(), Vec::<String>::new());
    let received = fake.received();
    assert_eq!(received.len(), 12);
    let first_ticket = &tickets()[0].0;
    let req = received.iter().find(|r| r.body["messages"][1]["content"] == json!(first_ticket)).unwrap();
    assert_eq!(req.path, "/openai/deployments/gpt-4o-mini/chat/completions");
    assert_eq!(req.query, "api-version=2024-02-01");
    assert_eq!(req.header("api-key"), Some(KEY));
    assert_eq!(req.header("ms-azure-ai-promptflow-called-from"), Some("aoai-tool"));
    assert_eq!(
        req.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": first_ticket}],
            "temperature": 0.0, "top_p": 1.0, "n": 1, "stream": false, "max_tokens": 50,
            "response_format": {"type": "json_object"}
        })
    );
    let expected: Vec<Json> = tickets().iter().map(|(t, _)| json!(classify(t))).collect();
    let got: Vec<Json> = ws.outputs("triage").iter().map(|o| o["category"].clone()).collect();
    assert_eq!(got, expected);
    let usage = &ws.run_json("triage")["llm"];
    assert_eq!(usage["requests"], json!(12));
    assert_eq!(usage["cache_hits"], json!(0));
    assert!(usage["total_tokens"].as_u64().unwrap() > 0, "{usage}");
}

#[test]
fn an_identical_second_run_is_served_from_the_cache() {
    let fake = FakeLlm::start(KEY);
    let ws = Workspace::new();
    create(&mut ws.against(&fake), &["--file", "flows/support-triage/run.yml", "--name", "first"]).success();
    assert_eq!(fake.count(), 12);
    create(&mut ws.against(&fake), &["--file", "flows/support-triage/run.yml", "--name", "second"])
        .success()
        .stdout(predicates::str::contains("0 request(s), 12 cache hit(s)"));
    assert_eq!(fake.count(), 12, "the second run sent requests");
    assert_eq!(ws.run_json("second")["llm"]["cache_hits"], json!(12));
    assert_eq!(ws.outputs("first"), ws.outputs("second"));

    // --no-cache always calls the model.
    create(&mut ws.against(&fake), &["--file", "flows/support-triage/run.yml", "--name", "third", "--no-cache"])
        .success();
    assert_eq!(fake.count(), 24);

    // A corrupt entry is ignored and rewritten.
    let entry = walk(&ws.path().join("cache")).into_iter().next().unwrap();
    std::fs::write(&entry, "{ not json").unwrap();
    create(&mut ws.against(&fake), &["--file", "flows/support-triage/run.yml", "--name", "fourth"]).success();
    assert_eq!(fake.count(), 25);
    assert!(serde_json::from_str::<Json>(&std::fs::read_to_string(&entry).unwrap()).is_ok());
}

#[test]
fn openai_connection_from_a_file_overrides_the_node_in_the_run_file() {
    let fake = FakeLlm::start(KEY);
    let ws = Workspace::new();
    let conn = ws.write(
        "connections/openai.yaml",
        &format!("$schema: https://azuremlschemas.azureedge.net/promptflow/latest/OpenAIConnection.schema.json\nname: oai\ntype: open_ai\napi_key: {KEY}\nbase_url: {}/v1\n", fake.url),
    );
    ws.write(
        "flows/support-triage/openai.run.yml",
        "flow: .\ndata: data.jsonl\ncolumn_mapping:\n  ticket: ${data.ticket}\nconnections:\n  triage:\n    connection: oai\n    model: gpt-4o-mini\n",
    );
    let mut cmd = ws.flow_ci();
    cmd.env("FLOW_CI_CACHE_DIR", ws.path().join("cache"));
    create(
        &mut cmd,
        &["--file", "flows/support-triage/openai.run.yml", "--name", "oai", "--connection", conn.to_str().unwrap()],
    )
    .success();
    assert_eq!(fake.violations(), Vec::<String>::new());
    let received = fake.received();
    assert_eq!(received.len(), 12);
    let req = &received[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(req.body["model"], json!("gpt-4o-mini"));
    assert_eq!(req.body.get("n"), None, "OpenAI.chat sends no `n`");
    assert_eq!(req.header("ms-azure-ai-promptflow-called-from"), None);
}

/// The delay is the one the service asked for: the fake's `Retry-After`
/// (1 s on the 429, 0 on the 500) is the wait flow-ci logs before each
/// retry (not promptflow's 3 s, 4 s, ... backoff, used without the header).
#[test]
fn throttling_and_server_errors_are_retried_after_the_servers_delay() {
    let fake = FakeLlm::start(KEY);
    fake.fail_next(429, Some("1"));
    fake.fail_next(500, Some("0"));
    let ws = Workspace::new();
    ws.write("tickets.jsonl", &format!("{}\n", json!({"ticket": "I was charged twice."})));
    let out = create(
        ws.against(&fake).arg("-v"),
        &[
            "--flow",
            "flows/support-triage",
            "--data",
            "tickets.jsonl",
            "--column-mapping",
            "ticket=${data.ticket}",
            "--name",
            "retried",
        ],
    )
    .success()
    .get_output()
    .clone();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(fake.retry_afters_sent(), [Some("1".to_string()), Some("0".to_string())]);
    let waits: Vec<&str> = log.lines().filter_map(|l| l.split_once("; retrying in ")).map(|(_, w)| w).collect();
    assert_eq!(waits, ["1.0s (retry 1)", "0.0s (retry 2)"], "{log}");
    assert_eq!(fake.violations(), Vec::<String>::new());
    let received = fake.received();
    assert_eq!(received.len(), 3);
    assert_eq!(received[0].body, received[2].body, "a retry resends the same request");
    let usage = &ws.run_json("retried")["llm"];
    assert_eq!((usage["requests"].clone(), usage["retries"].clone()), (json!(1), json!(2)));
    assert_eq!(ws.outputs("retried")[0]["category"], json!("billing"));
}

/// `n` distinct tickets (the example's, numbered), each with its expected category.
/// An Azure OpenAI connection with `auth_mode: meid_token` and no key signs
/// in to Entra ID (a client secret at the loopback authority, for Azure
/// OpenAI's scope) and sends the token as `Authorization: Bearer`, never an
/// `api-key`; the fake refuses anything else. One token serves every line.
#[test]
fn meid_token_connections_send_an_entra_token_not_a_key() {
    let fake = FakeLlm::start(KEY);
    fake.require_entra_token(AOAI_TOKEN);
    let entra = FakeAml::start(Script::default());
    let ws = Workspace::new();
    let config = std::fs::read_to_string(ws.path().join(".flow-ci.yaml")).unwrap();
    let config = config.replace("    api_key: ${env:AZURE_OPENAI_API_KEY}\n", "    auth_mode: meid_token\n");
    assert!(config.contains("auth_mode: meid_token"), "{config}");
    ws.write(".flow-ci.yaml", &config);
    let mut cmd = ws.flow_ci();
    cmd.env("AZURE_OPENAI_ENDPOINT", &fake.url).env("FLOW_CI_CACHE_DIR", ws.path().join("cache"));
    // The client secret below is the credential used, not a token or identity from outside.
    for var in ["AZURE_OPENAI_AD_TOKEN", "AZURE_FEDERATED_TOKEN_FILE", "ACTIONS_ID_TOKEN_REQUEST_URL"] {
        cmd.env_remove(var);
    }
    for (name, value) in entra.env().into_iter().filter(|(name, _)| name.starts_with("AZURE_")) {
        cmd.env(name, value);
    }
    create(&mut cmd, &["--file", "flows/support-triage/run.yml", "--name", "entra"]).success();

    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(entra.violations(), Vec::<String>::new());
    let received = fake.received();
    assert_eq!(received.len(), 12);
    for req in &received {
        assert_eq!(req.header("authorization"), Some(format!("Bearer {AOAI_TOKEN}").as_str()));
        assert_eq!(req.header("api-key"), None);
    }
    let token_requests: Vec<_> =
        entra.received().into_iter().filter(|r| r.path.ends_with("/oauth2/v2.0/token")).collect();
    assert_eq!(token_requests.len(), 1, "one token for every line");
    assert!(
        token_requests[0].text.contains("scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default"),
        "{}",
        token_requests[0].text
    );
    let expected: Vec<Json> = tickets().iter().map(|(t, _)| json!(classify(t))).collect();
    let got: Vec<Json> = ws.outputs("entra").iter().map(|o| o["category"].clone()).collect();
    assert_eq!(got, expected);
}

/// `api: completion` end to end: `AzureOpenAI.completion`'s request (the
/// rendered prompt, no messages, `…/completions`) and `choices[0].text` as
/// the node's output.
#[test]
fn the_completion_api_sends_a_prompt_and_returns_the_text() {
    let fake = FakeLlm::start(KEY);
    let ws = Workspace::new();
    ws.write(
        "flows/triage-completion/flow.dag.yaml",
        "inputs:\n  ticket:\n    type: string\noutputs:\n  category:\n    type: string\n    reference: ${complete.output}\nnodes:\n- name: complete\n  type: llm\n  source:\n    type: code\n    path: complete.jinja2\n  inputs:\n    deployment_name: gpt-35-turbo-instruct\n    max_tokens: 5\n    temperature: 0\n    ticket: ${inputs.ticket}\n  connection: aoai\n  api: completion\n",
    );
    ws.write("flows/triage-completion/complete.jinja2", "Ticket: {{ticket}}\nThe category of this ticket is");
    let tickets = tickets();
    let data: String = tickets.iter().map(|(t, _)| format!("{}\n", json!({"ticket": t}))).collect();
    ws.write("tickets.jsonl", &data);
    create(
        &mut ws.against(&fake),
        &["--flow", "flows/triage-completion", "--data", "tickets.jsonl", "--name", "completion"],
    )
    .success();

    assert_eq!(fake.violations(), Vec::<String>::new());
    let received = fake.received();
    assert_eq!(received.len(), tickets.len());
    let first = &tickets[0].0;
    let req = received.iter().find(|r| r.body["prompt"].as_str().is_some_and(|p| p.contains(first.as_str()))).unwrap();
    assert_eq!(req.path, "/openai/deployments/gpt-35-turbo-instruct/completions");
    assert_eq!(req.query, "api-version=2024-02-01");
    assert_eq!(req.header("api-key"), Some(KEY));
    assert_eq!(req.body["prompt"], json!(format!("Ticket: {first}\nThe category of this ticket is")));
    assert_eq!(req.body["model"], json!("gpt-35-turbo-instruct"));
    assert_eq!(req.body["max_tokens"], json!(5));
    assert_eq!(req.body.get("messages"), None);
    let expected: Vec<Json> = tickets.iter().map(|(t, _)| json!(format!(" {}", classify(t)))).collect();
    let got: Vec<Json> = ws.outputs("completion").iter().map(|o| o["category"].clone()).collect();
    assert_eq!(got, expected);
    assert_eq!(ws.run_json("completion")["llm"]["requests"], json!(tickets.len()));
}

fn many_tickets(n: usize) -> Vec<(String, Json)> {
    let base = tickets();
    (0..n)
        .map(|i| {
            let (t, _) = &base[i % base.len()];
            let ticket = format!("{t} (ticket {i})");
            let category = json!(classify(&ticket));
            (ticket, category)
        })
        .collect()
}

fn cache_keys(dir: &Path) -> Vec<PathBuf> {
    walk(dir).into_iter().map(|p| p.strip_prefix(dir).unwrap().to_path_buf()).collect()
}

#[test]
fn adaptive_concurrency_gives_the_same_results_as_one_request_at_a_time() {
    // A deployment that holds 6 requests at once and answers 429 +
    // Retry-After beyond: flow-ci is not told, starts above it and finds it.
    let fake = FakeLlm::start_with_latency(KEY, std::time::Duration::from_millis(20));
    fake.limit_in_flight(6);
    let ws = Workspace::new();
    let rows = many_tickets(60);
    let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    let data: String = texts.iter().map(|t| format!("{}\n", json!({"ticket": t}))).collect();
    ws.write("tickets.jsonl", &data);
    let args =
        ["--flow", "flows/support-triage", "--data", "tickets.jsonl", "--column-mapping", "ticket=${data.ticket}"];

    let mut adaptive = ws.against(&fake);
    adaptive.env("FLOW_CI_CACHE_DIR", ws.path().join("cache-adaptive"));
    let out = create(&mut adaptive, &[&args[..], &["--name", "adaptive"]].concat()).success();
    let refused = fake.throttled();
    // The run summary says what the limit did.
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let line = stdout.lines().find(|l| l.starts_with("limit:")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(&format!(", {refused} answered 429/503, ")), "{line}");
    let mut one = ws.against(&fake);
    one.env("FLOW_CI_CACHE_DIR", ws.path().join("cache-one"));
    create(&mut one, &[&args[..], &["--name", "one", "--llm-concurrency", "1"]].concat()).success();

    assert_eq!(fake.violations(), Vec::<String>::new());
    for name in ["adaptive", "one"] {
        let record = ws.run_json(name);
        assert_eq!(record["lines"]["failed"], json!(0), "{record}");
        assert_eq!(record["llm"]["requests"], json!(60), "{record}");
    }
    // Retries are invisible in the results: the same outputs in the same order, the same cache keys.
    let outputs = ws.outputs("adaptive");
    assert_eq!(outputs, ws.outputs("one"));
    let numbers: Vec<Json> = outputs.iter().map(|o| o["line_number"].clone()).collect();
    assert_eq!(numbers, (0..60).map(|n| json!(n)).collect::<Vec<_>>());
    let categories: Vec<Json> = outputs.iter().map(|o| o["category"].clone()).collect();
    assert_eq!(categories, rows.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>());
    assert_eq!(cache_keys(&ws.path().join("cache-adaptive")), cache_keys(&ws.path().join("cache-one")));

    // The run counts the 429s the deployment sent, and went above one at a time.
    let llm = &ws.run_json("adaptive")["llm"];
    assert_eq!(llm["throttled"], json!(refused), "{llm}");
    assert_eq!(llm["retries"], json!(refused), "{llm}");
    assert!(llm["peak_in_flight"].as_u64().unwrap() > 1, "{llm}");
    let llm = &ws.run_json("one")["llm"];
    assert_eq!((llm["peak_in_flight"].clone(), llm["throttled"].clone()), (json!(1), json!(0)), "{llm}");
}

#[test]
fn flows_checked_in_parallel_share_one_limit_per_deployment() {
    let fake = FakeLlm::start_with_latency(KEY, std::time::Duration::from_millis(20));
    let ws = Workspace::new();
    let rows = many_tickets(40);
    for (flow, half) in [("triage-a", &rows[..20]), ("triage-b", &rows[20..])] {
        copy_tree(&ws.path().join("flows/support-triage"), &ws.path().join("flows").join(flow), &[]);
        let data: String = half.iter().map(|(t, _)| format!("{}\n", json!({"ticket": t}))).collect();
        ws.write(&format!("flows/{flow}/data.jsonl"), &data);
    }
    let config = std::fs::read_to_string(ws.path().join(".flow-ci.yaml")).unwrap();
    let connections = &config[config.find("connections:").unwrap()..];
    let flows = "flows:\n  - path: flows/triage-a\n    run: flows/triage-a/run.yml\n    gates:\n      failed_lines: { max_ratio: 0.0 }\n  - path: flows/triage-b\n    run: flows/triage-b/run.yml\n    gates:\n      failed_lines: { max_ratio: 0.0 }\nbaseline: none\n";
    let pricing = "llm:\n  pricing:\n    gpt-4o-mini: { prompt: 0.15, completion: 0.6 }\n";
    ws.write(".flow-ci.yaml", &format!("{flows}{pricing}{connections}"));
    let check = |extra: &[&str]| {
        let mut cmd = ws.against(&fake);
        cmd.args(["check", "--all", "--parallel", "2", "--no-cache"]).args(extra).assert().success();
        let report = read_json(&ws.path().join(".flow-ci/report/report.json"));
        for flow in report["flows"].as_array().unwrap() {
            assert_eq!(flow["lines"], json!([0, 20]), "{flow}");
            // report.json carries the flow's tokens (from the answers' usage) and their cost.
            let run = ws.run_json(flow["batch_run"].as_str().unwrap());
            let llm = &flow["llm"];
            assert_eq!(llm["total_tokens"], run["llm"]["total_tokens"], "{flow}");
            assert_eq!(llm["requests"], json!(20), "{flow}");
            let tokens = &llm["by_model"]["gpt-4o-mini"];
            let (p, c) = (tokens["prompt_tokens"].as_f64().unwrap(), tokens["completion_tokens"].as_f64().unwrap());
            assert!(p > 0.0 && p + c == llm["total_tokens"].as_f64().unwrap(), "{flow}");
            let cost = llm["cost"].as_f64().unwrap();
            assert!((cost - (p / 1000.0 * 0.15 + c / 1000.0 * 0.6)).abs() < 1e-9, "{flow}");
        }
        let mut categories = vec![];
        for flow in report["flows"].as_array().unwrap() {
            let run = flow["batch_run"].as_str().unwrap();
            categories.extend(ws.outputs(run).iter().map(|o| o["category"].clone()));
        }
        let mut got = categories;
        let mut expected: Vec<Json> = rows.iter().map(|(_, c)| c.clone()).collect();
        got.sort_by_key(Json::to_string);
        expected.sort_by_key(Json::to_string);
        assert_eq!(got, expected);
    };

    // Two flows at once, an upper bound of 4 on a deployment holding 4: one
    // limit for both flows never sends a fifth (two limits would send 8).
    fake.limit_in_flight(4);
    check(&["--llm-concurrency", "4"]);
    assert_eq!(fake.throttled(), 0);
    assert_eq!(fake.violations(), Vec::<String>::new());

    // Without a bound the shared limit finds the deployment's; no line fails.
    fake.limit_in_flight(6);
    check(&[]);
    assert_eq!(fake.count(), 80 + fake.throttled());
}

#[test]
fn exhausted_retries_fail_the_line_not_the_run() {
    let fake = FakeLlm::start(KEY);
    for _ in 0..3 {
        fake.fail_next(503, Some("0"));
    }
    let ws = Workspace::new();
    let tickets = ["I was charged twice.", "My parcel is lost."];
    run_tickets(&ws, &fake, "exhausted", &tickets, &["--llm-retries", "1", "--llm-concurrency", "1"]);
    let record = ws.run_json("exhausted");
    assert_eq!(record["lines"]["failed"], json!(1), "{record}");
    let message = record["error"]["first_error"]["message"].as_str().unwrap();
    assert!(message.contains("Exceed max retry times") && message.contains("503"), "{message}");
}

#[test]
fn a_redirect_to_another_origin_gets_no_api_key() {
    // The endpoint answers 307 to another loopback port, which would accept
    // the key: reqwest's default policy forwards `api-key` there.
    let (fake, elsewhere) = (FakeLlm::start(KEY), FakeLlm::start(KEY));
    fake.redirect_to(&elsewhere.url);
    let ws = Workspace::new();
    run_tickets(&ws, &fake, "redirected", &["I was charged twice."], &["--llm-retries", "0"]);
    assert_eq!(fake.count(), 1, "the endpoint was called, once (a refused redirect is not retried)");
    let leaked: Vec<_> = elsewhere.received().into_iter().filter(|r| r.header("api-key").is_some()).collect();
    assert!(leaked.is_empty(), "the key went to another origin: {leaked:?}");
    assert_eq!(elsewhere.count(), 0, "the redirect is not followed at all");
    let record = ws.run_json("redirected");
    assert_eq!(record["lines"]["failed"], json!(1), "{record}");
    let message = record["error"]["first_error"]["message"].as_str().unwrap();
    assert!(message.contains("another origin") && !message.contains(KEY), "{message}");
}

#[test]
fn a_missing_key_stops_before_anything_runs() {
    let fake = FakeLlm::start(KEY);
    let ws = Workspace::new();
    let mut cmd = ws.flow_ci();
    cmd.env("AZURE_OPENAI_ENDPOINT", &fake.url);
    let out = create(&mut cmd, &["--file", "flows/support-triage/run.yml", "--no-cache"]).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for needle in ["`triage`", "`aoai`", ".flow-ci.yaml", "AZURE_OPENAI_API_KEY"] {
        assert!(stderr.contains(needle), "`{needle}` missing from:\n{stderr}");
    }
    // With the cache on, the first request that is not cached stops the run.
    let mut cmd = ws.flow_ci();
    cmd.env("AZURE_OPENAI_ENDPOINT", &fake.url).env("FLOW_CI_CACHE_DIR", ws.path().join("empty-cache"));
    let out = create(&mut cmd, &["--file", "flows/support-triage/run.yml", "--name", "nokey"]).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("connection `aoai`") && stderr.contains("AZURE_OPENAI_API_KEY"), "{stderr}");
    assert_eq!(ws.run_json("nokey")["status"], json!("Failed"));
    assert_eq!(fake.count(), 0);

    // An undefined connection names the places searched.
    ws.write(
        "flows/support-triage/other.run.yml",
        "flow: .\ndata: data.jsonl\nconnections:\n  triage:\n    connection: nowhere\n",
    );
    let out = create(&mut ws.flow_ci(), &["--file", "flows/support-triage/other.run.yml"]).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("connection `nowhere` used by node `triage` is not defined"), "{stderr}");
}

#[test]
fn python_nodes_receive_connection_objects() {
    let ws = Workspace::new();
    ws.write(
        "conn-flow/flow.dag.yaml",
        "inputs:\n  q:\n    type: string\n    default: hi\noutputs:\n  out:\n    type: string\n    reference: ${use.output}\nnodes:\n- name: use\n  type: python\n  source: {type: code, path: use.py}\n  inputs:\n    aoai: aoai\n    search: search\n    q: ${inputs.q}\n",
    );
    ws.write(
        "conn-flow/use.py",
        "from promptflow.core import tool\nfrom promptflow.connections import AzureOpenAIConnection, CustomConnection\n\n\n@tool\ndef use(aoai: AzureOpenAIConnection, search: CustomConnection, q: str) -> str:\n    assert isinstance(aoai, AzureOpenAIConnection) and isinstance(search, CustomConnection)\n    return '|'.join([aoai.api_base, aoai.api_version, aoai.api_key[:4], search.configs['index'], search.secrets['token'][:2], q])\n",
    );
    let config = std::fs::read_to_string(ws.path().join(".flow-ci.yaml")).unwrap()
        + "  search:\n    type: custom\n    configs:\n      index: tickets\n    secrets:\n      token: ${env:SEARCH_TOKEN}\n";
    ws.write(".flow-ci.yaml", &config);
    let mut cmd = ws.flow_ci();
    cmd.env("AZURE_OPENAI_API_KEY", KEY).env("SEARCH_TOKEN", "s3cret");
    let out = cmd.args(["flow", "test", "--flow", "conn-flow"]).assert().success();
    let printed: Json = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(printed["out"], json!("https://flow-ci-example.openai.azure.com|2024-02-01|test|tickets|s3|hi"));
}

#[test]
fn secrets_never_reach_the_run_store_or_the_cache() {
    let fake = FakeLlm::start(KEY);
    fake.fail_next(401, None);
    let ws = Workspace::new();
    create(
        &mut ws.against(&fake),
        &["--file", "flows/support-triage/run.yml", "--name", "secret", "--llm-concurrency", "1"],
    )
    .success();
    for file in walk(ws.path()) {
        let text = std::fs::read(&file).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains(KEY), "{} holds the key", file.display());
    }
}

#[test]
fn the_example_flow_runs_from_recorded_responses_without_key_or_network() {
    let ws = Workspace::new();
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/.flow-ci/cache");
    copy_tree(&cache, &ws.path().join(".flow-ci/cache"), &[]);
    let out = create(&mut ws.flow_ci(), &["--file", "flows/support-triage/run.yml", "--name", "recorded"]);
    out.success();
    let usage = &ws.run_json("recorded")["llm"];
    assert_eq!(
        (usage["requests"].clone(), usage["cache_hits"].clone()),
        (json!(0), json!(12)),
        "{usage}\nIf the request format changed, re-record with: cargo test --test llm -- --ignored record_the_example_responses"
    );
    // The recorded answers: right for 11 of the 12 tickets.
    let expected: Vec<Json> = tickets().iter().map(|(t, _)| json!(classify(t))).collect();
    let got: Vec<Json> = ws.outputs("recorded").iter().map(|o| o["category"].clone()).collect();
    assert_eq!(got, expected);
}

/// Re-records fixtures/.flow-ci/cache/llm from the fake model, as if the
/// example endpoint had answered. Run after changing the example flow.
#[test]
#[ignore = "writes fixtures/.flow-ci/cache/llm; run by hand after changing the example flow"]
fn record_the_example_responses() {
    use exec::llm::cache::Cache;
    use exec::llm::request::{Api, Provider, Request};
    let fake = FakeLlm::start(KEY);
    let ws = Workspace::new();
    create(&mut ws.against(&fake), &["--file", "flows/support-triage/run.yml", "--name", "rec"]).success();
    let target = Cache::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/.flow-ci/cache/llm"));
    for file in walk(&ws.path().join("cache")) {
        let entry = read_json(&file);
        let req = &entry["request"];
        let url = req["url"].as_str().unwrap().replace(&fake.url, "https://flow-ci-example.openai.azure.com");
        let request = Request {
            provider: Provider::AzureOpenAI,
            api: Api::Chat,
            url,
            model: req["model"].as_str().unwrap().to_string(),
            body: req["body"].clone(),
            returns_message: false,
        };
        let mut response = entry["response"].clone();
        response["id"] = json!("chatcmpl-recorded");
        target.put(&Cache::key(&request), &request, &response).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// promptflow's own llm examples against the fake, through pf and flow-ci
/// with the same connection: the same request bodies and outputs.
/// basic-with-builtin-llm gives its llm node a `prompt` input, which is the
/// template instead of the node's source file (promptflow binds the file
/// with functools.partial, and the input overrides it), in flow test and in
/// a batch run; use_functions_with_chat_models returns the whole message,
/// with the null keys the openai SDK's model_dump keeps (`"function_call"
/// in message` is how the flow's template and python node branch).
#[test]
fn promptflow_llm_examples_send_and_return_what_pf_does() {
    let fake = FakeLlm::start(KEY);
    let (ws, conn) = pf_examples(&fake);
    let flow_ci = |args: &[&str]| examples_flow_ci(&ws, &conn, args);
    for flow in ["flows/standard/basic-with-builtin-llm", "flows/chat/use_functions_with_chat_models"] {
        let args = ["flow", "test", "--flow", flow];
        let pf_out = String::from_utf8_lossy(&ws.pf_ok(&args).stdout).into_owned();
        let pf_request = fake.received().last().cloned().unwrap();
        let ours: Json = serde_json::from_slice(&flow_ci(&args)).unwrap();
        let our_request = fake.received().last().cloned().unwrap();
        assert_eq!((&our_request.path, &our_request.query), (&pf_request.path, &pf_request.query), "{flow}");
        assert_eq!(our_request.body, pf_request.body, "{flow}: request bodies differ (left flow-ci, right pf)");
        let start = pf_out.rfind("\n{").map_or(0, |i| i + 1);
        let expected: Json = serde_json::from_str(&pf_out[start..]).unwrap();
        assert_eq!(ours, expected, "{flow}: outputs differ (left flow-ci, right pf)");
    }
    let basic = "flows/standard/basic-with-builtin-llm";
    let data = format!("{basic}/data.jsonl");
    let before = fake.count();
    let mapping = ["--column-mapping", "text=${data.text}"];
    ws.pf_ok(&[&["run", "create", "--flow", basic, "--data", &data, "--name", "pf-basic"], &mapping[..]].concat());
    let pf_bodies = sorted_bodies(&fake.received()[before..]);
    let before = fake.count();
    flow_ci(&[&["run", "create", "--flow", basic, "--data", &data, "--name", "ours-basic"], &mapping[..]].concat());
    assert_eq!(sorted_bodies(&fake.received()[before..]), pf_bodies, "batch run request bodies (left flow-ci)");
    assert_eq!(pf_bodies.len(), 3);
    let first = pf_bodies[0]["messages"][1]["content"].as_str().unwrap();
    assert!(first.contains("C Hello World!"), "the prompt input carries the data: {first}");
    assert_eq!(fake.violations(), Vec::<String>::new());
}

/// promptflow's examples in a pf workspace whose `open_ai_connection` is an
/// Azure OpenAI connection to `fake` (the examples name a deployment), and
/// the same connection as a file for flow-ci.
fn pf_examples(fake: &FakeLlm) -> (support::pf::PfWorkspace, PathBuf) {
    let ws = support::pf::PfWorkspace::new("tests/vendor/promptflow/examples/flows");
    let conn = ws.path().join("aoai.yaml");
    let text = format!(
        "name: open_ai_connection\ntype: azure_open_ai\napi_key: {KEY}\napi_base: {}\napi_type: azure\napi_version: \"2024-02-01\"\n",
        fake.url
    );
    std::fs::write(&conn, text).unwrap();
    ws.pf_ok(&["connection", "create", "--file", conn.to_str().unwrap()]);
    (ws, conn)
}

/// flow-ci ARGS in the examples' workspace with the connection file and no cache; it must succeed.
fn examples_flow_ci(ws: &support::pf::PfWorkspace, conn: &Path, args: &[&str]) -> Vec<u8> {
    let mut cmd = Command::cargo_bin("flow-ci").unwrap();
    cmd.current_dir(ws.path()).env("FLOW_CI_RUNS_DIR", ws.path().join("flow-ci-runs")).env_remove("VIRTUAL_ENV");
    // promptflow's interpreter, instead of installing the examples' requirements.txt.
    cmd.env("FLOW_CI_PYTHON", support::pf::pf().parent().unwrap().join("python"));
    for var in ["AZURE_OPENAI_ENDPOINT", "OPENAI_API_KEY", "FLOW_CI_CACHE_DIR", "PROMPTFLOW_CONNECTIONS"] {
        cmd.env_remove(var);
    }
    let out = cmd.args(args).args(["--connection", conn.to_str().unwrap(), "--no-cache"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "flow-ci {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A data column named `line_number` is the line number, as promptflow
/// merges batch inputs (batch/_batch_inputs_processor.py,
/// _merge_input_dicts_by_line): eval-groundedness numbers its rows 1 and 2,
/// so both runs' lines are 1 and 2, and an evaluation over such a run reads
/// the base run's line 1 with the data's line 1. Outputs, line numbers and
/// metrics equal pf's.
#[test]
fn a_line_number_column_numbers_the_lines_as_in_pf() {
    let fake = FakeLlm::start(KEY);
    let (ws, conn) = pf_examples(&fake);
    let flow = "flows/evaluation/eval-groundedness";
    let data = format!("{flow}/data.jsonl");
    let base = ["question=${data.question}", "answer=${data.answer}", "context=${data.context}"];
    let eval = ["question=${run.inputs.question}", "answer=${run.outputs.groundedness}", "context=${data.context}"];
    for (name, run, mapping) in [("base", None, base), ("eval", Some("base"), eval)] {
        let mut args = vec!["run", "create", "--flow", flow, "--data", &data, "--name", name];
        args.extend(run.iter().flat_map(|r| ["--run", r]));
        args.push("--column-mapping");
        args.extend(mapping);
        ws.pf_ok(&args);
        examples_flow_ci(&ws, &conn, &args);
        let pf_dir = ws.path().join("home/.promptflow/.runs").join(name);
        let ours_dir = ws.path().join("flow-ci-runs").join(name);
        let pf_outputs = read_jsonl(&pf_dir.join("flow_outputs/output.jsonl"));
        let lines: Vec<&Json> = pf_outputs.iter().map(|o| &o["line_number"]).collect();
        assert_eq!(lines, [&json!(1), &json!(2)], "{name}: the oracle numbers the lines from the column");
        assert_eq!(read_jsonl(&ours_dir.join("output.jsonl")), pf_outputs, "{name}: outputs (left flow-ci)");
        assert_eq!(read_json(&ours_dir.join("metrics.json")), read_json(&pf_dir.join("metrics.json")), "{name}");
    }
    assert_eq!(fake.violations(), Vec::<String>::new());
}

/// Bodies as JSON values (key order aside), in a stable order.
fn sorted_bodies(received: &[support::fake_llm::Received]) -> Vec<Json> {
    let mut bodies: Vec<Json> = received.iter().map(|r| r.body.clone()).collect();
    bodies.sort_by_key(|b| b["messages"].to_string());
    bodies
}
