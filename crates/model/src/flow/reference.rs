//! `${...}` references, parsed exactly as promptflow does.
//!
//! Two grammars exist: node inputs / flow outputs (`InputAssignment` in
//! promptflow) and run-file column mappings (`${data.c}`, `${run.outputs.c}`).
//! Both only treat a *whole* string `${...}` as a reference; anything else is a
//! literal (promptflow does no string interpolation).

use serde_json::Value as Json;

/// The value of a node input, an output `reference`, or `activate.when`.
#[derive(Clone, Debug, PartialEq)]
pub enum Assignment {
    Literal(Json),
    /// `${inputs.x}` / `${flow.x}`: the rest is the input name verbatim.
    FlowInput(String),
    /// `${node}`, `${node.output}`, `${node.output.a.b}`, `${node.other}`.
    Node {
        node: String,
        section: String,
        property: String,
    },
}

impl Assignment {
    /// Parses a YAML value. Only strings of the form `${...}` are references.
    pub fn parse(value: &Json) -> Assignment {
        match value {
            Json::String(s) => Self::parse_str(s).unwrap_or_else(|| Assignment::Literal(value.clone())),
            other => Assignment::Literal(other.clone()),
        }
    }

    fn parse_str(s: &str) -> Option<Assignment> {
        let inner = reference_body(s)?;
        for prefix in ["inputs.", "flow."] {
            if let Some(name) = inner.strip_prefix(prefix) {
                return Some(Assignment::FlowInput(name.to_string()));
            }
        }
        let mut parts = inner.splitn(3, '.');
        let node = parts.next().unwrap_or_default().to_string();
        let section = parts.next().unwrap_or("output").to_string();
        let property = parts.next().unwrap_or_default().to_string();
        Some(Assignment::Node { node, section, property })
    }

    /// The node this assignment depends on, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            Assignment::Node { node, .. } => Some(node),
            _ => None,
        }
    }
}

/// The text between `${` and `}` when `s` is a reference as promptflow sees it:
/// starts with `$`, longer than two characters, then `{` ... `}`.
fn reference_body(s: &str) -> Option<&str> {
    if s.len() > 2 && s.starts_with("${") && s.ends_with('}') { Some(&s[2..s.len() - 1]) } else { None }
}

/// One step of a property path: `.key` / `['key']` on dicts, `[3]` on lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

/// Splits a property path like promptflow's regex `(\w+)|(\['.*?'\])|(\[\d+\])`
/// applied with `findall`: anything the regex skips is ignored, so `a.0` is
/// the key "0", not an index.
pub fn property_path(property: &str) -> Vec<PathStep> {
    let mut steps = Vec::new();
    let bytes = property.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &property[i..];
        if is_word(rest.chars().next().unwrap_or(' ')) {
            let len = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
            steps.push(PathStep::Key(rest[..len].to_string()));
            i += len;
        } else if let Some((step, len)) = bracket_step(rest) {
            steps.push(step);
            i += len;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    steps
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn bracket_step(rest: &str) -> Option<(PathStep, usize)> {
    for quote in ['\'', '"'] {
        let open = format!("[{quote}");
        let close = format!("{quote}]");
        if let Some(body) = rest.strip_prefix(&open) {
            let end = body.find(&close)?;
            return Some((PathStep::Key(body[..end].to_string()), open.len() + end + close.len()));
        }
    }
    let body = rest.strip_prefix('[')?;
    let end = body.find(']')?;
    let digits = &body[..end];
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some((PathStep::Index(digits.parse().ok()?), end + 2));
    }
    None
}

/// A run file's `column_mapping` value.
#[derive(Clone, Debug, PartialEq)]
pub enum MappingSource {
    /// `${data.col}`: a column of the run's data file.
    Data(String),
    /// `${run.outputs.col}`: a column of the base run's outputs.
    RunOutputs(String),
    /// `${run.inputs.col}`: a column of the base run's data.
    RunInputs(String),
    /// `${something.else}`: promptflow fails the run; kept for diagnostics.
    Unknown(String),
    Literal(Json),
}

impl MappingSource {
    /// Parses like promptflow's `_apply_inputs_mapping`: the longest known prefix
    /// wins and the remainder is a column name (dots included, no nested access).
    pub fn parse(value: &Json) -> MappingSource {
        let Json::String(s) = value else {
            return MappingSource::Literal(value.clone());
        };
        let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
            return MappingSource::Literal(value.clone());
        };
        if inner.is_empty() || inner.contains(['{', '}']) {
            return MappingSource::Literal(value.clone());
        }
        for (prefix, make) in [
            ("data.", MappingSource::Data as fn(String) -> MappingSource),
            ("run.outputs.", MappingSource::RunOutputs),
            ("run.inputs.", MappingSource::RunInputs),
        ] {
            if let Some(col) = inner.strip_prefix(prefix) {
                return make(col.to_string());
            }
        }
        MappingSource::Unknown(inner.to_string())
    }

    pub fn is_reference(&self) -> bool {
        !matches!(self, MappingSource::Literal(_))
    }

    /// As written in a run file: `${data.c}`, or the literal value.
    pub fn to_json(&self) -> Json {
        match self {
            MappingSource::Literal(v) => v.clone(),
            reference => Json::String(reference.to_string()),
        }
    }
}

impl std::fmt::Display for MappingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MappingSource::Data(c) => write!(f, "${{data.{c}}}"),
            MappingSource::RunOutputs(c) => write!(f, "${{run.outputs.{c}}}"),
            MappingSource::RunInputs(c) => write!(f, "${{run.inputs.{c}}}"),
            MappingSource::Unknown(e) => write!(f, "${{{e}}}"),
            MappingSource::Literal(v) => write!(f, "{v}"),
        }
    }
}

/// `--variant ${node.variant_1}` / run file `variant:` → (node, variant id).
pub fn parse_variant(s: &str) -> Option<(String, String)> {
    let inner = s.strip_prefix("${")?.strip_suffix('}')?;
    let (node, variant) = inner.split_once('.')?;
    if node.is_empty() || variant.is_empty() || node.contains('}') {
        return None;
    }
    Some((node.to_string(), variant.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(n: &str, s: &str, p: &str) -> Assignment {
        Assignment::Node { node: n.into(), section: s.into(), property: p.into() }
    }

    #[test]
    fn assignments_parse_like_promptflow() {
        assert_eq!(Assignment::parse(&json!("${inputs.url}")), Assignment::FlowInput("url".into()));
        assert_eq!(Assignment::parse(&json!("${flow.url}")), Assignment::FlowInput("url".into()));
        assert_eq!(Assignment::parse(&json!("${inputs.a.b}")), Assignment::FlowInput("a.b".into()));
        assert_eq!(Assignment::parse(&json!("${fetch}")), node("fetch", "output", ""));
        assert_eq!(Assignment::parse(&json!("${fetch.output}")), node("fetch", "output", ""));
        assert_eq!(Assignment::parse(&json!("${fetch.output.a.b}")), node("fetch", "output", "a.b"));
        assert_eq!(Assignment::parse(&json!("${fetch.foo}")), node("fetch", "foo", ""));
        // Not references: interpolation, `$x`, `${}` too short, non-strings.
        for literal in [json!("hi ${inputs.x}"), json!("$x"), json!("${"), json!(3), json!(["${inputs.x}"])] {
            assert_eq!(Assignment::parse(&literal), Assignment::Literal(literal.clone()));
        }
    }

    #[test]
    fn property_paths_follow_the_findall_regex() {
        use PathStep::*;
        assert_eq!(property_path("a.b"), vec![Key("a".into()), Key("b".into())]);
        assert_eq!(property_path("a.0"), vec![Key("a".into()), Key("0".into())]);
        assert_eq!(property_path("a[0]['k']"), vec![Key("a".into()), Index(0), Key("k".into())]);
        assert_eq!(property_path("[\"x y\"]"), vec![Key("x y".into())]);
        assert_eq!(property_path(""), vec![]);
    }

    #[test]
    fn mapping_sources_take_the_column_verbatim() {
        assert_eq!(MappingSource::parse(&json!("${data.url}")), MappingSource::Data("url".into()));
        assert_eq!(MappingSource::parse(&json!("${data.a.b}")), MappingSource::Data("a.b".into()));
        assert_eq!(
            MappingSource::parse(&json!("${run.outputs.category}")),
            MappingSource::RunOutputs("category".into())
        );
        assert_eq!(MappingSource::parse(&json!("${run.inputs.url}")), MappingSource::RunInputs("url".into()));
        assert_eq!(MappingSource::parse(&json!("${foo.bar}")), MappingSource::Unknown("foo.bar".into()));
        assert_eq!(MappingSource::parse(&json!("plain")), MappingSource::Literal(json!("plain")));
        assert_eq!(MappingSource::parse(&json!(5)), MappingSource::Literal(json!(5)));
    }

    #[test]
    fn variants_parse() {
        assert_eq!(parse_variant("${summarize.variant_1}"), Some(("summarize".into(), "variant_1".into())));
        assert_eq!(parse_variant("summarize.variant_1"), None);
    }
}
