//! Carries the transfer list to the UI and the tray: a few times a second, whatever changed
//! since the last tick goes out as one `TransfersChanged` event (rows that did not change are
//! not sent, so ten thousand waiting files cost nothing per tick), the tray shows overall
//! progress, and a batch that ends (or a failure) raises a notification. A change of a watched
//! folder's state goes out as `WatchStatusChanged`.

use std::time::Duration;

use tauri::{AppHandle, Manager, Runtime};
use tauri_specta::Event as _;

use crate::app::AppState;
use crate::dto::{Totals, TransfersChanged, WatchStatusChanged};
use crate::platform;

/// Time between two updates of the UI.
const TICK: Duration = Duration::from_millis(250);
/// The tray is updated every this many ticks.
const TRAY_EVERY: u32 = 4;

pub fn spawn<R: Runtime>(app: AppHandle<R>) {
    tauri::async_runtime::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let (mut list, mut since) = (0u64, 0u64);
        let mut watches_seen = 0u64;
        let mut batch = Batch::default();
        for n in 0u32.. {
            tick.tick().await;
            let state = app.state::<AppState>();
            let watches = state.watch_version();
            if watches != watches_seen {
                watches_seen = watches;
                if let Err(e) = WatchStatusChanged(state.watch_statuses()).emit(&app) {
                    tracing::debug!(error = %e, "the UI is not listening");
                }
            }
            let Some((generation, transfers)) = state.transfers_with_generation() else {
                continue;
            };
            if generation != list {
                (list, since) = (generation, 0); // a new sign-in: a new list
            }
            let changes = transfers.changes_since(since);
            let moved = changes.full
                || changes.version != since
                || !changes.rows.is_empty()
                || !changes.removed.is_empty();
            let event = TransfersChanged::new(since, changes);
            since = event.version;
            if moved && let Err(e) = event.emit(&app) {
                tracing::debug!(error = %e, "the UI is not listening");
            }
            if n % TRAY_EVERY == 0 {
                platform::show_progress(&app, &event.totals);
            }
            if let Some((title, body)) = batch.update(&event.totals)
                && state.settings().notifications
            {
                platform::notify(&app, &title, &body);
            }
        }
    });
}

/// What happened since the list last became busy, to notify once per batch.
#[derive(Debug, Default)]
struct Batch {
    busy: bool,
    verified_before: u32,
    failed_before: u32,
    failure_told: bool,
}

impl Batch {
    /// A notification to show for these totals, if any: the first failure of a batch, and
    /// a summary when the batch ends.
    fn update(&mut self, t: &Totals) -> Option<(String, String)> {
        let busy = t.running + t.queued > 0;
        if busy && !self.busy {
            *self = Self {
                busy,
                verified_before: t.verified,
                failed_before: t.failed,
                failure_told: false,
            };
            return None;
        }
        let failed = t.failed.saturating_sub(self.failed_before);
        if busy {
            if failed > 0 && !self.failure_told {
                self.failure_told = true;
                return Some((
                    "An upload failed".to_owned(),
                    "Open Valet Upload to see what happened and retry.".to_owned(),
                ));
            }
            return None;
        }
        if !self.busy {
            return None;
        }
        self.busy = false;
        let verified = t.verified.saturating_sub(self.verified_before);
        let files = |n: u32| format!("{n} file{}", if n == 1 { "" } else { "s" });
        match (verified, failed) {
            (0, 0) => None,
            (v, 0) => Some((
                "Uploads verified".to_owned(),
                format!("{} uploaded and verified.", files(v)),
            )),
            (v, f) => Some((
                "Uploads finished with failures".to_owned(),
                format!(
                    "{} verified, {} failed. Open Valet Upload to retry.",
                    files(v),
                    files(f)
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(running: u32, queued: u32, verified: u32, failed: u32) -> Totals {
        Totals {
            running,
            queued,
            verified,
            failed,
            ..Totals::default()
        }
    }

    #[test]
    fn one_notification_per_batch_and_the_first_failure_at_once() {
        let mut batch = Batch::default();
        assert_eq!(batch.update(&totals(0, 0, 5, 0)), None, "idle at start");
        assert_eq!(batch.update(&totals(2, 3, 5, 0)), None, "a batch starts");
        assert_eq!(batch.update(&totals(2, 1, 7, 0)), None);
        let failure = batch.update(&totals(1, 1, 7, 1)).expect("first failure");
        assert!(failure.0.contains("failed"));
        assert_eq!(batch.update(&totals(1, 0, 7, 2)), None, "told once");
        let end = batch.update(&totals(0, 0, 9, 2)).expect("batch summary");
        assert_eq!(
            end.1,
            "4 files verified, 2 files failed. Open Valet Upload to retry."
        );
        assert_eq!(batch.update(&totals(0, 0, 9, 2)), None, "said once");
        assert_eq!(batch.update(&totals(1, 0, 9, 2)), None);
        let end = batch.update(&totals(0, 0, 10, 2)).expect("next batch");
        assert_eq!(end.1, "1 file uploaded and verified.");
    }
}
