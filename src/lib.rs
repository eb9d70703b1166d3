//! flow-ci: prompt flows (promptflow `flow.dag.yaml` folders) in CI/CD.
//!
//! The binary (`src/main.rs`) only parses arguments and maps outcomes to exit
//! codes; everything else lives in libraries so tests and benches call it
//! directly. Library code never prints: jobs write to the writers they are
//! given. ARCHITECTURE.md maps the parts and the arrows between them.
//!
//! Below this crate: `model` (the files), `net` (HTTP and identity),
//! `exec` (the executor and run store), `backend` (local or Azure ML).

#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod ci;
pub mod cli;
pub mod detect;
pub mod gate;
pub mod jobs;
pub mod publish;
pub mod report;
