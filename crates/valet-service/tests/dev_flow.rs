//! The service in-process in dev mode (embedded s3s-fs store, SQLite in a temp dir), driven
//! over real HTTP with reqwest; part bytes go straight to the store with the issued keys.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use valet_service::config::Config;
use valet_service::dev::{self, DevServer};
use valet_service::{audit, auth, sweeper};

mod common;

use common::{Api, MIB, PART, b64_sha256, code, file_bytes, upload_parts};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn start(dir: &tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> DevServer {
    dev::start_with(dir.path(), any_port(), adjust)
        .await
        .expect("dev service starts")
}

/// Reads an object straight from the embedded store.
async fn read_object(dev: &DevServer, key: &str) -> (StatusCode, Vec<u8>) {
    let bucket = Bucket::new(
        dev.store.endpoint.clone(),
        UrlStyle::Path,
        "valet",
        "us-east-1",
    )
    .unwrap();
    let creds = Credentials::new(
        &dev.store.credentials.access_key_id,
        &dev.store.credentials.secret_access_key,
    );
    let url = bucket
        .get_object(Some(&creds), key)
        .sign(Duration::from_secs(60));
    let response = reqwest::get(url).await.unwrap();
    (response.status(), response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn upload_is_verified_and_private_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir, |_| {}).await;
    let api = Api::new(dev.url());
    auth::add_user(
        dev.running.state.db(),
        "bob",
        "bob-password",
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();

    let signed_in = api.sign_in(&dev.user, &dev.password).await;
    let token = signed_in["access_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("vat_"));
    let (status, me) = api.get("/v1/me", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me, json!({"user": "dev", "prefix": "users/dev/"}));

    // Two parts: 5 MiB and 1 byte.
    let bytes = file_bytes(PART + 1);
    let (id, object_key, receipts) = upload_parts(&api, &token, "../../report.bin", &bytes).await;
    assert_eq!(
        object_key, "users/dev/report.bin",
        "name sanitized, under the user's prefix"
    );

    let (status, upload) = api.get(&format!("/v1/uploads/{id}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{upload}");
    assert_eq!(upload["state"], "open");
    assert_eq!(upload["layout"]["part_count"], 2);
    let sizes: Vec<u64> = upload["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![PART, 1], "status lists what the store holds");

    // Bob sees nothing of it, exactly as if it did not exist.
    let bob = api.sign_in("bob", "bob-password").await;
    let bob = bob["access_token"].as_str().unwrap();
    let nowhere = format!("/v1/uploads/{}", "0".repeat(32));
    for path in [format!("/v1/uploads/{id}"), nowhere.clone()] {
        let (status, body) = api.get(&path, bob).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "status {path}"
        );
    }
    let (status, body) = api
        .post(
            &format!("/v1/uploads/{id}/keys"),
            Some(bob),
            json!({"parts": [{"number": 1, "size": PART, "sha256": b64_sha256(b"x")}]}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "not_found"),
        "keys"
    );
    let sha = hex::encode(Sha256::digest(&bytes));
    let (status, body) = api
        .post(
            &format!("/v1/uploads/{id}/complete"),
            Some(bob),
            json!({"sha256": sha, "parts": receipts}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "not_found"),
        "complete"
    );
    let (status, body) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/uploads/{id}"),
            Some(bob),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "not_found"),
        "abort"
    );
    let (_, listed) = api.get("/v1/uploads", bob).await;
    assert_eq!(listed["uploads"], json!([]));

    // Receipts that do not match are refused before anything is completed.
    let mut wrong = receipts.clone();
    wrong[1]["sha256"] = json!(b64_sha256(b"other bytes"));
    let (status, body) = api
        .post(
            &format!("/v1/uploads/{id}/complete"),
            Some(&token),
            json!({"sha256": sha, "parts": wrong}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "parts_mismatch"),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("part 2"),
        "{body}"
    );
    let (status, body) = api
        .post(
            &format!("/v1/uploads/{id}/complete"),
            Some(&token),
            json!({"sha256": sha, "parts": &receipts[..1]}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "parts_mismatch"),
        "{body}"
    );

    // A renewed key for part 1 (same digest) is audited as a renewal.
    let (status, _) = api
        .post(
            &format!("/v1/uploads/{id}/keys"),
            Some(&token),
            json!({"parts": [{"number": 1, "size": PART, "sha256": receipts[0]["sha256"]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, verified) = api
        .post(
            &format!("/v1/uploads/{id}/complete"),
            Some(&token),
            json!({"sha256": sha, "parts": receipts}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "complete: {verified}");
    assert_eq!(verified["state"], "verified");
    assert_eq!(verified["sha256"], sha.as_str());
    assert_eq!(verified["size"], PART + 1);
    let (status, stored) = read_object(&dev, &object_key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(stored == bytes, "the object read back is the file");

    // Completing again (a retry after a lost answer) gives the same answer.
    let (status, again) = api
        .post(
            &format!("/v1/uploads/{id}/complete"),
            Some(&token),
            json!({"sha256": sha, "parts": receipts}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, verified);
    let (status, body) = api
        .post(
            &format!("/v1/uploads/{id}/keys"),
            Some(&token),
            json!({"parts": [{"number": 1, "size": PART, "sha256": receipts[0]["sha256"]}]}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "conflict"),
        "no keys after completion"
    );

    // A file whose bytes are not what the client claims is refused and removed.
    let other = file_bytes(2 * PART);
    let (bad_id, bad_key, bad_receipts) = upload_parts(&api, &token, "claimed.bin", &other).await;
    let (status, body) = api
        .post(
            &format!("/v1/uploads/{bad_id}/complete"),
            Some(&token),
            json!({"sha256": hex::encode(Sha256::digest(b"not the file")), "parts": bad_receipts}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "verification_failed"),
        "{body}"
    );
    let (status, _) = read_object(&dev, &bad_key).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an unverified object is deleted"
    );
    let (_, failed) = api.get(&format!("/v1/uploads/{bad_id}"), &token).await;
    assert_eq!(failed["state"], "failed");

    // Abort.
    let (abort_id, _, _) = upload_parts(&api, &token, "dropped.bin", &file_bytes(1)).await;
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/uploads/{abort_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, aborted) = api.get(&format!("/v1/uploads/{abort_id}"), &token).await;
    assert_eq!(aborted["state"], "aborted");

    // The audit log tells the story and holds no secret.
    let lines = audit::list(dev.running.state.db(), None).await.unwrap();
    let events: Vec<&str> = lines.iter().map(|l| l.event.as_str()).collect();
    for expected in [
        "sign_in",
        "upload_created",
        "key_issued",
        "upload_completed",
        "upload_verification_failed",
        "upload_aborted",
    ] {
        assert!(
            events.contains(&expected),
            "audit has {expected}: {events:?}"
        );
    }
    let renewal = lines
        .iter()
        .find(|l| l.event == "key_issued" && l.detail == Some(json!({"renewal": true})))
        .expect("a renewal is marked");
    assert_eq!(renewal.part, Some(1));
    assert_eq!(renewal.upload_id.as_deref(), Some(id.as_str()));
    assert!(
        renewal.expires_at.is_some()
            && renewal
                .client_addr
                .as_deref()
                .unwrap()
                .starts_with("127.0.0.1:")
    );
    let dump = serde_json::to_string(&lines).unwrap();
    for secret in [
        token.as_str(),
        signed_in["refresh_token"].as_str().unwrap(),
        bob,
        &dev.password,
        "X-Amz-Signature",
    ] {
        assert!(!dump.contains(secret), "audit log leaks {secret}");
    }

    let (status, doc) = api.get("/openapi.json", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/v1/uploads/{id}/complete"].is_object());
    dev.shutdown().await.unwrap();
}

#[tokio::test]
async fn uploads_left_open_complete_after_a_dev_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir, |_| {}).await;
    let api = Api::new(dev.url());
    let token = api.sign_in(&dev.user, &dev.password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes = file_bytes(PART + 7);
    let (id, object_key, receipts) = upload_parts(&api, &token, "restart.bin", &bytes).await;
    let endpoint = dev.store.endpoint.clone();
    dev.shutdown().await.expect("dev service stops");

    // Same directory: same store origin and credentials, so the open upload can continue.
    let dev = start(&dir, |_| {}).await;
    assert_eq!(
        dev.store.endpoint, endpoint,
        "the embedded store came back at the same origin"
    );
    let api = Api::new(dev.url());
    let token = api.sign_in(&dev.user, &dev.password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sha = hex::encode(Sha256::digest(&bytes));
    let (status, body) = api
        .post(
            &format!("/v1/uploads/{id}/complete"),
            Some(&token),
            json!({"sha256": sha, "parts": receipts}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "completed after the restart: {body}"
    );
    assert_eq!(body["state"], "verified");
    assert_eq!(
        read_object(&dev, &object_key).await,
        (StatusCode::OK, bytes)
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir, |_| {}).await;
    let api = Api::new(dev.url());

    let (status, body) = api
        .post(
            "/v1/auth/token",
            None,
            json!({"grant_type": "password", "username": "dev", "password": "wrong"}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let (status, body) = api.get("/v1/me", "vat_unknown").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );

    let first = api.sign_in("dev", &dev.password).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    assert!(r1.starts_with("vrt_"));
    let (status, body) = api.get("/v1/me", r1).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthenticated"),
        "a refresh token is no bearer"
    );

    let refresh = |token: &str| json!({"grant_type": "refresh_token", "refresh_token": token});
    let (status, second) = api.post("/v1/auth/token", None, refresh(r1)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let a2 = second["access_token"].as_str().unwrap();
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2, "rotated");
    assert_eq!(api.get("/v1/me", a2).await.0, StatusCode::OK);

    // r1 again: someone copied it. The whole sign-in ends.
    let (status, body) = api.post("/v1/auth/token", None, refresh(r1)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );
    let (status, body) = api.post("/v1/auth/token", None, refresh(r2)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked"),
        "family revoked"
    );
    let (status, body) = api.get("/v1/me", a2).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );
    let (status, body) = api
        .get("/v1/me", first["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );

    // Logout ends the access token and the refresh token's sign-in.
    let other = api.sign_in("dev", &dev.password).await;
    let access = other["access_token"].as_str().unwrap();
    let (status, _) = api
        .post(
            "/v1/auth/logout",
            Some(access),
            json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.get("/v1/me", access).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );
    let (status, body) = api
        .post(
            "/v1/auth/token",
            None,
            refresh(other["refresh_token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );

    // API tokens work until revoked.
    let db = dev.running.state.db();
    let (token_id, api_token) =
        auth::issue_api_token(db, "dev", Some("ci"), OffsetDateTime::now_utc())
            .await
            .unwrap();
    assert!(api_token.starts_with("vpt_"));
    assert_eq!(api.get("/v1/me", &api_token).await.0, StatusCode::OK);
    assert!(
        valet_service::db::tokens::revoke(db, &token_id, OffsetDateTime::now_utc())
            .await
            .unwrap()
    );
    let (status, body) = api.get("/v1/me", &api_token).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );

    let lines = audit::list(db, None).await.unwrap();
    let events: Vec<&str> = lines.iter().map(|l| l.event.as_str()).collect();
    for expected in [
        "sign_in_failed",
        "sign_in",
        "token_refreshed",
        "refresh_token_reused",
        "logout",
    ] {
        assert!(
            events.contains(&expected),
            "audit has {expected}: {events:?}"
        );
    }
    let dump = serde_json::to_string(&lines).unwrap();
    for secret in [r1, r2, a2, access, &api_token, &dev.password] {
        assert!(!dump.contains(secret), "audit log leaks a token");
    }
    dev.shutdown().await.unwrap();
}

#[tokio::test]
async fn access_tokens_expire() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir, |c| c.tokens.access_ttl = Duration::from_secs(1)).await;
    let api = Api::new(dev.url());
    let signed_in = api.sign_in("dev", &dev.password).await;
    assert_eq!(signed_in["expires_in"], 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, body) = api
        .get("/v1/me", signed_in["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_expired")
    );
    dev.shutdown().await.unwrap();
}

#[tokio::test]
async fn abandoned_uploads_are_aborted_by_the_sweeper() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir, |c| c.uploads.abandon_after = Duration::from_secs(60)).await;
    let api = Api::new(dev.url());
    let token = api.sign_in("dev", &dev.password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (id, _, _) = upload_parts(&api, &token, "idle.bin", &file_bytes(10)).await;

    let state = &dev.running.state;
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        sweeper::sweep_once(state, now).await.unwrap(),
        0,
        "not idle long enough"
    );
    assert_eq!(
        sweeper::sweep_once(state, now + Duration::from_secs(61))
            .await
            .unwrap(),
        1
    );
    let (_, upload) = api.get(&format!("/v1/uploads/{id}"), &token).await;
    assert_eq!(upload["state"], "aborted");
    let lines = audit::list(state.db(), Some(&id)).await.unwrap();
    assert_eq!(lines.last().unwrap().event, "upload_abandoned");
    dev.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_api_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir, |c| {
        c.limits.max_file_size = bytesize::ByteSize::mib(100);
        c.limits.allowed_content_types = vec!["image/*".into(), "application/octet-stream".into()];
    })
    .await;
    let api = Api::new(dev.url());
    let token = api.sign_in("dev", &dev.password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let create = |name: &str, size: u64, ct: &str, part: u64| json!({"file_name": name, "size": size, "content_type": ct, "part_size": part});
    let cases = [
        (create("..", 1, "image/png", PART), "bad_request"),
        (create("\u{202E}", 1, "image/png", PART), "bad_request"),
        (create("a.png", 200 * MIB, "image/png", PART), "too_large"),
        (
            create("a.txt", 1, "text/plain", PART),
            "content_type_not_allowed",
        ),
        (json!({"nonsense": true}), "bad_request"),
    ];
    for (body, expected) in cases {
        let (status, answer) = api.post("/v1/uploads", Some(&token), body.clone()).await;
        assert_eq!(code(&answer), expected, "{body} -> {status} {answer}");
        assert_eq!(status.as_u16(), answer_status(expected));
    }
    let (status, answer) = api
        .post("/v1/uploads", None, create("a.png", 1, "image/png", PART))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );

    // Keys: wrong size, out-of-range part, bad digest.
    let (id, _, _) = upload_parts(&api, &token, "k.bin", &file_bytes(PART + 1)).await;
    for part in [
        json!({"number": 2, "size": 2, "sha256": b64_sha256(b"x")}),
        json!({"number": 3, "size": 1, "sha256": b64_sha256(b"x")}),
        json!({"number": 1, "size": PART, "sha256": "AAAA"}),
    ] {
        let (status, answer) = api
            .post(
                &format!("/v1/uploads/{id}/keys"),
                Some(&token),
                json!({"parts": [part]}),
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{part}"
        );
    }
    dev.shutdown().await.unwrap();
}

/// The client's part size is a preference: the service answers the layout the store takes,
/// here S3's (parts of 5 MiB or more) with `max_parts` lowered to 4.
#[tokio::test]
async fn the_service_chooses_part_sizes_the_store_takes() {
    const GIB: u64 = 1024 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir, |c| c.store.max_parts = Some(4)).await;
    let api = Api::new(dev.url());
    let token = api.sign_in("dev", &dev.password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // (size, preferred part size) -> (part size, parts)
    let cases = [
        ((8 * MIB, MIB), (PART, 2)),
        ((8 * MIB, 3 * MIB), (PART, 2)),
        ((8 * MIB, 8 * MIB), (8 * MIB, 1)),
        ((40 * MIB, MIB), (10 * MIB, 4)),
        ((40 * MIB + 1, 10 * MIB), (11 * MIB, 4)),
        ((20 * GIB, PART), (5 * GIB, 4)),
        ((0, MIB), (PART, 1)),
    ];
    for ((size, preferred), expected) in cases {
        let body = json!({"file_name": "f.bin", "size": size, "part_size": preferred});
        let (status, answer) = api.post("/v1/uploads", Some(&token), body).await;
        assert_eq!(status, StatusCode::OK, "{size} / {preferred}: {answer}");
        let layout = &answer["layout"];
        assert_eq!(
            (layout["part_size"].as_u64(), layout["part_count"].as_u64()),
            (Some(expected.0), Some(expected.1)),
            "{size} bytes, {preferred} preferred: {layout}"
        );
    }
    // Four parts of S3's largest: one byte more fits no part size.
    let body = json!({"file_name": "f.bin", "size": 20 * GIB + 1, "part_size": PART});
    let (status, answer) = api.post("/v1/uploads", Some(&token), body).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains(&(20 * GIB).to_string()),
        "the refusal names the most the store takes: {answer}"
    );
    dev.shutdown().await.unwrap();
}

fn answer_status(code: &str) -> u16 {
    match code {
        "too_large" => 413,
        "content_type_not_allowed" => 415,
        _ => 400,
    }
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = dev::start_with(dir.path(), "0.0.0.0:0".parse().unwrap(), |_| {})
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("not a loopback address"),
        "{error}"
    );
}

#[tokio::test]
async fn the_dev_password_is_kept_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(&dir, |_| {}).await;
    let password = first.password.clone();
    first.shutdown().await.unwrap();
    let kept = std::fs::read_to_string(dir.path().join("dev-password")).unwrap();
    assert_eq!(kept.trim(), password);
    let second = start(&dir, |_| {}).await;
    assert_eq!(second.password, password);
    Api::new(second.url()).sign_in("dev", &password).await;
    second.shutdown().await.unwrap();
}

/// A refresh that fails part way (here: its audit entry cannot be written) changes nothing:
/// the refresh token is not left used without a successor, so the client's retry gets the
/// next pair instead of being taken for reuse and revoking the sign-in.
#[tokio::test]
async fn a_refresh_that_fails_part_way_can_be_retried() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir, |_| {}).await;
    let api = Api::new(dev.url());
    let first = api.sign_in("dev", &dev.password).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let refresh = |token: &str| json!({"grant_type": "refresh_token", "refresh_token": token});

    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("valet.db"));
    let mut db = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER fail_refresh_audit BEFORE INSERT ON audit_log
         WHEN NEW.event = 'token_refreshed'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let (status, body) = api.post("/v1/auth/token", None, refresh(r1)).await;
    assert!(status.is_server_error(), "{status} {body}");
    sqlx::query("DROP TRIGGER fail_refresh_audit")
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();

    let (status, second) = api.post("/v1/auth/token", None, refresh(r1)).await;
    assert_eq!(status, StatusCode::OK, "the retry is not reuse: {second}");
    let a2 = second["access_token"].as_str().unwrap();
    assert_eq!(api.get("/v1/me", a2).await.0, StatusCode::OK);
    // Reuse detection still holds: r1 again revokes the sign-in.
    let (status, body) = api.post("/v1/auth/token", None, refresh(r1)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );
    assert_eq!(api.get("/v1/me", a2).await.0, StatusCode::UNAUTHORIZED);
    dev.shutdown().await.unwrap();
}

/// Concurrent creates of one account are checked against the quota one after the other: they
/// cannot together take more than it.
#[tokio::test]
async fn concurrent_creates_cannot_exceed_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir, |config| {
        config.limits.user_quota = Some(bytesize::ByteSize::b(10 * MIB));
    })
    .await;
    let api = Api::new(dev.url());
    let token = api.sign_in(&dev.user, &dev.password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let create = |n: usize| {
        let (api, token) = (&api, &token);
        async move {
            api.post(
                "/v1/uploads",
                Some(token),
                json!({"file_name": format!("q{n}.bin"), "size": 6 * MIB, "part_size": PART}),
            )
            .await
        }
    };
    let answers = futures_util::future::join_all((0..6).map(create)).await;
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    assert_eq!(created, 1, "only one 6 MiB upload fits 10 MiB: {answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(code(body), "quota_exceeded", "{status} {body}");
    }
    dev.shutdown().await.unwrap();
}
