//! What crosses to the web UI: the types of every command and event, declared here once and
//! generated into `ui/src/lib/bindings.ts` (never edited by hand). Engine types are converted
//! at this boundary so the engine knows nothing of the UI.

use serde::{Deserialize, Serialize};
use specta::Type;
use valet_engine::transfers::{self, Changes, Summary, TransferState};

/// An error a command returns: a stable code for the UI to branch on and a message to show.
#[derive(Debug, Clone, Serialize, Type)]
pub struct UiError {
    /// [`valet_engine::Error::code`], or an app code (`locked`, `not_signed_in`, …).
    pub code: String,
    /// What happened, in plain words.
    pub message: String,
}

impl UiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl From<valet_engine::Error> for UiError {
    fn from(e: valet_engine::Error) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// Who is signed in.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub signed_in: bool,
    pub server: Option<String>,
    pub user: Option<String>,
    /// A server URL to offer on the sign-in screen (from the environment), when not signed in.
    pub suggested_server: Option<String>,
    /// Why the last sign-in no longer works, when it does not.
    pub problem: Option<String>,
    /// What the machine's policy says about signing in and out.
    pub policy: PolicyInfo,
}

/// Where a file is on its way.
#[derive(Debug, Clone, Copy, Serialize, Type, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum State {
    Queued,
    Hashing,
    Uploading,
    Paused,
    Verifying,
    Verified,
    Failed,
    Cancelled,
}

impl From<TransferState> for State {
    fn from(s: TransferState) -> Self {
        match s {
            TransferState::Queued => Self::Queued,
            TransferState::Hashing => Self::Hashing,
            TransferState::Uploading => Self::Uploading,
            TransferState::Paused => Self::Paused,
            TransferState::Verifying => Self::Verifying,
            TransferState::Verified => Self::Verified,
            TransferState::Failed => Self::Failed,
            _ => Self::Cancelled,
        }
    }
}

/// Why a file failed and what to do.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub code: String,
    pub message: String,
    pub advice: String,
    pub resumable: bool,
}

/// One row of the transfer list.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub folder: Option<String>,
    /// The watched folder the file came from, when a folder watch found it.
    pub watched_folder: Option<String>,
    pub size: u64,
    pub state: State,
    pub bytes_done: u64,
    pub already_stored: u64,
    pub bytes_sent: u64,
    pub bytes_per_sec: u64,
    pub eta_secs: Option<u64>,
    pub object_key: Option<String>,
    pub sha256: Option<String>,
    pub problem: Option<Problem>,
}

impl From<transfers::Transfer> for Transfer {
    fn from(t: transfers::Transfer) -> Self {
        Self {
            id: t.id,
            name: t
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| t.path.display().to_string()),
            path: t.path.display().to_string(),
            folder: t.prefix,
            watched_folder: t.watched_folder.map(|f| f.display().to_string()),
            size: t.size,
            state: t.state.into(),
            bytes_done: t.bytes_done,
            already_stored: t.already_stored,
            bytes_sent: t.bytes_sent,
            bytes_per_sec: t.bytes_per_sec,
            eta_secs: t.eta_secs,
            object_key: t.object_key,
            sha256: t.sha256,
            problem: t.problem.map(|p| Problem {
                code: p.code,
                message: p.message,
                advice: p.advice,
                resumable: p.resumable,
            }),
        }
    }
}

/// Totals over the list.
#[derive(Debug, Clone, Default, Serialize, Type, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub queued: u32,
    pub running: u32,
    pub paused: u32,
    pub verified: u32,
    pub failed: u32,
    pub cancelled: u32,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_per_sec: u64,
}

impl From<Summary> for Totals {
    fn from(s: Summary) -> Self {
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            queued: n(s.queued),
            running: n(s.running),
            paused: n(s.paused),
            verified: n(s.verified),
            failed: n(s.failed),
            cancelled: n(s.cancelled),
            bytes_total: s.bytes_total,
            bytes_done: s.bytes_done,
            bytes_per_sec: s.bytes_per_sec,
        }
    }
}

/// What changed in the list since `since`: apply to a view that is at `since`, or replace the
/// view when `full`.
#[derive(Debug, Clone, Serialize, Type, tauri_specta::Event)]
#[serde(rename_all = "camelCase")]
pub struct TransfersChanged {
    pub since: u64,
    pub version: u64,
    pub full: bool,
    pub rows: Vec<Transfer>,
    pub removed: Vec<u64>,
    pub totals: Totals,
}

impl TransfersChanged {
    pub fn new(since: u64, changes: Changes) -> Self {
        Self {
            since,
            version: changes.version,
            full: changes.full,
            rows: changes.rows.into_iter().map(Transfer::from).collect(),
            removed: changes.removed,
            totals: changes.summary.into(),
        }
    }
}

/// What adding files did.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct AddResult {
    pub added: u32,
    pub already_listed: u32,
    pub unreadable: u32,
}

/// The settings a person can change.
#[derive(Debug, Clone, Serialize, Deserialize, Type, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Parts of one file sent at once (1 to 16).
    pub parallel_parts: u32,
    /// Upload bandwidth limit in MiB/s; 0 for none.
    pub bandwidth_limit_mib_s: f64,
    /// Notify when a batch is verified or something failed.
    pub notifications: bool,
    /// Start Valet Upload when the user logs in.
    pub start_at_login: bool,
    /// Folders whose new files are uploaded by themselves (desktop only).
    pub watched_folders: Vec<WatchedFolder>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            parallel_parts: 4,
            bandwidth_limit_mib_s: 0.0,
            notifications: true,
            start_at_login: false,
            watched_folders: Vec::new(),
        }
    }
}

/// A folder whose new files are uploaded by themselves, once each and only when complete
/// (the engine's `watch`, as `valet watch`).
#[derive(Debug, Clone, Serialize, Deserialize, Type, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WatchedFolder {
    /// The folder (absolute); it names the entry, so a folder is watched once.
    pub path: String,
    /// Folder in the store under the account's prefix (`--to`); empty for the top. A file's
    /// sub-folders follow it.
    pub to: String,
    /// Seconds a file must stay unchanged, and be closed by its writer, before it is sent.
    pub settle_secs: f64,
    /// What happens to a file once its upload is verified.
    pub after_upload: AfterUpload,
    /// The sub-folder of the watched folder files are moved into, with `AfterUpload::Move`.
    pub move_to: String,
    /// Send only files whose path under the folder matches one of these globs (none: all).
    pub include: Vec<String>,
    /// Never send files whose path under the folder matches one of these globs.
    pub exclude: Vec<String>,
    /// Watched now; `false` while paused.
    pub enabled: bool,
}

impl Default for WatchedFolder {
    fn default() -> Self {
        Self {
            path: String::new(),
            to: String::new(),
            settle_secs: 3.0,
            after_upload: AfterUpload::Leave,
            move_to: "uploaded".to_owned(),
            include: Vec::new(),
            exclude: Vec::new(),
            enabled: true,
        }
    }
}

/// What happens to a watched file once its upload is verified (never before).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Type, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum AfterUpload {
    /// Leave it where it is.
    #[default]
    Leave,
    /// Move it into the folder's `move_to` sub-folder (which is not watched).
    Move,
    /// Delete it.
    Delete,
}

/// How a watched folder is doing.
#[derive(Debug, Clone, Copy, Serialize, Type, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum WatchState {
    /// Being set up (scanning).
    Starting,
    /// Watched: new files are sent.
    Watching,
    /// Gone, unreadable or not a folder; looked for every few seconds, watched again when
    /// back.
    Unavailable,
    /// Paused in the settings.
    Paused,
}

/// The state of one watched folder, for its entry in the settings.
#[derive(Debug, Clone, Serialize, Type, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WatchStatus {
    /// The folder, as in the settings.
    pub path: String,
    pub state: WatchState,
    /// What is wrong, while `Unavailable`.
    pub problem: Option<String>,
    /// Files sent and verified since the watch started.
    pub sent: u32,
}

/// The watched folders' states changed (all of them are sent; there are few).
#[derive(Debug, Clone, Serialize, Type, tauri_specta::Event)]
pub struct WatchStatusChanged(pub Vec<WatchStatus>);

/// About the app.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    pub version: String,
    pub data_dir: String,
    pub log_file: String,
}

/// The sign-in changed behind the UI's back (the saved one was revoked or expired).
#[derive(Debug, Clone, Serialize, Type, tauri_specta::Event)]
pub struct SessionChanged(pub SessionInfo);

/// A single sign-on ended: signed in (`problem` is `None`; a [`SessionChanged`] follows), or
/// why not.
#[derive(Debug, Clone, Serialize, Type, tauri_specta::Event)]
#[serde(rename_all = "camelCase")]
pub struct SsoFinished {
    pub problem: Option<String>,
}

/// The machine's policy as the UI shows it (`docs/POLICY.md`).
#[derive(Debug, Clone, Serialize, Type, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInfo {
    /// Where the policy in force came from; `None`: no policy.
    pub origin: Option<String>,
    /// The file name of `origin`, for "Set by your organisation (policy.json)".
    pub file_name: Option<String>,
    /// The locked settings: `server`, `parallel_parts`, `bandwidth`, `notifications`,
    /// `autostart`, `watched_folders`, `sign_out`.
    pub locked: Vec<String>,
    /// The service the policy names.
    pub server: Option<String>,
    pub server_locked: bool,
    /// `false`: the sign-in screen is not shown; the organisation signs this computer in (or,
    /// with `sso`, the browser opens by itself).
    pub sign_in_screen: bool,
    /// People sign in through the organisation's single sign-on (`sign_in.mode = "sso"`).
    pub sso: bool,
    pub sign_out_locked: bool,
    /// The policy's watched folders: always watched, not the person's to change.
    pub folders: Vec<WatchedFolder>,
    /// The policy as it is now cannot be used.
    pub problem: Option<PolicyProblem>,
}

/// Why the policy as it is now is not in force.
#[derive(Debug, Clone, Serialize, Type, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyProblem {
    /// The policy file (or registry key).
    pub origin: String,
    /// The field that is wrong (`limits.parallel_parts`); empty when the whole file is.
    pub field: String,
    /// The whole message, file and field included.
    pub message: String,
    /// The last good policy is still in force (else none is).
    pub last_good_in_force: bool,
}

/// The policy in force changed (read again after its file changed).
#[derive(Debug, Clone, Serialize, Type, tauri_specta::Event)]
pub struct PolicyChanged(pub PolicyInfo);
