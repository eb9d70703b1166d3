//! The Azure Machine Learning backend, as `pfazure` speaks to the service.
//! So far: uploading flow snapshots and data to a workspace datastore the way
//! azure-ai-ml does (content-hashed `LocalUpload/` folders, skipped when
//! already there). Run submission, polling and results are not built yet.

pub mod blob;
pub mod snapshot;
