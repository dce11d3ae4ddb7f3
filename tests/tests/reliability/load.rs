//! Many clients at once against one real service: `valet-load` (tests/src/bin/valet-load.rs)
//! runs 32 clients, each its own account and token, 20 uploads each (create, keys, `PUT`s to
//! SeaweedFS, complete). Every call must be answered right, every upload must be completed in
//! the service's audit log, and the service's memory must stay flat. Latencies are reported,
//! not asserted: the larger measured runs are `scripts/load.sh` (bench/load-results.json) and
//! `bench/service.sh` (bench/service-results.json).

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

/// `valet-load --service` (what `bench/service.sh` runs, small): keys requests for open uploads
/// and completions of parts stored beforehand, at two concurrency levels. Every request must be
/// answered right, each keys answer must hold the keys asked for, and every completion must be
/// in the audit log. Rates and latencies are reported, not asserted.
#[test]
fn service_phases_answer_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("service.json");
    let run = std::process::Command::new(workspace_bin("valet-load"))
        .args(["--service", "--levels", "2,4", "--batches", "8,100"])
        .args(["--seconds", "1", "--completions", "20", "--out"])
        .arg(&out)
        .output()
        .expect("run valet-load (cargo build --bins first)");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "valet-load --service failed:\n{stderr}"
    );
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    eprintln!("{results:#}");

    assert_eq!(results["errors"], 0);
    assert_eq!(results["completions_verified"], 40);
    assert_eq!(results["completed_in_audit_log"], 40);
    let phases = results["phases"].as_array().unwrap();
    assert_eq!(
        phases.len(),
        6,
        "keys at two batch sizes and complete, per level"
    );
    for phase in phases {
        assert_eq!(phase["errors"], 0, "{phase}");
        let requests = phase["requests"].as_u64().unwrap();
        assert!(requests > 0, "{phase}");
        if phase["phase"] == "keys" {
            let batch = phase["batch"].as_u64().unwrap();
            assert_eq!(phase["keys"].as_u64().unwrap(), requests * batch, "{phase}");
        } else {
            assert_eq!(requests, 20, "{phase}");
            assert_eq!(phase["verified"], 20, "{phase}");
        }
        assert!(phase["service_cpu_s"].as_f64().unwrap() > 0.0, "{phase}");
        assert!(phase["service_rss_mib"].as_f64().unwrap() > 0.0, "{phase}");
    }
}
