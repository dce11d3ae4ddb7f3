//! The policy's proxy carries every connection: to the valet service and to the store. Through
//! a real forward proxy (proxy.py from PyPI, installed by `scripts/test-servers.sh install`) an
//! upload verifies and the proxy's access log shows both hosts; with the proxy gone, the service
//! cannot be reached (the error names the proxy) instead of being reached around it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use valet_tests::cli::parse_run;
use valet_tests::files::{random_file, sha256_file};
use valet_tests::service::ServiceOptions;
use valet_tests::{free_port, repo_root};

use crate::helpers::world;

/// A running proxy.py; killed when dropped.
struct ForwardProxy {
    url: String,
    log: std::path::PathBuf,
    child: Child,
}

impl ForwardProxy {
    fn start(dir: &Path) -> Self {
        let bin = repo_root().join(".tools/venv/bin/proxy");
        assert!(
            bin.exists(),
            "{} missing: run scripts/test-servers.sh install",
            bin.display()
        );
        let port = free_port();
        let log = dir.join("proxy.log");
        let child = Command::new(bin)
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--num-workers", "1", "--num-acceptors", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start proxy.py");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "proxy.py never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            url: format!("http://127.0.0.1:{port}"),
            log,
            child,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `host:port` of a URL.
fn authority(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
}

#[test]
fn every_connection_goes_through_the_policys_proxy() {
    let w = world("pax", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let proxy = ForwardProxy::start(dir.path());
    let policy = dir.path().join("policy.json");
    let write_policy = |proxy: &str| {
        std::fs::write(
            &policy,
            format!(r#"{{ "server": "{}", "proxy": "{proxy}" }}"#, w.service.url),
        )
        .unwrap();
    };
    let file = random_file(dir.path(), "through-proxy.bin", 12 * 1024 * 1024 + 3, 5);
    let put = |file: &Path| {
        let mut command = w.valet.command(&[
            "put",
            "--json",
            "--part-size",
            "5MiB",
            file.to_str().unwrap(),
        ]);
        parse_run(command.env("VALET_POLICY", &policy).output().unwrap())
    };

    write_policy(&proxy.url);
    let run = put(&file);
    let line = run.verified();
    let key = line["object"].as_str().unwrap();
    assert_eq!(
        w.service.store().object_digest(key),
        Some((std::fs::metadata(&file).unwrap().len(), sha256_file(&file))),
        "byte-identical through the proxy"
    );
    let log = proxy.log();
    let service_host = authority(&w.service.url);
    let store_host = authority(w.service.store().endpoint());
    // proxy.py logs a connection's first request (keep-alive carries the rest).
    let through = |host: &str, method: &str| {
        log.lines()
            .any(|l| l.contains(&format!(" - {method} {host}/")))
    };
    assert!(
        through(&service_host, "GET") || through(&service_host, "POST"),
        "the service was reached through the proxy:\n{log}"
    );
    assert!(
        through(&store_host, "PUT"),
        "parts went to the store through the proxy:\n{log}"
    );

    // The proxy is gone: nothing goes around it, and the error names it.
    let closed = format!("http://127.0.0.1:{}", free_port());
    write_policy(&closed);
    let mut check = w.valet.command(&["policy", "check"]);
    let out = check.env("VALET_POLICY", &policy).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("cannot be reached")
            && stderr.contains(&format!("through the proxy {closed}")),
        "{stderr}"
    );
}
