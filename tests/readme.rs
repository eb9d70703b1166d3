//! Every `flow-ci` command in README.md's shell blocks is a command line clap
//! accepts, and each either runs here as written, from the folder the README
//! names (a copy of `fixtures/`, or the root of the clone), or is listed below
//! with why it cannot. A new README example fails this test until it is put
//! in one list or the other; an entry the README no longer has fails it too.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use clap::CommandFactory;
use support::cli::words;
use support::fs::copy_tree;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run as written, from `fixtures/` (a copy), in this order; exit 0.
const RUN_IN_FIXTURES: &[&str] = &[
    "flow-ci --version",
    "flow-ci check --all --dry-run",
    "flow-ci validate",
    "flow-ci validate flows/web-classification flows/eval-accuracy/run.yml",
    "flow-ci validate --format json",
    "flow-ci flow test --flow flows/support-router --inputs message=\"I was charged twice\"",
    "flow-ci run create --file flows/web-classification/run.yml --name web_classification_batch",
    "flow-ci run create --file flows/eval-accuracy/run.yml",
    "flow-ci run show-details --name web_classification_batch",
    "flow-ci run create --file flows/support-triage/run.yml --name support_triage_batch",
    "flow-ci run create --file flows/eval-accuracy/triage.run.yml",
    "flow-ci check --all --write-baseline baseline.json",
];

/// Run from `fixtures/` with the variables the README sets before them.
const RUN_IN_FIXTURES_WITH_ENV: &[(&str, &[(&str, &str)])] = &[(
    "flow-ci deploy --dry-run",
    &[
        ("AZUREML_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000"),
        ("AZUREML_RESOURCE_GROUP", "rg-ml"),
        ("AZUREML_WORKSPACE_NAME", "ws-prompts"),
    ],
)];

/// Run as written from the root of the clone; exit 0.
const RUN_AT_ROOT: &[&str] = &["flow-ci -C fixtures validate"];

/// README commands this test does not run, and why.
const NOT_RUN: &[(&str, &str)] = &[
    ("flow-ci init --github", "writes into the repository it runs in; tests/init.rs runs init on a copy"),
    ("flow-ci check --all", "the fixtures' full check is tests/check.rs's (and scripts/demo's)"),
    ("flow-ci check --base origin/main", "needs a clone with origin/main; tests/check.rs checks pull requests"),
    ("flow-ci detect --base origin/main", "needs a clone with origin/main; tests/detect.rs"),
    ("flow-ci detect --base origin/main --head HEAD --format json", "needs a clone with origin/main; tests/detect.rs"),
    ("flow-ci run compare RUN_A RUN_B", "RUN_A and RUN_B stand for run names"),
    (
        "flow-ci serve --flow flows/support-router --port 8080",
        "a server on a fixed port; tests/serve.rs serves on a free one",
    ),
    ("flow-ci run create --file flows/support-triage/run.yml", "with AZURE_OPENAI_ENDPOINT set, calls a real model"),
    ("flow-ci completions bash", "writes into the user's home; tests/shell.rs completes in a real bash"),
    ("flow-ci man --out-dir ~/.local/share/man/man1", "writes into the user's home; tests/shell.rs renders every page"),
    (
        "flow-ci flow push --flow flows/support-router --set display_name='Support router' type=chat tags.team=support",
        "an Azure ML workspace; tests/push.rs against the loopback Azure",
    ),
    ("flow-ci flow push --flow flows/support-router --update 3f1c…", "an Azure ML workspace and a pushed flow's id"),
    (
        "flow-ci run create --file flows/support-router/run.yml --backend azureml --name router-rc",
        "an Azure ML workspace; tests/azureml.rs",
    ),
    ("flow-ci deploy --run router-rc", "an Azure ML workspace; tests/deploy.rs"),
    (
        "flow-ci run create --file flows/web-classification/run.yml --workflow flows/web-classification-maf/workflow.py --start Page --name port",
        "needs Agent Framework installed; tests/migration.rs and tests/port.rs",
    ),
    ("flow-ci run create --file flows/eval-accuracy/run.yml --run port", "evaluates the port run above"),
];

/// The `flow-ci` commands of README's `sh` blocks: `\` continuations joined,
/// comments, redirections and pipes cut, `VAR=value` prefixes and a trailing
/// `&` dropped, `a && b` split.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut commands = Vec::new();
    let (mut in_sh, mut pending) = (false, String::new());
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        let whole = std::mem::take(&mut pending) + line;
        let code = whole.split(" # ").next().unwrap_or_default();
        if code.trim_start().starts_with('#') {
            continue;
        }
        for part in code.split("&&") {
            let part = part.split(" | ").next().unwrap_or_default();
            let part = part.split(" > ").next().unwrap_or_default().trim().trim_end_matches('&').trim();
            let Some(at) = part.find("flow-ci ") else { continue };
            let before = &part[..at];
            if !before.split_whitespace().all(|w| w.contains('=')) {
                continue; // flow-ci named inside another command's arguments
            }
            commands.push(part[at..].split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    commands
}

#[test]
fn readme_commands_parse_and_are_run_or_listed() {
    let commands = readme_commands();
    assert!(commands.len() > 25, "found only {} commands: {commands:?}", commands.len());
    let listed: BTreeSet<&str> = RUN_IN_FIXTURES
        .iter()
        .chain(RUN_AT_ROOT)
        .copied()
        .chain(NOT_RUN.iter().map(|(c, _)| *c))
        .chain(RUN_IN_FIXTURES_WITH_ENV.iter().map(|(c, _)| *c))
        .collect();
    let mut problems = Vec::new();
    for command in &commands {
        if let Err(e) = flow_ci::cli::Cli::command().try_get_matches_from(words(command))
            && e.kind() != clap::error::ErrorKind::DisplayVersion
        {
            problems.push(format!("`{command}` does not parse: {}", e.kind()));
        }
        if !listed.contains(command.as_str()) {
            problems.push(format!("`{command}` is neither run nor listed with why not"));
        }
    }
    for entry in &listed {
        if !commands.iter().any(|c| c == entry) {
            problems.push(format!("`{entry}` is listed here but not in README.md"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn run(dir: &Path, command: &str, env: &[(&str, &str)]) {
    let args = words(command);
    let mut cmd = Command::cargo_bin("flow-ci").unwrap();
    cmd.current_dir(dir).args(&args[1..]).envs(env.iter().copied());
    // Nothing to sign in with: `deploy --dry-run` must need no Azure.
    for var in [
        "GITHUB_ACTIONS",
        "TF_BUILD",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_KEY",
        "OPENAI_API_KEY",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "`{command}` in {}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readme_commands_run_from_the_folder_they_name() {
    let clone = tempfile::tempdir().unwrap();
    let fixtures = clone.path().join("fixtures");
    copy_tree(&repo_root().join("fixtures"), &fixtures, &[]);
    std::fs::remove_dir_all(fixtures.join(".flow-ci/runs")).ok();
    for command in RUN_IN_FIXTURES {
        run(&fixtures, command, &[]);
    }
    for (command, env) in RUN_IN_FIXTURES_WITH_ENV {
        run(&fixtures, command, env);
    }
    for command in RUN_AT_ROOT {
        run(clone.path(), command, &[]);
    }
}
