//! Uploads to a datastore against a real blob service: Azurite (npm), started
//! on a free port for this test and stopped after. `scripts/test` installs it
//! into target/azurite; without it the test says it was skipped (and fails
//! under CI=true, where it must run).

mod support;

use std::path::Path;

use backend::azureml::blob::{Container, Credential};
use backend::azureml::snapshot::{Snapshot, upload};
use model::connection::Secret;
use support::azurite::{ACCOUNT, Azurite, KEY, start as azurite};

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
