//! Every `--help` example can be pasted: clap wraps `after_help` text to the
//! terminal like prose (clap_builder's `write_after_help` calls `wrap`, with
//! no way to mark a block verbatim), so each example line stays short enough
//! for an 80-column terminal, a long command continues on the next line with
//! a shell `\`, and every example is a command line clap accepts.

mod support;

use clap::CommandFactory;
use support::cli::{commands, words};

/// The example commands of a help text, `\` continuations joined.
fn examples(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        let whole = std::mem::take(&mut pending) + line;
        if let Some(at) = whole.find("flow-ci ").filter(|_| !whole.starts_with('#')) {
            commands.push(whole[at..].to_string());
        }
    }
    commands
}

fn shown(path: &[String]) -> String {
    std::iter::once("flow-ci").chain(path.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
}

#[test]
fn examples_are_not_wrapped_at_80_columns() {
    let mut wrapped = Vec::new();
    for (path, cmd) in commands() {
        let Some(after) = cmd.get_after_help().map(|s| s.to_string()) else { continue };
        let help = cmd.clone().term_width(80).render_help().to_string();
        if !help.contains(&after) {
            let long = after.lines().filter(|l| !help.contains(&format!("{l}\n")));
            wrapped.push(format!("`{} --help`: {:?}", shown(&path), long.collect::<Vec<_>>()));
        }
    }
    assert!(wrapped.is_empty(), "examples wrapped at 80 columns:\n{}", wrapped.join("\n"));
}

#[test]
fn examples_parse() {
    let mut seen = 0;
    for (path, cmd) in commands() {
        let Some(after) = cmd.get_after_help().map(|s| s.to_string()) else { continue };
        for example in examples(&after) {
            let args = words(&example);
            assert_eq!(args.first().map(String::as_str), Some("flow-ci"), "{example}");
            if let Err(e) = flow_ci::cli::Cli::command().try_get_matches_from(&args) {
                panic!("`{} --help` example `{example}` does not parse: {e}", shown(&path));
            }
            seen += 1;
        }
    }
    assert!(seen > 30, "only {seen} examples found");
}

#[test]
fn words_split_as_bash_does() {
    assert_eq!(words("flow-ci a='b c' \"d\" # e"), ["flow-ci", "a=b c", "d"]);
    assert_eq!(words("flow-ci schema > x.json"), ["flow-ci", "schema"]);
    assert_eq!(examples("  flow-ci run create \\\n    --stream\n  # flow-ci no"), ["flow-ci run create --stream"]);
}
