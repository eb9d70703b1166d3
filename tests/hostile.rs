//! Hostile input: each test is one probe that broke an earlier build, run on
//! a throwaway repository, asserting that flow-ci refuses it cleanly and that
//! nothing outside the run store changed.

mod support;

use predicates::str::contains;
use support::project::Project;
use support::repo::git;

/// A repository with one tiny python flow and its run file.
struct Repo {
    project: Project,
}

impl std::ops::Deref for Repo {
    type Target = Project;

    fn deref(&self) -> &Project {
        &self.project
    }
}

impl Repo {
    fn new() -> Repo {
        let repo = Repo { project: Project::new() };
        repo.write(
            "flows/echo/flow.dag.yaml",
            "inputs:\n  text:\n    type: string\noutputs:\n  answer:\n    type: string\n    reference: ${echo.output}\nnodes:\n- name: echo\n  type: python\n  source:\n    type: code\n    path: echo.py\n  inputs:\n    text: ${inputs.text}\n",
        );
        repo.write(
            "flows/echo/echo.py",
            "from promptflow.core import tool\n\n@tool\ndef echo(text: str) -> str:\n    return text\n",
        );
        repo.write("flows/echo/data.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
        repo.write("flows/echo/run.yml", "flow: .\ndata: data.jsonl\n");
        repo.write("precious.txt", "user data\n");
        repo.write(".gitignore", ".flow-ci/\n");
        git(repo.path(), &["init", "--quiet", "--initial-branch=main"]);
        repo.commit("base");
        repo
    }

    fn commit(&self, message: &str) {
        git(self.path(), &["add", "-A"]);
        git(self.path(), &["commit", "--quiet", "--allow-empty", "-m", message]);
    }

    fn run_create(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.flow_ci().args(["run", "create", "--file", "flows/echo/run.yml"]).args(args).assert()
    }

    /// The user's files are all still there.
    fn assert_intact(&self) {
        assert_eq!(std::fs::read_to_string(self.path().join("precious.txt")).unwrap(), "user data\n");
        assert!(self.path().join(".git/HEAD").is_file(), ".git was touched");
        assert!(self.path().join("flows/echo/flow.dag.yaml").is_file(), "the flow was touched");
    }
}

// Item 1: run names are names, never paths.

#[test]
fn a_name_that_climbs_out_of_the_store_is_refused_and_nothing_is_removed() {
    let repo = Repo::new();
    for name in ["../..", "..", "../../..", "/tmp", "a/b", ".x", ""] {
        repo.run_create(&["--name", name, "--force"]).code(2).stderr(contains("a run name is"));
        repo.assert_intact();
    }
}

#[test]
fn dot_with_force_does_not_wipe_the_store() {
    let repo = Repo::new();
    repo.run_create(&["--name", "first"]).success();
    repo.run_create(&["--name", ".", "--force"]).code(2).stderr(contains("a run name is"));
    assert!(repo.path().join(".flow-ci/runs/first/run.json").is_file(), "stored runs were wiped");
}

#[test]
fn a_run_file_name_that_is_a_path_is_refused_at_its_line() {
    let repo = Repo::new();
    repo.write("flows/echo/run.yml", "flow: .\ndata: data.jsonl\nname: ../../..\n");
    repo.run_create(&["--force"]).code(2).stderr(contains("run.yml:3:7")).stderr(contains("invalid-run-name"));
    repo.assert_intact();
    assert!(!repo.path().join(".flow-ci").exists(), "nothing may be written for a refused run");
}

#[test]
fn an_evaluation_base_run_that_is_a_path_is_refused() {
    let repo = Repo::new();
    repo.write("flows/echo/eval.yml", "flow: .\nrun: ../../precious\ncolumn_mapping:\n  text: ${run.outputs.answer}\n");
    repo.flow_ci()
        .args(["run", "create", "--file", "flows/echo/eval.yml"])
        .assert()
        .code(2)
        .stderr(contains("eval.yml:2:6"));
    repo.run_create(&["--run", "../x"]).code(2);
    repo.assert_intact();
}

#[test]
fn store_commands_refuse_path_names() {
    let repo = Repo::new();
    for args in [
        vec!["run", "show", "--name", "../.."],
        vec!["run", "show-details", "--name", "/etc"],
        vec!["run", "show-metrics", "--name", ".."],
        vec!["run", "stream", "--name", "../x"],
        vec!["run", "cancel", "--name", "../x"],
        vec!["run", "compare", "../a", "b"],
        vec!["run", "visualize", "--name", "a", "--name", "../b"],
        vec!["run", "visualize", "--names", "a,/etc"],
    ] {
        repo.flow_ci().args(&args).assert().code(2).stderr(contains("a run name is"));
    }
}

#[test]
fn force_replaces_only_a_stored_run() {
    let repo = Repo::new();
    // A folder in the store that is not a run (no run.json) stays.
    repo.write(".flow-ci/runs/mine/notes.txt", "not a run\n");
    repo.run_create(&["--name", "mine", "--force"]).code(2).stderr(contains("is not a stored run"));
    assert!(repo.path().join(".flow-ci/runs/mine/notes.txt").is_file());
    // A symlink in the store is never followed to remove its target.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(repo.path().join("flows"), repo.path().join(".flow-ci/runs/link")).unwrap();
        repo.write("flows/run.json", "{}");
        repo.run_create(&["--name", "link", "--force"]).code(2).stderr(contains("is not a stored run"));
        repo.assert_intact();
    }
    // A real run is replaced.
    repo.run_create(&["--name", "real"]).success();
    repo.run_create(&["--name", "real"]).code(2).stderr(contains("already exists"));
    repo.run_create(&["--name", "real", "--force"]).success();
}

// Item 2: deep nesting is refused at its position, in every command that reads YAML.

#[test]
fn deeply_nested_yaml_is_an_input_error_not_a_crash() {
    let repo = Repo::new();
    let deep = "- ".repeat(200_000) + "x\n";
    repo.commit("base");
    repo.write("flows/echo/flow.dag.yaml", &deep);
    repo.commit("deep");
    let position = "flows/echo/flow.dag.yaml:1:201";
    repo.flow_ci().args(["validate"]).assert().code(2).stdout(contains(position));
    repo.run_create(&[]).code(2).stderr(contains(position));
    repo.flow_ci().args(["check", "--all"]).assert().code(2).stderr(contains(position));
    // detect reads the flows a change touches; a broken one is reported by validate.
    let detect = repo.flow_ci().args(["detect", "--base", "HEAD~1"]).assert();
    let code = detect.get_output().status.code();
    assert!(matches!(code, Some(0) | Some(2)), "detect crashed: {code:?}");
}

// Item 12: the duplicate-key check is linear.

#[test]
fn a_mapping_with_many_keys_validates_promptly() {
    let repo = Repo::new();
    // 80,000 keys (1 MB) took 80 s with the quadratic check. The test runs
    // it with a generous bound on the wall clock so a regression is visible
    // as a hang here rather than a timing assertion.
    let mut text = String::from("$schema: x\nflow: .\ndata: data.jsonl\ntags:\n");
    for i in 0..80_000 {
        text.push_str(&format!("  key_{i}: v\n"));
    }
    text.push_str("  key_7: again\n");
    repo.write("flows/echo/run.yml", &text);
    repo.flow_ci()
        .args(["validate", "flows/echo/run.yml"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(2)
        .stdout(contains("duplicate key `key_7`"));
}

// Item 7: junit.xml stays well-formed whatever an error message holds.

#[test]
fn junit_is_well_formed_with_characters_xml_forbids() {
    let repo = Repo::new();
    repo.write(
        "flows/echo/echo.py",
        "from promptflow.core import tool\n\nraise RuntimeError('bad \\ufffe\\uffff\\x01 text')\n\n@tool\ndef echo(text: str) -> str:\n    return text\n",
    );
    let out = repo.flow_ci().args(["check", "--all"]).output().unwrap();
    let xml = std::fs::read_to_string(repo.path().join(".flow-ci/report/junit.xml"))
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(xml.contains("bad "), "{xml}");
    // XML 1.0's `Char` production: quick-xml does not check it, expat and
    // Azure DevOps' test results publisher do.
    let forbidden = |c: char| matches!(c, '\u{FFFE}' | '\u{FFFF}') || (c < ' ' && !matches!(c, '\t' | '\n' | '\r'));
    assert!(!xml.chars().any(forbidden), "{xml:?}");
    quick_junit::Report::deserialize_from_str(&xml).expect("junit.xml must be well-formed XML");
}

// Item 4: a prompt render is bounded, whatever the template does.

/// The echo flow as one prompt node rendering `template`.
fn prompt_flow(repo: &Repo, template: &str) {
    repo.write(
        "flows/echo/flow.dag.yaml",
        "inputs:\n  text:\n    type: string\noutputs:\n  answer:\n    type: string\n    reference: ${render.output}\nnodes:\n- name: render\n  type: prompt\n  source:\n    type: code\n    path: p.jinja2\n  inputs:\n    text: ${inputs.text}\n",
    );
    repo.write("flows/echo/p.jinja2", template);
}

#[test]
fn a_runaway_prompt_template_fails_its_line_instead_of_hanging() {
    let repo = Repo::new();
    prompt_flow(
        &repo,
        "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}{{ text }}{% endfor %}{% endfor %}{% endfor %}\n",
    );
    // Before, this ran for hours whatever --line-timeout said; the bound
    // here only keeps a regression from hanging the suite.
    repo.flow_ci()
        .args(["run", "create", "--file", "flows/echo/run.yml", "--name", "runaway", "--line-timeout", "5"])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .success(); // the run completes with its failed lines, as in promptflow
    let details = std::fs::read_to_string(repo.path().join(".flow-ci/runs/runaway/details.jsonl")).unwrap();
    assert_eq!(details.lines().count(), 2, "{details}");
    assert!(details.contains("ran out of fuel"), "{details}");
}

// Item 3: a link loop in a data folder ends the walk.

#[cfg(unix)]
#[test]
fn a_symlink_loop_in_a_data_folder_is_not_followed() {
    let repo = Repo::new();
    repo.write("flows/echo/data/a.jsonl", "{\"text\": \"a\"}\n");
    std::os::unix::fs::symlink(".", repo.path().join("flows/echo/data/loop")).unwrap();
    std::os::unix::fs::symlink("..", repo.path().join("flows/echo/data/up")).unwrap();
    repo.write("flows/echo/run.yml", "flow: .\ndata: data\n");
    let bound = std::time::Duration::from_secs(60);
    repo.flow_ci().args(["validate"]).timeout(bound).assert().success();
    repo.flow_ci()
        .args(["run", "create", "--file", "flows/echo/run.yml", "--name", "looped"])
        .timeout(bound)
        .assert()
        .success();
    let outputs = std::fs::read_to_string(repo.path().join(".flow-ci/runs/looped/output.jsonl")).unwrap();
    assert_eq!(outputs.lines().count(), 1, "{outputs}");
}

// Item 13: nothing outside the repository is read through a data folder or a baseline.

#[cfg(unix)]
#[test]
fn a_link_out_of_the_repository_in_a_data_folder_is_refused() {
    let repo = Repo::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.jsonl"), "{\"text\": \"outside\"}\n").unwrap();
    repo.write("flows/echo/data/a.jsonl", "{\"text\": \"a\"}\n");
    std::os::unix::fs::symlink(outside.path().join("secret.jsonl"), repo.path().join("flows/echo/data/b.jsonl"))
        .unwrap();
    repo.write("flows/echo/run.yml", "flow: .\ndata: data\n");
    repo.flow_ci().args(["validate"]).assert().code(2).stdout(contains("path-outside-repo"));
    repo.run_create(&["--name", "outside"]).code(2);
    assert!(!repo.path().join(".flow-ci/runs/outside/output.jsonl").exists());
}

#[test]
fn a_baseline_file_outside_the_repository_is_refused() {
    let repo = Repo::new();
    repo.write(
        ".flow-ci.yaml",
        "flows:\n  - path: flows/echo\n    run: flows/echo/run.yml\nbaseline: file:/etc/passwd\n",
    );
    repo.flow_ci()
        .args(["validate"])
        .assert()
        .code(2)
        .stdout(contains(".flow-ci.yaml:4:11"))
        .stdout(contains("path-outside-repo"));
    repo.flow_ci().args(["check", "--all"]).assert().code(2).stderr(contains("outside the repository"));
}

// Item 5: run files are recognised by parsing; finding nothing is not a pass.

#[test]
fn every_yaml_spelling_of_a_run_file_is_checked() {
    for (spelling, text) in [
        ("bom", "\u{feff}flow: .\ndata: data.jsonl\n"),
        ("quoted key", "'flow': .\ndata: data.jsonl\n"),
        ("flow style", "{flow: ., data: data.jsonl}\n"),
    ] {
        let repo = Repo::new();
        repo.write("flows/echo/run.yml", text);
        repo.flow_ci()
            .args(["check", "--all"])
            .assert()
            .append_context("spelling", spelling)
            .success()
            .stdout(contains("1 flow(s) checked"))
            .stderr(contains("flows/echo/run.yml"));
    }
}

#[test]
fn a_check_that_finds_nothing_to_run_says_so_and_fails() {
    let repo = Repo::new();
    std::fs::remove_file(repo.path().join("flows/echo/run.yml")).unwrap();
    repo.flow_ci()
        .args(["check", "--all"])
        .assert()
        .code(2)
        .stderr(contains("nothing to check: 1 flow folder(s) found, but none has a batch run file"));
}

// Item 16: a check whose every line failed does not pass without a failed_lines gate.

#[test]
fn every_flow_has_a_failed_lines_gate_by_default() {
    let repo = Repo::new();
    repo.write(
        "flows/echo/echo.py",
        "from promptflow.core import tool\n\n@tool\ndef echo(text: str) -> str:\n    raise ValueError('every line fails')\n",
    );
    repo.flow_ci()
        .args(["check", "--all"])
        .assert()
        .code(1)
        .stdout(contains("failed_lines"))
        .stdout(contains("FAILED"));
    // A configured limit still wins.
    repo.write(".flow-ci.yaml", "flows:\n  - path: flows/echo\n    run: flows/echo/run.yml\n    gates:\n      failed_lines: { max_ratio: 1.0 }\n");
    repo.flow_ci().args(["check", "--all"]).assert().success();
}

// Item 6: untrusted text cannot run CI logging commands.

fn assert_no_logging_command(text: &str) {
    for line in text.lines() {
        assert!(!line.trim_start().starts_with("::"), "a GitHub workflow command got through: {line:?}");
        assert!(!line.contains("##vso[") && !line.contains("##["), "an Azure/legacy command got through: {line:?}");
    }
}

#[test]
fn data_and_node_output_cannot_inject_ci_logging_commands() {
    let repo = Repo::new();
    repo.write(
        "flows/echo/echo.py",
        "from promptflow.core import tool\n\n@tool\ndef echo(text: str) -> str:\n    print(text)\n    if 'fail' in text:\n        raise ValueError(text)\n    return text\n",
    );
    repo.write(
        "flows/echo/data.jsonl",
        "{\"text\": \"a\\n::error::injected\\n##vso[task.setvariable variable=X]1\"}\n{\"text\": \"fail\\n  ::add-mask::x\\n##[error]old\"}\n",
    );
    for (var, value) in [("GITHUB_ACTIONS", "true"), ("TF_BUILD", "True")] {
        let out = repo
            .flow_ci()
            .env(var, value)
            .args(["run", "create", "--file", "flows/echo/run.yml", "--stream", "--force", "--name", "inject"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("injected") || stdout.contains("injected"), "{stdout}{stderr}");
        assert_no_logging_command(&stdout);
        assert_no_logging_command(&stderr);
    }
}

// Item 16: an unreadable GitHub event is said, not taken as "check everything".

#[test]
fn an_unreadable_github_event_payload_stops_the_check() {
    let repo = Repo::new();
    let event = repo.path().join("event.json");
    std::fs::write(&event, "{ not json").unwrap();
    repo.flow_ci()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", &event)
        .args(["check"])
        .assert()
        .code(2)
        .stderr(contains("is not JSON"))
        .stderr(contains("--base"));
    repo.flow_ci()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", repo.path().join("missing.json"))
        .args(["check"])
        .assert()
        .code(2)
        .stderr(contains("cannot read the event payload"));
}

// Item 16: CSV data reads like pandas (promptflow's reader).

#[test]
fn csv_data_reads_like_pandas() {
    let repo = Repo::new();
    repo.write("flows/echo/data.csv", "text,text\nfirst,second\n");
    repo.write("flows/echo/run.yml", "flow: .\ndata: data.csv\n");
    repo.run_create(&["--name", "dupes"]).success();
    let outputs = std::fs::read_to_string(repo.path().join(".flow-ci/runs/dupes/output.jsonl")).unwrap();
    assert!(outputs.contains("\"answer\":\"first\""), "{outputs}");
    repo.write("flows/echo/data.csv", "text\n\"never closed\nnext\n");
    repo.flow_ci()
        .args(["validate", "flows/echo/run.yml"])
        .assert()
        .code(2)
        .stdout(contains("flows/echo/data.csv:2:1"))
        .stdout(contains("never closed"));
}

// Item 16: code that does not load is invalid input, and an import that hangs is bounded.

#[test]
fn a_node_that_fails_or_hangs_at_import_is_invalid_input() {
    let repo = Repo::new();
    repo.write(
        "flows/echo/echo.py",
        "from promptflow.core import tool\n\nraise RuntimeError('cannot start')\n\n@tool\ndef echo(text: str) -> str:\n    return text\n",
    );
    repo.run_create(&["--name", "broken"]).code(2).stderr(contains("cannot start"));
    repo.flow_ci().args(["flow", "test", "--flow", "flows/echo", "--inputs", "text=a"]).assert().code(2);
    repo.write(
        "flows/echo/echo.py",
        "import time\nfrom promptflow.core import tool\n\ntime.sleep(3600)\n\n@tool\ndef echo(text: str) -> str:\n    return text\n",
    );
    repo.flow_ci()
        .args(["run", "create", "--file", "flows/echo/run.yml", "--name", "hangs", "--line-timeout", "2"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(2)
        .stderr(contains("timeout"));
}

// Item 10: one writer per run at a time.

fn slow_echo(repo: &Repo) {
    repo.write(
        "flows/echo/echo.py",
        "import time\nfrom promptflow.core import tool\n\n@tool\ndef echo(text: str) -> str:\n    time.sleep(1.5)\n    return text\n",
    );
}

#[test]
fn a_second_writer_of_the_same_run_is_refused_and_the_first_stays_whole() {
    let repo = Repo::new();
    slow_echo(&repo);
    let first = repo.spawn(&["run", "create", "--file", "flows/echo/run.yml", "--name", "same", "--force"]);
    // The first holds the lock once its details.jsonl exists.
    let details = repo.path().join(".flow-ci/runs/same/details.jsonl");
    for _ in 0..200 {
        if details.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    repo.run_create(&["--name", "same", "--force"]).code(2).stderr(contains("being written by another flow-ci"));
    assert!(first.wait_with_output().unwrap().status.success());
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo.path().join(".flow-ci/runs/same/run.json")).unwrap())
            .unwrap();
    assert_eq!(record["status"], "Completed");
    assert_eq!(std::fs::read_to_string(&details).unwrap().lines().count(), 2);
}

#[test]
fn two_checks_in_one_repository_both_finish() {
    let repo = Repo::new();
    slow_echo(&repo);
    let a = repo.spawn(&["check", "--all", "--report-dir", ".flow-ci/report-a"]);
    let b = repo.spawn(&["check", "--all", "--report-dir", ".flow-ci/report-b"]);
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[cfg(unix)]
#[test]
fn sigterm_stops_a_run_stuck_in_a_prompt_render() {
    let repo = Repo::new();
    prompt_flow(&repo, "{% for a in range(10000) %}{% for b in range(10000) %}{{ text }}{% endfor %}{% endfor %}\n");
    repo.write("flows/echo/data.jsonl", &"{\"text\": \"a\"}\n".repeat(20));
    let mut child = repo.spawn(&["run", "create", "--file", "flows/echo/run.yml", "--name", "stuck", "--workers", "1"]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    // Bounded wait: before, the render ignored the signal for hours.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "flow-ci did not stop after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(130));
    let record = std::fs::read_to_string(repo.path().join(".flow-ci/runs/stuck/run.json")).unwrap();
    assert!(record.contains("\"Canceled\""), "{record}");
}
