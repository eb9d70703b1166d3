//! `flow-ci serve`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::exec_args::{ExecArgs, load_config};
use super::failure::{report_job_error, report_prepare_error};
use crate::jobs::serve::{ServeError, ServeOptions};
use exec::prepare::prepare;
use model::exit;

/// Serve a flow over HTTP like `pf flow serve`: POST /score with the flow's inputs as JSON.
///
/// Endpoints: POST /score (inputs → outputs, 400 with {"error": {"code", "message"}}
/// for missing or mistyped inputs), GET /health, GET /version, GET /swagger.json
/// (the flow's OpenAPI document, example from samples.json). Python nodes run in a
/// pool of --workers python3 workers; every node's code is loaded before the first
/// request. SIGINT or SIGTERM stops it after the requests in flight.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  flow-ci serve --flow flows/support-router --port 8080\n  curl -s localhost:8080/score -H 'content-type: application/json' \\\n    -d '{\"message\": \"I was charged twice\"}'"
)]
pub struct ServeArgs {
    /// The flow folder (holding flow.dag.yaml)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub flow: PathBuf,

    /// Port to listen on (0: any free port, printed at start)
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to listen on
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Python workers, i.e. requests whose python nodes run at once [default: number of CPUs]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Use a variant: ${node_name.variant_id}
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,

    #[command(flatten)]
    pub exec: ExecArgs,
}

pub fn run(args: ServeArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let prepared = match prepare(&args.flow, args.variant.as_deref()) {
        Ok(p) => p,
        Err(e) => return report_prepare_error(&e, err),
    };
    let config = match load_config(None, err) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let setup = match args.exec.llm_setup(config.as_ref(), err) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = ServeOptions {
        addr: SocketAddr::new(args.host, args.port),
        python: exec::pool::default_python(args.exec.python.as_deref()),
        workers: super::workers_or_cpus(args.workers),
        line_timeout: Duration::from_secs(args.exec.line_timeout),
    };
    let served = crate::jobs::serve::serve(&prepared, &setup, &opts, |addr| {
        // One line on stdout, flushed: scripts and tests wait for it.
        let _ = writeln!(
            out,
            "serving {} on http://{addr} (POST /score, GET /health, GET /swagger.json)",
            args.flow.display()
        );
        let _ = out.flush();
    });
    match served {
        Ok(()) => {
            let _ = writeln!(err, "stopped");
            exit::OK
        }
        Err(ServeError::Job(e)) => report_job_error(&e, err),
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            exit::FAILURE
        }
    }
}
