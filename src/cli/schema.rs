//! `flow-ci schema`.

use std::io::Write;

/// Print the JSON Schema of .flow-ci.yaml
///
/// The schema editors use to complete and check .flow-ci.yaml (draft-07). The
/// repository commits it as schema/flow-ci.schema.json; point VS Code's YAML
/// extension at it with a first line
/// `# yaml-language-server: $schema=<URL>` or a `$schema: <URL>` key.
/// `flow-ci validate` checks the same rules, and more: the files the config
/// names, duplicate keys, `min` above `max`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n  flow-ci schema > schema/flow-ci.schema.json\n\nThe published schema:\n  ",
    "https://raw.githubusercontent.com/flow-ci/flow-ci/main/schema/flow-ci.schema.json",
))]
pub struct Args {}

pub fn run(_args: Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match out.write_all(model::config::schema::generate_text().as_bytes()) {
        Ok(()) => model::exit::OK,
        Err(e) => super::output_failed(&e, err),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_help_names_the_published_schema() {
        let mut cli = <crate::cli::Cli as clap::CommandFactory>::command();
        let help = format!("{}", cli.find_subcommand_mut("schema").expect("schema").render_long_help());
        assert!(help.contains(model::config::schema::SCHEMA_URL), "{help}");
    }
}
