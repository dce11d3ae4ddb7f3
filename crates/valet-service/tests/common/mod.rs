//! Helpers shared by the integration tests: a small JSON client and an uploader that sends
//! parts with the issued keys, like a client would.
#![allow(dead_code)] // each test file uses its own subset

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const MIB: u64 = 1024 * 1024;
pub const PART: u64 = 5 * MIB;

/// A tiny client for the JSON API.
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: &str) -> Self {
        valet_service::install_tls_provider();
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("service answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn sign_in(&self, user: &str, password: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/auth/token",
                None,
                json!({"grant_type": "password", "username": user, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "sign-in of {user}: {body}");
        body
    }
}

pub fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("<no code>")
}

pub fn b64_sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// Deterministic bytes that differ from part to part.
pub fn file_bytes(len: u64) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Creates an upload of `bytes`, gets keys for all parts, PUTs them; returns the upload id,
/// its object key and the receipts.
pub async fn upload_parts(
    api: &Api,
    token: &str,
    name: &str,
    bytes: &[u8],
) -> (String, String, Vec<Value>) {
    let (status, created) = api
        .post(
            "/v1/uploads",
            Some(token),
            json!({"file_name": name, "size": bytes.len(), "content_type": "application/octet-stream",
                   "part_size": PART}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "create: {created}");
    let id = created["upload_id"].as_str().unwrap().to_owned();
    let object_key = created["object_key"].as_str().unwrap().to_owned();
    let origin = created["store"]["origin"].as_str().unwrap().to_owned();
    let chunks: Vec<&[u8]> = bytes.chunks(PART as usize).collect();
    let digests: Vec<Value> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"number": i + 1, "size": c.len(), "sha256": b64_sha256(c)}))
        .collect();
    let (status, keys) = api
        .post(
            &format!("/v1/uploads/{id}/keys"),
            Some(token),
            json!({"parts": digests}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "keys: {keys}");
    let keys = keys["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), chunks.len());
    valet_service::install_tls_provider();
    let http = reqwest::Client::new();
    let mut receipts = Vec::new();
    for (key, chunk) in keys.iter().zip(&chunks) {
        let url = key["url"].as_str().unwrap();
        assert!(
            url.starts_with(&origin),
            "key for the announced store: {url}"
        );
        assert_eq!(key["method"], "PUT");
        let mut request = http.put(url).body(chunk.to_vec());
        for header in key["headers"].as_array().unwrap() {
            request = request.header(header[0].as_str().unwrap(), header[1].as_str().unwrap());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        if status != StatusCode::OK {
            let answer = response.text().await.unwrap_or_default();
            panic!("part PUT answered {status}: {answer}");
        }
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        receipts.push(json!({"number": key["number"], "etag": etag,
                             "sha256": b64_sha256(chunk), "size": chunk.len()}));
    }
    (id, object_key, receipts)
}
