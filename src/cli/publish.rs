//! What `check` leaves in the CI host and on the pull request: the job
//! summary, annotations, step outputs, and the sticky comment.

use std::io::Write;
use std::path::Path;

use super::check::Publish;
use crate::check::Report;
use crate::ci::{Host, PullRequest, action};
use crate::diag;
use crate::llm::connection::Secret;
use crate::publish::{self, Comment, Outcome};

/// The host whose forge gets the comment, if any.
pub fn forge(publish: Publish, host: Host) -> Option<Host> {
    match publish {
        Publish::Auto => (host != Host::Local).then_some(host),
        Publish::Github => Some(Host::GitHubActions),
        Publish::AzureDevops => Some(Host::AzurePipelines),
        Publish::None => None,
    }
}

pub struct HostReport<'a> {
    pub report: &'a Report,
    pub markdown: &'a str,
    pub report_dir: &'a Path,
}

/// Inside GitHub Actions: an annotation per failed gate, the report as the
/// job summary, and the step outputs. Inside Azure Pipelines: a logged
/// issue per failed gate (the exit code fails the step).
pub fn to_host(host: Host, r: &HostReport<'_>, out: &mut dyn Write, err: &mut dyn Write) {
    let written = match host {
        Host::GitHubActions => github(r, out),
        Host::AzurePipelines => azure(r, out),
        Host::Local => Ok(()),
    };
    if let Err(e) = written {
        let _ = writeln!(err, "warning: cannot write the CI job summary or outputs: {e}");
    }
}

fn failures(report: &Report) -> impl Iterator<Item = (&str, &crate::gate::GateResult)> {
    report.flows.iter().flat_map(|f| f.verdict.failed().map(move |r| (f.path.as_str(), r)))
}

fn github(r: &HostReport<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    for (flow, gate) in failures(r.report) {
        writeln!(
            out,
            "::error file={},title={}::{}",
            diag::github_property(&format!("{flow}/flow.dag.yaml")),
            diag::github_property(&format!("flow-ci gate {}", gate.metric)),
            diag::github_data(&gate.explanation)
        )?;
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        append(Path::new(&summary), r.markdown)?;
    }
    if let Some(outputs) = std::env::var_os("GITHUB_OUTPUT") {
        let values = [
            r.report.passed.to_string(),
            workspace_path(&r.report_dir.join("report.md"))?,
            failures(r.report).count().to_string(),
        ];
        let lines: String =
            action::OUTPUTS.iter().zip(values).map(|(name, value)| format!("{name}={value}\n")).collect();
        append(Path::new(&outputs), &lines)?;
    }
    Ok(())
}

/// A path later steps can open: relative to `$GITHUB_WORKSPACE` when inside
/// it. A container action sees the workspace at /github/workspace, the
/// runner's own steps at another path, and both start in the workspace.
fn workspace_path(path: &Path) -> std::io::Result<String> {
    let absolute = std::path::absolute(path)?;
    let workspace = std::env::var_os("GITHUB_WORKSPACE").and_then(|w| std::fs::canonicalize(w).ok());
    let canonical = absolute.canonicalize().unwrap_or_else(|_| absolute.clone());
    let relative = workspace.as_deref().and_then(|w| canonical.strip_prefix(w).ok());
    Ok(relative.unwrap_or(&absolute).to_string_lossy().into_owned())
}

fn azure(r: &HostReport<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    for (flow, gate) in failures(r.report) {
        writeln!(
            out,
            "##vso[task.logissue type=error;sourcepath={}/flow.dag.yaml;code=gate-failed;]{}: {}",
            diag::azure_escape(flow),
            diag::azure_escape(&gate.metric),
            diag::azure_escape(&gate.explanation)
        )?;
    }
    Ok(())
}

pub fn append(file: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
    f.write_all(text.as_bytes())
}

/// Posts or updates the PR comment. Never changes the exit code: a comment
/// that cannot be posted is one line in the log, the report is still in the
/// job summary and the report files.
pub fn comment(
    pr: &PullRequest,
    markdown: &str,
    marker: &str,
    passed: bool,
    mode: publish::Mode,
    out: &mut dyn Write,
    err: &mut dyn Write,
) {
    let env = |k: &str| std::env::var(k).ok();
    let token = match pr {
        PullRequest::GitHub { .. } => action::github_token(&env),
        PullRequest::AzureDevOps { .. } => env("SYSTEM_ACCESSTOKEN").filter(|t| !t.is_empty()),
    }
    .map(Secret::new);
    let comment = Comment { body: markdown, marker, passed };
    match publish::publish(pr, token.as_ref(), &comment, mode) {
        Ok(Outcome::Created(link)) => {
            let _ = writeln!(err, "comment: created {link}");
        }
        Ok(Outcome::Updated(link)) => {
            let _ = writeln!(err, "comment: updated {link}");
        }
        Ok(Outcome::Skipped(why)) => {
            let _ = writeln!(err, "comment: not posted: {why}");
        }
        Err(e) => {
            let _ = writeln!(err, "warning: comment not posted: {e}");
            if matches!(pr, PullRequest::GitHub { .. }) {
                let _ = writeln!(out, "::warning title=flow-ci comment::{}", diag::github_data(&e.to_string()));
            }
        }
    }
}
