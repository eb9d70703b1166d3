//! Keeps untrusted text from running CI logging commands.
//!
//! Inside GitHub Actions and Azure Pipelines the host reads a job's output
//! for commands: GitHub a line that starts with `::` after leading
//! whitespace (`ActionCommand.TryParseV2` in actions/runner) or holds `##[`
//! anywhere (`TryParse`, the legacy form); Azure Pipelines `##vso[` anywhere
//! in a line. A data row, a model answer or a node's `print` holding
//! `\n::error …` or `##vso[task.setvariable …]` would otherwise be run.
//!
//! Both outputs of the process go through [`Guard`] there. Every line is
//! neutralised with an invisible U+200B (zero-width space, which .NET's
//! `TrimStart` keeps) inside the command prefix, except lines flow-ci writes
//! as commands itself: [`command`] marks those with a per-process random
//! marker, which the guard strips. Untrusted text cannot know the marker.

use std::io::{self, Write};
use std::sync::OnceLock;

/// The marker of trusted command lines; set once the guard is armed.
static MARKER: OnceLock<String> = OnceLock::new();

const ZWSP: &str = "\u{200B}";

/// Arms the guard for this process (inside a CI host).
pub fn arm() {
    MARKER.get_or_init(|| format!("\u{1}flow-ci-{}\u{1}", uuid::Uuid::new_v4().simple()));
}

/// A logging command flow-ci writes itself, marked to pass the guard
/// (unchanged when the guard is not armed).
pub fn command(line: impl Into<String>) -> String {
    let line = line.into();
    match MARKER.get() {
        Some(marker) => format!("{marker}{line}"),
        None => line,
    }
}

/// A writer that neutralises logging commands in whole lines it did not
/// mark. Partial lines wait for their end (or the drop of the writer).
pub struct Guard<W: Write> {
    inner: W,
    pending: Vec<u8>,
    /// The trusted-line marker; `None` (not armed): lines pass unchanged.
    marker: Option<&'static str>,
}

impl<W: Write> Guard<W> {
    pub fn new(inner: W) -> Guard<W> {
        Guard { inner, pending: Vec::new(), marker: MARKER.get().map(String::as_str) }
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let Some(marker) = self.marker else { return self.inner.write_all(line) };
        let text = String::from_utf8_lossy(line);
        match text.strip_prefix(marker) {
            Some(trusted) => self.inner.write_all(trusted.as_bytes()),
            None => self.inner.write_all(neutralise(&text).as_bytes()),
        }
    }
}

/// The line with every command prefix broken by a zero-width space.
pub fn neutralise(line: &str) -> String {
    let mut text = line.replace("##", &format!("#{ZWSP}#"));
    let indent = text.len() - text.trim_start().len();
    if text[indent..].starts_with("::") {
        text.insert_str(indent + 1, ZWSP);
    }
    text
}

impl<W: Write> Write for Guard<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.write_line(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for Guard<W> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let _ = self.write_line(&rest);
            let _ = self.inner.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The global marker is left alone: other tests in this process compare
    // logging commands exactly.
    const TEST_MARKER: &str = "\u{1}test-marker\u{1}";

    fn armed<W: Write>(inner: W) -> Guard<W> {
        Guard { inner, pending: Vec::new(), marker: Some(TEST_MARKER) }
    }

    fn guarded(text: &str) -> String {
        let mut out = Vec::new();
        {
            let mut guard = armed(&mut out);
            guard.write_all(text.as_bytes()).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn untrusted_commands_are_broken_and_trusted_ones_pass() {
        let evil = "answer\n  ::error::injected\n::add-mask::x\nok ##vso[task.setvariable variable=A]1\n##[error]old\n";
        let text = guarded(&format!("{evil}{TEST_MARKER}::error file=a::flow-ci's own\n"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "answer");
        for line in &lines[1..5] {
            assert!(!line.trim_start().starts_with("::"), "{line:?}");
            assert!(!line.contains("##vso[") && !line.contains("##["), "{line:?}");
        }
        assert_eq!(lines[5], "::error file=a::flow-ci's own");
        // What people read is unchanged but for invisible characters.
        assert_eq!(text.replace(ZWSP, ""), evil.to_string() + "::error file=a::flow-ci's own\n");
    }

    #[test]
    fn a_line_split_across_writes_is_judged_whole() {
        let mut out = Vec::new();
        {
            let mut guard = armed(&mut out);
            guard.write_all(b"::err").unwrap();
            guard.write_all(b"or::x\n#").unwrap();
            guard.write_all(b"#vso[task.complete]").unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(!text.starts_with("::"), "{text:?}");
        assert!(!text.contains("##vso["), "{text:?}");
    }
}
