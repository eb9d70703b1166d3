//! Flow environments and worker isolation, through the binary: a flow's
//! requirements are installed into a cached environment its workers run in
//! (built once, reused by the next run), a requirement that cannot be
//! installed is invalid input, `FLOW_CI_PYTHON` skips all of it, and CI
//! credentials never reach a python node.
//!
//! The install tests reach PyPI, with `uv` when it is on PATH, else with
//! `python -m venv` and pip.

mod support;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value as Json, json};
use support::fake_github::FakeGitHub;
use support::project::Project;
use support::repo::{Pr, run};

/// A small pure-Python package that the CI's python3 does not have.
const PACKAGE: &str = "tomli";
const VERSION: &str = "2.0.1";

/// The finished environments (hidden names are builds in progress).
fn finished_envs(p: &Project) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(p.path().join(".flow-ci/cache/envs")) else {
        return vec![];
    };
    entries.map(|e| e.unwrap().path()).collect()
}

/// A flow whose python node runs `body` (a function of `x: str`).
fn flow(p: &Project, dir: &str, body: &str) {
    p.write(
        &format!("{dir}/flow.dag.yaml"),
        "inputs:\n  x:\n    type: string\noutputs:\n  out:\n    type: object\n    reference: ${node.output}\nnodes:\n- name: node\n  type: python\n  source:\n    type: code\n    path: node.py\n  inputs:\n    x: ${inputs.x}\nenvironment_variables:\n  FLOW_DECLARED: yes\n",
    )
    .write(&format!("{dir}/node.py"), &format!("import os, sys\nfrom promptflow.core import tool\n\n\n@tool\ndef node(x: str) -> object:\n{body}\n"))
    .write(&format!("{dir}/data.jsonl"), "{\"x\": \"a\"}\n");
}

fn run_create(p: &Project, flow: &str, name: &str) -> std::process::Output {
    let data = format!("{flow}/data.jsonl");
    p.flow_ci().args(["run", "create", "--flow", flow, "--data", &data, "--name", name]).output().unwrap()
}

fn first_output(p: &Project, run: &str) -> Json {
    let text = std::fs::read_to_string(p.path().join(format!(".flow-ci/runs/{run}/output.jsonl"))).unwrap();
    let row: Json = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    row["out"].clone()
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn requirements_are_installed_once_and_the_environment_is_reused() {
    let base = std::process::Command::new("python3").args(["-c", &format!("import {PACKAGE}")]).output().unwrap();
    assert!(!base.status.success(), "{PACKAGE} must not be importable by python3 for this test to prove anything");
    let p = Project::new();
    flow(
        &p,
        "flows/x",
        &format!(
            "    import importlib.metadata, {PACKAGE}\n    return {{'version': importlib.metadata.version('{PACKAGE}'), 'prefix': sys.prefix}}"
        ),
    );
    p.write("flows/x/requirements.txt", &format!("{PACKAGE}=={VERSION}\n"));

    let out = run_create(&p, "flows/x", "first");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("installing requirements.txt for flows/x into .flow-ci/cache/envs/"), "{stderr}");
    let envs = finished_envs(&p);
    assert_eq!(envs.len(), 1, "{envs:?}");
    let marker = envs[0].join("flow-ci-env-complete");
    let built = mtime(&marker);
    let output = first_output(&p, "first");
    assert_eq!(output["version"], json!(VERSION));
    let prefix = PathBuf::from(output["prefix"].as_str().unwrap());
    assert_eq!(
        prefix.canonicalize().unwrap(),
        envs[0].canonicalize().unwrap(),
        "the node ran in the flow's environment"
    );

    // A second run, and another command, reuse it.
    let out = run_create(&p, "flows/x", "second");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("installing"), "{stderr}");
    assert_eq!(first_output(&p, "second")["version"], json!(VERSION));
    let out = p.flow_ci().args(["flow", "test", "--flow", "flows/x", "--inputs", "x=b"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("installing"));
    assert_eq!(serde_json::from_slice::<Json>(&out.stdout).unwrap()["out"]["version"], json!(VERSION));
    assert_eq!(finished_envs(&p), envs);
    assert_eq!(mtime(&marker), built, "the environment was not rebuilt");
}

#[test]
fn a_requirement_that_cannot_be_installed_is_invalid_input_unless_flow_ci_python_is_set() {
    let p = Project::new();
    flow(&p, "flows/broken", "    return x");
    // The declared file wins over requirements.txt, as in promptflow.
    let dag = p.path().join("flows/broken/flow.dag.yaml");
    let text = std::fs::read_to_string(&dag).unwrap();
    std::fs::write(&dag, format!("{text}environment:\n  python_requirements_txt: deps/pinned.txt\n")).unwrap();
    p.write("flows/broken/requirements.txt", &format!("{PACKAGE}=={VERSION}\n"));
    // A declared file that does not exist is a warning (pf runs such a flow, installing nothing).
    let out = p.flow_ci().args(["validate", "--strict", "flows/broken"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("warning: python requirements file `deps/pinned.txt` does not exist")
    );
    p.write("flows/broken/deps/pinned.txt", "flow-ci-no-such-package-4c1e==0.0.1\n");

    let out = run_create(&p, "flows/broken", "broken");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("flows/broken/deps/pinned.txt:1:1: cannot install `flow-ci-no-such-package-4c1e==0.0.1`"),
        "{stderr}"
    );
    assert!(stderr.contains("flow-ci-no-such-package-4c1e"), "the installer's own message: {stderr}");
    assert_eq!(finished_envs(&p), Vec::<PathBuf>::new(), "nothing half-built is left");

    // FLOW_CI_PYTHON: the user manages that interpreter; nothing is installed.
    let out = run_create_with_python(&p, "flows/broken", "fixed");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("installing"));
    assert_eq!(first_output(&p, "fixed"), json!("a"));
}

/// The acceptance case of flow dependencies: a PR whose flow imports a
/// package python3 does not have passes `check` through the action's entry
/// point, and the next push reuses the environment (restored by the
/// examples' cache step; here it simply stays in the working directory).
#[test]
fn a_flow_that_imports_a_package_passes_check_in_the_action_and_reuses_its_environment() {
    let (pr, github) = (Pr::new(), FakeGitHub::start());
    pr.write("flows/web-classification/requirements.txt", &format!("{PACKAGE}=={VERSION}\n"))
        .edit(
            "flows/web-classification/classify.py",
            "from promptflow",
            &format!("import {PACKAGE}  # noqa: F401\nfrom promptflow"),
        )
        .commit();
    let event = pr.pull_request_event("pull_request.json");
    let envs = || std::fs::read_dir(pr.dir.path().join(".flow-ci/cache/envs")).map_or(0, |d| d.count());

    let (code, stdout, stderr) = run(&mut pr.action(&github, &event));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("installing requirements.txt for flows/web-classification"), "{stderr}");
    assert!(pr.read("output.txt").contains("passed=true"));
    assert_eq!(envs(), 1, "one environment, for the one flow with requirements");

    // The next push: nothing is installed again.
    pr.edit("flows/web-classification/classify.py", "\"apps\", \"ratings\"]", "\"apps\", \"ratings\", \"netflix\"]")
        .commit();
    let event = pr.pull_request_event("pull_request.json");
    let (code, stdout, stderr) = run(&mut pr.action(&github, &event));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("installing"), "{stderr}");
    assert_eq!(envs(), 1);
}

/// Under `check`, requirements that do not install are the PR's input: exit
/// 2 (as `run create` gives), the line named, the other flows still checked.
#[test]
fn a_requirement_that_cannot_be_installed_fails_check_with_exit_2_at_its_line() {
    let pr = Pr::new();
    pr.write("flows/web-classification/requirements.txt", "# our pins\nflow-ci-no-such-package-4c1e==0.0.1\n").commit();
    let (code, stdout, stderr) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    let report: Json = serde_json::from_str(&pr.read(".flow-ci/report/report.json")).unwrap();
    let error = report["flows"][0]["errors"][0].as_str().unwrap_or_default();
    let expected =
        "flows/web-classification/requirements.txt:2:1: cannot install `flow-ci-no-such-package-4c1e==0.0.1`";
    assert!(error.contains(expected), "{report:#}");
}

fn run_create_with_python(p: &Project, flow: &str, name: &str) -> std::process::Output {
    let data = format!("{flow}/data.jsonl");
    p.flow_ci()
        .env("FLOW_CI_PYTHON", "python3")
        .args(["run", "create", "--flow", flow, "--data", &data, "--name", name])
        .output()
        .unwrap()
}

#[test]
fn ci_credentials_never_reach_python_nodes_but_model_keys_do() {
    let p = Project::new();
    flow(&p, "flow", "    return sorted(os.environ)");
    let out = p
        .flow_ci()
        .env("GITHUB_TOKEN", "ghs_secret")
        .env("INPUT_GITHUB-TOKEN", "ghs_secret")
        .env("SYSTEM_ACCESSTOKEN", "ado_secret")
        .env("AZURE_CLIENT_SECRET", "sp_secret")
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "oidc_secret")
        .env("AZURE_OPENAI_API_KEY", "model-key")
        .args(["flow", "test", "--flow", "flow", "--inputs", "x=a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Json = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = seen["out"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    for secret in [
        "GITHUB_TOKEN",
        "INPUT_GITHUB-TOKEN",
        "SYSTEM_ACCESSTOKEN",
        "AZURE_CLIENT_SECRET",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    ] {
        assert!(!keys.contains(&secret), "{secret} reached the node: {keys:?}");
    }
    assert!(keys.contains(&"AZURE_OPENAI_API_KEY") && keys.contains(&"FLOW_DECLARED"), "{keys:?}");
}
