//! Replies of the valet service as the engine reads them: the capped body read, the JSON decode
//! of each reply type, and the engine's checks of create and keys answers.
//!
//! Input: byte 0 picks the reply type, byte 1 the chunk size the body arrives in (0: one
//! piece of known length), byte 2 the read cap (0: the engine's `MAX_REPLY_BYTES`), the rest is
//! the body.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use valet_engine::fuzzing::{check_created, check_keys, decode, read_reply};
use valet_engine::{Error, MAX_REPLY_BYTES, StoreTarget};
use valet_protocol::{
    ApiError, CreateUpload, PartDigest, PartKeys, StoreInfo, StoreKind, StoreLimits, TokenResponse,
    UploadCreated, UploadStatus, UploadVerified,
};

fuzz_target!(|data: &[u8]| {
    let [kind, chunk, cap, body @ ..] = data else {
        return;
    };
    let cap = match *cap {
        0 => MAX_REPLY_BYTES,
        c => usize::from(c) * 8,
    };
    let Some(read) = read(body, *chunk, cap) else {
        assert!(body.len() > cap, "a body within the cap was refused");
        return;
    };
    assert!(body.len() <= cap, "a body over the cap was read");
    assert_eq!(read, body, "the body read differs from the body sent");
    match kind % 6 {
        0 => drop(round_trip::<TokenResponse>(body)),
        1 => created(body),
        2 => keys(body),
        3 => drop(round_trip::<UploadStatus>(body)),
        4 => drop(round_trip::<UploadVerified>(body)),
        _ => error(body),
    }
});

/// The body through the engine's capped reader, in pieces of `chunk` bytes.
fn read(body: &[u8], chunk: u8, cap: usize) -> Option<Bytes> {
    let body = Bytes::copy_from_slice(body);
    let body = match chunk {
        0 => reqwest::Body::from(body),
        n => {
            let pieces: Vec<Result<Bytes, std::io::Error>> = body
                .chunks(usize::from(n))
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
        }
    };
    let response = reqwest::Response::from(http::Response::new(body));
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(read_reply(response, cap))
}

/// Decodes `T`; a decoded reply encodes and decodes to itself, a refused one is a `bad_reply`
/// that does not quote the body.
fn round_trip<T>(body: &[u8]) -> Option<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    match decode::<T>(body) {
        Ok(value) => {
            let again: T = decode(&serde_json::to_vec(&value).expect("encodes")).expect("decodes");
            assert_eq!(again, value, "reply does not survive a round trip");
            Some(value)
        }
        Err(e) => {
            assert_eq!(e.code(), "bad_reply");
            let shown = e.to_string();
            assert!(
                shown.contains("not the expected JSON ("),
                "unexpected decode error: {shown}"
            );
            None
        }
    }
}

fn created(body: &[u8]) {
    let Some(created) = round_trip::<UploadCreated>(body) else {
        return;
    };
    // Asked for exactly the size answered, so that every other check is reached.
    let create = CreateUpload {
        file_name: "f".into(),
        size: created.layout.size,
        content_type: None,
        prefix: None,
        part_size: created.layout.part_size,
        idempotency_key: None,
    };
    let Ok(target) = check_created(&create, &created) else {
        return;
    };
    let layout = created.layout;
    assert_eq!(
        StoreLimits::of(created.store.kind).check(layout.size, layout.part_size),
        Ok(layout),
        "accepted a layout the store kind does not allow"
    );
    assert!(layout.part_count >= 1);
    assert!(
        layout
            .part_size
            .saturating_mul(u64::from(layout.part_count))
            >= layout.size,
        "parts do not cover the file"
    );
    assert!(!target.key_ttl.is_zero() && target.key_ttl <= Duration::from_secs(365 * 24 * 3600));
    assert_safe_origin(&target.origin);
    let id = &created.upload_id;
    assert!(!id.is_empty() && id != "." && id != "..");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)),
        "upload id {id:?} would not be a plain path segment"
    );
}

fn keys(body: &[u8]) {
    let Some(reply) = round_trip::<PartKeys>(body) else {
        return;
    };
    // Ask for the parts answered, at the origin of the first key: the deepest checks run.
    let asked: Vec<PartDigest> = reply
        .keys
        .iter()
        .map(|k| PartDigest {
            number: k.number,
            size: 1,
            sha256: "x".into(),
            md5: None,
            crc64: None,
        })
        .collect();
    let origin = reply
        .keys
        .first()
        .and_then(|k| url::Url::parse(&k.url).ok())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "https://store.example.com".into());
    let info = StoreInfo {
        kind: StoreKind::S3,
        origin,
        part_checksums: vec![],
    };
    let Ok(target) = StoreTarget::new(&info, 600) else {
        return;
    };
    match check_keys(&asked, reply.clone(), &target) {
        Ok(leases) => {
            assert_eq!(leases.len(), asked.len());
            for (lease, key) in leases.iter().zip(&reply.keys) {
                assert_eq!(lease.url.origin().ascii_serialization(), target.origin);
                assert_safe_origin(&target.origin);
                assert!(key.method.eq_ignore_ascii_case("PUT"));
                assert!(!lease.ttl.is_zero());
                assert_eq!(lease.headers.len(), key.headers.len());
                let shown = format!("{lease:?}");
                if let Some(query) = lease.url.query().filter(|q| q.len() >= 8) {
                    assert!(
                        !shown.contains(query),
                        "a lease shows its signature: {shown}"
                    );
                }
            }
        }
        Err(e) => assert_quiet(&e, &reply),
    }
}

/// A refused key names neither its URL's query (the signature) nor a header value.
fn assert_quiet(e: &Error, reply: &PartKeys) {
    let shown = e.to_string();
    for key in &reply.keys {
        if let Some((_, query)) = key.url.split_once('?')
            && query.len() >= 8
        {
            assert!(!shown.contains(query), "error shows a key's query: {shown}");
        }
        for (_, value) in &key.headers {
            if value.len() >= 8 {
                assert!(
                    !shown.contains(value.as_str()),
                    "error shows a header value: {shown}"
                );
            }
        }
    }
}

fn assert_safe_origin(origin: &str) {
    let url = url::Url::parse(origin).expect("an accepted origin parses");
    match url.scheme() {
        "https" => {}
        "http" => assert!(
            valet_engine::urls::is_loopback(&url),
            "http origin {origin} is not loopback"
        ),
        other => panic!("origin with scheme {other} accepted"),
    }
}

fn error(body: &[u8]) {
    let Some(error) = round_trip::<ApiError>(body) else {
        return;
    };
    let e = Error::Service {
        status: 400,
        error: error.clone(),
    };
    assert!(e.to_string().contains(&error.message));
    assert!(!e.code().is_empty());
    // What a shell shows: the stable code travels as it came.
    let value: Value = serde_json::to_value(&error).expect("encodes");
    assert_eq!(
        value["code"],
        serde_json::to_value(error.code).expect("encodes")
    );
}
