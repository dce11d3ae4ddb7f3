//! The authorization matrix: every route of the router (read from its source and from
//! `/openapi.json`, so a new route without a row here fails the test) × the caller's own
//! upload, another user's and one that does not exist × every kind of bearer token.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use valet_tests::api::{RawAnswer, client_from, send};

use super::{ANN, BOB, Deployment, create_upload};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone; a bearer token changes nothing.
    Public,
    /// A signed-in caller; no upload named.
    SignedIn,
    /// A signed-in caller, about the upload `{id}`.
    Upload,
}

/// One row per route: (method, path, access). Every route of `api::router` must be here.
const ROWS: &[(&str, &str, Access)] = &[
    ("POST", "/v1/auth/token", Access::Public),
    ("GET", "/v1/auth/sso", Access::Public),
    ("GET", "/healthz", Access::Public),
    ("GET", "/openapi.json", Access::Public),
    ("GET", "/v1/me", Access::SignedIn),
    ("GET", "/v1/uploads", Access::SignedIn),
    ("POST", "/v1/uploads", Access::SignedIn),
    ("POST", "/v1/auth/logout", Access::SignedIn),
    ("GET", "/v1/uploads/{id}", Access::Upload),
    ("POST", "/v1/uploads/{id}/keys", Access::Upload),
    ("POST", "/v1/uploads/{id}/complete", Access::Upload),
    // Last: it aborts the upload.
    ("DELETE", "/v1/uploads/{id}", Access::Upload),
];

/// Every (METHOD, path) routed in `crates/valet-service/src/api/mod.rs`: each
/// `.route("PATH", get(…).post(…))` of the router, read from the source.
pub(super) fn routes_in_source() -> BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(
        valet_tests::repo_root().join("crates/valet-service/src/api/mod.rs"),
    )
    .unwrap();
    let mut routes = BTreeSet::new();
    for call in source.split(".route(").skip(1) {
        let call = call.trim_start();
        let path = call
            .strip_prefix('"')
            .and_then(|rest| rest.split('"').next())
            .expect(".route( starts with its path");
        // The method router: up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let end = call
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect(".route( is closed");
        let methods = &call[..end];
        for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
            let called = methods.match_indices(&format!("{method}(")).any(|(at, _)| {
                at == 0
                    || !methods.as_bytes()[at - 1].is_ascii_alphanumeric()
                        && methods.as_bytes()[at - 1] != b'_'
                        && methods.as_bytes()[at - 1] != b':'
            });
            if called {
                routes.insert((method.to_ascii_uppercase(), path.to_owned()));
            }
        }
    }
    assert!(
        routes.len() >= 10,
        "the router's routes were found in its source: {routes:?}"
    );
    routes
}

/// Every (METHOD, path) `/openapi.json` documents.
fn routes_in_openapi(d: &Deployment) -> BTreeSet<(String, String)> {
    let doc = send(
        &client_from(None),
        d.url(),
        "GET",
        "/openapi.json",
        None,
        None,
    )
    .json();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("openapi.json has paths") {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    routes
}

/// The bearer tokens every route is called with.
struct Tokens {
    /// (what it is, the whole Authorization value or none) → the 401 code expected.
    refused: Vec<(String, Option<String>, &'static str)>,
    /// Ann's valid API token.
    valid: String,
}

fn tokens(d: &Deployment) -> Tokens {
    let (valid, _) = d.api_token(ANN, "matrix");
    let (revoked_api, revoked_id) = d.api_token(ANN, "revoked-by-admin");
    let out = d
        .service
        .admin(&["token", "revoke", &revoked_id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // access_ttl is 1 s in this deployment: this one has expired by the time it is used.
    let expired = d.sign_in(ANN);
    // A sign-in ended by logout (sent with another token of ann's naming its refresh token, so
    // the 1 s access token need not be used in time).
    let logged_out = d.sign_in(ANN);
    let (ender, _) = d.api_token(ANN, "ends-a-sign-in");
    let answer = d.call(
        &ender,
        "POST",
        "/v1/auth/logout",
        Some(json!({ "refresh_token": logged_out.refresh_token })),
    );
    assert_eq!(answer.status, 204, "logout: {answer:?}");
    std::thread::sleep(Duration::from_millis(2100));

    let bearer = |t: &str| Some(format!("Bearer {t}"));
    let mut tampered = valid.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let refused = vec![
        ("no Authorization".to_owned(), None, "unauthenticated"),
        ("empty".to_owned(), Some(String::new()), "unauthenticated"),
        (
            "Bearer alone".to_owned(),
            Some("Bearer".to_owned()),
            "unauthenticated",
        ),
        (
            "Basic".to_owned(),
            Some("Basic YW5uOmFubi1jb3JyZWN0".to_owned()),
            "unauthenticated",
        ),
        (
            "no prefix".to_owned(),
            bearer("not-a-valet-token"),
            "unauthenticated",
        ),
        ("prefix only".to_owned(), bearer("vat_"), "unauthenticated"),
        (
            "SQL".to_owned(),
            bearer("vat_' OR '1'='1"),
            "unauthenticated",
        ),
        (
            "one character changed".to_owned(),
            bearer(&tampered),
            "unauthenticated",
        ),
        (
            "a refresh token as bearer".to_owned(),
            bearer(&logged_out.refresh_token),
            "unauthenticated",
        ),
        (
            "expired access token".to_owned(),
            bearer(&expired.access_token),
            "token_expired",
        ),
        (
            "access token after logout".to_owned(),
            bearer(&logged_out.access_token),
            "token_revoked",
        ),
        (
            "API token revoked by the administrator".to_owned(),
            bearer(&revoked_api),
            "token_revoked",
        ),
    ];
    Tokens { refused, valid }
}

/// A body that would be accepted from the owner, so a refusal is about the caller only.
fn body_for(method: &str, path: &str) -> Option<serde_json::Value> {
    let digest = crate::helpers::part_digest(1, b"0123456789");
    match (method, path) {
        ("POST", "/v1/auth/token") => {
            Some(json!({"grant_type": "refresh_token", "refresh_token": "vrt_not-a-token"}))
        }
        ("POST", "/v1/uploads") => Some(json!({
            "file_name": "matrix.bin", "size": 10,
            "content_type": "application/octet-stream", "part_size": valet_tests::PART_SIZE,
        })),
        ("POST", "/v1/uploads/{id}/keys") => Some(json!({ "parts": [digest] })),
        ("POST", "/v1/uploads/{id}/complete") => Some(json!({
            "sha256": "00".repeat(32),
            "parts": [{"number": 1, "etag": "\"x\"", "sha256": digest.sha256, "size": 10}],
        })),
        _ => None,
    }
}

fn call(d: &Deployment, auth: Option<&str>, method: &str, path: &str, id: &str) -> RawAnswer {
    let body = body_for(method, path).map(|b| b.to_string().into_bytes());
    let path = path.replace("{id}", id);
    send(&client_from(None), d.url(), method, &path, auth, body)
}

fn code(answer: &RawAnswer) -> String {
    answer
        .error()
        .map(|e| e.code.as_str().to_owned())
        .unwrap_or_else(|| format!("(HTTP {}, not an error body)", answer.status))
}

#[test]
fn every_route_refuses_every_bad_token_and_hides_other_users_uploads() {
    let d = Deployment::start("[tokens]\naccess_ttl = \"1s\"\n");
    let routed = routes_in_source();
    let documented = routes_in_openapi(&d);
    let rows: BTreeSet<(String, String)> = ROWS
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(rows, routed, "one row per route of the router (api/mod.rs)");
    let mut documented_or_served = documented.clone();
    documented_or_served.insert(("GET".into(), "/openapi.json".into()));
    assert_eq!(
        documented_or_served, routed,
        "openapi.json documents every route"
    );

    let tokens = tokens(&d);
    let ann_upload = create_upload(&d, &tokens.valid, "ann-own.bin", 10).json();
    let ann_id = ann_upload["upload_id"].as_str().unwrap().to_owned();
    let (bob_token, _) = d.api_token(BOB, "bob");
    let bob_upload = create_upload(&d, &bob_token, "bob-private.bin", 10).json();
    let bob_id = bob_upload["upload_id"].as_str().unwrap().to_owned();
    let bob_key = bob_upload["object_key"].as_str().unwrap().to_owned();
    let unknown_id = "0123456789abcdef0123456789abcdef";
    let valid = format!("Bearer {}", tokens.valid);

    let mut checked = 0;
    for &(method, path, access) in ROWS {
        let ids: &[&str] = match access {
            Access::Upload => &[&ann_id, &bob_id, unknown_id],
            _ => &[""],
        };
        for id in ids {
            let target = format!("{method} {path} ({id})");
            let with_valid = |d: &Deployment| match (method, path) {
                // Logging out ends the token: a token of its own.
                ("POST", "/v1/auth/logout") => {
                    let (own, _) = d.api_token(ANN, &valet_tests::random_name("logout"));
                    call(d, Some(&format!("Bearer {own}")), method, path, id)
                }
                _ => call(d, Some(&valid), method, path, id),
            };
            let public_answer =
                (access == Access::Public).then(|| call(&d, None, method, path, id));
            for (what, auth, expected) in &tokens.refused {
                let answer = call(&d, auth.as_deref(), method, path, id);
                checked += 1;
                match &public_answer {
                    Some(public) => assert_eq!(
                        (answer.status, code(&answer)),
                        (public.status, code(public)),
                        "{target} with {what}: a public route answers as without a token"
                    ),
                    None => assert_eq!(
                        (answer.status, code(&answer).as_str()),
                        (401, *expected),
                        "{target} with {what}"
                    ),
                }
            }
            let answer = with_valid(&d);
            checked += 1;
            let expected = match (method, path, *id) {
                (_, _, id) if id == bob_id || id == unknown_id => (404, "not_found"),
                ("POST", "/v1/auth/token", _) => (401, "unauthenticated"),
                ("GET", "/v1/auth/sso", _) => (404, "not_found"),
                ("POST", "/v1/uploads/{id}/complete", _) => (422, "parts_mismatch"),
                ("POST", "/v1/auth/logout", _) | ("DELETE", _, _) => (204, ""),
                _ => (200, ""),
            };
            let got = if answer.status < 300 {
                (answer.status, String::new())
            } else {
                (answer.status, code(&answer))
            };
            assert_eq!(
                (got.0, got.1.as_str()),
                expected,
                "{target} with ann's valid token: {}",
                String::from_utf8_lossy(&answer.body)
            );
            let text = String::from_utf8_lossy(&answer.body);
            assert!(
                !text.contains(&bob_key)
                    && !text.contains("users/bob")
                    && !text.contains("bob-private"),
                "{target}: nothing of bob's upload in ann's answer: {text}"
            );
            if *id == bob_id {
                let unknown = call(&d, Some(&valid), method, path, unknown_id);
                assert_eq!(
                    (answer.status, &answer.body),
                    (unknown.status, &unknown.body),
                    "{target}: another user's upload answers exactly as one that does not exist"
                );
            }
        }
    }

    // The valid answers said the right things.
    let me = d.call(&tokens.valid, "GET", "/v1/me", None).json();
    assert_eq!(
        (me["user"].as_str(), me["prefix"].as_str()),
        (Some(ANN), Some("users/ann/"))
    );
    let listed = d.call(&tokens.valid, "GET", "/v1/uploads", None).json();
    let listed: Vec<&str> = listed["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["object_key"].as_str().unwrap())
        .collect();
    assert!(
        !listed.is_empty() && listed.iter().all(|k| k.starts_with("users/ann/")),
        "ann lists only her own uploads: {listed:?}"
    );
    // Bob's upload is as he left it: open, no key issued for it, no part in the store.
    let bob_status = d
        .call(&bob_token, "GET", &format!("/v1/uploads/{bob_id}"), None)
        .json();
    assert_eq!(bob_status["state"], "open", "{bob_status}");
    assert_eq!(bob_status["parts"], json!([]), "{bob_status}");
    let touched: Vec<_> = d
        .service
        .audit()
        .into_iter()
        .filter(|e| e["upload_id"] == bob_id.as_str() && e["event"] != "upload_created")
        .collect();
    assert!(
        touched.is_empty(),
        "nothing happened to bob's upload: {touched:?}"
    );
    println!(
        "authorization matrix: {} routes, {checked} calls",
        ROWS.len()
    );
}
