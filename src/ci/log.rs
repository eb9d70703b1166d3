//! Logging commands of the CI hosts: GitHub Actions workflow commands
//! (`::error file=…::message`) and Azure Pipelines logging commands
//! (`##vso[task.logissue …]`). Everything put into one is escaped, so
//! untrusted text cannot end the command early or start another.

use std::path::Path;

use model::diag::{Diagnostic, display_path};

/// A GitHub Actions workflow command; `%`, CR, LF (and in properties `:` and `,`)
/// are escaped so untrusted text cannot end the command early or start another.
pub fn render_github(d: &Diagnostic, base: &Path) -> String {
    let mut message = d.message.clone();
    if let Some(hint) = &d.hint {
        message.push_str("\nhint: ");
        message.push_str(hint);
    }
    super::guard::command(format!(
        "::{} file={},line={},col={},title={}::{}\n",
        d.severity.as_str(),
        github_property(&display_path(&d.file, base)),
        d.pos.line,
        d.pos.col,
        github_property(&format!("flow-ci {}", d.code.as_str())),
        github_data(&message)
    ))
}

pub fn github_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

pub fn github_property(s: &str) -> String {
    github_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// An Azure Pipelines logging command (`##vso[task.logissue ...]`), escaped per
/// the agent's rules so text cannot close the command or inject another.
pub fn render_azure(d: &Diagnostic, base: &Path) -> String {
    let mut message = d.message.clone();
    if let Some(hint) = &d.hint {
        message.push_str(" (hint: ");
        message.push_str(hint);
        message.push(')');
    }
    super::guard::command(format!(
        "##vso[task.logissue type={};sourcepath={};linenumber={};columnnumber={};code={};]{}\n",
        d.severity.as_str(),
        azure_escape(&display_path(&d.file, base)),
        d.pos.line,
        d.pos.col,
        d.code.as_str(),
        azure_escape(&message)
    ))
}

pub fn azure_escape(s: &str) -> String {
    s.replace('%', "%AZP25").replace(';', "%3B").replace('\r', "%0D").replace('\n', "%0A").replace(']', "%5D")
}

#[cfg(test)]
mod tests {
    use model::diag::Code;
    use model::yaml::Pos;

    use super::*;

    fn sample() -> Diagnostic {
        Diagnostic::error(Code::UnknownKey, Path::new("flows/a/flow.dag.yaml"), Pos::new(3, 5), "unknown key `nodse`")
            .with_hint("did you mean `nodes`?")
    }

    #[test]
    fn github_annotations_escape_newlines_and_separators() {
        let mut d = sample();
        d.message = "bad\n::error::injected 100%".into();
        d.file = "a,b:c.yaml".into();
        let text = render_github(&d, Path::new("."));
        assert_eq!(
            text,
            "::error file=a%2Cb%3Ac.yaml,line=3,col=5,title=flow-ci unknown-key::bad%0A::error::injected 100%25%0Ahint: did you mean `nodes`?\n"
        );
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn azure_issues_escape_brackets_and_semicolons() {
        let mut d = sample();
        d.message = "x];##vso[task.complete result=Failed]\n".into();
        let text = render_azure(&d, Path::new("."));
        assert!(text.starts_with(
            "##vso[task.logissue type=error;sourcepath=flows/a/flow.dag.yaml;linenumber=3;columnnumber=5;code=unknown-key;]"
        ));
        // The agent runs the first command on a line; the message cannot close it early.
        let message = text.split_once(";]").unwrap().1;
        assert!(!message.contains(']'), "{message}");
        assert!(!message.contains(';'), "{message}");
        assert_eq!(text.lines().count(), 1);
    }
}
