//! Folder watch: files dropped into a watched folder are uploaded by themselves, once, and only
//! when complete.
//!
//! ```text
//!  notify (debounced) ─┐
//!  start-up scan ──────┼─▶ names ─▶ settle ─▶ ready queue (paths) ─▶ already sent? ─▶ ReadyFile
//!  folder poll ────────┘   filter   (stable,                          (watch.sqlite:   (bounded
//!                                    closed)                           path, inode,     channel)
//!                                                                      content)            │
//!          after-upload action ◀── record in watch.sqlite ◀── verified / failed ◀── uploader
//! ```
//!
//! - **Complete**: size and modification time stable for the settle time, closed by its writer
//!   where the OS says so (inotify's `IN_CLOSE_WRITE` on Linux; a writer that keeps the file
//!   open while it pauses is waited for), openable, and not a partial or temporary name
//!   ([`NameFilter`], [`is_partial_name`]).
//! - **Once**: `watch.sqlite` ([`WATCH_LEDGER_FILE`]) remembers each version sent. A rename or
//!   move inside the watched folder (same inode, size and mtime) or a copy (same size and
//!   SHA-256) is not sent again; an edit is sent again, to the same object key. At start, the
//!   upload journal's verified uploads fill in what a crash kept from being recorded.
//! - **Bounded**: work is queued as paths, never contents; the uploader takes files through a
//!   bounded channel, so files created faster than they upload wait as paths.
//! - **Pluggable upload**: the watch does not upload. It hands out [`ReadyFile`]s; whoever
//!   uploads them (the CLI with [`upload_ready`], the desktop app through its transfer queue)
//!   reports each result on the file ([`ReadyFile::verified`], [`ReadyFile::failed`], or
//!   [`ReadyFile::verified_as`] and [`ReadyFile::failed_as`] from a transfer row). Only a
//!   verified file is recorded and gets its after-upload action; a failure is retried with
//!   backoff when it may succeed later (network, outage), or when the file changes.
//! - **Folders come and go**: a watched folder that vanishes, is renamed or cannot be read is
//!   reported ([`WatchEvent::FolderMissing`]) and polled; when it is back it is watched and
//!   scanned again ([`WatchEvent::FolderBack`]).
//!
//! ```no_run
//! # async fn example() -> valet_engine::Result<()> {
//! use std::sync::Arc;
//! use valet_engine::watch::{self, FolderWatch, WatchOptions, WatchedFolder};
//! use valet_engine::{Engine, Events, Journal, OsKeyring, PutOptions, Session};
//!
//! let data_dir = valet_engine::default_data_dir()?;
//! let journal = Journal::open_in(&data_dir)?;
//! let engine = Arc::new(Engine::new(
//!     Session::saved(&data_dir, Arc::new(OsKeyring))?,
//!     journal.clone(),
//! ));
//! let mut options = WatchOptions::new(data_dir, vec![WatchedFolder::new("/home/me/Scans")]);
//! options.journal = Some(journal);
//! let (watch, ready, mut events) = FolderWatch::start(options)?;
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         println!("{event:?}");
//!     }
//! });
//! // Four files at once, each through `Engine::put`. A desktop app would instead take each
//! // `ReadyFile` from `ready` into its own queue and call `file.verified(&report)` or
//! // `file.failed(&error)` when done.
//! let uploads = tokio::spawn(watch::upload_ready(engine, ready, PutOptions::default(), 4, Events::none()));
//! tokio::signal::ctrl_c().await.ok();
//! watch.stop().await;
//! uploads.abort();
//! # Ok(()) }
//! ```

mod folders;
mod ledger;
mod names;
mod run;
mod settle;
mod upload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

pub use ledger::WATCH_LEDGER_FILE;
pub use names::{NameFilter, is_partial_name};
pub use upload::upload_ready;

use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::upload::{PutOptions, UploadReport};

/// Default settle time: how long a file must stay unchanged before it is uploaded.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(3);

/// One folder to watch, with everything under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFolder {
    /// The folder.
    pub path: PathBuf,
    /// Folder in the store under the account's prefix (`--to`); the file's own sub-folders
    /// follow it: `DIR/a/b.pdf` with `--to scans` becomes `scans/a/b.pdf`.
    pub prefix: Option<String>,
}

impl WatchedFolder {
    /// `path`, uploaded to the account's top folder.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            prefix: None,
        }
    }
}

/// What happens to a file once the service verified its upload (never before).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AfterUpload {
    /// Leave it where it is (default).
    #[default]
    Leave,
    /// Move it into this sub-folder of the watched folder, keeping its sub-folders
    /// (`DIR/a/b.pdf` → `DIR/SUBDIR/a/b.pdf`). The sub-folder is not watched.
    MoveTo(String),
    /// Delete it.
    Delete,
}

impl AfterUpload {
    /// Parses `leave`, `delete` or `move:SUBDIR` (one plain folder name, not a path).
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "leave" => Ok(Self::Leave),
            "delete" => Ok(Self::Delete),
            _ => match text.strip_prefix("move:") {
                Some(dir)
                    if !dir.is_empty()
                        && dir != "."
                        && dir != ".."
                        && !dir.contains(['/', '\\']) =>
                {
                    Ok(Self::MoveTo(dir.to_owned()))
                }
                _ => Err(Error::Invalid(format!(
                    "after-upload action {text:?}: expected leave, delete or move:SUBDIR \
                     (one folder name)"
                ))),
            },
        }
    }
}

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Where `watch.sqlite` lives (the engine's data directory).
    pub data_dir: PathBuf,
    /// The folders. Each must exist at start; later it may vanish and come back.
    pub folders: Vec<WatchedFolder>,
    /// How long a file must stay unchanged (size, mtime) before it is uploaded.
    pub settle: Duration,
    /// Include globs (none: every file not excluded); see [`NameFilter::new`].
    pub include: Vec<String>,
    /// Exclude globs.
    pub exclude: Vec<String>,
    /// Also upload dotfiles and files in dot-folders.
    pub hidden: bool,
    /// What to do with a file after its upload is verified.
    pub after_upload: AfterUpload,
    /// How often a missing folder is looked for, and a present one checked.
    pub folder_poll: Duration,
    /// Ready files waiting in the channel for the uploader (at least 1).
    pub ready_capacity: usize,
    /// The upload journal: at start, its verified uploads of watched files that the watch has
    /// not recorded (a crash between "verified" and the record) count as sent.
    pub journal: Option<Journal>,
}

impl WatchOptions {
    /// Defaults: [`DEFAULT_SETTLE`], no globs, no hidden files, leave files, poll every 2 s.
    pub fn new(data_dir: PathBuf, folders: Vec<WatchedFolder>) -> Self {
        Self {
            data_dir,
            folders,
            settle: DEFAULT_SETTLE,
            include: Vec::new(),
            exclude: Vec::new(),
            hidden: false,
            after_upload: AfterUpload::Leave,
            folder_poll: Duration::from_secs(2),
            ready_capacity: 8,
            journal: None,
        }
    }
}

/// What the watch reports. Paths are absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// A folder is watched; its scan found `files` candidates, of which `already_sent` were sent
    /// before (unchanged).
    Watching {
        /// The folder.
        root: PathBuf,
        /// Files found.
        files: u64,
        /// Of which already sent.
        already_sent: u64,
    },
    /// A new or changed file; it waits until complete.
    Seen {
        /// The file.
        path: PathBuf,
    },
    /// A file is not complete yet, or cannot be opened; reported when the reason changes.
    Waiting {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A complete file was handed to the uploader.
    Queued {
        /// The file.
        path: PathBuf,
    },
    /// The service verified the upload.
    Sent {
        /// The file.
        path: PathBuf,
        /// Where it is.
        object_key: String,
        /// Bytes.
        size: u64,
        /// Whole-file SHA-256, hex.
        sha256: String,
    },
    /// Not sent: the same file (renamed or moved) or the same content was sent already.
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The file that was sent (its path then).
        same_as: PathBuf,
        /// Where that one is.
        object_key: String,
    },
    /// The upload failed; `retry_in` says when it is tried again (`None`: when the file
    /// changes, or at the next start).
    Failed {
        /// The file.
        path: PathBuf,
        /// [`Error::code`], or `abandoned` when the uploader dropped the file.
        code: String,
        /// What happened.
        message: String,
        /// When it is tried again.
        retry_in: Option<Duration>,
    },
    /// After its upload, the file was moved.
    Moved {
        /// Where it was.
        path: PathBuf,
        /// Where it is now.
        to: PathBuf,
    },
    /// After its upload, the file was deleted.
    Deleted {
        /// The file.
        path: PathBuf,
    },
    /// The after-upload action was not done (the file changed since, or the move or delete
    /// failed); the file stays where it is.
    AfterUploadSkipped {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A watched folder is gone, renamed or unreadable; it is looked for every poll.
    FolderMissing {
        /// The folder.
        root: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A missing folder is back and watched again (a [`WatchEvent::Watching`] follows).
    FolderBack {
        /// The folder.
        root: PathBuf,
    },
    /// File-system events were lost (the OS queue overflowed, or the watcher failed); the
    /// folders are scanned again so nothing is missed.
    Rescan {
        /// Why.
        reason: String,
    },
}

/// A complete file for the uploader. Report how its upload ended with [`ReadyFile::verified`],
/// [`ReadyFile::failed`] or [`ReadyFile::skip`]; a file dropped without a word is tried again
/// later (as a failure that may succeed later).
#[derive(Debug)]
pub struct ReadyFile {
    /// The file (absolute).
    pub path: PathBuf,
    /// The watched folder it is in.
    pub root: PathBuf,
    /// The store folder to upload it to: the `--to` folder followed by the file's sub-folders.
    pub prefix: Option<String>,
    /// Bytes, when it was found complete.
    pub size: u64,
    outcomes: Option<mpsc::UnboundedSender<run::Outcome>>,
}

impl ReadyFile {
    /// `base` with this file's store folder.
    pub fn put_options(&self, base: &PutOptions) -> PutOptions {
        PutOptions {
            prefix: self.prefix.clone(),
            ..base.clone()
        }
    }

    /// The upload was verified: the file is recorded as sent and gets its after-upload action.
    pub fn verified(mut self, report: &UploadReport) {
        self.report(run::Reported::Verified {
            object_key: report.object_key.clone(),
            sha256: report.sha256.clone(),
            size: report.size,
        });
    }

    /// The upload failed: tried again with backoff when `error` may pass
    /// ([`Error::is_resumable`], a changed or unreadable file), otherwise when the file changes.
    pub fn failed(mut self, error: &Error) {
        self.report(run::Reported::Failed {
            code: error.code().to_owned(),
            message: error.to_string(),
            again: run::Again::of(error),
        });
    }

    /// [`ReadyFile::verified`] for an uploader that keeps the facts of the result rather than
    /// the report (a row of [`crate::transfers::Transfers`]): the object key, whole-file SHA-256
    /// (hex) and size the service verified.
    pub fn verified_as(mut self, object_key: String, sha256: String, size: u64) {
        self.report(run::Reported::Verified {
            object_key,
            sha256,
            size,
        });
    }

    /// [`ReadyFile::failed`] for an uploader that keeps the error's [`Error::code`] and message
    /// rather than the error; `may_pass` says whether trying again later may succeed (as
    /// [`Error::is_resumable`]).
    pub fn failed_as(mut self, code: &str, message: &str, may_pass: bool) {
        self.report(run::Reported::Failed {
            code: code.to_owned(),
            message: message.to_owned(),
            again: run::Again::from_code(code, may_pass),
        });
    }

    /// Do not send this version (the user cancelled it): it is looked at again only when the
    /// file changes or the watch starts again.
    pub fn skip(mut self) {
        self.report(run::Reported::Skipped);
    }

    fn report(&mut self, result: run::Reported) {
        if let Some(tx) = self.outcomes.take() {
            let _watch_stopped = tx.send(run::Outcome {
                path: std::mem::take(&mut self.path),
                result,
            });
        }
    }
}

/// A ready file tied to no watch, and a probe saying what its uploader reported (`verified
/// KEY`, `failed CODE`, `skipped`), for the transfer list's tests.
#[cfg(test)]
pub(crate) fn test_ready_file(
    path: &str,
    root: &str,
    prefix: Option<&str>,
    size: u64,
) -> (ReadyFile, impl FnMut() -> Option<String>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let file = ReadyFile {
        path: path.into(),
        root: root.into(),
        prefix: prefix.map(str::to_owned),
        size,
        outcomes: Some(tx),
    };
    let probe = move || {
        rx.try_recv()
            .ok()
            .map(|outcome: run::Outcome| match outcome.result {
                run::Reported::Verified { object_key, .. } => format!("verified {object_key}"),
                run::Reported::Failed { code, .. } => format!("failed {code}"),
                run::Reported::Skipped => "skipped".to_owned(),
            })
    };
    (file, probe)
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        self.report(run::Reported::Failed {
            code: "abandoned".into(),
            message: "the uploader dropped the file without a result".into(),
            again: run::Again::Backoff,
        });
    }
}

/// A running folder watch. Stopping it (or dropping it) ends the watch; the ready channel then
/// closes.
#[derive(Debug)]
pub struct FolderWatch {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FolderWatch {
    /// Starts watching (on the current Tokio runtime): scans every folder, then follows
    /// file-system events. Returns the watch, the channel of complete files, and the channel of
    /// events.
    ///
    /// Errors: a folder that does not exist or is not a directory, a bad glob or after-upload
    /// folder ([`Error::Invalid`], [`Error::Settings`]), an unopenable `watch.sqlite`
    /// ([`Error::Journal`]), or no file-system watcher.
    pub fn start(
        options: WatchOptions,
    ) -> Result<(
        Self,
        mpsc::Receiver<ReadyFile>,
        mpsc::UnboundedReceiver<WatchEvent>,
    )> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = mpsc::channel(options.ready_capacity.max(1));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let runner = run::Runner::new(options, ready_tx, events_tx)?;
        let task = tokio::spawn(runner.run(stop_rx));
        Ok((
            Self {
                stop: Some(stop_tx),
                task: Some(task),
            },
            ready_rx,
            events_rx,
        ))
    }

    /// Stops watching and waits for the watch to end. Files already handed out may still be
    /// reported; their results are dropped (the upload journal and the next start's
    /// reconciliation keep them from being sent twice).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FolderWatch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The store folder of `path` under `root`: `to` then the file's parent folders, `/`-joined.
fn store_prefix(root: &Path, to: Option<&str>, path: &Path) -> Option<String> {
    let mut parts: Vec<String> = to
        .map(|to| to.trim_matches('/'))
        .filter(|to| !to.is_empty())
        .map(|to| vec![to.to_owned()])
        .unwrap_or_default();
    if let Some(parent) = path.strip_prefix(root).ok().and_then(Path::parent) {
        parts.extend(
            parent
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned()),
        );
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_upload_actions_parse() {
        assert_eq!(AfterUpload::parse("leave").unwrap(), AfterUpload::Leave);
        assert_eq!(AfterUpload::parse("delete").unwrap(), AfterUpload::Delete);
        assert_eq!(
            AfterUpload::parse("move:done").unwrap(),
            AfterUpload::MoveTo("done".into())
        );
        for bad in ["move:", "move:a/b", "move:..", "keep", "move:."] {
            assert_eq!(
                AfterUpload::parse(bad).unwrap_err().code(),
                "invalid",
                "{bad}"
            );
        }
    }

    #[test]
    fn failures_are_tried_again_as_they_may_pass() {
        use run::Again;
        assert_eq!(
            Again::from_code("source_changed", false),
            Again::AfterSettling
        );
        assert_eq!(Again::from_code("source_unreadable", false), Again::Backoff);
        assert_eq!(Again::from_code("retries_exhausted", true), Again::Backoff);
        assert_eq!(
            Again::from_code("quota_exceeded", false),
            Again::WhenChanged
        );
        let outage = Error::RetriesExhausted {
            what: "POST /v1/uploads".into(),
            attempts: 5,
            last: "connection refused".into(),
        };
        assert_eq!(Again::of(&outage), Again::Backoff);
        let refused = Error::NotAFile {
            path: "/w/x".into(),
        };
        assert_eq!(Again::of(&refused), Again::WhenChanged);
    }

    #[test]
    fn store_folders_follow_the_tree() {
        let root = Path::new("/w");
        assert_eq!(store_prefix(root, None, Path::new("/w/a.txt")), None);
        assert_eq!(
            store_prefix(root, Some("in/"), Path::new("/w/a.txt")).as_deref(),
            Some("in")
        );
        assert_eq!(
            store_prefix(root, Some("in"), Path::new("/w/x/y/a.txt")).as_deref(),
            Some("in/x/y")
        );
        assert_eq!(
            store_prefix(root, None, Path::new("/w/x/a.txt")).as_deref(),
            Some("x")
        );
    }
}
