//! Hostile and broken service replies, from a tiny canned HTTP server on loopback (the one place
//! a fake server is allowed: these are parsing tests). Each must end in a clear typed error,
//! never a panic, never a request to an unexpected host.

mod canned;

use std::time::{Duration, Instant};

use canned::{Reply, serve};
use valet_engine::{RetryPolicy, SecretString, Session, StoreTarget};
use valet_protocol::{CompleteUpload, CreateUpload, MIB, PartDigest, PartReceipt};

fn session(url: &str) -> Session {
    let mut session = Session::with_api_token(url, SecretString::from("vat_test_token")).unwrap();
    session.set_retry_policy(RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_attempts: 3,
        deadline: Duration::from_secs(5),
    });
    session
}

fn create() -> CreateUpload {
    CreateUpload {
        file_name: "f.bin".into(),
        size: 10 * MIB,
        content_type: None,
        prefix: None,
        part_size: 5 * MIB,
        idempotency_key: None,
    }
}

fn digests(numbers: &[u32]) -> Vec<PartDigest> {
    numbers
        .iter()
        .map(|&number| PartDigest {
            number,
            size: 5 * MIB,
            sha256: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into(),
            md5: None,
            crc64: None,
        })
        .collect()
}

fn key_json(number: u32, url: &str) -> String {
    format!(
        r#"{{"number":{number},"method":"PUT","url":"{url}","headers":[["x-amz-checksum-sha256","x"]],"expires_in_secs":600,"expires_at":"2030-01-01T00:00:00Z"}}"#
    )
}

fn store(origin: &str) -> StoreTarget {
    StoreTarget {
        origin: origin.into(),
        key_ttl: Duration::from_secs(600),
    }
}

fn created_json(origin: &str) -> String {
    format!(
        r#"{{"upload_id":"u1","object_key":"users/a/f.bin","layout":{{"size":{},"part_size":{},"part_count":2}},"store":{{"kind":"s3","origin":"{origin}"}},"key_ttl_secs":600}}"#,
        10 * MIB,
        5 * MIB
    )
}

#[tokio::test]
async fn bad_json_is_a_bad_reply() {
    let server = serve(vec![
        ("/v1/uploads", Reply::Body(200, "{\"upload_id\": ".into())),
        ("/v1/me", Reply::Body(200, "[1, 2, 3]".into())),
    ])
    .await;
    let s = session(&server.url);
    let e = s.create_upload(&create()).await.unwrap_err();
    assert_eq!(e.code(), "bad_reply", "{e}");
    let e = s.me().await.unwrap_err();
    assert_eq!(e.code(), "bad_reply", "{e}");
}

#[tokio::test]
async fn huge_bodies_are_refused_without_reading_them() {
    for content_length in [true, false] {
        let server = serve(vec![(
            "/v1/me",
            Reply::Huge {
                size: 100 * MIB as usize,
                content_length,
            },
        )])
        .await;
        let started = Instant::now();
        let e = session(&server.url).me().await.unwrap_err();
        assert_eq!(e.code(), "bad_reply", "{e}");
        assert!(
            e.to_string().contains("larger than"),
            "says why (content-length {content_length}): {e}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stopped reading early"
        );
    }
}

#[tokio::test]
async fn keys_with_wrong_or_missing_part_numbers_are_refused() {
    let origin = "http://127.0.0.1:9";
    let good = |n| key_json(n, &format!("{origin}/b/k?partNumber={n}&X-Amz-Signature=s"));
    let cases = [
        ("wrong number", format!(r#"{{"keys":[{}]}}"#, good(7))),
        ("wrong order", format!(r#"{{"keys":[{},{}]}}"#, good(2), good(1))),
        ("too few", format!(r#"{{"keys":[{}]}}"#, good(1))),
        ("too many", format!(r#"{{"keys":[{},{},{}]}}"#, good(1), good(2), good(3))),
        (
            "missing number",
            r#"{"keys":[{"method":"PUT","url":"http://127.0.0.1:9/b","headers":[],"expires_in_secs":1,"expires_at":"2030-01-01T00:00:00Z"}]}"#.into(),
        ),
        ("not a list", r#"{"keys":{"1":"x"}}"#.into()),
    ];
    for (what, body) in cases {
        let server = serve(vec![("/v1/uploads/u1/keys", Reply::Body(200, body))]).await;
        let e = session(&server.url)
            .part_keys("u1", &digests(&[1, 2]), &store(origin))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "bad_reply", "{what}: {e}");
        assert!(!e.to_string().contains("X-Amz-Signature"), "{what}: {e}");
    }
}

#[tokio::test]
async fn unsafe_or_foreign_key_urls_are_refused() {
    let origin = "http://127.0.0.1:9";
    let cases = [
        (
            "http off loopback",
            "http://s3.example.com/b/k?X-Amz-Signature=s",
            "insecure_url",
        ),
        (
            "foreign host",
            "http://127.0.0.2:9/b/k?X-Amz-Signature=s",
            "foreign_key_host",
        ),
        (
            "foreign port",
            "http://127.0.0.1:10/b/k?X-Amz-Signature=s",
            "foreign_key_host",
        ),
        (
            "https elsewhere",
            "https://evil.example.com/b/k?X-Amz-Signature=s",
            "foreign_key_host",
        ),
        ("not a URL", "::::", "bad_reply"),
    ];
    for (what, url, code) in cases {
        let body = format!(r#"{{"keys":[{}]}}"#, key_json(1, url));
        let server = serve(vec![("/v1/uploads/u1/keys", Reply::Body(200, body))]).await;
        let e = session(&server.url)
            .part_keys("u1", &digests(&[1]), &store(origin))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(!e.to_string().contains("X-Amz-Signature"), "{what}: {e}");
    }
}

#[tokio::test]
async fn an_insecure_store_origin_is_refused_at_creation() {
    let server = serve(vec![(
        "/v1/uploads",
        Reply::Body(200, created_json("http://s3.example.com")),
    )])
    .await;
    let e = session(&server.url)
        .create_upload(&create())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "insecure_url", "{e}");

    let server = serve(vec![(
        "/v1/uploads",
        Reply::Body(200, created_json("http://127.0.0.1:9")),
    )])
    .await;
    let other_size = CreateUpload {
        size: 11 * MIB,
        ..create()
    };
    let e = session(&server.url)
        .create_upload(&other_size)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "bad_reply", "a layout for another file: {e}");
    let (created, target) = session(&server.url)
        .create_upload(&create())
        .await
        .expect("a fitting answer is accepted");
    assert_eq!(created.upload_id, "u1");
    assert_eq!(target.origin, "http://127.0.0.1:9");
}

/// The service chooses the layout (the request's part size is a preference), but only one the
/// store it names can take, for this file, with its parts counted right: memory and part
/// numbers follow it.
#[tokio::test]
async fn a_layout_the_store_cannot_take_is_refused() {
    let created = |kind: &str, part_size: u64, part_count: u32| {
        format!(
            r#"{{"upload_id":"u1","object_key":"users/a/f.bin","layout":{{"size":{},"part_size":{part_size},"part_count":{part_count}}},"store":{{"kind":"{kind}","origin":"http://127.0.0.1:9"}},"key_ttl_secs":600}}"#,
            10 * MIB
        )
    };
    let cases = [
        (created("s3", MIB, 10), "S3 takes no 1 MiB part"),
        (
            created("gcs", 6 * 1024 * MIB, 1),
            "no store takes a 6 GiB part",
        ),
        (created("s3", 4 * MIB, 3), "parts counted wrong"),
        (created("azure", MIB, 9), "parts counted wrong"),
        (created("gcs", 0, 1), "empty parts"),
    ];
    for (body, what) in cases {
        let server = serve(vec![("/v1/uploads", Reply::Body(200, body))]).await;
        let e = session(&server.url)
            .create_upload(&create())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "bad_reply", "{what}: {e}");
    }
    for (body, what) in [
        (created("s3", 10 * MIB, 1), "raised to fit S3"),
        (created("gcs", MIB, 10), "GCS takes 1 MiB parts"),
    ] {
        let server = serve(vec![("/v1/uploads", Reply::Body(200, body))]).await;
        let (created, _) = session(&server.url)
            .create_upload(&create())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_ne!(created.layout.part_size, create().part_size, "{what}");
    }
}

#[tokio::test]
async fn error_bodies_keep_their_code_even_unknown_ones() {
    let server = serve(vec![
        (
            "/v1/uploads/u1/keys",
            Reply::Body(
                409,
                r#"{"code":"brand_new_code","message":"from the future"}"#.into(),
            ),
        ),
        (
            "/v1/uploads",
            Reply::Body(413, r#"{"code":"quota_exceeded","message":"full"}"#.into()),
        ),
        ("/v1/me", Reply::Body(404, "<html>not found</html>".into())),
    ])
    .await;
    let s = session(&server.url);
    let e = s
        .part_keys("u1", &digests(&[1]), &store("http://127.0.0.1:9"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown", "{e}");
    assert!(e.to_string().contains("from the future"), "{e}");
    let e = s.create_upload(&create()).await.unwrap_err();
    assert_eq!(e.code(), "quota_exceeded", "{e}");
    assert!(!e.is_resumable());
    let e = s.me().await.unwrap_err();
    assert_eq!(e.code(), "bad_reply", "an error without an error body: {e}");
}

#[tokio::test]
async fn outages_are_retried_then_reported() {
    let server = serve(vec![(
        "/v1/me",
        Reply::Body(
            503,
            r#"{"code":"store_unavailable","message":"down"}"#.into(),
        ),
    )])
    .await;
    let e = session(&server.url).me().await.unwrap_err();
    assert_eq!(e.code(), "retries_exhausted", "{e}");
    assert!(e.is_resumable());
    assert_eq!(
        server.hits.lock().unwrap().len(),
        3,
        "three attempts in all"
    );
}

#[tokio::test]
async fn a_completion_that_is_not_verified_is_refused() {
    let not_verified =
        r#"{"upload_id":"u1","object_key":"k","size":1,"sha256":"ab","etag":"e","state":"open"}"#;
    let other_upload = r#"{"upload_id":"u2","object_key":"k","size":1,"sha256":"ab","etag":"e","state":"verified"}"#;
    for body in [not_verified, other_upload] {
        let server = serve(vec![(
            "/v1/uploads/u1/complete",
            Reply::Body(200, body.into()),
        )])
        .await;
        let complete = CompleteUpload {
            sha256: "ab".into(),
            parts: vec![PartReceipt {
                number: 1,
                etag: "e".into(),
                sha256: "x".into(),
                size: 1,
            }],
        };
        let e = session(&server.url)
            .complete_upload("u1", &complete)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "bad_reply", "{e}");
    }
}

#[tokio::test]
async fn hostile_upload_ids_never_reach_a_url() {
    let server = serve(vec![(
        "/v1/uploads",
        Reply::Body(
            200,
            created_json("http://127.0.0.1:9").replace("\"u1\"", "\"../../auth/logout\""),
        ),
    )])
    .await;
    let e = session(&server.url)
        .create_upload(&create())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "bad_reply", "{e}");
}

/// The service answering a redirect to another server: not followed (the bearer token would go
/// with it), for every redirect status and for reads and writes alike; the other server sees
/// nothing.
#[tokio::test]
async fn service_redirects_are_not_followed() {
    let elsewhere = serve(vec![
        ("/v1/me", Reply::Body(200, r#"{"user":"a"}"#.into())),
        (
            "/v1/uploads",
            Reply::Body(200, created_json("http://127.0.0.1:9")),
        ),
    ])
    .await;
    for status in [301, 302, 303, 307, 308] {
        let server = serve(vec![
            (
                "/v1/me",
                Reply::Redirect(status, format!("{}/v1/me", elsewhere.url)),
            ),
            (
                "/v1/uploads",
                Reply::Redirect(status, format!("{}/v1/uploads", elsewhere.url)),
            ),
        ])
        .await;
        let s = session(&server.url);
        let e = s.me().await.unwrap_err();
        assert_eq!(e.code(), "bad_reply", "{status} on GET: {e}");
        let e = s.create_upload(&create()).await.unwrap_err();
        assert_eq!(e.code(), "bad_reply", "{status} on POST: {e}");
        assert_eq!(
            server.hits.lock().unwrap().len(),
            2,
            "one request each, no retry"
        );
    }
    assert_eq!(
        *elsewhere.hits.lock().unwrap(),
        Vec::<String>::new(),
        "no request reached the redirect's target"
    );
}

/// The store answering a part's `PUT` with a redirect to another server: not followed (the key
/// only allows the URL the service signed, and the bytes must not go elsewhere); the upload
/// stops with an error and nothing reaches the other server.
#[tokio::test]
async fn store_redirects_are_not_followed() {
    use valet_engine::{Engine, Events, Journal, PutOptions};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.bin");
    std::fs::write(&path, vec![5u8; 5 * MIB as usize]).unwrap();
    let elsewhere = serve(vec![("/", Reply::Body(200, String::new()))]).await;
    for status in [301, 302, 307, 308] {
        let store = serve(vec![(
            "/b/",
            Reply::Redirect(status, format!("{}/b/k?partNumber=1", elsewhere.url)),
        )])
        .await;
        let origin = store.url.clone();
        // One part, so that each key request is for part 1.
        let keys = format!(
            r#"{{"keys":[{}]}}"#,
            key_json(1, &format!("{origin}/b/k?partNumber=1&X-Amz-Signature=s"))
        );
        let created = created_json(&origin)
            .replace(&(10 * MIB).to_string(), &(5 * MIB).to_string())
            .replace(r#""part_count":2"#, r#""part_count":1"#);
        let service = serve(vec![
            ("/v1/uploads/u1/keys", Reply::Body(200, keys)),
            ("/v1/uploads/u1", Reply::Body(204, String::new())),
            ("/v1/uploads", Reply::Body(200, created)),
        ])
        .await;
        let journal = Journal::open_in(&dir.path().join(format!("data-{status}"))).unwrap();
        let engine = Engine::new(session(&service.url), journal);
        let (events, _rx) = Events::channel();
        let e = engine
            .put(&path, &PutOptions::default(), &events)
            .await
            .expect_err("an upload whose store redirects does not complete");
        assert!(!e.to_string().contains("X-Amz-Signature"), "{status}: {e}");
        let store_hits = store.hits.lock().unwrap().clone();
        assert!(
            !store_hits.is_empty() && store_hits.iter().all(|h| h.starts_with("PUT /b/k")),
            "{status}: the store got the parts' PUTs: {store_hits:?} ({e})"
        );
        let service_hits = service.hits.lock().unwrap().clone();
        assert!(
            !service_hits.iter().any(|h| h.contains("/complete")),
            "{status}: nothing completed: {service_hits:?}"
        );
        assert!(
            e.to_string().contains(&format!("HTTP {status}")),
            "the error names the store's answer: {e}"
        );
    }
    assert_eq!(
        *elsewhere.hits.lock().unwrap(),
        Vec::<String>::new(),
        "no part reached the redirect's target"
    );
}
