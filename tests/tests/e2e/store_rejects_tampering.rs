use reqwest::blocking::Client;
use valet_protocol::{CreateUpload, PartDigest, PartKey, PartKeys, PartKeysRequest, UploadCreated};
use valet_tests::PART_SIZE;
use valet_tests::api::Api;
use valet_tests::files::sha256_b64;
use valet_tests::service::ServiceOptions;

use crate::helpers::world;

fn put(http: &Client, url: &str, headers: &[(String, String)], body: Vec<u8>) -> (u16, String) {
    let mut request = http.put(url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().unwrap();
    (
        response.status().as_u16(),
        response.text().unwrap_or_default(),
    )
}

fn key_for(api: &Api, upload: &UploadCreated, number: u32, bytes: &[u8]) -> PartKey {
    let request = PartKeysRequest {
        parts: vec![PartDigest {
            number,
            size: bytes.len() as u64,
            sha256: sha256_b64(bytes),
        }],
    };
    let mut keys: PartKeys = api
        .post(&format!("/uploads/{}/keys", upload.upload_id), &request)
        .unwrap();
    assert_eq!(keys.keys.len(), 1);
    keys.keys.remove(0)
}

#[test]
fn the_store_accepts_only_the_bytes_and_the_part_a_key_was_issued_for() {
    let w = world("tess", ServiceOptions::default());
    let api = Api::new(&w.service.url, &w.token);
    valet_tests::install_tls_provider();
    let http = Client::new();
    let create = CreateUpload {
        file_name: "tamper.bin".into(),
        size: 2 * PART_SIZE,
        content_type: None,
        prefix: None,
        part_size: PART_SIZE,
    };
    let upload: UploadCreated = api.post("/uploads", &create).unwrap();
    let good = vec![7u8; PART_SIZE as usize];
    let mut evil = good.clone();
    evil[12_345] ^= 1; // one bit flipped
    let key = key_for(&api, &upload, 1, &good);
    assert!(
        key.url.starts_with(&upload.store.origin),
        "key points at the announced store"
    );

    let (status, body) = put(&http, &key.url, &key.headers, evil.clone());
    assert_eq!(
        status, 400,
        "other bytes under the key are refused by the store: {body}"
    );
    assert!(body.contains("BadDigest"), "{body}");

    let lying_header = vec![("x-amz-checksum-sha256".to_string(), sha256_b64(&evil))];
    let (status, body) = put(&http, &key.url, &lying_header, evil.clone());
    assert_eq!(
        status, 403,
        "a checksum header other than the signed one breaks the signature: {body}"
    );

    let other_part = key.url.replace("partNumber=1", "partNumber=2");
    assert_ne!(other_part, key.url);
    let (status, body) = put(&http, &other_part, &key.headers, good.clone());
    assert_eq!(status, 403, "a key for part 1 cannot write part 2: {body}");

    let other_object = key.url.replace("tamper.bin", "elsewhere.bin");
    assert_ne!(other_object, key.url);
    let (status, body) = put(&http, &other_object, &key.headers, good.clone());
    assert_eq!(
        status, 403,
        "a key for one object cannot write another: {body}"
    );

    let (status, body) = put(&http, &key.url, &[], good.clone());
    assert_eq!(
        status, 403,
        "the checksum header cannot be left out: {body}"
    );

    let (status, body) = put(&http, &key.url, &key.headers, good);
    assert_eq!(
        status, 200,
        "the bytes the key was issued for are accepted: {body}"
    );

    api.delete(&format!("/uploads/{}", upload.upload_id))
        .unwrap();
}
