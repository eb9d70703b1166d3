//! The executor's flags, shared by `flow test`, `run create`, `check`,
//! `serve` and `deploy`, and the LLM setup they build.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exec::llm::LlmSetup;
use exec::llm::setup::{LlmFlags, SetupError, setup};
use model::config::Config;
use model::exit;

/// Options of the local executor, shared by `flow test` and `run create`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// Python interpreter for python nodes [default: $FLOW_CI_PYTHON, the active virtualenv, python3]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,

    /// Seconds a line may run before it fails (promptflow's PF_LINE_TIMEOUT_SEC)
    #[arg(long, value_name = "SECONDS", default_value_t = 600, env = "PF_LINE_TIMEOUT_SEC", hide_env_values = true)]
    pub line_timeout: u64,

    /// The most model requests in flight at once to one deployment, across all lines and runs; the limit adapts below it to the deployment's answers (429, Retry-After, x-ratelimit-remaining-*) [default: llm.concurrency in .flow-ci.yaml, else 64]
    #[arg(long, value_name = "N", env = "FLOW_CI_LLM_CONCURRENCY", hide_env_values = true)]
    pub llm_concurrency: Option<usize>,

    /// Always call the model: do not read or write the LLM response cache
    #[arg(long)]
    pub no_cache: bool,

    /// Where LLM responses are cached
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".flow-ci/cache/llm",
        env = "FLOW_CI_CACHE_DIR",
        hide_env_values = true
    )]
    pub cache_dir: PathBuf,

    /// A promptflow connection file (the `pf connection create --file` YAML); repeatable
    #[arg(long = "connection", value_name = "FILE")]
    pub connection_files: Vec<PathBuf>,

    /// Retries of a model request after 429, 422, 5xx or a timeout (waits honour Retry-After)
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub llm_retries: u32,

    /// Seconds one model request may take
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub llm_timeout: u64,

    /// The connection that python code calling the model itself (the openai SDK in python nodes,
    /// Agent Framework agents) reaches through flow-ci's loopback model proxy: cached, paced and
    /// counted like llm nodes, with a per-run token instead of the key (AZURE_OPENAI_ENDPOINT /
    /// OPENAI_BASE_URL point at it) [default: llm.proxy in .flow-ci.yaml; a port's connection wins]
    #[arg(long, value_name = "CONNECTION")]
    pub model_connection: Option<String>,
}

impl ExecArgs {
    /// The LLM flags as the executor's setup reads them.
    pub fn llm_flags(&self) -> LlmFlags {
        LlmFlags {
            concurrency: self.llm_concurrency,
            no_cache: self.no_cache,
            cache_dir: self.cache_dir.clone(),
            connection_files: self.connection_files.clone(),
            retries: self.llm_retries,
            timeout: Duration::from_secs(self.llm_timeout),
            model_connection: self.model_connection.clone(),
        }
    }

    /// Connections and LLM settings from `config` (already loaded) and the
    /// flags; problems are printed and give exit 2.
    pub fn llm_setup(&self, config: Option<&Config>, err: &mut dyn Write) -> Result<LlmSetup, u8> {
        setup(config, &self.llm_flags()).map_err(|e| report_setup_error(&e, err))
    }
}

/// Reads `--config` (or ./.flow-ci.yaml when there is one) once, for the
/// commands that are not jobs; its problems are printed and give exit 2.
pub fn load_config(explicit: Option<&Path>, err: &mut dyn Write) -> Result<Option<Config>, u8> {
    crate::jobs::run::load_config(explicit).map_err(|e| super::failure::report_run_job_error(&e, err))
}

/// Prints why the LLM setup failed; returns the exit code (2).
pub fn report_setup_error(e: &SetupError, err: &mut dyn Write) -> u8 {
    match e {
        SetupError::Invalid(diags) => super::failure::print_diagnostics(diags, err),
        SetupError::Connections(message) => {
            let _ = writeln!(err, "error: {message}");
        }
    }
    exit::INVALID_INPUT
}
