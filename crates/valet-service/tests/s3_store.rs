//! The service against a real S3 store that checks part checksums (SeaweedFS), in `checksum`
//! verification mode: the store itself refuses bytes other than those signed into a key, and
//! the composite checksum it reports is checked at completion.
//!
//! Runs when `VALET_TEST_S3` is set (e.g. `http://127.0.0.1:8333`, with
//! `VALET_TEST_S3_ACCESS_KEY` / `VALET_TEST_S3_SECRET_KEY`, default `test` / `testtest`);
//! start SeaweedFS as in CONTRIBUTING or the storage recipe. Without it the test says so and
//! returns.

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use valet_service::config::{Config, StoreCredentials};
use valet_service::{auth, checksum, server};

use common::{Api, PART, b64_sha256, code, file_bytes, upload_parts};

fn store_under_test() -> Option<(String, StoreCredentials)> {
    let endpoint = std::env::var("VALET_TEST_S3").ok()?;
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    Some((
        endpoint,
        StoreCredentials {
            access_key_id: var("VALET_TEST_S3_ACCESS_KEY", "test"),
            secret_access_key: var("VALET_TEST_S3_SECRET_KEY", "testtest"),
            session_token: None,
        },
    ))
}

/// A service on `bucket` of the store under test, with one signed-in user.
struct Started {
    running: server::Running,
    api: Api,
    token: String,
    endpoint: String,
    credentials: StoreCredentials,
    _dir: tempfile::TempDir,
}

/// A service on `bucket` of the store under test with `user` signed in, or `None` (and a
/// line saying so) when no store is named.
async fn start_on(bucket: &str, user: &str) -> Option<Started> {
    let Some((endpoint, credentials)) = store_under_test() else {
        eprintln!("VALET_TEST_S3 not set: S3 store test not run");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&format!(
        r#"
        listen = "127.0.0.1:0"
        data_dir = "{}"
        [keys]
        ttl = "3s"
        [store]
        endpoint = "{endpoint}"
        bucket = "{bucket}"
        path_style = true
        create_bucket = true
        verify = "checksum"
        tag_objects = true
        "#,
        dir.path().display()
    ))
    .unwrap();
    let running = server::start(config, &credentials)
        .await
        .expect("service starts");
    let password = format!("{user}-password");
    auth::add_user(
        running.state.db(),
        user,
        &password,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let api = Api::new(&running.url);
    let token = api.sign_in(user, &password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    Some(Started {
        running,
        api,
        token,
        endpoint,
        credentials,
        _dir: dir,
    })
}

/// A `GET` of `key` (of its tags, with `tagging`) presigned with the store's own credentials:
/// the test's view of the bucket, not the service's.
fn presigned_get(
    endpoint: &str,
    credentials: &StoreCredentials,
    bucket: &str,
    key: &str,
    tagging: bool,
) -> reqwest::Url {
    let bucket = rusty_s3::Bucket::new(
        endpoint.parse().unwrap(),
        rusty_s3::UrlStyle::Path,
        bucket.to_owned(),
        "us-east-1",
    )
    .unwrap();
    let credentials =
        rusty_s3::Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
    let mut get = bucket.get_object(Some(&credentials), key);
    if tagging {
        rusty_s3::S3Action::query_mut(&mut get).insert("tagging", "");
    }
    rusty_s3::S3Action::sign(&get, Duration::from_secs(60))
}

#[tokio::test]
async fn checksum_verified_upload_on_a_store_that_checks_part_digests() {
    let Some(started) = start_on("valet-svc-test", "alice").await else {
        return;
    };
    let Started {
        running,
        api,
        token,
        endpoint,
        credentials,
        _dir,
    } = started;

    let bytes = file_bytes(PART + 1);
    let (id, object_key, receipts) = upload_parts(&api, &token, "both.bin", &bytes).await;

    // The key binds the digest: other bytes, or another header value, are refused by the store.
    let (status, keys) = api
        .post(
            &format!("/v1/uploads/{id}/keys"),
            Some(&token),
            json!({"parts": [{"number": 2, "size": 1, "sha256": b64_sha256(&bytes[PART as usize..])}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let url = keys["keys"][0]["url"].as_str().unwrap().to_owned();
    valet_service::install_tls_provider();
    let http = reqwest::Client::new();
    let wrong_bytes = http
        .put(&url)
        .header("x-amz-checksum-sha256", b64_sha256(&bytes[PART as usize..]))
        .body(vec![0u8])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_bytes.status(), StatusCode::BAD_REQUEST, "BadDigest");
    let other_header = http
        .put(&url)
        .header("x-amz-checksum-sha256", b64_sha256(b"\0"))
        .body(vec![0u8])
        .send()
        .await
        .unwrap();
    assert_eq!(
        other_header.status(),
        StatusCode::FORBIDDEN,
        "header is signed"
    );
    // Keys expire (ttl 3s: enough for the parts above on a loaded machine).
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let expired = http
        .put(&url)
        .header("x-amz-checksum-sha256", b64_sha256(&bytes[PART as usize..]))
        .body(bytes[PART as usize..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::FORBIDDEN, "expired key");

    let sha = hex::encode(Sha256::digest(&bytes));
    let (status, verified) = api
        .post(
            &format!("/v1/uploads/{id}/complete"),
            Some(&token),
            json!({"sha256": sha, "parts": receipts}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    let part_digests: Vec<[u8; 32]> = bytes
        .chunks(PART as usize)
        .map(|c| Sha256::digest(c).into())
        .collect();
    assert_eq!(
        verified["store_checksum"].as_str(),
        Some(checksum::composite_sha256(&part_digests).as_str()),
        "the store's composite checksum is the one computed from the signed digests"
    );
    // The object carries its sha256 as a tag.
    let tags = http
        .get(presigned_get(
            &endpoint,
            &credentials,
            "valet-svc-test",
            &object_key,
            true,
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        tags.contains("<Key>sha256</Key>") && tags.contains(&sha),
        "tagged: {tags}"
    );
    let (status, body) = api.get(&format!("/v1/uploads/{id}"), &token).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("verified"))
    );

    // A missing part is named before anything is completed.
    let (id2, _, receipts2) = upload_parts(&api, &token, "gap.bin", &file_bytes(2 * PART)).await;
    let (status, body) = api
        .post(
            &format!("/v1/uploads/{id2}/complete"),
            Some(&token),
            json!({"sha256": sha, "parts": [receipts2[0].clone()]}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "parts_mismatch")
    );
    assert!(
        body["message"].as_str().unwrap().contains("part 2 missing"),
        "{body}"
    );

    // The store completed an upload but the service never recorded it (its answer was lost):
    // a retried completion verifies what is there.
    let lost = file_bytes(PART + 7);
    let (id3, _, receipts3) = upload_parts(&api, &token, "lost-answer.bin", &lost).await;
    let row = valet_service::db::uploads::get_for_user(running.state.db(), &id3, "alice")
        .await
        .unwrap()
        .unwrap();
    let parts: Vec<_> = receipts3
        .iter()
        .map(|r| valet_service::store::PartToComplete {
            number: r["number"].as_u64().unwrap() as u32,
            etag: valet_service::store::bare_etag(r["etag"].as_str().unwrap()),
            sha256_b64: r["sha256"].as_str().unwrap().to_owned(),
            size: r["size"].as_u64().unwrap(),
            crc32c: None,
        })
        .collect();
    let finish = valet_service::store::Finish {
        content_type: "application/octet-stream",
        sha256_hex: "",
    };
    running
        .state
        .store()
        .complete(&row.object_key, &row.store_upload_id, &parts, finish)
        .await
        .unwrap();
    // The store no longer knows the multipart upload (NoSuchUpload): the status of the upload
    // the service still has open lists no parts, instead of a 502 a client retries forever.
    let (status, body) = api.get(&format!("/v1/uploads/{id3}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["state"].as_str(), &body["parts"]),
        (Some("open"), &json!([]))
    );
    let (status, body) = api
        .post(
            &format!("/v1/uploads/{id3}/complete"),
            Some(&token),
            json!({"sha256": hex::encode(Sha256::digest(&lost)), "parts": receipts3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "verified");
    running.shutdown().await.unwrap();
}

/// When the store no longer knows the multipart upload (a lifecycle rule or an operator
/// aborted it), the service verifies what it finds at the key. That may be an earlier upload of
/// the same name: a failed verification must never delete an object this request did not
/// complete.
#[tokio::test]
async fn a_failed_verification_never_deletes_an_earlier_object_it_did_not_complete() {
    let Some(started) = start_on("valet-svc-earlier", "eve").await else {
        return;
    };
    let Started {
        running,
        api,
        token,
        endpoint,
        credentials,
        _dir,
    } = started;
    let complete = |id: String, bytes: Vec<u8>, receipts: Vec<serde_json::Value>| {
        let (api, token) = (&api, &token);
        async move {
            let sha = hex::encode(Sha256::digest(&bytes));
            let body = json!({"sha256": sha, "parts": receipts});
            api.post(&format!("/v1/uploads/{id}/complete"), Some(token), body)
                .await
        }
    };

    let first = file_bytes(PART + 1);
    let (id, key, receipts) = upload_parts(&api, &token, "same.bin", &first).await;
    let (status, body) = complete(id, first.clone(), receipts).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the first upload is verified: {body}"
    );

    let mut second = file_bytes(PART + 1);
    second[0] ^= 0xff;
    let (id, same_key, receipts) = upload_parts(&api, &token, "same.bin", &second).await;
    assert_eq!(same_key, key);
    let row = valet_service::db::uploads::get_for_user(running.state.db(), &id, "eve")
        .await
        .unwrap()
        .unwrap();
    running
        .state
        .store()
        .abort(&row.object_key, &row.store_upload_id)
        .await
        .unwrap();
    let (status, body) = complete(id, second, receipts).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "verification_failed"),
        "{body}"
    );

    let url = presigned_get(&endpoint, &credentials, "valet-svc-earlier", &key, false);
    let stored = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert!(
        stored == first,
        "the earlier verified object is still there, untouched"
    );
}
