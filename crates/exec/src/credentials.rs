//! CI credentials kept away from user code.
//!
//! The flow under review is untrusted: a pull request can change a python
//! node (or a requirement whose install runs code) to read the environment
//! and send the job's tokens anywhere. Workers and installers therefore
//! start without the CI host's own credentials. Model keys stay: the flow's
//! connections need them, and the flow's `environment_variables` are set
//! after this removal.

use std::process::Command;

/// The CI host's and cloud sign-in credentials, by exact name.
const CREDENTIALS: &[&str] = &[
    // GitHub Actions: the job token, its OIDC endpoint, the runtime and cache services.
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_CACHE_URL",
    // Azure Pipelines: the job's access token.
    "SYSTEM_ACCESSTOKEN",
    // Entra sign-in: service principal secrets, workload identity, managed identity.
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "IDENTITY_HEADER",
    "MSI_SECRET",
];

/// Whether `name` holds a CI credential: one of [`CREDENTIALS`], or an
/// action or task input carrying a token (`INPUT_GITHUB-TOKEN`,
/// `INPUT_ACCESSTOKEN`, ...).
pub fn is_credential(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    CREDENTIALS.contains(&upper.as_str()) || (upper.starts_with("INPUT_") && upper.contains("TOKEN"))
}

/// Removes every credential of this process's environment from `cmd`'s.
pub fn remove_from(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_credential) {
            cmd.env_remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_credentials_and_model_keys_are_not() {
        for name in ["GITHUB_TOKEN", "INPUT_GITHUB-TOKEN", "INPUT_GITHUB_TOKEN", "system_accesstoken", "MSI_SECRET"] {
            assert!(is_credential(name), "{name}");
        }
        for name in ["AZURE_OPENAI_API_KEY", "OPENAI_API_KEY", "AZURE_CLIENT_ID", "INPUT_CONFIG", "PATH"] {
            assert!(!is_credential(name), "{name}");
        }
    }
}
