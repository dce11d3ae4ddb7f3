//! The audit log is written only by the service's own actions: no method on any path of the
//! API changes or removes an entry (they only append), and what an upload or a sign-in left
//! there survives its abort and logout. Every answer, refusals included, carries the
//! security headers.

use serde_json::{Value, json};
use valet_tests::api::{RawAnswer, client_from, send};

use super::authorization::routes_in_source;
use super::{ANN, Deployment, create_upload};

/// Methods tried on every path; TRACE and CONNECT-like oddities included.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

/// Paths an attacker would guess for the log, besides every routed one.
const GUESSED: &[&str] = &[
    "/v1/audit",
    "/v1/audit/1",
    "/v1/audit_log",
    "/v1/admin/audit",
    "/v1/uploads/{id}/audit",
    "/v1/uploads/{id}/../../audit",
    "/v1/uploads/{id}/keys/1",
    "/audit",
    "/valet.db",
    "/v1/../valet.db",
    "/%2e%2e/valet.db",
    "/v1/users",
    "/v1/tokens",
    "/v1/me/tokens",
];

/// Headers every answer must carry (HSTS only over TLS: see crates/valet-service/tests/tls.rs).
const HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

fn assert_headers(answer: &RawAnswer, what: &str) {
    for (name, value) in HEADERS {
        assert_eq!(
            answer.header(name),
            Some(*value),
            "{what} (HTTP {}): {name}",
            answer.status
        );
    }
}

#[test]
fn no_request_rewrites_the_audit_log_and_every_answer_has_the_security_headers() {
    let d = Deployment::start("");
    let signed_in = d.sign_in(ANN);
    let (token, _) = d.api_token(ANN, "sweep");
    // An upload with a key issued, so it has entries of every kind an upload makes.
    let created = create_upload(&d, &token, "audited.bin", 10).json();
    let id = created["upload_id"].as_str().unwrap().to_owned();
    let digest = crate::helpers::part_digest(1, b"0123456789");
    let keys = d.call(
        &token,
        "POST",
        &format!("/v1/uploads/{id}/keys"),
        Some(json!({"parts": [digest]})),
    );
    assert_eq!(keys.status, 200, "{keys:?}");
    let before = d.service.audit();
    assert!(
        before.len() >= 3,
        "sign-in, creation and key entries: {before:?}"
    );

    let routed = routes_in_source();
    let mut paths: Vec<String> = routed.iter().map(|(_, p)| p.clone()).collect();
    paths.extend(GUESSED.iter().map(|p| p.to_string()));
    paths.sort();
    paths.dedup();
    // Bodies an attacker would try: an empty one, and one that names the log.
    let bodies = [
        None,
        Some(json!({"event": "upload_completed", "upload_id": id, "seq": 1, "delete": true})),
    ];
    let mut sent = 0;
    for path in &paths {
        let path = path.replace("{id}", &id);
        for method in METHODS {
            // Logging out would end the sweep's token: that one is sent last, below.
            if *method == "POST" && path == "/v1/auth/logout" {
                continue;
            }
            for body in &bodies {
                let answer = send(
                    &client_from(None),
                    d.url(),
                    method,
                    &path,
                    Some(&format!("Bearer {token}")),
                    body.as_ref().map(|b| b.to_string().into_bytes()),
                );
                sent += 1;
                let what = format!("{method} {path}");
                assert!(answer.status < 500, "{what}: {answer:?}");
                assert_headers(&answer, &what);
                let routed_here = routed
                    .iter()
                    .any(|(m, p)| m == method && p.replace("{id}", &id) == path)
                    || (*method == "HEAD"
                        && routed
                            .iter()
                            .any(|(m, p)| m == "GET" && p.replace("{id}", &id) == path));
                if !routed_here {
                    assert!(
                        [404, 405].contains(&answer.status),
                        "{what} is no route: HTTP {}",
                        answer.status
                    );
                }
            }
        }
    }
    // The upload's own end and the sign-in's own end append; they remove nothing.
    let logout = d.call(&signed_in.access_token, "POST", "/v1/auth/logout", None);
    assert_eq!(logout.status, 204);
    let after = d.service.audit();
    assert!(
        after.len() > before.len(),
        "the sweep's own actions (the upload aborted) were appended"
    );
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "every entry written before the sweep is still there, unchanged, in order"
    );
    let events_of = |id: &str| -> Vec<Value> {
        after
            .iter()
            .filter(|e| e["upload_id"] == id)
            .map(|e| e["event"].clone())
            .collect()
    };
    assert_eq!(
        events_of(&id),
        [
            json!("upload_created"),
            json!("key_issued"),
            json!("upload_aborted")
        ],
        "the aborted upload keeps its history"
    );
    let events: Vec<&Value> = after.iter().map(|e| &e["event"]).collect();
    assert!(events.contains(&&json!("sign_in")) && events.contains(&&json!("logout")));
    println!(
        "audit sweep: {} paths × {} methods × 2 bodies = {sent} requests",
        paths.len(),
        METHODS.len()
    );
}
