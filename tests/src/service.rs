//! The real `valet-service serve`, one per test, with its own config, database and bucket.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::seaweed::{ACCESS_KEY, SECRET_KEY};
use crate::store::{StoreBucket, StoreKind, TestStoreEndpoint};
use crate::{free_port, random_name, workspace_bin};

/// Settings a test may change; the rest are the deployment defaults.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// `keys.ttl`, e.g. "10m" or "2s".
    pub key_ttl: String,
    /// `uploads.abandon_after`.
    pub abandon_after: String,
    /// `uploads.sweep_every`.
    pub sweep_every: String,
    /// Log filter of the service (`VALET_LOG`).
    pub log: String,
    /// `store.verify`: "checksum" or "read-back".
    pub verify: String,
    /// `store.max_parts`: fewer parts per upload than the store allows.
    pub max_parts: Option<u32>,
    /// More of the config file, appended as written (`[[enrollment]]` entries, say).
    pub extra_config: String,
    /// The store endpoint the service is configured with instead of the store's own: a fault
    /// proxy in front of it (`http://127.0.0.1:PORT`). S3 keys sign the host, so the client
    /// then connects to the proxy; the test still reads the bucket straight from the store.
    pub store_endpoint: Option<String>,
    /// `store.tag_objects`.
    pub tag_objects: bool,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            key_ttl: "10m".into(),
            abandon_after: "24h".into(),
            sweep_every: "10m".into(),
            log: "info".into(),
            verify: "checksum".into(),
            max_parts: None,
            extra_config: String::new(),
            store_endpoint: None,
            tag_objects: true,
        }
    }
}

/// A running service.
pub struct Service {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bucket it writes to.
    pub bucket: String,
    /// The store it writes to.
    pub store_endpoint: String,
    /// Which kind of store that is.
    pub store_kind: StoreKind,
    config: PathBuf,
    stderr_log: PathBuf,
    log_filter: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts a service on a fresh bucket (container) of `store` and waits for its ready line.
    pub fn start(store: &impl TestStoreEndpoint, options: ServiceOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bucket = random_name("valet");
        let config = dir.path().join("valet.toml");
        let port = free_port();
        let store_section = store_section(store, &bucket, &options, dir.path());
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"

[keys]
ttl = "{key_ttl}"

[uploads]
abandon_after = "{abandon_after}"
sweep_every = "{sweep_every}"

{store_section}
{extra}"#,
                data = dir.path().display(),
                key_ttl = options.key_ttl,
                abandon_after = options.abandon_after,
                sweep_every = options.sweep_every,
                extra = options.extra_config,
            ),
        )
        .unwrap();
        let stderr_log = dir.path().join("service.log");
        let (child, url) = spawn_serve(&config, &stderr_log, &options.log);
        Self {
            url,
            bucket,
            store_endpoint: store.endpoint().to_owned(),
            store_kind: store.kind(),
            config,
            stderr_log,
            log_filter: options.log,
            child,
            _dir: dir,
        }
    }

    /// Adds an account with this password.
    pub fn add_user(&self, name: &str, password: &str) {
        let mut child = self
            .admin(&["user", "add", name, "--password-stdin"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "user add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds an account and returns a new API token for it.
    pub fn add_user_with_token(&self, name: &str) -> String {
        self.add_user(name, &format!("{name}-password-{}", random_name("pw")));
        let out = self.admin(&["token", "issue", name]).output().unwrap();
        assert!(
            out.status.success(),
            "token issue {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(
            !token.is_empty() && !token.contains(char::is_whitespace),
            "token issue prints the token alone"
        );
        token
    }

    /// The audit log, one JSON object per event.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.admin_json(&["audit", "--json"])
    }

    /// `valet-service ARGS` (a `--json` listing), one value per line of its output.
    pub fn admin_json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let out = self.admin(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("--json prints JSON lines"))
            .collect()
    }

    /// Everything the service logged to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The bucket, as the test reads it with the store's own credentials.
    pub fn store(&self) -> StoreBucket {
        StoreBucket::of(self.store_kind, &self.store_endpoint, &self.bucket)
    }

    /// The config file, for admin commands.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Stops the service with SIGKILL (a crash, as a test wants it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the service again after [`Service::kill`]: same config, port, database and
    /// bucket; waits for its ready line. Its log goes on in the same file.
    pub fn restart(&mut self) {
        let (child, url) = spawn_serve(&self.config, &self.stderr_log, &self.log_filter);
        self.child = child;
        assert_eq!(url, self.url, "the service came back on the same address");
    }

    /// `valet-service ARGS --config …`, the administrator's commands, stdout and stderr piped.
    pub fn admin(&self, args: &[&str]) -> Command {
        let mut command = Command::new(workspace_bin("valet-service"));
        command.args(args).arg("--config").arg(&self.config);
        command
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `[store]` section for `store`, each on bucket (container) `bucket`; credentials files
/// go to `dir`.
fn store_section(
    store: &impl TestStoreEndpoint,
    bucket: &str,
    options: &ServiceOptions,
    dir: &Path,
) -> String {
    let endpoint = options
        .store_endpoint
        .as_deref()
        .unwrap_or(store.endpoint());
    let mut common = format!(
        "[store]\nendpoint = \"{endpoint}\"\nbucket = \"{bucket}\"\nprefix = \"users\"\n\
         create_bucket = true\nverify = \"{}\"\ntag_objects = {}\n",
        options.verify, options.tag_objects
    );
    if let Some(max_parts) = options.max_parts {
        common.push_str(&format!("max_parts = {max_parts}\n"));
    }
    match store.kind() {
        StoreKind::S3 => {
            format!("{common}kind = \"s3\"\nregion = \"us-east-1\"\npath_style = true\n")
        }
        StoreKind::Azure => {
            let credentials = dir.join("azure.toml");
            std::fs::write(
                &credentials,
                format!("account_key = \"{}\"\n", crate::azurite::ACCOUNT_KEY),
            )
            .unwrap();
            format!(
                "{common}kind = \"azure\"\ncredentials_file = \"{}\"\n",
                credentials.display()
            )
        }
        StoreKind::Gcs => format!(
            "{common}kind = \"gcs\"\ncredentials_file = \"{}\"\n[store.gcs]\napi_auth = \"none\"\n",
            crate::gcs::service_account_file().display()
        ),
    }
}

/// Starts `valet-service serve --config CONFIG`, its stderr appended to `stderr_log`; the
/// process and the URL of its ready line.
fn spawn_serve(config: &Path, stderr_log: &Path, log: &str) -> (Child, String) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_log)
        .unwrap();
    let mut child = Command::new(workspace_bin("valet-service"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("VALET_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start valet-service");
    let url = wait_for_ready_line(&mut child, stderr_log);
    (child, url)
}

/// Reads stdout until `valet-service ready on URL`, then keeps draining it in the background.
fn wait_for_ready_line(child: &mut Child, stderr_log: &Path) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("valet-service ready on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "valet-service printed no ready line; its log:\n{}",
                std::fs::read_to_string(stderr_log).unwrap_or_default()
            )
        }
    }
}
