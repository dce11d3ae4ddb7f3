//! A real S3 store for the tests: SeaweedFS (`weed mini`), which enforces SigV4 signatures,
//! expiry and per-part checksums (recipes in docs/TESTING.md).
//!
//! When `VALET_TEST_S3` names a running one (`http://127.0.0.1:PORT`, access key `test`, secret
//! `testtest`, as `scripts/test-servers.sh` starts it), tests share it, each on its own bucket;
//! otherwise each test starts a private one and stops it when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, repo_root, wait_for};

/// Access key of the test store.
pub const ACCESS_KEY: &str = "test";
/// Secret key of the test store.
pub const SECRET_KEY: &str = "testtest";

/// A running S3 store.
pub struct SeaweedFs {
    /// `http://127.0.0.1:PORT` of its S3 API.
    pub endpoint: String,
    process: Option<(Child, tempfile::TempDir)>,
}

impl SeaweedFs {
    /// The shared store named by `VALET_TEST_S3`, or a private one.
    pub fn shared_or_start() -> Self {
        match std::env::var("VALET_TEST_S3") {
            Ok(endpoint) if !endpoint.is_empty() => Self {
                endpoint,
                process: None,
            },
            _ => Self::start(),
        }
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
        crate::install_tls_provider();
        let probe = reqwest::blocking::Client::new();
        wait_for("SeaweedFS S3 to answer", Duration::from_secs(60), || {
            probe.get(&endpoint).send().ok().map(|_| ())
        });
        Self {
            endpoint,
            process: Some((child, dir)),
        }
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        if let Some((child, _dir)) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
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
