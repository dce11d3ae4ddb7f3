//! A real OpenID Connect provider (node `oidc-provider`, `tests/oidc/provider.mjs`), one per
//! test, on a loopback port of its own, with a fresh signing key; and a real browser to sign in
//! with (WebKitGTK's MiniBrowser driven by WebKitWebDriver, under Xvfb).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::{free_port, repo_root};

/// The client id the provider registers for Valet Upload.
pub const CLIENT_ID: &str = "valet-upload";

/// A running provider.
pub struct OidcProvider {
    /// Its issuer, `http://127.0.0.1:PORT`.
    pub issuer: String,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    /// Starts the provider with `accounts` (login → claims, e.g.
    /// `{"alice": {"email": "Alice@Example.com", "email_verified": true}}`) and waits for its
    /// ready line.
    pub fn start(accounts: &serde_json::Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("oidc-provider.log");
        let mut child = Command::new("node")
            .arg(repo_root().join("tests/oidc/provider.mjs"))
            .current_dir(repo_root())
            .env("VALET_OIDC_ACCOUNTS", accounts.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("node on PATH (and `npm ci` run: oidc-provider is in package.json)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("oidc-provider ready on ") {
                    let _ = tx.send(issuer.trim().to_owned());
                }
            }
        });
        let Ok(issuer) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!(
                "oidc-provider printed no ready line; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Self {
            issuer,
            log,
            child,
            _dir: dir,
        }
    }

    /// The `[sso]` section of a service config that trusts this provider.
    pub fn service_config(&self) -> String {
        format!(
            "[sso]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n",
            self.issuer
        )
    }

    /// What the provider logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// WebKitWebDriver, from Debian's `webkit2gtk-driver`.
pub const WEBKIT_WEBDRIVER: &str = "/usr/bin/WebKitWebDriver";
/// WebKitGTK's own small browser, which WebKitWebDriver automates.
pub const MINIBROWSER: &str = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";

/// A real browser (MiniBrowser) under WebDriver; needs a display (Xvfb).
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Starts WebKitWebDriver on a free port and opens a MiniBrowser session.
    pub async fn start() -> Self {
        assert!(
            Path::new(WEBKIT_WEBDRIVER).exists() && Path::new(MINIBROWSER).exists(),
            "needs WebKitWebDriver and MiniBrowser (Debian: webkit2gtk-driver, libwebkit2gtk-4.1-dev)"
        );
        let port = free_port();
        let mut driver = Command::new(WEBKIT_WEBDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start WebKitWebDriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = driver.kill();
                panic!("WebKitWebDriver never listened");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "webkitgtk:browserOptions".into(),
            json!({ "binary": MINIBROWSER, "args": ["--automation"] }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session on MiniBrowser (is DISPLAY set? run under xvfb-run)");
        Self { client, driver }
    }

    /// Ends the session (and with it the browser), then the driver.
    pub async fn quit(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
