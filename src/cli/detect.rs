//! `flow-ci detect`.

use std::io::Write;
use std::path::PathBuf;

use crate::detect::{Detection, Reason, Request};
use model::exit;

/// List the flows a change touches, following their dependencies.
///
/// Compares the merge base of BASE and HEAD with HEAD (or, without --head, with the
/// working tree, uncommitted and untracked files included). A flow is selected when
/// files in its folder change, or its additional_includes, node sources outside the
/// folder, run files and data named in .flow-ci.yaml, or an evaluation flow it is
/// evaluated with; a change to .flow-ci.yaml selects every flow. Flows whose
/// flow.dag.yaml was deleted are listed as removed.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  flow-ci detect --base origin/main\n  flow-ci detect --base main --head HEAD --format json\n\nIn a shallow clone the base may be missing: check out with `fetch-depth: 0`."
)]
pub struct Args {
    /// The branch or commit the change is compared with (e.g. origin/main)
    #[arg(long, value_name = "REF")]
    pub base: String,

    /// The commit with the change [default: the working tree]
    #[arg(long, value_name = "REF")]
    pub head: Option<String>,

    /// The .flow-ci.yaml to read [default: ./.flow-ci.yaml, else the repository root's]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = DetectFormat::Text)]
    pub format: DetectFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DetectFormat {
    Text,
    Json,
}

pub fn run(args: Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let req = Request { dir: PathBuf::from("."), base: args.base, head: args.head, config: args.config };
    let detection = match crate::detect::detect(&req) {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            if let Some(hint) = e.hint() {
                let _ = writeln!(err, "  hint: {hint}");
            }
            return exit::INVALID_INPUT;
        }
    };
    let written = match args.format {
        DetectFormat::Json => serde_json::to_writer_pretty(&mut *out, &detection)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        DetectFormat::Text => out.write_all(render_text(&detection).as_bytes()),
    };
    match written {
        Ok(()) => exit::OK,
        Err(e) => super::output_failed(&e, err),
    }
}

/// At most this many files are listed per reason; the rest are counted.
const FILES_SHOWN: usize = 5;

pub fn render_text(d: &Detection) -> String {
    let head = d.head.as_deref().map_or_else(|| "working tree".to_string(), short);
    let mut text = format!(
        "{} of {} flow(s) changed, {} removed ({} file(s) changed between {} ({}) and {})\n",
        d.flows.len(),
        d.total_flows,
        d.removed.len(),
        d.changed_files,
        d.base,
        short(&d.merge_base),
        head
    );
    for flow in &d.flows {
        text.push_str(&format!("{}\n", flow.path));
        for reason in &flow.reasons {
            text.push_str(&format!("  - {}\n", describe(reason)));
        }
    }
    for removed in &d.removed {
        text.push_str(&format!("{removed}\n  - removed\n"));
    }
    text
}

fn short(sha: &str) -> String {
    sha.chars().take(10).collect()
}

fn describe(reason: &Reason) -> String {
    match reason {
        Reason::Added => "new flow".into(),
        Reason::Renamed { from } => format!("moved from {from}"),
        Reason::Files { files } => format!("changed: {}", list(files)),
        Reason::Include { files } => format!("additional include changed: {}", list(files)),
        Reason::SharedSource { files } => format!("shared source changed: {}", list(files)),
        Reason::RunFile { files } => format!("run file or data changed: {}", list(files)),
        Reason::Evaluation { flow } => format!("evaluation flow changed: {flow}"),
        Reason::Port { files } => format!("its port changed: {}", list(files)),
        Reason::Config { file } => format!("config changed: {file}"),
    }
}

fn list(files: &[String]) -> String {
    let mut shown = files.iter().take(FILES_SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if files.len() > FILES_SHOWN {
        shown.push_str(&format!(" and {} more", files.len() - FILES_SHOWN));
    }
    shown
}
