//! A bandwidth limit shared by every part in flight (`--bwlimit`): a token bucket over the
//! request bodies. Each body chunk reserves its bytes before it is handed to the connection;
//! when the bucket is in debt the chunk waits until the debt is paid at `rate` bytes/s.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A limit of `rate` bytes per second across everything that shares it.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    available: f64,
    updated: Instant,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        Self {
            rate,
            // A tenth of a second of credit at most: short bursts, a smooth rate.
            burst: (rate / 10.0).max(1024.0),
            state: Mutex::new(Bucket {
                available: 0.0,
                updated: Instant::now(),
            }),
        }
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Body chunk size that keeps the rate smooth: about 1/8 s worth, 1 KiB to 256 KiB.
    pub(crate) fn chunk_size(&self) -> usize {
        ((self.rate / 8.0) as usize).clamp(1024, 256 * 1024)
    }

    /// Reserves `bytes` at `now`; how long to wait before sending them.
    pub fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        let mut bucket = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.updated = bucket.updated.max(now);
        bucket.available = (bucket.available + elapsed * self.rate).min(self.burst);
        bucket.available -= bytes as f64;
        if bucket.available >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.available / self.rate)
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
}
