//! What `valet` refuses to talk to. Covered elsewhere, not repeated here:
//! - key URLs outside the store the service announced (`http://` off loopback, another host,
//!   another port), and an insecure store origin: `valet-engine/tests/hostile_replies.rs`
//!   (`unsafe_or_foreign_key_urls_are_refused`, `an_insecure_store_origin_is_refused_at_creation`);
//!   store hosts outside the policy's `allowed_storage_hosts`: `e2e/policy_rules.rs`;
//! - redirects from the service or the store: `hostile_replies.rs`
//!   (`service_redirects_are_not_followed`, `store_redirects_are_not_followed`);
//! - tokens only in the OS keyring, never in a file, a log or the output:
//!   `e2e/secrets_stay_secret.rs`.

use std::net::{IpAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use valet_tests::cli::{Valet, parse_run};
use valet_tests::files::random_file;

/// An address of this machine that is not loopback (from `hostname -I`).
fn non_loopback_address() -> IpAddr {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname -I");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .expect("this test needs a non-loopback IPv4 address on this machine")
}

/// Connections that reached `listener` so far (it is non-blocking).
fn accepted(listener: &TcpListener) -> usize {
    std::iter::from_fn(|| listener.accept().ok()).count()
}

/// A service URL of `http://` on a real address of this machine, where a listener waits: every
/// command refuses it with a clear error and no connection arrives. The same address with
/// `https://` is tried (a connection arrives), so the listener would have seen one.
#[test]
fn plain_http_off_loopback_is_refused_before_any_connection() {
    let ip = non_loopback_address();
    let listener = TcpListener::bind((ip, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let http = format!("http://{ip}:{port}");
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "plain.bin", 1000, 3);

    let signed_out = Valet::signed_out(&http);
    let out = signed_out.login("ivy", "a password that must not travel");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "login refused: {stderr}");
    assert!(
        stderr.contains(&format!(
            "refusing {http}/: only https:// is allowed off loopback"
        )),
        "login says why: {stderr}"
    );

    let with_token = Valet::with_token(&http, "vpt_not_a_real_token_0123456789");
    let run = parse_run(with_token.run(&["put", "--json", file.to_str().unwrap()]));
    assert_ne!(run.code, Some(0), "put refused: {run:?}");
    let said = format!("{:?} {}", run.lines, run.stderr);
    assert!(
        said.contains("insecure_url") || said.contains("only https:// is allowed off loopback"),
        "put says why: {said}"
    );
    assert!(
        !said.contains("vpt_not_a_real"),
        "the token is not echoed: {said}"
    );

    assert_eq!(accepted(&listener), 0, "nothing was sent to {http}");

    // The control: https:// to the same address is allowed, and its connection does arrive.
    let https = format!("https://{ip}:{port}");
    let mut put = Valet::with_token(&https, "vpt_not_a_real_token_0123456789")
        .command(&["put", "--json", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut connections = 0;
    while connections == 0 && started.elapsed() < Duration::from_secs(60) {
        connections += accepted(&listener);
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = put.kill();
    let _ = put.wait();
    assert!(
        connections > 0,
        "the listener sees the client's connections"
    );
}
