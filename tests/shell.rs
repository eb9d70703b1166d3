//! `flow-ci completions <shell>` and `flow-ci man`: the scripts and pages
//! cover every command clap defines (the list is taken from clap, not kept
//! here), bash really completes with its script, and groff renders every
//! page without a warning.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use assert_cmd::Command;
use clap::CommandFactory;

fn flow_ci() -> Command {
    let mut cmd = Command::cargo_bin("flow-ci").expect("binary builds");
    cmd.env_remove("GITHUB_ACTIONS").env_remove("TF_BUILD").env_remove("FLOW_CI_LOG");
    cmd
}

fn stdout(args: &[&str]) -> String {
    let output = flow_ci().args(args).output().expect("flow-ci runs");
    assert!(output.status.success(), "flow-ci {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The top-level commands (`check`, `validate`, ..., `completions`, `man`).
fn commands() -> Vec<String> {
    let cli = flow_ci::cli::Cli::command();
    let names: Vec<String> = cli.get_subcommands().map(|c| c.get_name().to_string()).collect();
    assert!(names.len() >= 10, "{names:?}");
    names
}

/// Every command's page name: `flow-ci`, `flow-ci-check`, `flow-ci-run-create`, ...
fn page_names() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, prefix: &str, names: &mut BTreeSet<String>) {
        names.insert(prefix.to_string());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
            walk(sub, &format!("{prefix}-{}", sub.get_name()), names);
        }
    }
    let mut names = BTreeSet::new();
    walk(&flow_ci::cli::Cli::command(), "flow-ci", &mut names);
    names
}

#[test]
fn every_shell_gets_a_script_naming_every_command() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = stdout(&["completions", shell]);
        for command in commands() {
            assert!(script.contains(&command), "the {shell} script does not mention `{command}`");
        }
    }
    flow_ci().args(["completions", "tcsh"]).assert().code(2);
}

/// What bash offers at `words`, the last one being completed, with the
/// script flow-ci printed.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let array: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\n_flow__ci flow-ci '{}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        array.join(" "),
        words[cword],
    );
    let output = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_commands_subcommands_and_flag_values() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("flow-ci.bash");
    std::fs::write(&script, stdout(&["completions", "bash"])).unwrap();
    assert!(bash_completes(&script, &["flow-ci", "r"]).contains(&"run".to_string()));
    // After a subcommand (broken in clap_complete 4.6 for a bin name with a hyphen).
    assert_eq!(bash_completes(&script, &["flow-ci", "run", "cr"]), ["create"]);
    assert_eq!(bash_completes(&script, &["flow-ci", "validate", "--format", ""]), ["human", "json", "github", "azure"]);
    let shells = bash_completes(&script, &["flow-ci", "completions", ""]);
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        assert!(shells.contains(&shell.to_string()), "{shells:?}");
    }
}

/// groff's warnings about a page (`-ww`: all of them, but `break`: a long
/// URL that cannot be broken to the width is layout, not a mistake), empty
/// when clean.
fn groff_warnings(page: &[u8]) -> String {
    let mut child = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-Wbreak", "-z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff renders manual pages (apt-get install groff-base)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), page).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_man_page_lists_every_command_and_renders_cleanly() {
    let page = stdout(&["man"]);
    assert!(page.contains(".TH flow-ci 1"), "{page}");
    for command in commands().into_iter().filter(|c| c != "help") {
        let reference = format!("flow\\-ci\\-{}(1)", command.replace('-', "\\-"));
        assert!(page.contains(&reference), "flow-ci.1 does not refer to {reference}");
    }
    assert_eq!(groff_warnings(page.as_bytes()), "");
}

#[test]
fn man_out_dir_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("share/man/man1");
    flow_ci().args(["man", "--out-dir"]).arg(&out).assert().success();
    let written: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().trim_end_matches(".1").to_string())
        .collect();
    assert_eq!(written, page_names());
    assert!(written.contains("flow-ci-run-create") && written.contains("flow-ci-completions"), "{written:?}");
    for name in &written {
        let page = std::fs::read(out.join(format!("{name}.1"))).unwrap();
        assert!(String::from_utf8_lossy(&page).contains(&format!(".TH {name} 1")), "{name}");
        assert_eq!(groff_warnings(&page), "", "{name}.1");
    }
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    flow_ci().args(["man", "--out-dir"]).arg(&file).assert().code(2);
}
