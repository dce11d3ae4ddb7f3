//! Per-user stores: `[routing.users]` sends an account's uploads to a named `[stores.NAME]`;
//! everyone else's go to `[store]`, and an upload stays on the store it was created on. Two
//! embedded S3 stores stand in for two deployments' stores.

mod common;

use reqwest::StatusCode;
use serde_json::json;
use time::OffsetDateTime;
use valet_service::config::Config;
use valet_service::store::dev::DevStore;
use valet_service::{auth, server};

use common::{Api, PART, file_bytes, upload_parts};

#[tokio::test]
async fn routed_users_upload_to_their_own_store() {
    let dir = tempfile::tempdir().unwrap();
    let main = DevStore::start(&dir.path().join("main")).await.unwrap();
    let second = DevStore::start(&dir.path().join("second")).await.unwrap();
    let second_credentials = dir.path().join("second.toml");
    std::fs::write(
        &second_credentials,
        format!(
            "access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            second.credentials.access_key_id, second.credentials.secret_access_key
        ),
    )
    .unwrap();
    let config = Config::from_toml(&format!(
        r#"
        listen = "127.0.0.1:0"
        data_dir = "{data}"
        [store]
        endpoint = "{main}"
        bucket = "valet"
        path_style = true
        create_bucket = true
        verify = "read-back"
        tag_objects = false
        [stores.second]
        endpoint = "{second}"
        bucket = "second-bucket"
        prefix = "people"
        path_style = true
        create_bucket = true
        verify = "read-back"
        tag_objects = false
        credentials_file = "{creds}"
        [routing.users]
        eva = "second"
        "#,
        data = dir.path().display(),
        main = main.endpoint,
        second = second.endpoint,
        creds = second_credentials.display(),
    ))
    .unwrap();
    let running = server::start(config, &main.credentials).await.unwrap();
    let now = OffsetDateTime::now_utc();
    for user in ["eva", "sam"] {
        auth::add_user(running.state.db(), user, &format!("{user}-password"), now)
            .await
            .unwrap();
    }
    let api = Api::new(&running.url);
    let bytes = file_bytes(PART + 3);
    let mut origins = Vec::new();
    for user in ["eva", "sam"] {
        let token = api.sign_in(user, &format!("{user}-password")).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (id, object_key, receipts) = upload_parts(&api, &token, "f.bin", &bytes).await;
        let (status, body) = api
            .post(
                &format!("/v1/uploads/{id}/complete"),
                Some(&token),
                json!({"sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                       "parts": receipts}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{user}: {body}");
        let (_, status_body) = api.get(&format!("/v1/uploads/{id}"), &token).await;
        assert_eq!(status_body["state"], "verified", "{status_body}");
        origins.push((user, object_key));
    }
    assert_eq!(
        origins[0].1, "people/eva/f.bin",
        "eva's store has its own prefix"
    );
    assert_eq!(origins[1].1, "users/sam/f.bin");
    // The bytes are where the routing says, and nowhere else (s3s-fs keeps ROOT/BUCKET/KEY).
    let on =
        |root: &str, bucket: &str, key: &str| dir.path().join(root).join(bucket).join(key).exists();
    assert!(
        on("second", "second-bucket", "people/eva/f.bin"),
        "eva's file is on the second store"
    );
    assert!(!on("main", "valet", "people/eva/f.bin") && !on("main", "valet", "users/eva/f.bin"));
    assert!(
        on("main", "valet", "users/sam/f.bin"),
        "sam's file is on [store]"
    );
    running.shutdown().await.unwrap();
}

#[test]
fn routing_to_a_store_no_table_defines_is_refused() {
    let error = Config::from_toml(
        r#"
        data_dir = "/tmp/v"
        [store]
        endpoint = "http://127.0.0.1:8333"
        bucket = "valet-test"
        [routing.users]
        eva = "nowhere"
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("routing.users.eva"), "{error}");
    let error = Config::from_toml(
        r#"
        data_dir = "/tmp/v"
        [store]
        endpoint = "http://127.0.0.1:8333"
        bucket = "valet-test"
        [stores.eu]
        endpoint = "http://127.0.0.1:8334"
        bucket = "x"
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("stores.eu.bucket"), "{error}");
}
