//! The embedded local executor: runs users' unchanged flows the way
//! promptflow does, without promptflow.

pub mod batch;
pub mod bind;
pub mod job;
pub mod line;
pub mod pool;
pub mod prepare;
pub mod value;
