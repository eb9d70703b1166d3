//! A git repository made from the example flows: `main` with the base, a
//! `pr` branch to change, and `flow-ci check` run in it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command as Std;

use assert_cmd::Command;

use super::fake_github::{self, FakeGitHub};
use super::fs::copy_tree;

pub struct Pr {
    pub dir: tempfile::TempDir,
}

/// Runs git in `dir` with a fixed identity; returns its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Std::new("git")
        .args(["-c", "user.name=flow-ci tests", "-c", "user.email=tests@flow-ci.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

impl Pr {
    /// The example repository committed on `main`, then a `pr` branch.
    pub fn new() -> Pr {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures"), dir.path(), &["invalid", ".ignore"]);
        std::fs::write(dir.path().join(".gitignore"), ".flow-ci/\n").unwrap();
        git(dir.path(), &["init", "--quiet", "--initial-branch=main"]);
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "--quiet", "-m", "base"]);
        git(dir.path(), &["switch", "--quiet", "-c", "pr"]);
        Pr { dir }
    }

    pub fn edit(&self, rel: &str, from: &str, to: &str) -> &Self {
        let path = self.dir.path().join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        std::fs::write(path, text.replacen(from, to, 1)).unwrap();
        self
    }

    /// Drops every Academic signal from the classifier: accuracy 0.9 → 0.8.
    pub fn regress_accuracy(&self) -> &Self {
        self.edit(
            "flows/web-classification/classify.py",
            "\"abstract\", \"university\", \"research\", \"journal\", \"thesis\", \"citation\"",
            "",
        )
    }

    /// Teaches the classifier two more App signals: the Netflix app row
    /// becomes right (accuracy +0.0167).
    pub fn improve_accuracy(&self) -> &Self {
        self.edit(
            "flows/web-classification/classify.py",
            "\"apps\", \"ratings\"]",
            "\"apps\", \"ratings\", \"stream\", \"netflix\"]",
        )
    }

    pub fn commit(&self) {
        git(self.dir.path(), &["add", "-A"]);
        git(self.dir.path(), &["commit", "--quiet", "-m", "change"]);
    }

    /// Makes a change on `main` (the base) and merges it into the PR.
    pub fn on_main(&self, change: impl FnOnce(&Pr)) {
        git(self.dir.path(), &["switch", "--quiet", "main"]);
        change(self);
        self.commit();
        git(self.dir.path(), &["switch", "--quiet", "pr"]);
        git(self.dir.path(), &["merge", "--quiet", "--no-edit", "main"]);
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        std::fs::write(self.dir.path().join(rel), text).unwrap();
        self
    }

    /// `flow-ci` in the repository, with no CI host or token from the
    /// environment the tests run in.
    pub fn command(&self) -> Command {
        let mut cmd = Command::cargo_bin("flow-ci").unwrap();
        cmd.current_dir(self.dir.path());
        for var in std::env::vars().map(|(k, _)| k) {
            let ci =
                ["GITHUB_", "INPUT_", "SYSTEM_", "BUILD_", "RUNNER_", "ACTIONS_"].iter().any(|p| var.starts_with(p));
            let keys = var.starts_with("AZURE_OPENAI_") || var.starts_with("OPENAI_");
            if ci || keys || var == "TF_BUILD" || var == "FLOW_CI_RUNS_DIR" {
                cmd.env_remove(var);
            }
        }
        cmd
    }

    pub fn check(&self, args: &[&str]) -> (Option<i32>, String, String) {
        run(self.command().arg("check").args(args))
    }

    /// The commit a branch points at.
    pub fn rev(&self, rev: &str) -> String {
        git(self.dir.path(), &["rev-parse", rev]).trim().to_string()
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap()
    }

    /// A `pull_request` event for the PR branch, from the payload fixture
    /// with its base commit replaced by the repository's `main`.
    pub fn pull_request_event(&self, fixture: &str) -> PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events/github").join(fixture);
        let mut payload: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        payload["pull_request"]["base"]["sha"] = self.rev("main").into();
        payload["pull_request"]["number"] = fake_github::PR.into();
        payload["number"] = fake_github::PR.into();
        let out = self.dir.path().join("event.json");
        std::fs::write(&out, payload.to_string()).unwrap();
        out
    }

    /// `flow-ci action` as the container action runs it on a `pull_request`
    /// event: from `/`, every input an `INPUT_*` variable with action.yml's
    /// defaults (empty `backend`: the config decides), outputs to output.txt.
    pub fn action(&self, github: &FakeGitHub, event: &Path) -> Command {
        let sub = self.dir.path();
        let mut cmd = self.command();
        cmd.arg("action")
            .current_dir("/")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_EVENT_NAME", "pull_request")
            .env("GITHUB_EVENT_PATH", event)
            .env("GITHUB_REPOSITORY", fake_github::REPOSITORY)
            .env("GITHUB_API_URL", &github.api)
            .env("GITHUB_OUTPUT", sub.join("output.txt"))
            .env("INPUT_GITHUB-TOKEN", fake_github::TOKEN)
            .env("INPUT_WORKING-DIRECTORY", sub)
            .env("INPUT_CONFIG", ".flow-ci.yaml")
            .env("INPUT_BASE", "")
            .env("INPUT_BACKEND", "")
            .env("INPUT_COMMENT-MODE", "update")
            .env("INPUT_FAIL-ON-GATE", "true")
            .env("INPUT_DRY-RUN", "false");
        cmd
    }
}

/// Runs `cmd`: (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
