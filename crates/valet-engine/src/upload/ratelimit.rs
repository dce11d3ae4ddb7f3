//! A bandwidth limit shared by every part in flight (`--bwlimit`): a token bucket over the
//! request bodies. Each body chunk reserves its bytes before it is handed to the connection;
//! when the bucket is in debt the chunk waits until the debt is paid at `rate` bytes/s.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A limit of `rate` bytes per second across everything that shares it. The rate can be
/// changed while uploads run ([`RateLimit::set_rate`]): the next chunk of every body follows it.
#[derive(Debug)]
pub struct RateLimit {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    available: f64,
    updated: Instant,
}

/// A tenth of a second of credit at most: short bursts, a smooth rate.
fn burst_of(rate: f64) -> f64 {
    (rate / 10.0).max(1024.0)
}

impl RateLimit {
    /// A rate that never makes anything wait: a shared limit that is off for now, and can be
    /// turned on while uploads run.
    pub const UNLIMITED: u64 = u64::MAX;

    /// A limit of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        Self {
            state: Mutex::new(Bucket {
                rate,
                burst: burst_of(rate),
                available: 0.0,
                updated: Instant::now(),
            }),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.bucket().rate as u64
    }

    /// Changes the rate (at least 1 byte/s) for everything sharing this limit, from now on.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        let mut bucket = self.bucket();
        bucket.rate = bytes_per_sec.max(1) as f64;
        bucket.burst = burst_of(bucket.rate);
        bucket.available = bucket.available.min(bucket.burst);
    }

    /// Body chunk size that keeps the rate smooth: about 1/8 s worth, 1 KiB to 256 KiB.
    pub(crate) fn chunk_size(&self) -> usize {
        ((self.bucket().rate / 8.0) as usize).clamp(1024, 256 * 1024)
    }

    /// Reserves `bytes` at `now`; how long to wait before sending them.
    pub fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        let mut bucket = self.bucket();
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.updated = bucket.updated.max(now);
        bucket.available = (bucket.available + elapsed * bucket.rate).min(bucket.burst);
        bucket.available -= bytes as f64;
        if bucket.available >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.available / bucket.rate)
        }
    }

    /// Waits until `bytes` may be sent.
    pub(crate) async fn take(&self, bytes: u64) {
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_is_paid_at_the_rate() {
        let limit = RateLimit::new(1000);
        let t = Instant::now();
        let first = limit.reserve(500, t);
        assert!(
            (first.as_secs_f64() - 0.5).abs() < 0.01,
            "500 bytes at 1000 B/s from an empty bucket: {first:?}"
        );
        let second = limit.reserve(500, t);
        assert!(
            (second.as_secs_f64() - 1.0).abs() < 0.01,
            "debts add up: {second:?}"
        );
        let later = limit.reserve(0, t + Duration::from_secs(10));
        assert_eq!(later, Duration::ZERO, "paid off, and credit is capped");
        let after_idle = limit.reserve(5000, t + Duration::from_secs(10));
        assert!(
            after_idle.as_secs_f64() > 3.9,
            "idle time does not buy a big burst: {after_idle:?}"
        );
    }

    #[test]
    fn a_new_rate_applies_to_what_is_sent_next() {
        let limit = RateLimit::new(1000);
        let t = Instant::now();
        limit.set_rate(10_000);
        assert_eq!(limit.rate(), 10_000);
        let wait = limit.reserve(5000, t);
        assert!(
            (wait.as_secs_f64() - 0.5).abs() < 0.01,
            "5000 bytes at the new 10000 B/s: {wait:?}"
        );
        limit.set_rate(RateLimit::UNLIMITED);
        assert_eq!(
            limit.reserve(1 << 30, t + Duration::from_secs(1)),
            Duration::ZERO
        );
    }
}
