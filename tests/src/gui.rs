//! The desktop app driven in its real webview: `tauri-driver` (WebDriver for Tauri apps)
//! starts the app binary and WebKitWebDriver, and tests click, type, read the DOM, call the
//! app's commands and take screenshots through it. Needs an X display (Xvfb); see
//! `scripts/test-gui.sh`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::NewSessionError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::files::sha256_file;
use crate::free_port;
use crate::service::Service;

/// The app binary under test: `VALET_GUI_APP`, else the debug build that embeds the UI.
pub fn app_binary() -> PathBuf {
    std::env::var_os("VALET_GUI_APP")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_bin("valet-upload"))
}

/// One running app with a WebDriver session on it.
pub struct App {
    pub client: Client,
    driver: Child,
}

impl App {
    /// Starts the app with `data_dir` as its data directory (and `env` besides) and waits for
    /// its first screen. No machine-wide policy applies unless `env` names one
    /// (`VALET_POLICY`).
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let no_policy = data_dir.join("no-policy.json");
        let mut all = vec![
            ("VALET_DATA_DIR", data_dir.to_str().unwrap()),
            ("VALET_POLICY", no_policy.to_str().unwrap()),
        ];
        all.extend_from_slice(env);
        Self::launch(&all).await
    }

    /// Starts the app as a person's login would after a package install: the OS's own
    /// places for data and policy (`home` stands in for the person's home directory), and
    /// `env` besides.
    pub async fn start_as_installed(home: &Path, env: &[(&str, &str)]) -> Self {
        let home_dir = |sub: &str| home.join(sub).to_str().unwrap().to_owned();
        let (data, config, cache) = (
            home_dir(".local/share"),
            home_dir(".config"),
            home_dir(".cache"),
        );
        let mut all = vec![
            ("HOME", home.to_str().unwrap()),
            ("XDG_DATA_HOME", data.as_str()),
            ("XDG_CONFIG_HOME", config.as_str()),
            ("XDG_CACHE_HOME", cache.as_str()),
        ];
        all.extend_from_slice(env);
        Self::launch(&all).await
    }

    async fn launch(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let native_port = std::iter::repeat_with(free_port)
            .find(|&p| p != port)
            .unwrap();
        let mut driver = Command::new("tauri-driver");
        driver
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native_port.to_string(),
            ])
            .env_remove("VALET_DATA_DIR")
            .env_remove("VALET_POLICY")
            .env_remove("VALET_SERVER")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            driver.env(k, v);
        }
        let driver = driver
            .spawn()
            .expect("tauri-driver on PATH (cargo install tauri-driver)");
        // tauri-driver listens before the native driver it starts does, and answers a new
        // session with a dropped connection until that one is up: wait for both.
        let deadline = Instant::now() + Duration::from_secs(30);
        for listener in [port, native_port] {
            while std::net::TcpStream::connect(("127.0.0.1", listener)).is_err() {
                assert!(Instant::now() < deadline, "tauri-driver never listened");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "tauri:options".into(),
            json!({ "application": app_binary() }),
        );
        let mut attempt = 1;
        let client = loop {
            let session = ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match session {
                Ok(client) => break client,
                // A dropped connection (not a refusal by the driver) is worth one more try.
                Err(
                    NewSessionError::Lost(_)
                    | NewSessionError::Failed(_)
                    | NewSessionError::FailedC(_),
                ) if attempt < 3 => {
                    attempt += 1;
                    kill_app();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => panic!("no WebDriver session on the app: {e:?}"),
            }
        };
        let app = Self { client, driver };
        app.wait_for("the first screen", Duration::from_secs(30), async |app| {
            // The sign-in screen or the main window; not the "Starting…" placeholder.
            app.exists(".sign-in, .app").await.then_some(())
        })
        .await;
        app
    }

    /// Kills the app with SIGKILL (a crash, or a power cut, as far as the app can tell), then
    /// ends the session.
    pub async fn crash(self) {
        assert!(kill_app(), "no app process to kill");
        self.quit().await;
    }

    /// Ends the session and the app. Closing the window only hides the app in the tray, so
    /// the process is ended too (or the next start would hand over to it: single instance).
    pub async fn quit(mut self) {
        let _ = self.client.clone().close().await;
        kill_app();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    pub async fn find(&self, css: &str) -> Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.client
            .find_all(Locator::Css(css))
            .await
            .is_ok_and(|all| !all.is_empty())
    }

    /// The `value` property of the input at `css`, when there is one.
    pub async fn value(&self, css: &str) -> Option<String> {
        let input = self.client.find(Locator::Css(css)).await.ok()?;
        input.prop("value").await.ok().flatten()
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_default()
    }

    /// The text of the element at `css`, when there is one (for polling).
    pub async fn text_if_any(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Replaces the value of an input.
    pub async fn fill(&self, css: &str, value: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }

    /// Signs in on the sign-in screen (the server comes prefilled from `VALET_SERVER`) and
    /// waits for the main window.
    pub async fn sign_in(&self, user: &str, password: &str) {
        self.wait_for("the sign-in screen", Duration::from_secs(20), async |app| {
            app.exists("#user").await.then_some(())
        })
        .await;
        self.fill("#user", user).await;
        self.fill("#password", password).await;
        self.click("#sign-in-button").await;
        self.wait_for("the main window", Duration::from_secs(20), async |app| {
            app.exists(".app").await.then_some(())
        })
        .await;
    }

    /// Waits (up to 30 s) for the main window: the drop zone.
    pub async fn wait_main_window(&self) {
        self.wait_for("the main window", Duration::from_secs(30), async |app| {
            app.exists("#drop-zone").await.then_some(())
        })
        .await;
    }

    /// Closes the open dialog, as its Cancel button or Escape does.
    pub async fn close_dialog(&self) {
        self.client
            .execute("document.querySelector('dialog[open]')?.close()", vec![])
            .await
            .expect("close the dialog");
    }

    /// The `data-state` and text of the element at `css`, when there is one.
    pub async fn state_and_text(&self, css: &str) -> Option<(String, String)> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        let state = element.attr("data-state").await.ok().flatten()?;
        Some((state, element.text().await.ok()?))
    }

    /// Calls an app command from the page, as the UI does; its answer (`Err` with the
    /// command's error value when it rejects).
    pub async fn invoke(&self, command: &str, args: Value) -> Result<Value, Value> {
        let script = r#"
            const [command, args, done] = arguments;
            window.__TAURI_INTERNALS__.invoke(command, args)
                .then((data) => done({ ok: data ?? null }), (error) => done({ err: error }));
        "#;
        let answer = self
            .client
            .execute_async(script, vec![json!(command), args])
            .await
            .unwrap_or_else(|e| panic!("invoke {command}: {e}"));
        match answer.get("err") {
            Some(err) => Err(err.clone()),
            None => Ok(answer.get("ok").cloned().unwrap_or(Value::Null)),
        }
    }

    /// The row of file `name`: its state, bytes done, bytes already stored and sent, object
    /// key, SHA-256 and problem, from the app's own list.
    pub async fn row(&self, name: &str) -> Option<Value> {
        let changes = self
            .invoke("transfers_since", json!({ "version": 0 }))
            .await
            .ok()?;
        changes["rows"]
            .as_array()?
            .iter()
            .rev()
            .find(|r| r["name"] == name)
            .cloned()
    }

    /// The `data-state` the page shows for file `name`.
    pub async fn shown_state(&self, name: &str) -> Option<String> {
        let css = format!(r#"li.transfer[data-name="{name}"]"#);
        let row = self.client.find(Locator::Css(&css)).await.ok()?;
        row.attr("data-state").await.ok().flatten()
    }

    /// Waits until the page shows file `name` in `state`.
    pub async fn wait_state(&self, name: &str, state: &str, timeout: Duration) {
        let what = format!("{name} {state}");
        self.wait_for(&what, timeout, async |app| {
            (app.shown_state(name).await.as_deref() == Some(state)).then_some(())
        })
        .await;
    }

    /// Polls `check` until it gives a value or `timeout` passes (then fails, saying `what`
    /// and what the page showed).
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl AsyncFn(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check(self).await {
                return value;
            }
            if Instant::now() > deadline {
                let page = self.client.source().await.unwrap_or_default();
                panic!("waited {timeout:?} for {what}; the page:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Closes the app's window as a window manager's close button does: `WM_DELETE_WINDOW` to
    /// the window titled "Valet Upload" (X11). The app decides what closing means.
    pub fn close_window(&self) {
        tokio::task::block_in_place(|| x11::close(APP_TITLE)).expect("close the window");
    }

    /// Whether the window titled "Valet Upload" is shown (mapped); `None` when there is none.
    pub fn window_shown(&self) -> Option<bool> {
        tokio::task::block_in_place(|| x11::shown(APP_TITLE)).expect("ask the X server")
    }

    /// Saves a screenshot of the window as `path` (PNG).
    pub async fn screenshot(&self, path: &Path) {
        // After the next paint: what the DOM holds now (a dialog just opened) is on screen.
        self.client
            .execute_async(
                "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(null)));",
                vec![],
            )
            .await
            .expect("wait for a paint");
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

/// Size and SHA-256 of an object, read back from the store (a blocking client, so off the
/// async threads).
pub fn stored(service: &Service, key: &str) -> Option<(u64, String)> {
    tokio::task::block_in_place(|| service.store().object_digest(key))
}

/// The object of a verified row, read back from the store: equal to the file. The row, from
/// the app's own list.
pub async fn check_stored(app: &App, service: &Service, file: &Path) -> Value {
    let name = file.file_name().unwrap().to_str().unwrap();
    let row = app.row(name).await.expect("a row");
    assert_eq!(row["state"], "verified", "{row}");
    let key = row["objectKey"].as_str().expect("object key");
    let sha = sha256_file(file);
    assert_eq!(row["sha256"], sha, "the app's SHA-256 is the file's");
    let shown_key = app
        .text(&format!(r#"li[data-name="{name}"] .object-key"#))
        .await;
    assert_eq!(shown_key, key, "the row shows the object key");
    let (size, stored_sha) =
        stored(service, key).unwrap_or_else(|| panic!("{key} is not in the store"));
    assert_eq!(
        (size, stored_sha),
        (std::fs::metadata(file).unwrap().len(), sha),
        "{key} in the store is byte-identical to {name}"
    );
    row
}

/// Writes a policy file as an administrator's tool would: whole, then renamed into place.
pub fn write_policy(path: &Path, policy: &str) {
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, policy).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// The title of the app's window.
const APP_TITLE: &[u8] = b"Valet Upload";

/// The app's window as the X server sees it (the tests run under Xvfb, with no window manager).
mod x11 {
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{
        AtomEnum, ClientMessageEvent, ConnectionExt as _, EventMask, MapState, Window,
    };

    type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

    /// The top-level window titled `title`.
    fn find(conn: &impl Connection, root: Window, title: &[u8]) -> Result<Option<Window>> {
        for window in conn.query_tree(root)?.reply()?.children {
            let name = conn
                .get_property(false, window, AtomEnum::WM_NAME, AtomEnum::ANY, 0, 256)?
                .reply()?;
            if name.value == title {
                return Ok(Some(window));
            }
        }
        Ok(None)
    }

    pub(super) fn shown(title: &[u8]) -> Result<Option<bool>> {
        let (conn, screen) = x11rb::connect(None)?;
        let root = conn.setup().roots[screen].root;
        let Some(window) = find(&conn, root, title)? else {
            return Ok(None);
        };
        let attributes = conn.get_window_attributes(window)?.reply()?;
        Ok(Some(attributes.map_state == MapState::VIEWABLE))
    }

    /// Asks the window to close, as a window manager does (ICCCM `WM_DELETE_WINDOW`).
    pub(super) fn close(title: &[u8]) -> Result<()> {
        let (conn, screen) = x11rb::connect(None)?;
        let root = conn.setup().roots[screen].root;
        let window = find(&conn, root, title)?.ok_or("no window with that title")?;
        let protocols = conn.intern_atom(false, b"WM_PROTOCOLS")?.reply()?.atom;
        let delete = conn.intern_atom(false, b"WM_DELETE_WINDOW")?.reply()?.atom;
        let event = ClientMessageEvent::new(
            32,
            window,
            protocols,
            [delete, x11rb::CURRENT_TIME, 0, 0, 0],
        );
        // Checked: a round trip, so the server has taken the event before the connection ends.
        conn.send_event(false, window, EventMask::NO_EVENT, event)?
            .check()?;
        Ok(())
    }
}

/// SIGKILLs every process of the app binary; whether there was one.
fn kill_app() -> bool {
    let app = app_binary();
    let name = app.file_name().unwrap().to_string_lossy().into_owned();
    Command::new("pkill")
        .args(["-KILL", "-x", &name])
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for App {
    fn drop(&mut self) {
        kill_app();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
