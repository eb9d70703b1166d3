//! Uploads to a datastore against a real blob service: Azurite (npm), started
//! on a free port for this test and stopped after. `scripts/test` installs it
//! into target/azurite; without it the test says it was skipped (and fails
//! under CI=true, where it must run).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use flow_ci::azureml::blob::{Container, Credential};
use flow_ci::azureml::snapshot::{Snapshot, upload};
use flow_ci::llm::connection::Secret;

/// The emulator's published account and key.
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

struct Azurite {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn azurite() -> Option<Azurite> {
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

fn container(azurite: &Azurite) -> Container {
    let account_url = format!("{}/{ACCOUNT}", azurite.url);
    let c = Container::new(
        &account_url,
        ACCOUNT,
        "azureml-blobstore-test",
        Credential::AccountKey(Secret::new(KEY.into())),
    )
    .unwrap();
    c.create().unwrap();
    c
}

#[test]
fn a_flow_snapshot_is_uploaded_once() {
    let Some(azurite) = azurite() else { return };
    let container = container(&azurite);
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/flows/web-classification");
    let snapshot = Snapshot::of(&flow).unwrap();

    let first = upload(&container, &snapshot).unwrap();
    assert_eq!(first.prefix, format!("LocalUpload/{}/web-classification", snapshot.hash));
    assert_eq!(first.written, snapshot.files.len());
    let blobs = container.list(&first.prefix).unwrap();
    let names: Vec<String> = blobs.iter().map(|(n, _)| n.clone()).collect();
    let expected: Vec<String> = snapshot.files.iter().map(|(rel, _)| format!("{}/{rel}", first.prefix)).collect();
    assert_eq!(names, expected);
    let indicator = container.metadata(&expected[0]).unwrap().unwrap();
    assert!(indicator.contains(&("upload_status".into(), "completed".into())), "{indicator:?}");

    // Unchanged: nothing is written (the blobs keep their ETags).
    let again = upload(&container, &Snapshot::of(&flow).unwrap()).unwrap();
    assert_eq!(again.written, 0);
    assert_eq!(container.list(&first.prefix).unwrap(), blobs, "no blob was rewritten");

    // A data file goes to LocalUpload/{hash}/{file name}.
    let data = upload(&container, &Snapshot::of(&flow.join("data.jsonl")).unwrap()).unwrap();
    assert_eq!(container.list(&data.prefix).unwrap()[0].0, format!("{}/data.jsonl", data.prefix));
}

#[test]
fn an_upload_cut_short_is_redone() {
    let Some(azurite) = azurite() else { return };
    let container = container(&azurite);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flow.dag.yaml"), "nodes: []\n").unwrap();
    std::fs::write(dir.path().join("tool.py"), "x = 1\n").unwrap();
    let snapshot = Snapshot::of(dir.path()).unwrap();
    // The first file landed, then the job died: no upload_status mark.
    container.put(&format!("{}/{}", snapshot.prefix(), snapshot.files[0].0), b"partial".to_vec()).unwrap();
    let redone = upload(&container, &snapshot).unwrap();
    assert_eq!(redone.written, 2);
}

#[test]
fn a_wrong_key_is_refused_with_the_service_error() {
    let Some(azurite) = azurite() else { return };
    let wrong = base64_of(b"not the key");
    let c = Container::new(
        &format!("{}/{ACCOUNT}", azurite.url),
        ACCOUNT,
        "wrong-key",
        Credential::AccountKey(Secret::new(wrong)),
    )
    .unwrap();
    let err = c.create().unwrap_err().to_string();
    assert!(err.contains("403") && err.contains("AuthorizationFailure"), "{err}");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
