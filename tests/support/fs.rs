//! Files for tests: copying fixture trees into scratch folders.

#![allow(dead_code)]

use std::path::Path;

/// Copies `src` into `dest` recursively, leaving out entries named in `skip`.
pub fn copy_tree(src: &Path, dest: &Path, skip: &[&str]) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let target = dest.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target, skip);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The JSON lines of `path` (a run's output.jsonl, details.jsonl); blank
/// lines skipped, and Python's `NaN` and `Infinity` tokens read as pf and
/// flow-ci write them (exec::nonfinite).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| exec::nonfinite::parse(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}
