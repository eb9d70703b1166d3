//! What `check` leaves in the CI host itself: an annotation per failed
//! gate, the report as the job summary, and the step outputs.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::{Host, action};
use crate::report::Report;

/// GitHub shows at most 10 error annotations per step and drops the rest.
pub const GITHUB_ANNOTATIONS: usize = 10;

pub struct HostReport<'a> {
    pub report: &'a Report,
    pub markdown: &'a str,
    pub report_dir: &'a Path,
    pub places: &'a GatePlaces,
}

/// Where a failed gate is annotated: files relative to the repository root,
/// which is what GitHub places annotations by.
#[derive(Debug, Default)]
pub struct GatePlaces {
    /// (flow, metric) → (config file, line of the gate in it).
    pub gates: HashMap<(String, String), (String, u32)>,
    /// The folder flow paths are relative to, from the repository root
    /// (the config's folder; empty at the root).
    pub flows_dir: String,
}

impl GatePlaces {
    /// The gate's line in the config, else the flow's flow.dag.yaml.
    fn of(&self, flow: &str, metric: &str) -> (String, Option<u32>) {
        match self.gates.get(&(flow.to_string(), metric.to_string())) {
            Some((file, line)) => (file.clone(), Some(*line)),
            None if self.flows_dir.is_empty() => (format!("{flow}/flow.dag.yaml"), None),
            None => (format!("{}/{flow}/flow.dag.yaml", self.flows_dir), None),
        }
    }
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
    let failed: Vec<_> = failures(r.report).collect();
    for (flow, gate) in failed.iter().take(GITHUB_ANNOTATIONS) {
        let (file, line) = r.places.of(flow, &gate.metric);
        let line = line.map(|l| format!(",line={l}")).unwrap_or_default();
        let command = format!(
            "::error file={}{line},title={}::{}\n",
            super::log::github_property(&file),
            super::log::github_property(&format!("flow-ci gate {} ({flow})", gate.metric)),
            super::log::github_data(&gate.explanation)
        );
        out.write_all(super::guard::command(command).as_bytes())?;
    }
    if failed.len() > GITHUB_ANNOTATIONS {
        let more = failed.len() - GITHUB_ANNOTATIONS;
        writeln!(out, "flow-ci: {more} more failed gate(s); GitHub shows {GITHUB_ANNOTATIONS} annotations per step:")?;
        for (flow, gate) in &failed[GITHUB_ANNOTATIONS..] {
            writeln!(out, "  {flow}: {}: {}", gate.metric, gate.explanation)?;
        }
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        append(Path::new(&summary), r.markdown)?;
    }
    if let Some(outputs) = std::env::var_os("GITHUB_OUTPUT") {
        let values = [
            r.report.passed.to_string(),
            workspace_path(&r.report_dir.join("report.md"))?,
            failures(r.report).count().to_string(),
            r.report.flows.iter().filter(|f| f.not_run.is_some()).count().to_string(),
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
        let line = format!(
            "##vso[task.logissue type=error;sourcepath={}/flow.dag.yaml;code=gate-failed;]{}: {}\n",
            super::log::azure_escape(flow),
            super::log::azure_escape(&gate.metric),
            super::log::azure_escape(&gate.explanation)
        );
        out.write_all(super::guard::command(line).as_bytes())?;
    }
    Ok(())
}

pub fn append(file: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
    f.write_all(text.as_bytes())
}
