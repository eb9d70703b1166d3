//! A YAML tree that remembers where every key and value came from.
//!
//! promptflow users write `flow.dag.yaml` and run files by hand, so every
//! diagnostic must point at a line and column. serde-based YAML crates lose
//! positions of valid values and stop at the first error; this module builds an
//! owned tree from the parser's spanned events instead, keeps duplicate keys
//! (so they can be reported rather than silently dropped) and resolves scalars
//! with the YAML 1.2 core schema, like promptflow's ruamel loader.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };

    pub fn new(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }

    fn from_span(span: Span) -> Pos {
        Pos {
            line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
            col: u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A value together with the position it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Spanned<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Spanned { value, pos }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// One YAML node and its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// YAML content. Mappings keep document order and duplicate keys.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The YAML type name used in messages ("expected a mapping, found a string").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The key text of a mapping key; non-string keys (`1:`, `true:`) are shown as YAML wrote them.
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            other => scalar_text(other).unwrap_or_else(|| other.kind().to_string()),
        }
    }

    /// Looks up a key in a mapping node (first occurrence).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// Converts to JSON the way Python's YAML loaders hand values to promptflow.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|(k, v)| (k.key_text(), v.to_json())).collect()),
        }
    }
}

/// Scalars rendered back to text, e.g. for a `tags:` value written as a number.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Str(s) => Some(s.clone()),
        Value::Seq(_) | Value::Map(_) => None,
    }
}

/// A YAML syntax error with its position.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses the first document of `text`. An empty document yields `Ok(None)`.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut builder = TreeBuilder::default();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError {
            pos: Pos::new(
                u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
                u32::try_from(e.marker().col() + 1).unwrap_or(u32::MAX),
            ),
            message: e.info().to_string(),
        })?;
        if builder.on_event(event, span)? {
            break;
        }
    }
    Ok(builder.root)
}

/// Folds parser events into nodes. Containers under construction live on a stack.
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Partial>,
    /// Anchored nodes with their size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    /// Nodes built so far, aliases counted at their expanded size.
    nodes: usize,
}

/// Aliases are expanded by copying; this bound stops "billion laughs"
/// documents from exhausting memory.
const MAX_NODES: usize = 1_000_000;

/// Collections nested deeper than this are refused: every later step
/// (decoding, conversion to JSON, even dropping the tree) recurses once per
/// level, and 200,000 nested `- ` overflowed the stack. promptflow's own
/// files nest fewer than 20 levels.
pub const MAX_DEPTH: usize = 100;

fn size(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(k, v)| size(k) + size(v)).sum::<usize>(),
        _ => 1,
    }
}

enum Partial {
    Seq { pos: Pos, anchor: usize, items: Vec<Node> },
    Map { pos: Pos, anchor: usize, entries: Vec<(Node, Node)>, key: Option<Node> },
}

impl TreeBuilder {
    /// Returns `Ok(true)` once the first document is complete.
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<bool, SyntaxError> {
        let pos = Pos::from_span(span);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(text, style, tag.as_ref());
                self.push(Node { pos, value }, anchor);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                return Err(SyntaxError {
                    pos,
                    message: format!("collections nested more than {MAX_DEPTH} levels deep"),
                });
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Partial::Seq { pos, anchor, items: vec![] }),
            Event::MappingStart(anchor, _) => self.stack.push(Partial::Map { pos, anchor, entries: vec![], key: None }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Partial::Seq { pos, anchor, items }) => (Node { pos, value: Value::Seq(items) }, anchor),
                    Some(Partial::Map { pos, anchor, entries, .. }) => {
                        (Node { pos, value: Value::Map(entries) }, anchor)
                    }
                    None => {
                        return Err(SyntaxError { pos, message: "unbalanced collection end".into() });
                    }
                };
                self.push(node, anchor);
            }
            Event::Alias(id) => {
                let (node, n) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| SyntaxError { pos, message: "alias refers to an unknown anchor".into() })?;
                self.nodes += n;
                if self.nodes > MAX_NODES {
                    return Err(SyntaxError { pos, message: "document too large once aliases are expanded".into() });
                }
                self.push(Node { pos, ..node }, 0);
            }
            Event::DocumentEnd => return Ok(self.root.is_some() || self.stack.is_empty()),
            Event::StreamEnd => return Ok(true),
            Event::Nothing | Event::StreamStart | Event::DocumentStart(_) => {}
        }
        Ok(false)
    }

    fn push(&mut self, node: Node, anchor: usize) {
        self.nodes += 1;
        if anchor != 0 {
            let n = size(&node);
            self.anchors.insert(anchor, (node.clone(), n));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Partial::Seq { items, .. }) => items.push(node),
            Some(Partial::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

fn resolve_scalar(text: Cow<'_, str>, style: ScalarStyle, tag: Option<&Cow<'_, saphyr_parser::Tag>>) -> Value {
    match Scalar::parse_from_cow_and_metadata(text.clone(), style, tag) {
        Some(Scalar::Null) => Value::Null,
        Some(Scalar::Boolean(b)) => Value::Bool(b),
        Some(Scalar::Integer(i)) => Value::Int(i),
        Some(Scalar::FloatingPoint(f)) => Value::Float(f.into_inner()),
        Some(Scalar::String(s)) => Value::Str(s.into_owned()),
        // A tag the core schema cannot honour (`!!int abc`): keep the text.
        None => Value::Str(text.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_point_at_keys_and_values() {
        let doc = parse("inputs:\n  url:\n    type: string\nnodes:\n- name: a\n").unwrap().unwrap();
        let map = doc.as_map().unwrap();
        assert_eq!(map[0].0.pos, Pos::new(1, 1));
        let url_type = doc.get("inputs").unwrap().get("url").unwrap().get("type").unwrap();
        assert_eq!(url_type.pos, Pos::new(3, 11));
        assert_eq!(url_type.as_str(), Some("string"));
        let nodes = doc.get("nodes").unwrap();
        let Value::Seq(items) = &nodes.value else { panic!() };
        assert_eq!(items[0].get("name").unwrap().pos, Pos::new(5, 9));
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let doc = parse("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: on\ng: 0x10\n").unwrap().unwrap();
        assert_eq!(doc.get("a").unwrap().value, Value::Int(1));
        assert_eq!(doc.get("b").unwrap().value, Value::Float(1.5));
        assert_eq!(doc.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(doc.get("d").unwrap().value, Value::Null);
        assert_eq!(doc.get("e").unwrap().value, Value::Str("1".into()));
        assert_eq!(doc.get("f").unwrap().value, Value::Str("on".into()));
        assert_eq!(doc.get("g").unwrap().value, Value::Int(16));
    }

    #[test]
    fn duplicate_keys_are_kept() {
        let doc = parse("a: 1\na: 2\n").unwrap().unwrap();
        assert_eq!(doc.as_map().unwrap().len(), 2);
    }

    #[test]
    fn anchors_and_aliases_resolve() {
        let doc = parse("base: &b {x: 1}\nother: *b\n").unwrap().unwrap();
        assert_eq!(doc.get("other").unwrap().get("x").unwrap().value, Value::Int(1));
    }

    #[test]
    fn syntax_errors_carry_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        let err = parse("a:\n  - b\n c: d\n").unwrap_err();
        assert_eq!(err.pos.line, 3);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = i - 1;
            doc.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("too large"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused_where_the_limit_is_passed() {
        let deep = "- ".repeat(200_000) + "x\n";
        let err = parse(&deep).unwrap_err();
        assert_eq!(err.pos, Pos::new(1, 2 * MAX_DEPTH as u32 + 1), "{err:?}");
        assert!(err.message.contains("nested more than"), "{err:?}");
        let ok = "- ".repeat(MAX_DEPTH) + "x\n";
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn empty_document_is_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }
}
