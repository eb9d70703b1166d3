//! The embedded local executor: runs users' unchanged flows the way
//! promptflow does, without promptflow. Python nodes run in worker
//! processes, prompts render with minijinja, `llm` nodes call the model
//! through a client with retries and a response cache, and every run is
//! recorded in the run store.
//!
//! The executor knows no cloud, report or forge: those crates sit above it.

#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod batch;
pub mod bind;
pub mod credentials;
pub mod images;
pub mod job;
pub mod line;
pub mod llm;
pub mod nonfinite;
pub mod pool;
pub mod prepare;
pub mod start;
pub mod store;
pub mod venv;
