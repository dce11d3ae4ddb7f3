//! A GCS emulator for the tests: gcp-storage-emulator (PyPI 2026.7.19), the one whose JSON API
//! (objects insert, list, get, compose, delete) behaves like GCS for what the service uses, and
//! which takes the XML-API `PUT` of a V4 signed URL.
//!
//! What it cannot prove, and no GCS emulator can: it checks neither signed-URL signatures nor
//! their expiry, nor `Content-MD5` / `x-goog-hash` on a `PUT`. Signing is checked against
//! Google's published vectors in the service's unit tests; integrity is checked by the service
//! itself at completion (the MD5 the emulator computes of each part object must be the one
//! signed into its key), which the tests exercise here.
//!
//! When `VALET_TEST_GCS` names a running one (`http://127.0.0.1:PORT`), tests share it, each on
//! its own bucket; otherwise each test starts a private one and stops it when dropped.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{OwnProcess, free_port, repo_root, shared_endpoint, wait_until_answers};

/// The service account key the tests sign with: the dummy one Google publishes with its
/// signing conformance tests (no emulator checks signatures anyway).
pub fn service_account_file() -> PathBuf {
    repo_root().join("crates/valet-service/src/store/testdata/gcs-conformance-service-account.json")
}

/// A running GCS emulator.
pub struct GcsEmulator {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _process: Option<OwnProcess>,
}

impl GcsEmulator {
    /// The shared emulator named by `VALET_TEST_GCS`, or a private one.
    pub fn shared_or_start() -> Self {
        shared_endpoint("VALET_TEST_GCS").map_or_else(Self::start, |endpoint| Self {
            endpoint,
            _process: None,
        })
    }

    /// Starts a private emulator in memory and waits until it answers.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(emulator_bin())
            .args([
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--in-memory",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gcp-storage-emulator (install with scripts/test-servers.sh install)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let process = OwnProcess::new(child, Some(dir));
        wait_until_answers(
            "the GCS emulator to answer",
            &format!("{endpoint}/storage/v1/b"),
        );
        Self {
            endpoint,
            _process: Some(process),
        }
    }
}

fn emulator_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("GCS_EMULATOR_BIN") {
        return bin.into();
    }
    repo_root().join(".tools/venv/bin/gcp-storage-emulator")
}
