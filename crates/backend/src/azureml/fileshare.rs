//! Azure Files REST, the calls `pfazure flow create` makes to put a flow in
//! the workspace's file share (the `workspaceworkingdirectory` datastore the
//! studio edits flows in): create a directory, ask whether one exists,
//! create a file and write its ranges. A share is addressed and signed as a
//! blob container is (`{account_url}/{share}/{path}`, Shared Key or SAS), so
//! these are more calls on [`Container`].
//!
//! Sources: promptflow-azure 1.18.5 `operations/_fileshare_storeage_helper.py`
//! (`FlowFileStorageClient`: `Users/{alias}/promptflow/{folder}`, one
//! subdirectory per folder, one `upload_file` per file) over azure-storage-file-share's
//! `ShareDirectoryClient` (Create Directory `PUT ?restype=directory`, Create
//! File `PUT` with `x-ms-type: file` and `x-ms-content-length`, Put Range
//! `PUT ?comp=range` with `x-ms-range` and `x-ms-write: update`, ranges of at
//! most 4 MiB).

use super::blob::{BlobError, Container};

/// The largest range one Put Range may write (Azure Files REST, "Put Range").
const MAX_RANGE: usize = 4 * 1024 * 1024;

impl Container {
    /// Creates the directory `path` (its parent must exist); `false` when it
    /// was already there.
    pub fn create_directory(&self, path: &str) -> Result<bool, BlobError> {
        match self.request("PUT", path, &[("restype", "directory")], &[], Vec::new()) {
            Ok(_) => Ok(true),
            Err(BlobError::Status { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the directory `path` exists (Get Directory Properties).
    pub fn directory_exists(&self, path: &str) -> Result<bool, BlobError> {
        match self.request("GET", path, &[("restype", "directory")], &[], Vec::new()) {
            Ok(_) => Ok(true),
            Err(BlobError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates (or replaces) the file `path` with `bytes`: Create File with
    /// its length, then one Put Range per 4 MiB (none for an empty file).
    pub fn upload_file(&self, path: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let length = bytes.len().to_string();
        self.request("PUT", path, &[], &[("x-ms-type", "file"), ("x-ms-content-length", &length)], Vec::new())?;
        for (i, chunk) in bytes.chunks(MAX_RANGE).enumerate() {
            let start = i * MAX_RANGE;
            let range = format!("bytes={start}-{}", start + chunk.len() - 1);
            let headers = [("x-ms-range", range.as_str()), ("x-ms-write", "update")];
            self.request("PUT", path, &[("comp", "range")], &headers, chunk.to_vec())?;
        }
        Ok(())
    }
}
