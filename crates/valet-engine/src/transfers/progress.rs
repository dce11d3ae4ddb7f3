//! Speed and time left of one transfer, from the byte counts it reports over time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the speed looks: long enough to smooth out parts finishing in bursts, short
/// enough to follow a network that slows down.
const WINDOW: Duration = Duration::from_secs(5);
/// Samples closer together than this are merged (a part sends many small chunks).
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// Bytes done over time, for a speed over the last [`WINDOW`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Meter {
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    /// Records that `bytes_done` bytes were done at `now` (a count that only grows while the
    /// transfer runs; a smaller one, after a retry took bytes back, starts a new window).
    pub(crate) fn record(&mut self, now: Instant, bytes_done: u64) {
        if let Some(&(_, last)) = self.samples.back()
            && bytes_done < last
        {
            self.samples.clear();
        }
        match self.samples.back_mut() {
            Some((at, bytes)) if now.saturating_duration_since(*at) < SAMPLE_EVERY => {
                *bytes = bytes_done;
            }
            _ => self.samples.push_back((now, bytes_done)),
        }
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|&(at, _)| now.saturating_duration_since(at) > WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over the window up to `now`; 0 before there are two samples. A
    /// transfer that stopped moving slows down to 0 as `now` moves on.
    pub(crate) fn bytes_per_sec(&self, now: Instant) -> u64 {
        let (Some(&(first_at, first)), Some(&(_, last))) =
            (self.samples.front(), self.samples.back())
        else {
            return 0;
        };
        let elapsed = now.saturating_duration_since(first_at).as_secs_f64();
        if elapsed < 0.5 || last <= first {
            return 0;
        }
        ((last - first) as f64 / elapsed) as u64
    }

    /// Forgets the history (the transfer paused or stopped).
    pub(crate) fn reset(&mut self) {
        self.samples.clear();
    }
}

/// Seconds left for `remaining` bytes at `bytes_per_sec`; `None` when there is no speed yet.
pub(crate) fn eta_secs(remaining: u64, bytes_per_sec: u64) -> Option<u64> {
    (bytes_per_sec > 0).then(|| remaining.div_ceil(bytes_per_sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_is_bytes_over_the_window() {
        let t0 = Instant::now();
        let mut meter = Meter::default();
        assert_eq!(meter.bytes_per_sec(t0), 0, "no samples, no speed");
        meter.record(t0, 0);
        for s in 1..=4 {
            meter.record(t0 + Duration::from_secs(s), s * 10_000_000);
        }
        assert_eq!(meter.bytes_per_sec(t0 + Duration::from_secs(4)), 10_000_000);
    }

    #[test]
    fn old_samples_leave_the_window_so_a_slower_link_shows() {
        let t0 = Instant::now();
        let mut meter = Meter::default();
        meter.record(t0, 0);
        meter.record(t0 + Duration::from_secs(1), 100_000_000); // fast at first
        for s in 2..=12 {
            let bytes = 100_000_000 + (s - 1) * 1_000_000; // then 1 MB/s
            meter.record(t0 + Duration::from_secs(s), bytes);
        }
        let speed = meter.bytes_per_sec(t0 + Duration::from_secs(12));
        assert!((900_000..=1_300_000).contains(&speed), "{speed}");
    }

    #[test]
    fn a_stalled_transfer_slows_to_zero() {
        let t0 = Instant::now();
        let mut meter = Meter::default();
        meter.record(t0, 0);
        meter.record(t0 + Duration::from_secs(1), 1_000_000);
        let stalled = meter.bytes_per_sec(t0 + Duration::from_secs(100));
        assert!(stalled < 11_000, "{stalled}");
    }

    #[test]
    fn bytes_taken_back_by_a_retry_start_a_new_window() {
        let t0 = Instant::now();
        let mut meter = Meter::default();
        meter.record(t0, 50);
        meter.record(t0 + Duration::from_secs(1), 10);
        assert_eq!(meter.bytes_per_sec(t0 + Duration::from_secs(1)), 0);
    }

    #[test]
    fn eta_rounds_up_and_needs_a_speed() {
        assert_eq!(eta_secs(10, 3), Some(4));
        assert_eq!(eta_secs(0, 3), Some(0));
        assert_eq!(eta_secs(10, 0), None);
    }
}
