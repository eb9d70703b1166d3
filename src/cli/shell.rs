//! `flow-ci completions` and `flow-ci man`: shell completion scripts and
//! manual pages, both generated from the same clap definitions as `--help`.

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;

/// Print a shell completion script
///
/// Completes subcommands, flags and the values of flags such as --format and
/// --backend. Load it once per shell session, or install it where the shell
/// looks for completions.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    flow-ci completions bash \\\n      > ~/.local/share/bash-completion/completions/flow-ci\n  \
    flow-ci completions zsh > \"${fpath[1]}/_flow-ci\"\n  \
    flow-ci completions fish > ~/.config/fish/completions/flow-ci.fish\n  \
    flow-ci completions powershell | Out-String | Invoke-Expression")]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Write the manual pages (roff)
///
/// Without --out-dir, prints the page of flow-ci itself (flow-ci.1). With --out-dir,
/// writes one page per command into DIR: flow-ci.1, flow-ci-check.1,
/// flow-ci-run-create.1, ... The release archive carries them in man/.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    flow-ci man | man -l -\n  \
    flow-ci man --out-dir ~/.local/share/man/man1")]
pub struct ManArgs {
    /// Write every command's page into DIR (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mut cmd = super::Cli::command();
    let mut script = vec![];
    clap_complete::generate(args.shell, &mut cmd, BIN, &mut script);
    if args.shell == clap_complete::Shell::Bash {
        script = fix_bash_hyphenated_bin(&String::from_utf8_lossy(&script)).into_bytes();
    }
    match out.write_all(&script) {
        Ok(()) => model::exit::OK,
        Err(e) => super::output_failed(&e, err),
    }
}

const BIN: &str = "flow-ci";

/// clap_complete 4.6's bash script names a subcommand's state
/// `flow__ci__subcmd__run` where it is computed and
/// `flow__subcmd__ci__subcmd__run)` in the `case` that completes it, so
/// nothing after a subcommand completed for a bin name with a hyphen
/// (clap-rs/clap#6421, fixed upstream by clap-rs/clap#6428). The `case`
/// labels are spelled as the loop spells them; once clap_complete writes
/// them so, this changes nothing.
fn fix_bash_hyphenated_bin(script: &str) -> String {
    let broken = BIN.replace('-', "__subcmd__");
    script.replace(&broken, &BIN.replace('-', "__"))
}

pub fn man(args: ManArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let cmd = super::Cli::command();
    let Some(dir) = args.out_dir else {
        let mut page = vec![];
        if let Err(e) = clap_mangen::Man::new(cmd).render(&mut page) {
            let _ = writeln!(err, "error: cannot render the manual page: {e}");
            return model::exit::FAILURE;
        }
        return match out.write_all(&page) {
            Ok(()) => model::exit::OK,
            Err(e) => super::output_failed(&e, err),
        };
    };
    let written = std::fs::create_dir_all(&dir).and_then(|()| clap_mangen::generate_to(cmd, &dir));
    if let Err(e) = written {
        let _ = writeln!(err, "error: cannot write the manual pages to {}: {e}", dir.display());
        let _ = writeln!(err, "hint: --out-dir must be a folder you can write to");
        return model::exit::INVALID_INPUT;
    }
    let pages = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "1")).count())
        .unwrap_or(0);
    let _ = writeln!(err, "wrote {pages} manual page(s) to {}", dir.display());
    model::exit::OK
}
