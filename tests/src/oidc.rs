//! A real OpenID Connect provider (node `oidc-provider`, `tests/oidc/provider.mjs`), one per
//! test, on a loopback port of its own, with a fresh signing key; and a real browser to sign in
//! with (WebKitGTK's MiniBrowser driven by WebKitWebDriver, under Xvfb).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
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

    /// An ID token for `login` issued to `client_id` with `nonce`, got the way a browser gets
    /// it but over plain HTTP: the provider's login and consent forms posted, its redirects
    /// followed by hand up to the loopback address, then the code exchanged with its PKCE
    /// verifier. For tests of what the service does with real tokens of this provider.
    pub fn id_token(&self, client_id: &str, login: &str, nonce: &str) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        crate::install_tls_provider();
        let http = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let verifier = crate::random_name("verifier-with-enough-length-for-pkce-rules-0123456789");
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let redirect = "http://127.0.0.1:9/callback";
        let form = |pairs: &[(&str, &str)]| {
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        };
        let mut cookies = std::collections::BTreeMap::<String, String>::new();
        let mut next = format!(
            "{}/auth?{}",
            self.issuer,
            form(&[
                ("client_id", client_id),
                ("response_type", "code"),
                ("scope", "openid email"),
                ("redirect_uri", redirect),
                ("state", "st"),
                ("nonce", nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
        );
        let mut body: Option<String> = None;
        for _ in 0..12 {
            if next.starts_with(redirect) {
                break;
            }
            let cookie_header = cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let request = match body.take() {
                Some(form) => http
                    .post(&next)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form),
                None => http.get(&next),
            };
            let response = request.header("cookie", cookie_header).send().unwrap();
            for set in response.headers().get_all("set-cookie") {
                let pair = set.to_str().unwrap().split(';').next().unwrap();
                if let Some((name, value)) = pair.split_once('=') {
                    cookies.insert(name.trim().into(), value.trim().into());
                }
            }
            let status = response.status();
            if let Some(location) = response.headers().get("location") {
                let location = location.to_str().unwrap();
                next = if location.starts_with('/') {
                    format!("{}{location}", self.issuer)
                } else {
                    location.to_owned()
                };
                continue;
            }
            // A form page: the login form first, then consent.
            let page = response.text().unwrap();
            assert!(status.is_success(), "HTTP {status} at {next}: {page}");
            body = Some(if page.contains(r#"name="login""#) {
                form(&[("prompt", "login"), ("login", login), ("password", "x")])
            } else {
                assert!(
                    page.contains(r#"value="consent""#),
                    "unexpected page: {page}"
                );
                form(&[("prompt", "consent")])
            });
        }
        let answer = url::Url::parse(&next).unwrap();
        let code = answer
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {answer}"));
        let tokens: serde_json::Value = http
            .post(format!("{}/token", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("client_id", client_id),
                ("code_verifier", &verifier),
            ]))
            .send()
            .unwrap()
            .json()
            .unwrap();
        tokens["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no id_token: {tokens}"))
            .to_owned()
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

/// Presses the page's submit button (the provider's login and consent forms).
async fn submit(client: &Client) {
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("a submit button")
        .click()
        .await
        .expect("press it");
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

    /// Opens `url` and does what a person does at the provider's pages, as `login` (any password:
    /// the provider's development pages take any), until the browser is back on the loopback
    /// address. `cancel` clicks the login page's Cancel link instead.
    pub async fn sign_in_at(&self, url: &str, login: &str, cancel: bool) -> Landing {
        let client = &self.client;
        client.goto(url).await.expect("open the authorization URL");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut acted_on = String::new();
        loop {
            assert!(Instant::now() < deadline, "the browser never came back");
            let here = client.current_url().await.unwrap().to_string();
            if here.starts_with("http://127.0.0.1:") && here.contains("/callback") {
                if let (Ok(title), Ok(message)) = (
                    client.find(Locator::Css("#title")).await,
                    client.find(Locator::Css("#message")).await,
                ) {
                    return Landing {
                        url: here,
                        title: title.text().await.unwrap(),
                        message: message.text().await.unwrap(),
                    };
                }
            } else if here != acted_on {
                if let Ok(field) = client.find(Locator::Css("input[name=login]")).await {
                    if cancel {
                        let link = client
                            .find(Locator::XPath("//a[contains(., 'Cancel')]"))
                            .await
                            .expect("the login page's Cancel link");
                        link.click().await.unwrap();
                    } else {
                        field.send_keys(login).await.unwrap();
                        client
                            .find(Locator::Css("input[name=password]"))
                            .await
                            .unwrap()
                            .send_keys("any password")
                            .await
                            .unwrap();
                        submit(client).await;
                    }
                    acted_on = here;
                } else if client
                    .find(Locator::Css("input[name=prompt][value=consent]"))
                    .await
                    .is_ok()
                {
                    submit(client).await;
                    acted_on = here;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ends the session (and with it the browser), then the driver.
    pub async fn quit(self) {
        let _ = self.client.clone().close().await;
    }
}

/// What the browser showed at the end of a sign-in, on the loopback page.
pub struct Landing {
    /// The loopback URL, code and state included.
    pub url: String,
    /// The page's title line ("Signed in to Valet Upload", or that it failed).
    pub title: String,
    /// The page's message (the reason, when it failed).
    pub message: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
