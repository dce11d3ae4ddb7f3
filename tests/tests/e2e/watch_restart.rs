use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use valet_tests::files::random_file;
use valet_tests::service::ServiceOptions;
use valet_tests::wait_for;

use crate::helpers::world;
use crate::watch_support::{PATIENCE, Watch, completed, events};

const BIG: u64 = 24 * 1024 * 1024;

fn sent_names(lines: &[Value]) -> Vec<String> {
    events(lines, "sent")
        .iter()
        .map(|l| {
            let path = Path::new(l["path"].as_str().unwrap());
            path.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect()
}

#[test]
fn a_killed_watch_sends_nothing_twice_and_catches_up_on_restart() {
    let w = world("kai", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20u64 {
        random_file(dir.path(), &format!("before-{i:02}.bin"), 1000 + i, i);
    }
    // Slow enough that the big file is being uploaded when the watch is killed.
    let extra = ["--bwlimit", "4MiB", "--part-size", "5MiB"];
    let watch = Watch::start(&w.valet, dir.path(), &extra);
    watch.wait_until("the first 20 files sent", PATIENCE, |lines| {
        events(lines, "sent").len() == 20
    });
    random_file(dir.path(), "big.bin", BIG, 99);
    for i in 0..5u64 {
        random_file(dir.path(), &format!("during-{i}.bin"), 3000 + i, 100 + i);
    }
    watch.wait_until("the big file handed out", PATIENCE, |lines| {
        lines
            .iter()
            .any(|l| l["event"] == "queued" && l["path"].as_str().unwrap().ends_with("big.bin"))
    });
    std::thread::sleep(Duration::from_secs(2));
    let first = watch.kill(); // SIGKILL: no clean-up at all
    let first_sent = sent_names(&first);
    assert!(
        !first_sent.iter().any(|n| n == "big.bin"),
        "killed while the big file was still being sent"
    );

    // While it is down, more files arrive.
    for i in 0..10u64 {
        random_file(dir.path(), &format!("offline-{i}.bin"), 5000 + i, 200 + i);
    }

    let watch = Watch::start(&w.valet, dir.path(), &extra);
    let watching = watch.events("watching");
    assert!(
        watching[0]["already_sent"].as_u64().unwrap() >= 20,
        "the restarted watch knows what was sent: {watching:?}"
    );
    let all = 20 + 1 + 5 + 10;
    // The service's own record says when every file is there (a file verified just as the
    // watch was killed has no `sent` line of its own).
    wait_for("every file completed", PATIENCE, || {
        (completed(&w.service).len() >= all).then_some(())
    });
    let second = watch.stop();
    let second_sent = sent_names(&second);

    let first_set: HashSet<_> = first_sent.iter().collect();
    let again: Vec<_> = second_sent
        .iter()
        .filter(|n| first_set.contains(n))
        .collect();
    assert!(again.is_empty(), "sent again after the restart: {again:?}");
    for name in ["big.bin", "offline-0.bin", "offline-9.bin"] {
        assert!(
            second_sent.iter().any(|n| n == name),
            "{name} sent after the restart"
        );
    }

    let completed = completed(&w.service);
    let keys: HashSet<_> = completed
        .iter()
        .map(|e| e["detail"]["object_key"].as_str().unwrap().to_string())
        .collect();
    eprintln!(
        "measured: {} sent before the kill, {} after the restart, {} uploads completed on the service",
        first_sent.len(),
        second_sent.len(),
        completed.len()
    );
    assert_eq!(
        (completed.len(), keys.len()),
        (all, all),
        "the service completed each file exactly once"
    );
}
