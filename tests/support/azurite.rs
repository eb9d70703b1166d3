//! Azurite (npm), the blob storage emulator, started on a free loopback
//! port for one test and stopped when dropped. `scripts/test` installs it
//! into target/azurite; without it a test is skipped (and fails under
//! CI=true, where it must run).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The emulator's published account and key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    child: Child,
    /// `http://127.0.0.1:PORT` (accounts are path-style below it).
    pub url: String,
    _data: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start() -> Option<Azurite> {
    let bin = std::env::var_os("FLOW_CI_AZURITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/azurite/node_modules/.bin/azurite-blob"));
    if !bin.exists() {
        assert!(std::env::var_os("CI").is_none(), "Azurite is missing at {} (scripts/test installs it)", bin.display());
        eprintln!("skipped: Azurite is not installed at {} (scripts/test installs it)", bin.display());
        return None;
    }
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--skipApiVersionCheck", "--location"])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            let url = url.trim_end_matches('/').to_string();
            // Keep draining its output so Azurite never blocks on a full pipe.
            std::thread::spawn(move || for _ in reader.lines() {});
            return Some(Azurite { child, url, _data: data });
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("Azurite did not start");
}
