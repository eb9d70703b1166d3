//! `flow-ci validate` driven as a user runs it: on the example repository in
//! `fixtures/` (clean) and on every case in `fixtures/invalid/` (one per
//! diagnostic), with the exact output kept as snapshots.

mod support;

use std::path::PathBuf;

use assert_cmd::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary run from the repository root, outside any CI host's
/// environment so output is the same on every machine.
fn flow_ci() -> Command {
    let mut cmd = Command::cargo_bin("flow-ci").expect("binary builds");
    cmd.current_dir(repo_root()).env_remove("GITHUB_ACTIONS").env_remove("TF_BUILD").env_remove("FLOW_CI_LOG");
    cmd
}

fn invalid_cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(repo_root().join("fixtures/invalid"))
        .expect("fixtures/invalid exists")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    cases
}

/// Absolute paths differ between machines; snapshots show `[REPO]`.
fn redact(text: &str) -> String {
    text.replace(&repo_root().display().to_string(), "[REPO]")
}

#[test]
fn every_invalid_case_exits_2_with_its_snapshot() {
    let cases = invalid_cases();
    assert!(cases.len() >= 25, "expected a case per diagnostic, found {}", cases.len());
    for case in cases {
        let path = format!("fixtures/invalid/{case}");
        let out = flow_ci().args(["validate", "--strict", &path]).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{case}: expected exit 2\n{stdout}{stderr}");
        assert!(
            stdout.lines().next().is_some_and(|l| l.starts_with("fixtures/invalid/")),
            "{case}: first line must name file:line:col\n{stdout}"
        );
        insta::assert_snapshot!(format!("invalid__{case}"), redact(&format!("{stdout}---\n{stderr}")));
    }
}

#[test]
fn the_example_repository_is_clean() {
    let out = flow_ci().args(["validate", "fixtures"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "no findings expected:\n{stdout}");
    assert!(stderr.contains("0 error(s), 0 warning(s)"), "{stderr}");
    assert!(!stderr.contains(" 0 flow(s)"), "flows must be found: {stderr}");
}

#[test]
fn json_output_has_the_documented_shape() {
    let out = flow_ci().args(["validate", "--format", "json", "fixtures/invalid/unknown-key"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["errors"], 2);
    assert_eq!(doc["flows"], 1);
    let first = &doc["diagnostics"][0];
    assert_eq!(first["code"], "unknown-key");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["file"], "fixtures/invalid/unknown-key/flow.dag.yaml");
    assert_eq!(first["line"], 8);
    assert_eq!(first["column"], 5);
    assert_eq!(first["hint"], "did you mean `reference`?");
}

#[test]
fn github_actions_get_annotations_beside_the_human_text() {
    let out = flow_ci()
        .env("GITHUB_ACTIONS", "true")
        .args(["validate", "fixtures/invalid/unknown-input-reference"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("flow.dag.yaml:16:11: error:"), "{stdout}");
    assert!(
        stdout.contains(
            "::error file=fixtures/invalid/unknown-input-reference/flow.dag.yaml,line=16,col=11,title=flow-ci unknown-input-reference::"
        ),
        "{stdout}"
    );
}

#[test]
fn azure_pipelines_get_logissue_commands() {
    let out = flow_ci().env("TF_BUILD", "True").args(["validate", "fixtures/invalid/source-missing"]).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("##vso[task.logissue type=error;sourcepath=fixtures/invalid/source-missing/flow.dag.yaml;linenumber=14;columnnumber=11;code=source-missing;]"),
        "{stdout}"
    );
}

#[test]
fn explicit_formats_work_outside_ci() {
    let out = flow_ci().args(["validate", "--format", "github", "fixtures/invalid/yaml-syntax"]).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("::error file=fixtures/invalid/yaml-syntax/flow.dag.yaml,line=4,col=4,"), "{stdout}");
}

#[test]
fn a_missing_path_is_an_input_error() {
    let out = flow_ci().args(["validate", "no/such/dir"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no/such/dir:1:1: error: no such file or directory"));
}

#[test]
fn a_folder_without_flows_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.yaml"), "a: 1\n").unwrap();
    let out = flow_ci().args(["validate"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[nothing-to-validate]"));
}

/// Every command's `--help`, the list taken from clap itself so a new
/// command is snapshotted without being added here; each command that does
/// something (not `flow` or `run`, which only group others) teaches with
/// examples.
#[test]
fn help_texts_teach_with_examples() {
    let commands = support::cli::commands();
    assert!(commands.len() > 20, "only {} commands found", commands.len());
    for (path, cmd) in commands {
        let leaf = !support::cli::groups_others(&cmd);
        let out = flow_ci().args(&path).arg("--help").env("COLUMNS", "100").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{path:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!leaf || text.contains("Examples:"), "{path:?} lacks examples");
        let name = path.iter().map(|p| format!("{p}_")).collect::<String>();
        insta::assert_snapshot!(format!("help__{name}help"), text);
    }
}

/// Diagnostics show the source line, a caret under the span and the hint:
/// colored as on a terminal (`CLICOLOR_FORCE=1` stands in for one), plain
/// under `NO_COLOR` (which wins) and when piped. The annotation a CI host
/// reads stays one line per finding.
#[test]
fn snippet_diagnostics_in_color_under_no_color_and_in_ci() {
    let case = "fixtures/invalid/config-unknown-key";
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = flow_ci();
        cmd.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE").env_remove("CLICOLOR").env("TERM", "xterm-256color");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.args(["validate", case]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8(out.stdout).unwrap()
    };
    let colored = run(&[("CLICOLOR_FORCE", "1")]);
    assert!(colored.contains("\x1b[1;91merror\x1b[0m"), "{colored:?}");
    insta::assert_snapshot!("snippet_colored", redact(&colored));
    let no_color = run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!no_color.contains('\x1b'), "{no_color:?}");
    insta::assert_snapshot!("snippet_no_color", redact(&no_color));
    assert_eq!(run(&[]), no_color, "piped: no colors");

    // In GitHub Actions: the same snippets, and one `::error` line each.
    let in_ci = run(&[("GITHUB_ACTIONS", "true")]);
    let annotations: Vec<&str> = in_ci.lines().filter(|l| l.starts_with("::error")).collect();
    assert_eq!(annotations.len(), 3, "{in_ci}");
    assert!(annotations.iter().all(|a| a.contains("%0Ahint: ") && !a.contains(" | ")), "{annotations:#?}");
    assert!(in_ci.contains("4 |     gate:\n  |     ^^^^\n"), "{in_ci}");

    // stderr (a command that stops on an invalid flow) follows the same rules.
    let out = flow_ci()
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .env("TERM", "xterm-256color")
        .args(["flow", "test", "--flow", "fixtures/invalid/duplicate-key"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\x1b[1;91merror\x1b[0m") && stderr.contains("text:"), "{stderr:?}");
}

const PF_TEST_FLOWS: &str = "tests/vendor/promptflow/src/promptflow/tests/test_configs/flows";

/// promptflow's own test flows that `pf flow validate` passes and `pf flow
/// test` runs are not rejected (issue #21): an assistant flow's top-level
/// `version: 2` (pf only warns "Unknown field."), `environment_variables`
/// whose values are numbers, lists and mappings (pf sets their `str` or
/// `json.dumps`), a `${connection.key}` value, and a tool whose `@tool(...)`
/// spans lines.
#[test]
fn flows_promptflow_accepts_validate_clean() {
    let flows = [
        "assistant-with-file",
        "flow_with_environment_variables",
        "flow_with_connection_ref_environment_variables",
        "flow_with_non_str_environment_variable",
        "python_tool_deployment_name",
    ];
    for flow in flows {
        let out = flow_ci().args(["validate", "--strict", &format!("{PF_TEST_FLOWS}/{flow}")]).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{flow}:\n{text}");
        assert!(text.contains(": 0 error(s), 0 warning(s)"), "{flow}:\n{text}");
    }
}

/// A C# flow stays an error, one that says flow-ci does not run C# rather
/// than listing the node types as if `csharp` were a typo.
#[test]
fn csharp_nodes_are_an_error_that_says_not_supported() {
    let out = flow_ci().args(["validate", &format!("{PF_TEST_FLOWS}/csharp_flow")]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(
            "flow.dag.yaml:12:9: error: node `get_answer` is a `csharp` node, which flow-ci does not support"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("flow-ci runs python flows only"), "{stdout}");
}
