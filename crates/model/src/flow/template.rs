//! Jinja templates of `prompt` and `llm` nodes.
//!
//! promptflow renders with Jinja2 `trim_blocks=True, keep_trailing_newline=True`
//! and lenient undefined variables; the same settings are used here so a
//! template that parses for flow-ci parses for promptflow.

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, Output, State, Value};

/// A Jinja environment configured like promptflow's `render_jinja_template`:
/// `trim_blocks`, `keep_trailing_newline`, lenient undefined, Python's string
/// and dict methods, and values printed the way Python's `str()` prints them
/// (`True`, `None`, `{'a': 1}`), so prompts come out byte for byte the same.
pub fn environment() -> Environment<'static> {
    environment_with(ListStyle::Python)
}

/// How a list prints in `{{ value }}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStyle {
    /// Python's `str(list)`: `['a', 'b']` (prompt nodes, OpenAI chat).
    Python,
    /// promptflow's `ChatInputList` (Azure OpenAI chat): items joined by newlines.
    ChatLines,
}

/// The most instructions one render may run. A render cannot be interrupted
/// from outside (not by `--line-timeout`, not by SIGTERM), so it is bounded
/// here: three nested `range(10000)` loops ran for 9 minutes before. Real
/// prompts use a few thousand; this many take about half a second (release).
pub const RENDER_FUEL: u64 = 20_000_000;

pub fn environment_with(lists: ListStyle) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(RENDER_FUEL));
    match SyntaxConfig::builder().trim_blocks(true).keep_trailing_newline(true).build() {
        Ok(syntax) => env.set_syntax(syntax),
        // The builder only fails on custom delimiters, which are not set here.
        Err(e) => tracing::warn!("jinja syntax configuration rejected: {e}"),
    }
    minijinja_contrib::add_to_environment(&mut env);
    env.add_filter("truncate", truncate);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    match lists {
        ListStyle::Python => env.set_formatter(python_formatter),
        ListStyle::ChatLines => env.set_formatter(chat_lines_formatter),
    }
    env
}

/// Jinja2's `truncate(s, length=255, killwords=False, end='...', leeway=5)`,
/// positional or keyword (minijinja-contrib's takes keywords only).
fn truncate(
    value: &Value,
    args: minijinja::value::Rest<Value>,
    kwargs: minijinja::value::Kwargs,
) -> Result<String, Error> {
    let arg = |i: usize, name: &str| -> Result<Option<Value>, Error> {
        Ok(match args.get(i) {
            Some(v) => Some(v.clone()),
            None => kwargs.get::<Option<Value>>(name)?,
        })
    };
    let length = arg(0, "length")?.and_then(|v| usize::try_from(v).ok()).unwrap_or(255);
    let killwords = arg(1, "killwords")?.is_some_and(|v| v.is_true());
    let end = arg(2, "end")?.map_or_else(|| "...".to_string(), |v| v.to_string());
    let leeway = arg(3, "leeway")?.and_then(|v| usize::try_from(v).ok()).unwrap_or(5);
    kwargs.assert_all_used()?;
    let text = value.as_str().map_or_else(|| value.to_string(), str::to_string);
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= length + leeway {
        return Ok(text);
    }
    let keep: String = chars[..length.saturating_sub(end.chars().count())].iter().collect();
    let kept = if killwords { keep } else { keep.rsplit_once(' ').map_or(keep.clone(), |(head, _)| head.to_string()) };
    Ok(kept + &end)
}

fn python_formatter(out: &mut Output<'_>, _state: &mut State<'_, '_>, value: &Value) -> Result<(), Error> {
    format_with(out, value, crate::value::python_str)
}

fn chat_lines_formatter(out: &mut Output<'_>, _state: &mut State<'_, '_>, value: &Value) -> Result<(), Error> {
    format_with(out, value, chat_list_str)
}

fn format_with(out: &mut Output<'_>, value: &Value, to_str: fn(&serde_json::Value) -> String) -> Result<(), Error> {
    if value.is_undefined() {
        return Ok(());
    }
    let text = match value.as_str() {
        Some(s) => s.to_string(),
        None => {
            let json =
                serde_json::to_value(value).map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?;
            to_str(&json)
        }
    };
    out.write_str(&text).map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
}

/// `str(ChatInputList)`: `"\n".join(map(str, items))`, recursively for nested
/// lists (dict values stay Python reprs, as `repr` ignores the subclass).
pub fn chat_list_str(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(items) => items.iter().map(chat_list_str).collect::<Vec<_>>().join("\n"),
        other => crate::value::python_str(other),
    }
}

/// Renders `source` with `vars`, as promptflow's prompt tool does.
pub fn render(source: &str, vars: &serde_json::Map<String, serde_json::Value>) -> Result<String, String> {
    render_with(source, vars, ListStyle::Python)
}

pub fn render_with(
    source: &str,
    vars: &serde_json::Map<String, serde_json::Value>,
    lists: ListStyle,
) -> Result<String, String> {
    let env = environment_with(lists);
    let template = env.template_from_str(source).map_err(|e| describe(&e))?;
    template.render(Value::from(minijinja::value::Serde(vars))).map_err(|e| describe(&e))
}

/// The variables a template reads (jinja2 `meta.find_undeclared_variables`).
pub fn variables(source: &str) -> Vec<String> {
    let env = environment();
    let mut names: Vec<String> =
        env.template_from_str(source).map(|t| t.undeclared_variables(false).into_iter().collect()).unwrap_or_default();
    names.sort();
    names
}

/// "undefined value: ..."-style text for a render failure.
fn describe(e: &Error) -> String {
    if e.kind() == ErrorKind::OutOfFuel {
        return format!(
            "the template ran out of fuel: it runs more than {RENDER_FUEL} instructions (a loop over a huge range?)"
        );
    }
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// A template syntax error, positioned inside the template file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// Parses `source` without rendering it.
pub fn check_syntax(source: &str) -> Result<(), TemplateError> {
    let env = environment();
    let err = match env.template_from_str(source) {
        Ok(_) => return Ok(()),
        Err(err) => err,
    };
    let (line, col) = match err.range() {
        Some(range) => line_col(source, range.start),
        None => (err.line().unwrap_or(1), 1),
    };
    let message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    Err(TemplateError {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col).unwrap_or(u32::MAX),
        message,
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_templates_pass() {
        let src = "# system:\nYou classify.\n{% for ex in examples %}\n{{ ex.text | trim }}\n{% endfor %}\n# user:\n{{ text }}\n";
        assert_eq!(check_syntax(src), Ok(()));
    }

    #[test]
    fn errors_point_into_the_template() {
        let err = check_syntax("line one\n{% for x in xs %}\n{{ x }\n").unwrap_err();
        assert_eq!(err.line, 3, "{err:?}");
        assert!(err.message.contains("syntax error"), "{err:?}");
        let err = check_syntax("a\nb\n{% if x %}\nno end\n").unwrap_err();
        assert!(err.line >= 3, "{err:?}");
    }

    #[test]
    fn truncate_matches_jinja2() {
        let vars = serde_json::json!({"s": "the quick brown fox jumps over the lazy dog"});
        let vars = vars.as_object().unwrap();
        assert_eq!(render("{{ s | truncate(20) }}", vars).unwrap(), "the quick brown...");
        assert_eq!(render("{{ s | truncate(20, True) }}", vars).unwrap(), "the quick brown f...");
        assert_eq!(render("{{ s | truncate(40) }}", vars).unwrap(), "the quick brown fox jumps over the lazy dog");
        assert_eq!(render("{{ s | truncate(length=10, end='!', leeway=0) }}", vars).unwrap(), "the!");
    }

    #[test]
    fn values_print_like_python_str() {
        let vars = serde_json::json!({"b": true, "n": null, "d": {"k": "v", "x": 1.0}, "l": ["a", 2], "s": "text"});
        let out =
            render("{{ b }} {{ n }} {{ d }} {{ l }} {{ s }} {{ missing }}|{{ s.upper() }}", vars.as_object().unwrap())
                .unwrap();
        assert_eq!(out, "True None {'k': 'v', 'x': 1.0} ['a', 2] text |TEXT");
    }

    #[test]
    fn a_render_that_would_run_for_hours_stops_for_lack_of_fuel() {
        let source = "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}x{% endfor %}{% endfor %}{% endfor %}";
        let err = render(source, &serde_json::Map::new()).unwrap_err();
        assert!(err.contains("ran out of fuel"), "{err}");
    }

    #[test]
    fn rendering_keeps_the_trailing_newline_and_trims_blocks() {
        let env = environment();
        let out = env
            .template_from_str("{% for x in xs %}\n{{ x }}\n{% endfor %}\n")
            .unwrap()
            .render(minijinja::context! { xs => vec![1, 2] })
            .unwrap();
        assert_eq!(out, "1\n2\n");
    }
}
