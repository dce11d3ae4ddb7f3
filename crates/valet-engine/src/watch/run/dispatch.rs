//! The watch loop's other half: handing complete files to the uploader (after the "already
//! sent?" check), taking its results, after-upload actions, and folder polls.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use time::OffsetDateTime;
use tokio::sync::mpsc::OwnedPermit;

use super::{Again, Known, Outcome, Reported, Runner, Track};
use crate::error::{Error, Result};
use crate::source::FileStamp;
use crate::watch::folders::{self, Done};
use crate::watch::ledger::SentFile;
use crate::watch::settle::{Pending, Touch};
use crate::watch::{ReadyFile, WatchEvent, store_prefix};

impl Runner {
    /// Hands the next complete file not sent already to the uploader through `permit`.
    pub(super) async fn dispatch(&mut self, permit: OwnedPermit<ReadyFile>) {
        while let Some(path) = self.ready.pop_front() {
            let Some(Track::Ready(stamp, _)) = self.files.get(&path) else {
                continue; // changed or dropped since it was queued
            };
            let stamp = *stamp;
            let Some(i) = self.root_of(&path) else {
                self.files.remove(&path);
                continue;
            };
            match FileStamp::read(&path) {
                Ok(now) if now == stamp => {}
                Ok(now) => {
                    let pending = Pending::new(Instant::now(), Some(now), Touch::Seen);
                    self.files.insert(path, Track::Settling(pending));
                    continue;
                }
                Err(_) => {
                    self.files.remove(&path);
                    continue;
                }
            }
            match self.known(i, &path, &stamp).await {
                Ok(None) => {}
                Ok(Some(Known::Sent)) => {
                    self.files.remove(&path);
                    continue;
                }
                Ok(Some(Known::Duplicate(sent))) => {
                    self.files.remove(&path);
                    let file = SentFile {
                        path: path.clone(),
                        stamp,
                        sha256: sent.sha256,
                        object_key: sent.object_key.clone(),
                    };
                    let scope = &self.roots[i].scope;
                    if let Err(e) = self.ledger.record(scope, &file, OffsetDateTime::now_utc()) {
                        tracing::warn!(error = %e, "cannot record a duplicate");
                    }
                    self.emit(WatchEvent::Duplicate {
                        path,
                        same_as: sent.path,
                        object_key: sent.object_key,
                    });
                    continue;
                }
                Err(e) => {
                    let backoff = match self.files.remove(&path) {
                        Some(Track::Ready(_, backoff)) => backoff,
                        _ => None,
                    };
                    self.retry_later(path, stamp, backoff, e.code(), e.to_string());
                    continue;
                }
            }
            let root = &self.roots[i];
            let prefix = store_prefix(&root.path, root.to.as_deref(), &path);
            let backoff = match self.files.remove(&path) {
                Some(Track::Ready(_, backoff)) => backoff,
                _ => None,
            };
            self.files.insert(
                path.clone(),
                Track::InFlight {
                    stamp,
                    dirty: false,
                    backoff,
                },
            );
            self.emit(WatchEvent::Queued { path: path.clone() });
            permit.send(ReadyFile {
                path,
                root: root.path.clone(),
                prefix,
                size: stamp.size,
                outcomes: Some(self.outcomes_tx.clone()),
            });
            return;
        }
    }

    /// Whether this version of the file was sent, or the same file or content from another
    /// path. Reads the file only when a file of its size was sent before.
    async fn known(&mut self, i: usize, path: &Path, stamp: &FileStamp) -> Result<Option<Known>> {
        let scope = &self.roots[i].scope;
        if self.ledger.stamp_of(scope, path)? == Some(*stamp) {
            return Ok(Some(Known::Sent));
        }
        if let Some(sent) = self.ledger.find_stamp(scope, stamp)? {
            return Ok(Some(Known::Duplicate(sent)));
        }
        if !self.ledger.has_size(scope, stamp.size)? {
            return Ok(None);
        }
        let owned = path.to_path_buf();
        let sha256 = tokio::task::spawn_blocking(move || folders::sha256_file(&owned))
            .await
            .map_err(|e| Error::Invalid(format!("hashing stopped: {e}")))?
            .map_err(|source| Error::SourceUnreadable {
                path: path.to_path_buf(),
                source,
            })?;
        // Changed while being read: the digest proves nothing; the next look decides.
        crate::source::check_unchanged(path, stamp)?;
        Ok(self
            .ledger
            .find_content(scope, stamp.size, &sha256)?
            .map(Known::Duplicate))
    }

    fn retry_later(
        &mut self,
        path: PathBuf,
        stamp: FileStamp,
        backoff: Option<backon::ExponentialBackoff>,
        code: &str,
        message: String,
    ) {
        let mut backoff = backoff.unwrap_or_else(|| self.backoff.build());
        let delay = backoff.next().unwrap_or(Duration::from_secs(300));
        self.emit(WatchEvent::Failed {
            path: path.clone(),
            code: code.to_owned(),
            message,
            retry_in: Some(delay),
        });
        self.files.insert(
            path,
            Track::Retry {
                at: Instant::now() + delay,
                stamp,
                backoff,
            },
        );
    }

    /// The uploader's result for a file handed out.
    pub(super) fn on_outcome(&mut self, outcome: Outcome) {
        let Outcome { path, result } = outcome;
        let Some(Track::InFlight {
            stamp,
            dirty,
            backoff,
        }) = self.files.remove(&path)
        else {
            return; // its folder went missing meanwhile
        };
        let settle_again = |runner: &mut Self, path: PathBuf| {
            let now = FileStamp::read(&path).ok();
            let pending = Pending::new(Instant::now(), now, Touch::Seen);
            runner.files.insert(path, Track::Settling(pending));
        };
        match result {
            Reported::Verified {
                object_key,
                sha256,
                size,
            } => {
                let Some(i) = self.root_of(&path) else {
                    return;
                };
                let file = SentFile {
                    path: path.clone(),
                    stamp,
                    sha256: sha256.clone(),
                    object_key: object_key.clone(),
                };
                if let Err(e) =
                    self.ledger
                        .record(&self.roots[i].scope, &file, OffsetDateTime::now_utc())
                {
                    // Sent all the same; at the next start the upload journal fills this in.
                    tracing::warn!(error = %e, path = %path.display(), "cannot record a sent file");
                }
                self.emit(WatchEvent::Sent {
                    path: path.clone(),
                    object_key,
                    size,
                    sha256,
                });
                if dirty {
                    settle_again(self, path);
                } else {
                    self.after_upload(i, path, stamp);
                }
            }
            Reported::Failed {
                code,
                message,
                again,
            } => match again {
                Again::Backoff => self.retry_later(path, stamp, backoff, &code, message),
                Again::AfterSettling => {
                    self.emit(WatchEvent::Failed {
                        path: path.clone(),
                        code,
                        message,
                        retry_in: Some(self.settle),
                    });
                    settle_again(self, path);
                }
                Again::WhenChanged => {
                    self.emit(WatchEvent::Failed {
                        path: path.clone(),
                        code,
                        message,
                        retry_in: None,
                    });
                    self.files.insert(path, Track::Refused(stamp));
                }
            },
            Reported::Skipped => {
                self.files.insert(path, Track::Refused(stamp));
            }
        }
    }

    fn after_upload(&mut self, i: usize, path: PathBuf, stamp: FileStamp) {
        match folders::after_upload(&self.after, &self.roots[i].path, &path, &stamp) {
            Ok(Done::Left) => {}
            Ok(Done::Moved(to)) => self.emit(WatchEvent::Moved { path, to }),
            Ok(Done::Deleted) => self.emit(WatchEvent::Deleted { path }),
            Err(reason) => self.emit(WatchEvent::AfterUploadSkipped { path, reason }),
        }
    }

    /// Each folder: still there (and the same one)? Gone ones are reported and dropped from
    /// the watch; ones back are watched and scanned again.
    pub(super) fn poll_roots(&mut self) {
        for i in 0..self.roots.len() {
            let probe = folders::probe(&self.roots[i].path);
            let path = self.roots[i].path.clone();
            match (self.roots[i].watched, probe) {
                (Some(id), Ok(now)) if id == now => {}
                (Some(_), probe) => {
                    // Gone, unreadable, or another folder in its place: stop watching it.
                    let _ = self.debouncer.unwatch(&path);
                    self.roots[i].watched = None;
                    self.files.retain(|file, track| {
                        !file.starts_with(&path) || matches!(track, Track::InFlight { .. })
                    });
                    match probe {
                        Err(reason) => self.missing(i, reason),
                        Ok(_) => self.back(i),
                    }
                }
                (None, Ok(_)) => self.back(i),
                (None, Err(reason)) => self.missing(i, reason),
            }
        }
    }

    /// Reports a missing folder once per reason (not at every poll).
    fn missing(&mut self, i: usize, reason: String) {
        if self.roots[i].missing.as_ref() != Some(&reason) {
            self.roots[i].missing = Some(reason.clone());
            let root = self.roots[i].path.clone();
            self.emit(WatchEvent::FolderMissing { root, reason });
        }
    }

    fn back(&mut self, i: usize) {
        let path = self.roots[i].path.clone();
        match self.watch_root(i) {
            Ok(()) => {
                self.roots[i].missing = None;
                self.emit(WatchEvent::FolderBack { root: path });
                self.scan_root(i);
            }
            Err(reason) => self.missing(i, reason),
        }
    }
}
