//! Package tools (`source: {type: package, tool: ID}`) run as promptflow runs
//! them: the worker finds `ID` among the tools installed packages register
//! under the `package_tools` entry point group (promptflow-core
//! `_core/tools_manager.py`, `collect_package_tools`) and loads its module,
//! class and function (`BuiltinsManager._load_package_tool`). pf (the oracle,
//! FLOW_CI_PF) and flow-ci run the same flows, in both worker modes (with
//! promptflow installed in the worker's interpreter, and through flow-ci's
//! stand-in when `python3` lacks it).

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value as Json;

mod support;
use support::fake_llm::{FakeLlm, embedding_of};
use support::fs::read_jsonl;
use support::http::{Answer, serve};
use support::pf::{PfWorkspace, last_json_object, worker_pythons};

/// promptflow's own test flows that call a custom tool package.
const CORPUS: &str = "tests/vendor/promptflow/src/promptflow/tests/test_configs/flows";
/// The tools of promptflow's example tool package, `my_tool_package`.
const MY_TOOLS: &str = "tests/vendor/promptflow/examples/tools/tool-package-quickstart/my_tool_package/tools";

/// `my_tool_package` installed as pip installs a package: its modules and a
/// `.dist-info` whose `entry_points.txt` names the function listing its
/// tools, here on a folder given as PYTHONPATH to pf and flow-ci alike. The
/// listing returns what the example's YAML files hold (its own listing reads
/// them with ruamel.yaml, which `python3` may lack).
fn install_my_tool_package(site: &Path) {
    let package = site.join("my_tool_package");
    let tools = package.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::write(package.join("__init__.py"), "").unwrap();
    std::fs::write(tools.join("__init__.py"), "").unwrap();
    let vendored = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(MY_TOOLS);
    for file in ["my_tool_1.py", "my_tool_2.py"] {
        std::fs::copy(vendored.join(file), tools.join(file)).unwrap();
    }
    let inputs = r#"{"connection": {"type": ["CustomConnection"]}, "input_text": {"type": ["string"]}}"#;
    std::fs::write(
        tools.join("listing.py"),
        format!(
            "def list_package_tools():\n    return {{\n        \
             'my_tool_package.tools.my_tool_1.my_tool': {{'function': 'my_tool', 'module': 'my_tool_package.tools.my_tool_1', 'name': 'My First Tool', 'type': 'python', 'inputs': {inputs}}},\n        \
             'my_tool_package.tools.my_tool_2.MyTool.my_tool': {{'class_name': 'MyTool', 'function': 'my_tool', 'module': 'my_tool_package.tools.my_tool_2', 'name': 'My Second Tool', 'type': 'python', 'inputs': {inputs}}},\n    }}\n"
        ),
    )
    .unwrap();
    let dist = site.join("my_tools_package-0.0.13.dist-info");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("METADATA"), "Metadata-Version: 2.1\nName: my-tools-package\nVersion: 0.0.13\n").unwrap();
    std::fs::write(
        dist.join("entry_points.txt"),
        "[package_tools]\nmy_tools = my_tool_package.tools.listing:list_package_tools\n",
    )
    .unwrap();
}

fn flow_ci(dir: &Path, python: Option<&Path>, site: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::cargo_bin("flow-ci").unwrap();
    cmd.current_dir(dir).env("FLOW_CI_RUNS_DIR", dir.join("flow-ci-runs")).env_remove("VIRTUAL_ENV");
    match python {
        Some(python) => cmd.env("FLOW_CI_PYTHON", python),
        None => cmd.env_remove("FLOW_CI_PYTHON"),
    };
    match site {
        Some(site) => cmd.env("PYTHONPATH", site),
        None => cmd.env_remove("PYTHONPATH"),
    };
    cmd.args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn stdout_json(out: &Output, what: &str) -> Json {
    assert_eq!(out.status.code(), Some(0), "{what}:\n{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: no JSON ({e}):\n{}", text(out)))
}

fn custom_connection(ws: &PfWorkspace, name: &str) -> PathBuf {
    pf_connection(
        ws,
        name,
        &format!("name: {name}\ntype: custom\nconfigs:\n  api_base: http://x\nsecrets:\n  api_key: k-{name}\n"),
    )
}

/// The connection file `STEM.yaml` holding `yaml`, created in pf's store too.
fn pf_connection(ws: &PfWorkspace, stem: &str, yaml: &str) -> PathBuf {
    let file = ws.path().join(format!("{stem}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    ws.pf_ok(&["connection", "create", "--file", file.to_str().unwrap()]);
    file
}

#[test]
fn a_custom_tool_package_is_found_through_its_entry_point_as_pf_finds_it() {
    let ws = PfWorkspace::new(CORPUS);
    let site = ws.path().join("site");
    install_my_tool_package(&site);
    let cases = [
        ("flow_with_package_tool_with_custom_connection", "custom_connection_3", "Hello World!"),
        (
            "flow_with_package_tool_with_custom_strong_type_connection",
            "custom_strong_type_connection",
            "Hello Hello World!",
        ),
    ];
    for (flow, connection, answer) in cases {
        let file = custom_connection(&ws, connection);
        let flow = format!("flows/{flow}");
        let pf_args = ["flow", "test", "--flow", flow.as_str(), "--inputs", "text=World!"];
        let out = ws.pf_command(&pf_args).env("PYTHONPATH", &site).output().unwrap();
        assert!(out.status.success(), "pf {pf_args:?}:\n{}", text(&out));
        let expected = last_json_object(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(expected["out"], answer, "the oracle ran {flow}'s package tools");
        let args = [&pf_args[..], &["--connection", file.to_str().unwrap()]].concat();
        for (mode, python) in worker_pythons() {
            let ours = stdout_json(&flow_ci(ws.path(), python.as_deref(), Some(&site), &args), mode);
            assert_eq!(ours, expected, "{flow} ({mode}): flow-ci (left) differs from pf (right)");
        }
        // A batch run over the flow's own data.
        let data = format!("{flow}/data.jsonl");
        let name = connection.replace('_', "-");
        let run = ["run", "create", "--flow", flow.as_str(), "--data", data.as_str(), "--name", name.as_str()];
        let out = ws.pf_command(&run).env("PYTHONPATH", &site).output().unwrap();
        assert!(out.status.success(), "pf {run:?}:\n{}", text(&out));
        let expected = read_jsonl(&ws.path().join(format!("home/.promptflow/.runs/{name}/flow_outputs/output.jsonl")));
        for (i, (mode, python)) in worker_pythons().into_iter().enumerate() {
            let ours_name = format!("{name}-{i}");
            let mut args = run.to_vec();
            args[7] = &ours_name;
            args.extend(["--connection", file.to_str().unwrap()]);
            let out = flow_ci(ws.path(), python.as_deref(), Some(&site), &args);
            assert_eq!(out.status.code(), Some(0), "{args:?} ({mode}):\n{}", text(&out));
            let ours = read_jsonl(&ws.path().join("flow-ci-runs").join(&ours_name).join("output.jsonl"));
            assert_eq!(ours, expected, "{flow} batch ({mode}): flow-ci (left) differs from pf (right)");
        }
    }
}

#[test]
fn a_package_tool_that_is_not_installed_is_one_line_naming_what_to_install() {
    let ws = PfWorkspace::new(CORPUS);
    let file = custom_connection(&ws, "custom_connection_3");
    let args = [
        "flow",
        "test",
        "--flow",
        "flows/flow_with_package_tool_with_custom_connection",
        "--connection",
        file.to_str().unwrap(),
    ];
    // pf refuses it too (PackageToolNotFoundError).
    let out = ws.pf_command(&args[..4]).env_remove("PYTHONPATH").output().unwrap();
    assert!(!out.status.success() && text(&out).contains("PackageToolNotFoundError"), "pf:\n{}", text(&out));
    for (mode, python) in worker_pythons() {
        let out = flow_ci(ws.path(), python.as_deref(), None, &args);
        assert_eq!(out.status.code(), Some(2), "{mode}:\n{}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            "error: ToolLoadError: `my_first_tool` uses package tool `my_tool_package.tools.my_tool_1.my_tool` from `my_tool_package`, which is not installed in the flow's python; add it to requirements.txt",
            "{mode}"
        );
    }
}

const KEY: &str = "pkg-tools-test-key";

/// promptflow-tools' `embedding` against the loopback Azure OpenAI: the same
/// vectors and the same requests as pf's, in test and batch runs. Without
/// promptflow in the worker's python, promptflow-tools cannot be there
/// either: one line says what to add.
#[test]
fn promptflow_tools_embedding_matches_pf() {
    let fake = FakeLlm::start(KEY);
    let ws = PfWorkspace::new("tests/flows/package-tools");
    let conn = pf_connection(
        &ws,
        "aoai",
        &format!(
            "name: aoai\ntype: azure_open_ai\napi_base: {}\napi_key: {KEY}\napi_type: azure\napi_version: \"2024-02-01\"\n",
            fake.url
        ),
    );
    let test = ["flow", "test", "--flow", "flows/embedding", "--inputs", "text=package tools"];
    let expected = last_json_object(&String::from_utf8_lossy(&ws.pf_ok(&test).stdout));
    let vector: Vec<f64> = embedding_of("package tools").into_iter().map(f64::from).collect();
    assert_eq!(expected["vector"], serde_json::json!(vector), "the oracle's vector is the fake's");
    let pf_requests = fake.received();
    assert_eq!(pf_requests.len(), 1, "{:?}", fake.violations());

    let args = [&test[..], &["--connection", conn.to_str().unwrap()]].concat();
    let (_, promptflow) = &worker_pythons()[0];
    let ours = stdout_json(&flow_ci(ws.path(), promptflow.as_deref(), None, &args), "flow test");
    assert_eq!(ours, expected, "flow-ci (left) differs from pf (right)");
    let received = fake.received();
    assert_eq!(received.len(), 2, "one request each");
    let (theirs, ours) = (&received[0], &received[1]);
    assert_eq!((&ours.path, &ours.query, &ours.body), (&theirs.path, &theirs.query, &theirs.body));
    assert_eq!(ours.header("api-key"), Some(KEY));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    let run = ["run", "create", "--flow", "flows/embedding", "--data", "flows/embedding/data.jsonl", "--name", "emb"];
    ws.pf_ok(&run);
    let expected = read_jsonl(&ws.path().join("home/.promptflow/.runs/emb/flow_outputs/output.jsonl"));
    let run_ours = [&run[..7], &["emb-ours", "--connection", conn.to_str().unwrap()]].concat();
    let out = flow_ci(ws.path(), promptflow.as_deref(), None, &run_ours);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(read_jsonl(&ws.path().join("flow-ci-runs/emb-ours/output.jsonl")), expected);

    let out = flow_ci(ws.path(), None, None, &args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "error: ToolLoadError: `embed` uses package tool `promptflow.tools.embedding.embedding` from `promptflow-tools`, which is not installed in the flow's python; add it to requirements.txt"
    );
}

const SAFETY_KEY: &str = "content-safety-test-key";

/// A loopback Azure AI Content Safety `text:analyze` (api-version
/// 2023-10-01): the subscription key checked, violence of severity 4 when
/// the text mentions a fight, else every category 0.
fn content_safety_service() -> String {
    serve(|req| {
        let ok = req.method == "POST"
            && req.path == "/contentsafety/text:analyze"
            && req.query == "api-version=2023-10-01"
            && req.header("ocp-apim-subscription-key") == Some(SAFETY_KEY)
            && req.body["text"].is_string();
        if !ok {
            let body = serde_json::json!({"error": {"code": "InvalidRequest", "message": format!("refused {} {}?{}", req.method, req.path, req.query)}});
            return Answer { status: 400, headers: vec![], body };
        }
        let violence = if req.body["text"].as_str().unwrap_or_default().contains("fight") { 4 } else { 0 };
        let categories: Vec<Json> = [("Hate", 0), ("SelfHarm", 0), ("Sexual", 0), ("Violence", violence)]
            .iter()
            .map(|(category, severity)| serde_json::json!({"category": category, "severity": severity}))
            .collect();
        Answer {
            status: 200,
            headers: vec![],
            body: serde_json::json!({"blocklistsMatch": [], "categoriesAnalysis": categories}),
        }
    })
}

/// promptflow-tools' `azure_content_safety` gets its
/// AzureContentSafetyConnection (endpoint, key, api_version) and decides as
/// with pf.
#[test]
fn promptflow_tools_content_safety_matches_pf() {
    let url = content_safety_service();
    let ws = PfWorkspace::new("tests/flows/package-tools");
    let conn = pf_connection(
        &ws,
        "safety",
        &format!(
            "name: safety\ntype: azure_content_safety\nendpoint: {url}\napi_key: {SAFETY_KEY}\napi_version: \"2023-10-01\"\n"
        ),
    );
    let (_, promptflow) = &worker_pythons()[0];
    for (text, action) in [("a friendly note", "Accept"), ("a fight broke out", "Reject")] {
        let input = format!("text={text}");
        let test = ["flow", "test", "--flow", "flows/content-safety", "--inputs", input.as_str()];
        let expected = last_json_object(&String::from_utf8_lossy(&ws.pf_ok(&test).stdout));
        assert_eq!(expected["decision"]["suggested_action"], action, "the oracle asked the service");
        let args = [&test[..], &["--connection", conn.to_str().unwrap()]].concat();
        let ours = stdout_json(&flow_ci(ws.path(), promptflow.as_deref(), None, &args), "flow test");
        assert_eq!(ours, expected, "{text}: flow-ci (left) differs from pf (right)");
    }
}

/// `my_tool_package` as a wheel (a zip of the installed files with WHEEL
/// and RECORD), so pip installs it offline from a requirements.txt line.
fn build_wheel(site: &Path, dest: &Path) {
    let script = r#"
import os, sys, zipfile
site, wheel = sys.argv[1], sys.argv[2]
info = "my_tools_package-0.0.13.dist-info/"
files = {}
for root, _, names in os.walk(site):
    for name in names:
        path = os.path.join(root, name)
        if "__pycache__" not in path:
            files[os.path.relpath(path, site)] = open(path, "rb").read()
files[info + "WHEEL"] = b"Wheel-Version: 1.0\nGenerator: flow-ci-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
files[info + "RECORD"] = "".join(name + ",,\n" for name in list(files) + [info + "RECORD"]).encode()
with zipfile.ZipFile(wheel, "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
"#;
    let status = std::process::Command::new("python3").args(["-c", script]).arg(site).arg(dest).status().unwrap();
    assert!(status.success(), "building the wheel");
}

/// The flow's requirements.txt installs the tool package into the flow's own
/// environment (no promptflow there: the stand-in serves the tool's
/// imports), and its entry point is found there.
#[test]
fn a_tool_package_in_requirements_txt_is_installed_and_found() {
    let ws = PfWorkspace::new(CORPUS);
    let site = ws.path().join("site");
    install_my_tool_package(&site);
    let flow = ws.path().join("flows/flow_with_package_tool_with_custom_connection");
    build_wheel(&site, &flow.join("my_tools_package-0.0.13-py3-none-any.whl"));
    std::fs::write(flow.join("requirements.txt"), "./my_tools_package-0.0.13-py3-none-any.whl\n").unwrap();
    let file = ws.path().join("custom_connection_3.yaml");
    std::fs::write(
        &file,
        "name: custom_connection_3\ntype: custom\nconfigs:\n  api_base: http://x\nsecrets:\n  api_key: k\n",
    )
    .unwrap();
    let args = [
        "flow",
        "test",
        "--flow",
        "flows/flow_with_package_tool_with_custom_connection",
        "--inputs",
        "text=World!",
        "--connection",
        file.to_str().unwrap(),
    ];
    let ours = stdout_json(&flow_ci(ws.path(), None, None, &args), "flow test with requirements.txt");
    assert_eq!(ours, serde_json::json!({"out": "Hello World!"}));
}

/// What a loopback service received, and what it refused and why.
#[derive(Clone, Default)]
struct Log {
    received: std::sync::Arc<std::sync::Mutex<Vec<support::http::Received>>>,
    violations: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Log {
    fn record(&self, req: &support::http::Received, problems: Vec<String>) {
        self.received.lock().unwrap().push(req.clone());
        self.violations.lock().unwrap().extend(problems);
    }

    fn received(&self) -> Vec<support::http::Received> {
        self.received.lock().unwrap().clone()
    }

    fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }
}

/// `problem` when `ok` is false.
fn check(problems: &mut Vec<String>, ok: bool, problem: impl FnOnce() -> String) {
    if !ok {
        problems.push(problem());
    }
}

const SERP_KEY: &str = "serp-test-key";

/// A loopback SerpAPI `GET /search` as the serpapi client calls it
/// (serpapi/serp_api_client.py, get_response: the parameters in the query,
/// the key as `api_key`, `source=python`). A wrong key is answered as
/// SerpAPI answers it (401, `{"error": ...}`) and recorded as a violation;
/// anything else answers organic results naming the query.
fn serpapi_service(log: Log) -> String {
    serve(move |req| {
        let mut problems = vec![];
        check(&mut problems, req.method == "GET" && req.path == "/search", || format!("{} {}", req.method, req.path));
        check(&mut problems, req.param("source") == Some("python"), || format!("source in {}", req.query));
        check(&mut problems, req.param("engine").is_some() && req.param("q").is_some(), || {
            format!("no engine or q in {}", req.query)
        });
        let key_ok = req.param("api_key") == Some(SERP_KEY);
        check(&mut problems, key_ok, || format!("api_key in {}", req.query));
        log.record(req, problems);
        if !key_ok {
            return Answer::json(
                401,
                serde_json::json!({"error": "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key"}),
            );
        }
        let q = req.param("q").unwrap_or_default();
        Answer::json(
            200,
            serde_json::json!({
                "search_parameters": {"q": q, "engine": req.param("engine")},
                "organic_results": [{"position": 1, "title": format!("About {q}"), "link": format!("https://example.com/{q}")}],
            }),
        )
    })
}

/// pf and flow-ci's worker import this first (a `sitecustomize` module on
/// PYTHONPATH): the serpapi client's hard-coded https://serpapi.com becomes
/// the loopback service. The test checks that flow-ci runs the tool as pf
/// does (connection, inputs, outputs, errors), not SerpAPI itself.
fn redirect_serpapi(site: &Path, url: &str) {
    std::fs::create_dir_all(site).unwrap();
    std::fs::write(
        site.join("sitecustomize.py"),
        format!("import serpapi.serp_api_client\n\nserpapi.serp_api_client.SerpApiClient.BACKEND = {url:?}\n"),
    )
    .unwrap();
}

fn query_params(req: &support::http::Received) -> Vec<String> {
    let mut params: Vec<String> = req.query.split('&').map(str::to_string).collect();
    params.sort();
    params
}

/// promptflow-tools' `serpapi` (a ToolProvider built from its
/// SerpConnection) sends the same search and returns the same results with
/// pf and flow-ci, in test and batch runs; a key SerpAPI refuses fails the
/// node with SerpAPI's message on both.
#[test]
fn promptflow_tools_serpapi_matches_pf() {
    let log = Log::default();
    let url = serpapi_service(log.clone());
    let ws = PfWorkspace::new("tests/flows/package-tools");
    let site = ws.path().join("site");
    redirect_serpapi(&site, &url);
    let conn = pf_connection(&ws, "serp", &format!("name: serp\ntype: serp\napi_key: {SERP_KEY}\n"));
    let (_, promptflow) = &worker_pythons()[0];

    let test = ["flow", "test", "--flow", "flows/serpapi", "--inputs", "query=flow ci"];
    let out = ws.pf_command(&test).env("PYTHONPATH", &site).output().unwrap();
    assert!(out.status.success(), "pf:\n{}", text(&out));
    let expected = last_json_object(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(expected["results"]["organic_results"][0]["title"], "About flow+ci", "the oracle asked the fake");
    let args = [&test[..], &["--connection", conn.to_str().unwrap()]].concat();
    let ours = stdout_json(&flow_ci(ws.path(), promptflow.as_deref(), Some(&site), &args), "flow test");
    assert_eq!(ours, expected, "flow-ci (left) differs from pf (right)");
    let received = log.received();
    assert_eq!(received.len(), 2, "one search each");
    assert_eq!(query_params(&received[1]), query_params(&received[0]), "flow-ci's search (left), pf's (right)");
    // The node's literals as the tool reads them: engine bing, num 3 as count, safe active as safeSearch.
    assert_eq!(received[0].param("count"), Some("3"));
    assert_eq!(received[0].param("safeSearch"), Some("Strict"));
    assert!(log.violations().is_empty(), "{:?}", log.violations());

    let run = ["run", "create", "--flow", "flows/serpapi", "--data", "flows/serpapi/data.jsonl", "--name", "serp"];
    let out = ws.pf_command(&run).env("PYTHONPATH", &site).output().unwrap();
    assert!(out.status.success(), "pf {run:?}:\n{}", text(&out));
    let expected = read_jsonl(&ws.path().join("home/.promptflow/.runs/serp/flow_outputs/output.jsonl"));
    let run_ours = [&run[..7], &["serp-ours", "--connection", conn.to_str().unwrap()]].concat();
    let out = flow_ci(ws.path(), promptflow.as_deref(), Some(&site), &run_ours);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(read_jsonl(&ws.path().join("flow-ci-runs/serp-ours/output.jsonl")), expected);
    let mut searches: Vec<Vec<String>> = log.received()[2..].iter().map(query_params).collect();
    searches.sort();
    assert_eq!(searches.len(), 4, "two lines each");
    assert_eq!((&searches[0], &searches[2]), (&searches[1], &searches[3]), "the same searches");

    // A key SerpAPI refuses: SerpAPIUserError with its message, on both.
    let wrong = pf_connection(&ws, "serp-wrong", "name: serp\ntype: serp\napi_key: not-the-key\n");
    let out = ws.pf_command(&test).env("PYTHONPATH", &site).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("SerpAPIUserError"), "pf:\n{}", text(&out));
    let args = [&test[..], &["--connection", wrong.to_str().unwrap()]].concat();
    let out = flow_ci(ws.path(), promptflow.as_deref(), Some(&site), &args);
    assert_eq!(out.status.code(), Some(3), "a node failed: {}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SerpAPIUserError") && stderr.contains("Invalid API key. Your API key should be here"),
        "{stderr}"
    );
    assert_eq!(log.violations().len(), 2, "only the two refused keys: {:?}", log.violations());
}

const LLAMA_KEY: &str = "llama-endpoint-key";
const FALCON_KEY: &str = "falcon-endpoint-key";

/// The problems of one scoring request to a deployment of `family` behind
/// `key`, `deployment` the header expected (none for the default one).
fn scoring_problems(req: &support::http::Received, family: &str, key: &str, deployment: Option<&str>) -> Vec<String> {
    let mut problems = vec![];
    check(&mut problems, req.method == "POST", || format!("{} {}", req.method, req.path));
    check(&mut problems, req.header("content-type") == Some("application/json"), || "content-type".into());
    check(&mut problems, req.header("authorization") == Some(&format!("Bearer {key}")), || "authorization".into());
    let agent = format!("PromptFlow/OpenModelLLM/{family}");
    check(&mut problems, req.header("x-ms-user-agent") == Some(&agent), || {
        format!("{:?}", req.header("x-ms-user-agent"))
    });
    check(&mut problems, req.header("azureml-model-deployment") == deployment, || "azureml-model-deployment".into());
    problems
}

/// A loopback Azure ML online endpoint's scoring URI as promptflow-tools'
/// Open Model LLM calls it (open_model_llm.py, AzureMLOnlineEndpoint.
/// _call_endpoint: POST of the formatter's JSON, `Authorization: Bearer
/// KEY`, `x-ms-user-agent: PromptFlow/OpenModelLLM/FAMILY`, and
/// `azureml-model-deployment` when the node names a deployment), with two
/// deployments: `/llama/score`, a LLaMa chat model (LlamaContentFormatter:
/// `{"input_data": {"input_string": [messages], "parameters": {..}}}`,
/// answered `{"output": text}`), and `/falcon/score`, a Falcon completion
/// model (MIRCompleteFormatter: `{"input_data": {"input_string": [prompt]},
/// "parameters": {..}}`, answered `[{"0": text}]`). A refused request is
/// recorded and answered 200 with an `output` naming it: any failure makes
/// the tool retry after sleeping 6, 18, 54 and 162 s
/// (handle_online_endpoint_error).
fn online_endpoint(log: Log) -> String {
    serve(move |req| {
        let data = &req.body["input_data"];
        let (mut problems, answer) = match req.path.as_str() {
            "/llama/score" => {
                let mut problems = scoring_problems(req, "LLaMa", LLAMA_KEY, None);
                let messages = data["input_string"].as_array().cloned().unwrap_or_default();
                let roles_ok = !messages.is_empty()
                    && messages
                        .iter()
                        .all(|m| ["system", "user", "assistant"].contains(&m["role"].as_str().unwrap_or("")));
                check(&mut problems, roles_ok && data["parameters"].is_object(), || format!("chat body {}", req.text));
                let last = messages.last().map_or(Json::Null, |m| m["content"].clone());
                (problems, serde_json::json!({"output": format!("llama heard: {}", last.as_str().unwrap_or(""))}))
            }
            "/falcon/score" => {
                let mut problems = scoring_problems(req, "Falcon", FALCON_KEY, Some("falcon-blue"));
                let prompt = data["input_string"][0].as_str().unwrap_or_default().to_string();
                let ok =
                    data["input_string"].as_array().is_some_and(|a| a.len() == 1) && req.body["parameters"].is_object();
                check(&mut problems, ok, || format!("completion body {}", req.text));
                (problems, serde_json::json!([{"0": format!("falcon read: {prompt}")}]))
            }
            other => (vec![format!("path {other}")], serde_json::json!({})),
        };
        let refused = !problems.is_empty();
        let answer = if refused { serde_json::json!({"output": format!("refused: {problems:?}")}) } else { answer };
        problems.retain(|_| refused);
        log.record(req, problems);
        Answer::json(200, answer)
    })
}

/// A scoring request as compared between pf and flow-ci.
fn scoring(req: &support::http::Received) -> (String, Vec<Option<String>>, String) {
    let headers = ["authorization", "x-ms-user-agent", "azureml-model-deployment", "content-type"];
    (req.path.clone(), headers.iter().map(|h| req.header(h).map(str::to_string)).collect(), req.text.clone())
}

/// promptflow-tools' `open_model_llm` on custom_llm nodes (the tool gets the
/// node's template and renders it; `endpoint_name: localConnection/NAME`
/// names a custom connection with endpoint_url, model_family and
/// endpoint_api_key): the same scoring requests and answers with pf and
/// flow-ci, a chat and a completion deployment, in test and batch runs.
#[test]
fn promptflow_tools_open_model_llm_matches_pf() {
    let log = Log::default();
    let url = online_endpoint(log.clone());
    let ws = PfWorkspace::new("tests/flows/package-tools");
    let mut files = vec![];
    for (name, family, key) in [("llama", "LLAMA", LLAMA_KEY), ("falcon", "FALCON", FALCON_KEY)] {
        let file = pf_connection(
            &ws,
            name,
            &format!(
                "name: {name}\ntype: custom\nconfigs:\n  endpoint_url: {url}/{name}/score\n  model_family: {family}\nsecrets:\n  endpoint_api_key: {key}\n"
            ),
        );
        files.extend(["--connection".to_string(), file.to_str().unwrap().to_string()]);
    }
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let (_, promptflow) = &worker_pythons()[0];

    let test = ["flow", "test", "--flow", "flows/open-model-llm", "--inputs", "question=What is a flow?"];
    let expected = last_json_object(&String::from_utf8_lossy(&ws.pf_ok(&test).stdout));
    assert_eq!(expected["chat"], "llama heard: What is a flow?", "the oracle asked the fake");
    let ours =
        stdout_json(&flow_ci(ws.path(), promptflow.as_deref(), None, &[&test[..], &files].concat()), "flow test");
    assert_eq!(ours, expected, "flow-ci (left) differs from pf (right)");
    let mut theirs: Vec<_> = log.received().iter().take(2).map(scoring).collect();
    let mut mine: Vec<_> = log.received().iter().skip(2).map(scoring).collect();
    theirs.sort();
    mine.sort();
    assert_eq!(theirs.len(), 2, "one request per node");
    assert_eq!(mine, theirs, "flow-ci's requests (left), pf's (right)");
    assert!(log.violations().is_empty(), "{:?}", log.violations());

    let data = "flows/open-model-llm/data.jsonl";
    let run = ["run", "create", "--flow", "flows/open-model-llm", "--data", data, "--name", "oml"];
    // pf's forked line workers fail every line reading the connection
    // store: filelock refuses pf.sqlite's lock "inherited across fork"; the
    // oracle's workers are spawned instead (PF_BATCH_METHOD,
    // executor/_line_execution_process_pool.py).
    let out = ws.pf_command(&run).env("PF_BATCH_METHOD", "spawn").output().unwrap();
    assert!(out.status.success(), "pf {run:?}:\n{}", text(&out));
    let expected = read_jsonl(&ws.path().join("home/.promptflow/.runs/oml/flow_outputs/output.jsonl"));
    // Backslashes reach the model as written (escape_special_characters
    // puts back what it matches).
    assert_eq!(expected[1]["chat"], r#"llama heard: What does \n mean in "a\nb"?"#, "the oracle read the data");
    let out = flow_ci(ws.path(), promptflow.as_deref(), None, &[&run[..7], &["oml-ours"], &files].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(read_jsonl(&ws.path().join("flow-ci-runs/oml-ours/output.jsonl")), expected);
    let mut theirs: Vec<_> = log.received().iter().skip(4).take(4).map(scoring).collect();
    let mut mine: Vec<_> = log.received().iter().skip(8).map(scoring).collect();
    theirs.sort();
    mine.sort();
    assert_eq!((theirs.len(), mine.len()), (4, 4), "two nodes, two lines");
    assert_eq!(mine, theirs, "flow-ci's batch requests (left), pf's (right)");
    assert!(log.violations().is_empty(), "{:?}", log.violations());

    // The stand-in: without promptflow, promptflow-tools is not there either.
    let out = flow_ci(ws.path(), None, None, &[&test[..], &files].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "error: ToolLoadError: `chat` uses package tool `promptflow.tools.open_model_llm.OpenModelLLM.call` from `promptflow-tools`, which is not installed in the flow's python; add it to requirements.txt"
    );
}
