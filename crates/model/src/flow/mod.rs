//! promptflow's file formats: `flow.dag.yaml`, run files and `${...}`
//! references, read with positions, plus the checks behind `flow-ci validate`.

pub mod dag;
pub mod dag_check;
pub mod port;
pub mod python;
pub mod reference;
pub mod run_check;
pub mod run_file;
pub mod run_name;
pub mod template;

use std::path::Path;

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::yaml::{self, Pos};

pub use dag::{FLOW_FILE, Flow};
pub use run_file::RunFile;

/// Reads and parses a YAML file, reporting I/O and syntax errors.
pub fn read_yaml(file: &Path, diags: &mut Diagnostics) -> Option<yaml::Node> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            diags.push(Diagnostic::error(Code::Io, file, Pos::START, format!("cannot read file: {e}")));
            return None;
        }
    };
    match yaml::parse(&text) {
        Ok(Some(root)) => Some(root),
        Ok(None) => {
            diags.push(Diagnostic::error(Code::WrongType, file, Pos::START, "the file is empty"));
            None
        }
        Err(e) => {
            diags.push(
                Diagnostic::error(Code::YamlSyntax, file, e.pos, format!("invalid YAML: {}", e.message))
                    .with_hint("check indentation and quoting around this position"),
            );
            None
        }
    }
}
