//! Proof that logs carry no secret: the whole dev flow runs with every crate logging at TRACE
//! into a buffer, which must not contain a token, the password or a key signature.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use sha2::{Digest as _, Sha256};
use tracing_subscriber::fmt::MakeWriter;

use common::{Api, PART, file_bytes, upload_parts};

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

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn trace_logs_hold_no_token_password_or_signature() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter(valet_service::log_filter("trace"))
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let dev = valet_service::dev::start(dir.path(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let api = Api::new(dev.url());
    let signed_in = api.sign_in("dev", &dev.password).await;
    let access = signed_in["access_token"].as_str().unwrap().to_owned();
    let refresh = signed_in["refresh_token"].as_str().unwrap().to_owned();
    let bytes = file_bytes(PART + 1);
    let (id, _, receipts) = upload_parts(&api, &access, "secret-free.bin", &bytes).await;
    let sha = hex::encode(Sha256::digest(&bytes));
    let (status, _) = api
        .post(
            &format!("/v1/uploads/{id}/complete"),
            Some(&access),
            json!({"sha256": sha, "parts": receipts}),
        )
        .await;
    assert!(status.is_success());
    let (status, rotated) = api
        .post(
            "/v1/auth/token",
            None,
            json!({"grant_type": "refresh_token", "refresh_token": refresh}),
        )
        .await;
    assert!(status.is_success());
    let (password, store_secret) = (
        dev.password.clone(),
        dev.store.credentials.secret_access_key.clone(),
    );
    dev.shutdown().await.unwrap();

    let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        log.contains("/v1/uploads"),
        "the capture works: requests are logged"
    );
    // Deliberately literal: what must never be in a log line.
    let secret_markers = [
        "X-Amz-Signature",
        "x-amz-signature",
        "Bearer vat_",
        "Bearer vpt_",
    ];
    for marker in secret_markers {
        assert!(!log.contains(marker), "log contains {marker}");
    }
    for secret in [
        access.as_str(),
        refresh.as_str(),
        rotated["access_token"].as_str().unwrap(),
        &password,
        &store_secret,
    ] {
        assert!(!log.contains(secret), "log contains a secret");
    }
}
