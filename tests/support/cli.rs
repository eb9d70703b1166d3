//! flow-ci's command line as clap defines it, for tests over every command
//! and over the command lines the docs and `--help` examples show.

#![allow(dead_code)]

use clap::CommandFactory;

/// Every command, the root first, each with its subcommand names
/// (`[]`, `["run"]`, `["run", "create"]`, ...); clap's `help` left out.
pub fn commands() -> Vec<(Vec<String>, clap::Command)> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        out.push((path.clone(), cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            walk(sub, p, out);
        }
    }
    let mut root = flow_ci::cli::Cli::command();
    root.build();
    let mut out = Vec::new();
    walk(&root, Vec::new(), &mut out);
    out
}

/// Whether a command only groups others (`flow`, `run`).
pub fn groups_others(cmd: &clap::Command) -> bool {
    cmd.get_subcommands().any(|s| s.get_name() != "help")
}

/// The words of one shell command line as bash splits them, up to a pipe, a
/// redirection or a comment (enough for the docs' examples: single and
/// double quotes, no escapes inside them).
pub fn words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => (quote, in_word) = (Some(c), true),
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            (None, '#' | '|' | '>') if !in_word => break,
            (None, c) => (word.push(c), in_word = true).1,
        }
    }
    assert!(quote.is_none(), "unterminated quote in {line:?}");
    if in_word {
        words.push(word);
    }
    words
}
