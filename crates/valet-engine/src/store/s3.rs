//! S3 `UploadPart` with a pre-signed URL (and S3-compatible stores).
//!
//! The key's URL carries the signature; its headers (notably `x-amz-checksum-sha256`) are signed
//! into it and sent exactly as given, so the store refuses any other bytes (`400 BadDigest`).
//! References: S3 API `UploadPart`, "Error responses" (error codes `AccessDenied` with
//! "Request has expired", `BadDigest`, `SlowDown`, `RequestTimeout`).

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, ETAG, HeaderMap};

use crate::error::Error;
use crate::http::{self, MAX_STORE_ERROR_BYTES};
use crate::session::KeyLease;
use crate::upload::RateLimit;
use crate::urls;

/// Body chunk handed to the connection at a time without a bandwidth limit.
const CHUNK: usize = 256 * 1024;

/// Why one attempt to send a part failed.
#[derive(Debug)]
pub(crate) enum PartFailure {
    /// `403` saying the request (key) expired.
    Expired(String),
    /// Another `403`: the key was refused (wrong signature, clock skew on the store…).
    Forbidden(String),
    /// `400 BadDigest`: the bytes sent do not match the checksum the key binds.
    BadDigest,
    /// Worth another attempt after a delay: network trouble, 5xx, 429, `SlowDown`.
    Retryable(String),
    /// Not worth another attempt.
    Fatal(Error),
}

/// Called with the size of every body chunk as it is handed to the connection.
pub(crate) type OnSent = Arc<dyn Fn(u64) + Send + Sync>;

/// The receipt of an accepted `UploadPart`: its `ETag`.
pub(crate) fn receipt(lease: &KeyLease, headers: &HeaderMap) -> Result<String, PartFailure> {
    headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            PartFailure::Fatal(Error::BadReply {
                from: urls::redact(&lease.url),
                what: format!("part {} accepted without an ETag", lease.key.number),
            })
        })
}

/// Sends part `lease.key.number` once with exactly the key's method, URL and headers (every
/// store's keys are plain pre-signed `PUT`s); the answer's headers when the store accepted
/// the bytes. Store error documents are XML `<Error><Code>…<Message>…` on all three stores.
pub(crate) async fn send(
    client: &reqwest::Client,
    lease: &KeyLease,
    body: Bytes,
    limit: Option<Arc<RateLimit>>,
    on_sent: OnSent,
) -> Result<HeaderMap, PartFailure> {
    let part = lease.key.number;
    let len = body.len();
    let chunk = limit.as_ref().map_or(CHUNK, |l| l.chunk_size());
    // Zero-copy: every chunk is a slice of the part's one buffer.
    let stream = futures_util::stream::unfold(0usize, move |offset| {
        let body = body.clone();
        let limit = limit.clone();
        let on_sent = on_sent.clone();
        async move {
            if offset >= body.len() {
                return None;
            }
            let end = (offset + chunk).min(body.len());
            let piece = body.slice(offset..end);
            if let Some(limit) = &limit {
                limit.take(piece.len() as u64).await;
            }
            on_sent(piece.len() as u64);
            Some((Ok::<_, std::io::Error>(piece), end))
        }
    });
    let mut request = client.put(lease.url.clone());
    let mut has_length = false;
    for (name, value) in &lease.headers {
        has_length |= name == CONTENT_LENGTH;
        request = request.header(name.clone(), value.clone());
    }
    if !has_length {
        request = request.header(CONTENT_LENGTH, len);
    }
    let shown = urls::redact(&lease.url);
    tracing::debug!(part, url = %shown, bytes = len, "sending part");
    let response = match request
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) if e.is_builder() => {
            return Err(PartFailure::Fatal(Error::Network {
                what: format!("part {part} to {shown}"),
                source: e.without_url(),
            }));
        }
        Err(e) => return Err(PartFailure::Retryable(crate::http::describe(e))),
    };
    let status = response.status().as_u16();
    tracing::debug!(part, url = %shown, status, "store answer");
    if (200..300).contains(&status) {
        let headers = response.headers().clone();
        // Drain the (empty) body so the connection can be reused.
        let _ = http::read_capped(response, MAX_STORE_ERROR_BYTES).await;
        return Ok(headers);
    }
    let body = match http::read_capped(response, MAX_STORE_ERROR_BYTES).await {
        Ok(body) => body,
        Err(http::ReadError::TooLarge(_)) => Bytes::new(),
        Err(e) => return Err(PartFailure::Retryable(format!("HTTP {status}, then {e}"))),
    };
    let (code, message) = parse_error(&body);
    Err(classify(part, status, code, message))
}

/// What a failed answer means (see [`PartFailure`]); the retry policy is in
/// [`crate::http::RetryPolicy`].
pub(crate) fn classify(part: u32, status: u16, code: String, message: String) -> PartFailure {
    let reason = if code.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {code}")
    };
    match (status, code.as_str()) {
        // S3 and GCS say BadDigest; Azure Md5Mismatch / Crc64Mismatch (Azurite: InvalidOperation,
        // "Provided contentMD5 doesn't match.").
        (
            400,
            "BadDigest"
            | "XAmzContentSHA256Mismatch"
            | "XAmzContentChecksumMismatch"
            | "Md5Mismatch"
            | "Crc64Mismatch",
        ) => PartFailure::BadDigest,
        (400, "InvalidOperation") if message.contains("contentMD5") => PartFailure::BadDigest,
        // GCS answers an expired V4 signature with 400 ExpiredToken.
        (400, "ExpiredToken") => PartFailure::Expired(reason),
        // S3 closes uploads that stall: "Your socket connection to the server was not read
        // from or written to within the timeout period."
        (400, "RequestTimeout") => PartFailure::Retryable(reason),
        (403, "ExpiredToken" | "RequestExpired" | "TokenRefreshRequired") => {
            PartFailure::Expired(reason)
        }
        // Azure: "Signature not valid in the specified time frame".
        (403, _)
            if message.to_ascii_lowercase().contains("expired")
                || message.contains("time frame") =>
        {
            PartFailure::Expired(reason)
        }
        (403, _) => PartFailure::Forbidden(reason),
        // 429, 500 InternalError, 503 SlowDown / ServiceUnavailable: S3 asks for a retry.
        (s, _) if http::is_retryable_status(s) => PartFailure::Retryable(reason),
        _ => PartFailure::Fatal(Error::Store {
            part,
            status,
            code,
            message,
        }),
    }
}

/// `<Code>` and `<Message>` of an S3 error document (empty when absent); at most 300
/// characters of the message are kept.
pub(crate) fn parse_error(body: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(body);
    let field = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        text.find(&open)
            .and_then(|start| {
                let rest = &text[start + open.len()..];
                rest.find(&close).map(|end| rest[..end].trim().to_owned())
            })
            .unwrap_or_default()
    };
    let message: String = field("Message").chars().take(300).collect();
    (field("Code").chars().take(100).collect(), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_documents_are_read() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Request has expired</Message><X-Amz-Expires>2</X-Amz-Expires></Error>"#;
        let (code, message) = parse_error(body);
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("AccessDenied", "Request has expired")
        );
        assert!(matches!(
            classify(1, 403, code, message),
            PartFailure::Expired(_)
        ));
        assert_eq!(parse_error(b"not xml"), (String::new(), String::new()));
    }

    #[test]
    fn failures_are_classified() {
        let c = |status, code: &str| classify(3, status, code.into(), String::new());
        assert!(matches!(c(400, "BadDigest"), PartFailure::BadDigest));
        assert!(matches!(c(400, "Md5Mismatch"), PartFailure::BadDigest));
        assert!(matches!(
            classify(
                1,
                400,
                "InvalidOperation".into(),
                "Provided contentMD5 doesn't match.".into()
            ),
            PartFailure::BadDigest
        ));
        assert!(matches!(c(400, "ExpiredToken"), PartFailure::Expired(_)));
        assert!(matches!(c(503, "SlowDown"), PartFailure::Retryable(_)));
        assert!(matches!(c(500, ""), PartFailure::Retryable(_)));
        assert!(matches!(c(429, ""), PartFailure::Retryable(_)));
        assert!(matches!(
            c(400, "RequestTimeout"),
            PartFailure::Retryable(_)
        ));
        assert!(matches!(
            c(403, "SignatureDoesNotMatch"),
            PartFailure::Forbidden(_)
        ));
        match c(404, "NoSuchUpload") {
            PartFailure::Fatal(e) => {
                assert_eq!(e.code(), "store");
                assert!(e.to_string().contains("part 3"), "{e}");
            }
            other => panic!("404 is fatal: {other:?}"),
        }
    }
}
