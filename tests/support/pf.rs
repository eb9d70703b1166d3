//! promptflow from PyPI, the oracle tests compare flow-ci with: where its
//! `pf` is, and a scratch workspace with a private promptflow home.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `pf` from FLOW_CI_PF, else the venv scripts/test creates.
pub fn pf() -> PathBuf {
    let candidate = std::env::var_os("FLOW_CI_PF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pf-venv/bin/pf"));
    assert!(
        candidate.exists(),
        "promptflow is the oracle but {} does not exist: run scripts/test (it installs promptflow into target/pf-venv) or set FLOW_CI_PF",
        candidate.display()
    );
    candidate
}

/// The interpreters flow-ci's workers run in, by name: the oracle's
/// (promptflow installed) and the default `python3`, where flow-ci's
/// stand-in serves when promptflow is not importable.
pub fn worker_pythons() -> [(&'static str, Option<PathBuf>); 2] {
    [("promptflow installed", Some(pf().parent().unwrap().join("python"))), ("default python3", None)]
}

/// A scratch copy of flows under `flows/` (pf writes into flow folders) with
/// a private promptflow home, so runs never collide with the user's.
pub struct PfWorkspace {
    dir: tempfile::TempDir,
}

impl PfWorkspace {
    /// Copies `flows` (a folder of the repository) into the workspace's `flows/`.
    pub fn new(flows: &str) -> PfWorkspace {
        let dir = tempfile::tempdir().unwrap();
        let from = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(flows);
        super::fs::copy_tree(&from, &dir.path().join("flows"), &[]);
        std::fs::create_dir_all(dir.path().join("home/.promptflow")).unwrap();
        // No telemetry, and no trace server left running after the test.
        std::fs::write(
            dir.path().join("home/.promptflow/pf.yaml"),
            "telemetry:\n  enabled: 'false'\ntrace:\n  destination: none\n",
        )
        .unwrap();
        PfWorkspace { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `pf ARGS` in the workspace, with its private home.
    pub fn pf_command(&self, args: &[&str]) -> Command {
        self.command(&pf(), args)
    }

    /// The pf venv's `python ARGS` (promptflow importable), with pf's environment.
    pub fn python_command(&self, args: &[&str]) -> Command {
        self.command(&pf().parent().unwrap().join("python"), args)
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(self.path())
            .env("HOME", self.path().join("home"))
            .env("PF_DISABLE_TRACING", "true")
            .env("PF_WORKER_COUNT", "2")
            // A file keyring (keyrings.alt) in the private home: CI machines have no system keyring.
            .env("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring");
        cmd
    }

    /// `flow-ci ARGS` in the workspace, its runs under `flow-ci-runs/`, its
    /// workers on `python` (None: the default `python3`).
    pub fn flow_ci(&self, python: Option<&Path>, args: &[&str]) -> std::process::Output {
        let mut cmd = assert_cmd::Command::cargo_bin("flow-ci").unwrap();
        cmd.current_dir(self.path())
            .env("FLOW_CI_RUNS_DIR", self.path().join("flow-ci-runs"))
            .env_remove("VIRTUAL_ENV");
        match python {
            Some(python) => cmd.env("FLOW_CI_PYTHON", python),
            None => cmd.env_remove("FLOW_CI_PYTHON"),
        };
        cmd.args(args).output().unwrap()
    }

    /// `flow-ci ARGS`, which must succeed; its stdout. `mode` names the
    /// worker python in the failure message.
    pub fn flow_ci_ok(&self, mode: &str, python: Option<&Path>, args: &[&str]) -> String {
        let out = self.flow_ci(python, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "flow-ci {args:?} ({mode}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `pf ARGS`, which must succeed.
    pub fn pf_ok(&self, args: &[&str]) -> std::process::Output {
        let out = self.pf_command(args).output().unwrap();
        assert!(
            out.status.success(),
            "pf {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// `pf flow test` prints logs, then the outputs as an indented JSON object
/// (NaN and infinities as Python writes them, read by exec::nonfinite).
pub fn last_json_object(text: &str) -> serde_json::Value {
    let start = text.rfind("\n{").map_or(0, |i| i + 1);
    exec::nonfinite::parse(&text[start..]).unwrap_or_else(|e| panic!("no JSON in pf output ({e}):\n{text}"))
}
