//! Entry points for the fuzz targets (`fuzz/`): the engine's own private parsers and checks,
//! called exactly as the engine calls them. Built only with the `fuzzing` feature.

use std::time::Instant;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use valet_protocol::{CreateUpload, PartDigest, PartKeys, UploadCreated};

use crate::error::Result;
use crate::session::{KeyLease, StoreTarget};

/// Reads a reply body as the engine does, capped at `cap` bytes; `None` when it is larger.
pub async fn read_reply(response: reqwest::Response, cap: usize) -> Option<Bytes> {
    match crate::http::read_capped(response, cap).await {
        Ok(body) => Some(body),
        Err(crate::http::ReadError::TooLarge(_)) => None,
        // An in-memory body cannot fail to read.
        Err(e @ crate::http::ReadError::Transport(_)) => panic!("in-memory body: {e}"),
    }
}

/// Decodes a service reply body as `T`, with the engine's error for an unreadable one.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| crate::session::json_error("fuzz", &e))
}

/// The engine's checks of a create answer.
pub fn check_created(create: &CreateUpload, created: &UploadCreated) -> Result<StoreTarget> {
    crate::session::check_created("fuzz", create, created)
}

/// The engine's checks of a keys answer.
pub fn check_keys(
    asked: &[PartDigest],
    reply: PartKeys,
    store: &StoreTarget,
) -> Result<Vec<KeyLease>> {
    crate::session::check_keys("fuzz", asked, reply, store, Instant::now())
}

/// What the engine makes of a store's failed answer to a part upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartVerdict {
    /// The key expired: get a new one.
    Expired,
    /// The key was refused.
    Forbidden,
    /// The bytes do not match the key's checksum: read the part again.
    BadDigest,
    /// Try again after a delay.
    Retryable,
    /// Give up, with this error code.
    Fatal(&'static str),
}

/// Reads a store error body (`<Error><Code>…`) and classifies the answer, as a part upload does:
/// the code, the message and the verdict.
pub fn store_error(part: u32, status: u16, body: &[u8]) -> (String, String, PartVerdict) {
    use crate::store::PartFailure;
    let (code, message) = crate::store::s3::parse_error(body);
    let verdict = match crate::store::s3::classify(part, status, code.clone(), message.clone()) {
        PartFailure::Expired(_) => PartVerdict::Expired,
        PartFailure::Forbidden(_) => PartVerdict::Forbidden,
        PartFailure::BadDigest => PartVerdict::BadDigest,
        PartFailure::Retryable(_) => PartVerdict::Retryable,
        PartFailure::Fatal(e) => PartVerdict::Fatal(e.code()),
    };
    (code, message, verdict)
}
