//! Flow environments: a flow with python requirements (promptflow's
//! `environment.python_requirements_txt`, else a `requirements.txt` beside
//! `flow.dag.yaml`, the file pfazure builds its image from) runs its workers
//! in a virtual environment holding those packages and nothing of the CI's.
//!
//! Environments are cached by content under `.flow-ci/cache/envs/<key>`, the
//! key covering the requirements' bytes and the base interpreter (version,
//! platform, executable), so flows and runs with the same requirements share
//! one. An environment is built in a temporary folder beside its place and
//! renamed into it with its completion marker already written: a concurrent
//! flow-ci building the same one either wins or uses the winner's, and a
//! build that was interrupted never looks complete.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use model::exit;
use model::flow::dag::Flow;

use crate::pool::Python;

/// Where environments are cached, relative to the working directory (beside
/// the LLM cache, `.flow-ci/cache/llm`).
pub const ENVS_DIR: &str = ".flow-ci/cache/envs";
/// Written last inside an environment: its presence says the build finished.
pub const MARKER: &str = "flow-ci-env-complete";
/// The installer's last stderr lines kept in an error.
const TAIL_LINES: usize = 12;
/// Bumped when the layout of an environment changes, so old ones are not reused.
const LAYOUT: &str = "flow-ci env v1";

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("cannot read the python requirements {}: {source}", path.display())]
    Requirements { path: PathBuf, source: std::io::Error },
    #[error("{}", install_message(file, *installer, tail, culprit.as_ref()))]
    Install { file: PathBuf, installer: Installer, tail: String, culprit: Option<Culprit> },
    #[error("cannot create a python environment in {} ({installer}): {detail}", dir.display())]
    Create { dir: PathBuf, installer: Installer, detail: String },
    #[error("cannot run python `{}` to build the flow's environment: {detail}", python.display())]
    Probe { python: PathBuf, detail: String },
    #[error("cannot write the python environment {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl EnvError {
    /// The flow's requirements are its input (exit 2); a machine that cannot
    /// build environments cannot run it (exit 3).
    pub fn exit_code(&self) -> u8 {
        match self {
            EnvError::Requirements { .. } | EnvError::Install { .. } => exit::INVALID_INPUT,
            _ => exit::FAILURE,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installer {
    /// `uv venv` + `uv pip install`: seconds where pip takes tens of them.
    Uv,
    /// `python -m venv` + `pip install`, when uv is not on PATH.
    Pip,
}

impl std::fmt::Display for Installer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Installer::Uv => "uv",
            Installer::Pip => "venv + pip",
        })
    }
}

/// The interpreter a flow's workers run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    pub path: PathBuf,
    /// `path` is the flow's own environment (see `PoolConfig::isolated`).
    pub own_env: bool,
}

/// The interpreter for `flow`: `python` when it is fixed or the flow has no
/// requirements, else the flow's environment under `envs`, built on first use.
pub fn interpreter(python: &Python, flow: &Flow, envs: &Path) -> Result<Interpreter, EnvError> {
    let shared = |path: &Path| Interpreter { path: path.to_path_buf(), own_env: false };
    let base = match python {
        Python::Fixed(path) => return Ok(shared(path)),
        Python::Base(path) => path,
    };
    let Some(file) = requirements(flow) else {
        return Ok(shared(base));
    };
    let bytes = std::fs::read(&file).map_err(|source| EnvError::Requirements { path: file.clone(), source })?;
    let probe = probe(base)?;
    let dir = envs.join(key(&bytes, &probe.identity));
    if complete(&dir) {
        tracing::debug!("reusing the python environment {} for {}", dir.display(), file.display());
    } else {
        build(flow, &file, &probe.executable, &dir)?;
    }
    Ok(Interpreter { path: venv_python(&absolute(&dir)), own_env: true })
}

/// The flow's requirements file: the declared one, else `requirements.txt`
/// in the flow folder, when it exists (a declared file that does not exist
/// installs nothing, as in promptflow; `validate` warns of it).
pub fn requirements(flow: &Flow) -> Option<PathBuf> {
    let file = match &flow.python_requirements_txt {
        Some(declared) => flow.dir.join(&declared.value),
        None => flow.dir.join("requirements.txt"),
    };
    let file = Some(file).filter(|p| p.is_file())?;
    // `flow: .` in a run file makes the folder `flows/x/.`: say `flows/x/requirements.txt`.
    Some(model::paths::normalize(&file))
}

/// What the base interpreter says of itself.
struct Probe {
    /// Its executable, version and platform: part of the cache key.
    identity: String,
    /// The real interpreter behind a name or a shim (`python3`, pyenv).
    executable: PathBuf,
}

const PROBE: &str =
    "import sys, platform; print(sys.executable); print(sys.version); print(sys.platform, platform.machine())";

fn probe(python: &Path) -> Result<Probe, EnvError> {
    let failed = |detail: String| EnvError::Probe { python: python.to_path_buf(), detail };
    let out =
        Command::new(python).args(["-c", PROBE]).stdin(Stdio::null()).output().map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(tail(&out)));
    }
    let identity = String::from_utf8_lossy(&out.stdout).into_owned();
    let executable =
        identity.lines().next().filter(|l| !l.is_empty()).map_or_else(|| python.to_path_buf(), PathBuf::from);
    Ok(Probe { identity, executable })
}

fn key(requirements: &[u8], identity: &str) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(LAYOUT.as_bytes());
    hasher.update([0]);
    hasher.update(identity.as_bytes());
    hasher.update([0]);
    hasher.update(requirements);
    let hex = base16ct::lower::encode_string(&hasher.finalize());
    hex[..16].to_string()
}

/// Builds the environment for `file` at `dir` from `base`.
fn build(flow: &Flow, file: &Path, base: &Path, dir: &Path) -> Result<(), EnvError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EnvError::Io { path, source }
    };
    let root = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(root).map_err(io(root))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = tempfile::Builder::new().prefix(&format!(".{name}.")).tempdir_in(root).map_err(io(root))?;
    let installer = if on_path("uv") { Installer::Uv } else { Installer::Pip };
    let shown = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
    // The one line a user sees: a first install can take a while.
    tracing::warn!("installing {shown} for {} into {} ({installer})", flow.dir.display(), dir.display());
    let started = std::time::Instant::now();
    create(installer, base, staging.path())?;
    install(installer, file, &flow.dir, staging.path())?;
    std::fs::write(staging.path().join(MARKER), LAYOUT).map_err(io(staging.path()))?;
    publish(staging, dir)?;
    tracing::warn!(
        "installed {shown} for {} in {:.1} s; later runs reuse it",
        flow.dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn create(installer: Installer, base: &Path, dir: &Path) -> Result<(), EnvError> {
    let mut cmd = match installer {
        Installer::Uv => {
            let mut cmd = Command::new("uv");
            cmd.args(["venv", "--quiet", "--python"]).arg(base).arg(dir);
            cmd
        }
        Installer::Pip => {
            let mut cmd = Command::new(base);
            cmd.args(["-m", "venv"]).arg(dir);
            cmd
        }
    };
    let failed = |detail: String| EnvError::Create { dir: dir.to_path_buf(), installer, detail };
    let out = run(&mut cmd).map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        return Ok(());
    }
    // Debian's python3 has no venv module without python3-venv.
    let hint = if installer == Installer::Pip {
        "\n  hint: put uv on PATH (pip install uv) or install python3-venv"
    } else {
        ""
    };
    Err(failed(format!("{}{hint}", tail(&out))))
}

fn install(installer: Installer, file: &Path, flow_dir: &Path, dir: &Path) -> Result<(), EnvError> {
    let python = venv_python(&absolute(dir));
    let requirements = absolute(file);
    let mut cmd = match installer {
        Installer::Uv => {
            let mut cmd = Command::new("uv");
            cmd.args(["pip", "install", "--quiet", "--python"]).arg(&python);
            cmd
        }
        Installer::Pip => {
            let mut cmd = Command::new(&python);
            cmd.args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--no-input"]);
            cmd
        }
    };
    // Relative paths in requirements (`./wheels/x.whl`, `-e .`) are the flow
    // folder's, where pfazure builds its image from.
    cmd.arg("-r").arg(&requirements).current_dir(flow_dir);
    let failed = |tail: String| {
        let culprit = std::fs::read_to_string(file).ok().and_then(|text| culprit(&text, &tail));
        EnvError::Install { file: file.to_path_buf(), installer, tail, culprit }
    };
    let out = run(&mut cmd).map_err(|e| failed(e.to_string()))?;
    if out.status.success() { Ok(()) } else { Err(failed(tail(&out))) }
}

/// The requirement line an installer's message names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Culprit {
    /// 1-based line and column in the requirements file.
    pub line: usize,
    pub column: usize,
    /// The requirement as written.
    pub text: String,
}

fn install_message(file: &Path, installer: Installer, tail: &str, culprit: Option<&Culprit>) -> String {
    const HINT: &str = "hint: fix or pin that requirement, or set FLOW_CI_PYTHON to an interpreter you manage";
    match culprit {
        Some(c) => format!(
            "{}:{}:{}: cannot install `{}` ({installer}):\n{tail}\n  {HINT}",
            file.display(),
            c.line,
            c.column,
            c.text
        ),
        None => format!("installing {} failed ({installer}):\n{tail}\n  {HINT}", file.display()),
    }
}

/// Finds which line of a requirements file the installer's message is
/// about: the requirement whose project name (PEP 503-normalized, as pip
/// and uv print it) the message names first. Options (`-r`, `--index-url`)
/// and bare paths or URLs name no project and are skipped.
fn culprit(requirements: &str, message: &str) -> Option<Culprit> {
    let message = normalize(message);
    let mut best: Option<(usize, Culprit)> = None;
    for (i, raw) in requirements.lines().enumerate() {
        let text = raw.split(" #").next().unwrap_or(raw).trim_end();
        let trimmed = text.trim_start();
        let name: String =
            trimmed.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
        if name.is_empty() || trimmed.starts_with('-') || trimmed.starts_with('#') {
            continue;
        }
        let Some(at) = find_word(&message, &normalize(&name)) else { continue };
        if best.as_ref().is_none_or(|(seen, _)| at < *seen) {
            let column = text.len() - trimmed.len() + 1;
            best = Some((at, Culprit { line: i + 1, column, text: trimmed.to_string() }));
        }
    }
    best.map(|(_, c)| c)
}

/// PEP 503: lowercase, runs of `-`, `_` and `.` become one `-`.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if matches!(c, '_' | '.') { '-' } else { c.to_ascii_lowercase() };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

/// The first place `word` stands alone in `text` (not inside a longer name).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-';
    text.match_indices(word).map(|(at, _)| at).find(|&at| {
        let before = text[..at].chars().next_back().is_none_or(|c| !part(c));
        let after = text[at + word.len()..].chars().next().is_none_or(|c| !part(c));
        before && after
    })
}

/// Runs an installer step. Installing runs the packages' build code, which
/// is as untrusted as the flow: no CI credentials, and no `PYTHONPATH` that
/// would make pip take the CI's packages as already installed.
fn run(cmd: &mut Command) -> std::io::Result<Output> {
    crate::credentials::remove_from(cmd);
    cmd.env_remove("PYTHONPATH").env_remove("PYTHONHOME").stdin(Stdio::null()).output()
}

/// Moves the finished environment into place, or keeps the one a concurrent
/// flow-ci put there first.
fn publish(staging: tempfile::TempDir, dir: &Path) -> Result<(), EnvError> {
    let mut result = std::fs::rename(staging.path(), dir);
    if result.is_err() && dir.exists() && !dir.join(MARKER).is_file() {
        // Only complete environments are ever renamed in: this is debris.
        let _ = std::fs::remove_dir_all(dir);
        result = std::fs::rename(staging.path(), dir);
    }
    match result {
        Ok(()) => {
            let _ = staging.keep();
            Ok(())
        }
        Err(_) if dir.join(MARKER).is_file() => {
            tracing::debug!("another flow-ci built {} at the same time; using its copy", dir.display());
            Ok(())
        }
        Err(source) => Err(EnvError::Io { path: dir.to_path_buf(), source }),
    }
}

/// A finished environment whose interpreter is still there: one restored
/// from a CI cache onto a machine whose base python moved has a dangling
/// `bin/python` and is rebuilt.
fn complete(dir: &Path) -> bool {
    if !dir.join(MARKER).is_file() {
        return false;
    }
    if venv_python(dir).is_file() {
        return true;
    }
    tracing::warn!("the python environment {} lost its interpreter; rebuilding it", dir.display());
    let _ = std::fs::remove_dir_all(dir);
    false
}

fn venv_python(dir: &Path) -> PathBuf {
    if cfg!(windows) { dir.join("Scripts").join("python.exe") } else { dir.join("bin").join("python") }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The last lines of a failed command's stderr (else stdout): where pip
/// and uv say what went wrong.
fn tail(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = if stderr.trim().is_empty() { String::from_utf8_lossy(&out.stdout) } else { stderr };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let kept = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if kept.is_empty() { format!("exited with {}", out.status) } else { kept }
}

fn on_path(program: &str) -> bool {
    let Some(paths) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&paths).any(|dir| executable(&dir.join(program)))
}

#[cfg(unix)]
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn executable(path: &Path) -> bool {
    path.with_extension("exe").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow_in(dir: &Path, declared: Option<&str>) -> Flow {
        let mut diags = model::diag::Diagnostics::default();
        let env = declared.map(|d| format!("environment:\n  python_requirements_txt: {d}\n")).unwrap_or_default();
        let text = format!("{env}nodes: []\n");
        std::fs::write(dir.join("flow.dag.yaml"), text).unwrap();
        model::flow::dag::load(dir, &mut diags).unwrap()
    }

    #[test]
    fn requirements_are_the_declared_file_else_requirements_txt() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(requirements(&flow_in(dir.path(), None)), None);
        std::fs::write(dir.path().join("requirements.txt"), "six\n").unwrap();
        assert_eq!(requirements(&flow_in(dir.path(), None)), Some(dir.path().join("requirements.txt")));
        let declared = flow_in(dir.path(), Some("deps/reqs.txt"));
        assert_eq!(requirements(&declared), None, "a declared file that does not exist installs nothing, as in pf");
        std::fs::create_dir(dir.path().join("deps")).unwrap();
        std::fs::write(dir.path().join("deps/reqs.txt"), "six\n").unwrap();
        assert_eq!(requirements(&declared), Some(dir.path().join("deps/reqs.txt")));
    }

    #[test]
    fn fixed_interpreters_and_flows_without_requirements_build_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "six\n").unwrap();
        let envs = dir.path().join("envs");
        let flow = flow_in(dir.path(), None);
        let fixed = interpreter(&Python::Fixed("/opt/py".into()), &flow, &envs).unwrap();
        assert_eq!(fixed, Interpreter { path: "/opt/py".into(), own_env: false });
        // A declared file that does not exist installs nothing, as in pf (validate warns).
        let missing = interpreter(&Python::Base("python3".into()), &flow_in(dir.path(), Some("nope.txt")), &envs);
        assert_eq!(missing.unwrap(), Interpreter { path: "python3".into(), own_env: false });
        assert!(!envs.exists());
    }

    #[test]
    fn keys_change_with_the_requirements_and_the_interpreter() {
        let a = key(b"six==1.16.0\n", "3.11.7 linux");
        assert_eq!(a.len(), 16);
        assert_eq!(a, key(b"six==1.16.0\n", "3.11.7 linux"));
        assert_ne!(a, key(b"six==1.17.0\n", "3.11.7 linux"));
        assert_ne!(a, key(b"six==1.16.0\n", "3.12.1 linux"));
    }

    #[test]
    fn the_culprit_is_the_requirement_the_installer_names_first() {
        let reqs = "# pinned\nrequests==2.32.3\n  Flow_CI.No-Such>=1 ; python_version > '3'  # ours\n-r other.txt\n";
        // uv and pip print normalized names.
        let uv = "  × No solution found when resolving dependencies:\n  ╰─▶ Because flow-ci-no-such was not found in the package registry and you require flow-ci-no-such>=1, we can conclude that your requirements are unsatisfiable.";
        let found = culprit(reqs, uv).unwrap();
        assert_eq!((found.line, found.column), (3, 3));
        assert_eq!(found.text, "Flow_CI.No-Such>=1 ; python_version > '3'");
        let pip = "ERROR: Could not find a version that satisfies the requirement requests==99 (from versions: 2.0)";
        assert_eq!(culprit(reqs, pip).unwrap().line, 2);
        // A name inside a longer one is not a mention.
        assert_eq!(culprit("six\n", "No matching distribution found for sixty"), None);
        assert_eq!(culprit(reqs, "network unreachable"), None);
    }

    #[test]
    fn an_environment_without_its_interpreter_is_not_complete() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("env");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join(MARKER), LAYOUT).unwrap();
        assert!(!complete(&dir), "no bin/python");
        assert!(!dir.exists(), "removed, to be rebuilt");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join(MARKER), LAYOUT).unwrap();
        std::fs::write(venv_python(&dir), "").unwrap();
        assert!(complete(&dir));
    }

    #[test]
    fn a_concurrent_build_that_won_is_used() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("abc");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(MARKER), LAYOUT).unwrap();
        let staging = tempfile::tempdir_in(root.path()).unwrap();
        let staged = staging.path().to_path_buf();
        publish(staging, &dir).unwrap();
        assert!(!staged.exists(), "the loser's copy is removed");
        // Debris without a marker is replaced.
        let debris = root.path().join("debris");
        std::fs::create_dir_all(debris.join("lib")).unwrap();
        let staging = tempfile::tempdir_in(root.path()).unwrap();
        std::fs::write(staging.path().join(MARKER), LAYOUT).unwrap();
        publish(staging, &debris).unwrap();
        assert!(debris.join(MARKER).is_file() && !debris.join("lib").exists());
    }
}
