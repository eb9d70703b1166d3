//! What changed against the base: lines whose outputs differ from the base
//! run's, and unified diffs of the flow's prompt templates.

use serde_json::{Map, Value as Json};

use super::canonical;
use super::plan::PlannedFlow;
use crate::detect::git::{Git, GitError};
use crate::report::{ChangedLine, PromptDiff};
use exec::store::Store;

/// At most this many changed lines are sampled per flow.
const CHANGED_LINES_SHOWN: usize = 5;

/// The first lines whose outputs differ between the base run and this one.
pub(super) fn changed_lines(store: &Store, batch: &str, base_outputs: &[Map<String, Json>]) -> Vec<ChangedLine> {
    let head_outputs = store.outputs(batch).unwrap_or_default();
    let details = store.details(batch).unwrap_or_default();
    let number = |row: &Map<String, Json>| row.get("line_number").and_then(Json::as_u64);
    let mut changed = Vec::new();
    for head in &head_outputs {
        let Some(n) = number(head) else { continue };
        let Some(base) = base_outputs.iter().find(|b| number(b) == Some(n)) else { continue };
        if base != head {
            let inputs =
                details.iter().find(|d| d.line_number as u64 == n).map(|d| d.inputs.clone()).unwrap_or_default();
            let strip = |row: &Map<String, Json>| {
                row.iter().filter(|(k, _)| *k != "line_number").map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            changed.push(ChangedLine { line_number: n, inputs, base: strip(base), head: strip(head) });
            if changed.len() == CHANGED_LINES_SHOWN {
                break;
            }
        }
    }
    changed
}

/// Unified diffs of the flow's Jinja templates between the merge base and now.
pub(super) fn prompt_diffs(flow: &PlannedFlow, base: &str, head: Option<&str>) -> Result<Vec<PromptDiff>, GitError> {
    let git = Git::open(&flow.dir)?;
    let merge_base = git.merge_base(&git.resolve(base)?, &git.resolve(head.unwrap_or("HEAD"))?)?;
    let root = canonical(&git.root);
    let Ok(rel) = canonical(&flow.dir).strip_prefix(&root).map(|r| r.to_string_lossy().replace('\\', "/")) else {
        return Ok(vec![]);
    };
    let listing = String::from_utf8_lossy(&git.tree_listing(&merge_base, std::slice::from_ref(&rel))?).into_owned();
    let base_files: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| {
            let (meta, path) = l.split_once('\t')?;
            Some((path.to_string(), meta.split(' ').nth(2)?.to_string()))
        })
        .filter(|(p, _)| is_prompt(p))
        .collect();
    let ids: Vec<&str> = base_files.iter().map(|(_, id)| id.as_str()).collect();
    let base_texts: Vec<String> = git
        .read_objects(&ids)?
        .into_iter()
        .map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default())
        .collect();
    let mut names: Vec<String> = base_files.iter().map(|(p, _)| p.clone()).collect();
    for entry in std::fs::read_dir(&flow.dir).into_iter().flatten().flatten() {
        let path = format!("{rel}/{}", entry.file_name().to_string_lossy());
        if is_prompt(&path) && !names.contains(&path) {
            names.push(path);
        }
    }
    names.sort();
    let mut diffs = Vec::new();
    for name in names {
        let before = base_files.iter().position(|(p, _)| *p == name).map(|i| base_texts[i].clone()).unwrap_or_default();
        let after = std::fs::read_to_string(root.join(&name)).unwrap_or_default();
        if before != after {
            let diff = similar::TextDiff::from_lines(&before, &after)
                .unified_diff()
                .context_radius(3)
                .header("base", "head")
                .to_string();
            diffs.push(PromptDiff { file: name, diff });
        }
    }
    Ok(diffs)
}

fn is_prompt(path: &str) -> bool {
    path.ends_with(".jinja2") || path.ends_with(".jinja") || path.ends_with(".prompty")
}
