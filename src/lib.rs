//! flow-ci: prompt flows (promptflow `flow.dag.yaml` folders) in CI/CD.
//!
//! The binary (`src/main.rs`) only parses arguments and maps outcomes to exit
//! codes; everything else lives here so tests and benches call it directly.
//! Library code never prints: commands write to the writers they are given.

#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod azureml;
pub mod backend;
pub mod check;
pub mod ci;
pub mod cli;
pub mod config;
pub mod data;
pub mod decode;
pub mod deploy;
pub mod detect;
pub mod diag;
pub mod entra;
pub mod exec;
pub mod exit;
pub mod flow;
pub mod gate;
pub mod git;
pub mod llm;
pub mod paths;
pub mod publish;
pub mod report;
pub mod runs;
pub mod serve;
pub mod validate;
pub mod yaml;
