//! Paths inside a repository: lexical normalization, containment (flows may
//! not reach outside the repository), and finding the repository root.

use std::path::{Component, Path, PathBuf};

/// Lexically resolves `.` and `..` (no file system access).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether `path` stays inside `root`, both lexically and after following
/// symlinks (a link pointing out of the repository is refused too).
pub fn is_inside(path: &Path, root: &Path) -> bool {
    let absolute = |p: &Path| std::path::absolute(p).map(|a| normalize(&a)).unwrap_or_else(|_| normalize(p));
    let root_abs = absolute(root);
    if !absolute(path).starts_with(&root_abs) {
        return false;
    }
    match (path.canonicalize(), root.canonicalize()) {
        (Ok(real), Ok(real_root)) => real.starts_with(real_root),
        _ => true,
    }
}

/// The nearest ancestor of `start` holding `.git` (a folder, or a file for
/// worktrees and submodules); `None` outside any repository.
pub fn find_repo_root(start: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(start).ok()?;
    let mut dir = if abs.is_dir() { Some(abs.as_path()) } else { abs.parent() };
    while let Some(d) = dir {
        if d.join(".git").exists() {
            return Some(d.to_path_buf());
        }
        dir = d.parent();
    }
    None
}

/// The root a path must stay inside: its git repository, else the current
/// folder when the path lies below it, else the path's own folder.
pub fn boundary_root(path: &Path) -> PathBuf {
    if let Some(root) = find_repo_root(path) {
        return root;
    }
    let abs = std::path::absolute(path).map(|p| normalize(&p)).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(cwd) = std::env::current_dir()
        && abs.starts_with(&cwd)
    {
        return cwd;
    }
    if abs.is_dir() { abs } else { abs.parent().map_or(abs.clone(), Path::to_path_buf) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_parents() {
        assert_eq!(normalize(Path::new("a/b/../c/./d")), PathBuf::from("a/c/d"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
    }

    #[test]
    fn inside_checks_are_lexical_and_symlink_aware() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("flows/a")).unwrap();
        assert!(is_inside(&root.join("flows/a/../b.py"), &root));
        assert!(!is_inside(&root.join("flows/a/../../../etc/passwd"), &root));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", root.join("flows/link")).unwrap();
            assert!(!is_inside(&root.join("flows/link/passwd"), &root));
        }
    }
}
