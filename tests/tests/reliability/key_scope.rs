//! A part key writes one part of one object, for minutes, and nothing else. Raw HTTP against the
//! keys the real service hands out, answered by the real stores: SeaweedFS and Azurite enforce
//! signatures, scopes and expiry; the GCS emulator enforces none (docs/TESTING.md), so on GCS
//! only what the key says of itself is checked.
//!
//! Also covered elsewhere, not repeated here: a key cannot write another part number or another
//! object, nor other bytes (`e2e/store_rejects_tampering.rs`); no key signature reaches the
//! client's log, the service's log or the journal (`e2e/secrets_stay_secret.rs`).

use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Client;
use time::OffsetDateTime;
use url::Url;
use valet_protocol::{
    CompleteUpload, CreateUpload, PartKey, PartKeys, PartKeysRequest, PartReceipt,
};
use valet_tests::api::Api;
use valet_tests::files::{hex, sha256_b64};
use valet_tests::service::ServiceOptions;
use valet_tests::store::StoreKind;

use crate::helpers::{World, on_every_store, part_digest, world_on};

/// One part of 1 MiB: the whole file, so that the honest upload can complete at the end.
const FILE_SIZE: usize = 1024 * 1024;

struct Keyed {
    w: World,
    api: Api,
    upload_id: String,
    object_key: String,
    key_ttl_secs: u64,
    bytes: Vec<u8>,
    key: PartKey,
}

/// A one-part upload on a store of `kind` and the key for its part.
fn keyed(kind: StoreKind, name: &str, options: ServiceOptions) -> Keyed {
    let w = world_on(kind, name, options);
    let api = Api::new(&w.service.url, &w.token);
    let create = CreateUpload {
        file_name: "scoped.bin".into(),
        size: FILE_SIZE as u64,
        content_type: None,
        prefix: None,
        part_size: 5 * 1024 * 1024,
        idempotency_key: None,
    };
    let created: valet_protocol::UploadCreated = api.post("/uploads", &create).unwrap();
    assert_eq!(created.layout.part_count, 1);
    let bytes: Vec<u8> = (0..FILE_SIZE).map(|i| (i * 7 % 251) as u8).collect();
    let key = key_for(&api, &created.upload_id, &bytes);
    Keyed {
        w,
        api,
        upload_id: created.upload_id,
        object_key: created.object_key,
        key_ttl_secs: created.key_ttl_secs,
        bytes,
        key,
    }
}

fn key_for(api: &Api, upload_id: &str, bytes: &[u8]) -> PartKey {
    let request = PartKeysRequest {
        parts: vec![part_digest(1, bytes)],
    };
    let mut keys: PartKeys = api
        .post(&format!("/uploads/{upload_id}/keys"), &request)
        .unwrap();
    keys.keys.remove(0)
}

/// Sends `method` to `url` with `headers` and `body`; the status and the body of the answer.
fn send(
    http: &Client,
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut request = http.request(method, url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().unwrap();
    (
        response.status().as_u16(),
        response.text().unwrap_or_default(),
    )
}

/// `url` with the query parameters named in `remove` left out and `add` put first, every other
/// parameter (the signature's among them) kept as it was.
fn requery(url: &str, path: Option<&str>, remove: &[&str], add: &[(&str, &str)]) -> String {
    let mut url = Url::parse(url).unwrap();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| !remove.contains(&name.as_ref()))
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    if let Some(path) = path {
        url.set_path(path);
    }
    let mut query = url.query_pairs_mut();
    query.clear();
    for (name, value) in add {
        query.append_pair(name, value);
    }
    for (name, value) in &kept {
        query.append_pair(name, value);
    }
    drop(query);
    url.to_string()
}

/// Each use of a key other than the `PUT` of its part: refused by the store with 403, and the
/// honest upload still completes afterwards (no abort, no early completion took effect).
#[test]
fn an_s3_part_key_opens_nothing_but_its_part() {
    let options = ServiceOptions {
        log: "trace".into(),
        ..ServiceOptions::default()
    };
    let k = keyed(StoreKind::S3, "kira", options);
    let http = Client::new();
    let (url, headers) = (&k.key.url, &k.key.headers);
    let bucket_path = format!("/{}", k.w.service.bucket);
    assert!(
        query_value(url, "uploadId").is_some(),
        "an UploadPart key names its multipart upload"
    );
    let complete_xml = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>\
        <ETag>x</ETag></Part></CompleteMultipartUpload>";
    let whole_object = requery(url, None, &["partNumber", "uploadId"], &[]);
    let attempts: Vec<(&str, Method, String, Vec<u8>)> = vec![
        ("read the part (GET)", Method::GET, url.clone(), vec![]),
        ("HEAD the part", Method::HEAD, url.clone(), vec![]),
        (
            "abort the upload (DELETE)",
            Method::DELETE,
            url.clone(),
            vec![],
        ),
        (
            "complete the upload (POST)",
            Method::POST,
            requery(url, None, &["partNumber"], &[]),
            complete_xml.as_bytes().to_vec(),
        ),
        (
            "complete the upload (POST, the key's own URL)",
            Method::POST,
            url.clone(),
            complete_xml.as_bytes().to_vec(),
        ),
        (
            "list the upload's parts",
            Method::GET,
            requery(url, None, &["partNumber"], &[]),
            vec![],
        ),
        (
            "write the object whole (PutObject)",
            Method::PUT,
            whole_object.clone(),
            k.bytes.clone(),
        ),
        ("read the object", Method::GET, whole_object.clone(), vec![]),
        (
            "HEAD the object",
            Method::HEAD,
            whole_object.clone(),
            vec![],
        ),
        ("delete the object", Method::DELETE, whole_object, vec![]),
        (
            "list the bucket (v1)",
            Method::GET,
            requery(url, Some(&bucket_path), &["partNumber", "uploadId"], &[]),
            vec![],
        ),
        (
            "list the bucket (v2)",
            Method::GET,
            requery(
                url,
                Some(&bucket_path),
                &["partNumber", "uploadId"],
                &[("list-type", "2")],
            ),
            vec![],
        ),
        (
            "list the bucket's multipart uploads",
            Method::GET,
            requery(
                url,
                Some(&bucket_path),
                &["partNumber", "uploadId"],
                &[("uploads", "")],
            ),
            vec![],
        ),
    ];
    for (what, method, attempt, body) in attempts {
        let (status, answer) = send(&http, method, &attempt, headers, body);
        assert_eq!(status, 403, "a part key cannot {what}: {answer}");
        if !answer.is_empty() {
            assert!(
                answer.contains("SignatureDoesNotMatch") || answer.contains("AccessDenied"),
                "{what}: {answer}"
            );
        }
    }

    // The key does what it was issued for, and the upload it belongs to is whole.
    let etag = put_part(&http, url, headers, &k.bytes);
    let verified = complete(&k, etag);
    assert_eq!(verified["state"], "verified", "{verified}");
    let objects = k.w.service.store().list("");
    assert_eq!(
        objects,
        vec![k.object_key.clone()],
        "one object in the bucket, and nothing else was written"
    );

    // Not the signature, nor the URL in any form, in the service's log at TRACE level.
    let signature = query_value(url, "X-Amz-Signature").unwrap();
    let log = k.w.service.log();
    assert!(
        log.contains("TRACE"),
        "the service really logged at trace level"
    );
    for secret in [
        signature.as_str(),
        url.as_str(),
        url.split('?').nth(1).unwrap(),
    ] {
        assert!(
            !log.contains(secret),
            "the service log holds the key: {secret}"
        );
    }
}

/// The `PUT` the key was issued for; the part's ETag.
fn put_part(http: &Client, url: &str, headers: &[(String, String)], bytes: &[u8]) -> String {
    let mut request = http.put(url).body(bytes.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().unwrap();
    assert_eq!(response.status().as_u16(), 200, "the part's own PUT");
    let etag = response.headers()["etag"].to_str().unwrap();
    etag.trim_matches('"').to_string()
}

fn complete(k: &Keyed, etag: String) -> serde_json::Value {
    use sha2::Digest as _;
    let body = CompleteUpload {
        sha256: hex(&sha2::Sha256::digest(&k.bytes)),
        parts: vec![PartReceipt {
            number: 1,
            etag,
            sha256: sha256_b64(&k.bytes),
            size: k.bytes.len() as u64,
        }],
    };
    k.api
        .post(&format!("/uploads/{}/complete", k.upload_id), &body)
        .unwrap()
}

fn query_value(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// On Azure a key is a SAS for one blob (`sr=b`) with create and write only (`sp=cw`): it cannot
/// read, delete or list. Azure has no permission for Put Block alone, so the same SAS can also
/// write the whole blob (Put Blob) or commit its blocks (Put Block List): that blob is the
/// upload's staging blob, never the object (`an_azure_part_key_cannot_write_the_final_object`).
#[test]
fn an_azure_part_key_cannot_read_delete_or_list() {
    let k = keyed(StoreKind::Azure, "kiri", ServiceOptions::default());
    let http = Client::new();
    let url = &k.key.url;
    assert_eq!(query_value(url, "sr").as_deref(), Some("b"), "one blob");
    assert_eq!(
        query_value(url, "sp").as_deref(),
        Some("cw"),
        "create and write"
    );
    let blob = requery(url, None, &["comp", "blockid"], &[]);
    let container_path = format!("/{}/{}", valet_tests::azurite::ACCOUNT, k.w.service.bucket);
    let list = requery(
        url,
        Some(&container_path),
        &["comp", "blockid"],
        &[("restype", "container"), ("comp", "list")],
    );
    let block_list = requery(url, None, &["comp", "blockid"], &[("comp", "blocklist")]);
    for (what, method, attempt) in [
        ("read the blob", Method::GET, blob.clone()),
        ("HEAD the blob", Method::HEAD, blob.clone()),
        ("delete the blob", Method::DELETE, blob),
        ("list the container", Method::GET, list),
        ("read the uncommitted block list", Method::GET, block_list),
    ] {
        let (status, answer) = send(&http, method, &attempt, &[], vec![]);
        assert_eq!(status, 403, "a part key cannot {what}: {answer}");
    }
}

/// A key used after its TTL is refused by the store (403); the same part with a fresh key goes
/// through, so the refusal was the expiry. SeaweedFS and Azurite check expiry; the GCS emulator
/// does not (GCS keys are renewed on time by the client, `e2e/key_renewal.rs`).
#[test]
fn an_expired_key_is_refused_by_the_store() {
    for kind in [StoreKind::S3, StoreKind::Azure] {
        let options = ServiceOptions {
            key_ttl: "2s".into(),
            ..ServiceOptions::default()
        };
        let k = keyed(kind, "kato", options);
        assert_eq!(k.key.expires_in_secs, 2);
        std::thread::sleep(Duration::from_secs(4));
        let http = Client::new();
        let (status, answer) = send(
            &http,
            Method::PUT,
            &k.key.url,
            &k.key.headers,
            k.bytes.clone(),
        );
        assert_eq!(
            status, 403,
            "{kind:?}: a key past its TTL is refused: {answer}"
        );
        let fresh = key_for(&k.api, &k.upload_id, &k.bytes);
        let (status, answer) = send(
            &http,
            Method::PUT,
            &fresh.url,
            &fresh.headers,
            k.bytes.clone(),
        );
        assert!(
            (200..300).contains(&status),
            "{kind:?}: a fresh key for the same part is taken: {status} {answer}"
        );
    }
}

on_every_store!(keys_live_as_long_as_the_config_says);

/// The TTL of `[keys] ttl` (4 minutes here; 10 minutes by default, `config.rs`) is what the
/// service announces, what each key says, what the audit log records, and what the store is
/// told in the signed URL itself: minutes, never more.
fn keys_live_as_long_as_the_config_says(kind: StoreKind) {
    let options = ServiceOptions {
        key_ttl: "4m".into(),
        ..ServiceOptions::default()
    };
    let before = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let k = keyed(kind, "kemi", options);
    let after = OffsetDateTime::now_utc() + Duration::from_secs(1);
    let ttl = Duration::from_secs(240);
    assert_eq!(k.key_ttl_secs, 240, "announced at creation");
    assert_eq!(k.key.expires_in_secs, 240, "said by the key");
    assert!(
        k.key.expires_at >= before + ttl && k.key.expires_at <= after + ttl,
        "expires_at {} is issue time + 4 min",
        k.key.expires_at
    );
    let url = &k.key.url;
    let signed_lifetime = match kind {
        StoreKind::S3 => query_value(url, "X-Amz-Expires")
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        StoreKind::Gcs => query_value(url, "X-Goog-Expires")
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        StoreKind::Azure => {
            let end = query_value(url, "se").expect("a SAS names its expiry");
            let end = OffsetDateTime::parse(&end, &time::format_description::well_known::Rfc3339)
                .unwrap();
            let lifetime = end - before;
            assert!(end <= after + ttl, "SAS expiry {end} is within the TTL");
            lifetime.whole_seconds() as u64
        }
    };
    assert!(
        (239..=241).contains(&signed_lifetime),
        "{kind:?}: the store is told the key lives {signed_lifetime} s"
    );
    let issued: Vec<_> =
        k.w.service
            .audit()
            .into_iter()
            .filter(|e| e["event"] == "key_issued")
            .collect();
    assert_eq!(issued.len(), 1, "{issued:#?}");
    let recorded = OffsetDateTime::parse(
        issued[0]["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        (recorded - k.key.expires_at).abs() < time::Duration::seconds(1),
        "the audit log records the key's expiry: {recorded} vs {}",
        k.key.expires_at
    );
}

/// Azure has no permission for Put Block alone: a part key (`sp=cw`) can also Put Blob the whole
/// blob or Put Block List its blocks. So the key names a staging blob, never the object's own
/// name: whatever the key's holder writes with it, the object at the final name stays the
/// earlier verified upload's, byte for byte, until the service itself completes the new upload.
#[test]
fn an_azure_part_key_cannot_write_the_final_object() {
    let k = keyed(StoreKind::Azure, "kaja", ServiceOptions::default());
    let http = Client::new();
    // An earlier upload of the same name, completed and verified.
    let block_id = query_value(&k.key.url, "blockid").unwrap();
    put_block(&http, &k.key.url, &k.key.headers, &k.bytes);
    assert_eq!(complete(&k, block_id)["state"], "verified");
    let store = k.w.service.store();
    let earlier = store
        .object_digest(&k.object_key)
        .expect("the earlier object");
    assert_eq!(earlier.0, FILE_SIZE as u64);

    // The same name again, other bytes; its key in the hands of someone who misuses it.
    let k = keyed_again(k);
    let url = k.key.url.clone();
    let whole_blob = requery(&url, None, &["comp", "blockid"], &[]);
    let forged: Vec<u8> = vec![b'!'; 4096];
    let blob_type = [("x-ms-blob-type".to_owned(), "BlockBlob".to_owned())];
    let (status, answer) = send(&http, Method::PUT, &whole_blob, &blob_type, forged.clone());
    println!("Put Blob with the part key: {status} {answer}");
    assert_unchanged(&store, &k, &earlier, "Put Blob");

    let block_id = query_value(&url, "blockid").unwrap();
    let other: Vec<u8> = k.bytes.iter().map(|b| b.wrapping_add(1)).collect();
    let own_md5 = [("content-md5".to_owned(), crate::helpers::md5_b64(&other))];
    put_block(&http, &url, &own_md5, &other);
    let block_list = requery(&url, None, &["comp", "blockid"], &[("comp", "blocklist")]);
    let list_xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>{block_id}</Latest></BlockList>"
    );
    let (status, answer) = send(&http, Method::PUT, &block_list, &[], list_xml.into_bytes());
    println!("Put Block List with the part key: {status} {answer}");
    assert_unchanged(&store, &k, &earlier, "Put Block List");

    // The key's signature names its blob: moved to the object's name it is refused.
    let container = format!("/{}/{}", valet_tests::azurite::ACCOUNT, k.w.service.bucket);
    let final_path = format!("{container}/{}", k.object_key);
    let at_final = requery(&whole_blob, Some(&final_path), &[], &[]);
    let (status, answer) = send(&http, Method::PUT, &at_final, &blob_type, forged);
    assert_eq!(status, 403, "the key moved to the object's name: {answer}");
    assert_unchanged(&store, &k, &earlier, "Put Blob at the object's name");

    // The honest upload still completes, byte-identical, and leaves no staging blob behind.
    put_block(&http, &url, &k.key.headers, &k.bytes);
    assert_eq!(complete(&k, block_id)["state"], "verified");
    use sha2::Digest as _;
    let digest = hex(&sha2::Sha256::digest(&k.bytes));
    assert_eq!(
        store.object_digest(&k.object_key),
        Some((k.bytes.len() as u64, digest.clone()))
    );
    assert_eq!(store.recorded_sha256(&k.object_key), Some(digest));
    assert_eq!(
        store.list(""),
        vec![k.object_key.clone()],
        "nothing else left"
    );
}

/// The object at `k`'s name is still `earlier`, and it is the only blob under the users' prefix.
fn assert_unchanged(
    store: &valet_tests::store::StoreBucket,
    k: &Keyed,
    earlier: &(u64, String),
    after: &str,
) {
    assert_eq!(
        store.object_digest(&k.object_key).as_ref(),
        Some(earlier),
        "after {after} with a part key, the earlier verified object keeps its bytes"
    );
    assert_eq!(
        store.list("users/"),
        vec![k.object_key.clone()],
        "after {after}, no other object appeared"
    );
}

/// Put Block with a part key: the store takes it (201).
fn put_block(http: &Client, url: &str, headers: &[(String, String)], bytes: &[u8]) {
    let (status, answer) = send(http, Method::PUT, url, headers, bytes.to_vec());
    assert_eq!(status, 201, "Put Block: {answer}");
}

/// A second upload of `k`'s file name, with other bytes, and the key for its part.
fn keyed_again(k: Keyed) -> Keyed {
    let create = CreateUpload {
        file_name: "scoped.bin".into(),
        size: FILE_SIZE as u64,
        content_type: None,
        prefix: None,
        part_size: 5 * 1024 * 1024,
        idempotency_key: None,
    };
    let created: valet_protocol::UploadCreated = k.api.post("/uploads", &create).unwrap();
    assert_eq!(created.object_key, k.object_key, "the same name");
    let bytes: Vec<u8> = (0..FILE_SIZE).map(|i| (i * 13 % 241) as u8).collect();
    let key = key_for(&k.api, &created.upload_id, &bytes);
    Keyed {
        upload_id: created.upload_id,
        key_ttl_secs: created.key_ttl_secs,
        bytes,
        key,
        ..k
    }
}

/// The copy to the object's name is conditioned on the staging blob's verified ETag: a part key
/// used between the verification and the copy (a Put Blob of other bytes) makes the copy fail
/// with `SourceConditionNotMet`, and nothing appears at the object's name. An abort then leaves
/// no staging blob. The service's Azure store against Azurite, step by step.
#[test]
fn an_azure_staging_blob_changed_after_verification_is_not_copied() {
    use valet_service::store::{Finish, PartToComplete, Store};
    let azurite = valet_tests::azurite::Azurite::shared_or_start();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("azure.toml");
    let account_key = valet_tests::azurite::ACCOUNT_KEY;
    std::fs::write(&credentials, format!("account_key = \"{account_key}\"\n")).unwrap();
    let container = format!(
        "staging{}",
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    let config = valet_service::config::Config::from_toml(&format!(
        "data_dir = \"/tmp\"\n[store]\nkind = \"azure\"\nendpoint = \"{}\"\nbucket = \"{container}\"\n\
         credentials_file = \"{}\"\n",
        azurite.endpoint,
        credentials.display()
    ))
    .unwrap();
    let store = Store::from_store_config(&config.store).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(store.ensure_bucket()).unwrap();
    let (key, tag) = ("users/kaja/late.bin", "latewritetag0001");
    let bytes: Vec<u8> = (0..FILE_SIZE).map(|i| (i * 7 % 251) as u8).collect();
    let digest = part_digest(1, &bytes);
    let (url, headers) = runtime
        .block_on(store.presign_part(key, tag, &digest, Duration::from_secs(300)))
        .unwrap();
    let http = Client::new();
    put_block(&http, url.as_str(), &headers, &bytes);
    use sha2::Digest as _;
    let sha256_hex = hex(&sha2::Sha256::digest(&bytes));
    let parts = [PartToComplete {
        number: 1,
        etag: query_value(url.as_str(), "blockid").unwrap(),
        sha256_b64: digest.sha256.clone(),
        size: FILE_SIZE as u64,
        crc32c: None,
    }];
    let finish = Finish {
        content_type: "application/octet-stream",
        sha256_hex: &sha256_hex,
    };
    let completed = runtime
        .block_on(store.complete(key, tag, &parts, finish))
        .unwrap();
    let verified_etag = completed.etag.expect("Put Block List answers an ETag");

    // After the verification, before the copy: the part key writes the staging blob whole.
    let whole_blob = requery(url.as_str(), None, &["comp", "blockid"], &[]);
    let blob_type = [("x-ms-blob-type".to_owned(), "BlockBlob".to_owned())];
    let (status, answer) = send(
        &http,
        Method::PUT,
        &whole_blob,
        &blob_type,
        vec![b'!'; 4096],
    );
    assert_eq!(
        status, 201,
        "the part key writes its staging blob: {answer}"
    );
    let refused = runtime
        .block_on(store.publish(key, tag, &verified_etag, FILE_SIZE as u64, &sha256_hex))
        .unwrap_err();
    // Azure documents `SourceConditionNotMet`; Azurite answers `ConditionNotMet`.
    assert!(
        matches!(
            refused.store_code(),
            Some("SourceConditionNotMet" | "ConditionNotMet")
        ),
        "{refused}"
    );
    let bucket =
        valet_tests::store::StoreBucket::of(StoreKind::Azure, &azurite.endpoint, &container);
    assert_eq!(
        bucket.object_digest(key),
        None,
        "nothing at the object's name"
    );

    runtime.block_on(store.abort(key, tag)).unwrap();
    assert_eq!(
        bucket.list(""),
        Vec::<String>::new(),
        "no staging blob after the abort"
    );
}
