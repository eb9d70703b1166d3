//! `flow-ci init` on a copy of the example repository: the config it writes
//! validates and `check --all` passes it, the workflows it writes pass the
//! linters CI runs on the examples, and it overwrites nothing without --force.

mod support;

use std::path::Path;

use support::fs::copy_tree;
use support::project::Project;

/// The example repository (its flows, data and recorded model answers),
/// with or without its `.flow-ci.yaml`.
fn fixtures(with_config: bool) -> Project {
    let project = Project::new();
    let mut skip = vec!["invalid", "runs", "report"];
    if !with_config {
        skip.push(".flow-ci.yaml");
    }
    copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"), project.path(), &skip);
    project
}

fn read(project: &Project, rel: &str) -> String {
    std::fs::read_to_string(project.path().join(rel)).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn init_replaces_the_fixtures_config_with_one_that_check_passes() {
    let project = fixtures(true);
    let before = read(&project, ".flow-ci.yaml");

    // Without --force nothing is touched, and nothing runs.
    let refused = project.flow_ci().args(["init", "--github"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains(".flow-ci.yaml already exist"), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("--force"), "{}", text(&refused.stderr));
    assert_eq!(read(&project, ".flow-ci.yaml"), before);
    assert!(!project.path().join(".github").exists());
    assert!(!project.path().join(".flow-ci/runs").exists(), "init ran flows before refusing");

    let done = project.flow_ci().args(["init", "--force", "--github", "--azure-pipelines"]).output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}{}", text(&done.stdout), text(&done.stderr));
    assert_eq!(
        text(&done.stdout),
        "wrote .flow-ci.yaml\nwrote .github/workflows/flow-ci.yml\nwrote azure-pipelines.yml\n"
    );
    let config = read(&project, ".flow-ci.yaml");
    insta::assert_snapshot!("fixtures_config", config);
    // Measured on this commit: 90 % accuracy and 3 of 12 failing payloads.
    assert!(config.contains("accuracy: { min: 0.85, max_drop: 0.02 }"), "{config}");
    assert!(config.contains("failed_lines: { max_ratio: 0.25 }"), "{config}");
    // The connection support-triage needs is kept from the config replaced.
    assert!(config.contains("connections:\n  aoai:\n"), "{config}");

    let validate = project.flow_ci().args(["validate", "--strict"]).output().unwrap();
    assert_eq!(validate.status.code(), Some(0), "{}{}", text(&validate.stdout), text(&validate.stderr));
    let check = project.flow_ci().args(["check", "--all"]).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}{}", text(&check.stdout), text(&check.stderr));
    assert!(text(&check.stdout).contains("PASSED: 4 flow(s) checked, 0 failed"), "{}", text(&check.stdout));

    insta::assert_snapshot!("github_workflow", read(&project, ".github/workflows/flow-ci.yml"));
    insta::assert_snapshot!("azure_pipeline", read(&project, "azure-pipelines.yml"));
    // Written again, the same files.
    let again = project.flow_ci().args(["init", "--force", "--github"]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(read(&project, ".flow-ci.yaml"), config);
}

#[test]
fn the_github_workflow_init_writes_passes_actionlint_and_zizmor() {
    let project = fixtures(true);
    let done = project.flow_ci().args(["init", "--force", "--no-run", "--github"]).output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    let workflow = project.path().join(".github/workflows/flow-ci.yml");
    // The linters CI runs on examples/github (actionlint, zizmor), on this file.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lint = std::process::Command::new("bash")
        .arg(root.join("scripts/lint-actions"))
        .arg(&workflow)
        .output()
        .expect("bash runs scripts/lint-actions (it needs node and python3)");
    let output = format!("{}{}", text(&lint.stdout), text(&lint.stderr));
    assert!(lint.status.success(), "{output}");
    assert!(output.contains("actionlint: 1 file(s), 0 finding(s)"), "{output}");
    assert!(output.contains("No findings to report"), "{output}");
}

#[test]
fn without_a_config_and_without_running_only_failed_lines_is_gated() {
    let project = fixtures(false);
    let done = project.flow_ci().args(["init", "--no-run"]).output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    assert!(!project.path().join(".flow-ci/runs").exists(), "--no-run ran flows");
    let config = read(&project, ".flow-ci.yaml");
    insta::assert_snapshot!("fixtures_config_no_run", config);
    let validate = project.flow_ci().args(["validate", "--strict"]).output().unwrap();
    assert_eq!(validate.status.code(), Some(0), "{}", text(&validate.stdout));
}

#[test]
fn a_flow_that_cannot_run_is_written_unmeasured_and_said() {
    // No config: support-triage's connection `aoai` is defined nowhere.
    let project = fixtures(false);
    let done = project
        .flow_ci()
        .args(["init"])
        .env_remove("AZURE_OPENAI_ENDPOINT")
        .env_remove("AZURE_OPENAI_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("PROMPTFLOW_CONNECTIONS")
        .output()
        .unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    let stderr = text(&done.stderr);
    assert!(stderr.contains("warning: flows/support-triage: not measured"), "{stderr}");
    assert!(stderr.contains("aoai"), "{stderr}");
    let config = read(&project, ".flow-ci.yaml");
    assert!(config.contains("    # not measured: "), "{config}");
    assert!(config.contains("accuracy: { min: 0.85, max_drop: 0.02 }"), "the other flows are measured:\n{config}");
}

#[test]
fn in_a_subfolder_the_workflows_work_there_and_land_at_the_repository_root() {
    let project = Project::new();
    std::fs::create_dir_all(project.path().join(".git")).unwrap();
    let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/flows");
    copy_tree(&flows.join("support-router"), &project.path().join("apps/flows/router"), &[]);
    copy_tree(&flows.join("common"), &project.path().join("apps/flows/common"), &[]);
    let done = project
        .flow_ci()
        .current_dir(project.path().join("apps"))
        .args(["init", "--github", "--azure-pipelines"])
        .output()
        .unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    let config = read(&project, "apps/.flow-ci.yaml");
    assert!(config.contains("  - path: flows/router\n    run: flows/router/run.yml\n"), "{config}");
    let github = read(&project, ".github/workflows/flow-ci.yml");
    assert!(github.contains("          working-directory: apps\n"), "{github}");
    assert!(github.contains("hashFiles('apps/.flow-ci.yaml', 'apps/**/requirements.txt')"), "{github}");
    let azure = read(&project, "azure-pipelines.yml");
    assert!(azure.contains("workingDirectory: $(System.DefaultWorkingDirectory)/apps\n"), "{azure}");
}

#[test]
fn nothing_to_configure_is_an_error() {
    let project = Project::new();
    project.write("notes/readme.md", "no flows here\n");
    let done = project.flow_ci().args(["init"]).output().unwrap();
    assert_eq!(done.status.code(), Some(2), "{}", text(&done.stderr));
    assert!(text(&done.stderr).contains("no flow folder below here has a batch run file"), "{}", text(&done.stderr));
    assert!(!project.path().join(".flow-ci.yaml").exists());
}
