//! The runs of a check: each flow's batch run and its evaluations (several
//! flows at once), the baseline beside them, then the gates.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde_json::{Map, Value as Json};

use super::baseline::{BaseData, base_branch_metrics, load_baseline};
use super::diffs::{changed_lines, prompt_diffs};
use super::plan::{BaselinePlan, Plan, PlannedFlow};
use super::{CheckError, CheckRequest};
use crate::gate::{self, Evidence};
use crate::report::{AgreementReport, DifferingLine, FlowError, FlowReport, LlmUsage, ParityReport, Report, Scores};
use backend::{BackendError, Target};
use exec::batch::Progress;
use exec::job::{Job, JobError, JobOptions};
use exec::store::{RunRecord, RunStatus, Store};
use model::config::{Backend, Gate};
use model::diag::Diagnostics;
use model::flow::port::Port;
use model::flow::run_file::{self, RunFile};
use model::flow::run_name;

/// How this check's runs execute: the executor's options and the backend.
#[derive(Clone)]
pub(super) struct Runner<'a> {
    pub opts: JobOptions<'a>,
    pub target: Target<'a>,
}

/// Progress of runs nobody watches (the baseline's, beside the head's bar).
struct Silent;

impl Progress for Silent {
    fn line_done(&self, _: usize, _: usize, _: usize) {}
    fn finish(&self) {}
}

/// Runs the plan: each flow's batch run, its evaluations bound to it, the
/// baseline, and the gates.
pub fn execute(
    plan: &Plan,
    req: &CheckRequest,
    cancel: &AtomicBool,
    progress: &(dyn Fn(&str, usize) -> Box<dyn Progress> + Sync),
    llm: &exec::llm::LlmSetup,
    target: Target<'_>,
) -> Result<Report, CheckError> {
    if plan.backend == Backend::AzureMl
        && matches!(target, Target::Local)
        && let Some(why) = &req.without_secrets
    {
        // A fork's build has no Azure credentials: nothing can run, and
        // that is not the contributor's failure.
        let not_run = |f: &PlannedFlow| FlowReport {
            not_run: Some(format!("it runs on Azure ML and {why}")),
            ..FlowReport::new(f.path.clone(), f.reasons.clone())
        };
        let flows = plan.flows.iter().map(not_run).collect();
        let passed = !req.fail_not_run;
        return Ok(Report { passed, baseline: plan.baseline.to_string(), flows, skipped: plan.skipped.clone() });
    }
    let store = Store::new(req.runs_dir.clone()).waiting();
    let opts = JobOptions {
        python: req.python.clone(),
        workers: req.workers,
        line_timeout: req.line_timeout,
        force: true,
        cancel,
        progress,
        llm,
    };
    let runner = Runner { opts, target };
    // The baseline (often runs at the merge base) and the head runs are
    // independent: do them at the same time.
    let quiet = |_: &str, _: usize| -> Box<dyn Progress> { Box::new(Silent) };
    let base_runner = Runner { opts: JobOptions { progress: &quiet, ..runner.opts.clone() }, ..runner.clone() };
    let (baseline, head_reports) = std::thread::scope(|scope| {
        let baseline = scope.spawn(|| match &plan.baseline {
            BaselinePlan::BaseBranch => base_branch_metrics(plan, req, &base_runner),
            BaselinePlan::File(path) => load_baseline(plan, path).map(Some),
            BaselinePlan::NoBase | BaselinePlan::None => Ok(None),
        });
        let heads = in_parallel(&plan.flows, req.parallel, |flow| {
            let report = run_flow(flow, &store, &runner);
            not_run_without_secrets(report, req.without_secrets.as_deref())
        });
        (baseline.join().unwrap_or_else(|_| Err(CheckError::Baseline("the baseline thread panicked".into()))), heads)
    });
    let baseline = baseline?;
    let mut flows = Vec::new();
    for (flow, report) in plan.flows.iter().zip(head_reports) {
        let mut report = judge(flow, report, &store, baseline.as_ref().and_then(|b| b.get(&flow.path)));
        if let Some(base) = &req.base {
            report.prompt_diffs = prompt_diffs(flow, base, req.head.as_deref()).unwrap_or_default();
        }
        flows.push(report);
    }
    let passed =
        flows.iter().all(|f| f.verdict.passed() && f.errors.is_empty() && !(req.fail_not_run && f.not_run.is_some()));
    Ok(Report { passed, baseline: plan.baseline.to_string(), flows, skipped: plan.skipped.clone() })
}

/// Applies `f` to every item, at most `limit` at a time, keeping the order.
/// Flows are independent (separate runs, workers and names), so a check
/// takes about as long as its slowest flow rather than the sum.
pub(super) fn in_parallel<T: Sync, R: Send>(items: &[T], limit: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results = std::sync::Mutex::new((0..items.len()).map(|_| None).collect::<Vec<Option<R>>>());
    std::thread::scope(|scope| {
        for _ in 0..limit.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect()
}

/// Runs a flow's batch run and evaluations, and its port's beside them;
/// gates are judged later, once the baseline is known.
pub(super) fn run_flow(flow: &PlannedFlow, store: &Store, runner: &Runner<'_>) -> FlowReport {
    let slug: String = flow.path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let mut report = FlowReport::new(flow.path.clone(), flow.reasons.clone());
    let Some(run_path) = &flow.run_file else { return report };
    // Room for `-port-eval-N` after the batch name.
    let batch_name = run_name::sanitize(&format!("check-{slug}"), run_name::MAX_LEN - 16);
    let side = run_side(flow, run_path, &batch_name, None, store, runner);
    report.lines = side.lines;
    report.batch_run = side.batch_run;
    report.evaluation_runs = side.evaluation_runs;
    report.metrics = side.metrics;
    report.scores = side.scores;
    report.errors = side.errors;
    report.llm = side.llm;
    if let Some(port) = &flow.port {
        // A port runs in the python workers here, whatever the flow's backend.
        let local = Runner { target: Target::Local, ..runner.clone() };
        let side = run_side(flow, run_path, &format!("{batch_name}-port"), Some(port), store, &local);
        report.errors.extend(side.errors);
        let judged = flow.parity.as_ref().and_then(|p| p.similarity.as_ref()).zip(report.batch_run.as_deref());
        let similarity = judged.map(|(limit, flow_run)| {
            let port_run = side.batch_run.as_deref();
            let (llm, timeout) = (runner.opts.llm, runner.opts.line_timeout);
            super::similarity::judge(limit, store, flow_run, port_run, report.lines.1, llm, timeout)
        });
        report.parity = Some(ParityReport {
            similarity,
            workflow: port.file.display().to_string(),
            batch_run: side.batch_run,
            evaluation_runs: side.evaluation_runs,
            lines: side.lines,
            metrics: side.metrics,
            agreement: None,
            scores: side.scores,
        });
    }
    report
}

/// One side of a flow: its batch run (the flow, or its port) and the
/// evaluations bound to it.
struct Side {
    batch_run: Option<String>,
    lines: (usize, usize),
    evaluation_runs: Vec<String>,
    metrics: Map<String, Json>,
    scores: Scores,
    errors: Vec<FlowError>,
    /// Model calls of these runs.
    llm: Option<LlmUsage>,
}

fn run_side(
    flow: &PlannedFlow,
    run_path: &Path,
    batch_name: &str,
    port: Option<&Port>,
    store: &Store,
    runner: &Runner<'_>,
) -> Side {
    let mut side = Side {
        batch_run: None,
        lines: (0, 0),
        evaluation_runs: vec![],
        metrics: Map::new(),
        scores: Scores::new(),
        errors: vec![],
        llm: None,
    };
    let (batch_what, eval_what) = match port {
        Some(p) => (format!("port {}", p.file.display()), "port evaluation"),
        None => (format!("batch run {}", run_path.display()), "evaluation"),
    };
    let record = match run_job(run_path, batch_name, None, port, store, runner) {
        Ok(record) => record,
        Err(e) => {
            side.errors.push(e.of(&batch_what));
            return side;
        }
    };
    side.lines = (record.lines.failed, record.lines.total);
    add_usage(&mut side.llm, &record);
    side.batch_run = Some(batch_name.to_string());
    for (i, eval) in flow.evaluations.iter().enumerate() {
        let eval_name = format!("{batch_name}-eval-{i}");
        match run_job(eval, &eval_name, Some(batch_name), None, store, runner) {
            Ok(record) => {
                add_usage(&mut side.llm, &record);
                side.metrics.extend(store.metrics(&eval_name).unwrap_or_default());
                add_scores(&mut side.scores, &store.outputs(&eval_name).unwrap_or_default());
                side.evaluation_runs.push(eval_name);
            }
            Err(e) => side.errors.push(e.of(&format!("{eval_what} {}", eval.display()))),
        }
    }
    side
}

/// Counts a run's model calls in a side's.
fn add_usage(usage: &mut Option<LlmUsage>, record: &RunRecord) {
    if let Some(run) = &record.llm {
        usage.get_or_insert_with(Default::default).add(run);
    }
}

/// On a build without secrets, a flow whose runs stopped for a missing model
/// key is "not run" (and says why) rather than failed: a fork's PR cannot
/// fix that, and the flows that need no secrets were still checked.
fn not_run_without_secrets(mut report: FlowReport, without_secrets: Option<&str>) -> FlowReport {
    let Some(why) = without_secrets else { return report };
    if !report.errors.is_empty() && report.errors.iter().all(|e| e.missing_key) {
        report.not_run = Some(format!("it calls a model and {why}"));
        report.errors.clear();
    }
    report
}

/// Why one run of a check did not give results.
#[derive(Debug, thiserror::Error)]
pub(super) enum RunFailure {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the run was canceled")]
    Canceled,
}

impl RunFailure {
    /// This failure in the report, as the failure of `what`.
    fn of(&self, what: &str) -> FlowError {
        let invalid_input = matches!(self, RunFailure::Backend(e) if e.exit_code() == model::exit::INVALID_INPUT);
        FlowError { message: format!("{what}: {self}"), missing_key: self.is_missing_key(), invalid_input }
    }

    /// Whether the run stopped because a model key is missing.
    fn is_missing_key(&self) -> bool {
        use exec::bind::BindError;
        use exec::llm::client::CallError;
        matches!(
            self,
            RunFailure::Backend(BackendError::Local(
                JobError::Connection(BindError::NoKey { .. }) | JobError::Llm(CallError::MissingKey { .. })
            ))
        )
    }
}

/// Keeps the numeric and boolean columns of an evaluation's `output.jsonl`.
fn add_scores(scores: &mut Scores, outputs: &[Map<String, Json>]) {
    for row in outputs {
        let Some(line) = row.get("line_number").and_then(Json::as_u64) else { continue };
        for (name, value) in row.iter().filter(|(k, _)| *k != "line_number") {
            let score = match value {
                Json::Number(n) => n.as_f64(),
                Json::Bool(b) => Some(f64::from(u8::from(*b))),
                _ => None,
            };
            if let Some(score) = score {
                scores.entry(name.clone()).or_default().insert(line, score);
            }
        }
    }
}

/// Per-line head and base scores for each gate that asks for significance,
/// paired by line number. The scores come from the `per_line` output, else
/// the output named like the metric, else the only numeric output.
fn paired_scores(gates: &[Gate], head: &Scores, base: &Scores) -> Vec<(String, Vec<f64>, Vec<f64>)> {
    let mut paired = Vec::new();
    for gate in gates.iter().filter(|g| g.significance.is_some()) {
        let metric = &gate.metric.value;
        let column = match &gate.per_line {
            Some(c) => Some(c.value.as_str()),
            None if head.contains_key(metric) => Some(metric.as_str()),
            None if head.len() == 1 => head.keys().next().map(String::as_str),
            None => None,
        };
        let (Some(h), Some(b)) = (column.and_then(|c| head.get(c)), column.and_then(|c| base.get(c))) else {
            continue;
        };
        let (hs, bs): (Vec<f64>, Vec<f64>) = h.iter().filter_map(|(line, hv)| b.get(line).map(|bv| (*hv, *bv))).unzip();
        if !hs.is_empty() {
            paired.push((metric.clone(), hs, bs));
        }
    }
    paired
}

/// Applies the gates against `base`, and samples lines whose output changed.
pub(super) fn judge(flow: &PlannedFlow, mut report: FlowReport, store: &Store, base: Option<&BaseData>) -> FlowReport {
    if report.not_run.is_some() {
        return report;
    }
    report.baseline = base.map(|b| b.metrics.clone());
    report.baseline_llm = base.and_then(|b| b.llm.clone());
    report.base_outputs = base.map(|b| b.outputs.clone()).unwrap_or_default();
    let paired = base.map(|b| paired_scores(&flow.gates, &report.scores, &b.scores)).unwrap_or_default();
    let evidence = Evidence {
        head_metrics: report.batch_run.is_some().then_some(&report.metrics),
        base_metrics: report.baseline.as_ref(),
        head_lines: report.lines,
        paired: &paired,
    };
    report.verdict = gate::evaluate(&flow.gates, &evidence);
    if let (Some(base), Some(batch)) = (base, &report.batch_run) {
        report.changed_lines = changed_lines(store, batch, &base.outputs);
    }
    judge_parity(flow, &mut report, store);
    report
}

/// The parity gates: the port's metrics against the flow's on this commit,
/// and line agreement on one output.
fn judge_parity(flow: &PlannedFlow, report: &mut FlowReport, store: &Store) {
    let (Some(limits), Some(port)) = (&flow.parity, report.parity.as_mut()) else { return };
    if let (Some(a), Some(flow_run)) = (&limits.agreement, &report.batch_run) {
        let port_run = port.batch_run.as_deref();
        port.agreement = Some(agreement(store, flow_run, port_run, a, report.lines.1));
    }
    let paired = paired_scores(&limits.metrics, &port.scores, &report.scores);
    let evidence = Evidence {
        head_metrics: port.batch_run.is_some().then_some(&port.metrics),
        base_metrics: Some(&report.metrics),
        head_lines: port.lines,
        paired: &paired,
    };
    let count = port.agreement.as_ref().zip(limits.agreement.as_ref()).map(|(r, a)| gate::AgreementCount {
        output: &a.output.value,
        min: a.min,
        agreed: r.agreed,
        total: r.total,
    });
    let results = gate::parity(&limits.metrics, &evidence, count);
    report.verdict.results.extend(results);
    if let (Some(limit), Some(judged)) = (&limits.similarity, &port.similarity) {
        let judged = gate::Judged { min: limit.min, mean: judged.mean, judged: judged.judged, total: judged.total };
        report.verdict.results.push(gate::similarity(judged));
    }
}

/// Lines shown with both values when the two sides disagree.
const DIFFERING_SHOWN: usize = 10;

/// Compares `output` of the flow's and the port's runs line by line; a line
/// one side failed is a disagreement.
fn agreement(
    store: &Store,
    flow_run: &str,
    port_run: Option<&str>,
    limit: &model::config::Agreement,
    total: usize,
) -> AgreementReport {
    let by_line = |run: Option<&str>| outputs_by_line(store, run, |row| row.get(&limit.output.value).cloned());
    let (flow, port) = (by_line(Some(flow_run)), by_line(port_run));
    let mut report = AgreementReport {
        output: limit.output.value.clone(),
        agreed: 0,
        total,
        differing_lines: vec![],
        sample: vec![],
    };
    for line in 0..total as u64 {
        match (flow.get(&line), port.get(&line)) {
            (Some(f), Some(p)) if gate::same_output(limit.compare, f, p) => report.agreed += 1,
            (f, p) => {
                report.differing_lines.push(line);
                if report.sample.len() < DIFFERING_SHOWN {
                    let value = |v: Option<&Json>| v.cloned().unwrap_or(Json::Null);
                    report.sample.push(DifferingLine { line_number: line, flow: value(f), port: value(p) });
                }
            }
        }
    }
    report
}

/// What `pick` takes from each output row of `run`, by line number (no
/// run, or a row without a line number: nothing).
pub(super) fn outputs_by_line<T>(
    store: &Store,
    run: Option<&str>,
    pick: impl Fn(Map<String, Json>) -> Option<T>,
) -> std::collections::HashMap<u64, T> {
    let rows = run.and_then(|r| store.outputs(r).ok()).unwrap_or_default();
    rows.into_iter().filter_map(|row| Some((row.get("line_number")?.as_u64()?, pick(row)?))).collect()
}

/// Runs one run file under `name`; an evaluation's `run:` is bound to `base`.
fn run_job(
    path: &Path,
    name: &str,
    base: Option<&str>,
    port: Option<&Port>,
    store: &Store,
    runner: &Runner<'_>,
) -> Result<RunRecord, RunFailure> {
    let mut diags = Diagnostics::default();
    let file: Option<RunFile> = run_file::load(path, &mut diags);
    let Some(file) = file else {
        let invalid = JobError::Prepare(exec::prepare::PrepareError::Invalid(diags.into_sorted()));
        return Err(RunFailure::Backend(invalid.into()));
    };
    // A port runs on the flow's data and column mapping, in its own folder.
    let job = Job {
        name: name.to_string(),
        flow: port.map(Port::dir).or_else(|| file.flow_dir()).unwrap_or_else(|| PathBuf::from(".")),
        data: file.local_data(),
        base: base.map(str::to_string).or_else(|| file.run.as_ref().map(|r| r.value.clone())),
        mapping: file.column_mapping.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect(),
        variant: file.variant.as_ref().map(|v| v.value.clone()).filter(|_| port.is_none()),
        run_file: Some(file),
        port: port.cloned(),
    };
    let record = backend::run(&job, store, &runner.opts, &runner.target)?;
    if record.status == RunStatus::Canceled {
        return Err(RunFailure::Canceled);
    }
    Ok(record)
}
