//! A real Azure Blob store for the tests: Azurite (npm `azurite` 3.35.0, the last release for
//! node 20), which enforces SAS signatures and expiry, permissions, and each block's
//! `Content-MD5`. It does not support `x-ms-content-crc64` (refused in strict mode, ignored in
//! loose mode), so the CRC-64 path is covered by unit tests only.
//!
//! When `VALET_TEST_AZURE` names a running one (`http://127.0.0.1:PORT/devstoreaccount1`, as
//! `scripts/test-servers.sh` starts it), tests share it, each on its own container; otherwise
//! each test starts a private one and stops it when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{OwnProcess, repo_root, shared_endpoint};

/// Azurite's account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key (not a secret).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service.
pub struct Azurite {
    /// `http://127.0.0.1:PORT/devstoreaccount1`: the account's blob endpoint.
    pub endpoint: String,
    _process: Option<OwnProcess>,
}

impl Azurite {
    /// The shared store named by `VALET_TEST_AZURE`, or a private one.
    pub fn shared_or_start() -> Self {
        shared_endpoint("VALET_TEST_AZURE").map_or_else(Self::start, |endpoint| Self {
            endpoint,
            _process: None,
        })
    }

    /// Starts a private Azurite in memory on a port of its choosing.
    pub fn start() -> Self {
        let mut child = Command::new(azurite_bin())
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--disableTelemetry",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite-blob (install with scripts/test-servers.sh install)");
        let stdout = child.stdout.take().unwrap();
        let process = OwnProcess::new(child, None);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("http://127.0.0.1:") {
                    let url: String = line[at..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    let _ = tx.send(url);
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("Azurite printed its address");
        Self {
            endpoint: format!("{}/{ACCOUNT}", url.trim_end_matches('/')),
            _process: Some(process),
        }
    }
}

/// `AZURITE_BIN`, else the one `scripts/test-servers.sh install` put in `.tools/`.
fn azurite_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("AZURITE_BIN") {
        return bin.into();
    }
    repo_root().join(".tools/azurite/node_modules/.bin/azurite-blob")
}
