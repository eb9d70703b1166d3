//! Run names. A run name becomes a folder of the run store
//! (`.flow-ci/runs/<name>/`) and `--force` replaces that folder, so a name
//! must be a single, plain path component: never `..`, `/`, or empty.
//!
//! The rule is checked wherever a name enters: `--name`/`--run` flags, a
//! run file's `name:` and `run:`, names `check` generates, and every store
//! operation (defence in depth).

use std::fmt;

/// The longest name most file systems accept as one component.
pub const MAX_LEN: usize = 255;

/// The rule, as users read it in errors.
pub const RULE: &str =
    "a run name is 1 to 255 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit (it names a folder)";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidRunName {
    pub name: String,
}

impl fmt::Display for InvalidRunName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a valid run name: {RULE}", self.name.escape_debug())
    }
}

/// Checks `name` against `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 255 bytes.
/// `.` and `..` cannot match (they start with a dot).
pub fn check(name: &str) -> Result<&str, InvalidRunName> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && name.len() <= MAX_LEN { Ok(name) } else { Err(InvalidRunName { name: name.to_string() }) }
}

/// A clap value parser: a bad `--name` is a usage error (exit 2).
pub fn parse(name: &str) -> Result<String, String> {
    check(name).map(str::to_string).map_err(|_| RULE.to_string())
}

/// A name made from free text (a flow path, a folder name): characters
/// outside the rule become `-`, a leading non-alphanumeric gets a `r`, and a
/// name longer than `max_len` keeps its start and a hash of the whole so
/// names stay distinct.
pub fn sanitize(text: &str, max_len: usize) -> String {
    let mut name: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 'r');
    }
    if name.len() > max_len {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(text.as_bytes());
        let hash = base16ct::lower::encode_string(&digest[..8]);
        name.truncate(max_len.saturating_sub(hash.len() + 1).max(1));
        name.push('-');
        name.push_str(&hash);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_promptflow_style_names() {
        for ok in ["web_classification_variant_0_20240101_120000_000000", "a", "run-1.2", "0"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_anything_that_is_not_one_plain_component() {
        let long = "a".repeat(256);
        for bad in ["", ".", "..", "../..", "a/b", "a\\b", "/abs", ".hidden", "-x", "_x", "a b", "ä", "a\0", &long] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        assert!(check(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn sanitized_names_always_pass() {
        for text in ["flows/web classification", "../..", ".", "", "ü/ö", &"x/".repeat(300)] {
            let name = sanitize(text, MAX_LEN);
            assert!(check(&name).is_ok(), "{text:?} → {name:?}");
        }
        assert_ne!(sanitize(&"a".repeat(300), MAX_LEN), sanitize(&format!("{}b", "a".repeat(299)), MAX_LEN));
        assert!(sanitize(&"a".repeat(300), 100).len() <= 100);
    }
}
