//! The embedded local executor: runs users' unchanged flows the way
//! promptflow does, without promptflow.

pub mod pool;
pub mod value;
