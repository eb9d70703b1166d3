//! The CI workflows `init` writes: the examples users would copy
//! (`examples/github/pull-request.yml`, `examples/azure-pipelines.yml`,
//! which `scripts/lint-actions` lints), pointed at the folder of the
//! `.flow-ci.yaml` when that is not the repository root.

/// The GitHub Actions workflow, as `examples/github/pull-request.yml`.
const GITHUB: &str = include_str!("../../../examples/github/pull-request.yml");
/// The Azure Pipelines pipeline, as `examples/azure-pipelines.yml`.
const AZURE: &str = include_str!("../../../examples/azure-pipelines.yml");

/// Where `init --github` writes, from the repository root.
pub const GITHUB_PATH: &str = ".github/workflows/flow-ci.yml";
/// Where `init --azure-pipelines` writes, from the repository root.
pub const AZURE_PATH: &str = "azure-pipelines.yml";

/// A folder name that can go into YAML, a `hashFiles('…')` expression and
/// a shell path as it is.
pub fn is_plain_dir(dir: &str) -> bool {
    !dir.is_empty()
        && dir.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !dir.starts_with(['-', '/'])
        && !dir.split('/').any(|part| part == "..")
}

/// The GitHub workflow for a config in `dir` (from the repository root;
/// empty for the root itself). `dir` must be [`is_plain_dir`] when not empty.
pub fn github(dir: &str) -> String {
    let text = GITHUB.replacen(
        "# Copy to .github/workflows/flow-ci.yml.",
        "# Written by `flow-ci init --github`; the flows and gates are in .flow-ci.yaml.",
        1,
    );
    if dir.is_empty() {
        return text;
    }
    text.replacen(
        "          config: .flow-ci.yaml\n",
        &format!("          config: .flow-ci.yaml\n          working-directory: {dir}\n"),
        1,
    )
    .replacen("          path: .flow-ci/cache\n", &format!("          path: {dir}/.flow-ci/cache\n"), 1)
    .replace(
        "hashFiles('.flow-ci.yaml', '**/requirements.txt')",
        &format!("hashFiles('{dir}/.flow-ci.yaml', '{dir}/**/requirements.txt')"),
    )
    .replacen("          path: .flow-ci/report/\n", &format!("          path: {dir}/.flow-ci/report/\n"), 1)
}

/// The Azure Pipelines pipeline for a config in `dir` (as for [`github`]).
pub fn azure(dir: &str) -> String {
    let text = AZURE.replacen(
        "# flow-ci on Azure Pipelines: check the prompt flows a pull request changes.\n",
        "# flow-ci on Azure Pipelines: check the prompt flows a pull request changes.\n# Written by `flow-ci init --azure-pipelines`; the flows and gates are in .flow-ci.yaml.\n",
        1,
    );
    if dir.is_empty() {
        return text;
    }
    text.replacen(
        "      # workingDirectory: $(System.DefaultWorkingDirectory)\n",
        &format!("      workingDirectory: $(System.DefaultWorkingDirectory)/{dir}\n"),
        1,
    )
    .replacen("      path: .flow-ci/cache\n", &format!("      path: {dir}/.flow-ci/cache\n"), 1)
    .replace(".flow-ci.yaml,**/requirements.txt", &format!("{dir}/.flow-ci.yaml,{dir}/**/requirements.txt"))
    .replacen("  - publish: .flow-ci/report\n", &format!("  - publish: {dir}/.flow-ci/report\n"), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each line `github`/`azure` rewrites is in the example it starts
    /// from (an example edited without them would be written unchanged).
    #[test]
    fn every_rewrite_finds_its_line_in_the_examples() {
        let root = github("");
        assert!(root.contains("Written by `flow-ci init --github`") && !root.contains("Copy to"), "{root}");
        assert_eq!(root.lines().count(), GITHUB.lines().count());
        let sub = github("fixtures");
        assert_eq!(sub.matches("fixtures/").count(), 6, "{sub}");
        assert!(sub.contains("          working-directory: fixtures\n"));
        assert!(!sub.contains("'.flow-ci.yaml'"), "{sub}");
        let root = azure("");
        assert!(root.contains("Written by `flow-ci init --azure-pipelines`"), "{root}");
        assert_eq!(root.lines().count(), AZURE.lines().count() + 1);
        let sub = azure("fixtures");
        assert!(sub.contains("workingDirectory: $(System.DefaultWorkingDirectory)/fixtures\n"), "{sub}");
        assert!(sub.contains("      path: fixtures/.flow-ci/cache\n"), "{sub}");
        assert!(sub.contains("  - publish: fixtures/.flow-ci/report\n"), "{sub}");
        assert_eq!(sub.matches("fixtures/.flow-ci.yaml,fixtures/**/requirements.txt").count(), 2, "{sub}");
    }

    #[test]
    fn only_plain_folders_go_into_the_workflows() {
        assert!(is_plain_dir("fixtures"));
        assert!(is_plain_dir("apps/flows-1"));
        for bad in ["", "a b", "it's", "../up", "/abs", "-x", "a#b", "${{x}}"] {
            assert!(!is_plain_dir(bad), "{bad}");
        }
    }
}
