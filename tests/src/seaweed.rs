//! A real S3 store for the tests: SeaweedFS (`weed mini`), which enforces SigV4 signatures,
//! expiry and per-part checksums (recipes in docs/TESTING.md).
//!
//! When `VALET_TEST_S3` names a running one (`http://127.0.0.1:PORT`, access key `test`, secret
//! `testtest`, as `scripts/test-servers.sh` starts it), tests share it, each on its own bucket;
//! otherwise each test starts a private one and stops it when dropped.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{OwnProcess, free_port, repo_root, shared_endpoint, wait_until_answers};

/// Access key of the test store.
pub const ACCESS_KEY: &str = "test";
/// Secret key of the test store.
pub const SECRET_KEY: &str = "testtest";

/// A running S3 store.
pub struct SeaweedFs {
    /// `http://127.0.0.1:PORT` of its S3 API.
    pub endpoint: String,
    _process: Option<OwnProcess>,
}

impl SeaweedFs {
    /// The shared store named by `VALET_TEST_S3`, or a private one.
    pub fn shared_or_start() -> Self {
        shared_endpoint("VALET_TEST_S3").map_or_else(Self::start, |endpoint| Self {
            endpoint,
            _process: None,
        })
    }

    /// Starts a private `weed mini` with every port chosen free, and waits until S3 answers.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let s3_port = free_port();
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.config={}", config.display()),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            "-s3.port.iceberg=0".into(),
            // Small volumes, a fixed count: one bucket per test must not exhaust the volumes
            // weed mini would size from the free disk (see scripts/test-servers.sh).
            "-master.volumeSizeLimitMB=64".into(),
            "-volume.max=1000".into(),
            format!("-s3.port={s3_port}"),
        ];
        // weed mini has no port-0 mode: give every listener a free port of its own.
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
        let child = Command::new(weed_bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weed (install with scripts/test-servers.sh install)");
        let endpoint = format!("http://127.0.0.1:{s3_port}");
        let process = OwnProcess::new(child, Some(dir));
        wait_until_answers("SeaweedFS S3 to answer", &endpoint);
        Self {
            endpoint,
            _process: Some(process),
        }
    }
}

/// `WEED_BIN`, else the one `scripts/test-servers.sh install` put in `.tools/`, else `weed` on PATH.
fn weed_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("WEED_BIN") {
        return bin.into();
    }
    let local = repo_root().join(".tools/venv/bin/weed");
    if local.exists() { local } else { "weed".into() }
}
