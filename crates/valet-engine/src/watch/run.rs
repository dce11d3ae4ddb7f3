//! The watch loop: one task that owns every piece of state (tracked files, folders, the record),
//! so nothing is locked. It wakes for file-system events, results from the uploader, room in
//! the ready channel, and a tick (settle checks, retries, folder polls).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::folders::{self, Root};
use super::ledger::{Ledger, SentFile};
use super::names::NameFilter;
use super::settle::{Pending, Touch, Verdict};
use super::{ReadyFile, WatchEvent, WatchOptions, store_prefix};
use crate::error::{Error, Result};
use crate::journal::EntryState;
use crate::source::FileStamp;

/// Whether the OS tells when a writer closed a file (then a file seen being written waits for
/// its close; elsewhere stability alone decides).
const CLOSE_EVENTS: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// How a failed upload is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Again {
    /// With backoff: network trouble, an outage, a sign-in to renew, a file not readable now.
    Backoff,
    /// After the settle time: the file changed during the upload.
    AfterSettling,
    /// Only when the file changes (a refusal: too large, quota, type not allowed).
    WhenChanged,
}

impl Again {
    pub(super) fn of(error: &Error) -> Self {
        Self::from_code(error.code(), error.is_resumable())
    }

    /// From an [`Error::code`] and whether trying again later may succeed.
    pub(super) fn from_code(code: &str, may_pass: bool) -> Self {
        match code {
            "source_changed" => Self::AfterSettling,
            "source_unreadable" | "journal" => Self::Backoff,
            _ if may_pass => Self::Backoff,
            _ => Self::WhenChanged,
        }
    }
}

/// How one handed-out file ended.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) path: PathBuf,
    pub(super) result: Reported,
}

#[derive(Debug)]
pub(super) enum Reported {
    Verified {
        object_key: String,
        sha256: String,
        size: u64,
    },
    Failed {
        code: String,
        message: String,
        again: Again,
    },
    Skipped,
}

/// Where a tracked file stands. Files not in the map are either sent (per the record) or not
/// seen yet.
#[derive(Debug)]
enum Track {
    /// Waiting to be complete.
    Settling(Pending),
    /// Complete, its path in the ready queue.
    Ready(FileStamp, Option<ExponentialBackoff>),
    /// Handed to the uploader; `dirty` when it changed since.
    InFlight {
        stamp: FileStamp,
        dirty: bool,
        backoff: Option<ExponentialBackoff>,
    },
    /// Failed; looked at again at `at`.
    Retry {
        at: Instant,
        stamp: FileStamp,
        backoff: ExponentialBackoff,
    },
    /// Refused or skipped; looked at again only when its stamp changes.
    Refused(FileStamp),
}

/// Result of looking a complete file up in the record.
enum Known {
    /// This very version was sent.
    Sent,
    /// The same file (moved) or the same content was sent from another path.
    Duplicate(SentFile),
}

pub(super) struct Runner {
    settle: Duration,
    folder_poll: Duration,
    after: super::AfterUpload,
    filter: NameFilter,
    roots: Vec<Root>,
    ledger: Ledger,
    files: HashMap<PathBuf, Track>,
    ready: VecDeque<PathBuf>,
    ready_tx: mpsc::Sender<ReadyFile>,
    outcomes_tx: mpsc::UnboundedSender<Outcome>,
    outcomes_rx: mpsc::UnboundedReceiver<Outcome>,
    events: mpsc::UnboundedSender<WatchEvent>,
    fs_rx: mpsc::UnboundedReceiver<DebounceEventResult>,
    debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    backoff: ExponentialBuilder,
}

impl Runner {
    pub(super) fn new(
        options: WatchOptions,
        ready_tx: mpsc::Sender<ReadyFile>,
        events: mpsc::UnboundedSender<WatchEvent>,
    ) -> Result<Self> {
        let skip_dir = match &options.after_upload {
            super::AfterUpload::MoveTo(dir) => Some(dir.as_str()),
            _ => None,
        };
        let filter = NameFilter::new(&options.include, &options.exclude, options.hidden, skip_dir)?;
        if options.folders.is_empty() {
            return Err(Error::Invalid("no folder to watch".into()));
        }
        let roots = options
            .folders
            .iter()
            .map(Root::new)
            .collect::<Result<Vec<_>>>()?;
        let ledger = Ledger::open_in(&options.data_dir)?;
        let (fs_tx, fs_rx) = mpsc::unbounded_channel();
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        // The debouncer folds bursts of events per path; the settle rule decides readiness.
        let debounce =
            (options.settle / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
        let debouncer = notify_debouncer_full::new_debouncer(
            debounce,
            None,
            move |result: DebounceEventResult| {
                let _loop_ended = fs_tx.send(result);
            },
        )
        .map_err(|e| Error::Settings {
            path: roots[0].path.clone(),
            detail: format!("cannot watch for file-system events: {e}"),
        })?;
        let mut runner = Self {
            settle: options.settle,
            folder_poll: options.folder_poll,
            after: options.after_upload.clone(),
            filter,
            roots,
            ledger,
            files: HashMap::new(),
            ready: VecDeque::new(),
            ready_tx,
            outcomes_tx,
            outcomes_rx,
            events,
            fs_rx,
            debouncer,
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(2))
                .with_max_delay(Duration::from_secs(300))
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
        };
        for i in 0..runner.roots.len() {
            runner.watch_root(i).map_err(|detail| Error::Settings {
                path: runner.roots[i].path.clone(),
                detail,
            })?;
        }
        if let Some(journal) = &options.journal {
            runner.reconcile(journal)?;
        }
        Ok(runner)
    }

    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        for i in 0..self.roots.len() {
            self.scan_root(i);
        }
        let tick = (self.settle / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_poll = Instant::now();
        loop {
            let has_ready = !self.ready.is_empty();
            let ready_tx = self.ready_tx.clone();
            tokio::select! {
                biased;
                _ = &mut stop => break,
                Some(outcome) = self.outcomes_rx.recv() => self.on_outcome(outcome),
                Some(batch) = self.fs_rx.recv() => self.on_fs(batch),
                permit = ready_tx.reserve_owned(), if has_ready => match permit {
                    Ok(permit) => self.dispatch(permit).await,
                    Err(_) => break, // the uploader is gone
                },
                _ = ticker.tick() => {
                    self.check_due();
                    if last_poll.elapsed() >= self.folder_poll {
                        self.poll_roots();
                        last_poll = Instant::now();
                    }
                }
            }
        }
        self.debouncer.stop_nonblocking();
    }

    fn emit(&self, event: WatchEvent) {
        let _shell_gone = self.events.send(event);
    }

    fn root_of(&self, path: &Path) -> Option<usize> {
        self.roots
            .iter()
            .enumerate()
            .filter(|(_, root)| path.starts_with(&root.path))
            .max_by_key(|(_, root)| root.path.as_os_str().len())
            .map(|(i, _)| i)
    }

    fn watch_root(&mut self, i: usize) -> std::result::Result<(), String> {
        let id = folders::probe(&self.roots[i].path)?;
        self.debouncer
            .watch(&self.roots[i].path, RecursiveMode::Recursive)
            .map_err(|e| format!("cannot watch the folder: {e}"))?;
        self.roots[i].watched = Some(id);
        Ok(())
    }

    /// Verified uploads in the upload journal of files that are, unchanged, in a watched
    /// folder, with the store folder the watch would use, count as sent.
    fn reconcile(&mut self, journal: &crate::journal::Journal) -> Result<()> {
        for entry in journal.entries()? {
            let (EntryState::Verified, Some(sha256), Some(object_key)) =
                (entry.state, entry.sha256, entry.object_key)
            else {
                continue;
            };
            let Some(i) = self.root_of(&entry.path) else {
                continue;
            };
            let root = &self.roots[i];
            if entry.prefix != store_prefix(&root.path, root.to.as_deref(), &entry.path) {
                continue;
            }
            let on_disk = FileStamp::read(&entry.path).ok();
            if on_disk != Some(entry.stamp)
                || self.ledger.stamp_of(&root.scope, &entry.path)? == Some(entry.stamp)
            {
                continue;
            }
            let file = SentFile {
                path: entry.path,
                stamp: entry.stamp,
                sha256,
                object_key,
            };
            self.ledger
                .record(&root.scope, &file, OffsetDateTime::now_utc())?;
        }
        Ok(())
    }

    /// Scans a whole folder (at start, when it is back) and reports it.
    fn scan_root(&mut self, i: usize) {
        let path = self.roots[i].path.clone();
        let (files, already_sent) = self.scan(&path, i);
        self.emit(WatchEvent::Watching {
            root: path,
            files,
            already_sent,
        });
    }

    /// Tracks every candidate under `dir` not sent already: (files found, of which sent).
    fn scan(&mut self, dir: &Path, i: usize) -> (u64, u64) {
        let (found, problems) = folders::scan(dir, &self.roots[i].path, &self.filter);
        for problem in problems {
            tracing::warn!(folder = %dir.display(), %problem, "part of a watched folder cannot be read");
        }
        let now = Instant::now();
        let (mut files, mut already) = (0, 0);
        for (path, stamp) in found {
            files += 1;
            if let Some(Track::Settling(pending)) = self.files.get_mut(&path) {
                pending.forget_writer();
                continue;
            }
            if self.files.contains_key(&path) {
                continue;
            }
            match self.ledger.stamp_of(&self.roots[i].scope, &path) {
                Ok(Some(sent)) if sent == stamp => already += 1,
                _ => {
                    self.emit(WatchEvent::Seen { path: path.clone() });
                    self.files.insert(
                        path,
                        Track::Settling(Pending::new(now, Some(stamp), Touch::Seen)),
                    );
                }
            }
        }
        (files, already)
    }

    fn rescan_all(&mut self, reason: String) {
        self.emit(WatchEvent::Rescan { reason });
        for i in 0..self.roots.len() {
            if self.roots[i].watched.is_some() {
                let path = self.roots[i].path.clone();
                self.scan(&path, i);
            }
        }
    }

    fn on_fs(&mut self, batch: DebounceEventResult) {
        let events = match batch {
            Ok(events) => events,
            Err(errors) => {
                let reason = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                self.rescan_all(format!("the file-system watcher failed: {reason}"));
                return;
            }
        };
        for event in events {
            if event.need_rescan() {
                self.rescan_all("file-system events were lost (queue overflow)".into());
                continue;
            }
            let (touch, paths): (Touch, &[PathBuf]) = match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    (Touch::Closed, &event.paths)
                }
                EventKind::Access(_) => continue,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                    for path in &event.paths {
                        self.forget(path);
                    }
                    continue;
                }
                // A rename: the old name (when known) first, the new name last.
                EventKind::Modify(ModifyKind::Name(_)) => {
                    if let [old, _new] = event.paths.as_slice() {
                        self.forget(old);
                    }
                    (
                        Touch::Seen,
                        event.paths.last().map(std::slice::from_ref).unwrap_or(&[]),
                    )
                }
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any)
                    if CLOSE_EVENTS =>
                {
                    (Touch::Written, &event.paths)
                }
                _ => (Touch::Seen, &event.paths),
            };
            for path in paths {
                self.touch(path, touch);
            }
        }
    }

    /// An event for `path`: a file starts or restarts its wait; a folder (created or moved in)
    /// is scanned, since files already in it raise no events of their own.
    fn touch(&mut self, path: &Path, touch: Touch) {
        let Some(i) = self.root_of(path) else {
            return;
        };
        let Ok(rel) = path.strip_prefix(&self.roots[i].path) else {
            return;
        };
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return; // gone already; a tracked file is dropped at its next check
        };
        if meta.is_dir() {
            if self.filter.enters_dir(rel) {
                self.scan(path, i);
            }
            return;
        }
        if !meta.is_file() || self.filter.refuse_file(rel).is_some() {
            return;
        }
        let stamp = FileStamp::of(&meta);
        let now = Instant::now();
        match self.files.get_mut(path) {
            Some(Track::Settling(pending)) => pending.touch(now, Some(stamp), touch),
            Some(Track::InFlight {
                stamp: sent, dirty, ..
            }) => {
                *dirty |= *sent != stamp || touch == Touch::Written;
            }
            Some(Track::Refused(refused)) if *refused == stamp && touch != Touch::Written => {}
            Some(_) => {
                self.files.insert(
                    path.to_path_buf(),
                    Track::Settling(Pending::new(now, Some(stamp), touch)),
                );
            }
            None => {
                let sent = self
                    .ledger
                    .stamp_of(&self.roots[i].scope, path)
                    .ok()
                    .flatten();
                if sent == Some(stamp) && touch != Touch::Written {
                    return;
                }
                self.emit(WatchEvent::Seen {
                    path: path.to_path_buf(),
                });
                self.files.insert(
                    path.to_path_buf(),
                    Track::Settling(Pending::new(now, Some(stamp), touch)),
                );
            }
        }
    }

    /// A path that is gone (deleted, renamed away) is no longer tracked, unless its upload is
    /// under way (the uploader reports how that ends).
    fn forget(&mut self, path: &Path) {
        if !matches!(self.files.get(path), None | Some(Track::InFlight { .. })) {
            self.files.remove(path);
        }
    }

    /// Settle checks and retries whose time has come.
    fn check_due(&mut self) {
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|(_, track)| match track {
                Track::Settling(pending) => pending.is_due(now, self.settle),
                Track::Retry { at, .. } => *at <= now,
                _ => false,
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in due {
            self.check(path, now);
        }
    }

    fn check(&mut self, path: PathBuf, now: Instant) {
        let meta = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            _ => {
                self.files.remove(&path);
                return;
            }
        };
        let current = FileStamp::of(&meta);
        let Some(track) = self.files.remove(&path) else {
            return;
        };
        let (stamp, backoff) = match track {
            Track::Retry { stamp, backoff, .. } if stamp == current => (current, Some(backoff)),
            Track::Retry { .. } => {
                let pending = Pending::new(now, Some(current), Touch::Seen);
                self.files.insert(path, Track::Settling(pending));
                return;
            }
            Track::Settling(mut pending) => match pending.check(now, current, self.settle) {
                Verdict::Ready(stamp) => (stamp, None),
                verdict => {
                    let reason = match verdict {
                        Verdict::Open => Some("open for writing"),
                        Verdict::Changing => Some("still changing"),
                        _ => None,
                    };
                    if let Some(reason) = reason.filter(|r| pending.reported != Some(*r)) {
                        pending.reported = Some(reason);
                        self.emit(WatchEvent::Waiting {
                            path: path.clone(),
                            reason: reason.into(),
                        });
                    }
                    self.files.insert(path, Track::Settling(pending));
                    return;
                }
            },
            other => {
                self.files.insert(path, other);
                return;
            }
        };
        match folders::can_open(&path) {
            Ok(()) => {
                self.files
                    .insert(path.clone(), Track::Ready(stamp, backoff));
                self.ready.push_back(path);
            }
            Err(e) => {
                let mut backoff = backoff.unwrap_or_else(|| self.backoff.build());
                let delay = backoff.next().unwrap_or(Duration::from_secs(300));
                self.emit(WatchEvent::Waiting {
                    path: path.clone(),
                    reason: format!(
                        "cannot be opened ({e}); trying again in {}s",
                        delay.as_secs()
                    ),
                });
                self.files.insert(
                    path,
                    Track::Retry {
                        at: now + delay,
                        stamp,
                        backoff,
                    },
                );
            }
        }
    }
}

mod dispatch;
