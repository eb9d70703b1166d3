//! Static facts about a python node's file, read without running Python.
//!
//! promptflow imports the file and collects functions decorated with `@tool`
//! defined in that module (and `@tool` methods of its `ToolProvider`
//! classes); exactly one is required. A line scan finds the same decorators
//! (`@tool`, `@tool(...)` over several lines, `@promptflow.tool`,
//! `@core.tool`) without paying for an interpreter per file, and skips text
//! inside strings so docstrings that show examples do not count. A file that
//! makes tools some other way (`tool(f)`, `import tool as t`) is left to the
//! executor, which imports it before the first line and reports what
//! promptflow would (`dynamic_tool`).

/// A `@tool`-decorated function found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolDef {
    pub name: String,
    /// 1-based line of the `def`.
    pub line: u32,
}

/// What validation needs to know about a python source file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PythonFacts {
    pub tools: Vec<ToolDef>,
    /// 1-based line of the first `log_metric(` call, if any.
    pub log_metric_line: Option<u32>,
    /// `tool` is used in a way a line scan cannot follow (`tool(f)`,
    /// `import tool as t`, `t = tool`): only importing the file, as
    /// promptflow does, tells which functions are tools.
    pub dynamic_tool: bool,
}

pub fn scan(source: &str) -> PythonFacts {
    let mut facts = PythonFacts::default();
    let mut in_string: Option<&str> = None;
    let mut pending_tool = false;
    // Open brackets of a decorator that spans lines: `@tool(\n name="x",\n)`.
    let mut open_brackets = 0usize;
    for (index, raw) in source.lines().enumerate() {
        let line_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let code = strip_strings(raw, &mut in_string);
        let line = code.trim();
        if line.is_empty() {
            continue;
        }
        if facts.log_metric_line.is_none() && calls_log_metric(line) {
            facts.log_metric_line = Some(line_no);
        }
        if open_brackets > 0 {
            open_brackets = bracket_balance(line, open_brackets);
            continue;
        }
        if !line.starts_with('@') && uses_tool_dynamically(line) {
            facts.dynamic_tool = true;
        }
        if let Some(decorator) = line.strip_prefix('@') {
            pending_tool |= is_tool_decorator(decorator);
            open_brackets = bracket_balance(decorator, 0);
            continue;
        }
        if pending_tool && let Some(name) = def_name(line) {
            facts.tools.push(ToolDef { name, line: line_no });
        }
        pending_tool = false;
    }
    facts
}

/// A line other than a decorator naming `tool`: an import that renames it,
/// or any other use (calls, assignments).
fn uses_tool_dynamically(line: &str) -> bool {
    let words: Vec<&str> = line.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
    let Some(at) = words.iter().position(|w| *w == "tool") else { return false };
    if words.first().is_some_and(|w| *w == "from" || *w == "import") {
        return words.get(at + 1) == Some(&"as");
    }
    true
}

/// Brackets still open after `line` (strings and comments already removed).
fn bracket_balance(line: &str, open: usize) -> usize {
    line.chars().fold(open, |depth, c| match c {
        '(' | '[' | '{' => depth + 1,
        ')' | ']' | '}' => depth.saturating_sub(1),
        _ => depth,
    })
}

fn is_tool_decorator(decorator: &str) -> bool {
    let name = decorator.split(['(', ' ', '#']).next().unwrap_or_default();
    name == "tool" || name.ends_with(".tool")
}

fn def_name(line: &str) -> Option<String> {
    let rest = line.strip_prefix("async ").map(str::trim_start).unwrap_or(line);
    let rest = rest.strip_prefix("def ")?;
    let name: String = rest.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

fn calls_log_metric(line: &str) -> bool {
    line.match_indices("log_metric").any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + "log_metric".len()..].trim_start();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after.starts_with('(')
    })
}

/// Removes string literal contents and comments from one line, tracking
/// triple-quoted strings that span lines in `open`.
fn strip_strings<'a>(line: &str, open: &mut Option<&'a str>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        if let Some(quote) = *open {
            match rest.find(quote) {
                Some(end) => {
                    rest = &rest[end + quote.len()..];
                    *open = None;
                }
                None => return out,
            }
        }
        let Some(start) = rest.find(['\'', '"', '#']) else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        if tail.starts_with('#') {
            return out;
        }
        let quote: &'a str = match tail {
            t if t.starts_with("\"\"\"") => "\"\"\"",
            t if t.starts_with("'''") => "'''",
            t if t.starts_with('"') => "\"",
            _ => "'",
        };
        out.push_str("\"\"");
        rest = &tail[quote.len()..];
        if quote.len() == 3 {
            *open = Some(quote);
        } else {
            match find_closing(rest, quote) {
                Some(end) => rest = &rest[end + 1..],
                None => return out,
            }
        }
    }
}

/// Index of the closing single-character quote, skipping backslash escapes.
fn find_closing(s: &str, quote: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            c if !escaped && s[i..].starts_with(quote) && c != '\\' => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::ops::Not;

    use super::*;

    fn tool_names(src: &str) -> Vec<String> {
        scan(src).tools.into_iter().map(|t| t.name).collect()
    }

    #[test]
    fn finds_decorated_functions() {
        let src = "from promptflow.core import tool\n\n@tool\ndef classify(text: str) -> str:\n    return text\n";
        assert_eq!(scan(src).tools, vec![ToolDef { name: "classify".into(), line: 4 }]);
        assert_eq!(tool_names("@tool(name='x')\nasync def run():\n  pass\n"), vec!["run"]);
        assert_eq!(tool_names("@promptflow.tool\n@other\ndef f():\n  pass\n"), vec!["f"]);
    }

    #[test]
    fn ignores_undecorated_and_quoted_tools() {
        assert!(tool_names("def f():\n  pass\n").is_empty());
        assert!(tool_names("\"\"\"\n@tool\ndef f():\n\"\"\"\ndef g(): pass\n").is_empty());
        assert!(tool_names("# @tool\ndef f(): pass\n").is_empty());
        assert!(tool_names("@toolkit\ndef f(): pass\n").is_empty());
    }

    #[test]
    fn decorators_spanning_lines_are_one_decorator() {
        // promptflow's python_tool_deployment_name test flow writes its `@tool(input_settings={...})` this way.
        let src = "@tool(\n    name=\"where\",\n    input_settings={\n        \"a\": InputSetting(x=[1, 2]),\n    },\n)\ndef where(text: str):\n    pass\n";
        assert_eq!(scan(src).tools, vec![ToolDef { name: "where".into(), line: 7 }]);
        let class_tool = "class Greeter(ToolProvider):\n    @tool(\n        name='greet'\n    )\n    def greet(self, who):\n        pass\n";
        assert_eq!(tool_names(class_tool), vec!["greet"]);
        assert!(tool_names("@other(\n  tool=1,\n)\ndef f(): pass\n").is_empty());
    }

    #[test]
    fn tools_made_without_a_decorator_line_are_left_to_the_import() {
        assert!(scan("from promptflow.core import tool\n@tool\ndef f(): pass\n").dynamic_tool.not());
        assert!(scan("from promptflow.core import tool as pf_tool\n@pf_tool\ndef f(): pass\n").dynamic_tool);
        assert!(scan("from promptflow.core import tool\ndef f(): pass\nf = tool(f)\n").dynamic_tool);
        assert!(scan("import promptflow\nmy_tool = promptflow.tool\n").dynamic_tool);
        assert!(scan("# tool(f)\ns = 'tool(f)'\n").dynamic_tool.not());
    }

    #[test]
    fn counts_every_tool() {
        assert_eq!(tool_names("@tool\ndef a(): pass\n\n@tool\ndef b(): pass\n"), vec!["a", "b"]);
    }

    #[test]
    fn finds_log_metric_calls() {
        assert_eq!(scan("x = 1\nlog_metric('acc', 1)\n").log_metric_line, Some(2));
        assert_eq!(scan("promptflow.log_metric(key='a', value=1)\n").log_metric_line, Some(1));
        assert_eq!(scan("from promptflow import log_metric\n").log_metric_line, None);
        assert_eq!(scan("s = 'log_metric(1)'\n").log_metric_line, None);
    }

    #[test]
    fn strings_with_escapes_do_not_confuse_the_scan() {
        assert_eq!(tool_names("x = 'it\\'s # not a comment'\n@tool\ndef f(): pass\n"), vec!["f"]);
    }
}
