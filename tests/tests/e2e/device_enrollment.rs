use std::process::Command;

use serde_json::Value;
use valet_tests::cli::{Valet, parse_run};
use valet_tests::files::random_file;
use valet_tests::service::{Service, ServiceOptions};
use valet_tests::store::{StoreKind, TestStore};
use valet_tests::workspace_bin;

/// `valet-service enrollment new-secret NAME`: (secret, the `[[enrollment]]` entry).
fn new_secret(name: &str) -> (String, String) {
    let out = Command::new(workspace_bin("valet-service"))
        .args(["enrollment", "new-secret", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let entry: String = stderr
        .lines()
        .skip_while(|l| !l.starts_with("[[enrollment]]"))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(entry.contains("secret_sha256 = \""), "{stderr}");
    assert!(
        !entry.contains(&secret),
        "the config holds the secret's hash, not the secret"
    );
    (secret, entry)
}

#[test]
fn a_device_enrolls_from_the_policy_uploads_and_stops_when_revoked() {
    let (secret, entry) = new_secret("laptops");
    let store = TestStore::shared_or_start(StoreKind::S3);
    let service = Service::start(
        &store,
        ServiceOptions {
            extra_config: entry,
            ..ServiceOptions::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let write_policy = |secret: &str| {
        let policy = dir.path().join("policy.json");
        std::fs::write(
            &policy,
            format!(
                r#"{{ "server": "{}", "sign_in": {{ "mode": "enrollment", "enrollment_secret": "{secret}", "allow_sign_in_screen": false }} }}"#,
                service.url
            ),
        )
        .unwrap();
        policy
    };
    let valet = Valet::signed_out(&service.url);
    let run = |args: &[&str], policy: &std::path::Path| {
        valet
            .command(args)
            .env("VALET_POLICY", policy)
            .output()
            .unwrap()
    };

    // A wrong secret is refused, and says where to look.
    let out = run(
        &["enroll", "--device-name", "Scan Station 7"],
        &write_policy("ves_wrong"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown enrollment secret"), "{stderr}");

    // The right one: the device gets its own account, kept like a sign-in.
    let policy = write_policy(&secret);
    let out = run(&["enroll", "--device-name", "Scan Station 7"], &policy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("as laptops-scan-station-7"), "{stderr}");
    assert!(!stderr.contains(&secret), "the secret is never printed");

    let file = random_file(dir.path(), "scan.pdf", 300 * 1024, 3);
    let put = parse_run(run(&["put", "--json", file.to_str().unwrap()], &policy));
    let line = put.verified();
    assert!(
        line["object"]
            .as_str()
            .unwrap()
            .contains("/laptops-scan-station-7/"),
        "{line}"
    );

    let devices = service.admin_json(&["device", "list", "--json"]);
    assert_eq!(devices.len(), 1, "{devices:?}");
    let device = &devices[0];
    assert_eq!(device["user"], "laptops-scan-station-7");
    assert_eq!(device["name"], "Scan Station 7");
    assert_eq!(device["revoked_at"], Value::Null);

    // Revoked: its next upload stops with a message that says so.
    let id = device["id"].as_str().unwrap();
    let out = service.admin(&["device", "revoke", id]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = random_file(dir.path(), "scan2.pdf", 300 * 1024, 4);
    let put = parse_run(run(&["put", "--json", again.to_str().unwrap()], &policy));
    assert_eq!(
        put.code,
        Some(2),
        "a revoked device cannot upload: {:?} {}",
        put.lines,
        put.stderr
    );
    assert!(
        put.stderr.contains("revoked by an administrator")
            && put.stderr.contains("(device_revoked)"),
        "{}",
        put.stderr
    );
    let devices = service.admin_json(&["device", "list", "--json"]);
    assert_ne!(devices[0]["revoked_at"], Value::Null);

    // Enrolling again (a wiped or reinstalled computer) does not undo the revocation ...
    let fresh = Valet::signed_out(&service.url);
    let out = fresh
        .command(&["enroll", "--device-name", "Scan Station 7"])
        .env("VALET_POLICY", &policy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("revoked by an administrator"), "{stderr}");
    // ... until an administrator lets it back in.
    let out = service.admin(&["device", "forget", id]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fresh
        .command(&["enroll", "--device-name", "Scan Station 7"])
        .env("VALET_POLICY", &policy)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let events: Vec<String> = service
        .audit()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    for wanted in [
        "device_enrollment_failed",
        "device_enrolled",
        "upload_completed",
        "device_revoked",
    ] {
        assert!(
            events.iter().any(|e| e == wanted),
            "no {wanted} in {events:?}"
        );
    }
}
