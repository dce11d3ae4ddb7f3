//! Watched folders (desktop only): one engine [`FolderWatch`] per enabled folder of the
//! settings and per folder of the machine's policy (always on), run over the transfer list.
//! Each complete file the watch hands out becomes a row
//! ([`Transfers::add_ready`]), shown and controlled like a dropped file, and the row's result
//! goes back to the watch, which records a verified file in `watch.sqlite` so it is sent once,
//! across restarts too. The watches run on the app's runtime, not in the window: they go on
//! while the window is closed to the tray, start with the app when it is signed in, and stop
//! at sign-out.
//!
//! ```text
//!  settings ──apply──▶ one task per folder: FolderWatch::start ──ReadyFile──▶ Transfers::add_ready
//!                           │ (retried while the folder is missing)                │ row ends
//!                           └─ WatchEvent ─▶ statuses ─▶ pump ─▶ UI     watch ◀──────┘ verified / failed
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use valet_engine::transfers::Transfers;
use valet_engine::watch::{FolderWatch, WatchEvent, WatchOptions, WatchedFolder as Folder};

use crate::dto::{UiError, WatchState, WatchStatus, WatchedFolder};
use crate::settings;

/// How often a folder that could not be watched at start is looked for again (the engine
/// polls a folder that goes missing later at the same pace).
const LOOK_AGAIN: Duration = Duration::from_secs(2);

/// The running watches and their states.
#[derive(Default)]
pub struct Watches {
    board: Arc<Board>,
    /// Running watches by folder path. Dropping one (its stop sender) stops its task.
    running: Mutex<HashMap<String, Running>>,
}

/// One folder to watch: the person's or the policy's (which may also send hidden files).
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    pub folder: WatchedFolder,
    /// Also send dotfiles and files in dot-folders (a policy's `hidden`).
    pub hidden: bool,
}

impl Watched {
    /// The person's folder (hidden files are never sent).
    pub fn own(folder: WatchedFolder) -> Self {
        Self {
            folder,
            hidden: false,
        }
    }
}

struct Running {
    config: Watched,
    _stop: oneshot::Sender<()>,
}

impl Watches {
    /// Runs exactly the enabled folders of `folders` over `transfers` (none when signed out):
    /// new ones start, removed or paused ones stop, and ones whose settings changed start
    /// again with the new settings (what was sent stays recorded, so nothing is sent again).
    pub fn apply(&self, folders: &[Watched], transfers: Option<&Transfers>, data_dir: &Path) {
        let mut running = lock(&self.running);
        running.retain(|_, r| {
            transfers.is_some() && folders.iter().any(|f| f.folder.enabled && *f == r.config)
        });
        let paths: Vec<&str> = folders.iter().map(|f| f.folder.path.as_str()).collect();
        self.board.keep_only(&paths);
        for watched in folders {
            let folder = &watched.folder;
            if !folder.enabled {
                self.board.set(&folder.path, WatchState::Paused, None);
                continue;
            }
            let Some(transfers) = transfers else {
                continue;
            };
            if running.contains_key(&folder.path) {
                continue;
            }
            let (stop, stopped) = oneshot::channel();
            self.board.restart(&folder.path);
            tauri::async_runtime::spawn(run(
                watched.clone(),
                data_dir.to_path_buf(),
                transfers.clone(),
                self.board.clone(),
                stopped,
            ));
            running.insert(
                folder.path.clone(),
                Running {
                    config: watched.clone(),
                    _stop: stop,
                },
            );
        }
    }

    /// Stops every watch (sign-out).
    pub fn stop_all(&self) {
        lock(&self.running).clear();
        self.board.keep_only(&[]);
    }

    /// Every folder's state, in path order.
    pub fn statuses(&self) -> Vec<WatchStatus> {
        lock(&self.board.statuses).values().cloned().collect()
    }

    /// Bumped at every change of a state, for the UI pump.
    pub fn version(&self) -> u64 {
        self.board.version.load(Ordering::Acquire)
    }
}

/// One folder's watch until it is stopped: started again and again while the folder cannot be
/// watched (missing at start), and its files handed to the transfer list.
async fn run(
    config: Watched,
    data_dir: PathBuf,
    transfers: Transfers,
    board: Arc<Board>,
    mut stopped: oneshot::Receiver<()>,
) {
    let path = config.folder.path.clone();
    loop {
        let started = options(&config, &data_dir, &transfers)
            .and_then(|options| FolderWatch::start(options).map_err(UiError::from));
        let (watch, mut ready, mut events) = match started {
            Ok(watch) => watch,
            Err(e) => {
                board.unavailable(&path, e.message);
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(LOOK_AGAIN) => continue,
                }
            }
        };
        tracing::info!(folder = %path, "watching");
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => {
                    watch.stop().await;
                    tracing::info!(folder = %path, "no longer watched");
                    return;
                }
                Some(event) = events.recv() => board.event(&path, event),
                file = ready.recv() => match file {
                    Some(file) => {
                        transfers.add_ready(file).await;
                    }
                    None => break, // the watch ended by itself
                },
            }
        }
        watch.stop().await;
        tracing::warn!(folder = %path, "the watch stopped; starting it again");
        board.restart(&path);
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(LOOK_AGAIN) => {}
        }
    }
}

/// The engine's options for one watched folder.
fn options(
    watched: &Watched,
    data_dir: &Path,
    transfers: &Transfers,
) -> Result<WatchOptions, UiError> {
    let config = &watched.folder;
    let to = Some(config.to.clone()).filter(|to| !to.is_empty());
    let folder = Folder {
        path: PathBuf::from(&config.path),
        prefix: to,
    };
    let mut options = WatchOptions::new(data_dir.to_path_buf(), vec![folder]);
    options.settle = Duration::from_secs_f64(
        config
            .settle_secs
            .clamp(*settings::SETTLE_SECS.start(), *settings::SETTLE_SECS.end()),
    );
    options.include = config.include.clone();
    options.exclude = config.exclude.clone();
    options.hidden = watched.hidden;
    options.after_upload = settings::after_upload(config)?;
    // Verified uploads the watch did not get to record (the app stopped in between) count as
    // sent: the upload journal is the one the transfer list writes.
    options.journal = Some(transfers.engine().journal().clone());
    Ok(options)
}

/// The folders' states, shared by the watch tasks and the UI pump.
#[derive(Default)]
struct Board {
    statuses: Mutex<BTreeMap<String, WatchStatus>>,
    version: AtomicU64,
}

impl Board {
    fn change(&self, path: &str, f: impl FnOnce(&mut WatchStatus)) {
        let mut statuses = lock(&self.statuses);
        let status = statuses
            .entry(path.to_owned())
            .or_insert_with(|| WatchStatus {
                path: path.to_owned(),
                state: WatchState::Starting,
                problem: None,
                sent: 0,
            });
        let before = status.clone();
        f(status);
        if *status != before {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn set(&self, path: &str, state: WatchState, problem: Option<String>) {
        self.change(path, |s| (s.state, s.problem) = (state, problem));
    }

    /// A watch (re)starting: no problem yet, nothing sent yet.
    fn restart(&self, path: &str) {
        self.change(path, |s| {
            (s.state, s.problem, s.sent) = (WatchState::Starting, None, 0);
        });
    }

    fn unavailable(&self, path: &str, problem: String) {
        let mut first = false;
        self.change(path, |s| {
            first = s.problem.as_ref() != Some(&problem);
            (s.state, s.problem) = (WatchState::Unavailable, Some(problem.clone()));
        });
        if first {
            tracing::warn!(folder = %path, %problem, "a watched folder cannot be watched");
        }
    }

    fn keep_only(&self, paths: &[&str]) {
        let mut statuses = lock(&self.statuses);
        let before = statuses.len();
        statuses.retain(|path, _| paths.contains(&path.as_str()));
        if statuses.len() != before {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// What a watch reported: its folder's state and count; files' troubles go to the log
    /// (their rows show them).
    fn event(&self, path: &str, event: WatchEvent) {
        match event {
            WatchEvent::Watching {
                files,
                already_sent,
                ..
            } => {
                tracing::info!(folder = %path, files, already_sent, "folder scanned");
                self.set(path, WatchState::Watching, None);
            }
            WatchEvent::FolderMissing { reason, .. } => self.unavailable(path, reason),
            WatchEvent::FolderBack { .. } => {
                tracing::info!(folder = %path, "the watched folder is back");
                self.set(path, WatchState::Watching, None);
            }
            WatchEvent::Sent { path: file, .. } => {
                tracing::info!(file = %file.display(), "watched file sent");
                self.change(path, |s| s.sent = s.sent.saturating_add(1));
            }
            WatchEvent::Failed {
                path: file,
                code,
                message,
                retry_in,
            } => tracing::info!(
                file = %file.display(), %code, retry_in = ?retry_in, "watched file failed: {message}"
            ),
            WatchEvent::AfterUploadSkipped { path: file, reason } => {
                tracing::warn!(file = %file.display(), "after-upload action not done: {reason}")
            }
            WatchEvent::Rescan { reason } => {
                tracing::info!(folder = %path, "scanning again: {reason}")
            }
            other => tracing::debug!(folder = %path, event = ?other, "watch"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_state_follows_its_watch_and_counts_only_changes() {
        let board = Board::default();
        board.restart("/w");
        let v0 = board.version.load(Ordering::Acquire);
        let missing = WatchEvent::FolderMissing {
            root: "/w".into(),
            reason: "the folder is gone (deleted, renamed or unmounted)".into(),
        };
        board.event("/w", missing.clone());
        let status = lock(&board.statuses)["/w"].clone();
        assert_eq!(status.state, WatchState::Unavailable);
        assert!(status.problem.unwrap().contains("gone"));
        let v1 = board.version.load(Ordering::Acquire);
        assert!(v1 > v0);
        board.event("/w", missing);
        assert_eq!(
            board.version.load(Ordering::Acquire),
            v1,
            "no change, no update"
        );
        board.event("/w", WatchEvent::FolderBack { root: "/w".into() });
        let sent = WatchEvent::Sent {
            path: "/w/a.pdf".into(),
            object_key: "users/u/a.pdf".into(),
            size: 1,
            sha256: "00".into(),
        };
        board.event("/w", sent);
        let status = lock(&board.statuses)["/w"].clone();
        assert_eq!(
            (status.state, status.problem, status.sent),
            (WatchState::Watching, None, 1)
        );
        board.keep_only(&[]);
        assert!(
            lock(&board.statuses).is_empty(),
            "a removed folder has no state"
        );
    }
}
