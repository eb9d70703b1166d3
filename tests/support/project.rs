//! A throwaway project folder, and flow-ci run in it with nothing from the
//! CI host the tests themselves run in.

#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;

use assert_cmd::Command;
use serde_json::Value as Json;

/// What the tests' own environment may hold that would change what flow-ci
/// does (a CI host, a run store, a python).
const NOT_PASSED_ON: &[&str] = &["FLOW_CI_RUNS_DIR", "FLOW_CI_PYTHON", "GITHUB_ACTIONS", "TF_BUILD"];

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// flow-ci in the project, choosing its python itself.
    pub fn flow_ci(&self) -> Command {
        let mut cmd = Command::cargo_bin("flow-ci").unwrap();
        cmd.current_dir(self.path());
        for var in NOT_PASSED_ON {
            cmd.env_remove(var);
        }
        cmd
    }

    /// flow-ci started in the background in the project, its output piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("flow-ci"));
        cmd.current_dir(self.path());
        for var in NOT_PASSED_ON {
            cmd.env_remove(var);
        }
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    pub fn read_jsonl(&self, rel: &str) -> Vec<Json> {
        std::fs::read_to_string(self.path().join(rel))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn read_json(&self, rel: &str) -> Json {
        serde_json::from_str(&std::fs::read_to_string(self.path().join(rel)).unwrap()).unwrap()
    }
}
