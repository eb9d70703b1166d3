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
//! most 4 MiB; List Directories and Files `GET ?restype=directory&comp=list`,
//! paged by `NextMarker`; Delete File `DELETE`). Storage version 2021-08-06:
//! from 2021-06-08 on, Create Directory and Create File need no SMB
//! properties (`x-ms-file-attributes`, `-creation-time`, `-last-write-time`,
//! `-permission` default to `inherit`/`now`; "Create Directory", Azure
//! Files REST reference).

use super::blob::{BlobError, Container, unescape_xml};

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

    /// The files and the subdirectories directly in the directory `path` (names only).
    pub fn list_directory(&self, path: &str) -> Result<(Vec<String>, Vec<String>), BlobError> {
        let (mut files, mut dirs) = (Vec::new(), Vec::new());
        let mut marker = String::new();
        loop {
            let mut query = vec![("restype", "directory"), ("comp", "list")];
            if !marker.is_empty() {
                query.push(("marker", marker.as_str()));
            }
            let (_, body) = self.request("GET", path, &query, &[], Vec::new())?;
            let names = |kind: &str| -> Vec<String> {
                body.split(&format!("<{kind}>"))
                    .skip(1)
                    .filter_map(|e| e.split("<Name>").nth(1)?.split("</Name>").next().map(unescape_xml))
                    .collect()
            };
            files.extend(names("File"));
            dirs.extend(names("Directory"));
            marker = body
                .split("<NextMarker>")
                .nth(1)
                .and_then(|m| m.split("</NextMarker>").next())
                .map(unescape_xml)
                .unwrap_or_default();
            if marker.is_empty() {
                return Ok((files, dirs));
            }
        }
    }

    pub fn delete_file(&self, path: &str) -> Result<(), BlobError> {
        self.request("DELETE", path, &[], &[], Vec::new()).map(drop)
    }
}
