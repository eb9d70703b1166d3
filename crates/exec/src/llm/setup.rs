//! The LLM setup of one flow-ci invocation, from what the config says and
//! what the flags say (flags win): connections (the config's, `--connection`
//! files, `PROMPTFLOW_CONNECTIONS`, the environment) and client settings.

use std::path::PathBuf;
use std::time::Duration;

use model::config::Config;
use model::connection::{Connections, promptflow_connections_file};
use model::diag::{Diagnostic, Diagnostics};

use super::{LlmSetup, Settings};

/// The command line's LLM options; `None` leaves the choice to the config.
#[derive(Clone, Debug)]
pub struct LlmFlags {
    pub concurrency: Option<usize>,
    /// `--no-cache`.
    pub no_cache: bool,
    pub cache_dir: PathBuf,
    /// `--connection` files.
    pub connection_files: Vec<PathBuf>,
    pub retries: u32,
    pub timeout: Duration,
    /// `--model-connection`: the model proxy's connection.
    pub model_connection: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Problems in connection files, with their positions.
    #[error("the connection files have errors")]
    Invalid(Vec<Diagnostic>),
    /// `PROMPTFLOW_CONNECTIONS` cannot be read.
    #[error("{0}")]
    Connections(String),
}

/// Builds the setup from an already loaded config (read once by the job).
pub fn setup(config: Option<&Config>, flags: &LlmFlags) -> Result<LlmSetup, SetupError> {
    let mut diags = Diagnostics::default();
    let (mut connections, llm) = match config {
        Some(c) => (c.connections.clone(), c.llm.clone()),
        None => (Connections::from_env(), Default::default()),
    };
    for file in &flags.connection_files {
        connections.add_file(file, &mut diags);
    }
    if let Some(file) = promptflow_connections_file() {
        connections.add_promptflow_json(&file).map_err(SetupError::Connections)?;
    }
    if diags.has_errors() {
        return Err(SetupError::Invalid(diags.into_sorted()));
    }
    let cache = !flags.no_cache && llm.cache != Some(false);
    let settings = Settings {
        concurrency: flags.concurrency.or(llm.concurrency).unwrap_or(super::limit::DEFAULT_MAX).max(1),
        budget: super::limit::Budget { rpm: llm.rpm, tpm: llm.tpm },
        cache_dir: cache.then(|| flags.cache_dir.clone()),
        retries: flags.retries,
        timeout: flags.timeout.max(Duration::from_secs(1)),
    };
    let mut setup = LlmSetup::new(connections, settings);
    setup.proxy = flags.model_connection.clone().or_else(|| llm.proxy.map(|p| p.value));
    Ok(setup)
}
