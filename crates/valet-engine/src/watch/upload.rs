//! The plain uploader for a folder watch: [`Engine::put`], a bounded number of files at once.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::ReadyFile;
use crate::events::Events;
use crate::upload::{Engine, PutOptions};

/// Uploads the files the watch hands out with `engine`, `files_at_once` at a time (at least 1),
/// each with `base` options and its own store folder, and reports each result back to the
/// watch. Returns when the watch stops (the channel closes) and the uploads under way are done;
/// aborting the task cancels them (the upload journal resumes them at the next put).
///
/// Memory: each file's part buffers are bounded as for `valet put` ([`PutOptions::parallel`]),
/// so with `files_at_once` files the bound is that many times one file's.
pub async fn upload_ready(
    engine: Arc<Engine>,
    mut ready: mpsc::Receiver<ReadyFile>,
    base: PutOptions,
    files_at_once: usize,
    events: Events,
) {
    let slots = Arc::new(Semaphore::new(files_at_once.max(1)));
    let mut running = JoinSet::new();
    loop {
        // A slot first, then a file: files wait in the watch's queue (as paths), not here.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(file) = ready.recv().await else {
            break;
        };
        while running.try_join_next().is_some() {}
        let (engine, events) = (engine.clone(), events.clone());
        let options = file.put_options(&base);
        running.spawn(async move {
            match engine.put(&file.path, &options, &events).await {
                Ok(report) => file.verified(&report),
                Err(error) => file.failed(&error),
            }
            drop(slot);
        });
    }
    while running.join_next().await.is_some() {}
}
