//! `POST /v1/uploads` with an idempotency key: a create repeated after its answer was lost
//! finds the upload it made (one upload, one `upload_created`), per user, and a different
//! request under a used key is refused. The service in-process in dev mode, over real HTTP.

use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use valet_service::dev::{self, DevServer};
use valet_service::{audit, auth};

mod common;

use common::{Api, MIB, PART, code};

const KEY: &str = "3f2c9d0e-idempotent-create-0001";

async fn start(dir: &tempfile::TempDir) -> (DevServer, Api, String) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let dev = dev::start_with(dir.path(), any, |_| {})
        .await
        .expect("dev service starts");
    let api = Api::new(dev.url());
    let token = api.sign_in(&dev.user, &dev.password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (dev, api, token)
}

fn create(name: &str, size: u64, key: &str) -> Value {
    json!({"file_name": name, "size": size, "content_type": "application/octet-stream",
           "part_size": PART, "idempotency_key": key})
}

async fn created_events(dev: &DevServer) -> usize {
    audit::list(dev.running.state.db(), None)
        .await
        .unwrap()
        .iter()
        .filter(|line| line.event == "upload_created")
        .count()
}

async fn uploads_of(api: &Api, token: &str) -> Vec<Value> {
    let (status, list) = api.get("/v1/uploads", token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["uploads"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_repeated_create_answers_the_same_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, api, token) = start(&dir).await;

    let (status, first) = api
        .post("/v1/uploads", Some(&token), create("a.bin", 12 * MIB, KEY))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = api
        .post("/v1/uploads", Some(&token), create("a.bin", 12 * MIB, KEY))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first, "the same answer, the same upload");
    assert_eq!(created_events(&dev).await, 1, "one upload_created audited");
    let uploads = uploads_of(&api, &token).await;
    assert_eq!(uploads.len(), 1, "one upload on the service: {uploads:?}");

    // Without a key, or with another one, the same file is another upload.
    let mut plain = create("a.bin", 12 * MIB, KEY);
    plain.as_object_mut().unwrap().remove("idempotency_key");
    let (status, other) = api.post("/v1/uploads", Some(&token), plain).await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert_ne!(other["upload_id"], first["upload_id"]);
    let (status, other) = api
        .post(
            "/v1/uploads",
            Some(&token),
            create("a.bin", 12 * MIB, "another-key-0000000002"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert_ne!(other["upload_id"], first["upload_id"]);
    assert_eq!(created_events(&dev).await, 3);
}

#[tokio::test]
async fn another_users_same_key_is_their_own_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, api, token) = start(&dir).await;
    let now = OffsetDateTime::now_utc();
    auth::add_user(dev.running.state.db(), "bob", "bob-password", now)
        .await
        .unwrap();
    let bob = api.sign_in("bob", "bob-password").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, mine) = api
        .post("/v1/uploads", Some(&token), create("a.bin", MIB, KEY))
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let (status, bobs) = api
        .post("/v1/uploads", Some(&bob), create("a.bin", MIB, KEY))
        .await;
    assert_eq!(status, StatusCode::OK, "{bobs}");
    assert_ne!(bobs["upload_id"], mine["upload_id"], "bob's own upload");
    assert!(
        bobs["object_key"]
            .as_str()
            .unwrap()
            .starts_with("users/bob/"),
        "{bobs}"
    );
    assert_eq!(created_events(&dev).await, 2);
    assert_eq!(uploads_of(&api, &bob).await.len(), 1);
    assert_eq!(uploads_of(&api, &token).await.len(), 1);
}

#[tokio::test]
async fn a_used_key_with_another_request_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, api, token) = start(&dir).await;
    let (status, first) = api
        .post("/v1/uploads", Some(&token), create("a.bin", MIB, KEY))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");

    for (changed, request) in [
        ("size", create("a.bin", MIB + 1, KEY)),
        ("file_name", create("b.bin", MIB, KEY)),
    ] {
        let (status, refused) = api.post("/v1/uploads", Some(&token), request).await;
        assert_eq!(status, StatusCode::CONFLICT, "{changed}: {refused}");
        assert_eq!(code(&refused), "conflict");
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.contains("idempotency key") && message.contains(changed),
            "the refusal names the key and what differs: {message}"
        );
    }
    let mut elsewhere = create("a.bin", MIB, KEY);
    elsewhere["prefix"] = json!("elsewhere");
    let (status, refused) = api.post("/v1/uploads", Some(&token), elsewhere).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");

    let (status, refused) = api
        .post("/v1/uploads", Some(&token), create("a.bin", MIB, "short"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("idempotency_key")
    );

    assert_eq!(created_events(&dev).await, 1, "nothing else created");
    assert_eq!(uploads_of(&api, &token).await.len(), 1);
}

#[tokio::test]
async fn an_aborted_upload_is_answered_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, api, token) = start(&dir).await;
    let (status, first) = api
        .post("/v1/uploads", Some(&token), create("a.bin", MIB, KEY))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let id = first["upload_id"].as_str().unwrap();
    let path = format!("/v1/uploads/{id}");
    let (status, _) = api
        .call(reqwest::Method::DELETE, &path, Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, again) = api
        .post("/v1/uploads", Some(&token), create("a.bin", MIB, KEY))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first, "the upload made under the key");
    let (_, upload) = api.get(&path, &token).await;
    assert_eq!(
        upload["state"], "aborted",
        "its state is the status call's to tell"
    );
    assert_eq!(created_events(&dev).await, 1);
}

#[tokio::test]
async fn concurrent_creates_with_one_key_make_one_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, api, token) = start(&dir).await;
    let send = || api.post("/v1/uploads", Some(&token), create("a.bin", MIB, KEY));
    let ((status_a, a), (status_b, b)) = tokio::join!(send(), send());
    assert_eq!(
        (status_a, status_b),
        (StatusCode::OK, StatusCode::OK),
        "{a} {b}"
    );
    assert_eq!(a["upload_id"], b["upload_id"], "one upload for both");
    assert_eq!(created_events(&dev).await, 1);
    assert_eq!(uploads_of(&api, &token).await.len(), 1);
}
