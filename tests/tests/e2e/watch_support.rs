//! What the folder-watch tests share: a running `valet watch --json` and the lines it printed,
//! the whole listing of a bucket, and the service's record of completed uploads.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde_json::Value;
use valet_tests::cli::Valet;
use valet_tests::seaweed::{ACCESS_KEY, SECRET_KEY};
use valet_tests::service::Service;
use valet_tests::wait_for;

/// How long a test waits for what the watch should do. Generous: the 10,000-file test may run
/// at the same time on the same two cores. A wait, never a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// `valet watch DIR --json …` running in the background.
pub struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: Option<JoinHandle<()>>,
    stderr: PathBuf,
}

impl Watch {
    /// Starts `valet watch DIR --json --settle 1s EXTRA…` and waits for its `watching` line.
    pub fn start(valet: &Valet, dir: &Path, extra: &[&str]) -> Self {
        let dir = dir.to_str().unwrap();
        let mut args = vec!["watch", dir, "--json", "--settle", "1s"];
        args.extend_from_slice(extra);
        let (mut child, stderr) = valet.spawn(&args);
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                sink.lock().unwrap().push(value);
            }
        });
        let watch = Self {
            child,
            lines,
            reader: Some(reader),
            stderr,
        };
        watch.wait_until("the watching line", PATIENCE, |lines| {
            lines.iter().any(|l| l["event"] == "watching")
        });
        watch
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// The lines of one event kind so far.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        events(&self.lines(), kind)
    }

    /// Waits until `done` holds for the lines (panics after `timeout`, showing stderr).
    pub fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&[Value]) -> bool) {
        let start = std::time::Instant::now();
        loop {
            if done(&self.lines.lock().unwrap()) {
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last lines: {:?}\nstderr:\n{}",
                    self.lines().iter().rev().take(10).collect::<Vec<_>>(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a file whose path ends with `name` was sent, and returns its line.
    pub fn wait_sent(&self, name: &str, timeout: Duration) -> Value {
        self.wait_until(&format!("{name} sent"), timeout, |lines| {
            lines
                .iter()
                .any(|l| l["event"] == "sent" && ends_with(l, name))
        });
        self.events("sent")
            .into_iter()
            .find(|l| ends_with(l, name))
            .unwrap()
    }

    /// The watcher's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the watcher so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// What the watcher logged.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM; asserts a clean exit (status 0, last line `stopped`) and returns every line.
    pub fn stop(mut self) -> Vec<Value> {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM");
        let status = wait_for("valet watch to exit", Duration::from_secs(60), || {
            self.child.try_wait().unwrap()
        });
        self.reader.take().unwrap().join().unwrap();
        let lines = self.lines();
        assert!(
            status.success(),
            "valet watch exits 0 on SIGTERM ({status}); stderr:\n{}",
            self.stderr()
        );
        assert_eq!(
            lines.last().map(|l| l["event"].clone()),
            Some(Value::from("stopped")),
            "the last line says it stopped"
        );
        lines
    }

    /// SIGKILL (a crash); returns every line printed.
    pub fn kill(mut self) -> Vec<Value> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        self.lines()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of one event kind.
pub fn events(lines: &[Value], kind: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["event"] == kind)
        .cloned()
        .collect()
}

/// Whether the line's `path` ends with `name` (a file name or a relative path).
pub fn ends_with(line: &Value, name: &str) -> bool {
    line["path"]
        .as_str()
        .is_some_and(|p| Path::new(p).ends_with(name))
}

/// Every key in the service's bucket under `prefix`, following continuation tokens.
pub fn list_all(service: &Service, prefix: &str) -> Vec<String> {
    valet_tests::install_tls_provider();
    let bucket = Bucket::new(
        service.store_endpoint.parse().unwrap(),
        UrlStyle::Path,
        service.bucket.clone(),
        "us-east-1",
    )
    .unwrap();
    let credentials = Credentials::new(ACCESS_KEY, SECRET_KEY);
    let http = reqwest::blocking::Client::new();
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut action = bucket.list_objects_v2(Some(&credentials));
        action.with_prefix(prefix);
        if let Some(token) = &token {
            action.with_continuation_token(token.clone());
        }
        let url = action.sign(Duration::from_secs(60));
        let body = http.get(url).send().unwrap().text().unwrap();
        let page = rusty_s3::actions::ListObjectsV2::parse_response(&body)
            .unwrap_or_else(|e| panic!("list response ({e}): {body}"));
        keys.extend(page.contents.into_iter().map(|o| o.key));
        match page.next_continuation_token {
            Some(next) => token = Some(next),
            None => return keys,
        }
    }
}

/// The service's `upload_completed` audit entries (one per verified upload).
pub fn completed(service: &Service) -> Vec<Value> {
    service
        .audit()
        .into_iter()
        .filter(|e| e["event"] == "upload_completed")
        .collect()
}

/// A loopback TCP proxy in front of the service whose link can be cut and restored: while cut,
/// open connections are shut down and new ones are closed as soon as they are accepted.
pub struct LinkProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    up: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl LinkProxy {
    /// A proxy to `upstream` (`http://host:port`), link up.
    pub fn start(upstream: &str) -> Self {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (up_c, open_c) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up_c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut open = open_c.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { url, up, open }
    }

    /// Breaks the link: every open connection is shut down, new ones are refused.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Restores the link.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
