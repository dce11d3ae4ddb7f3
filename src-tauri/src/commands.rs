//! The commands the web UI calls: each one a thin call into [`AppState`] or the engine. Their
//! TypeScript twins are generated into `ui/src/lib/bindings.ts`.

use std::path::PathBuf;

use tauri::{AppHandle, Manager as _, State};
use tauri_specta::Event as _;
use valet_engine::SecretString;

use crate::app::AppState;
use crate::dto::{
    AddResult, AppInfo, PolicyInfo, SessionChanged, SessionInfo, Settings, SsoFinished,
    TransfersChanged, UiError, WatchStatus,
};
use crate::{diagnostics, logging, platform};

type Reply<T> = Result<T, UiError>;

#[tauri::command]
#[specta::specta]
pub fn session_info(state: State<'_, AppState>) -> SessionInfo {
    state.session_info()
}

#[tauri::command]
#[specta::specta]
pub async fn sign_in(
    state: State<'_, AppState>,
    server: String,
    user: String,
    password: String,
) -> Reply<SessionInfo> {
    state
        .sign_in(&server, &user, SecretString::from(password))
        .await
}

/// Starts a single sign-on with `server`: opens the organisation's sign-in page in the
/// browser and answers its address (shown too, for a computer whose browser did not open).
/// The outcome arrives as [`SsoFinished`] (and [`SessionChanged`] when signed in).
#[tauri::command]
#[specta::specta]
pub async fn sso_start(
    app: AppHandle,
    state: State<'_, AppState>,
    server: String,
) -> Reply<String> {
    let sign_in = state.begin_sso(&server).await?;
    let url = sign_in.authorization_url().to_string();
    platform::open_in_browser(&url);
    let handle = app.clone();
    let task = tauri::async_runtime::spawn(async move {
        let state = handle.state::<AppState>();
        let problem = state.await_sso(sign_in).await.err().map(|e| {
            tracing::warn!(code = %e.code, "single sign-on did not complete: {}", e.message);
            e.message
        });
        let signed_in = problem.is_none();
        let told = SsoFinished { problem }.emit(&handle).and_then(|()| {
            if signed_in {
                SessionChanged(state.session_info()).emit(&handle)
            } else {
                Ok(())
            }
        });
        if let Err(e) = told {
            tracing::debug!(error = %e, "the UI is not listening");
        }
    });
    state.set_sso_task(task);
    Ok(url)
}

/// Ends the single sign-on under way (the person pressed Cancel).
#[tauri::command]
#[specta::specta]
pub fn sso_cancel(state: State<'_, AppState>) -> bool {
    state.cancel_sso()
}

#[tauri::command]
#[specta::specta]
pub async fn sign_out(state: State<'_, AppState>) -> Reply<()> {
    state.sign_out().await
}

/// Adds files and folders (recursively): what the drop zone and "Add files" both call.
#[tauri::command]
#[specta::specta]
pub async fn add_paths(
    state: State<'_, AppState>,
    paths: Vec<String>,
    folder: Option<String>,
) -> Reply<AddResult> {
    let folder = folder
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty());
    let paths = paths.into_iter().map(PathBuf::from).collect();
    let added = state.transfers()?.add(paths, folder).await?;
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(AddResult {
        added: n(added.added.len()),
        already_listed: n(added.already_listed),
        unreadable: n(added.unreadable),
    })
}

/// Opens the system's file picker (files, or one folder) and adds what was picked.
#[tauri::command]
#[specta::specta]
pub async fn pick_and_add(
    app: AppHandle,
    state: State<'_, AppState>,
    folders: bool,
    folder: Option<String>,
) -> Reply<AddResult> {
    let picked = platform::pick_paths(&app, folders).await;
    if picked.is_empty() {
        return Ok(AddResult {
            added: 0,
            already_listed: 0,
            unreadable: 0,
        });
    }
    let paths = picked.iter().map(|p| p.display().to_string()).collect();
    add_paths(state, paths, folder).await
}

#[tauri::command]
#[specta::specta]
pub fn pause(state: State<'_, AppState>, id: u64) -> Reply<()> {
    Ok(state.transfers()?.pause(id)?)
}

#[tauri::command]
#[specta::specta]
pub fn resume(state: State<'_, AppState>, id: u64) -> Reply<()> {
    Ok(state.transfers()?.resume(id)?)
}

#[tauri::command]
#[specta::specta]
pub fn cancel(state: State<'_, AppState>, id: u64) -> Reply<()> {
    Ok(state.transfers()?.cancel(id)?)
}

#[tauri::command]
#[specta::specta]
pub fn retry(state: State<'_, AppState>, id: u64) -> Reply<()> {
    Ok(state.transfers()?.retry(id)?)
}

#[tauri::command]
#[specta::specta]
pub fn pause_all(state: State<'_, AppState>) -> Reply<()> {
    state.transfers()?.pause_all();
    Ok(())
}

#[tauri::command]
#[specta::specta]
pub fn resume_all(state: State<'_, AppState>) -> Reply<()> {
    state.transfers()?.resume_all();
    Ok(())
}

#[tauri::command]
#[specta::specta]
pub fn cancel_all(state: State<'_, AppState>) -> Reply<()> {
    state.transfers()?.cancel_all();
    Ok(())
}

#[tauri::command]
#[specta::specta]
pub fn clear_finished(state: State<'_, AppState>) -> Reply<u32> {
    Ok(u32::try_from(state.transfers()?.clear_finished()).unwrap_or(u32::MAX))
}

/// What changed in the list since `version` (0: all of it). The UI calls this once at start
/// and to catch up; afterwards the `TransfersChanged` event brings changes a few times a
/// second.
#[tauri::command]
#[specta::specta]
pub fn transfers_since(state: State<'_, AppState>, version: u64) -> Reply<TransfersChanged> {
    Ok(TransfersChanged::new(
        version,
        state.transfers()?.changes_since(version),
    ))
}

#[tauri::command]
#[specta::specta]
pub fn get_settings(state: State<'_, AppState>) -> Settings {
    state.settings()
}

#[tauri::command]
#[specta::specta]
pub fn set_settings(
    app: AppHandle,
    state: State<'_, AppState>,
    settings: Settings,
) -> Reply<Settings> {
    let before = state.settings();
    let saved = state.set_settings(settings)?;
    if saved.start_at_login != before.start_at_login {
        platform::set_start_at_login(&app, saved.start_at_login)?;
    }
    Ok(saved)
}

/// The machine's policy: what it locks, its folders, a problem with it (afterwards the
/// `PolicyChanged` event says when that changes).
#[tauri::command]
#[specta::specta]
pub fn policy_info(state: State<'_, AppState>) -> PolicyInfo {
    state.policy_info()
}

/// Opens the system's folder picker to choose a folder to watch; its path, or `None` when the
/// person cancelled. The folder is watched once the settings are saved.
#[tauri::command]
#[specta::specta]
pub async fn pick_watch_folder(app: AppHandle) -> Option<String> {
    platform::pick_folder(&app, "Choose a folder to watch")
        .await
        .map(|p| p.display().to_string())
}

/// How each watched folder is doing (afterwards the `WatchStatusChanged` event says when
/// that changes).
#[tauri::command]
#[specta::specta]
pub fn watch_status(state: State<'_, AppState>) -> Vec<WatchStatus> {
    state.watch_statuses()
}

/// Writes the diagnostics archive to `dest`, or where the person picks when `dest` is
/// `None`; the path written, or `None` when the person cancelled the picker.
#[tauri::command]
#[specta::specta]
pub async fn export_diagnostics(
    app: AppHandle,
    state: State<'_, AppState>,
    dest: Option<String>,
) -> Reply<Option<String>> {
    let dest = match dest {
        Some(dest) => PathBuf::from(dest),
        None => match platform::pick_save_path(&app, "valet-upload-diagnostics.zip").await {
            Some(dest) => dest,
            None => return Ok(None),
        },
    };
    let data_dir = state.data_dir.clone();
    let settings = state.settings();
    let secrets = platform::known_secrets(&data_dir);
    let written = tauri::async_runtime::spawn_blocking(move || {
        let logs_dir = logging::logs_dir(&data_dir);
        let inputs = diagnostics::Inputs {
            data_dir: &data_dir,
            logs_dir: &logs_dir,
            settings: &settings,
            secrets,
        };
        diagnostics::export(&inputs, &dest)
    })
    .await
    .map_err(|e| UiError::new("diagnostics", format!("export stopped: {e}")))??;
    Ok(Some(written.display().to_string()))
}

#[tauri::command]
#[specta::specta]
pub fn copy_text(app: AppHandle, text: String) -> Reply<()> {
    platform::copy_text(&app, text)
}

#[tauri::command]
#[specta::specta]
pub fn app_info(state: State<'_, AppState>) -> AppInfo {
    AppInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        data_dir: state.data_dir.display().to_string(),
        log_file: state.log_file.display().to_string(),
    }
}

/// The UI drew its first screen: logged, and printed on stdout for the start-up benchmark
/// (`bench/desktop.sh`), which times it from outside the process.
#[tauri::command]
#[specta::specta]
pub fn ui_ready() {
    tracing::info!("first screen drawn");
    println!("valet-upload: first paint");
}
