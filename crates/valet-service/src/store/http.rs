//! What the service's own calls to every store share: the HTTP client, sending a request
//! without ever putting its URL in an error (the query of a presigned or SAS URL is a
//! signature), reading answers, and hashing an object as it streams by.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::{RequestBuilder, Response, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// A client for one store: ring TLS, 10 s to connect, and at most `read_timeout` between two
/// reads of an answer (a gap that long means the store is gone). A connection idle for 4 s is
/// not reused: servers close idle ones (Azurite after 5 s, as Node does), and a request sent
/// on one as it closes fails ("error sending request").
pub(crate) fn client(read_timeout: Duration) -> Result<reqwest::Client, Error> {
    crate::install_tls_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(4))
        .read_timeout(read_timeout)
        .build()
        .map_err(|e| transport("connect", e))
}

/// A transport failure of `operation`, without the URL.
fn transport(operation: &'static str, e: reqwest::Error) -> Error {
    Error::StoreUnavailable {
        operation,
        message: e.without_url().to_string(),
    }
}

/// An answer of `operation` that cannot be read as the store documents it.
pub(crate) fn unreadable(operation: &'static str, why: impl std::fmt::Display) -> Error {
    Error::StoreUnavailable {
        operation,
        message: format!("unreadable answer: {why}"),
    }
}

/// `request` with `headers`, and `body` when there is one.
pub(crate) fn with(
    mut request: RequestBuilder,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> RequestBuilder {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match body {
        Some(body) => request.body(body),
        None => request,
    }
}

/// Sends `request`; the answer, whatever its status. Only a failure to get one is an error.
pub(crate) async fn send(
    operation: &'static str,
    request: RequestBuilder,
) -> Result<Response, Error> {
    request.send().await.map_err(|e| transport(operation, e))
}

/// The error code of a refusal whose body names none: the status's reason without spaces
/// (`NotFound`, `PreconditionFailed`).
pub(crate) fn status_code(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .replace(' ', "")
}

/// Largest answer read from a store. The largest real ones are listings: a Get Block List of
/// 50,000 blocks is about 5 MiB. A larger answer is refused rather than held in memory.
pub(crate) const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The answer's body as text (UTF-8, lossily, without a byte-order mark), at most
/// [`MAX_ANSWER_BYTES`].
pub(crate) async fn text(operation: &'static str, mut response: Response) -> Result<String, Error> {
    let too_large = || unreadable(operation, format!("larger than {MAX_ANSWER_BYTES} bytes"));
    if response
        .content_length()
        .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport(operation, e))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body);
    Ok(text.strip_prefix('\u{feff}').unwrap_or(&text).to_owned())
}

/// A header of the answer, when it is text.
pub(crate) fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The SHA-256 and length of the answer's body, read as it streams (memory stays small).
pub(crate) async fn sha256_of(
    operation: &'static str,
    response: Response,
) -> Result<([u8; 32], u64), Error> {
    let mut stream = response.bytes_stream();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport(operation, e))?;
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((hasher.finalize().into(), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: Vec<u8>) -> Response {
        Response::from(axum::http::Response::new(body))
    }

    #[tokio::test]
    async fn answers_are_read_up_to_the_cap() {
        let read = text("t", answer("\u{feff}<a>é</a>".into())).await.unwrap();
        assert_eq!(read, "<a>é</a>", "without its byte-order mark");
        let at_cap = text("t", answer(vec![b'x'; MAX_ANSWER_BYTES]))
            .await
            .unwrap();
        assert_eq!(at_cap.len(), MAX_ANSWER_BYTES);
        let over = text("t", answer(vec![b'x'; MAX_ANSWER_BYTES + 1]))
            .await
            .unwrap_err();
        assert!(over.to_string().contains("larger than"), "{over}");
    }
}
