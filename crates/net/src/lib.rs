//! HTTP and identity helpers shared by every client of flow-ci (the LLM
//! client, Azure ML, the forges): Entra ID tokens, Retry-After and one retry
//! policy, URL percent-encoding, error chains. Knows no flow, run or report.

#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod entra;
pub mod http;
pub mod retry;
