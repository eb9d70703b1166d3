//! The model: promptflow's files (`flow.dag.yaml`, run files, `${...}`
//! references, data files, connections) and `.flow-ci.yaml`, read with a
//! position on every value, and the checks of one file or one flow.
//!
//! This crate is the vocabulary every other part speaks. It never runs
//! anything and never talks to a network: it depends on no other crate of
//! flow-ci, so nothing here can reach the executor, a cloud or a forge.

#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod config;
pub mod connection;
pub mod data;
pub mod decode;
pub mod diag;
pub mod exit;
pub mod flow;
pub mod paths;
pub mod secret;
pub mod value;
pub mod yaml;
