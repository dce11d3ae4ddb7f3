//! Aborts uploads nobody finishes: open and idle (no key issued) for longer than
//! `uploads.abandon_after`. Without this, their parts would stay on the store, and be paid
//! for, forever. (A bucket lifecycle rule "abort incomplete multipart uploads" is a good second
//! line of defence for what a stopped service misses.)

use time::OffsetDateTime;
use tokio::sync::watch;
use valet_protocol::UploadState;

use crate::Error;
use crate::api::AppState;
use crate::audit::{self, Entry, Event};
use crate::db::uploads;

/// One pass: aborts every abandoned upload; returns how many were aborted. A store failure
/// for one upload is logged and the upload is tried again next pass.
pub async fn sweep_once(state: &AppState, now: OffsetDateTime) -> Result<usize, Error> {
    let idle_since = now - state.config().uploads.abandon_after;
    let mut aborted = 0;
    for row in uploads::idle_open(state.db(), idle_since).await? {
        // A completion in progress is activity too.
        let Some(_claim) = state.claim_completion(&row.id) else {
            continue;
        };
        let Some(configured) = state.stores().named(row.store.as_deref()) else {
            tracing::warn!(upload = %row.id, store = ?row.store, "abandoned upload on a store no longer configured");
            continue;
        };
        if let Err(e) = configured
            .store
            .abort(&row.object_key, &row.store_upload_id)
            .await
        {
            tracing::warn!(upload = %row.id, error = %e, "could not abort abandoned upload");
            continue;
        }
        if uploads::transition(
            state.db(),
            &row.id,
            UploadState::Open,
            UploadState::Aborted,
            now,
        )
        .await?
        {
            let mut entry = Entry::new(Event::UploadAbandoned, now);
            entry.user = Some(&row.user);
            entry.upload_id = Some(&row.id);
            entry.detail = Some(serde_json::json!({
                "abandon_after_secs": state.config().uploads.abandon_after.as_secs(),
            }));
            audit::record_or_warn(state.db(), &entry).await;
            aborted += 1;
        }
    }
    Ok(aborted)
}

/// Runs [`sweep_once`] every `uploads.sweep_every` until `stop` turns true.
pub fn spawn(state: AppState, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(state.config().uploads.sweep_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.changed() => return,
            }
            match sweep_once(&state, OffsetDateTime::now_utc()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(aborted = n, "aborted abandoned uploads"),
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
        }
    })
}
