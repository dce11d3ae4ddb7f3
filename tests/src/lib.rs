//! The end-to-end test harness: real processes on loopback, no mocks.
//!
//! - [`seaweed`]: a real S3 store (SeaweedFS, which enforces signatures, expiry and part
//!   checksums). CI starts one and names it in `VALET_TEST_S3`; otherwise each test starts its own.
//! - [`azurite`]: a real Azure Blob store (Azurite: SAS signatures, expiry, block MD5s),
//!   shared through `VALET_TEST_AZURE` like the S3 one.
//! - [`gcs`]: a GCS emulator (JSON API and signed-URL `PUT`s; it checks no signature, expiry or
//!   hash), shared through `VALET_TEST_GCS`.
//! - [`service`]: the real `valet-service serve` binary, one per test, on its own bucket.
//! - [`cli`]: the real `valet` binary, one data dir per test.
//! - [`api`]: the service's HTTP API called directly, for what the CLI does not show.
//! - [`store`]: the three kinds of store, and reading objects back from them to compare bytes.
//! - [`faults`]: a fault-injecting TCP proxy (noxious, a Toxiproxy port) to put between the
//!   client and the store or the service.
//! - [`files`]: random test files and their digests.
//! - [`oidc`]: a real OpenID Connect provider (node oidc-provider) and a real browser to sign
//!   in with, for single sign-on.
//! - [`link`]: the schedule of the wide-area link emulator (`valet-link`, `bench/wan.sh`): delay,
//!   rate cap and bounded queue of each direction, as pure functions of time.
//!
//! The binaries come from the same target dir as the test (`cargo build --bins` first; the
//! test command in README.md does it).

pub mod api;
pub mod azurite;
pub mod cli;
pub mod faults;
pub mod files;
pub mod gcs;
pub mod gui;
pub mod link;
pub mod oidc;
pub mod rclone_s3;
pub mod seaweed;
pub mod service;
pub mod store;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// Part size the tests use: S3's minimum, so multi-part files stay small.
pub const PART_SIZE: u64 = 5 * 1024 * 1024;

/// The large file of the tests: above the 200 MiB the foundation issue asks for, and not a
/// multiple of the part size, so the last part is short.
pub const MIB_210: u64 = 210 * 1024 * 1024 + 12_345;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A binary of this workspace, from the target dir this test runs from.
pub fn workspace_bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("VALET_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    // target/debug/deps/<test-binary> -> target/debug/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` before the end-to-end tests",
        bin.display()
    );
    bin
}

/// Makes ring the process's TLS crypto provider before any HTTP client is built (the workspace
/// builds reqwest without a provider of its own).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The endpoint of a store shared by every test, from the environment variable `var`
/// (`VALET_TEST_S3`, …) when it is set and not empty.
pub fn shared_endpoint(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .filter(|endpoint| !endpoint.is_empty())
}

/// A store a test started for itself, with the folder it works in: killed and reaped when
/// dropped.
pub struct OwnProcess {
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl OwnProcess {
    /// Owns `child` (and `dir`, removed after it stops).
    pub fn new(child: Child, dir: Option<tempfile::TempDir>) -> Self {
        Self { child, _dir: dir }
    }
}

impl Drop for OwnProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `url` gets any HTTP answer, or panics naming `what` after a minute.
pub fn wait_until_answers(what: &str, url: &str) {
    install_tls_provider();
    let probe = reqwest::blocking::Client::new();
    wait_for(what, Duration::from_secs(60), || {
        probe.get(url).send().ok().map(|_| ())
    });
}

/// A short random lowercase name, for buckets and accounts.
pub fn random_name(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{prefix}-{:012x}", h.finish() & 0xffff_ffff_ffff)
}
