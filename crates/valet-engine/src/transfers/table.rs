//! The rows of the transfer list and every change of state, kept apart from the tasks that
//! run the uploads so that the rules can be tested on their own.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::task::AbortHandle;

use super::advice::advice;
use super::progress::{Meter, eta_secs};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::upload::UploadReport;
use crate::watch::ReadyFile;

mod watched;

pub(crate) use watched::Taken;

/// A row's id in the list (not the journal's id).
pub type TransferId = u64;

/// Where a file is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransferState {
    /// Waiting for its turn.
    Queued,
    /// Reading the file to check the parts an earlier run stored.
    Hashing,
    /// Sending parts to the store.
    Uploading,
    /// Stopped by the user; the stored parts are kept.
    Paused,
    /// Every part is stored; the service is checking them and completing the object.
    Verifying,
    /// The service verified the object.
    Verified,
    /// It failed; [`Transfer::problem`] says why and what to do.
    Failed,
    /// Cancelled by the user; the upload was aborted.
    Cancelled,
}

impl TransferState {
    /// Running now (it holds one of the slots of `files_at_once`).
    pub fn is_running(self) -> bool {
        matches!(self, Self::Hashing | Self::Uploading | Self::Verifying)
    }

    /// Nothing more will happen unless the user retries.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Verified | Self::Failed | Self::Cancelled)
    }
}

/// Why a file failed, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// [`Error::code`].
    pub code: String,
    /// What happened.
    pub message: String,
    /// What to do next, in plain words ([`advice`]).
    pub advice: String,
    /// Whether a retry continues where it stopped (parts already stored are kept).
    pub resumable: bool,
}

impl Problem {
    pub(crate) fn of(error: &Error) -> Self {
        Self::new(error.code(), error.to_string(), error.is_resumable())
    }

    fn new(code: &str, message: String, resumable: bool) -> Self {
        Self {
            code: code.to_owned(),
            message,
            advice: advice(code).to_owned(),
            resumable,
        }
    }
}

/// One file in the list, as a UI shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The row's id.
    pub id: TransferId,
    /// The file.
    pub path: PathBuf,
    /// The folder it goes to under the account's prefix (`--to`).
    pub prefix: Option<String>,
    /// The watched folder it came from, when a folder watch handed it in (its result is
    /// reported back to that watch).
    pub watched_folder: Option<PathBuf>,
    /// Bytes in the file.
    pub size: u64,
    /// Where it is on its way.
    pub state: TransferState,
    /// Bytes stored or sent (never more than `size`).
    pub bytes_done: u64,
    /// Bytes the store held from an earlier run, which were not sent again.
    pub already_stored: u64,
    /// Body bytes sent to the store in this run, retries included.
    pub bytes_sent: u64,
    /// Recent speed, bytes per second (0 when not moving).
    pub bytes_per_sec: u64,
    /// Seconds left at that speed.
    pub eta_secs: Option<u64>,
    /// Where the object is, once verified.
    pub object_key: Option<String>,
    /// Whole-file SHA-256 (hex), once verified.
    pub sha256: Option<String>,
    /// Why it failed.
    pub problem: Option<Problem>,
}

/// Totals over the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows waiting.
    pub queued: usize,
    /// Rows uploading or verifying.
    pub running: usize,
    /// Rows paused.
    pub paused: usize,
    /// Rows verified.
    pub verified: usize,
    /// Rows failed.
    pub failed: usize,
    /// Rows cancelled.
    pub cancelled: usize,
    /// Bytes of the rows not cancelled.
    pub bytes_total: u64,
    /// Bytes done of those.
    pub bytes_done: u64,
    /// Speed of all running rows together, bytes per second.
    pub bytes_per_sec: u64,
}

/// What changed since a version the caller saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Pass this to the next call.
    pub version: u64,
    /// Whether `rows` is the whole list (the caller's view is replaced, not updated).
    pub full: bool,
    /// Rows added or changed (and every running row: its speed moves with time).
    pub rows: Vec<Transfer>,
    /// Rows removed.
    pub removed: Vec<TransferId>,
    /// Totals.
    pub summary: Summary,
}

/// A file to start, from [`Table::next_start`].
pub(crate) struct Start {
    pub(crate) id: TransferId,
    pub(crate) run: u64,
    pub(crate) path: PathBuf,
    pub(crate) prefix: Option<String>,
}

/// A file just cancelled: what is needed to abort its upload.
#[derive(Debug)]
pub(crate) struct Cancelled {
    pub(crate) path: PathBuf,
    pub(crate) prefix: Option<String>,
    pub(crate) journal_id: Option<i64>,
}

/// Removed-row records kept for callers catching up; beyond this a caller gets the full list.
const REMOVED_KEPT: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: BTreeMap<TransferId, Row>,
    queue: VecDeque<TransferId>,
    /// Paths waiting or running, so a file is not listed twice.
    listed: HashSet<PathBuf>,
    /// The row each path last went into the queue with: where a watched file's next version or
    /// retry goes.
    latest: HashMap<PathBuf, TransferId>,
    running: usize,
    next_id: TransferId,
    version: u64,
    removed: Vec<(u64, TransferId)>,
    /// Versions at or below this have lost removed-row records.
    removed_floor: u64,
}

#[derive(Debug)]
struct Row {
    transfer: Transfer,
    changed: u64,
    /// Bumped at every start, pause and cancel: events and results of an older run are
    /// ignored.
    run: u64,
    task: Option<AbortHandle>,
    journal_id: Option<i64>,
    bytes_retried: u64,
    meter: Meter,
    /// The folder watch's handle of this file, told how the upload ends.
    watch: Option<ReadyFile>,
    /// A watch was told this row's upload was verified (so the watch knows that version).
    told_watch: bool,
}

impl Table {
    fn touch(&mut self, id: TransferId) {
        self.version += 1;
        if let Some(row) = self.rows.get_mut(&id) {
            row.changed = self.version;
        }
    }

    pub(crate) fn is_listed(&self, path: &Path) -> bool {
        self.listed.contains(path)
    }

    /// Adds a waiting row.
    pub(crate) fn push(&mut self, path: PathBuf, size: u64, prefix: Option<String>) -> TransferId {
        self.next_id += 1;
        let id = self.next_id;
        self.listed.insert(path.clone());
        self.latest.insert(path.clone(), id);
        self.rows.insert(
            id,
            Row {
                transfer: Transfer {
                    id,
                    path,
                    prefix,
                    watched_folder: None,
                    size,
                    state: TransferState::Queued,
                    bytes_done: 0,
                    already_stored: 0,
                    bytes_sent: 0,
                    bytes_per_sec: 0,
                    eta_secs: None,
                    object_key: None,
                    sha256: None,
                    problem: None,
                },
                changed: 0,
                run: 0,
                task: None,
                journal_id: None,
                bytes_retried: 0,
                meter: Meter::default(),
                watch: None,
                told_watch: false,
            },
        );
        self.queue.push_back(id);
        self.touch(id);
        id
    }

    /// Marks a row failed (it is not running).
    pub(crate) fn fail(&mut self, id: TransferId, problem: Problem) {
        if let Some(row) = self.rows.get_mut(&id) {
            row.transfer.state = TransferState::Failed;
            row.transfer.problem = Some(problem);
            self.listed.remove(&row.transfer.path);
            self.touch(id);
        }
    }

    /// The next waiting row to start, if fewer than `limit` run.
    pub(crate) fn next_start(&mut self, limit: usize) -> Option<Start> {
        if self.running >= limit.max(1) {
            return None;
        }
        while let Some(id) = self.queue.pop_front() {
            let Some(row) = self.rows.get_mut(&id) else {
                continue;
            };
            if row.transfer.state != TransferState::Queued {
                continue; // paused or cancelled while waiting
            }
            row.run += 1;
            let t = &mut row.transfer;
            t.state = TransferState::Uploading;
            (t.bytes_sent, t.already_stored, t.bytes_done) = (0, 0, 0);
            (t.problem, t.object_key, t.sha256) = (None, None, None);
            row.bytes_retried = 0;
            row.told_watch = false;
            row.meter.reset();
            let start = Start {
                id,
                run: row.run,
                path: t.path.clone(),
                prefix: t.prefix.clone(),
            };
            self.running += 1;
            self.touch(id);
            return Some(start);
        }
        None
    }

    /// The task of a row just started.
    pub(crate) fn started(&mut self, id: TransferId, task: AbortHandle) {
        if let Some(row) = self.rows.get_mut(&id) {
            row.task = Some(task);
        }
    }

    /// Applies an engine event of run `run` of row `id`.
    pub(crate) fn apply(&mut self, id: TransferId, run: u64, event: &Event, now: Instant) {
        let Some(row) = self.rows.get_mut(&id).filter(|r| r.run == run) else {
            return;
        };
        if !row.transfer.state.is_running() {
            return;
        }
        let t = &mut row.transfer;
        match event {
            Event::Started {
                upload,
                size,
                already_stored,
                ..
            } => {
                row.journal_id = Some(*upload);
                t.size = *size;
                t.already_stored = *already_stored;
                t.state = if *already_stored > 0 {
                    TransferState::Hashing
                } else {
                    TransferState::Uploading
                };
            }
            Event::PartSent { bytes, .. } => {
                t.bytes_sent += bytes;
                t.state = TransferState::Uploading;
            }
            Event::PartRetry { resent, .. } => row.bytes_retried += resent,
            Event::Verifying { .. } => t.state = TransferState::Verifying,
            Event::Verified {
                object_key, sha256, ..
            } => {
                t.object_key = Some(object_key.clone());
                t.sha256 = Some(sha256.clone());
            }
            _ => return,
        }
        t.bytes_done = if t.state == TransferState::Verifying {
            t.size
        } else {
            (t.already_stored + t.bytes_sent)
                .saturating_sub(row.bytes_retried)
                .min(t.size)
        };
        row.meter.record(now, t.bytes_done);
        self.touch(id);
    }

    /// Records how run `run` of row `id` ended (ignored when the row was paused or cancelled
    /// meanwhile: that already freed its slot).
    pub(crate) fn finish(&mut self, id: TransferId, run: u64, result: Result<UploadReport>) {
        let Some(row) = self
            .rows
            .get_mut(&id)
            .filter(|r| r.run == run && r.task.is_some())
        else {
            return;
        };
        row.task = None;
        self.running = self.running.saturating_sub(1);
        let t = &mut row.transfer;
        let watch = row.watch.take();
        match result {
            Ok(report) => {
                if let Some(watch) = watch {
                    watch.verified(&report);
                    row.told_watch = true;
                }
                t.state = TransferState::Verified;
                t.size = report.size;
                t.bytes_done = report.size;
                t.already_stored = report.bytes_already_stored;
                t.bytes_sent = report.bytes_sent;
                t.object_key = Some(report.object_key);
                t.sha256 = Some(report.sha256);
            }
            Err(error) => {
                // The watch decides when to hand the file in again (backoff, or when it
                // changes); the row stays failed until then, or until the user retries.
                if let Some(watch) = watch {
                    watch.failed(&error);
                }
                t.state = TransferState::Failed;
                t.problem = Some(Problem::of(&error));
            }
        }
        row.meter.reset();
        self.listed.remove(&t.path);
        self.touch(id);
    }

    /// Stops a running row's task (its slot is freed).
    fn stop(&mut self, id: TransferId) {
        if let Some(row) = self.rows.get_mut(&id) {
            row.run += 1;
            if let Some(task) = row.task.take() {
                task.abort();
                self.running = self.running.saturating_sub(1);
            }
            row.meter.reset();
        }
    }

    pub(crate) fn pause(&mut self, id: TransferId) -> Result<()> {
        let state = self.state_of(id)?;
        match state {
            TransferState::Queued | TransferState::Hashing | TransferState::Uploading => {}
            TransferState::Verifying => {
                return Err(Error::Invalid(
                    "this upload is being verified and cannot be paused".into(),
                ));
            }
            other => return Err(Error::Invalid(format!("cannot pause a {other:?} upload"))),
        }
        self.stop(id);
        if let Some(row) = self.rows.get_mut(&id) {
            row.transfer.state = TransferState::Paused;
        }
        self.touch(id);
        Ok(())
    }

    /// Puts a row in one of `from` back in the queue (at the front when `first`).
    pub(crate) fn requeue(
        &mut self,
        id: TransferId,
        from: &[TransferState],
        first: bool,
    ) -> Result<()> {
        let state = self.state_of(id)?;
        if !from.contains(&state) {
            return Err(Error::Invalid(format!(
                "cannot do that to a {state:?} upload"
            )));
        }
        let Some(row) = self.rows.get_mut(&id) else {
            return Ok(());
        };
        if state.is_finished() {
            // A finished row left the listed paths; the file may have been added again since.
            if !self.listed.insert(row.transfer.path.clone()) {
                return Err(Error::Invalid(format!(
                    "{} is already waiting or uploading in another row",
                    row.transfer.path.display()
                )));
            }
        }
        row.transfer.state = TransferState::Queued;
        row.transfer.problem = None;
        self.latest.insert(row.transfer.path.clone(), id);
        if first {
            self.queue.push_front(id);
        } else {
            self.queue.push_back(id);
        }
        self.touch(id);
        Ok(())
    }

    pub(crate) fn cancel(&mut self, id: TransferId) -> Result<Cancelled> {
        let state = self.state_of(id)?;
        if state == TransferState::Verifying {
            // The service is completing the object; stopping now could leave a verified
            // object behind a row that says cancelled.
            return Err(Error::Invalid(
                "this upload is being verified and cannot be cancelled".into(),
            ));
        }
        if state.is_finished() {
            return Err(Error::Invalid(format!("cannot cancel a {state:?} upload")));
        }
        self.stop(id);
        let Some(row) = self.rows.get_mut(&id) else {
            return Err(Error::Invalid(format!("no transfer {id}")));
        };
        if let Some(watch) = row.watch.take() {
            watch.skip(); // not sent again until it changes (or the watch starts again)
        }
        let t = &mut row.transfer;
        t.state = TransferState::Cancelled;
        t.problem = Some(Problem::new(
            "cancelled",
            format!("{}: cancelled", t.path.display()),
            false,
        ));
        self.listed.remove(&t.path);
        let cancelled = Cancelled {
            path: t.path.clone(),
            prefix: t.prefix.clone(),
            journal_id: row.journal_id.take(),
        };
        self.touch(id);
        Ok(cancelled)
    }

    pub(crate) fn clear_finished(&mut self) -> usize {
        let gone: Vec<TransferId> = self
            .rows
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.transfer.state,
                    TransferState::Verified | TransferState::Cancelled
                )
            })
            .map(|(id, _)| *id)
            .collect();
        self.version += 1;
        for id in &gone {
            if let Some(row) = self.rows.remove(id)
                && self.latest.get(&row.transfer.path) == Some(id)
            {
                self.latest.remove(&row.transfer.path);
            }
            self.removed.push((self.version, *id));
        }
        if self.removed.len() > REMOVED_KEPT {
            let drop_count = self.removed.len() - REMOVED_KEPT / 2;
            self.removed_floor = self.removed[drop_count - 1].0;
            self.removed.drain(..drop_count);
        }
        gone.len()
    }

    fn state_of(&self, id: TransferId) -> Result<TransferState> {
        self.rows
            .get(&id)
            .map(|r| r.transfer.state)
            .ok_or_else(|| Error::Invalid(format!("no transfer {id}")))
    }

    pub(crate) fn ids_in(&self, states: &[TransferState]) -> Vec<TransferId> {
        self.rows
            .iter()
            .filter(|(_, r)| states.contains(&r.transfer.state))
            .map(|(id, _)| *id)
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn snapshot(&self, id: TransferId, now: Instant) -> Option<Transfer> {
        self.rows.get(&id).map(|r| view(r, now))
    }

    pub(crate) fn changes_since(&self, since: u64, now: Instant) -> Changes {
        let full = since == 0 || since < self.removed_floor || since > self.version;
        let rows = self
            .rows
            .values()
            .filter(|r| full || r.changed > since || r.transfer.state.is_running())
            .map(|r| view(r, now))
            .collect();
        let removed = if full {
            Vec::new()
        } else {
            self.removed
                .iter()
                .filter(|(v, _)| *v > since)
                .map(|(_, id)| *id)
                .collect()
        };
        Changes {
            version: self.version,
            full,
            rows,
            removed,
            summary: self.summary(now),
        }
    }

    pub(crate) fn summary(&self, now: Instant) -> Summary {
        let mut s = Summary::default();
        for row in self.rows.values() {
            let t = &row.transfer;
            match t.state {
                TransferState::Queued => s.queued += 1,
                TransferState::Hashing | TransferState::Uploading | TransferState::Verifying => {
                    s.running += 1;
                    s.bytes_per_sec += row.meter.bytes_per_sec(now);
                }
                TransferState::Paused => s.paused += 1,
                TransferState::Verified => s.verified += 1,
                TransferState::Failed => s.failed += 1,
                TransferState::Cancelled => s.cancelled += 1,
            }
            if t.state != TransferState::Cancelled {
                s.bytes_total += t.size;
                s.bytes_done += t.bytes_done;
            }
        }
        s
    }
}

fn view(row: &Row, now: Instant) -> Transfer {
    let mut t = row.transfer.clone();
    if t.state.is_running() {
        t.bytes_per_sec = row.meter.bytes_per_sec(now);
        t.eta_secs = eta_secs(t.size.saturating_sub(t.bytes_done), t.bytes_per_sec);
    }
    t
}
