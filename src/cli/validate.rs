//! `flow-ci validate`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Format;
use crate::ci::Host;
use model::diag::{self, JsonDiagnostic};
use model::exit;

/// Check flows, run files and .flow-ci.yaml without running anything.
///
/// Finds every flow folder (flow.dag.yaml), run file (a YAML file with a top-level
/// `flow:` key) and .flow-ci.yaml under the given paths and reports YAML errors,
/// unknown keys, bad `${...}` references, dependency cycles, missing or out-of-repo
/// source files, Jinja syntax errors, python files without one @tool, aggregation
/// misuse, and run files whose flow, data or data columns are missing. Each finding
/// is `path:line:col: error: message [code]`, then the source line with a caret
/// under the span and a hint (colored on a terminal; NO_COLOR=1 turns colors off).
///
/// Exits 2 when any error is found, 0 otherwise (warnings do not fail unless --strict).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  flow-ci validate\n  flow-ci validate flows/web-classification flows/eval/run.yml\n  flow-ci validate --format json fixtures"
)]
pub struct Args {
    /// Flow folders, run files, .flow-ci.yaml files, or folders to search
    #[arg(value_name = "PATH", default_value = ".")]
    pub paths: Vec<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// Treat warnings as errors
    #[arg(long)]
    pub strict: bool,
}

pub fn run(args: Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let outcome = crate::jobs::validate::validate(&args.paths);
    let base = std::env::current_dir().unwrap_or_default();
    let write = match args.format {
        Format::Json => write_json(&outcome, &base, out),
        format => write_text(&outcome, format, &base, out),
    };
    if let Err(e) = write {
        return super::output_failed(&e, err);
    }
    let errors = outcome.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = outcome.diagnostics.len() - errors;
    let _ = writeln!(
        err,
        "validated {} flow(s), {} run file(s), {} config(s): {} error(s), {} warning(s)",
        outcome.flows, outcome.run_files, outcome.configs, errors, warnings
    );
    if errors > 0 || (args.strict && warnings > 0) { exit::INVALID_INPUT } else { exit::OK }
}

fn write_text(
    outcome: &crate::jobs::validate::Outcome,
    format: Format,
    base: &Path,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let host = Host::detect();
    let mut human = diag::HumanRenderer::new(super::colors(false));
    for d in &outcome.diagnostics {
        match format {
            Format::Github => out.write_all(crate::ci::log::render_github(d, base).as_bytes())?,
            Format::Azure => out.write_all(crate::ci::log::render_azure(d, base).as_bytes())?,
            _ => {
                out.write_all(human.render(d, base).as_bytes())?;
                match host {
                    Host::GitHubActions => {
                        out.write_all(crate::ci::log::render_github(d, &annotation_base(base)).as_bytes())?
                    }
                    Host::AzurePipelines => {
                        out.write_all(crate::ci::log::render_azure(d, &annotation_base(base)).as_bytes())?
                    }
                    Host::Local => {}
                }
            }
        }
    }
    Ok(())
}

/// Annotations must name files relative to the repository root, where the
/// CI system shows them on the diff.
fn annotation_base(cwd: &Path) -> PathBuf {
    model::paths::find_repo_root(cwd).unwrap_or_else(|| cwd.to_path_buf())
}

fn write_json(outcome: &crate::jobs::validate::Outcome, base: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    let diagnostics: Vec<JsonDiagnostic<'_>> =
        outcome.diagnostics.iter().map(|d| JsonDiagnostic::new(d, base)).collect();
    let doc = serde_json::json!({
        "flows": outcome.flows,
        "run_files": outcome.run_files,
        "configs": outcome.configs,
        "errors": outcome.diagnostics.iter().filter(|d| d.is_error()).count(),
        "warnings": outcome.diagnostics.iter().filter(|d| !d.is_error()).count(),
        "diagnostics": diagnostics,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
