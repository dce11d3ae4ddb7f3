use reqwest::blocking::Client;
use valet_protocol::{
    CompleteUpload, CreateUpload, ErrorCode, PartKey, PartKeys, PartKeysRequest, PartReceipt,
    UploadCreated,
};
use valet_tests::PART_SIZE;
use valet_tests::api::Api;
use valet_tests::files::sha256_b64;
use valet_tests::service::ServiceOptions;
use valet_tests::store::StoreKind;

use crate::helpers::{World, md5_b64, on_every_store, part_digest, world_on};

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
        parts: vec![part_digest(number, bytes)],
    };
    let mut keys: PartKeys = api
        .post(&format!("/uploads/{}/keys", upload.upload_id), &request)
        .unwrap();
    assert_eq!(keys.keys.len(), 1);
    keys.keys.remove(0)
}

struct Tamper {
    w: World,
    api: Api,
    http: Client,
    upload: UploadCreated,
    good: Vec<u8>,
    evil: Vec<u8>,
    key: PartKey,
}

/// An upload of two parts and a key for part 1; `evil` is part 1 with one bit flipped.
fn tamper(kind: StoreKind, options: ServiceOptions) -> Tamper {
    let w = world_on(kind, "tess", options);
    let api = Api::new(&w.service.url, &w.token);
    valet_tests::install_tls_provider();
    let create = CreateUpload {
        file_name: "tamper.bin".into(),
        size: 2 * PART_SIZE,
        content_type: None,
        prefix: None,
        part_size: PART_SIZE,
        idempotency_key: None,
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
    Tamper {
        w,
        api,
        http: Client::new(),
        upload,
        good,
        evil,
        key,
    }
}

/// The header of `key` named `name`.
fn header_of(key: &PartKey, name: &str) -> Option<String> {
    key.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

on_every_store!(the_store_accepts_only_the_bytes_and_the_part_a_key_was_issued_for);

fn the_store_accepts_only_the_bytes_and_the_part_a_key_was_issued_for(kind: StoreKind) {
    match kind {
        StoreKind::S3 => s3(),
        StoreKind::Azure => azure(),
        StoreKind::Gcs => gcs(),
    }
}

fn s3() {
    let t = tamper(StoreKind::S3, ServiceOptions::default());
    let (http, key) = (&t.http, &t.key);
    let (status, body) = put(http, &key.url, &key.headers, t.evil.clone());
    assert_eq!(
        status, 400,
        "other bytes under the key are refused by the store: {body}"
    );
    assert!(body.contains("BadDigest"), "{body}");

    let lying_header = vec![("x-amz-checksum-sha256".to_string(), sha256_b64(&t.evil))];
    let (status, body) = put(http, &key.url, &lying_header, t.evil.clone());
    assert_eq!(
        status, 403,
        "a checksum header other than the signed one breaks the signature: {body}"
    );

    let other_part = key.url.replace("partNumber=1", "partNumber=2");
    assert_ne!(other_part, key.url);
    let (status, body) = put(http, &other_part, &key.headers, t.good.clone());
    assert_eq!(status, 403, "a key for part 1 cannot write part 2: {body}");

    let other_object = key.url.replace("tamper.bin", "elsewhere.bin");
    assert_ne!(other_object, key.url);
    let (status, body) = put(http, &other_object, &key.headers, t.good.clone());
    assert_eq!(
        status, 403,
        "a key for one object cannot write another: {body}"
    );

    let (status, body) = put(http, &key.url, &[], t.good.clone());
    assert_eq!(
        status, 403,
        "the checksum header cannot be left out: {body}"
    );

    let (status, body) = put(http, &key.url, &key.headers, t.good.clone());
    assert_eq!(
        status, 200,
        "the bytes the key was issued for are accepted: {body}"
    );

    t.api
        .delete(&format!("/uploads/{}", t.upload.upload_id))
        .unwrap();
}

/// Azurite checks the SAS (signature, blob, permissions) and each block's Content-MD5. A SAS
/// signs no header and no block id: what it cannot stop is a client that sends other bytes
/// with their own MD5, or under another block id of the same blob. That client only harms its
/// own upload, and `verify = "read-back"` (used here) catches it at completion: the object is
/// refused and deleted.
fn azure() {
    let options = ServiceOptions {
        verify: "read-back".into(),
        ..ServiceOptions::default()
    };
    let t = tamper(StoreKind::Azure, options);
    let (http, key) = (&t.http, &t.key);
    assert_eq!(
        header_of(key, "content-md5"),
        Some(md5_b64(&t.good)),
        "the key asks for the part's MD5"
    );
    assert!(key.url.contains("sp=cw"), "create and write only");

    let (status, body) = put(http, &key.url, &key.headers, t.evil.clone());
    assert_eq!(
        status, 400,
        "other bytes under the key's MD5 are refused by the store: {body}"
    );
    assert!(body.contains("MD5") || body.contains("Md5"), "{body}");

    assert!(
        !key.url.contains("tamper.bin"),
        "the key names the upload's staging blob, never the object"
    );
    let other_object = key.url.replacen(".valet-staging/", "users/tess/", 1);
    assert_ne!(other_object, key.url);
    let (status, body) = put(http, &other_object, &key.headers, t.good.clone());
    assert_eq!(
        status, 403,
        "a key for one blob cannot write another: {body}"
    );

    let response = http.get(&key.url).send().unwrap();
    assert_eq!(
        response.status().as_u16(),
        403,
        "the key cannot read the blob (create and write only)"
    );

    // Send the evil bytes with their own MD5: the store takes them (no SAS covers headers).
    let lying = vec![("content-md5".to_string(), md5_b64(&t.evil))];
    let (status, body) = put(http, &key.url, &lying, t.evil.clone());
    assert_eq!(
        status, 201,
        "Azure cannot bind Content-MD5 into a SAS: {body}"
    );
    let key2 = key_for(&t.api, &t.upload, 2, &t.good);
    let (status, body) = put(http, &key2.url, &key2.headers, t.good.clone());
    assert_eq!(status, 201, "{body}");
    let complete = CompleteUpload {
        sha256: whole_sha256(&t.good, &t.good),
        parts: receipts(&t.good, [key.clone(), key2], |k| azure_block_id(&k.url)),
    };
    let refused = t
        .api
        .post::<_, serde_json::Value>(
            &format!("/uploads/{}/complete", t.upload.upload_id),
            &complete,
        )
        .expect_err("the lying upload is not verified");
    assert_eq!(refused.code, ErrorCode::VerificationFailed, "{refused:?}");
    assert_eq!(
        t.w.service.store().object_digest("users/tess/tamper.bin"),
        None,
        "the refused object was deleted"
    );
}

/// The GCS emulator checks neither signatures nor Content-MD5 (no GCS emulator does; the
/// signer is checked against Google's published vectors in the service's unit tests). What is
/// checked here is the service's own guard: before composing, it compares the MD5 the store
/// computed of each part object with the one signed into the part's key.
fn gcs() {
    let t = tamper(StoreKind::Gcs, ServiceOptions::default());
    let (http, key) = (&t.http, &t.key);
    assert_eq!(header_of(key, "content-md5"), Some(md5_b64(&t.good)));
    assert!(
        key.url.contains("X-Goog-SignedHeaders=content-md5%3Bhost"),
        "the key signs Content-MD5: {}",
        key.url.split('?').next().unwrap_or_default()
    );

    let (status, body) = put(http, &key.url, &key.headers, t.evil.clone());
    assert_eq!(
        status, 200,
        "the emulator takes bytes real GCS refuses (400 BadDigest): {body}"
    );
    let key2 = key_for(&t.api, &t.upload, 2, &t.good);
    let (status, body) = put(http, &key2.url, &key2.headers, t.good.clone());
    assert_eq!(status, 200, "{body}");
    let complete = CompleteUpload {
        sha256: whole_sha256(&t.good, &t.good),
        parts: receipts(&t.good, [key.clone(), key2], |k| {
            header_of(k, "content-md5").unwrap()
        }),
    };
    let path = format!("/uploads/{}/complete", t.upload.upload_id);
    let refused = t
        .api
        .post::<_, serde_json::Value>(&path, &complete)
        .expect_err("a part whose stored bytes differ is not composed");
    assert_eq!(refused.code, ErrorCode::PartsMismatch, "{refused:?}");
    assert!(
        refused.message.contains("parts 1 do not match"),
        "{refused:?}"
    );
    assert_eq!(
        t.w.service.store().object_digest("users/tess/tamper.bin"),
        None,
        "nothing was composed"
    );

    // The client re-sends part 1 with its key, and the upload completes.
    let (status, body) = put(http, &key.url, &key.headers, t.good.clone());
    assert_eq!(status, 200, "{body}");
    let verified: serde_json::Value = t.api.post(&path, &complete).unwrap();
    assert_eq!(verified["state"], "verified", "{verified}");
    assert_eq!(
        t.w.service.store().list(".valet-parts/"),
        Vec::<String>::new(),
        "the temporary part objects are gone"
    );
}

/// Receipts for two parts of `part` bytes each, their ETags taken from the keys.
fn receipts(
    part: &[u8],
    keys: [PartKey; 2],
    etag: impl Fn(&PartKey) -> String,
) -> Vec<PartReceipt> {
    keys.iter()
        .map(|k| PartReceipt {
            number: k.number,
            etag: etag(k),
            sha256: sha256_b64(part),
            size: part.len() as u64,
        })
        .collect()
}

fn whole_sha256(a: &[u8], b: &[u8]) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(a);
    hasher.update(b);
    valet_tests::files::hex(&hasher.finalize())
}

fn azure_block_id(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(n, _)| n == "blockid")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}
