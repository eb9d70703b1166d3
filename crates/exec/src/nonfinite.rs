//! Non-finite floats (NaN, Infinity, -Infinity) in JSON.
//!
//! Python's `json.dumps` writes them as the bare tokens `NaN`, `Infinity`
//! and `-Infinity`, and promptflow keeps them that way in `output.jsonl`
//! (`promptflow/_utils/utils.py::dump_list_to_jsonl`) and `metrics.json`
//! (`promptflow/_sdk/_utilities/general_utils.py::json_dump`), both plain
//! `json.dump`. `serde_json::Value` cannot hold them, so in memory a
//! non-finite float is the one-key object `{"__flow_ci_float__": "NaN"}`;
//! [`parse`] turns the tokens into that object and [`to_text`] writes it back
//! as the token, so the worker protocol and the run store speak Python's JSON.

use std::borrow::Cow;

use model::value::{NON_FINITE_KEY as TAG, NON_FINITE_TOKENS as TOKENS, non_finite_token};
use serde_json::Value as Json;

pub use model::value::non_finite as as_non_finite;

/// The JSON value for `f`: a number when finite, else the stand-in object
/// (the model crate's [`model::value::float_json`], which typed inputs use).
pub fn from_f64(f: f64) -> Json {
    model::value::float_json(f)
}

/// Parses JSON that may hold Python's `NaN`, `Infinity` and `-Infinity`.
pub fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(&tag_tokens(text))
}

/// Replaces the non-finite tokens outside strings with the tagged object.
/// Text without them comes back borrowed.
fn tag_tokens(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let (mut copied, mut i, mut in_string) = (0, 0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'N' | b'I' | b'-' if !in_string => {
                if let Some((token, _)) = TOKENS.iter().find(|(t, _)| text[i..].starts_with(t)) {
                    out.push_str(&text[copied..i]);
                    out.push_str(&format!("{{\"{TAG}\":\"{token}\"}}"));
                    i += token.len();
                    copied = i;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Serializes `value` as compact JSON, writing non-finite floats as Python's tokens.
pub fn to_text<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    to_text_indented(value, "")
}

/// Like [`to_text`], one entry a line, each level indented by `indent`
/// (`"  "` gives `serde_json::to_string_pretty`'s layout); `""` is compact.
pub fn to_text_indented<T: serde::Serialize>(value: &T, indent: &str) -> Result<String, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut out = String::new();
    let layout = (!indent.is_empty()).then_some(Layout { indent, depth: 0 });
    write(&mut out, &value, layout);
    Ok(out)
}

/// Where a pretty writer is: the indent unit and the current level.
#[derive(Clone, Copy)]
struct Layout<'a> {
    indent: &'a str,
    depth: usize,
}

impl Layout<'_> {
    fn deeper(self) -> Self {
        Layout { depth: self.depth + 1, ..self }
    }

    fn newline(self, out: &mut String) {
        out.push('\n');
        out.push_str(&self.indent.repeat(self.depth));
    }
}

/// Writes `v`; `layout` is `None` when compact.
fn write(out: &mut String, v: &Json, layout: Option<Layout<'_>>) {
    if let Some(token) = non_finite_token(v) {
        out.push_str(token);
        return;
    }
    match v {
        Json::Array(items) if !items.is_empty() => {
            write_container(out, ('[', ']'), items.iter().map(|item| (None, item)), layout);
        }
        Json::Object(map) if !map.is_empty() => {
            write_container(out, ('{', '}'), map.iter().map(|(k, v)| (Some(k), v)), layout);
        }
        // Scalars and empty containers: serde_json's own text.
        other => out.push_str(&other.to_string()),
    }
}

fn write_container<'a>(
    out: &mut String,
    (open, close): (char, char),
    entries: impl Iterator<Item = (Option<&'a String>, &'a Json)>,
    layout: Option<Layout<'_>>,
) {
    out.push(open);
    let inner = layout.map(Layout::deeper);
    for (n, (key, value)) in entries.enumerate() {
        if n > 0 {
            out.push(',');
        }
        if let Some(inner) = inner {
            inner.newline(out);
        }
        if let Some(key) = key {
            out.push_str(&Json::from(key.as_str()).to_string());
            out.push_str(if layout.is_some() { ": " } else { ":" });
        }
        write(out, value, inner);
    }
    if let Some(layout) = layout {
        layout.newline(out);
    }
    out.push(close);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    #[test]
    fn python_tokens_round_trip_through_the_tag() {
        let text = r#"{"a":NaN,"b":[Infinity,-Infinity,-1.5],"s":"NaN \"Infinity\" -Infinity","n":null}"#;
        let v: Json = parse(text).unwrap();
        assert!(as_non_finite(&v["a"]).is_some_and(f64::is_nan));
        assert_eq!(as_non_finite(&v["b"][0]), Some(f64::INFINITY));
        assert_eq!(as_non_finite(&v["b"][1]), Some(f64::NEG_INFINITY));
        assert_eq!(v["b"][2], json!(-1.5));
        assert_eq!(v["s"], json!("NaN \"Infinity\" -Infinity"));
        assert_eq!(to_text(&v).unwrap(), text);
    }

    #[test]
    fn pretty_text_matches_serde_json_for_finite_values() {
        let v = json!({"a": [1, {"b": "x\ny"}, []], "c": {}, "d": 0.5});
        assert_eq!(to_text_indented(&v, "  ").unwrap(), serde_json::to_string_pretty(&v).unwrap());
        assert_eq!(to_text(&v).unwrap(), v.to_string());
        let mut m = Map::new();
        m.insert("mean".into(), from_f64(f64::NAN));
        m.insert("max".into(), from_f64(2.0));
        let text = to_text_indented(&m, "  ").unwrap();
        assert!(text.contains("\"mean\": NaN"), "{text}");
        assert_eq!(parse::<Map<String, Json>>(&text).unwrap(), m);
    }

    #[test]
    fn text_without_tokens_is_not_copied() {
        assert!(matches!(tag_tokens(r#"{"x": -1, "y": "NaN"}"#), Cow::Borrowed(_)));
    }
}
