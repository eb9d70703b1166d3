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
