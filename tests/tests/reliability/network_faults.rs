//! The network between `valet` and the store, and between `valet` and the service, made bad
//! by a fault proxy (`valet_tests::faults`, noxious) on each link:
//!
//! ```text
//!   valet ──▶ service proxy ──▶ valet-service serve ──┐
//!     └────▶ store proxy ─────▶ SeaweedFS ◀────────────┘ (the service's own calls: same proxy)
//! ```
//!
//! The service is configured with the store proxy as its store endpoint, because S3 keys sign
//! the host the client connects to. Every upload must complete byte-identical (read back from
//! the store itself, not through the proxy) with exactly one `upload_completed` in the audit
//! log. S3 (SeaweedFS) only: the faults are the network's, the same for every store.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use valet_tests::PART_SIZE;
use valet_tests::cli::{JsonRun, Valet, parse_run, wait_while_running};
use valet_tests::faults::{Direction, Fault, FaultProxy};
use valet_tests::files::{random_file, sha256_file};
use valet_tests::service::{Service, ServiceOptions};
use valet_tests::store::{StoreKind, TestStore, TestStoreEndpoint};

use crate::helpers::unfinished;

const MIB: u64 = 1024 * 1024;

/// A service and a store, each reached by `valet` through its own fault proxy.
struct Links {
    service: Service,
    valet: Valet,
    user: String,
    store_proxy: FaultProxy,
    service_proxy: FaultProxy,
    // Dropped last: the service talks to it until then.
    _store: TestStore,
}

impl Links {
    fn start(user: &str, store_faults: &[Fault], service_faults: &[Fault]) -> Self {
        let store = TestStore::shared_or_start(StoreKind::S3);
        let store_proxy = FaultProxy::start(store.endpoint(), store_faults);
        let service = Service::start(
            &store,
            ServiceOptions {
                store_endpoint: Some(store_proxy.url()),
                ..ServiceOptions::default()
            },
        );
        let token = service.add_user_with_token(user);
        let service_proxy = FaultProxy::start(&service.url, service_faults);
        // `info`: every retry is logged, so the test can count them.
        let valet = Valet::with_token(&service_proxy.url(), &token).log_level("info");
        Self {
            service,
            valet,
            user: user.into(),
            store_proxy,
            service_proxy,
            _store: store,
        }
    }

    /// The upload of `file` (one result line) is verified, the object in the store has the
    /// file's size and SHA-256, it is the only object of the user, and the audit log has one
    /// completion for it.
    fn assert_delivered(&self, run: &JsonRun, file: &Path) {
        let line = run.verified();
        let object = line["object"].as_str().unwrap();
        let size = std::fs::metadata(file).unwrap().len();
        assert_eq!(
            self.service.store().object_digest(object),
            Some((size, sha256_file(file))),
            "the stored object is the file, byte for byte"
        );
        assert_eq!(
            self.service.store().list(&format!("users/{}/", self.user)),
            vec![object.to_string()],
            "exactly one object"
        );
        let completed: Vec<_> = self
            .service
            .audit()
            .into_iter()
            .filter(|e| e["event"] == "upload_completed")
            .collect();
        assert_eq!(completed.len(), 1, "one completion audited: {completed:?}");
        assert_eq!(completed[0]["upload_id"], line["upload_id"]);
    }
}

/// Retries `valet` logged: (part uploads, service calls).
fn retries(stderr: &str) -> (usize, usize) {
    let text = plain(stderr);
    let parts = text.matches("part failed; retrying").count();
    let calls = text
        .lines()
        .filter(|l| l.contains("retrying") && l.contains("request="))
        .count();
    (parts, calls)
}

/// `text` without its ANSI colour sequences (`ESC [ … m`).
pub(crate) fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn put_args<'a>(file: &'a str, parallel: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["put", "--json", "--parallel", parallel];
    args.extend_from_slice(extra);
    args.push(file);
    args
}

/// Runs `valet put` on `file` to the end, `--part-size 5MiB` and `extra` options.
fn put(links: &Links, file: &Path, extra: &[&str]) -> (JsonRun, Duration) {
    let start = Instant::now();
    let run = links.valet.put(&[file], extra);
    (run, start.elapsed())
}

/// Waits for a `valet put` started with [`Valet::spawn`]; its result and its stderr.
fn finish(child: Child, stderr: &Path) -> JsonRun {
    let mut run = parse_run(child.wait_with_output().unwrap());
    run.stderr = std::fs::read_to_string(stderr).unwrap();
    run
}

fn report(what: &str, file: &Path, run: &JsonRun, took: Duration) {
    let size = std::fs::metadata(file).unwrap().len();
    let sent = run.lines[0]["bytes_sent"].as_u64().unwrap_or(0);
    let (parts, calls) = retries(&run.stderr);
    eprintln!(
        "measured ({what}): {size} bytes in {:.1} s; part retries {parts}, service call \
         retries {calls}; bytes sent {sent} ({} sent again)",
        took.as_secs_f64(),
        sent.saturating_sub(size)
    );
}

#[test]
fn connections_to_the_store_cut_mid_part() {
    // Every connection to the store is cut once 7 MiB went up it: one 5 MiB part goes
    // through, the next part on the same (reused) connection is cut 2 MiB in.
    let links = Links::start("cut", &[Fault::cut_after(7 * MIB)], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "cut.bin", 30 * MIB + 1234, 11);
    let (run, took) = put(&links, &file, &["--parallel", "3"]);
    links.assert_delivered(&run, &file);
    report("store connections cut after 7 MiB", &file, &run, took);
    let (parts, _) = retries(&run.stderr);
    assert!(parts >= 1, "parts were cut and sent again:\n{}", run.stderr);
}

#[test]
fn connections_to_the_service_reset() {
    // Every connection to the service is cut once 1500 bytes went up it (a few requests), half of
    // the connections to the store once 3 MiB did (mid-part).
    let links = Links::start(
        "reset",
        &[Fault::cut_after(3 * MIB).toxicity(0.5)],
        &[Fault::cut_after(1500)],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "reset.bin", 30 * MIB + 77, 12);
    let (run, took) = put(&links, &file, &["--parallel", "3"]);
    links.assert_delivered(&run, &file);
    report(
        "service connections cut after 1500 bytes",
        &file,
        &run,
        took,
    );
    let (_, calls) = retries(&run.stderr);
    assert!(
        calls >= 1,
        "service calls were cut and sent again:\n{}",
        run.stderr
    );
}

#[test]
fn latency_on_both_links() {
    let links = Links::start(
        "slow",
        &[Fault::latency(200, 50)],
        &[Fault::latency(300, 100)],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "far.bin", 24 * MIB + 5, 13);
    let (run, took) = put(&links, &file, &[]);
    links.assert_delivered(&run, &file);
    report("latency 200 ms store, 300 ms service", &file, &run, took);
}

#[test]
fn bandwidth_so_low_that_a_part_takes_over_a_minute() {
    // 80 KB/s per connection: a 5 MiB part takes about 66 s to send. Slow but moving: no
    // attempt may be given up for taking long.
    let links = Links::start(
        "thin",
        &[Fault::bandwidth(80, Direction::Upstream)],
        &[Fault::bandwidth(4, Direction::Downstream)],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "thin.bin", 2 * PART_SIZE - 1000, 14);
    let (run, took) = put(&links, &file, &["--parallel", "2"]);
    links.assert_delivered(&run, &file);
    report(
        "80 KB/s to the store, 4 KB/s from the service",
        &file,
        &run,
        took,
    );
    let (parts, _) = retries(&run.stderr);
    assert_eq!(
        parts, 0,
        "no part given up while bytes flowed:\n{}",
        run.stderr
    );
}

#[test]
fn slow_drip_on_both_links() {
    // Bytes in small slices with pauses: about 500 KB/s up to the store, answers from the
    // store 16 bytes every 20 ms, the service's a few KB/s both ways.
    let links = Links::start(
        "drip",
        &[
            Fault::drip(1024, 2, Direction::Upstream),
            Fault::drip(16, 20, Direction::Downstream),
        ],
        &[
            Fault::drip(32, 10, Direction::Upstream),
            Fault::drip(32, 10, Direction::Downstream),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "drip.bin", 20 * MIB + 3, 15);
    let (run, took) = put(&links, &file, &[]);
    links.assert_delivered(&run, &file);
    report("slow drip", &file, &run, took);
}

#[test]
fn blackhole_of_thirty_seconds_on_both_links() {
    let mut links = Links::start("dark", &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "dark.bin", 40 * MIB + 99, 16);
    let path = file.to_str().unwrap();
    // 4 MiB/s: the outage starts with most of the file still to send.
    let part_size = PART_SIZE.to_string();
    let args = put_args(
        path,
        "4",
        &["--part-size", &part_size, "--bwlimit", "4194304"],
    );
    let start = Instant::now();
    let (mut child, stderr) = links.valet.spawn(&args);
    wait_while_running(
        &mut child,
        &stderr,
        "two parts stored",
        Duration::from_secs(300),
        || unfinished(&links.valet).filter(|(_, done)| *done >= 2),
    );
    // Everything dropped both ways, open connections included, for 30 s. Then the link is
    // back: the connections of the outage are closed (noxious cannot let them go on without
    // the bytes it dropped) and new ones work. Connections that stay silent for good are the
    // engine's stall limits' job (its unit tests).
    links.store_proxy.set(&Fault::blackhole());
    links.service_proxy.set(&Fault::blackhole());
    // Answers already on their way are journaled within a moment; then nothing moves.
    std::thread::sleep(Duration::from_secs(3));
    let parts_before = unfinished(&links.valet).map_or(0, |(_, done)| done);
    std::thread::sleep(Duration::from_secs(27));
    let parts_after = unfinished(&links.valet).map_or(0, |(_, done)| done);
    assert!(
        child.try_wait().unwrap().is_none(),
        "valet put waits through the outage"
    );
    links.store_proxy.restart(&[]);
    links.service_proxy.restart(&[]);
    let run = finish(child, &stderr);
    let took = start.elapsed();
    links.assert_delivered(&run, &file);
    report("30 s blackhole on both links", &file, &run, took);
    assert_eq!(
        parts_after, parts_before,
        "nothing got through the blackhole"
    );
    let (parts, calls) = retries(&run.stderr);
    assert!(
        parts + calls >= 1,
        "the client tried again after the outage:\n{}",
        run.stderr
    );
}
