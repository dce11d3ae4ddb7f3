//! The valet service killed with SIGKILL in the middle of an upload and started again on the
//! same port with the same database: `valet put` waits (its service calls are retried),
//! reconnects and completes, byte-identical, one object, one completion in the audit log.
//! S3 (SeaweedFS): the service's restart is the same whatever store it signs for.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use valet_tests::cli::{JsonRun, Valet, parse_run, wait_while_running};
use valet_tests::files::{random_file, sha256_file};
use valet_tests::service::{Service, ServiceOptions};
use valet_tests::{MIB_210, PART_SIZE};

use crate::helpers::{World, unfinished, world};

const MIB: u64 = 1024 * 1024;
/// How long a step may take on a loaded machine before the test gives up.
const WAIT: Duration = Duration::from_secs(300);

/// `valet put --json` of `file`, 5 MiB parts, 4 at a time, at most `bwlimit` bytes/s, in the
/// background; its stderr goes to the returned file.
fn spawn_put(valet: &Valet, file: &Path, bwlimit: u64) -> (Child, std::path::PathBuf) {
    let part_size = PART_SIZE.to_string();
    let bwlimit = bwlimit.to_string();
    valet.spawn(&[
        "put",
        "--json",
        "--part-size",
        &part_size,
        "--parallel",
        "4",
        "--bwlimit",
        &bwlimit,
        file.to_str().unwrap(),
    ])
}

fn finish(child: Child, stderr: &Path) -> JsonRun {
    let mut run = parse_run(child.wait_with_output().unwrap());
    run.stderr = std::fs::read_to_string(stderr).unwrap();
    run
}

/// Service calls `valet` logged as retried.
fn call_retries(stderr: &str) -> Vec<String> {
    crate::network_faults::plain(stderr)
        .lines()
        .filter(|l| l.contains("retrying") && l.contains("request="))
        .map(str::to_owned)
        .collect()
}

/// The upload is verified, the object is the file, it is alone, and the audit log has one
/// completion of it.
fn assert_delivered(w: &World, user: &str, run: &JsonRun, file: &Path) {
    let line = run.verified();
    let object = line["object"].as_str().unwrap();
    let size = std::fs::metadata(file).unwrap().len();
    assert_eq!(
        w.service.store().object_digest(object),
        Some((size, sha256_file(file))),
        "the stored object is the file, byte for byte"
    );
    assert_eq!(
        w.service.store().list(&format!("users/{user}/")),
        vec![object.to_string()],
        "exactly one object"
    );
    let audit = w.service.audit();
    let of = |event: &str| -> Vec<&serde_json::Value> {
        audit.iter().filter(|e| e["event"] == event).collect()
    };
    assert_eq!(of("upload_created").len(), 1, "one upload created");
    let completed = of("upload_completed");
    assert_eq!(completed.len(), 1, "one completion audited");
    assert_eq!(completed[0]["upload_id"], line["upload_id"]);
}

/// Parts the service has handed out keys for, as its audit log says.
fn parts_with_keys(service: &Service) -> BTreeSet<u64> {
    service
        .audit()
        .iter()
        .filter(|e| e["event"] == "key_issued")
        .filter_map(|e| e["part"].as_u64())
        .collect()
}

#[test]
fn service_killed_mid_upload_comes_back_and_the_upload_completes() {
    let user = "rita";
    let mut w = world(user, ServiceOptions::default());
    let valet = Valet::with_token(&w.service.url, &w.token).log_level("info");
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "big.bin", MIB_210, 21);
    // 24 MiB/s: about 9 s of sending, so the outage falls in the middle.
    let (mut child, stderr) = spawn_put(&valet, &file, 24 * MIB);
    wait_while_running(&mut child, &stderr, "8 parts stored", WAIT, || {
        unfinished(&valet).filter(|(_, done)| *done >= 8)
    });
    w.service.kill();
    let done_at_kill = unfinished(&valet).map_or(0, |(_, done)| done);
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        child.try_wait().unwrap().is_none(),
        "valet put waits while the service is down"
    );
    w.service.restart();
    let run = finish(child, &stderr);
    assert_delivered(&w, user, &run, &file);
    let retried = call_retries(&run.stderr);
    let part_count = MIB_210.div_ceil(PART_SIZE);
    eprintln!(
        "measured: service down 7 s with {done_at_kill} of {part_count} parts stored; {} \
         service calls retried; bytes sent {}",
        retried.len(),
        run.lines[0]["bytes_sent"]
    );
    assert!(
        done_at_kill < part_count,
        "the service went down mid-upload"
    );
    assert!(
        !retried.is_empty(),
        "the client met the dead service and tried again:\n{}",
        run.stderr
    );
}

#[test]
fn service_down_while_the_last_parts_go_and_at_completion() {
    let user = "lars";
    let mut w = world(user, ServiceOptions::default());
    let valet = Valet::with_token(&w.service.url, &w.token).log_level("info");
    let dir = tempfile::tempdir().unwrap();
    let size = 60 * MIB + 4321;
    let part_count = size.div_ceil(PART_SIZE);
    let file = random_file(dir.path(), "last.bin", size, 22);
    // 4 MiB/s: the parts read ahead (and keyed) take seconds to send, time enough to see
    // their keys in the audit log and kill the service before they are all stored.
    let (mut child, stderr) = spawn_put(&valet, &file, 4 * MIB);
    // Once every part has its key, the client needs the service only to complete.
    wait_while_running(&mut child, &stderr, "keys for every part", WAIT, || {
        (parts_with_keys(&w.service).len() as u64 == part_count).then_some(())
    });
    w.service.kill();
    let done_at_kill = unfinished(&valet).map_or(0, |(_, done)| done);
    let completed_before = w
        .service
        .audit()
        .iter()
        .any(|e| e["event"] == "upload_completed");
    assert!(!completed_before, "killed before the completion");
    wait_while_running(&mut child, &stderr, "every part stored", WAIT, || {
        unfinished(&valet).filter(|(_, done)| *done == part_count)
    });
    // The client now asks a dead service to complete; it comes back a few seconds later.
    std::thread::sleep(Duration::from_secs(4));
    w.service.restart();
    let run = finish(child, &stderr);
    assert_delivered(&w, user, &run, &file);
    let retried = call_retries(&run.stderr);
    eprintln!(
        "measured: killed with {done_at_kill} of {part_count} parts stored, the rest sent \
         while it was down; {} service calls retried",
        retried.len()
    );
    assert!(
        retried.iter().any(|l| l.contains("/complete")),
        "the completion met the dead service and was asked again:\n{}",
        run.stderr
    );
}
