//! When a file is complete: the rule, as a small state machine with time passed in.
//!
//! A file is ready when
//! 1. its size and modification time (and inode) have not changed for the settle time, and
//! 2. where the OS reports "closed after writing" (inotify's `IN_CLOSE_WRITE` on Linux), a
//!    writer that was seen creating or writing it has closed it since. A writer that appends
//!    slowly and keeps the file open is waited for however long it pauses; a file whose close
//!    was never seen (a hard link, events lost in an overflow) counts as closed once it has been
//!    stable for [`CLOSE_WAIT_LIMIT`].
//!
//! The caller stats the file and says what it saw; this module only decides.

use std::time::{Duration, Instant};

use crate::source::FileStamp;

/// How long a file that was seen being written, but never seen closed, must stay unchanged
/// before it counts as complete anyway.
pub(crate) const CLOSE_WAIT_LIMIT: Duration = Duration::from_secs(300);

/// What a file-system event said about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Touch {
    /// It was created or written to (a writer has it open).
    Written,
    /// A writer closed it after writing.
    Closed,
    /// Something else: found by a scan, renamed into place, metadata changed.
    Seen,
}

/// One file waiting to be complete.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    stamp: Option<FileStamp>,
    stable_since: Instant,
    awaiting_close: bool,
    /// The last "waiting" reason reported for this wait (each reason is reported once).
    pub(crate) reported: Option<&'static str>,
}

/// What [`Pending::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not time to look yet.
    NotYet,
    /// It changed since last seen; the settle time starts again.
    Changing,
    /// Stable, but a writer still has it open.
    Open,
    /// Complete.
    Ready(FileStamp),
}

impl Pending {
    /// A file first noticed at `now`, looking like `stamp` (when it could be read).
    pub(crate) fn new(now: Instant, stamp: Option<FileStamp>, touch: Touch) -> Self {
        let mut pending = Self {
            stamp,
            stable_since: now,
            awaiting_close: false,
            reported: None,
        };
        pending.apply(touch);
        pending
    }

    /// Another event for the file at `now`. Any event starts the settle time again.
    pub(crate) fn touch(&mut self, now: Instant, stamp: Option<FileStamp>, touch: Touch) {
        self.stamp = stamp;
        self.stable_since = now;
        self.apply(touch);
    }

    fn apply(&mut self, touch: Touch) {
        match touch {
            Touch::Written => self.awaiting_close = true,
            Touch::Closed => self.awaiting_close = false,
            Touch::Seen => {}
        }
    }

    /// Forget a writer that was seen: after events were lost, a close may never come.
    pub(crate) fn forget_writer(&mut self) {
        self.awaiting_close = false;
    }

    /// Whether the settle time has passed since the last change (time to stat the file).
    pub(crate) fn is_due(&self, now: Instant, settle: Duration) -> bool {
        now.saturating_duration_since(self.stable_since) >= settle
    }

    /// Decides, given the file's `current` stamp at `now`.
    pub(crate) fn check(&mut self, now: Instant, current: FileStamp, settle: Duration) -> Verdict {
        if self.stamp != Some(current) {
            self.stamp = Some(current);
            self.stable_since = now;
            return Verdict::Changing;
        }
        let stable_for = now.saturating_duration_since(self.stable_since);
        if stable_for < settle {
            return Verdict::NotYet;
        }
        if self.awaiting_close && stable_for < CLOSE_WAIT_LIMIT.max(settle) {
            return Verdict::Open;
        }
        Verdict::Ready(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_secs(2);

    fn stamp(size: u64, mtime_ns: i64) -> FileStamp {
        FileStamp {
            size,
            mtime_ns,
            inode: Some(7),
        }
    }

    #[test]
    fn a_stable_file_is_ready_after_the_settle_time() {
        let t0 = Instant::now();
        let mut p = Pending::new(t0, Some(stamp(10, 1)), Touch::Seen);
        assert!(!p.is_due(t0 + Duration::from_secs(1), SETTLE));
        assert_eq!(
            p.check(t0 + Duration::from_secs(1), stamp(10, 1), SETTLE),
            Verdict::NotYet
        );
        assert!(p.is_due(t0 + SETTLE, SETTLE));
        assert_eq!(
            p.check(t0 + SETTLE, stamp(10, 1), SETTLE),
            Verdict::Ready(stamp(10, 1))
        );
    }

    #[test]
    fn a_growing_file_restarts_the_settle_time() {
        let t0 = Instant::now();
        let mut p = Pending::new(t0, Some(stamp(10, 1)), Touch::Seen);
        let t1 = t0 + SETTLE;
        assert_eq!(p.check(t1, stamp(20, 2), SETTLE), Verdict::Changing);
        assert!(!p.is_due(t1 + Duration::from_secs(1), SETTLE));
        assert_eq!(
            p.check(t1 + Duration::from_secs(1), stamp(20, 2), SETTLE),
            Verdict::NotYet
        );
        assert_eq!(
            p.check(t1 + SETTLE, stamp(20, 2), SETTLE),
            Verdict::Ready(stamp(20, 2))
        );
        // Same size, other modification time: rewritten in place.
        let mut p = Pending::new(t0, Some(stamp(10, 1)), Touch::Seen);
        assert_eq!(
            p.check(t0 + SETTLE, stamp(10, 5), SETTLE),
            Verdict::Changing
        );
    }

    #[test]
    fn an_unreadable_first_look_is_a_change() {
        let t0 = Instant::now();
        let mut p = Pending::new(t0, None, Touch::Seen);
        assert_eq!(p.check(t0 + SETTLE, stamp(1, 1), SETTLE), Verdict::Changing);
    }

    #[test]
    fn a_file_open_for_writing_waits_for_its_close() {
        let t0 = Instant::now();
        let mut p = Pending::new(t0, Some(stamp(10, 1)), Touch::Written);
        // A writer that pauses longer than the settle time is still waited for.
        let t1 = t0 + SETTLE * 5;
        assert_eq!(p.check(t1, stamp(10, 1), SETTLE), Verdict::Open);
        p.touch(t1, Some(stamp(10, 1)), Touch::Closed);
        assert_eq!(
            p.check(t1 + SETTLE / 2, stamp(10, 1), SETTLE),
            Verdict::NotYet,
            "the close starts the settle time again"
        );
        assert_eq!(
            p.check(t1 + SETTLE, stamp(10, 1), SETTLE),
            Verdict::Ready(stamp(10, 1))
        );
        // Written again after the close: waits for the next close.
        p.touch(t1, Some(stamp(11, 2)), Touch::Written);
        assert_eq!(p.check(t1 + SETTLE, stamp(11, 2), SETTLE), Verdict::Open);
    }

    #[test]
    fn a_close_never_seen_is_assumed_after_the_limit() {
        let t0 = Instant::now();
        let mut p = Pending::new(t0, Some(stamp(10, 1)), Touch::Written);
        let before = t0 + CLOSE_WAIT_LIMIT - Duration::from_secs(1);
        assert_eq!(p.check(before, stamp(10, 1), SETTLE), Verdict::Open);
        assert_eq!(
            p.check(t0 + CLOSE_WAIT_LIMIT, stamp(10, 1), SETTLE),
            Verdict::Ready(stamp(10, 1))
        );
        let mut p = Pending::new(t0, Some(stamp(10, 1)), Touch::Written);
        p.forget_writer();
        assert_eq!(
            p.check(t0 + SETTLE, stamp(10, 1), SETTLE),
            Verdict::Ready(stamp(10, 1)),
            "after lost events, stability alone decides"
        );
    }
}
