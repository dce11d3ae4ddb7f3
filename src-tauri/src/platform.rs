//! What differs between desktop and mobile: the tray, notifications, start at login, single
//! instance and the clipboard exist only on desktop (`cfg(desktop)`); on mobile the same calls
//! do what the platform allows. docs/MOBILE.md lists what a mobile build still needs.

use std::path::{Path, PathBuf};

use tauri::{AppHandle, Runtime};
use tauri_plugin_dialog::DialogExt;
use valet_engine::{ExposeSecret, OsKeyring, SecretStore, SignIn};

use crate::dto::{Totals, UiError};

/// Files (or one folder) picked in the system's dialog; empty when cancelled.
pub async fn pick_paths<R: Runtime>(app: &AppHandle<R>, folders: bool) -> Vec<PathBuf> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let dialog = app.dialog().file().set_title(if folders {
        "Add a folder to upload"
    } else {
        "Add files to upload"
    });
    if folders {
        dialog.pick_folder(move |f| {
            let _ = tx.send(f.into_iter().collect::<Vec<_>>());
        });
    } else {
        dialog.pick_files(move |f| {
            let _ = tx.send(f.unwrap_or_default());
        });
    }
    rx.await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.into_path().ok())
        .collect()
}

/// One folder picked in the system's dialog titled `title`; `None` when cancelled.
pub async fn pick_folder<R: Runtime>(app: &AppHandle<R>, title: &str) -> Option<PathBuf> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog().file().set_title(title).pick_folder(move |f| {
        let _ = tx.send(f);
    });
    rx.await.ok().flatten().and_then(|f| f.into_path().ok())
}

/// Where to save a file, picked in the system's dialog.
pub async fn pick_save_path<R: Runtime>(app: &AppHandle<R>, name: &str) -> Option<PathBuf> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog()
        .file()
        .set_file_name(name)
        .add_filter("Zip archive", &["zip"])
        .save_file(move |f| {
            let _ = tx.send(f);
        });
    rx.await.ok().flatten().and_then(|f| f.into_path().ok())
}

/// The secrets this app knows of, for the diagnostics redaction: the saved refresh token and
/// an API token from the environment.
pub fn known_secrets(data_dir: &Path) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Ok(Some(sign_in)) = SignIn::load(data_dir)
        && let Ok(Some(token)) = OsKeyring.get(&sign_in.keyring_account())
    {
        secrets.push(token.expose_secret().to_owned());
    }
    if let Ok(token) = std::env::var("VALET_TOKEN") {
        secrets.push(token);
    }
    secrets
}

#[cfg(desktop)]
pub use desktop::*;
#[cfg(mobile)]
pub use mobile::*;

#[cfg(desktop)]
mod desktop {
    use tauri::menu::{Menu, MenuItem};
    use tauri::tray::{TrayIcon, TrayIconBuilder};
    use tauri::{AppHandle, Manager, Runtime, WindowEvent};
    use tauri_plugin_autostart::{MacosLauncher, ManagerExt as _};
    use tauri_plugin_clipboard_manager::ClipboardExt;
    use tauri_plugin_notification::NotificationExt;

    use super::{Totals, UiError};
    use crate::app::AppState;

    /// The argument autostart passes: start in the tray, no window.
    pub const MINIMIZED_ARG: &str = "--minimized";
    const TRAY_ID: &str = "main";

    /// Desktop-only plugins. Single instance comes first: a second launch hands its
    /// arguments to the running app, which shows its window, and exits.
    pub fn plugins<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
        builder
            .plugin(tauri_plugin_single_instance::init(|app, args, cwd| {
                show_window(app);
                crate::add_from_args(app, args, cwd.into());
            }))
            .plugin(tauri_plugin_autostart::init(
                MacosLauncher::LaunchAgent,
                Some(vec![MINIMIZED_ARG]),
            ))
            .plugin(tauri_plugin_notification::init())
            .plugin(tauri_plugin_clipboard_manager::init())
            .on_window_event(|window, event| {
                // Closing the window keeps the app (and its uploads) running in the tray.
                if let WindowEvent::CloseRequested { api, .. } = event
                    && window.label() == "main"
                {
                    api.prevent_close();
                    let _ = window.hide();
                }
            })
    }

    /// The tray icon and its menu; hides the window when started by autostart.
    pub fn setup<R: Runtime>(app: &tauri::App<R>) -> tauri::Result<()> {
        let show = MenuItem::with_id(app, "show", "Show Valet Upload", true, None::<&str>)?;
        let pause = MenuItem::with_id(app, "pause_all", "Pause all", true, None::<&str>)?;
        let resume = MenuItem::with_id(app, "resume_all", "Resume all", true, None::<&str>)?;
        let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
        let menu = Menu::with_items(app, &[&show, &pause, &resume, &quit])?;
        let mut tray = TrayIconBuilder::with_id(TRAY_ID)
            .menu(&menu)
            .tooltip("Valet Upload")
            .on_menu_event(|app, event| match event.id.as_ref() {
                "show" => show_window(app),
                "pause_all" => with_transfers(app, |t| t.pause_all()),
                "resume_all" => with_transfers(app, |t| t.resume_all()),
                "quit" => app.exit(0),
                _ => {}
            });
        if let Some(icon) = app.default_window_icon() {
            tray = tray.icon(icon.clone());
        }
        // No tray on this desktop (no status notifier host) is not fatal: the window stays.
        if let Err(e) = tray.build(app) {
            tracing::warn!(error = %e, "no tray icon on this desktop");
        }
        if std::env::args().any(|a| a == MINIMIZED_ARG)
            && let Some(window) = app.get_webview_window("main")
        {
            let _ = window.hide();
        }
        Ok(())
    }

    fn with_transfers<R: Runtime>(
        app: &AppHandle<R>,
        f: impl FnOnce(&valet_engine::transfers::Transfers),
    ) {
        if let Some(t) = app.state::<AppState>().transfers_if_signed_in() {
            f(&t);
        }
    }

    pub fn show_window<R: Runtime>(app: &AppHandle<R>) {
        if let Some(window) = app.get_webview_window("main") {
            let _ = window.unminimize();
            let _ = window.show();
            let _ = window.set_focus();
        }
    }

    /// Overall progress on the tray icon (tooltip, and the label beside it where the desktop
    /// shows one).
    pub fn show_progress<R: Runtime>(app: &AppHandle<R>, totals: &Totals) {
        let Some(tray): Option<TrayIcon<R>> = app.tray_by_id(TRAY_ID) else {
            return;
        };
        let busy = totals.running + totals.queued;
        let (tooltip, title) = if busy == 0 {
            ("Valet Upload: idle".to_owned(), String::new())
        } else {
            let percent = (totals.bytes_done as f64 * 100.0 / totals.bytes_total.max(1) as f64)
                .floor()
                .min(100.0);
            (
                format!(
                    "Valet Upload: {percent:.0}% — {busy} file{} to go",
                    if busy == 1 { "" } else { "s" }
                ),
                format!("{percent:.0}%"),
            )
        };
        let _ = tray.set_tooltip(Some(&tooltip));
        let _ = tray.set_title(Some(&title));
    }

    /// An OS notification; failures (no notification service) are logged, not shown.
    pub fn notify<R: Runtime>(app: &AppHandle<R>, title: &str, body: &str) {
        if let Err(e) = app.notification().builder().title(title).body(body).show() {
            tracing::info!(error = %e, "could not show a notification");
        }
    }

    pub fn set_start_at_login<R: Runtime>(app: &AppHandle<R>, on: bool) -> Result<(), UiError> {
        let autolaunch = app.autolaunch();
        let result = if on {
            autolaunch.enable()
        } else {
            autolaunch.disable()
        };
        result.map_err(|e| UiError::new("autostart", format!("cannot change start at login: {e}")))
    }

    pub fn copy_text<R: Runtime>(app: &AppHandle<R>, text: String) -> Result<(), UiError> {
        app.clipboard()
            .write_text(text)
            .map_err(|e| UiError::new("clipboard", format!("cannot copy: {e}")))
    }

    /// Opens `url` in the system browser (single sign-on). A computer without one still has
    /// the address on the screen, so a failure is only logged.
    pub fn open_in_browser(url: &str) {
        if let Err(e) = open::that_detached(url) {
            tracing::info!(error = %e, "could not open a browser; the address is on the screen");
        }
    }
}

#[cfg(mobile)]
mod mobile {
    use tauri::{AppHandle, Runtime};

    use super::{Totals, UiError};

    pub fn plugins<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
        builder
    }

    pub fn setup<R: Runtime>(_app: &tauri::App<R>) -> tauri::Result<()> {
        Ok(())
    }

    pub fn show_progress<R: Runtime>(_app: &AppHandle<R>, _totals: &Totals) {}

    pub fn notify<R: Runtime>(_app: &AppHandle<R>, title: &str, body: &str) {
        tracing::info!(title, body, "notification (not shown on this platform yet)");
    }

    pub fn set_start_at_login<R: Runtime>(_app: &AppHandle<R>, _on: bool) -> Result<(), UiError> {
        Err(UiError::new(
            "unsupported",
            "start at login is a desktop setting",
        ))
    }

    pub fn copy_text<R: Runtime>(_app: &AppHandle<R>, _text: String) -> Result<(), UiError> {
        Err(UiError::new("unsupported", "copy from the page instead"))
    }

    /// Mobile needs the opener plugin's in-app browser tab here (docs/MOBILE.md).
    pub fn open_in_browser(_url: &str) {
        tracing::info!("no browser to open on this platform yet; the address is on the screen");
    }
}
