//! Diagnostics: what is wrong, where (file:line:col), and how to fix it.
//!
//! Every check in flow-ci reports through [`Diagnostic`] so the same finding can
//! be rendered for a terminal, as JSON, or as a GitHub / Azure Pipelines
//! annotation. Codes are stable kebab-case names users can search for.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::yaml::Pos;

macro_rules! codes {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Stable diagnostic codes. Never rename one: users match on them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant),* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name),* }
            }

            /// One sentence on what the code means, for `--help` style listings and docs.
            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => $doc),* }
            }
        }
    };
}

codes! {
    Io => "io-error", "a file could not be read";
    YamlSyntax => "yaml-syntax", "the file is not valid YAML";
    WrongType => "wrong-type", "a value has the wrong YAML type (mapping, list, string, ...)";
    UnknownKey => "unknown-key", "a key promptflow or flow-ci does not know (often a typo)";
    MissingKey => "missing-key", "a required key is absent";
    DuplicateKey => "duplicate-key", "the same key appears twice in one mapping; YAML keeps only one";
    InvalidValue => "invalid-value", "a value outside the allowed set";
    DuplicateNodeName => "duplicate-node-name", "two nodes share a name";
    UnknownInputReference => "unknown-input-reference", "`${inputs.x}` names an input the flow does not declare";
    UnknownNodeReference => "unknown-node-reference", "`${node.output}` names a node the flow does not have";
    UnsupportedReference => "unsupported-reference", "a `${...}` reference promptflow cannot resolve";
    DependencyCycle => "dependency-cycle", "nodes depend on each other in a cycle";
    SourceMissing => "source-missing", "a node's source file does not exist";
    PathOutsideRepo => "path-outside-repo", "a path escapes the repository root";
    IncludeMissing => "include-missing", "an `additional_includes` entry does not exist";
    RequirementsMissing => "requirements-missing", "`environment.python_requirements_txt` names a file that does not exist";
    JinjaSyntax => "jinja-syntax", "a prompt template has a Jinja syntax error";
    PythonNoTool => "python-no-tool", "a python node's file defines no `@tool` function";
    PythonMultipleTools => "python-multiple-tools", "a python node's file defines more than one `@tool` function";
    AggregationReference => "aggregation-reference", "aggregation and line nodes are wired in a way promptflow rejects";
    OutputReferencesAggregation => "output-references-aggregation", "a flow output points at an aggregation node and is dropped by promptflow";
    LogMetricOutsideAggregation => "log-metric-outside-aggregation", "`log_metric` in a non-aggregation node is silently ignored by promptflow";
    VariantNotFound => "variant-not-found", "a variant or its node does not exist";
    RunFlowMissing => "run-flow-missing", "a run file's `flow` is missing or is not a flow folder";
    RunDataMissing => "run-data-missing", "a run file's `data` file does not exist";
    RunSourceMissing => "run-source-missing", "a run file has neither `data` nor `run`";
    InvalidRunName => "invalid-run-name", "a run file's `name` or `run` is not a plain run name (it names a folder of the run store)";
    MappingSource => "mapping-source", "a column mapping reads from a source that is not available";
    MappingUnknownInput => "mapping-unknown-input", "a column mapping sets a key the flow has no input for";
    DataColumnMissing => "data-column-missing", "a column the run needs is absent from the data file";
    DataMalformed => "data-malformed", "a data file line is not valid JSONL/CSV";
    DataEmpty => "data-empty", "a data file has no rows";
    RunOutputMissing => "run-output-missing", "`${run.outputs.x}` names an output the base flow does not have";
    ConnectionNodeMissing => "connection-node-missing", "a run file overrides connections of a node the flow does not have";
    ConfigFlowNotFound => "config-flow-not-found", "a `.flow-ci.yaml` flow path matches no flow folder";
    ConfigRunMissing => "config-run-missing", "a `.flow-ci.yaml` run file does not exist";
    ConnectionUndefined => "connection-undefined", "an llm node's connection is defined nowhere flow-ci looks (`connections:` in .flow-ci.yaml, the environment)";
    ConfigPortMissing => "config-port-missing", "a `.flow-ci.yaml` port's workflow file does not exist or is outside the repository";
    Gate => "invalid-gate", "a gate in `.flow-ci.yaml` is malformed";
    NothingToValidate => "nothing-to-validate", "no flow, run file or config was found at the given path";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding, anchored at a file position.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub file: PathBuf,
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, file: impl Into<PathBuf>, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic { code, severity: Severity::Error, file: file.into(), pos, message: message.into(), hint: None }
    }

    pub fn warning(code: Code, file: impl Into<PathBuf>, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, file, pos, message) }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Collects diagnostics while checks run; checks keep going after an error so
/// users see every problem in one pass.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn last_mut(&mut self) -> Option<&mut Diagnostic> {
        self.items.last_mut()
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorted by file and position, duplicates removed (a run file validated
    /// directly and through `.flow-ci.yaml` reports once).
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| {
            (&a.file, a.pos, a.severity, a.code, &a.message).cmp(&(&b.file, b.pos, b.severity, b.code, &b.message))
        });
        self.items.dedup();
        self.items
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }
}

/// The closest candidate to `word`, for "did you mean" hints.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Transpositions and one-letter slips (`ulr`, `nodse`) by edit distance,
    // longer near-misses by Jaro-Winkler similarity.
    let len = word.chars().count();
    let max_edits = if len < 3 { 0 } else { (len / 3).max(1) };
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| {
            let close = max_edits > 0 && strsim::damerau_levenshtein(word, c) <= max_edits;
            let score = strsim::jaro_winkler(word, c) + if close { 1.0 } else { 0.0 };
            (score, c)
        })
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A path shown relative to `base` when it lies below it; paths always use `/`.
pub fn display_path(path: &Path, base: &Path) -> String {
    let shown = path.strip_prefix(base).unwrap_or(path);
    let text = shown.to_string_lossy().replace('\\', "/");
    text.strip_prefix("./").map(str::to_string).unwrap_or(text)
}

/// `path:line:col: error: message [code]` followed by an indented hint.
pub fn render_human(d: &Diagnostic, base: &Path) -> String {
    let mut out = format!(
        "{}:{}:{}: {}: {} [{}]\n",
        display_path(&d.file, base),
        d.pos.line,
        d.pos.col,
        d.severity.as_str(),
        d.message,
        d.code.as_str()
    );
    if let Some(hint) = &d.hint {
        for (i, line) in hint.lines().enumerate() {
            let lead = if i == 0 { "  hint: " } else { "        " };
            let _ = writeln!(out, "{lead}{line}");
        }
    }
    out
}

/// The JSON form of a diagnostic (`--format json`): a stable, documented shape.
#[derive(Serialize)]
pub struct JsonDiagnostic<'a> {
    pub code: &'static str,
    pub severity: Severity,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'a str>,
}

impl<'a> JsonDiagnostic<'a> {
    pub fn new(d: &'a Diagnostic, base: &Path) -> Self {
        JsonDiagnostic {
            code: d.code.as_str(),
            severity: d.severity,
            file: display_path(&d.file, base),
            line: d.pos.line,
            column: d.pos.col,
            message: &d.message,
            hint: d.hint.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Diagnostic {
        Diagnostic::error(Code::UnknownKey, "flows/a/flow.dag.yaml", Pos::new(3, 5), "unknown key `nodse`")
            .with_hint("did you mean `nodes`?")
    }

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "duplicate code {name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{name}");
            assert!(!code.description().is_empty());
        }
    }

    #[test]
    fn human_rendering_names_file_line_col() {
        let text = render_human(&sample(), Path::new("."));
        assert_eq!(
            text,
            "flows/a/flow.dag.yaml:3:5: error: unknown key `nodse` [unknown-key]\n  hint: did you mean `nodes`?\n"
        );
    }

    #[test]
    fn did_you_mean_finds_close_words_only() {
        assert_eq!(did_you_mean("nodse", ["inputs", "nodes", "outputs"]), Some("nodes"));
        assert_eq!(did_you_mean("ulr", ["url", "text"]), Some("url"));
        assert_eq!(did_you_mean("zzz", ["inputs", "nodes"]), None);
        assert_eq!(did_you_mean("a", ["b", "c"]), None);
    }
}
