//! Valet Upload's desktop app: a thin Tauri shell over `valet-engine`. It wires the engine's
//! transfer list and folder watch to the web UI (`ui/`), the tray, notifications, start at
//! login and single instance. No upload logic lives here.
//!
//! ```text
//!  ui (Svelte) ──commands──▶ commands.rs ──▶ AppState ──▶ valet_engine::transfers
//!      ▲                                                       │
//!      └──── TransfersChanged (pump.rs, 4 per second) ◀────────┘
//! ```

mod app;
mod commands;
mod diagnostics;
mod dto;
mod logging;
mod platform;
mod policy;
mod pump;
mod settings;
#[cfg(desktop)]
mod watching;

use std::path::PathBuf;
use std::sync::Arc;

use tauri::{Manager, Runtime};
use tauri_specta::Event as _;

use crate::app::AppState;

/// The commands and events the UI may use; `ui/src/lib/bindings.ts` is generated from this.
pub fn bindings() -> tauri_specta::Builder<tauri::Wry> {
    use commands::*;
    tauri_specta::Builder::<tauri::Wry>::new()
        .commands(tauri_specta::collect_commands![
            session_info,
            sign_in,
            sso_start,
            sso_cancel,
            sign_out,
            add_paths,
            pick_and_add,
            pause,
            resume,
            cancel,
            retry,
            pause_all,
            resume_all,
            cancel_all,
            clear_finished,
            transfers_since,
            get_settings,
            policy_info,
            set_settings,
            pick_watch_folder,
            watch_status,
            export_diagnostics,
            copy_text,
            app_info,
            ui_ready,
        ])
        .events(tauri_specta::collect_events![
            dto::TransfersChanged,
            dto::SessionChanged,
            dto::WatchStatusChanged,
            dto::PolicyChanged,
            dto::SsoFinished
        ])
        // Sizes and ids stay far below 2^53, where a JavaScript number is exact.
        .dangerously_cast_bigints_to_number()
        // One TypeScript type per Rust type: these types only travel one way.
        .disable_serde_phases()
}

/// The data directory: `VALET_DATA_DIR`, else the OS's (shared with the `valet` CLI, so a
/// sign-in and unfinished uploads are the same in both).
fn data_dir() -> PathBuf {
    std::env::var_os("VALET_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| valet_engine::default_data_dir().ok())
        .unwrap_or_else(|| std::env::temp_dir().join("valet-upload"))
}

#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    valet_engine::install_tls_provider();
    let data_dir = data_dir();
    if let Err(e) = valet_engine::ensure_data_dir(&data_dir) {
        eprintln!("valet-upload: {e}");
    }
    let _log_guard = logging::init(&data_dir);
    let log_file = logging::logs_dir(&data_dir).join(logging::LOG_PREFIX);
    let bindings = bindings();

    let builder = platform::plugins(tauri::Builder::default());
    let result = builder
        .plugin(tauri_plugin_dialog::init())
        .invoke_handler(bindings.invoke_handler())
        .setup(move |app| {
            bindings.mount_events(app);
            let keyring = Arc::new(valet_engine::OsKeyring);
            let (state, problem) = tauri::async_runtime::block_on(async {
                AppState::open(data_dir, log_file, keyring)
            });
            if let Some(problem) = problem {
                tracing::warn!(code = %problem.code, "{}", problem.message);
                state.sign_in_failed(problem.message);
            }
            app.manage(state);
            platform::setup(app)?;
            follow_policy(app.handle().clone());
            let cwd = std::env::current_dir().unwrap_or_default();
            add_from_args(app.handle(), std::env::args().collect(), cwd);
            check_sign_in(app.handle().clone());
            pump::spawn(app.handle().clone());
            Ok(())
        })
        .run(tauri::generate_context!());
    if let Err(e) = result {
        tracing::error!(error = %e, "the app stopped");
        eprintln!("valet-upload: {e}");
        std::process::exit(1);
    }
}

/// Adds the files named on the command line (`valet-upload FILE...`, or a second launch that
/// handed its arguments to this one), relative to `cwd`.
pub(crate) fn add_from_args<R: Runtime>(
    app: &tauri::AppHandle<R>,
    args: Vec<String>,
    cwd: PathBuf,
) {
    let paths: Vec<PathBuf> = args
        .into_iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| cwd.join(a))
        .collect();
    if paths.is_empty() {
        return;
    }
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState>();
        let added = match state.transfers() {
            Ok(transfers) => transfers.add(paths, None).await.map_err(dto::UiError::from),
            Err(e) => Err(e),
        };
        match added {
            Ok(added) => tracing::info!(files = added.added.len(), "added from the command line"),
            Err(e) => {
                tracing::warn!(code = %e.code, "files on the command line not added: {}", e.message)
            }
        }
    });
}

/// Applies the machine's policy at start and again at every change of it, and tells the UI.
fn follow_policy<R: Runtime>(app: tauri::AppHandle<R>) {
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState>();
        let mut changes = state.policy_changes();
        changes.mark_unchanged();
        apply_autostart(&app, &state);
        let mut retry_enrollment = enroll_if_managed(&app).await;
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                // The service was not reachable for enrollment: try again now and then.
                () = tokio::time::sleep(ENROLL_RETRY), if retry_enrollment => {
                    retry_enrollment = enroll_if_managed(&app).await;
                    continue;
                }
            }
            state.apply_policy();
            apply_autostart(&app, &state);
            retry_enrollment = enroll_if_managed(&app).await;
            let told = dto::PolicyChanged(state.policy_info())
                .emit(&app)
                .and_then(|()| dto::SessionChanged(state.session_info()).emit(&app));
            if let Err(e) = told {
                tracing::debug!(error = %e, "the UI is not listening");
            }
        }
    });
}

/// How long a managed computer waits to enroll again after the service could not be reached.
const ENROLL_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Enrolls a managed computer that has never been signed in; a failure is shown on the
/// sign-in screen (the waiting screen of a managed computer). True when it should be tried
/// again later (the network or the service was down).
async fn enroll_if_managed<R: Runtime>(app: &tauri::AppHandle<R>) -> bool {
    let state = app.state::<AppState>();
    let mut retry = false;
    let problem = match state.enroll_if_managed().await {
        Ok(false) => return false,
        Ok(true) => None,
        Err(e) => {
            tracing::warn!(code = %e.code, "enrollment failed: {}", e.message);
            retry = matches!(
                e.code.as_str(),
                "network" | "retries_exhausted" | "store_unavailable" | "rate_limited" | "internal"
            );
            Some(e.message)
        }
    };
    if let Some(problem) = problem {
        state.sign_in_failed(problem);
    }
    if let Err(e) = dto::SessionChanged(state.session_info()).emit(app) {
        tracing::debug!(error = %e, "the UI is not listening");
    }
    retry
}

/// Start at login as the policy sets it, when it does.
fn apply_autostart<R: Runtime>(app: &tauri::AppHandle<R>, state: &AppState) {
    let sets = state
        .policy_state()
        .policy
        .is_some_and(|p| p.autostart.is_some());
    if sets && let Err(e) = platform::set_start_at_login(app, state.settings().start_at_login) {
        tracing::warn!(code = %e.code, "{}", e.message);
    }
}

/// Asks the service who we are with the saved sign-in. A revoked or expired sign-in sends the
/// UI to the sign-in screen with the reason; no network is fine (uploads wait for it).
fn check_sign_in<R: Runtime>(app: tauri::AppHandle<R>) {
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState>();
        let Some(transfers) = state.transfers_if_signed_in() else {
            return;
        };
        match transfers.engine().session().me().await {
            Ok(_) => tracing::info!("signed in again with the saved sign-in"),
            Err(e) if e.is_sign_in() => {
                tracing::warn!(error = %e, "the saved sign-in no longer works");
                state.sign_in_failed(e.to_string());
                let changed = dto::SessionChanged(state.session_info());
                if let Err(e) = changed.emit(&app) {
                    tracing::debug!(error = %e, "the UI is not listening");
                }
            }
            Err(e) => tracing::info!(error = %e, "the service cannot be reached yet"),
        }
    });
}

#[cfg(test)]
mod tests {
    /// The committed TypeScript bindings are what the Rust side generates now. Run with
    /// `UPDATE_BINDINGS=1` to rewrite them after changing a command or a type.
    #[test]
    fn ui_bindings_are_up_to_date() {
        let committed =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/lib/bindings.ts");
        let fresh = tempfile::NamedTempFile::new().unwrap();
        super::bindings()
            .export(
                specta_typescript::Typescript::default()
                    .header("// Generated from src-tauri by `UPDATE_BINDINGS=1 cargo test -p valet-upload`. Do not edit."),
                fresh.path(),
            )
            .expect("export bindings");
        let fresh = std::fs::read_to_string(fresh.path()).unwrap();
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            std::fs::write(&committed, &fresh).unwrap();
        }
        let current = std::fs::read_to_string(&committed).unwrap_or_default();
        assert!(
            current == fresh,
            "{} is stale: run UPDATE_BINDINGS=1 cargo test -p valet-upload",
            committed.display()
        );
    }
}
