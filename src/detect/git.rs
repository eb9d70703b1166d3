//! Git, by shelling out to the `git` the user's CI already has: it handles
//! shallow and partial clones, credentials and `safe.directory` exactly like
//! the checkout step that produced the repository.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("{} is not inside a git repository", path.display())]
    NotARepo { path: PathBuf },
    #[error("unknown revision `{rev}`{}", shallow_note(*shallow))]
    UnknownRev { rev: String, shallow: bool },
    #[error("`{base}` and `{head}` have no common ancestor{}", shallow_note(*shallow))]
    NoMergeBase { base: String, head: String, shallow: bool },
    #[error("git {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
}

/// The fetch that brings `rev` into the clone: `origin/main` and
/// `refs/remotes/origin/main` are the remote's `main`.
fn fetch_command(rev: &str) -> String {
    let branch = rev.strip_prefix("refs/remotes/").unwrap_or(rev);
    let branch = branch.strip_prefix("origin/").unwrap_or(branch);
    format!("git fetch origin {branch}")
}

fn shallow_note(shallow: bool) -> &'static str {
    if shallow { " in this shallow clone" } else { "" }
}

impl GitError {
    /// How to fix it, shown under the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            GitError::UnknownRev { shallow: true, rev } | GitError::NoMergeBase { shallow: true, base: rev, .. } => {
                Some(format!(
                    "the base commit is not in this clone; fetch it (`{}`) or check out with full history (`actions/checkout` with `fetch-depth: 0`)",
                    fetch_command(rev)
                ))
            }
            GitError::UnknownRev { rev, .. } => {
                Some(format!("check the name, or fetch it first (`{}`)", fetch_command(rev)))
            }
            GitError::NotARepo { .. } => Some("run flow-ci inside the repository (or pass -C <repo>)".into()),
            _ => None,
        }
    }
}

/// A file changed between two trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Added(String),
    Modified(String),
    Deleted(String),
    Renamed { from: String, to: String },
}

impl Change {
    /// Every path this change touches (both sides of a rename).
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Change::Added(p) | Change::Modified(p) | Change::Deleted(p) => vec![p],
            Change::Renamed { from, to } => vec![from, to],
        }
    }
}

/// A repository, addressed by its top-level folder.
pub struct Git {
    pub root: PathBuf,
}

impl Git {
    pub fn open(dir: &Path) -> Result<Git, GitError> {
        let out = git_in(dir, &["rev-parse", "--show-toplevel"]).map_err(|e| match e {
            GitError::Failed { .. } => GitError::NotARepo { path: dir.to_path_buf() },
            other => other,
        })?;
        let root = String::from_utf8_lossy(&out).trim_end_matches(['\n', '\r']).to_string();
        Ok(Git { root: PathBuf::from(root) })
    }

    fn run(&self, args: &[&str]) -> Result<Vec<u8>, GitError> {
        git_in(&self.root, args)
    }

    pub fn is_shallow(&self) -> bool {
        self.run(&["rev-parse", "--is-shallow-repository"]).is_ok_and(|o| o.starts_with(b"true"))
    }

    /// The commit `rev` names. A bare branch name that only exists on
    /// `origin` (CI checkouts of a PR) is found there too.
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        for candidate in [rev.to_string(), format!("origin/{rev}")] {
            let spec = format!("{candidate}^{{commit}}");
            if let Ok(out) = self.run(&["rev-parse", "--verify", "--quiet", "--end-of-options", &spec]) {
                return Ok(String::from_utf8_lossy(&out).trim().to_string());
            }
        }
        Err(GitError::UnknownRev { rev: rev.to_string(), shallow: self.is_shallow() })
    }

    /// The branch `origin/HEAD` points at (the remote's default branch, as a clone records it).
    pub fn remote_default_branch(&self) -> Option<String> {
        let out = self.run(&["symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"]).ok()?;
        let name = String::from_utf8_lossy(&out).trim().to_string();
        name.strip_prefix("origin/").map(str::to_string).filter(|b| !b.is_empty())
    }

    /// The checked-out branch; `None` on a detached HEAD.
    pub fn current_branch(&self) -> Option<String> {
        let out = self.run(&["symbolic-ref", "--quiet", "--short", "HEAD"]).ok()?;
        Some(String::from_utf8_lossy(&out).trim().to_string()).filter(|b| !b.is_empty())
    }

    pub fn merge_base(&self, base: &str, head: &str) -> Result<String, GitError> {
        match self.run(&["merge-base", base, head]) {
            Ok(out) => Ok(String::from_utf8_lossy(&out).trim().to_string()),
            Err(GitError::Failed { .. }) => {
                Err(GitError::NoMergeBase { base: base.into(), head: head.into(), shallow: self.is_shallow() })
            }
            Err(e) => Err(e),
        }
    }

    /// What changed from `from` to `to` (or to the working tree, untracked
    /// files included, when `to` is `None`) and every file at the head side.
    /// The git commands run in parallel: on large repositories each one
    /// mostly waits on the file system.
    pub fn compare(&self, from: &str, to: Option<&str>) -> Result<Comparison, GitError> {
        std::thread::scope(|scope| {
            let diff = scope.spawn(|| {
                let mut args =
                    vec!["-c", "core.quotepath=off", "diff", "--name-status", "-z", "-M", "--no-ext-diff", from];
                args.extend(to);
                self.run(&args).map(|out| parse_name_status(&out))
            });
            let untracked = to.is_none().then(|| {
                scope.spawn(|| self.run(&["ls-files", "-z", "--others", "--exclude-standard"]).map(|o| split_z(&o)))
            });
            let mut files = self.files(to)?;
            let mut changes = diff.join().map_err(|_| thread_died())??;
            if let Some(handle) = untracked {
                let untracked = handle.join().map_err(|_| thread_died())??;
                changes.extend(untracked.iter().cloned().map(Change::Added));
                files.extend(untracked.into_iter().map(|path| FileEntry { path, blob: None }));
            }
            Ok(Comparison { changes, files })
        })
    }

    /// Every file at `rev` with its blob id, or the tracked files of the
    /// working tree (no blob ids) when `None`.
    fn files(&self, rev: Option<&str>) -> Result<Vec<FileEntry>, GitError> {
        match rev {
            Some(rev) => {
                let out = self.run(&["ls-tree", "-r", "-z", "--full-tree", rev])?;
                // `<mode> SP <type> SP <object> TAB <path>`
                Ok(split_z(&out)
                    .into_iter()
                    .filter_map(|entry| {
                        let (meta, path) = entry.split_once('\t')?;
                        let blob = meta.split(' ').nth(2)?.to_string();
                        Some(FileEntry { path: path.to_string(), blob: Some(blob) })
                    })
                    .collect())
            }
            None => Ok(split_z(&self.run(&["ls-files", "-z", "--cached"])?)
                .into_iter()
                .map(|path| FileEntry { path, blob: None })
                .collect()),
        }
    }

    /// `ls-tree -r` of `rev` limited to `paths`: blob ids that change when,
    /// and only when, a file's content at `rev` changes.
    pub fn tree_listing(&self, rev: &str, paths: &[String]) -> Result<Vec<u8>, GitError> {
        let mut args = vec!["ls-tree", "-r", "--full-tree", rev, "--"];
        args.extend(paths.iter().map(String::as_str));
        self.run(&args)
    }

    /// Checks out `commit` into a new detached worktree at `path`.
    pub fn add_worktree(&self, path: &Path, commit: &str) -> Result<(), GitError> {
        let target = path.to_string_lossy();
        self.run(&["worktree", "add", "--detach", "--quiet", &target, commit]).map(|_| ())
    }

    /// Removes a worktree made by [`Git::add_worktree`].
    pub fn remove_worktree(&self, path: &Path) -> Result<(), GitError> {
        let target = path.to_string_lossy();
        self.run(&["worktree", "remove", "--force", &target]).map(|_| ())
    }

    /// Reads objects by id through one `git cat-file --batch` process, in
    /// order; missing ones are `None`. Ids, not `rev:path` names: git resolves
    /// a path by walking trees from the root, which is 30x slower in bulk.
    pub fn read_objects(&self, ids: &[&str]) -> Result<Vec<Option<Vec<u8>>>, GitError> {
        let mut child = Command::new("git")
            .args(["cat-file", "--batch"])
            .current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(GitError::Spawn)?;
        let mut stdin = child.stdin.take().ok_or_else(|| GitError::Spawn(std::io::Error::other("no stdin")))?;
        let requests: String = ids.iter().map(|id| format!("{id}\n")).collect();
        // Write from another thread: git answers while we still send.
        let writer = std::thread::spawn(move || stdin.write_all(requests.as_bytes()));
        let stdout = child.stdout.take().ok_or_else(|| GitError::Spawn(std::io::Error::other("no stdout")))?;
        let mut reader = BufReader::new(stdout);
        let mut objects = Vec::with_capacity(ids.len());
        for _ in ids {
            let mut header = String::new();
            if reader.read_line(&mut header).map_err(GitError::Spawn)? == 0 {
                break;
            }
            let mut parts = header.split_whitespace();
            let (Some(_), Some(kind), Some(size)) = (parts.next(), parts.next(), parts.next()) else {
                objects.push(None); // "<id> missing"
                continue;
            };
            let size: usize = size.parse().unwrap_or(0);
            let mut body = vec![0; size + 1];
            reader.read_exact(&mut body).map_err(GitError::Spawn)?;
            body.pop();
            objects.push((kind == "blob").then_some(body));
        }
        let _ = writer.join();
        let _ = child.wait();
        Ok(objects)
    }
}

/// The result of [`Git::compare`].
pub struct Comparison {
    pub changes: Vec<Change>,
    pub files: Vec<FileEntry>,
}

fn thread_died() -> GitError {
    GitError::Spawn(std::io::Error::other("a git reader thread panicked"))
}

/// A file in a listing; `blob` is its object id when listed from a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub blob: Option<String>,
}

fn git_in(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(GitError::Spawn)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(GitError::Failed { args: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

fn split_z(bytes: &[u8]) -> Vec<String> {
    bytes.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Parses `git diff --name-status -z`: `STATUS\0path\0` or `R100\0from\0to\0`.
fn parse_name_status(bytes: &[u8]) -> Vec<Change> {
    let fields = split_z(bytes);
    let mut changes = Vec::new();
    let mut it = fields.into_iter();
    while let Some(status) = it.next() {
        let Some(path) = it.next() else { break };
        let change = match status.chars().next() {
            Some('A') => Change::Added(path),
            Some('D') => Change::Deleted(path),
            Some('R') => match it.next() {
                Some(to) => Change::Renamed { from: path, to },
                None => break,
            },
            // Copies keep the source; the copy is new.
            Some('C') => match it.next() {
                Some(to) => Change::Added(to),
                None => break,
            },
            _ => Change::Modified(path),
        };
        changes.push(change);
    }
    changes
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_fetch_hint_names_the_remote_branch_once() {
        assert_eq!(fetch_command("origin/mian"), "git fetch origin mian");
        assert_eq!(fetch_command("refs/remotes/origin/main"), "git fetch origin main");
        assert_eq!(fetch_command("v1.2.3"), "git fetch origin v1.2.3");
    }
    use super::*;

    #[test]
    fn name_status_handles_renames_and_spaces() {
        let raw = b"M\0a b/flow.dag.yaml\0R087\0old/x.py\0new dir/x.py\0D\0gone.txt\0A\0n.py\0C100\0s.py\0t.py\0";
        assert_eq!(
            parse_name_status(raw),
            vec![
                Change::Modified("a b/flow.dag.yaml".into()),
                Change::Renamed { from: "old/x.py".into(), to: "new dir/x.py".into() },
                Change::Deleted("gone.txt".into()),
                Change::Added("n.py".into()),
                Change::Added("t.py".into()),
            ]
        );
    }
}
