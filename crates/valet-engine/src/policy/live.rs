//! The policy in force, read again whenever it changes; the last good one kept when it breaks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::source::{PolicySource, Raw};
use super::{Policy, PolicyError};

/// The last good policy, in the data directory: still in force after a restart when the policy
/// file has been broken since.
pub const LAST_GOOD_FILE: &str = "policy-last-good.json";

/// How often the policy is read again even without a change event (a folder created later, the
/// Windows registry).
const POLL: Duration = Duration::from_secs(10);

/// The policy in force, and why the policy as it is now is not, if it is not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// The policy in force; `None`: no policy, the user decides everything.
    pub policy: Option<Arc<Policy>>,
    /// Where the policy in force came from.
    pub origin: Option<String>,
    /// The current policy is broken (or unreadable): this says why, and `policy` is the last
    /// good one, if any.
    pub error: Option<PolicyError>,
}

impl PolicyState {
    /// Whether `setting` is locked by the policy in force.
    pub fn is_locked(&self, setting: super::Setting) -> bool {
        self.policy.as_ref().is_some_and(|p| p.is_locked(setting))
    }

    /// Why a sign-in with `server` may not be used here: the policy locks `server` to another
    /// service (the organisation moved this machine). `None` when it may.
    pub fn refuses_server(&self, server: &str) -> Option<String> {
        let policy = self.policy.as_ref()?;
        let theirs = policy.server_url()?;
        let same = theirs.as_str().trim_end_matches('/') == server.trim().trim_end_matches('/');
        (policy.is_locked(super::Setting::Server) && !same).then(|| {
            format!(
                "this computer now signs in to {} only (`server` is locked by the policy {}); \
                 the sign-in with {} is not used",
                crate::urls::redact(&theirs),
                self.origin.as_deref().unwrap_or("in force"),
                crate::urls::parse_server(server)
                    .map(|s| crate::urls::redact(&s))
                    .unwrap_or_else(|_| server.to_owned())
            )
        })
    }
}

#[derive(Serialize, Deserialize)]
struct LastGood {
    origin: String,
    policy: Policy,
}

/// Reads the sources in order; the first that has a policy wins.
struct Reader {
    sources: Vec<PolicySource>,
    data_dir: PathBuf,
}

impl Reader {
    fn read(&self) -> PolicyState {
        let found = self.sources.iter().find_map(|source| {
            let origin = source.origin();
            match source.read_raw() {
                Ok(None) => None,
                Ok(Some(raw)) => Some(Raw::parse(&raw, &origin).map(|p| (p, origin))),
                Err(e) => Some(Err(e)),
            }
        });
        match found {
            None => {
                // The administrator removed the policy: nothing is in force any more.
                let _ = std::fs::remove_file(self.data_dir.join(LAST_GOOD_FILE));
                PolicyState::default()
            }
            Some(Ok((policy, origin))) => {
                self.save_last_good(&policy, &origin);
                PolicyState {
                    policy: Some(Arc::new(policy)),
                    origin: Some(origin),
                    error: None,
                }
            }
            Some(Err(error)) => {
                let last = self.last_good();
                PolicyState {
                    origin: last.as_ref().map(|l| l.origin.clone()),
                    policy: last.map(|l| Arc::new(l.policy)),
                    error: Some(error),
                }
            }
        }
    }

    fn save_last_good(&self, policy: &Policy, origin: &str) {
        let last = LastGood {
            origin: origin.to_owned(),
            policy: policy.clone(),
        };
        let path = self.data_dir.join(LAST_GOOD_FILE);
        let tmp = self.data_dir.join(format!("{LAST_GOOD_FILE}.tmp"));
        let written = crate::settings::ensure_data_dir(&self.data_dir)
            .map_err(|e| e.to_string())
            .and_then(|()| serde_json::to_vec_pretty(&last).map_err(|e| e.to_string()))
            .and_then(|text| {
                std::fs::write(&tmp, text)
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(|e| e.to_string())
            });
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "cannot keep the last good policy");
        }
    }

    /// The last good policy, checked again (a hand-edited copy is not trusted blindly).
    fn last_good(&self) -> Option<LastGood> {
        let text = std::fs::read(self.data_dir.join(LAST_GOOD_FILE)).ok()?;
        let last: LastGood = serde_json::from_slice(&text).ok()?;
        last.policy.check(&last.origin).ok()?;
        Some(last)
    }
}

/// The policy in force, kept current: read at start, then again on every change of its files
/// (and every 10 s, for places no event covers). A change is applied by whoever subscribes.
pub struct LivePolicy {
    state: watch::Receiver<PolicyState>,
    task: tokio::task::JoinHandle<()>,
}

impl LivePolicy {
    /// Reads the policy once, for a short-lived process (the CLI).
    pub fn read(sources: Vec<PolicySource>, data_dir: &Path) -> PolicyState {
        Reader {
            sources,
            data_dir: data_dir.to_path_buf(),
        }
        .read()
    }

    /// Reads the policy now, and keeps reading it as it changes. Needs a Tokio runtime.
    pub fn start(sources: Vec<PolicySource>, data_dir: PathBuf) -> Self {
        let reader = Reader { sources, data_dir };
        let (tx, state) = watch::channel(reader.read());
        let task = tokio::spawn(keep_current(reader, tx));
        Self { state, task }
    }

    /// The policy in force now.
    pub fn state(&self) -> PolicyState {
        self.state.borrow().clone()
    }

    /// Changes, as they are applied.
    pub fn subscribe(&self) -> watch::Receiver<PolicyState> {
        self.state.clone()
    }
}

impl Drop for LivePolicy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for LivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePolicy")
            .field("state", &*self.state.borrow())
            .finish()
    }
}

async fn keep_current(reader: Reader, tx: watch::Sender<PolicyState>) {
    let (wake, mut woken) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = wake.try_send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "policy changes are polled only"))
    .ok();
    let mut watched = HashSet::new();
    let mut poll = tokio::time::interval(POLL);
    poll.tick().await;
    loop {
        // Folders that exist now are watched (one may appear after the start).
        if let Some(watcher) = watcher.as_mut() {
            for folder in reader.sources.iter().filter_map(PolicySource::folder) {
                if !watched.contains(folder)
                    && watcher.watch(folder, RecursiveMode::NonRecursive).is_ok()
                {
                    watched.insert(folder.to_path_buf());
                }
            }
        }
        tokio::select! {
            _ = woken.recv() => {
                // An editor writes in several steps: read once they are done.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while woken.try_recv().is_ok() {}
            }
            _ = poll.tick() => {}
        }
        let now = reader.read();
        tx.send_if_modified(|state| {
            if *state == now {
                return false;
            }
            match &now.error {
                Some(error) => tracing::warn!(%error, "the policy is not used; the last good one stays in force"),
                None => tracing::info!(origin = ?now.origin, "policy applied"),
            }
            *state = now;
            true
        });
        if tx.is_closed() {
            return;
        }
    }
}
