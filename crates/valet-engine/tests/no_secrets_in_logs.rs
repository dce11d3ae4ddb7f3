//! Proof that secrets stay out of logs: everything the engine and its HTTP stack log at TRACE
//! during a sign-in, service calls and a key request is captured and searched.

mod canned;

use std::io::Write;
use std::sync::{Arc, Mutex};

use canned::{Reply, serve};
use valet_engine::{MemoryKeyring, SecretStore, SecretString, Session, StoreTarget};
use valet_protocol::PartDigest;

/// Deliberately literal: token prefixes, the password and the SigV4 query parameters.
const NEVER_LOGGED: &[&str] = &[
    "vat_",
    "vrt_",
    "vpt_",
    "hunter2-password",
    "X-Amz-Signature=",
    "X-Amz-Credential=",
];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_logged_at_trace() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let origin_holder = "http://127.0.0.1:9";
    let key = format!(
        r#"{{"keys":[{{"number":1,"method":"PUT","url":"{origin_holder}/b/k?partNumber=1&X-Amz-Credential=AKIA%2F&X-Amz-Signature=deadbeef","headers":[["x-amz-checksum-sha256","x"]],"expires_in_secs":600,"expires_at":"2030-01-01T00:00:00Z"}}]}}"#
    );
    let tokens = r#"{"access_token":"vat_access_secret","token_type":"Bearer","expires_in":900,"refresh_token":"vrt_refresh_secret","refresh_expires_in":9000,"user":"carol"}"#;
    let server = serve(vec![
        ("/v1/auth/token", Reply::Body(200, tokens.into())),
        ("/v1/me", Reply::Body(200, r#"{"user":"carol","prefix":"users/carol"}"#.into())),
        ("/v1/uploads/u1/keys", Reply::Body(200, key)),
        (
            "/v1/uploads/u2/keys",
            Reply::Body(200, r#"{"keys":[{"number":1,"method":"PUT","url":"http://evil.example/b?X-Amz-Signature=deadbeef","headers":[],"expires_in_secs":1,"expires_at":"2030-01-01T00:00:00Z"}]}"#.into()),
        ),
    ])
    .await;

    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(MemoryKeyring::new());
    let session = Session::login(
        &server.url,
        "carol",
        SecretString::from("hunter2-password"),
        keyring.clone(),
        dir.path(),
    )
    .await
    .expect("signed in");
    let account = format!("carol@{}", server.url);
    let saved = keyring
        .get(&account)
        .unwrap()
        .expect("refresh token in the keyring");
    assert_eq!(
        valet_engine::ExposeSecret::expose_secret(&saved),
        "vrt_refresh_secret"
    );
    session.me().await.expect("me");
    let digest = PartDigest {
        number: 1,
        size: 1,
        sha256: "x".into(),
        md5: None,
        crc64: None,
    };
    let store = StoreTarget {
        origin: origin_holder.into(),
        key_ttl: std::time::Duration::from_secs(600),
    };
    let leases = session
        .part_keys("u1", std::slice::from_ref(&digest), &store)
        .await
        .unwrap();
    tracing::debug!(?leases, "keys as Debug");
    let e = session
        .part_keys("u2", &[digest], &store)
        .await
        .unwrap_err();
    tracing::debug!(error = %e, "refused key");
    let api = Session::with_api_token(&server.url, SecretString::from("vpt_api_secret")).unwrap();
    api.me().await.unwrap();
    tracing::debug!(?session, ?api, "sessions as Debug");

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "logging was on:\n{text}"
    );
    assert!(
        text.contains("/v1/uploads/u1/keys"),
        "requests were logged:\n{text}"
    );
    for needle in NEVER_LOGGED {
        assert!(!text.contains(needle), "the log leaks {needle}:\n{text}");
    }
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        let content = String::from_utf8_lossy(&bytes);
        for needle in NEVER_LOGGED {
            assert!(!content.contains(needle), "the data dir holds {needle}");
        }
    }
}
