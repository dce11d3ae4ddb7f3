//! A failed verification deletes only the object its own completion produced. The store here
//! is a scripted stand-in: it completes the upload with one ETag, then answers the service's
//! look at the object with either the same ETag (the object is ours) or another one (another
//! upload of the same key completed in between), and counts the deletes it is sent.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use valet_service::config::{Config, StoreCredentials};
use valet_service::{auth, server};

use common::{Api, b64_sha256, code};

const SIZE: usize = 10;
/// The ETag the stand-in's `CompleteMultipartUpload` reports.
const COMPLETED_ETAG: &str = "completed-by-this-upload-1";

struct Script {
    /// The ETag `HeadObject` reports.
    found_etag: &'static str,
    deletes: AtomicUsize,
}

async fn store(State(script): State<Arc<Script>>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default().to_owned();
    let xml = |body: String| ([(header::CONTENT_TYPE, "application/xml")], body).into_response();
    match *request.method() {
        Method::POST if query.contains("uploads") => xml(
            "<InitiateMultipartUploadResult><UploadId>up-1</UploadId></InitiateMultipartUploadResult>"
                .to_owned(),
        ),
        Method::GET if query.contains("uploadId") => xml(format!(
            "<ListPartsResult><Part><PartNumber>1</PartNumber><ETag>\"part-1\"</ETag>\
             <Size>{SIZE}</Size></Part></ListPartsResult>"
        )),
        // The store reports a composite checksum that is not the signed one: verification fails.
        Method::POST if query.contains("uploadId") => xml(format!(
            "<CompleteMultipartUploadResult><ETag>\"{COMPLETED_ETAG}\"</ETag>\
             <ChecksumSHA256>{}-1</ChecksumSHA256></CompleteMultipartUploadResult>",
            b64_sha256(b"not the signed digests")
        )),
        Method::HEAD => (
            [
                (header::CONTENT_LENGTH, SIZE.to_string()),
                (header::ETAG, format!("\"{}\"", script.found_etag)),
            ],
            (),
        )
            .into_response(),
        Method::DELETE => {
            script.deletes.fetch_add(1, Ordering::SeqCst);
            AxumStatus::NO_CONTENT.into_response()
        }
        _ => AxumStatus::NOT_IMPLEMENTED.into_response(),
    }
}

/// Uploads one part against a stand-in store whose `HeadObject` reports `found_etag`, completes
/// it (verification fails), and returns how many deletes the store was sent.
async fn deletes_after_failed_verification(found_etag: &'static str) -> usize {
    let script = Arc::new(Script {
        found_etag,
        deletes: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(store).with_state(script.clone());
    let stand_in = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&format!(
        r#"
        listen = "127.0.0.1:0"
        data_dir = "{}"
        [store]
        endpoint = "{endpoint}"
        bucket = "stand-in"
        path_style = true
        create_bucket = false
        verify = "checksum"
        tag_objects = false
        "#,
        dir.path().display()
    ))
    .unwrap();
    let credentials = StoreCredentials {
        access_key_id: "test".into(),
        secret_access_key: "testtest".into(),
        session_token: None,
    };
    let running = server::start(config, &credentials).await.unwrap();
    auth::add_user(
        running.state.db(),
        "ann",
        "ann-password",
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let api = Api::new(&running.url);
    let token = api.sign_in("ann", "ann-password").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let bytes = vec![7u8; SIZE];
    let (status, created) = api
        .post(
            "/v1/uploads",
            Some(&token),
            json!({"file_name": "same.bin", "size": SIZE, "part_size": common::PART}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["upload_id"].as_str().unwrap().to_owned();
    let part = json!({"number": 1, "size": SIZE, "sha256": b64_sha256(&bytes)});
    let (status, keys) = api
        .post(
            &format!("/v1/uploads/{id}/keys"),
            Some(&token),
            json!({"parts": [part]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let receipt = json!({"number": 1, "etag": "\"part-1\"", "sha256": b64_sha256(&bytes),
                         "size": SIZE});
    let (status, body) = api
        .post(
            &format!("/v1/uploads/{id}/complete"),
            Some(&token),
            json!({"sha256": hex::encode(Sha256::digest(&bytes)), "parts": [receipt]}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "verification_failed"),
        "{body}"
    );
    running.shutdown().await.unwrap();
    stand_in.abort();
    script.deletes.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_failed_verification_deletes_the_object_its_completion_produced() {
    assert_eq!(deletes_after_failed_verification(COMPLETED_ETAG).await, 1);
}

#[tokio::test]
async fn a_failed_verification_leaves_an_object_another_upload_completed_since() {
    assert_eq!(
        deletes_after_failed_verification("completed-by-another-upload-1").await,
        0,
        "the newer object at the key is not deleted"
    );
}
