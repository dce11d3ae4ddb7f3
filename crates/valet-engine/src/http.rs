//! HTTP machinery shared by the service client and the store adapter: clients, capped reply
//! reading, and the retry policy.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::{Bytes, BytesMut};

/// Largest reply body the engine reads from the service. Real replies are a few KiB (100 keys
/// are about 100 KiB); anything larger is refused as a bad reply instead of filling memory.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// Largest error body read from the store (S3 error documents are well under 1 KiB).
pub(crate) const MAX_STORE_ERROR_BYTES: usize = 64 * 1024;

const USER_AGENT: &str = concat!("valet-upload/", env!("CARGO_PKG_VERSION"));

/// Makes ring the process's TLS crypto provider (one provider for the whole workspace: no
/// second C crypto library to build). Idempotent; every HTTP client is built after it.
pub fn install_tls_provider() {
    // Err only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The proxy a policy set for every connection; `None`: the system's (`HTTPS_PROXY`).
static PROXY: std::sync::RwLock<Option<url::Url>> = std::sync::RwLock::new(None);

/// Sends the connections of every HTTP client built from now on through `proxy` (a policy's
/// `proxy`); `None` returns to the system's proxy settings.
pub fn set_proxy(proxy: Option<url::Url>) {
    *PROXY.write().unwrap_or_else(|e| e.into_inner()) = proxy;
}

/// A client builder with our user agent, no redirects, and the policy's proxy.
fn builder() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none());
    let proxy = PROXY.read().unwrap_or_else(|e| e.into_inner()).clone();
    match proxy.map(|url| reqwest::Proxy::all(url.as_str())) {
        Some(Ok(proxy)) => builder.proxy(proxy),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the policy's proxy is not usable; connecting directly");
            builder
        }
        None => builder,
    }
}

/// The client for the valet service. Redirects are not followed (a redirect could carry the
/// bearer token elsewhere); every request has a total timeout.
pub(crate) fn service_client() -> reqwest::Client {
    install_tls_provider();
    builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The client for the store. No total timeout (on a slow link a part takes as long as it
/// takes); a stalled connection is noticed by the part's sender instead (see
/// [`STORE_STALL_TIMEOUT`] and [`STORE_ANSWER_TIMEOUT`]). Not reqwest's `read_timeout` either: it runs from the start of a
/// request to its answer's headers, the whole body's sending included, so it ended every part
/// that took longer to send than its limit, however steadily the bytes went (a 5 MiB part on an
/// 80 KB/s link never got through). Redirects are not followed because the key only allows the
/// URL the service signed.
pub(crate) fn store_client() -> reqwest::Client {
    install_tls_provider();
    builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// How long one attempt to send a part may go without progress while its body is being sent
/// (no body bytes taken by the connection) before it is given up as stalled and retried: a
/// dead or black-holed connection.
pub(crate) const STORE_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an attempt may wait for the store's answer once the connection took every body
/// byte. Longer than [`STORE_STALL_TIMEOUT`]: "taken" only means the bytes are in socket
/// buffers, and megabytes of them can still be on their way on a slow link (6 MiB at 20 KB/s
/// take 5 minutes); a store answers within seconds of the last byte.
pub(crate) const STORE_ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Resolves once `progress` (body bytes taken by the connection, of `total`) has not moved
/// for `limit` while bytes remain, or for `answer_limit` once all `total` were taken.
pub(crate) async fn stalled(
    progress: &std::sync::atomic::AtomicU64,
    total: u64,
    limit: Duration,
    answer_limit: Duration,
) {
    use std::sync::atomic::Ordering;
    let tick = (limit / 10).min(Duration::from_secs(1));
    let mut seen = progress.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let now = progress.load(Ordering::Relaxed);
        let allowed = if now >= total { answer_limit } else { limit };
        if now != seen {
            seen = now;
            since = Instant::now();
        } else if since.elapsed() >= allowed {
            return;
        }
    }
}

/// A transport error in words, its causes included, without its URL (which may carry a key).
pub(crate) fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() {
        "sending the body failed"
    } else {
        "request failed"
    };
    // A connection through the policy's proxy fails at the proxy as often as past it: say so.
    let proxy = PROXY.read().unwrap_or_else(|p| p.into_inner()).clone();
    let kind = match proxy.filter(|_| e.is_connect()) {
        Some(proxy) => format!("{kind} (through the proxy {})", crate::urls::redact(&proxy)),
        None => kind.to_owned(),
    };
    let e = e.without_url();
    let mut reason = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        reason.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    reason
}

/// Why a reply body could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Larger than the cap; reading stopped there.
    TooLarge(usize),
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge(cap) => write!(f, "reply body larger than {cap} bytes"),
            Self::Transport(e) => write!(f, "reading the reply failed: {e}"),
        }
    }
}

/// Reads a reply body, stopping with [`ReadError::TooLarge`] as soon as it exceeds `cap` bytes
/// (a hostile `Content-Length` is refused before reading anything).
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|len| len > cap as u64) {
        return Err(ReadError::TooLarge(cap));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(e.without_url()))?
    {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// How failed requests are retried, for service calls and part uploads alike.
///
/// Retried: connection failures, timeouts and resets; HTTP 429 and every 5xx (including S3's
/// `503 SlowDown` and `500 InternalError`, which S3 asks clients to retry). Not retried: other
/// 4xx, which a second identical request cannot fix (part uploads handle their own special 4xx
/// cases: an expired key gets a new key, `400 BadDigest` re-reads the part).
///
/// Delays grow exponentially from `min_delay` to `max_delay` with random jitter (so that many
/// clients after one outage do not retry in lockstep), for at most `max_attempts` attempts and
/// for at most `deadline` after the first failure; then the operation fails with
/// [`crate::Error::RetriesExhausted`] and the upload can be resumed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay.
    pub min_delay: Duration,
    /// Longest single delay.
    pub max_delay: Duration,
    /// Most attempts of one operation, the first included.
    pub max_attempts: u32,
    /// Longest time from the first failure to the last attempt.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(15),
            max_attempts: 10,
            deadline: Duration::from_secs(120),
        }
    }
}

/// The retry state of one operation.
pub(crate) struct Retry {
    policy: RetryPolicy,
    backoff: ExponentialBackoff,
    first_failure: Option<Instant>,
    attempts: u32,
}

impl Retry {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_attempts.saturating_sub(1) as usize)
            .build();
        Self {
            policy,
            backoff,
            first_failure: None,
            attempts: 0,
        }
    }

    /// Attempts failed so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Records a failed attempt at `now`; the delay before the next one, or `None` when the
    /// budget (attempts or deadline) is spent.
    pub(crate) fn failed(&mut self, now: Instant) -> Option<Duration> {
        self.attempts += 1;
        let first = *self.first_failure.get_or_insert(now);
        let delay = self.backoff.next()?;
        let elapsed = now.saturating_duration_since(first);
        (elapsed + delay <= self.policy.deadline).then_some(delay)
    }
}

/// Whether an HTTP status is worth retrying (see [`RetryPolicy`]).
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_stops_at_attempts_and_deadline() {
        let policy = RetryPolicy {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            max_attempts: 3,
            deadline: Duration::from_secs(60),
        };
        let mut retry = Retry::new(policy);
        let t = Instant::now();
        assert!(retry.failed(t).is_some());
        assert!(retry.failed(t).is_some());
        assert!(retry.failed(t).is_none(), "three attempts in all");
        assert_eq!(retry.attempts(), 3);

        let mut retry = Retry::new(RetryPolicy {
            deadline: Duration::from_secs(1),
            max_attempts: 100,
            ..policy
        });
        assert!(retry.failed(t).is_some());
        assert!(
            retry.failed(t + Duration::from_secs(2)).is_none(),
            "past the deadline"
        );
    }

    #[tokio::test]
    async fn stalled_means_no_progress_for_the_limit_not_a_long_time() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let (limit, answer_limit) = (Duration::from_millis(300), Duration::from_millis(900));
        // A byte every 50 ms for 1.5 s (five times the limit): never stalled.
        let progress = Arc::new(AtomicU64::new(0));
        let trickle = {
            let progress = progress.clone();
            async move {
                for _ in 0..30 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        tokio::select! {
            () = trickle => {}
            () = stalled(&progress, 100, limit, answer_limit) => {
                panic!("a steady trickle was called stalled")
            }
        }
        // Then silence with bytes left to send: stalled after the limit.
        let start = Instant::now();
        stalled(&progress, 100, limit, answer_limit).await;
        let waited = start.elapsed();
        assert!(waited >= limit && waited < answer_limit, "{waited:?}");
        // Every byte taken: the answer may take longer.
        let start = Instant::now();
        stalled(&progress, 30, limit, answer_limit).await;
        assert!(start.elapsed() >= answer_limit, "{:?}", start.elapsed());
    }

    #[test]
    fn retryable_statuses() {
        for s in [429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 409] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }
}
