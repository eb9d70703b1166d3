//! Jinja templates of `prompt` and `llm` nodes.
//!
//! promptflow renders with Jinja2 `trim_blocks=True, keep_trailing_newline=True`
//! and lenient undefined variables; the same settings are used here so a
//! template that parses for flow-ci parses for promptflow.

use minijinja::Environment;
use minijinja::syntax::SyntaxConfig;

/// A Jinja environment configured like promptflow's `render_jinja_template`.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    match SyntaxConfig::builder()
        .trim_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        Ok(syntax) => env.set_syntax(syntax),
        // The builder only fails on custom delimiters, which are not set here.
        Err(e) => tracing::warn!("jinja syntax configuration rejected: {e}"),
    }
    env
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
