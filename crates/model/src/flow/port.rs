//! A port: a Microsoft Agent Framework workflow that replaces a prompt flow
//! (prompt flow is read-only from 2027-04-20; Microsoft's migration guide,
//! promptflow's `migration-guide/PromptFlow-to-MAF`). It is named by its
//! Python file and how to get a workflow from it, as the guide's
//! `workflow_loader.py` finds one: a factory (`create_workflow`, the name
//! promptflow's own `*-maf` examples use) or a module-level `workflow`.

use std::path::{Path, PathBuf};

/// The factory promptflow's `*-maf` examples define.
pub const DEFAULT_FACTORY: &str = "create_workflow";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// The workflow's Python file.
    pub file: PathBuf,
    /// The function that builds a fresh workflow. `None`: `create_workflow`
    /// when the module has it, else its module-level `workflow`.
    pub factory: Option<String>,
    /// A class of the module (a dataclass, usually) built from the mapped
    /// inputs as the start message. `None`: one input is the message
    /// itself, several are a dict.
    pub start: Option<String>,
    /// The connection whose endpoint the workflow's OpenAI SDK calls reach
    /// through flow-ci's model proxy; `None`: they go where its environment says.
    pub connection: Option<String>,
}

impl Port {
    /// The folder the workflow runs in (its requirements.txt is there too).
    pub fn dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("`{0}` is not FILE.py or FILE.py:FACTORY (e.g. flows/web-classification-maf/workflow.py:create_workflow)")]
    Syntax(String),
    #[error("`{0}` is not a Python identifier")]
    Identifier(String),
    #[error("the workflow file {} does not exist", .0.display())]
    Missing(PathBuf),
}

/// Parses `FILE[:FACTORY]` (the `--workflow` argument) relative to `base`.
pub fn parse(text: &str, base: &Path) -> Result<Port, PortError> {
    let (file, factory) = match text.rsplit_once(':') {
        Some((file, factory)) if file.ends_with(".py") => (file, Some(factory)),
        _ => (text, None),
    };
    if !file.ends_with(".py") || file.len() == 3 {
        return Err(PortError::Syntax(text.to_string()));
    }
    let factory = factory.map(identifier).transpose()?;
    let path = crate::paths::normalize(&base.join(file));
    if !path.is_file() {
        return Err(PortError::Missing(path));
    }
    Ok(Port { file: path, factory, start: None, connection: None })
}

/// `name` when it is a Python identifier (ASCII, as module attributes in
/// the ports are).
pub fn identifier(name: &str) -> Result<String, PortError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(name.to_string()) } else { Err(PortError::Identifier(name.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_optional_factory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("maf")).unwrap();
        std::fs::write(dir.path().join("maf/workflow.py"), "").unwrap();
        let port = parse("maf/workflow.py", dir.path()).unwrap();
        assert_eq!((port.file, port.factory), (dir.path().join("maf/workflow.py"), None));
        let port = parse("maf/workflow.py:build", dir.path()).unwrap();
        assert_eq!(port.factory.as_deref(), Some("build"));
        assert_eq!(port.dir(), dir.path().join("maf"));
        assert_eq!(parse("maf/workflow.py:1x", dir.path()), Err(PortError::Identifier("1x".into())));
        assert!(matches!(parse("maf/workflow.txt", dir.path()), Err(PortError::Syntax(_))));
        assert!(matches!(parse("maf/other.py", dir.path()), Err(PortError::Missing(_))));
    }
}
