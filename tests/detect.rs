//! `flow-ci detect` on real temporary git repositories.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{Value as Json, json};

mod support;
use support::repo::git as git_in;

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let repo = Repo { dir: tempfile::tempdir().unwrap() };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), args)
    }

    fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    fn append(&self, rel: &str, text: &str) -> &Self {
        let p = self.path().join(rel);
        let mut current = std::fs::read_to_string(&p).unwrap();
        current.push_str(text);
        std::fs::write(p, current).unwrap();
        self
    }

    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    fn flow(&self, dir: &str, extra: &str) -> &Self {
        self.write(
            &format!("{dir}/flow.dag.yaml"),
            &format!(
                "inputs:\n  text:\n    type: string\noutputs:\n  answer:\n    type: string\n    reference: ${{echo.output}}\nnodes:\n- name: echo\n  type: python\n  source:\n    type: code\n    path: echo.py\n  inputs:\n    text: ${{inputs.text}}\n{extra}"
            ),
        )
        .write(&format!("{dir}/echo.py"), "from promptflow.core import tool\n\n\n@tool\ndef echo(text: str) -> str:\n    return text\n")
    }

    fn detect(&self, args: &[&str]) -> std::process::Output {
        flow_ci(self.path()).arg("detect").args(args).output().unwrap()
    }

    /// `detect --format json`, asserting success.
    fn detect_json(&self, args: &[&str]) -> Json {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let out = self.detect(&all);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn flow_ci(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("flow-ci").unwrap();
    cmd.current_dir(dir);
    cmd
}

/// Changed flow paths.
fn paths(detection: &Json) -> Vec<&str> {
    detection["flows"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect()
}

fn reasons<'a>(detection: &'a Json, flow: &str) -> &'a Json {
    &detection["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == flow)
        .unwrap_or_else(|| panic!("{flow} not selected: {detection}"))["reasons"]
}

/// Three flows: two share code (one through additional_includes, one through a
/// `../` source), both evaluated by a shared eval flow via .flow-ci.yaml.
fn shared_repo() -> Repo {
    let repo = Repo::new();
    repo.flow("flows/a", "additional_includes:\n- ../common/text_utils.py\n")
        .flow("flows/b", "- name: clean\n  type: python\n  source:\n    type: code\n    path: ../common/text_utils.py\n  inputs:\n    text: ${inputs.text}\n")
        .flow("flows/c", "")
        .flow("flows/eval", "")
        .write("flows/common/text_utils.py", "from promptflow.core import tool\n\n\n@tool\ndef clean(text: str) -> str:\n    return text.strip()\n")
        .write("flows/a/run.yml", "flow: .\ndata: ../../data/shared.jsonl\n")
        .write("flows/b/run.yml", "flow: .\ndata: data.jsonl\n")
        .write("flows/b/data.jsonl", "{\"text\": \"b\"}\n")
        .write("data/shared.jsonl", "{\"text\": \"a\"}\n")
        .write("flows/eval/run.yml", "flow: .\ndata: ../../data/shared.jsonl\nrun: base\ncolumn_mapping:\n  text: ${run.outputs.answer}\n")
        .write(
            ".flow-ci.yaml",
            "flows:\n  - path: flows/a\n    run: flows/a/run.yml\n    evaluations:\n      - run: flows/eval/run.yml\n  - path: flows/b\n    run: flows/b/run.yml\n    evaluations:\n      - run: flows/eval/run.yml\n  - path: flows/c\n",
        );
    repo.commit("base");
    repo.git(&["switch", "--quiet", "-c", "feature"]);
    repo
}

#[test]
fn an_edit_inside_a_flow_selects_only_that_flow() {
    let repo = shared_repo();
    repo.append("flows/c/echo.py", "# tweak\n").commit("edit c");
    let d = repo.detect_json(&["--base", "main", "--head", "HEAD"]);
    assert_eq!(paths(&d), vec!["flows/c"]);
    assert_eq!(reasons(&d, "flows/c"), &json!([{"kind": "files", "files": ["flows/c/echo.py"]}]));
    assert_eq!(d["total_flows"], 4);
    assert_eq!(d["changed_files"], 1);
}

#[test]
fn shared_code_selects_every_flow_using_it() {
    let repo = shared_repo();
    repo.append("flows/common/text_utils.py", "# tweak\n").commit("edit shared code");
    let d = repo.detect_json(&["--base", "main", "--head", "HEAD"]);
    assert_eq!(paths(&d), vec!["flows/a", "flows/b"]);
    assert_eq!(reasons(&d, "flows/a"), &json!([{"kind": "include", "files": ["flows/common/text_utils.py"]}]));
    assert_eq!(reasons(&d, "flows/b"), &json!([{"kind": "shared-source", "files": ["flows/common/text_utils.py"]}]));
}

#[test]
fn a_shared_evaluation_flow_selects_every_flow_evaluated_with_it() {
    let repo = shared_repo();
    repo.append("flows/eval/echo.py", "# stricter grading\n").commit("edit eval");
    let d = repo.detect_json(&["--base", "main", "--head", "HEAD"]);
    assert_eq!(paths(&d), vec!["flows/a", "flows/b", "flows/eval"]);
    assert_eq!(reasons(&d, "flows/a"), &json!([{"kind": "evaluation", "flow": "flows/eval"}]));
    assert_eq!(reasons(&d, "flows/b"), &json!([{"kind": "evaluation", "flow": "flows/eval"}]));
}

#[test]
fn data_named_by_a_configured_run_file_selects_its_flows() {
    let repo = shared_repo();
    repo.append("data/shared.jsonl", "{\"text\": \"more\"}\n").commit("more data");
    let d = repo.detect_json(&["--base", "main", "--head", "HEAD"]);
    // flows/a reads it directly; a and b are evaluated on it through flows/eval/run.yml.
    assert_eq!(paths(&d), vec!["flows/a", "flows/b"]);
    assert_eq!(reasons(&d, "flows/a"), &json!([{"kind": "run-file", "files": ["data/shared.jsonl"]}]));
}

#[test]
fn a_change_to_a_port_selects_its_flow() {
    let repo = shared_repo();
    repo.write("ports/c-maf/workflow.py", "def create_workflow():\n    pass\n");
    repo.append(".flow-ci.yaml", "    run: flows/b/run.yml\n    port: { workflow: ports/c-maf/workflow.py }\n");
    repo.commit("a port for c");
    repo.git(&["switch", "--quiet", "-c", "port-change"]);
    repo.write("ports/c-maf/helpers.py", "X = 1\n").commit("the port grows");
    let d = repo.detect_json(&["--base", "feature", "--head", "HEAD"]);
    assert_eq!(paths(&d), vec!["flows/c"]);
    assert_eq!(reasons(&d, "flows/c"), &json!([{"kind": "port", "files": ["ports/c-maf/helpers.py"]}]));
}

#[test]
fn a_config_change_selects_every_flow() {
    let repo = shared_repo();
    repo.append(".flow-ci.yaml", "baseline: none\n").commit("config");
    let d = repo.detect_json(&["--base", "main", "--head", "HEAD"]);
    assert_eq!(paths(&d), vec!["flows/a", "flows/b", "flows/c", "flows/eval"]);
    assert_eq!(reasons(&d, "flows/c"), &json!([{"kind": "config", "file": ".flow-ci.yaml"}]));
}

#[test]
fn a_deleted_flow_is_listed_as_removed() {
    let repo = shared_repo();
    repo.git(&["rm", "-r", "--quiet", "flows/c"]);
    repo.commit("drop c");
    let d = repo.detect_json(&["--base", "main", "--head", "HEAD"]);
    assert!(paths(&d).is_empty(), "{d}");
    assert_eq!(d["removed"], json!(["flows/c"]));
}

#[test]
fn a_renamed_flow_is_reported_as_moved() {
    let repo = shared_repo();
    repo.git(&["mv", "flows/c", "flows/c-renamed"]);
    repo.commit("rename c");
    let d = repo.detect_json(&["--base", "main", "--head", "HEAD"]);
    assert_eq!(paths(&d), vec!["flows/c-renamed"]);
    let r = reasons(&d, "flows/c-renamed").as_array().unwrap();
    assert!(r.contains(&json!({"kind": "renamed", "from": "flows/c"})), "{d}");
    assert_eq!(d["removed"], json!([]));
}

#[test]
fn no_change_selects_nothing() {
    let repo = shared_repo();
    let out = repo.detect(&["--base", "main", "--head", "HEAD"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("0 of 4 flow(s) changed, 0 removed (0 file(s) changed"), "{text}");
}

#[test]
fn the_working_tree_counts_uncommitted_and_untracked_files() {
    let repo = shared_repo();
    repo.append("flows/c/echo.py", "# not committed\n").write("flows/b/notes.md", "untracked\n");
    let d = repo.detect_json(&["--base", "main"]);
    assert_eq!(paths(&d), vec!["flows/b", "flows/c"]);
    assert_eq!(d["head"], Json::Null);
    assert_eq!(reasons(&d, "flows/b"), &json!([{"kind": "files", "files": ["flows/b/notes.md"]}]));
}

#[test]
fn folders_with_spaces_work() {
    let repo = Repo::new();
    repo.flow("flows/my flow", "");
    repo.commit("base");
    repo.append("flows/my flow/echo.py", "# edit\n").commit("edit");
    let d = repo.detect_json(&["--base", "HEAD~1", "--head", "HEAD"]);
    assert_eq!(paths(&d), vec!["flows/my flow"]);
    assert_eq!(reasons(&d, "flows/my flow"), &json!([{"kind": "files", "files": ["flows/my flow/echo.py"]}]));
}

#[test]
fn new_flows_are_marked_added() {
    let repo = shared_repo();
    repo.flow("flows/d", "");
    repo.commit("add d");
    let d = repo.detect_json(&["--base", "main", "--head", "HEAD"]);
    assert_eq!(paths(&d), vec!["flows/d"]);
    assert_eq!(reasons(&d, "flows/d")[0], json!({"kind": "added"}));
}

#[test]
fn a_shallow_clone_without_the_base_says_how_to_fix_it() {
    let origin = shared_repo();
    let base = origin.git(&["rev-parse", "main"]).trim().to_string();
    for i in 0..3 {
        origin.append("flows/c/echo.py", &format!("# {i}\n")).commit(&format!("change {i}"));
    }
    let clone_dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", origin.path().display());
    git_in(clone_dir.path(), &["clone", "--quiet", "--depth", "1", "--branch", "feature", &url, "clone"]);
    let clone: PathBuf = clone_dir.path().join("clone");
    let out = flow_ci(&clone).args(["detect", "--base", &base, "--head", "HEAD"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shallow clone") && stderr.contains("fetch-depth: 0"), "{stderr}");
}

#[test]
fn a_branch_only_on_origin_is_found_there() {
    let origin = shared_repo();
    origin.git(&["switch", "--quiet", "main"]);
    let clone_dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", origin.path().display());
    git_in(clone_dir.path(), &["clone", "--quiet", &url, "clone"]);
    let clone_path = clone_dir.path().join("clone");
    git_in(&clone_path, &["switch", "--quiet", "-c", "pr"]);
    git_in(&clone_path, &["branch", "--quiet", "-D", "main"]);
    std::fs::write(clone_path.join("flows/c/echo.py"), "# changed in the PR\n").unwrap();
    let out = flow_ci(&clone_path).args(["detect", "--base", "main", "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let d: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(paths(&d), vec!["flows/c"]);
}

#[test]
fn unknown_refs_and_non_repositories_are_input_errors() {
    let repo = shared_repo();
    let out = repo.detect(&["--base", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown revision `no-such-branch`"));
    let plain = tempfile::tempdir().unwrap();
    let out = flow_ci(plain.path()).args(["detect", "--base", "main"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not inside a git repository"));
}
