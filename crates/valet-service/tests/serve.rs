//! `serve`-mode behaviour that the dev tests do not reach: TLS, and a store that is down.

mod common;

use reqwest::StatusCode;
use serde_json::json;
use time::OffsetDateTime;
use valet_service::config::{Config, StoreCredentials};
use valet_service::store::dev::DevStore;
use valet_service::{audit, auth, server};

use common::{Api, PART, code};

fn config(dir: &std::path::Path, endpoint: &str, extra: &str) -> Config {
    Config::from_toml(&format!(
        r#"
        listen = "127.0.0.1:0"
        data_dir = "{}"
        {extra}
        [store]
        endpoint = "{endpoint}"
        bucket = "valet"
        path_style = true
        verify = "read-back"
        tag_objects = false
        "#,
        dir.display()
    ))
    .unwrap()
}

#[tokio::test]
async fn tls_serves_https_and_sees_client_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let store = DevStore::start(&dir.path().join("store")).await.unwrap();
    let mut config = config(
        dir.path(),
        store.endpoint.as_str(),
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"",
            cert_path.display(),
            key_path.display()
        ),
    );
    config.store.create_bucket = true;
    let running = server::start(config, &store.credentials).await.unwrap();
    assert!(
        running.url.starts_with("https://127.0.0.1:"),
        "{}",
        running.url
    );
    auth::add_user(
        running.state.db(),
        "tess",
        "tess-password",
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();

    // The test trusts the self-signed certificate by skipping verification; what is under
    // test is that the service speaks TLS.
    valet_service::install_tls_provider();
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let answer = http
        .post(format!("{}/v1/auth/token", running.url))
        .json(&json!({"grant_type": "password", "username": "tess", "password": "tess-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let plain = reqwest::get(format!("{}/healthz", running.url.replace("https", "http"))).await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "no plain HTTP on the TLS port"
    );
    let lines = audit::list(running.state.db(), None).await.unwrap();
    let sign_in = lines.iter().find(|l| l.event == "sign_in").unwrap();
    assert!(
        sign_in
            .client_addr
            .as_deref()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_store_that_is_down_is_store_unavailable_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 (discard) of loopback here.
    let config = config(dir.path(), "http://127.0.0.1:9", "");
    let credentials = StoreCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI".into(),
        session_token: None,
    };
    let running = server::start(config, &credentials).await.unwrap();
    auth::add_user(
        running.state.db(),
        "sam",
        "sam-password",
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let api = Api::new(&running.url);
    let token = api.sign_in("sam", "sam-password").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = api
        .post(
            "/v1/uploads",
            Some(&token),
            json!({"file_name": "a.bin", "size": 1, "part_size": PART}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_GATEWAY, "store_unavailable")
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        !message.contains("X-Amz") && !message.contains("wJalrXUtnFEMI"),
        "{message}"
    );
    running.shutdown().await.unwrap();
}
