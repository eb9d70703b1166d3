//! `flow-ci run create | show | show-details | show-metrics | list | compare | stream | cancel | visualize`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as Json;

use super::cloud::CloudArgs;
use super::exec_args::ExecArgs;
use super::failure::{report_run_job_error, store_error};
use super::flow::parse_key_value;
use super::progress::ConsoleProgress;
use super::run_view::{self, ViewFormat};
use crate::jobs::run::RunRequest;
use exec::job::Job;
use exec::store::{RunStatus, Store};
use model::config::{Backend, Config};
use model::flow::port::{self, Port};
use model::flow::reference::MappingSource;
use model::flow::run_file::{self, RunFile};
use model::flow::run_name;
use model::{diag, exit};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Where runs are stored [default: $FLOW_CI_RUNS_DIR, else .flow-ci/runs]
    #[arg(long, global = true, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: RunCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RunCommand {
    Create(Box<CreateArgs>),
    /// Show a run's status, line counts, failures and metrics (run.json)
    #[command(
        after_help = "Examples:\n  flow-ci run show --name web_classification_batch\n  flow-ci run show --name web_classification_batch --format json"
    )]
    Show(NameArgs),
    /// Show each line's inputs and outputs; failed lines read "(Failed)"
    #[command(
        after_help = "Examples:\n  flow-ci run show-details --name web_classification_batch\n  flow-ci run show-details --name web_classification_batch \\\n    --all-results --format json\n  flow-ci run show-details --name nightly --backend azureml"
    )]
    ShowDetails(DetailsArgs),
    /// Print a run's metrics (metrics.json, the values passed to log_metric)
    #[command(after_help = "Examples:\n  flow-ci run show-metrics --name eval_accuracy")]
    ShowMetrics(NameArgs),
    /// List runs, newest first
    #[command(
        after_help = "Examples:\n  flow-ci run list\n  flow-ci run list --runs-dir target/demo-runs --format json"
    )]
    List(ListArgs),
    /// Compare the metrics and failed lines of two runs (B - A)
    #[command(after_help = "Examples:\n  flow-ci run compare eval_main eval_pr")]
    Compare(CompareArgs),
    /// Follow an Azure ML run: print its log as it grows, then fetch its results (a local run: print its log)
    #[command(
        after_help = "Examples:\n  flow-ci run stream --name web_classification_batch\n  flow-ci run stream --name nightly --backend azureml"
    )]
    Stream(CloudNameArgs),
    /// Cancel an Azure ML run
    #[command(after_help = "Examples:\n  flow-ci run cancel --name web_classification_batch")]
    Cancel(CloudNameArgs),
    /// Write runs side by side as one self-contained HTML page, like `pf run visualize`: metrics,
    /// each line's inputs and outputs with a text filter and "failed only", and word diffs of the
    /// outputs that differ from the first run's
    #[command(
        after_help = "Examples:\n  flow-ci run visualize --name base --name pr\n  flow-ci run visualize --names base,pr --html-path runs.html\n\nThe page needs no network. Its address can set the filter:\n  runs.html#q=TEXT&failed=1&differing=1"
    )]
    Visualize(VisualizeArgs),
}

#[derive(Debug, clap::Args)]
pub struct VisualizeArgs {
    /// The runs to show, the first the one the others are compared with (repeat it, or
    /// separate names with commas as `pf run visualize --names a,b` does)
    #[arg(long = "name", short, visible_alias = "names", value_name = "NAME", required = true,
          value_delimiter = ',', value_parser = |s: &str| run_name::parse(s.trim()))]
    pub names: Vec<String>,
    /// Where to write the page [default: visualize/<A>_vs_<B>.html beside the run store,
    /// .flow-ci/visualize/ by default]
    #[arg(long, value_name = "FILE")]
    pub html_path: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CloudNameArgs {
    /// The run name (in the run store)
    #[arg(long, short, value_parser = run_name::parse)]
    pub name: String,
    #[command(flatten)]
    pub cloud: WorkspaceArgs,
}

/// Where a run the store does not have is looked for.
#[derive(Debug, clap::Args)]
pub struct WorkspaceArgs {
    /// azureml: a run the run store does not have is the workspace's run of that name (its id
    /// there, e.g. `run create --backend azureml --name N`) [default: .flow-ci.yaml `backend:`,
    /// else local]
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// The .flow-ci.yaml with the `azureml:` workspace [default: ./.flow-ci.yaml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Run a flow over a data file (a batch run), or an evaluation over a base run.
///
/// With --file, reads a promptflow run file (`flow`, `data`, `run`, `column_mapping`,
/// `variant`, `environment_variables`, `name`, `display_name`, `tags`): the same file
/// `pf run create --file` takes. Without it, --flow and --data (and --run for an
/// evaluation) say the same. Inputs without a mapping are read from the data column of
/// the same name, unless the input has a default. The run is stored in the run store
/// (`flow-ci run show --name N`); lines that fail are recorded and the run completes.
///
/// With --backend azureml the run goes to Azure Machine Learning, as `pfazure run create`
/// sends it: the flow and data are uploaded to the workspace's default datastore (skipped
/// when unchanged), the run is submitted under an id derived from the flow, data, run file
/// and commit (a retried job finds its run instead of submitting it twice), polled until it
/// ends, and its lines, metrics and logs are copied into the run store. Ctrl-C and --timeout
/// cancel it. Sign-in: a service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID with
/// AZURE_CLIENT_SECRET or OIDC federation), managed identity, or `az login`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  flow-ci run create --file flows/web-classification/run.yml --name base\n  flow-ci run create --file flows/eval-accuracy/run.yml --run base\n  flow-ci run create --flow flows/web-classification --data data.jsonl \\\n    --column-mapping url='${data.url}'\n  flow-ci run create --file flows/web-classification/run.yml \\\n    --backend azureml --stream"
)]
pub struct CreateArgs {
    /// A promptflow run file (run.yml)
    #[arg(long, short, value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// The flow folder (instead of, or overriding, the run file's `flow`)
    #[arg(long, value_name = "DIR")]
    pub flow: Option<PathBuf>,

    /// Run a Microsoft Agent Framework workflow (a flow's port) instead of a flow: FILE.py or
    /// FILE.py:FACTORY [default factory: create_workflow(), else the module's `workflow`]. A fresh
    /// workflow per line; its inputs are the --column-mapping names (one is the start message,
    /// several a dict); its outputs are what it yields (a dict's keys become columns)
    #[arg(long, value_name = "FILE.py[:FACTORY]", conflicts_with_all = ["flow", "variant"])]
    pub workflow: Option<String>,

    /// With --workflow: a class in the workflow's module (a dataclass) built from the mapped
    /// inputs as the start message
    #[arg(long, value_name = "CLASS", requires = "workflow")]
    pub start: Option<String>,

    /// Input data: .jsonl, .json, .csv or .tsv
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,

    /// The base run of an evaluation run (overrides the run file's `run`)
    #[arg(long, value_name = "NAME", value_parser = run_name::parse)]
    pub run: Option<String>,

    /// input=${data.column} | ${run.outputs.name} | ${run.inputs.column} | literal
    #[arg(long, value_name = "INPUT=SOURCE", num_args = 1.., value_parser = parse_key_value)]
    pub column_mapping: Vec<(String, String)>,

    /// Use a variant: ${node_name.variant_id}
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,

    /// Run name [default: the run file's `name`, else <flow>_<variant>_<timestamp>]
    #[arg(long, value_name = "NAME", value_parser = run_name::parse)]
    pub name: Option<String>,

    /// Replace an existing run of the same name
    #[arg(long)]
    pub force: bool,

    /// Print each line's result as it finishes, and the workers' output
    #[arg(long)]
    pub stream: bool,

    /// Lines run at once (python worker processes) [default: number of CPUs]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Print the finished run.json instead of a summary
    #[arg(long, value_enum, default_value_t = ViewFormat::Text)]
    pub format: ViewFormat,

    /// Where the run executes: local (the embedded executor) or azureml (the workspace from `azureml:`
    /// in .flow-ci.yaml, AZUREML_* or config.json) [default: .flow-ci.yaml `backend:`, else local]
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,

    /// The .flow-ci.yaml with `backend:`, `azureml:` and `connections:` [default: ./.flow-ci.yaml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub cloud: CloudArgs,

    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The run name
    #[arg(long, short, value_parser = run_name::parse)]
    pub name: String,
    /// text: a summary for people; json: the run's record (run.json) or lines, for scripts
    #[arg(long, value_enum, default_value_t = ViewFormat::Text)]
    pub format: ViewFormat,
}

#[derive(Debug, clap::Args)]
pub struct DetailsArgs {
    #[command(flatten)]
    pub name: NameArgs,
    /// Show at most this many lines
    #[arg(long, default_value_t = 100)]
    pub max_results: usize,
    /// Show every line
    #[arg(long)]
    pub all_results: bool,
    #[command(flatten)]
    pub cloud: WorkspaceArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// text: a table for people; json: every run's record, for scripts
    #[arg(long, value_enum, default_value_t = ViewFormat::Text)]
    pub format: ViewFormat,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The first run (e.g. the baseline)
    #[arg(value_parser = run_name::parse)]
    pub a: String,
    /// The second run
    #[arg(value_parser = run_name::parse)]
    pub b: String,
    /// text: a table for people; json: the comparison, for scripts
    #[arg(long, value_enum, default_value_t = ViewFormat::Text)]
    pub format: ViewFormat,
}

pub fn run(args: RunArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let store = Store::new(exec::store::root(args.runs_dir.as_deref()));
    let result = match args.command {
        RunCommand::Create(c) => return create(*c, &store, out, err),
        RunCommand::Show(a) => run_view::show(&store, &a.name, a.format, out),
        RunCommand::ShowDetails(a) => {
            if let Err(code) = fetch_unless_stored(&a.name.name, &a.cloud, false, &store, err) {
                return code;
            }
            run_view::details(&store, &a.name.name, a.name.format, (!a.all_results).then_some(a.max_results), out)
        }
        RunCommand::ShowMetrics(a) => run_view::metrics(&store, &a.name, out),
        RunCommand::List(a) => run_view::list(&store, a.format, out),
        RunCommand::Compare(a) => run_view::compare(&store, &a.a, &a.b, a.format, out),
        RunCommand::Stream(a) => return stream(&a, &store, out, err),
        RunCommand::Cancel(a) => return cancel(&a, &store, out, err),
        RunCommand::Visualize(a) => return visualize(&a, &store, out, err),
    };
    match result {
        Ok(()) => exit::OK,
        Err(run_view::ViewError::Store(e)) => store_error(&e, err),
        Err(run_view::ViewError::Output(e)) => super::output_failed(&e, err),
    }
}

/// With `--backend azureml` (or `backend: azureml`), a run the store does
/// not have is fetched from the workspace, where `name` is its id; the
/// fetched run's status, or `None` when nothing was fetched.
fn fetch_unless_stored(
    name: &str,
    args: &WorkspaceArgs,
    stream: bool,
    store: &Store,
    err: &mut dyn Write,
) -> Result<Option<RunStatus>, u8> {
    if !matches!(store.load(name), Err(exec::store::StoreError::NotFound { .. })) {
        return Ok(None);
    }
    let config = crate::jobs::run::load_config(args.config.as_deref()).map_err(|e| report_run_job_error(&e, err))?;
    if Config::backend_or(config.as_ref(), args.backend) != Backend::AzureMl {
        return Ok(None);
    }
    let session = connect(config.as_ref(), stream, err)?;
    let cancel = super::cancel_on_interrupt();
    match backend::azureml::run::fetch(&session, store, name, &cancel) {
        Ok(record) => Ok(Some(record.status)),
        Err(e) => Err(super::cloud::report(&e, err)),
    }
}

/// `run stream`: a local run's log, or an Azure ML run followed to its end.
fn stream(args: &CloudNameArgs, store: &Store, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match fetch_unless_stored(&args.name, &args.cloud, true, store, err) {
        Ok(Some(status)) => {
            return match run_view::show(store, &args.name, ViewFormat::Text, out) {
                Ok(()) => finished_code(status),
                Err(run_view::ViewError::Store(e)) => store_error(&e, err),
                Err(run_view::ViewError::Output(e)) => super::output_failed(&e, err),
            };
        }
        Ok(None) => {}
        Err(code) => return code,
    }
    let record = match store.load(&args.name) {
        Ok(r) => r,
        Err(e) => return store_error(&e, err),
    };
    if backend::azureml::run::cloud_id(&record).is_none() {
        let logs = match store.logs(&args.name) {
            Ok(logs) => logs,
            Err(e) => return store_error(&e, err),
        };
        if logs.is_empty() {
            let _ = writeln!(
                err,
                "run {} ran locally ({}); its log is empty: its python nodes printed nothing",
                args.name,
                record.status.as_str()
            );
        }
        return match out.write_all(logs.as_bytes()) {
            Ok(()) => exit::OK,
            Err(e) => super::output_failed(&e, err),
        };
    }
    let session = match cloud_session(args.cloud.config.as_deref(), true, err) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let cancel = super::cancel_on_interrupt();
    match backend::azureml::run::attach(&session, store, &args.name, &cancel) {
        Ok(finished) => match run_view::show(store, &args.name, ViewFormat::Text, out) {
            Ok(()) => finished_code(finished.status),
            Err(run_view::ViewError::Store(e)) => store_error(&e, err),
            Err(run_view::ViewError::Output(e)) => super::output_failed(&e, err),
        },
        Err(e) => super::cloud::report(&e, err),
    }
}

fn cancel(args: &CloudNameArgs, store: &Store, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let config = match crate::jobs::run::load_config(args.cloud.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return report_run_job_error(&e, err),
    };
    let in_workspace = Config::backend_or(config.as_ref(), args.cloud.backend) == Backend::AzureMl;
    // A local run has no service to ask: say so instead of signing in.
    if !in_workspace
        && let Ok(record) = store.load(&args.name)
        && backend::azureml::run::cloud_id(&record).is_none()
    {
        let _ = writeln!(
            err,
            "error: run {} ran locally ({}); only Azure ML runs are canceled with `run cancel` (a local run stops with Ctrl-C in the terminal running it)",
            args.name,
            record.status.as_str()
        );
        return exit::INVALID_INPUT;
    }
    let session = match connect(config.as_ref(), false, err) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match backend::azureml::run::cancel(&session, store, &args.name, in_workspace) {
        Ok(id) => {
            let _ = writeln!(
                out,
                "cancel requested: {} ({id}); `flow-ci run stream --name {}` follows it",
                args.name, args.name
            );
            exit::OK
        }
        Err(e) => super::cloud::report(&e, err),
    }
}

/// `run visualize`: the page is written, its path printed.
fn visualize(args: &VisualizeArgs, store: &Store, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    use crate::jobs::visualize::VisualizeError;
    let path = match crate::jobs::visualize::visualize(store, &args.names, args.html_path.as_deref()) {
        Ok(path) => path,
        Err(VisualizeError::Store(e)) => return store_error(&e, err),
        Err(e @ VisualizeError::Write { .. }) => {
            let _ = writeln!(err, "error: {e}");
            let _ = writeln!(err, "  hint: choose another --html-path");
            return exit::FAILURE;
        }
    };
    match writeln!(out, "{}", path.display()) {
        Ok(()) => exit::OK,
        Err(e) => super::output_failed(&e, err),
    }
}

fn cloud_session(config: Option<&Path>, stream: bool, err: &mut dyn Write) -> Result<backend::azureml::Session, u8> {
    let config = crate::jobs::run::load_config(config).map_err(|e| report_run_job_error(&e, err))?;
    connect(config.as_ref(), stream, err)
}

fn connect(config: Option<&Config>, stream: bool, err: &mut dyn Write) -> Result<backend::azureml::Session, u8> {
    let azureml = config.map(Config::azureml_keys).unwrap_or_default();
    crate::jobs::cloud::connect(&azureml, None, stream).map_err(|e| super::cloud::report(&e, err))
}

fn finished_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Canceled => exit::INTERRUPTED,
        RunStatus::Completed => exit::OK,
        _ => exit::FAILURE,
    }
}

/// What to run, from the run file and the flags (flags win).
struct Spec {
    flow: PathBuf,
    data: Option<PathBuf>,
    base: Option<String>,
    mapping: Vec<(String, MappingSource)>,
    variant: Option<String>,
    name: Option<String>,
    file: Option<RunFile>,
    port: Option<Port>,
}

fn create(args: CreateArgs, store: &Store, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let spec = match spec(&args, err) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let cloud_name = spec.name.clone();
    let name = spec.name.clone().unwrap_or_else(|| default_name(&spec.flow, spec.variant.as_deref()));
    let job = Job {
        name,
        flow: spec.flow,
        data: spec.data,
        base: spec.base,
        mapping: spec.mapping,
        variant: spec.variant,
        run_file: spec.file,
        port: spec.port,
    };
    let req = RunRequest {
        job,
        config: args.config.clone(),
        backend: args.backend,
        python: exec::pool::default_python(args.exec.python.as_deref()),
        workers: super::workers_or_cpus(args.workers),
        line_timeout: Duration::from_secs(args.exec.line_timeout),
        force: args.force,
        llm: args.exec.llm_flags(),
        cloud_timeout: args.cloud.timeout,
        stream: args.stream,
        cloud_name,
    };
    let cancel = super::cancel_on_interrupt();
    // A local run prints each line's result as it finishes (the progress
    // reporter is asked for only by the local executor); a cloud run's lines
    // arrive with its results, and are printed then.
    let stream = args.stream;
    let streamed = std::sync::atomic::AtomicBool::new(false);
    let progress = |_: &str, total: usize| -> Box<dyn exec::batch::Progress> {
        if stream {
            streamed.store(true, std::sync::atomic::Ordering::Relaxed);
            Box::new(ConsoleProgress::streaming(total))
        } else {
            Box::new(ConsoleProgress::new(total, false))
        }
    };
    let finished = match crate::jobs::run::create(&req, store, &progress, &cancel, err) {
        Ok(r) => r,
        Err(e) => return report_run_job_error(&e, err),
    };
    if args.stream {
        run_view::stream_summary(store, &finished.name, streamed.load(std::sync::atomic::Ordering::Relaxed), err);
    }
    match run_view::show(store, &finished.name, args.format, out) {
        Ok(()) => finished_code(finished.status),
        Err(run_view::ViewError::Store(e)) => store_error(&e, err),
        Err(run_view::ViewError::Output(e)) => super::output_failed(&e, err),
    }
}

/// Reads and validates the run file, then applies flag overrides.
fn spec(args: &CreateArgs, err: &mut dyn Write) -> Result<Spec, u8> {
    let file = match &args.file {
        Some(path) => Some(load_run_file(path, err)?),
        None => None,
    };
    let port = args.workflow.as_deref().map(|w| workflow_port(w, args.start.as_deref(), err)).transpose()?;
    let flow = port
        .as_ref()
        .map(Port::dir)
        .or_else(|| args.flow.clone())
        .or_else(|| file.as_ref().and_then(RunFile::flow_dir));
    let Some(flow) = flow else {
        let _ = writeln!(err, "error: no flow to run: pass --file run.yml, --flow DIR or --workflow FILE.py");
        return Err(exit::INVALID_INPUT);
    };
    let data = args.data.clone().or_else(|| file.as_ref().and_then(RunFile::local_data));
    let base = args.run.clone().or_else(|| file.as_ref().and_then(|f| f.run.as_ref().map(|r| r.value.clone())));
    if data.is_none() && base.is_none() {
        let _ =
            writeln!(err, "error: at least one of --data or --run (or `data`/`run` in the run file) must be provided");
        return Err(exit::INVALID_INPUT);
    }
    let mut mapping: Vec<(String, MappingSource)> =
        file.iter().flat_map(|f| &f.column_mapping).map(|(k, v)| (k.value.clone(), v.value.clone())).collect();
    for (key, value) in &args.column_mapping {
        let source = MappingSource::parse(&Json::String(value.clone()));
        mapping.retain(|(k, _)| k != key);
        mapping.push((key.clone(), source));
    }
    let variant =
        args.variant.clone().or_else(|| file.as_ref().and_then(|f| f.variant.as_ref().map(|v| v.value.clone())));
    let name = args.name.clone().or_else(|| file.as_ref().and_then(|f| f.name.as_ref().map(|n| n.value.clone())));
    Ok(Spec { flow, data, base, mapping, variant, name, file, port })
}

/// `--workflow FILE.py[:FACTORY]` and `--start CLASS`.
fn workflow_port(text: &str, start: Option<&str>, err: &mut dyn Write) -> Result<Port, u8> {
    let invalid = |e: port::PortError, err: &mut dyn Write| {
        let _ = writeln!(err, "error: --workflow: {e}");
        exit::INVALID_INPUT
    };
    let mut port = port::parse(text, Path::new(".")).map_err(|e| invalid(e, err))?;
    port.start = start.map(port::identifier).transpose().map_err(|e| invalid(e, err))?;
    Ok(port)
}

/// A run file must pass `validate` (flow, data, columns) before anything runs.
fn load_run_file(path: &Path, err: &mut dyn Write) -> Result<RunFile, u8> {
    let outcome = crate::jobs::validate::validate(&[path.to_path_buf()]);
    let errors: Vec<_> = outcome.diagnostics.iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        super::failure::print_diagnostics(errors.iter().copied(), err);
        let _ = writeln!(err, "error: {} has {} error(s); nothing was run", path.display(), errors.len());
        return Err(exit::INVALID_INPUT);
    }
    let mut diags = diag::Diagnostics::default();
    run_file::load(path, &mut diags).ok_or(exit::INVALID_INPUT)
}

/// promptflow's default: `<flow folder>_<variant>_<YYYYmmdd_HHMMSS_ffffff>`.
fn default_name(flow: &Path, variant: Option<&str>) -> String {
    let folder = std::path::absolute(flow)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "flow".into());
    let variant =
        variant.and_then(model::flow::reference::parse_variant).map_or_else(|| "variant_0".to_string(), |(_, v)| v);
    let stamp = exec::line::now_iso();
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let sanitized: String =
        folder.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    let name = format!("{sanitized}_{variant}_{}_{}_{}", &digits[..8], &digits[8..14], &digits[14..]);
    run_name::sanitize(&name, run_name::MAX_LEN)
}
