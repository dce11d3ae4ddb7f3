//! Many clients at once against one real service: `valet-load` (tests/src/bin/valet-load.rs)
//! runs 32 clients, each its own account and token, 20 uploads each (create, keys, `PUT`s to
//! SeaweedFS, complete). Every call must be answered right, every upload must be completed in
//! the service's audit log, and the service's memory must stay flat. Latencies are reported,
//! not asserted: the larger measured run is `scripts/load.sh` (bench/load-results.json).

use serde_json::Value;
use valet_tests::workspace_bin;

const CLIENTS: u64 = 32;
const ROUNDS: u64 = 20;

#[test]
fn many_clients_at_once_all_complete_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("load.json");
    let run = std::process::Command::new(workspace_bin("valet-load"))
        .args([
            &CLIENTS.to_string(),
            &ROUNDS.to_string(),
            "--big-every",
            "20",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("run valet-load (cargo build --bins first)");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "valet-load failed:\n{stderr}");
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    eprintln!("{results:#}");

    let uploads = CLIENTS * ROUNDS;
    assert_eq!(results["errors"], 0, "{}", results["error_messages"]);
    assert_eq!(results["uploads_attempted"], uploads);
    assert_eq!(
        results["uploads_verified"], uploads,
        "every upload verified"
    );
    assert_eq!(
        results["completed_in_audit_log"], uploads,
        "the service's audit log records every upload completed"
    );
    for call in ["create", "keys", "complete"] {
        assert_eq!(
            results["latency"][call]["count"], uploads,
            "every {call} call answered"
        );
    }

    let rss = &results["service_rss_mib"];
    let samples = rss["samples"].as_u64().unwrap();
    assert!(
        samples >= 3,
        "the service's memory was sampled during the run: {rss}"
    );
    let first = rss["first_third_mean"].as_f64().unwrap();
    let last = rss["last_third_mean"].as_f64().unwrap();
    assert!(first > 0.0, "{rss}");
    // Generous: a leak of a few KiB per upload over 640 uploads would not show; a leak per
    // request of the body or the keys would (the bound is what the run itself started with).
    assert!(
        last <= first * 1.5 + 16.0,
        "the service's memory grew from {first} MiB to {last} MiB over the run: {rss}"
    );
}
