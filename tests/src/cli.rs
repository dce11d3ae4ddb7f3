//! The real `valet` command, with its own data dir (journal) per test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::workspace_bin;

/// One user's `valet`, signed in with an API token through the environment.
pub struct Valet {
    data_dir: tempfile::TempDir,
    server: String,
    token: Option<String>,
    log: String,
}

/// What one `valet … --json` run printed and how it ended.
#[derive(Debug)]
pub struct JsonRun {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// One value per JSON line of stdout.
    pub lines: Vec<Value>,
    /// Everything on stderr (logs, errors).
    pub stderr: String,
}

impl Valet {
    /// `valet` for `server`, authenticated by the API token `token`.
    pub fn with_token(server: &str, token: &str) -> Self {
        Self {
            data_dir: tempfile::tempdir().unwrap(),
            server: server.into(),
            token: Some(token.into()),
            log: "warn".into(),
        }
    }

    /// `valet` for `server` with no credentials in the environment (for `valet login`).
    pub fn signed_out(server: &str) -> Self {
        Self {
            data_dir: tempfile::tempdir().unwrap(),
            server: server.into(),
            token: None,
            log: "warn".into(),
        }
    }

    /// Sets the log filter (`VALET_LOG`) of later runs.
    pub fn log_level(mut self, filter: &str) -> Self {
        self.log = filter.into();
        self
    }

    /// The journal's directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A `valet` command with this user's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(workspace_bin("valet"));
        command
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(args);
        command
            .env_remove("VALET_SERVER")
            .env_remove("VALET_TOKEN")
            .env_remove("VALET_DATA_DIR");
        if let Some(token) = &self.token {
            command
                .env("VALET_SERVER", &self.server)
                .env("VALET_TOKEN", token);
        }
        // No machine-wide policy (a test of one names its own file, which wins).
        command.env("VALET_POLICY", self.data_dir.path().join("no-policy.json"));
        command.env("VALET_LOG", &self.log).stdin(Stdio::null());
        command
    }

    /// [`Valet::command`] started through `wrapper` (`setpriv …`, `unshare … sh -c SCRIPT sh`):
    /// the command line is `WRAPPER… valet --data-dir DIR ARGS…`, with this user's environment.
    pub fn command_via(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let inner = self.command(args);
        let (first, rest) = wrapper.split_first().expect("a wrapper command");
        let mut command = Command::new(first);
        command
            .args(rest)
            .arg(inner.get_program())
            .args(inner.get_args());
        for (name, value) in inner.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command.stdin(Stdio::null());
        command
    }

    /// Runs `valet ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run valet")
    }

    /// Runs `valet ARGS --json` to the end and parses its lines.
    pub fn run_json(&self, args: &[&str]) -> JsonRun {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        parse_run(out)
    }

    /// `valet put --json --part-size 5MiB FILES… EXTRA…`.
    pub fn put(&self, files: &[&Path], extra: &[&str]) -> JsonRun {
        let mut args: Vec<String> = vec![
            "put".into(),
            "--part-size".into(),
            crate::PART_SIZE.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(files.iter().map(|p| p.display().to_string()));
        self.run_json(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Starts `valet ARGS` in the background (stdout and stderr to files in the data dir).
    pub fn spawn(&self, args: &[&str]) -> (Child, PathBuf) {
        let stderr_path = self
            .data_dir
            .path()
            .join(format!("stderr-{}.log", crate::random_name("run")));
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn valet");
        (child, stderr_path)
    }

    /// `valet login --server SERVER --user USER --password-stdin` with `password` on stdin.
    pub fn login(&self, user: &str, password: &str) -> Output {
        self.login_with(user, password, |_| {})
    }

    /// [`Valet::login`], with `adjust` changing the command first (its environment, say).
    pub fn login_with(
        &self,
        user: &str,
        password: &str,
        adjust: impl FnOnce(&mut Command),
    ) -> Output {
        use std::io::Write;
        let mut command = self.command(&[
            "login",
            "--server",
            &self.server,
            "--user",
            user,
            "--password-stdin",
        ]);
        adjust(&mut command);
        let mut login = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn valet login");
        login
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        login.wait_with_output().unwrap()
    }

    /// `valet status --json`.
    pub fn status(&self) -> Vec<Value> {
        let run = self.run_json(&["status"]);
        assert_eq!(run.code, Some(0), "valet status failed: {}", run.stderr);
        run.lines
    }
}

/// Parses stdout of a `--json` run into values.
pub fn parse_run(out: Output) -> JsonRun {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect();
    JsonRun {
        code: out.status.code(),
        lines,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl JsonRun {
    /// The single result line for a one-file run, asserting it is verified.
    pub fn verified(&self) -> &Value {
        assert_eq!(
            self.code,
            Some(0),
            "valet failed: {:?}\nstderr:\n{}",
            self.lines,
            self.stderr
        );
        assert_eq!(self.lines.len(), 1, "one line per file: {:?}", self.lines);
        let line = &self.lines[0];
        assert_eq!(line["verified"], Value::Bool(true), "{line}");
        line
    }
}

/// Polls `check` while the `valet` in `child` runs (its stderr in `stderr`) until it returns
/// `Some`. Panics with the end of that stderr when `valet` ends first or `timeout` passes, so a
/// failure says what the client was doing rather than only what was awaited.
pub fn wait_while_running<T>(
    child: &mut Child,
    stderr: &Path,
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let tail = || {
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "valet ended ({status}) while waiting for {what}; its stderr ends:\n{}",
                tail()
            );
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; valet's stderr ends:\n{}",
            tail()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
