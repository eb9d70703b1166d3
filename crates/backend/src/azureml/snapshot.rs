//! What `pfazure` uploads for a flow or a data file, and where: the files
//! (honoring `.amlignore`, else `.gitignore`, at the folder's root) and the
//! content hash azure-ai-ml names the upload folder with
//! (`LocalUpload/{hash}/...`), so an unchanged snapshot maps to the same
//! blobs and is not uploaded again.

use std::path::{Path, PathBuf};

use sha2::Digest;

use super::blob::{BlobError, Container};

/// azure-ai-ml's hash seed (`_asset_utils.get_object_hash`).
const HASH_SEED: &[u8] = b"Initialize for october 2021 AML CLI version";

/// Folders promptflow never uploads with a flow (`PromptflowIgnoreFile.IGNORE_FILE`
/// in promptflow's `_sdk/_utils`: `.git`, `.runs`, `__pycache__`; a flow at
/// a repository's root would otherwise upload the whole history), and flow-ci's own.
const ALWAYS_IGNORED: &[&str] = &[".git", "__pycache__", ".runs", ".flow-ci"];

/// Left out of run snapshots of python flows (`_ignore_tools_json` in
/// promptflow-azure's `_resolve_flow_and_session_id`): the runtime
/// regenerates it.
const TOOLS_JSON: &str = ".promptflow/flow.tools.json";

/// The metadata azure-ai-ml writes on the first blob once every file is up.
pub const UPLOAD_STATUS: (&str, &str) = ("upload_status", "completed");

#[derive(Debug)]
pub struct Snapshot {
    /// The folder or file uploaded.
    pub root: PathBuf,
    /// Files as (path below the root with `/`, absolute path), in hash order.
    pub files: Vec<(String, PathBuf)>,
    /// Hex SHA-256, as azure-ai-ml computes it.
    pub hash: String,
    /// The folder's name in the upload path (a staged copy keeps the flow's name).
    pub name: String,
}

impl Snapshot {
    /// Reads `path` (a folder or one file).
    pub fn of(path: &Path) -> std::io::Result<Snapshot> {
        let mut hasher = sha2::Sha256::new();
        hasher.update(HASH_SEED);
        let mut files = Vec::new();
        if path.is_dir() {
            let ignore = ignore_rules(path);
            let mut open = vec![path.canonicalize()?];
            hash_dir(path, path, &ignore, &mut hasher, &mut files, &mut open)?;
        } else {
            hasher.update(std::fs::read(path)?);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.push((name, path.to_path_buf()));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Snapshot { root: path.to_path_buf(), files, hash: base16ct::lower::encode_string(&hasher.finalize()), name })
    }

    /// The same files, uploaded under another folder name.
    pub fn named(self, name: &str) -> Snapshot {
        Snapshot { name: name.to_string(), ..self }
    }

    /// The blob folder: `LocalUpload/{hash}/{name}` for a folder,
    /// `LocalUpload/{hash}` for a file (its blob is `.../{file name}`).
    pub fn prefix(&self) -> String {
        if self.root.is_dir() {
            format!("LocalUpload/{}/{}", self.hash, self.name)
        } else {
            format!("LocalUpload/{}", self.hash)
        }
    }
}

/// `.amlignore` wins over `.gitignore`; only the root's file counts (azure-ai-ml's `get_ignore_file`).
fn ignore_rules(root: &Path) -> ignore::gitignore::Gitignore {
    let file = [".amlignore", ".gitignore"].iter().map(|n| root.join(n)).find(|p| p.is_file());
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    if let Some(file) = file {
        let _ = builder.add(file);
    }
    builder.build().unwrap_or_else(|_| ignore::gitignore::Gitignore::empty())
}

/// azure-ai-ml's `_get_dir_hash`: entries sorted by lower-cased path; each
/// adds its name, then its bytes (files) or its entries (folders).
fn hash_dir(
    root: &Path,
    dir: &Path,
    ignore: &ignore::gitignore::Gitignore,
    hasher: &mut sha2::Sha256,
    files: &mut Vec<(String, PathBuf)>,
    open: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort_by_key(|p| p.to_string_lossy().to_lowercase());
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let is_dir = path.is_dir();
        if ALWAYS_IGNORED.contains(&name.as_str())
            || ignore.matched(&path, is_dir).is_ignore()
            || path.strip_prefix(root).is_ok_and(|rel| rel == Path::new(TOOLS_JSON))
        {
            continue;
        }
        // A link back to a folder being walked (`data/loop -> .`) would
        // never end: it is left out, as a folder that cannot be copied.
        let real = if is_dir { Some(path.canonicalize()?) } else { None };
        if let Some(real) = real.as_ref().filter(|r| open.contains(r)) {
            tracing::warn!("{} links back to {}; left out of the snapshot", path.display(), real.display());
            continue;
        }
        hasher.update(name.as_bytes());
        if let Some(real) = real {
            open.push(real);
            hash_dir(root, &path, ignore, hasher, files, open)?;
            open.pop();
        } else if path.is_file() {
            hasher.update(std::fs::read(&path)?);
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            files.push((rel, path));
        }
    }
    Ok(())
}

/// What an upload did.
#[derive(Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// The blob folder (`LocalUpload/{hash}/{name}`).
    pub prefix: String,
    /// Files written; 0 when the snapshot was already there.
    pub written: usize,
}

/// Uploads `snapshot` unless its first blob already says `upload_status:
/// completed`; marks that blob once every file is written, so an upload cut
/// short is redone rather than taken as complete.
pub fn upload(container: &Container, snapshot: &Snapshot) -> Result<Uploaded, UploadError> {
    let prefix = snapshot.prefix();
    let blob = |rel: &str| format!("{prefix}/{rel}");
    let Some((first, _)) = snapshot.files.first() else {
        return Ok(Uploaded { prefix, written: 0 });
    };
    let indicator = blob(first);
    let done = container
        .metadata(&indicator)?
        .is_some_and(|m| m.iter().any(|(k, v)| (k.as_str(), v.as_str()) == UPLOAD_STATUS));
    if done {
        tracing::info!("{} is already uploaded ({prefix})", snapshot.root.display());
        return Ok(Uploaded { prefix, written: 0 });
    }
    for (rel, path) in &snapshot.files {
        let bytes = std::fs::read(path).map_err(|e| UploadError::Read { path: path.clone(), source: e })?;
        container.put(&blob(rel), bytes)?;
    }
    container.set_metadata(&indicator, &[UPLOAD_STATUS])?;
    tracing::info!("uploaded {} file(s) of {} to {prefix}", snapshot.files.len(), snapshot.root.display());
    Ok(Uploaded { prefix, written: snapshot.files.len() })
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Blob(#[from] BlobError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_link_back_up_the_tree_ends_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data/inner")).unwrap();
        std::fs::write(dir.path().join("data/a.jsonl"), "{}\n").unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("data/loop")).unwrap();
        std::os::unix::fs::symlink("../..", dir.path().join("data/inner/up")).unwrap();
        let snapshot = Snapshot::of(dir.path()).unwrap();
        let names: Vec<&str> = snapshot.files.iter().map(|(rel, _)| rel.as_str()).collect();
        assert_eq!(names, ["data/a.jsonl"]);
    }

    /// Hashes computed by azure-ai-ml 1.35.2 itself
    /// (`_asset_utils.get_object_hash(path, get_ignore_file(path))`) on a
    /// clean checkout of the fixtures and on the tree built below.
    #[test]
    fn hashes_match_azure_ai_ml() {
        // The workspace root holds the fixtures; this crate is two folders down.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/flows");
        let cases = [
            ("web-classification", "5eba4053b6f435c3496829d9e9d912dced5e17a68a263659e84bc7a3cffedd49"),
            ("web-classification/data.jsonl", "91ab96e3f07319504279643da1e0e9b7c3d488204266ee5095eace9f40d73b87"),
        ];
        for (path, expected) in cases {
            assert_eq!(Snapshot::of(&fixtures.join(path)).unwrap().hash, expected, "{path}");
        }
        // Mixed-case names, a nested and an empty folder, an .amlignore.
        let dir = tempfile::tempdir().unwrap();
        let flow = dir.path().join("flow");
        std::fs::create_dir_all(flow.join("sub")).unwrap();
        std::fs::create_dir_all(flow.join("emptydir")).unwrap();
        for (name, text) in [
            ("B.txt", "b\n"),
            ("a.txt", "a\n"),
            ("sub/Z.py", "z = 1\n"),
            ("sub/y.py", "y = 2\n"),
            (".amlignore", "*.log\n"),
            ("x.log", "noise\n"),
        ] {
            std::fs::write(flow.join(name), text).unwrap();
        }
        let snapshot = Snapshot::of(&flow).unwrap();
        assert_eq!(snapshot.hash, "c301814e49cc3d961c147e945ac75379ca0f21cdcd03df7d947b6014dfad0b3d");
        let names: Vec<&str> = snapshot.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [".amlignore", "a.txt", "B.txt", "sub/y.py", "sub/Z.py"]);
    }

    #[test]
    fn ignore_files_and_caches_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let flow = dir.path().join("flow");
        std::fs::create_dir_all(flow.join(".git/objects")).unwrap();
        std::fs::write(flow.join(".git/objects/ab"), "history").unwrap();
        std::fs::create_dir_all(flow.join(".promptflow")).unwrap();
        std::fs::write(flow.join(".promptflow/flow.tools.json"), "{}").unwrap();
        std::fs::create_dir_all(flow.join("__pycache__")).unwrap();
        std::fs::write(flow.join("__pycache__/x.pyc"), "x").unwrap();
        std::fs::write(flow.join("flow.dag.yaml"), "nodes: []\n").unwrap();
        std::fs::write(flow.join("secret.env"), "KEY=1\n").unwrap();
        std::fs::write(flow.join(".amlignore"), "*.env\n").unwrap();
        let snapshot = Snapshot::of(&flow).unwrap();
        let names: Vec<&str> = snapshot.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [".amlignore", "flow.dag.yaml"]);
        assert!(snapshot.prefix().starts_with("LocalUpload/") && snapshot.prefix().ends_with("/flow"));
    }
}
