//! A loopback Azure (fake_aml) plus Azurite for the datastore, and the
//! example repository to run flow-ci in against them.

#![allow(dead_code)]

use assert_cmd::Command;
use backend::azureml::blob::{Container, Credential};
use model::connection::Secret;

use super::azurite::{self, ACCOUNT, Azurite, KEY};
use super::fake_aml::{self, DatastoreAuth, FakeAml, Script};
use super::repo::{Pr, run};

pub struct Cloud {
    pub fake: FakeAml,
    pub azurite: Azurite,
    pub pr: Pr,
}

impl Cloud {
    /// `None` when Azurite is not installed (outside CI). A datastore
    /// without keys for flow-ci (identity-based, or `listSecrets`
    /// forbidden) is an Azurite that takes Entra tokens over https, whose
    /// test CA flow-ci trusts through `SSL_CERT_FILE` (read by
    /// rustls-native-certs under reqwest's rustls platform verifier).
    pub fn start(script: Script) -> Option<Cloud> {
        let azurite =
            if script.datastore == DatastoreAuth::AccountKey { azurite::start()? } else { azurite::start_oauth()? };
        let blob_url = format!("{}/{ACCOUNT}", azurite.url);
        let http = azurite.http();
        Container::new(&blob_url, ACCOUNT, fake_aml::CONTAINER, Credential::AccountKey(Secret::new(KEY.into())))
            .unwrap()
            .with_http(http.clone())
            .create()
            .unwrap();
        let fake = FakeAml::start(Script {
            account_key: KEY.into(),
            blob_url: Some(blob_url),
            blob_http: Some(http),
            ..script
        });
        Some(Cloud { fake, azurite, pr: Pr::new() })
    }

    /// The datastore's container, with the account key.
    pub fn container(&self) -> Container {
        Container::new(
            &format!("{}/{ACCOUNT}", self.azurite.url),
            ACCOUNT,
            fake_aml::CONTAINER,
            Credential::AccountKey(Secret::new(KEY.into())),
        )
        .unwrap()
        .with_http(self.azurite.http())
    }

    /// flow-ci in the repository, pointed at the fakes, with no Azure
    /// credentials from the environment the tests run in.
    pub fn flow_ci(&self) -> Command {
        let mut cmd = self.pr.command();
        for var in std::env::vars().map(|(k, _)| k) {
            if var.starts_with("AZURE") || var.starts_with("IDENTITY_") || var.starts_with("MSI_") {
                cmd.env_remove(var);
            }
        }
        cmd.envs(self.fake.env());
        cmd.env("FLOW_CI_BLOB_URL", format!("{}/{ACCOUNT}", self.azurite.url));
        if let Some(ca) = &self.azurite.ca {
            cmd.env("SSL_CERT_FILE", ca).env_remove("SSL_CERT_DIR");
        }
        // No managed identity endpoint: an unused loopback port.
        cmd.env("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9");
        cmd
    }

    pub fn run_create(&self, args: &[&str]) -> (Option<i32>, String, String) {
        run(self.flow_ci().args(["run", "create", "--backend", "azureml"]).args(args))
    }
}

pub fn assert_no_violations(fake: &FakeAml) {
    assert!(fake.violations().is_empty(), "the fake saw: {:#?}", fake.violations());
}
