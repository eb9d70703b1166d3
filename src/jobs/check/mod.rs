//! `flow-ci check`, the PR job: config (read once) → changed flows → plan →
//! batch and evaluation runs → baseline → gates → one [`Report`] → report
//! files → the CI host's summary and outputs → the sticky PR comment.

mod baseline;
mod diffs;
mod flows;
mod plan;
mod similarity;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::ci::{Host, PullRequest};
use crate::publish::{self, Comment};
use crate::report::{self, Report};
use backend::Target;
use backend::azureml::AzureMlError;
use exec::batch::Progress;
use exec::llm::setup::{LlmFlags, SetupError};
use model::config::Backend;
use model::diag::Diagnostic;

pub use baseline::{BaseData, baseline_document};
pub use plan::{BaselinePlan, Plan, PlannedFlow, conventional_flows};

/// Options of one `check`.
pub struct CheckRequest {
    pub config: Option<PathBuf>,
    pub base: Option<String>,
    pub head: Option<String>,
    /// Check every configured flow, not only changed ones.
    pub all: bool,
    /// Plan and validate only.
    pub dry_run: bool,
    pub runs_dir: PathBuf,
    pub python: exec::pool::Python,
    pub workers: usize,
    pub line_timeout: Duration,
    /// Flows run at once.
    pub parallel: usize,
    /// Why this build has no secrets (a fork's pull request): a flow that
    /// needs a model key it lacks is reported as not run instead of failing.
    pub without_secrets: Option<String>,
    /// `--backend`, over the config's `backend:`.
    pub backend: Option<Backend>,
    /// A flow not run for want of secrets fails the check (`--on-missing-secrets fail`).
    pub fail_not_run: bool,
    /// The LLM flags, over the config's `llm:` and `connections:`.
    pub llm: LlmFlags,
    /// Azure ML: cancel runs still going after this long.
    pub cloud_timeout: Option<Duration>,
}

/// Where the verdict goes besides stdout.
pub struct Publishing {
    pub report_dir: PathBuf,
    /// `--write-baseline`.
    pub write_baseline: Option<PathBuf>,
    /// The CI host the job runs in (its summary, outputs, annotations).
    pub host: Host,
    /// The forge whose pull request gets the comment, if any.
    pub forge: Option<Host>,
    pub pull_request: Option<PullRequest>,
    pub comment_mode: publish::Mode,
    /// A forge was named (`--publish github`): say why no comment was posted.
    pub forge_named: bool,
}

/// What a check ended with.
pub enum Outcome {
    /// `--dry-run`: the plan, nothing run.
    Planned(Plan),
    /// Ctrl-C or SIGTERM: runs were canceled, no reports written.
    Interrupted,
    /// Every planned flow ran (or could not); the reports are written.
    Checked(Report),
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the configuration or flows have errors")]
    Invalid(Vec<Diagnostic>),
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
    #[error(transparent)]
    Git(#[from] crate::detect::git::GitError),
    #[error("{0}")]
    Baseline(String),
    /// Nothing to check where something was expected: not a pass.
    #[error("nothing to check: {0}")]
    NothingToCheck(String),
    #[error(transparent)]
    Llm(#[from] SetupError),
    #[error(transparent)]
    Cloud(#[from] AzureMlError),
    #[error("cannot write reports to {}: {source}", dir.display())]
    Reports { dir: PathBuf, source: std::io::Error },
    /// stdout could not take the console report (a closed pipe is not an error).
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

/// Progress reporter of one run (its name, its number of lines).
pub type ProgressFn<'a> = &'a (dyn Fn(&str, usize) -> Box<dyn Progress> + Sync);

/// Runs the whole check. The plan and progress go to `err`, the console
/// report and CI logging commands to `out`.
pub fn check(
    req: &CheckRequest,
    publishing: &Publishing,
    progress: ProgressFn<'_>,
    cancel: &AtomicBool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, CheckError> {
    let loaded = plan::load_config(req.config.as_deref())?;
    let plan = plan::plan(req, loaded.as_ref())?;
    plan.describe(err);
    let llm = exec::llm::setup::setup(loaded.as_ref().map(|l| &l.config), &req.llm)?;
    // A connection defined nowhere is the change's input: exit 2 before
    // anything runs. A fork's build (no secrets) reports such flows as not run.
    if req.without_secrets.is_none() {
        let undefined = plan::undefined_connections(&plan, &llm.connections);
        if !undefined.is_empty() {
            return Err(CheckError::Invalid(undefined));
        }
    }
    if req.dry_run {
        return Ok(Outcome::Planned(plan));
    }
    let session = match plan.backend {
        Backend::AzureMl if req.without_secrets.is_some() => {
            let _ = writeln!(err, "azureml: flows not run: {}", req.without_secrets.as_deref().unwrap_or_default());
            None
        }
        Backend::AzureMl => Some(super::cloud::connect(&plan.azureml, req.cloud_timeout, false)?),
        Backend::Local => None,
    };
    let target = match &session {
        Some(session) => {
            Target::AzureMl(backend::CloudRun { session, provenance: super::cloud::provenance(), name: None })
        }
        None => Target::Local,
    };
    let mut report = flows::execute(&plan, req, cancel, progress, &llm, target)?;
    let store = exec::store::Store::new(req.runs_dir.clone());
    report::attach_studio_links(&mut report, |run| {
        store.load(run).ok()?.properties.get(PORTAL_URL)?.as_str().map(str::to_string)
    });
    if let Some(loaded) = &loaded {
        report.price(&loaded.config.llm);
    }
    if cancel.load(Ordering::SeqCst) {
        let _ = writeln!(err, "interrupted: runs were canceled; no reports written");
        return Ok(Outcome::Interrupted);
    }
    let context = comment_context(req, &plan, publishing);
    publish_report(&report, &plan, publishing, &store, &context, out, err)?;
    if let Some(push) = loaded.as_ref().and_then(|l| l.config.push_flows.as_ref())
        && publishing.pull_request.is_none()
        && req.without_secrets.is_none()
    {
        let flows: Vec<PathBuf> = plan.flows.iter().map(|f| f.dir.clone()).collect();
        super::push::push_checked(&push.value, &flows, session.as_ref(), &plan.azureml, publishing.host, err);
    }
    Ok(Outcome::Checked(report))
}

/// The run record property holding a cloud run's studio page (written by
/// the Azure ML backend).
const PORTAL_URL: &str = "azureml.portal_url";

/// What the comment says about its origin: the CI run, the commits the
/// baseline and head ran at, and whether the forge draws Mermaid (GitHub
/// does; Azure DevOps pull request comments do not).
fn comment_context(req: &CheckRequest, plan: &Plan, publishing: &Publishing) -> report::CommentContext {
    // GitHub renders Mermaid in comments and in job summaries (changelog
    // 2022-05-09, "Supercharging GitHub Actions with job summaries").
    let github = publishing.forge == Some(Host::GitHubActions) || publishing.host == Host::GitHubActions;
    let compared = match (&plan.baseline, &req.base) {
        (BaselinePlan::BaseBranch, Some(base)) => compared(base, req.head.as_deref()),
        _ => None,
    };
    report::CommentContext {
        ci_run: crate::ci::run_url(publishing.host),
        compared,
        charts: if github { report::Charts::Mermaid } else { report::Charts::Text },
    }
}

/// The merge base and head commits, resolved as the baseline resolves them.
fn compared(base: &str, head: Option<&str>) -> Option<report::Compared> {
    let git = crate::detect::git::Git::open(Path::new(".")).ok()?;
    let head_sha = git.resolve(head.unwrap_or("HEAD")).ok()?;
    let base_sha = git.merge_base(&git.resolve(base).ok()?, &head_sha).ok()?;
    Some(report::Compared { base: base_sha, base_ref: base.to_string(), head: head_sha, working_tree: head.is_none() })
}

/// Runs `plan`'s flows once on this machine with no baseline and no
/// reports: what `init` measures its proposed gates on.
pub fn measure(
    plan: &Plan,
    req: &CheckRequest,
    cancel: &AtomicBool,
    progress: ProgressFn<'_>,
    llm: &exec::llm::LlmSetup,
) -> Result<Report, CheckError> {
    flows::execute(plan, req, cancel, progress, llm, Target::Local)
}

/// Writes the report files, prints the console report, then tells the CI
/// host and the pull request.
fn publish_report(
    report: &Report,
    plan: &Plan,
    publishing: &Publishing,
    store: &exec::store::Store,
    context: &report::CommentContext,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CheckError> {
    let config_id = config_id(plan);
    let marker = publish::marker(config_id.as_deref());
    let markdown = report::markdown_with(report, &marker, context);
    write_reports(report, &markdown, publishing, store)
        .map_err(|source| CheckError::Reports { dir: publishing.report_dir.clone(), source })?;
    out.write_all(report::console(report).as_bytes()).map_err(CheckError::Output)?;
    let _ = writeln!(err, "reports: {}", publishing.report_dir.display());
    let places = gate_places(plan, config_id.as_deref());
    let host_report = crate::ci::output::HostReport {
        report,
        markdown: &markdown,
        report_dir: &publishing.report_dir,
        places: &places,
    };
    crate::ci::output::to_host(publishing.host, &host_report, out, err);
    if let Some(pr) = publishing.forge.and(publishing.pull_request.as_ref()) {
        let comment = Comment { body: &markdown, marker: &marker, passed: report.passed };
        publish::comment_on(pr, &comment, publishing.comment_mode, out, err);
    } else if publishing.forge.is_some() && publishing.forge_named {
        let _ = writeln!(err, "comment: not posted: this build is not for a pull request flow-ci can comment on");
    }
    Ok(())
}

fn write_reports(
    report: &Report,
    markdown: &str,
    publishing: &Publishing,
    store: &exec::store::Store,
) -> std::io::Result<()> {
    let dir = &publishing.report_dir;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.md"), markdown)?;
    for flow in &report.flows {
        if let Some(page) = run_page(flow, &report.baseline, store) {
            std::fs::write(dir.join(run_page_name(&flow.path)), page)?;
        }
    }
    std::fs::write(dir.join("junit.xml"), report::junit(report))?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(report)? + "\n")?;
    if let Some(path) = &publishing.write_baseline {
        std::fs::write(path, serde_json::to_string_pretty(&baseline_document(report))? + "\n")?;
    }
    Ok(())
}

/// The run viewer page of one checked flow: the baseline (its batch run's
/// lines when it ran here, else its metrics) beside the head's batch run.
fn run_page(flow: &report::FlowReport, baseline: &str, store: &exec::store::Store) -> Option<String> {
    let batch = flow.batch_run.as_deref()?;
    let mut head = match crate::jobs::visualize::load(store, batch) {
        Ok(run) => run,
        Err(e) => {
            tracing::warn!("no run viewer page for {}: {e}", flow.path);
            return None;
        }
    };
    // The flow's metrics are its evaluations' (the batch run logs none itself).
    head.metrics.extend(flow.metrics.clone());
    head.label = Some("head".into());
    let mut runs = Vec::new();
    if let Some(metrics) = &flow.baseline {
        let lines = crate::jobs::visualize::outputs_only(&flow.base_outputs);
        runs.push(report::visualize::RunView {
            name: "baseline".into(),
            label: Some(baseline.to_string()),
            status: "Completed".into(),
            flow: flow.path.clone(),
            total: lines.len(),
            completed: lines.len(),
            metrics: metrics.clone(),
            lines,
            ..Default::default()
        });
    }
    runs.push(head);
    let title = match runs.len() {
        1 => format!("flow-ci check: {}", flow.path),
        _ => format!("flow-ci check: {} (head vs {baseline})", flow.path),
    };
    Some(report::visualize::html(&title, &runs))
}

/// `visualize-<flow path>.html` (`visualize-flow.html` for `.`), the path's separators and other
/// characters outside `[A-Za-z0-9._-]` as `-`.
fn run_page_name(flow: &str) -> String {
    let slug: String =
        flow.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    match slug.trim_matches(['-', '.']) {
        "" => "visualize-flow.html".into(),
        slug => format!("visualize-{slug}.html"),
    }
}

/// Each configured gate's line in the config (from the repository root);
/// defaults (failed_lines) have no line and point at the flow.
fn gate_places(plan: &Plan, config_id: Option<&str>) -> crate::ci::output::GatePlaces {
    let Some(config) = config_id else { return Default::default() };
    let mut gates: std::collections::HashMap<_, _> = plan
        .flows
        .iter()
        .flat_map(|f| f.gates.iter().map(move |g| (f, g)))
        .filter(|(_, g)| g.metric.pos != model::yaml::Pos::START)
        .map(|(f, g)| ((f.path.clone(), g.metric.value.clone()), (config.to_string(), g.metric.pos.line)))
        .collect();
    // Parity results are named `parity: <metric>` and `parity: agreement`.
    for flow in &plan.flows {
        let Some(parity) = &flow.parity else { continue };
        let metrics = parity.metrics.iter().map(|g| (g.metric.value.as_str(), g.metric.pos.line));
        let agreement = parity.agreement.iter().map(|a| ("agreement", a.pos.line));
        for (metric, line) in metrics.chain(agreement) {
            gates.insert((flow.path.clone(), crate::gate::parity_name(metric)), (config.to_string(), line));
        }
    }
    let flows_dir = Path::new(config).parent().map(|p| p.to_string_lossy().replace('\\', "/")).unwrap_or_default();
    crate::ci::output::GatePlaces { gates, flows_dir }
}

/// The config's path from the repository root, which tells comments of two
/// configs in one repository apart.
fn config_id(plan: &Plan) -> Option<String> {
    let config = plan.config.as_ref()?.canonicalize().ok()?;
    let root = crate::detect::git::Git::open(Path::new(".")).ok()?.root.canonicalize().ok()?;
    Some(config.strip_prefix(root).ok()?.to_string_lossy().replace('\\', "/"))
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_pages_are_named_after_their_flow() {
        assert_eq!(run_page_name("flows/web-classification"), "visualize-flows-web-classification.html");
        assert_eq!(run_page_name("./a b/../c"), "visualize-a-b-..-c.html");
        assert_eq!(run_page_name("."), "visualize-flow.html");
    }
}
