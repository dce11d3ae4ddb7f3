//! The transfer list of a shell such as the desktop app: files added by a person (or a watched
//! folder), a few uploading at once, each one paused, resumed, cancelled or retried on request,
//! and a view of what changed that a UI can poll a few times a second however many files there
//! are.
//!
//! Pausing stops an upload where it is, exactly as a crash would, and the engine is built to
//! survive those: the journal keeps every stored part, and resuming runs [`Engine::put`] again,
//! which finds the unfinished upload and sends only the parts the store does not hold.

mod advice;
mod progress;
mod table;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use time::OffsetDateTime;

pub use advice::advice;
pub use table::{Changes, Problem, Summary, Transfer, TransferId, TransferState};

use crate::error::{Error, Result};
use crate::events::Events;
use crate::journal::EntryState;
use crate::source::FileStamp;
use crate::upload::{Engine, PutOptions, UploadReport};
use crate::watch::ReadyFile;
use table::{Table, Taken};

/// How the list runs its uploads.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// How each file is uploaded (parts at once, part size, bandwidth limit, retries). The
    /// `prefix` here is ignored: each file keeps the folder it was added with.
    pub put: PutOptions,
    /// Files uploading at the same time (each with `put.parallel` parts in flight).
    pub files_at_once: usize,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            put: PutOptions::default(),
            files_at_once: 2,
        }
    }
}

/// What [`Transfers::add`] did with the paths it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Added {
    /// New rows, one per file found (folders are walked recursively).
    pub added: Vec<TransferId>,
    /// Files already waiting or uploading in the list (not added twice).
    pub already_listed: usize,
    /// Paths that could not be read; each is also a failed row saying why.
    pub unreadable: usize,
}

/// The transfer list. Cheap to clone; every clone is the same list.
#[derive(Debug, Clone)]
pub struct Transfers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Arc<Engine>,
    runtime: tokio::runtime::Handle,
    table: Mutex<Table>,
    options: Mutex<TransferOptions>,
}

impl Transfers {
    /// An empty list over `engine`. Must be called inside a Tokio runtime, which runs the
    /// uploads; the other methods may then be called from any thread.
    pub fn new(engine: Engine, options: TransferOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine: Arc::new(engine),
                runtime: tokio::runtime::Handle::current(),
                table: Mutex::new(Table::default()),
                options: Mutex::new(options),
            }),
        }
    }

    /// The engine the list uploads with.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Replaces the options for uploads started from now on (a running upload keeps the
    /// options it started with until it is paused and resumed).
    pub fn set_options(&self, options: TransferOptions) {
        *self.inner.options.lock().unwrap_or_else(|p| p.into_inner()) = options;
        self.inner.start_ready();
    }

    /// Adds files, and every file under the folders given (recursively; symbolic links to
    /// folders are not followed), to be uploaded into `prefix` (`--to`). A file already
    /// waiting or uploading is not added again.
    pub async fn add(&self, paths: Vec<PathBuf>, prefix: Option<String>) -> Result<Added> {
        let found = tokio::task::spawn_blocking(move || expand(paths))
            .await
            .map_err(|e| Error::Invalid(format!("listing the files stopped: {e}")))?;
        let mut added = Added::default();
        {
            let mut table = self.inner.lock();
            for file in found {
                match file {
                    Found::File { path, size } => {
                        if table.is_listed(&path) {
                            added.already_listed += 1;
                        } else {
                            added.added.push(table.push(path, size, prefix.clone()));
                        }
                    }
                    Found::Unreadable { path, error } => {
                        added.unreadable += 1;
                        let id = table.push(path.clone(), 0, prefix.clone());
                        let error = Error::SourceUnreadable {
                            path,
                            source: error,
                        };
                        table.fail(id, Problem::of(&error));
                    }
                }
            }
        }
        self.inner.start_ready();
        Ok(added)
    }

    /// Takes a complete file from a folder watch ([`crate::watch::FolderWatch`]) into the list,
    /// where it waits, uploads, pauses and fails like any other file; how it ends is reported
    /// to the watch ([`ReadyFile::verified`], [`ReadyFile::failed`], or [`ReadyFile::skip`]
    /// when the user cancels it), which records it as sent only once verified. A file already
    /// in the list gets no second row: its row carries the watch's handle (or, when it is
    /// uploading to another folder, the watch is told to try again later). A file whose
    /// last row was verified without the watch knowing is looked up in the journal, and when
    /// this very version (path, size, mtime, inode, folder) is verified there, reported as
    /// sent without a second upload. The row's id, or `None` when no row took the file.
    pub async fn add_ready(&self, file: ReadyFile) -> Option<TransferId> {
        let taken = self.inner.lock().take_ready(file);
        let id = match taken {
            Taken::Listed(id) => Some(id),
            Taken::Declined => None,
            Taken::Check(file) => match self.verified_in_journal(&file).await {
                Some((object_key, sha256, size)) => {
                    file.verified_as(object_key, sha256, size);
                    None
                }
                None => {
                    let mut table = self.inner.lock();
                    if table.is_listed(&file.path) {
                        match table.take_ready(file) {
                            Taken::Listed(id) => Some(id),
                            _ => None,
                        }
                    } else {
                        Some(table.push_ready(file))
                    }
                }
            },
        };
        self.inner.start_ready();
        id
    }

    /// The object key, SHA-256 and size of a verified upload in the journal of `file` as it
    /// is now, to the same store folder.
    async fn verified_in_journal(&self, file: &ReadyFile) -> Option<(String, String, u64)> {
        let journal = self.inner.engine.journal().clone();
        let (path, prefix) = (file.path.clone(), file.prefix.clone());
        let found = tokio::task::spawn_blocking(move || {
            let stamp = FileStamp::read(&path).ok()?;
            let entries = journal.entries().ok()?;
            let entry = entries.into_iter().rev().find(|e| {
                e.state == EntryState::Verified
                    && e.path == path
                    && e.prefix == prefix
                    && e.stamp == stamp
            })?;
            Some((entry.object_key?, entry.sha256?, entry.stamp.size))
        });
        found.await.ok().flatten()
    }

    /// Lists the unfinished uploads of the journal (an earlier run was interrupted) so that
    /// they continue; what each had stored is not sent again.
    pub async fn restore(&self) -> Result<usize> {
        let journal = self.inner.engine.journal().clone();
        let unfinished = tokio::task::spawn_blocking(move || journal.unfinished())
            .await
            .map_err(|e| Error::Invalid(format!("reading the journal stopped: {e}")))??;
        let count = {
            let mut table = self.inner.lock();
            let mut count = 0;
            for entry in unfinished {
                if !table.is_listed(&entry.path) {
                    table.push(entry.path, entry.stamp.size, entry.prefix);
                    count += 1;
                }
            }
            count
        };
        self.inner.start_ready();
        Ok(count)
    }

    /// Pauses a waiting or uploading file: its upload stops, and what the store holds stays
    /// for [`Transfers::resume`]. A file being verified is not paused (it is nearly done).
    pub fn pause(&self, id: TransferId) -> Result<()> {
        self.inner.lock().pause(id)?;
        self.inner.start_ready();
        Ok(())
    }

    /// Resumes a paused file, ahead of the files still waiting.
    pub fn resume(&self, id: TransferId) -> Result<()> {
        self.inner
            .lock()
            .requeue(id, &[TransferState::Paused], true)?;
        self.inner.start_ready();
        Ok(())
    }

    /// Starts a failed or cancelled file again (at the end of the queue). After a network or
    /// service failure, the parts already stored are not sent again.
    pub fn retry(&self, id: TransferId) -> Result<()> {
        self.inner.lock().requeue(
            id,
            &[TransferState::Failed, TransferState::Cancelled],
            false,
        )?;
        self.inner.start_ready();
        Ok(())
    }

    /// Cancels a file that is neither finished nor being verified: its upload stops, the
    /// journal marks it failed, and the service is asked to abort it so the store drops the
    /// parts.
    pub fn cancel(&self, id: TransferId) -> Result<()> {
        let cancelled = self.inner.lock().cancel(id)?;
        self.inner.start_ready();
        let inner = self.inner.clone();
        self.inner
            .runtime
            .spawn(async move { inner.forget_upload(cancelled).await });
        Ok(())
    }

    /// Pauses every waiting or uploading file.
    pub fn pause_all(&self) {
        {
            let mut table = self.inner.lock();
            let ids = table.ids_in(&[
                TransferState::Queued,
                TransferState::Hashing,
                TransferState::Uploading,
            ]);
            for id in ids {
                let _verifying = table.pause(id);
            }
        }
        self.inner.start_ready();
    }

    /// Resumes every paused file, in the order they were added.
    pub fn resume_all(&self) {
        {
            let mut table = self.inner.lock();
            for id in table.ids_in(&[TransferState::Paused]) {
                let _gone = table.requeue(id, &[TransferState::Paused], false);
            }
        }
        self.inner.start_ready();
    }

    /// Cancels every file that is neither finished nor being verified. All are taken out of
    /// the queue at once, so none starts while the others are being cancelled.
    pub fn cancel_all(&self) {
        let cancelled: Vec<table::Cancelled> = {
            let mut table = self.inner.lock();
            let ids = table.ids_in(&[
                TransferState::Queued,
                TransferState::Hashing,
                TransferState::Uploading,
                TransferState::Paused,
            ]);
            ids.into_iter()
                .filter_map(|id| table.cancel(id).ok())
                .collect()
        };
        let inner = self.inner.clone();
        self.inner.runtime.spawn(async move {
            for one in cancelled {
                inner.forget_upload(one).await;
            }
        });
    }

    /// Removes verified and cancelled rows from the list (failed ones stay until retried or
    /// cancelled, so no failure goes unseen).
    pub fn clear_finished(&self) -> usize {
        self.inner.lock().clear_finished()
    }

    /// The rows changed since `version` (0: every row), rows removed since then, and the
    /// totals. A UI polls this a few times a second and redraws only what changed, which keeps
    /// it responsive with many thousands of rows.
    pub fn changes_since(&self, version: u64) -> Changes {
        self.inner.lock().changes_since(version, Instant::now())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn options(&self) -> TransferOptions {
        self.options
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts waiting files while there is room.
    fn start_ready(self: &Arc<Self>) {
        let options = self.options();
        let mut table = self.lock();
        while let Some(start) = table.next_start(options.files_at_once) {
            let put = PutOptions {
                prefix: start.prefix,
                ..options.put.clone()
            };
            let inner = self.clone();
            let task = self.runtime.spawn(async move {
                let result = inner.run(start.id, start.run, &start.path, &put).await;
                inner.lock().finish(start.id, start.run, result);
                inner.start_ready();
            });
            table.started(start.id, task.abort_handle());
        }
    }

    /// One upload, its events applied to its row as they come.
    async fn run(
        &self,
        id: TransferId,
        run: u64,
        path: &Path,
        put: &PutOptions,
    ) -> Result<UploadReport> {
        let (events, mut rx) = Events::channel();
        let upload = async move {
            let result = self.engine.put(path, put, &events).await;
            drop(events);
            result
        };
        let progress = async {
            while let Some(event) = rx.recv().await {
                self.lock().apply(id, run, &event, Instant::now());
            }
        };
        let (result, ()) = tokio::join!(upload, progress);
        result
    }

    /// After a cancel: the journal marks the upload failed and the service aborts it, so it
    /// is never resumed and the store drops its parts. Best effort: the service's sweeper
    /// aborts what it cannot reach now.
    async fn forget_upload(&self, cancelled: table::Cancelled) {
        let journal = self.engine.journal().clone();
        let entries = tokio::task::spawn_blocking(move || -> Result<_> {
            let entries = match cancelled.journal_id {
                Some(id) => vec![journal.entry(id)?],
                None => journal
                    .unfinished_of(&cancelled.path)?
                    .into_iter()
                    .filter(|e| e.prefix == cancelled.prefix)
                    .collect(),
            };
            let now = OffsetDateTime::now_utc();
            for entry in &entries {
                if entry.state == EntryState::Uploading {
                    journal.mark_failed(entry.id, "cancelled", "cancelled by the user", now)?;
                }
            }
            Ok(entries)
        })
        .await;
        let entries = match entries {
            Ok(Ok(entries)) => entries,
            Ok(Err(e)) => return tracing::warn!(error = %e, "could not journal a cancel"),
            Err(e) => return tracing::warn!(error = %e, "journaling a cancel stopped"),
        };
        let server = self.engine.session().server().as_str();
        for entry in entries {
            let same_server = entry.server.as_deref() == Some(server);
            if let (Some(upload_id), true, EntryState::Uploading) =
                (&entry.upload_id, same_server, entry.state)
                && let Err(e) = self.engine.session().abort_upload(upload_id).await
            {
                tracing::info!(upload = entry.id, error = %e, "could not abort a cancelled upload");
            }
        }
    }
}

/// A path found by [`expand`].
enum Found {
    File {
        path: PathBuf,
        size: u64,
    },
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The files named by `paths`, folders walked recursively, in a stable order.
fn expand(paths: Vec<PathBuf>) -> Vec<Found> {
    let mut found = Vec::new();
    for path in paths {
        for entry in walkdir::WalkDir::new(&path)
            .follow_links(false)
            .follow_root_links(true)
            .sort_by_file_name()
        {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let path = e.path().map_or_else(|| path.clone(), Path::to_path_buf);
                    found.push(Found::Unreadable {
                        path,
                        error: e.into(),
                    });
                    continue;
                }
            };
            if entry.file_type().is_dir() {
                continue;
            }
            // A link to a file is uploaded (as the file it points to); a link to a folder is
            // not walked, so a link loop cannot make the list endless.
            match std::fs::metadata(entry.path()) {
                Ok(meta) if meta.is_file() => found.push(Found::File {
                    path: entry.path().to_path_buf(),
                    size: meta.len(),
                }),
                Ok(_) => {}
                Err(error) => found.push(Found::Unreadable {
                    path: entry.path().to_path_buf(),
                    error,
                }),
            }
        }
    }
    found
}

#[cfg(test)]
mod tests;
