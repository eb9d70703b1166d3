//! Diagnostics: what is wrong, where (file:line:col), and how to fix it.
//!
//! Every check in flow-ci reports through [`Diagnostic`] so the same finding can
//! be rendered for a terminal, as JSON, or as a GitHub / Azure Pipelines
//! annotation. Codes are stable kebab-case names users can search for.

use std::collections::HashMap;
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

/// Renders diagnostics for people, as ruff does: the
/// `path:line:col: error: message [code]` line (what editors, CI log
/// viewers and grep read), then the source line with a caret under the span
/// and the hint; colored (ANSI) when `color`. Each file is read once.
pub struct HumanRenderer {
    color: bool,
    sources: HashMap<PathBuf, Option<Source>>,
}

/// A file's text and where each line starts.
struct Source {
    text: String,
    starts: Vec<usize>,
}

impl Source {
    fn line(&self, line: u32) -> Option<&str> {
        let i = usize::try_from(line).ok()?.checked_sub(1)?;
        let start = *self.starts.get(i)?;
        let end = self.starts.get(i + 1).copied().unwrap_or(self.text.len());
        Some(self.text[start..end].trim_end_matches(['\n', '\r']))
    }
}

/// Files larger than this get no snippet (a data file of gigabytes is not
/// read again to show one line).
const MAX_SOURCE_BYTES: u64 = 16 << 20;

/// Lines longer than this get no snippet (a JSONL row, minified JSON).
const MAX_LINE_CHARS: usize = 400;

const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[1;91m";
const YELLOW: &str = "\x1b[1;93m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

impl HumanRenderer {
    pub fn new(color: bool) -> Self {
        HumanRenderer { color, sources: HashMap::new() }
    }

    pub fn render(&mut self, d: &Diagnostic, base: &Path) -> String {
        let mut out = self.header(d, base);
        let line = self.source(&d.file).and_then(|s| s.line(d.pos.line)).map(str::to_string);
        match line.filter(|l| !l.trim().is_empty() && l.chars().count() <= MAX_LINE_CHARS) {
            Some(line) => out.push_str(&self.snippet(d, &line)),
            None => {
                if let Some(hint) = &d.hint {
                    for (i, line) in hint.lines().enumerate() {
                        let lead = if i == 0 { "  hint: " } else { "        " };
                        let _ = writeln!(out, "{lead}{line}");
                    }
                }
            }
        }
        out
    }

    fn header(&self, d: &Diagnostic, base: &Path) -> String {
        let (path, severity) = (display_path(&d.file, base), d.severity.as_str());
        let (line, col, code) = (d.pos.line, d.pos.col, d.code.as_str());
        if !self.color {
            return format!("{path}:{line}:{col}: {severity}: {} [{code}]\n", d.message);
        }
        let level = if d.is_error() { RED } else { YELLOW };
        format!(
            "{BOLD}{path}:{line}:{col}:{RESET} {level}{severity}{RESET}: {BOLD}{}{RESET} {DIM}[{code}]{RESET}\n",
            d.message
        )
    }

    /// The line, a caret under the span, and the hint, by annotate-snippets
    /// with the header left out (it is [`Self::header`]).
    fn snippet(&self, d: &Diagnostic, line: &str) -> String {
        use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
        let span = token_span(line, d.pos.col);
        let level = if d.is_error() { Level::ERROR } else { Level::WARNING };
        let mut group = Group::with_level(level).element(
            Snippet::source(line)
                .line_start(usize::try_from(d.pos.line).unwrap_or(usize::MAX))
                .fold(false)
                .annotation(AnnotationKind::Primary.span(span)),
        );
        if let Some(hint) = &d.hint {
            group = group.element(Level::HELP.with_name("hint").message(hint.as_str()));
        }
        let renderer = if self.color { Renderer::styled() } else { Renderer::plain() };
        let mut text = renderer.render(&[group]);
        text.push('\n');
        text
    }

    fn source(&mut self, file: &Path) -> Option<&Source> {
        self.sources
            .entry(file.to_path_buf())
            .or_insert_with(|| {
                let size = std::fs::metadata(file).ok().filter(|m| m.is_file())?.len();
                if size > MAX_SOURCE_BYTES {
                    return None;
                }
                let text = std::fs::read_to_string(file).ok()?;
                let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
                Some(Source { text, starts })
            })
            .as_ref()
    }
}

/// The bytes of `line` a diagnostic at column `col` (1-based, in characters)
/// is about: the YAML key or scalar there (a quoted string with its quotes, a
/// `{...}`/`[...]` on the line), else the word.
fn token_span(line: &str, col: u32) -> std::ops::Range<usize> {
    let at =
        line.char_indices().nth(usize::try_from(col).unwrap_or(1).saturating_sub(1)).map_or(line.len(), |(i, _)| i);
    // A position at the indentation (column 1 of an indented line) is about the line.
    let start = at + (line[at..].len() - line[at..].trim_start().len());
    if start > at {
        return start..start + line[start..].trim_end().len();
    }
    let rest = &line[start..];
    let Some(first) = rest.chars().next() else { return start..start };
    let len = match first {
        '"' | '\'' => rest[1..].find(first).map_or(rest.len(), |i| i + 2),
        '{' | '[' => {
            let close = if first == '{' { '}' } else { ']' };
            let mut depth = 0usize;
            rest.char_indices()
                .find_map(|(i, c)| {
                    if c == first {
                        depth += 1;
                    } else if c == close {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    None
                })
                .unwrap_or(1)
        }
        _ => {
            let bytes = rest.as_bytes();
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                let next = bytes.get(i + 1).copied();
                let ends = match c {
                    ',' | '}' | ']' => true,
                    ':' => next.is_none_or(|b| b == b' ' || b == b'\t'),
                    '#' => i > 0 && bytes[i - 1].is_ascii_whitespace(),
                    _ => false,
                };
                if ends {
                    end = i;
                    break;
                }
            }
            rest[..end].trim_end().len().max(first.len_utf8())
        }
    };
    start..start + len
}

/// One diagnostic as [`HumanRenderer`] shows it without colors.
pub fn render_human(d: &Diagnostic, base: &Path) -> String {
    HumanRenderer::new(false).render(d, base)
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
        // Without the file there is no snippet: the line and the hint.
        let text = render_human(&sample(), Path::new("."));
        assert_eq!(
            text,
            "flows/a/flow.dag.yaml:3:5: error: unknown key `nodse` [unknown-key]\n  hint: did you mean `nodes`?\n"
        );
    }

    fn write_flow(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flow.dag.yaml");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    #[test]
    fn the_source_line_with_a_caret_under_the_key_and_the_hint() {
        let (dir, file) = write_flow("inputs:\n  text: {type: string}\nnodse:\n- name: a\n");
        let d = Diagnostic::error(Code::UnknownKey, &file, Pos::new(3, 1), "unknown key `nodse`")
            .with_hint("did you mean `nodes`?");
        let text = HumanRenderer::new(false).render(&d, dir.path());
        assert_eq!(
            text,
            "flow.dag.yaml:3:1: error: unknown key `nodse` [unknown-key]\n  |\n3 | nodse:\n  | ^^^^^\n  |\n  = hint: did you mean `nodes`?\n"
        );
        let colored = HumanRenderer::new(true).render(&d, dir.path());
        assert!(colored.contains("\x1b[1;91merror\x1b[0m"), "{colored:?}");
        let no_ansi: String = strip_ansi(&colored);
        assert_eq!(no_ansi, text, "colors only, the same text");
        assert!(!text.contains('\x1b'));
    }

    fn strip_ansi(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn a_warning_without_a_hint_and_lines_that_get_no_snippet() {
        let (dir, file) = write_flow(&format!("a: 1\n\nlong: {}\n", "x".repeat(500)));
        let warning = Diagnostic::warning(Code::InvalidValue, &file, Pos::new(1, 4), "one");
        assert_eq!(
            HumanRenderer::new(false).render(&warning, dir.path()),
            "flow.dag.yaml:1:4: warning: one [invalid-value]\n  |\n1 | a: 1\n  |    ^\n"
        );
        for pos in [Pos::new(2, 1), Pos::new(3, 7), Pos::new(9, 1)] {
            let d = Diagnostic::error(Code::InvalidValue, &file, pos, "m").with_hint("h");
            assert_eq!(
                HumanRenderer::new(false).render(&d, dir.path()),
                format!("flow.dag.yaml:{}:{}: error: m [invalid-value]\n  hint: h\n", pos.line, pos.col),
                "{pos:?}: an empty, long or missing line"
            );
        }
    }

    #[test]
    fn the_span_is_the_yaml_token_at_the_column() {
        fn span(line: &str, col: u32) -> &str {
            &line[token_span(line, col)]
        }
        assert_eq!(span("  - path: flows/*", 11), "flows/*");
        assert_eq!(span("    gate:", 5), "gate");
        assert_eq!(span("    gates: { acc: { mni: 1 } }", 12), "{ acc: { mni: 1 } }");
        assert_eq!(span("    gates: { acc: { mni: 1 } }", 21), "mni");
        assert_eq!(span("x: { a: 1, b: 2 }", 12), "b");
        assert_eq!(span("name: 'it''s here' # c", 7), "'it'");
        assert_eq!(span("  text: \"a: b\"", 9), "\"a: b\"");
        assert_eq!(span("url: http://x:80/p # c", 6), "http://x:80/p");
        assert_eq!(span("    log_metric(\"n\", 1)", 1), "log_metric(\"n\", 1)", "the line, from its indentation");
        assert_eq!(span("{\"text\": \"two\",}", 15), ",");
        assert_eq!(span("{\"text\": \"two\",}", 16), "}");
        assert_eq!(span("name: café au lait", 7), "café au lait");
        assert_eq!(span("é: x", 4), "x", "columns count characters, not bytes");
        assert_eq!(span("a: 1", 40), "", "past the end: an empty span at the end");
    }

    #[test]
    fn did_you_mean_finds_close_words_only() {
        assert_eq!(did_you_mean("nodse", ["inputs", "nodes", "outputs"]), Some("nodes"));
        assert_eq!(did_you_mean("ulr", ["url", "text"]), Some("url"));
        assert_eq!(did_you_mean("zzz", ["inputs", "nodes"]), None);
        assert_eq!(did_you_mean("a", ["b", "c"]), None);
    }
}
