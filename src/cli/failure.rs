//! How a failure is shown: the error with its position or traceback and a
//! hint, then the exit code it maps to (DESIGN.md's contract).

use std::io::Write;

use crate::jobs::run::RunJobError;
use backend::BackendError;
use exec::job::JobError;
use exec::line::RunError;
use exec::prepare::PrepareError;
use exec::store::StoreError;
use model::exit;

/// Prints why `run create` could not start or finish.
pub fn report_run_job_error(e: &RunJobError, err: &mut dyn Write) -> u8 {
    match e {
        RunJobError::Config(diags) => {
            print_diagnostics(diags, err);
            exit::INVALID_INPUT
        }
        RunJobError::Llm(e) => super::exec_args::report_setup_error(e, err),
        RunJobError::Cloud(e) => super::cloud::report(e, err),
        RunJobError::Run(e) => report_backend_error(e, err),
    }
}

/// Prints why a run on either backend could not start or finish.
pub fn report_backend_error(e: &BackendError, err: &mut dyn Write) -> u8 {
    match e {
        BackendError::Local(e) => report_job_error(e, err),
        BackendError::Cloud(e) => super::cloud::report(e, err),
        BackendError::PortInCloud => {
            let _ = writeln!(err, "error: {e}");
            e.exit_code()
        }
    }
}

/// Prints why a run could not start or finish; returns the exit code.
pub fn report_job_error(e: &JobError, err: &mut dyn Write) -> u8 {
    match e {
        JobError::Prepare(p) => return report_prepare_error(p, err),
        // Code that does not load (syntax, import error, an import that hangs,
        // no single @tool) is the flow's fault: invalid input whatever it raised.
        JobError::Load(r) => {
            report_run_error(r, err);
            return exit::INVALID_INPUT;
        }
        JobError::Store(s) => return store_error(s, err),
        JobError::Data(d) => {
            let _ = writeln!(err, "{}", d.report());
        }
        other => {
            let _ = writeln!(err, "error: {other}");
        }
    }
    e.exit_code()
}

pub fn report_prepare_error(e: &PrepareError, err: &mut dyn Write) -> u8 {
    match e {
        PrepareError::Invalid(diags) => {
            print_diagnostics(diags, err);
            let _ = writeln!(err, "error: the flow has {} error(s); nothing was run", diags.len());
        }
        other => {
            let _ = writeln!(err, "error: {other}");
        }
    }
    exit::INVALID_INPUT
}

/// A failed line: the error, where it was raised, and the traceback.
pub fn report_run_error(e: &RunError, err: &mut dyn Write) -> u8 {
    let _ = writeln!(err, "error: {}: {}", e.kind, e.message);
    if let Some((file, line)) = &e.location {
        let _ = writeln!(err, "  --> {file}:{line}");
    }
    if let Some(tb) = &e.traceback {
        let _ = writeln!(err, "{}", tb.trim_end());
    }
    // Broken user code (syntax, import, no tool) is invalid input; the rest is a failed run.
    if e.kind == "ToolLoadError"
        || e.kind == "InputNotFound"
        || e.kind == "InputTypeError"
        || e.kind == "InputParseError"
    {
        exit::INVALID_INPUT
    } else {
        exit::FAILURE
    }
}

pub fn store_error(e: &StoreError, err: &mut dyn Write) -> u8 {
    let _ = writeln!(err, "error: {e}");
    if let Some(hint) = e.hint() {
        let _ = writeln!(err, "  hint: {hint}");
    }
    e.exit_code()
}

/// Diagnostics as `file:line:col: error: message [code]`, each with its
/// source line, a caret under the span and the hint (colored on a terminal).
pub fn print_diagnostics<'a>(diags: impl IntoIterator<Item = &'a model::diag::Diagnostic>, err: &mut dyn Write) {
    let base = std::env::current_dir().unwrap_or_default();
    let mut human = model::diag::HumanRenderer::new(super::colors(true));
    for d in diags {
        let _ = err.write_all(human.render(d, &base).as_bytes());
    }
}
