//! Azurite (npm), the blob storage emulator, started on a free loopback
//! port for one test and stopped when dropped. `scripts/test` installs it
//! into target/azurite; without it a test is skipped (and fails under
//! CI=true, where it must run).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The emulator's published account and key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    child: Child,
    /// `http://127.0.0.1:PORT` (accounts are path-style below it), or
    /// `https://` for [`start_oauth`].
    pub url: String,
    /// The test CA (PEM) that signed an https Azurite's certificate.
    pub ca: Option<PathBuf>,
    _data: tempfile::TempDir,
}

impl Azurite {
    /// An HTTP client for it: trusting the test CA when it speaks https.
    pub fn http(&self) -> reqwest::blocking::Client {
        let mut builder = reqwest::blocking::Client::builder();
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).unwrap();
            builder = builder.tls_certs_merge([reqwest::Certificate::from_pem(&pem).unwrap()]);
        }
        builder.build().unwrap()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start() -> Option<Azurite> {
    launch(false)
}

/// Azurite as an identity-based datastore's account: https (a certificate
/// for 127.0.0.1 signed by a test CA made here with openssl) and
/// `--oauth basic`, where a bearer token must be a JWT for storage
/// (`aud` https://storage.azure.com, an Entra `iss`, valid `nbf`/`exp`;
/// Azurite's `BlobTokenAuthenticator`, which accepts OAuth over https only).
/// Shared Key still works, for the test's own reads.
pub fn start_oauth() -> Option<Azurite> {
    launch(true)
}

/// A CA and a server certificate for 127.0.0.1 signed by it (webpki, under
/// rustls, refuses a CA certificate as the server's own).
fn test_ca(dir: &Path) -> bool {
    let openssl = |args: &[&str]| {
        Command::new("openssl").args(args).current_dir(dir).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=flow-ci test CA"],
        ]
        .concat(),
    ) && openssl(&[&["req"], &ec[..], &["-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]].concat())
        && openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ])
}

fn launch(oauth: bool) -> Option<Azurite> {
    let bin = std::env::var_os("FLOW_CI_AZURITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/azurite/node_modules/.bin/azurite-blob"));
    if !bin.exists() {
        assert!(std::env::var_os("CI").is_none(), "Azurite is missing at {} (scripts/test installs it)", bin.display());
        eprintln!("skipped: Azurite is not installed at {} (scripts/test installs it)", bin.display());
        return None;
    }
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(bin);
    command
        .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--skipApiVersionCheck", "--location"])
        .arg(data.path());
    let mut ca = None;
    if oauth {
        let tls = data.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        if !test_ca(&tls) {
            assert!(std::env::var_os("CI").is_none(), "openssl could not make a test certificate");
            eprintln!("skipped: openssl could not make a test certificate");
            return None;
        }
        command.args(["--oauth", "basic", "--cert"]).arg(tls.join("cert.pem")).arg("--key").arg(tls.join("key.pem"));
        ca = Some(tls.join("ca.pem"));
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://") || w.starts_with("https://")) {
            let url = url.trim_end_matches('/').to_string();
            // Keep draining its output so Azurite never blocks on a full pipe.
            std::thread::spawn(move || for _ in reader.lines() {});
            return Some(Azurite { child, url, ca, _data: data });
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("Azurite did not start");
}
