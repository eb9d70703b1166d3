//! Flow-input type conversion with promptflow's (that is, Python's) semantics:
//! `ValueType.parse` for `int`, `double`, `bool`, `string`, `list`, `object`,
//! including Python's `str()` of dicts and floats, so a line converts to the
//! same value here as under `pf run create`.

use serde_json::{Number, Value as Json};

/// Why a value does not convert; the caller names the input and the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConvertError {
    /// promptflow's InputTypeError.
    Type,
    /// promptflow's InputParseError (a string that should hold JSON).
    Json,
}

/// Converts `value` to the declared flow input type (lower-case name).
pub fn convert(ty: &str, value: &Json) -> Result<Json, ConvertError> {
    match ty {
        "int" => to_int(value).map(Json::from),
        "double" => to_double(value).map(float_json),
        "bool" => to_bool(value).map(Json::Bool),
        "string" => Ok(Json::String(python_str(value))),
        "list" => match value {
            Json::Array(_) => Ok(value.clone()),
            Json::String(s) => match serde_json::from_str::<Json>(s) {
                Ok(list @ Json::Array(_)) => Ok(list),
                Ok(_) => Err(ConvertError::Type),
                Err(_) => Err(ConvertError::Json),
            },
            _ => Err(ConvertError::Type),
        },
        "object" => match value {
            Json::String(s) => Ok(serde_json::from_str(s).unwrap_or_else(|_| value.clone())),
            other => Ok(other.clone()),
        },
        _ => Ok(value.clone()),
    }
}

/// Python `int(v)`: truncates floats, parses integer strings (with surrounding
/// whitespace and `_` separators), `True` is 1.
fn to_int(value: &Json) -> Result<i64, ConvertError> {
    match value {
        Json::Bool(b) => Ok(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Ok(i),
            None => n.as_f64().filter(|f| f.is_finite()).map(|f| f.trunc() as i64).ok_or(ConvertError::Type),
        },
        Json::String(s) => parse_python_int(s).ok_or(ConvertError::Type),
        _ => Err(ConvertError::Type),
    }
}

fn parse_python_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (sign, digits) = match t.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let valid = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !valid {
        return None;
    }
    digits.replace('_', "").parse::<i64>().ok().map(|v| sign * v)
}

/// Python `float(v)`: `"nan"`, `"inf"`, `"-Infinity"` (any case) and
/// numbers past f64's range (`"1e400"`) are floats too, as promptflow's
/// `ValueType.parse` gives them to the flow (contracts/tool.py, `float(v)`).
fn to_double(value: &Json) -> Result<f64, ConvertError> {
    match value {
        Json::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Json::Number(n) => n.as_f64().ok_or(ConvertError::Type),
        Json::String(s) => s.trim().replace('_', "").parse::<f64>().map_err(|_| ConvertError::Type),
        Json::Object(_) => non_finite(value).ok_or(ConvertError::Type),
        _ => Err(ConvertError::Type),
    }
}

/// `f` as JSON: a number when finite, else the non-finite stand-in.
pub fn float_json(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None => {
            let token = if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            serde_json::json!({ NON_FINITE_KEY: token })
        }
    }
}

/// promptflow's bool: a bool, or the strings "true"/"false" in any case. Not 0/1.
fn to_bool(value: &Json) -> Result<bool, ConvertError> {
    match value {
        Json::Bool(b) => Ok(*b),
        Json::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Json::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ConvertError::Type),
    }
}

/// The key of the in-memory stand-in for a non-finite float: JSON has no
/// NaN or infinity, so flow-ci holds Python's `float("nan")` as
/// `{"__flow_ci_float__": "NaN"}` (the executor reads and writes it as the
/// bare `NaN` token, like Python's `json`).
pub const NON_FINITE_KEY: &str = "__flow_ci_float__";

/// Python's JSON tokens for the non-finite floats.
pub const NON_FINITE_TOKENS: [(&str, f64); 3] =
    [("NaN", f64::NAN), ("Infinity", f64::INFINITY), ("-Infinity", f64::NEG_INFINITY)];

/// The NaN or infinity `v` stands for, when it is the stand-in object.
pub fn non_finite(v: &Json) -> Option<f64> {
    let token = non_finite_token(v)?;
    NON_FINITE_TOKENS.iter().find(|(t, _)| *t == token).map(|(_, f)| *f)
}

/// `NaN`, `Infinity` or `-Infinity` when `v` is the stand-in object.
pub fn non_finite_token(v: &Json) -> Option<&str> {
    let map = v.as_object().filter(|m| m.len() == 1)?;
    map.get(NON_FINITE_KEY)?.as_str().filter(|t| NON_FINITE_TOKENS.iter().any(|(k, _)| k == t))
}

/// Python's `str(v)` for a JSON-shaped value.
pub fn python_str(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => python_repr(other),
    }
}

/// Python's `repr(v)`: `None`, `True`, `'text'`, `[1, 2]`, `{'a': 1.0}`.
pub fn python_repr(value: &Json) -> String {
    match value {
        Json::Null => "None".into(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(u)) => u.to_string(),
            _ => python_float_repr(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => python_str_repr(s),
        Json::Array(items) => format!("[{}]", items.iter().map(python_repr).collect::<Vec<_>>().join(", ")),
        Json::Object(map) => match non_finite(value) {
            Some(f) => python_float_repr(f),
            None => format!(
                "{{{}}}",
                map.iter()
                    .map(|(k, v)| format!("{}: {}", python_str_repr(k), python_repr(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

/// Python float repr: shortest round-trip digits, fixed notation for
/// exponents in [-4, 16), otherwise `1e+16` / `1.5e-05`.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{f:e}"); // shortest round-trip digits, e.g. "-1.5e-5"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat(point.unsigned_abs() as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        format!("{sign}{first}{frac}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// Python string repr: single quotes unless the text has `'` and no `"`.
fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `json.dumps(v)` with its defaults: `", "` and `": "` between
/// items, non-ASCII text as `\uXXXX` (`ensure_ascii=True`), floats as
/// `repr` writes them, NaN and infinities as the bare tokens.
pub fn python_json_dumps(value: &Json) -> String {
    let mut out = String::new();
    write_python_json(value, &mut out);
    out
}

fn write_python_json(value: &Json, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(u)) => out.push_str(&u.to_string()),
            _ => out.push_str(&python_float_repr(n.as_f64().unwrap_or(f64::NAN))),
        },
        Json::String(s) => write_ascii_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            if let Some(token) = non_finite_token(value) {
                out.push_str(token);
                return;
            }
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_ascii_string(k, out);
                out.push_str(": ");
                write_python_json(v, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string as Python's `json` writes it with `ensure_ascii`.
fn write_ascii_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (' '..='~').contains(&c) => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_dumps_as_python_writes_it() {
        // python3 -c 'import json; print(json.dumps({"a": [1, 2.5, None, True], "t": "h\u00e9 \U0001F600\n\"q\"\x01", "f": 1e16}))'
        let value = json!({"a": [1, 2.5, null, true], "t": "hé 😀\n\"q\"\u{1}", "f": 1e16});
        assert_eq!(
            python_json_dumps(&value),
            r#"{"a": [1, 2.5, null, true], "t": "h\u00e9 \ud83d\ude00\n\"q\"\u0001", "f": 1e+16}"#
        );
        assert_eq!(python_json_dumps(&json!({"answer": "\u{e9}"})), r#"{"answer": "\u00e9"}"#);
        assert_eq!(python_json_dumps(&json!({NON_FINITE_KEY: "NaN"})), "NaN");
    }

    #[test]
    fn ints_follow_python_int() {
        assert_eq!(convert("int", &json!("3")), Ok(json!(3)));
        assert_eq!(convert("int", &json!(" 42 ")), Ok(json!(42)));
        assert_eq!(convert("int", &json!("1_000")), Ok(json!(1000)));
        assert_eq!(convert("int", &json!(3.7)), Ok(json!(3)));
        assert_eq!(convert("int", &json!(-3.7)), Ok(json!(-3)));
        assert_eq!(convert("int", &json!(true)), Ok(json!(1)));
        assert_eq!(convert("int", &json!("3.7")), Err(ConvertError::Type));
        assert_eq!(convert("int", &json!(null)), Err(ConvertError::Type));
    }

    #[test]
    fn doubles_and_bools() {
        assert_eq!(convert("double", &json!("2.5")), Ok(json!(2.5)));
        assert_eq!(convert("double", &json!(2)), Ok(json!(2.0)));
        assert_eq!(convert("double", &json!("x")), Err(ConvertError::Type));
        // python3 -c 'print([float(s) for s in ["nan", " -NaN", "inf", "-Infinity", "+INF", "1e400"]])'
        // [nan, nan, inf, -inf, inf, inf]
        let floats = ["nan", " -NaN", "inf", "-Infinity", "+INF", "1e400"].map(|s| convert("double", &json!(s)));
        let tokens = ["NaN", "NaN", "Infinity", "-Infinity", "Infinity", "Infinity"];
        assert_eq!(floats.to_vec(), tokens.map(|t| Ok(json!({NON_FINITE_KEY: t}))).to_vec());
        assert_eq!(convert("double", &json!({NON_FINITE_KEY: "-Infinity"})), Ok(json!({NON_FINITE_KEY: "-Infinity"})));
        assert_eq!(convert("double", &json!("nan x")), Err(ConvertError::Type));
        assert_eq!(convert("double", &json!({"a": 1})), Err(ConvertError::Type));
        assert_eq!(convert("int", &json!("nan")), Err(ConvertError::Type));
        assert_eq!(convert("bool", &json!("TRUE")), Ok(json!(true)));
        assert_eq!(convert("bool", &json!(1)), Err(ConvertError::Type));
        assert_eq!(convert("bool", &json!("yes")), Err(ConvertError::Type));
    }

    #[test]
    fn strings_use_python_str() {
        assert_eq!(convert("string", &json!(true)), Ok(json!("True")));
        assert_eq!(convert("string", &json!(1.0)), Ok(json!("1.0")));
        assert_eq!(convert("string", &json!({"a": 1, "b": "it's"})), Ok(json!("{'a': 1, 'b': \"it's\"}")));
        assert_eq!(convert("string", &json!([null, false])), Ok(json!("[None, False]")));
    }

    #[test]
    fn non_finite_stand_ins_read_like_python_floats() {
        let nan = json!({NON_FINITE_KEY: "NaN"});
        assert!(non_finite(&nan).is_some_and(f64::is_nan));
        assert_eq!(python_repr(&json!([nan, {NON_FINITE_KEY: "-Infinity"}])), "[nan, -inf]");
        // Any other object, even with the key, stays a dict.
        assert_eq!(non_finite(&json!({NON_FINITE_KEY: "nan"})), None);
        assert_eq!(python_repr(&json!({NON_FINITE_KEY: 1})), "{'__flow_ci_float__': 1}");
    }

    #[test]
    fn lists_and_objects_parse_json_strings() {
        assert_eq!(convert("list", &json!("[1, 2]")), Ok(json!([1, 2])));
        assert_eq!(convert("list", &json!("{\"a\": 1}")), Err(ConvertError::Type));
        assert_eq!(convert("list", &json!("[1,")), Err(ConvertError::Json));
        assert_eq!(convert("object", &json!("{\"a\": 1}")), Ok(json!({"a": 1})));
        assert_eq!(convert("object", &json!("not json")), Ok(json!("not json")));
        assert_eq!(convert("object", &json!(5)), Ok(json!(5)));
        assert_eq!(convert("image", &json!("x.png")), Ok(json!("x.png")));
    }

    #[test]
    fn float_repr_matches_python() {
        for (f, text) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789012345.6, "123456789012345.6"),
            (1e15, "1000000000000000.0"),
            (0.0, "0.0"),
            (2.5e-300, "2.5e-300"),
        ] {
            assert_eq!(python_float_repr(f), text, "{f}");
        }
    }
}
