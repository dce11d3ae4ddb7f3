//! `valet watch`: watch folders and upload what is dropped into them, once, when complete.
//!
//! Glue only: the watch and the uploads are `valet_engine::watch`; this turns its events into
//! lines (human or `--json`) and stops on SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use valet_engine::policy::{PolicyState, Setting};
use valet_engine::watch::{
    self, AfterUpload, FolderWatch, WatchEvent, WatchOptions, WatchedFolder,
};
use valet_engine::{Engine, Events, Journal, PutOptions, RetryPolicy};

/// Parts of one file sent at once: with `--parallel` files at once, part buffers stay within
/// `--parallel × (PARTS_PER_FILE + 2) × part size`.
const PARTS_PER_FILE: usize = 2;

#[derive(Args)]
pub struct WatchArgs {
    /// Folders to watch, with everything under them
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Folder under your prefix in the store; a file's sub-folders follow it
    #[arg(long, value_name = "PREFIX")]
    to: Option<String>,
    /// How long a file must stay unchanged before it is uploaded, e.g. 3s, 500ms
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Upload only files whose path under DIR matches (repeatable; `*` matches `/` too)
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Never upload files whose path under DIR matches (repeatable)
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Also upload dotfiles and files in dot-folders
    #[arg(long)]
    hidden: bool,
    /// After a verified upload: leave, move:SUBDIR (into DIR/SUBDIR, not watched) or delete
    #[arg(long, value_name = "ACTION", default_value = "leave", value_parser = parse_after)]
    after_upload: AfterUpload,
    /// Files uploaded at once (each sends 2 parts at once)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// Preferred part size, e.g. 8MiB
    #[arg(long, value_name = "SIZE", value_parser = crate::size::parse_bytes)]
    part_size: Option<u64>,
    /// Bandwidth limit for all uploads together, bytes per second (e.g. 4MiB; 0: none)
    #[arg(long, value_name = "RATE", value_parser = crate::size::parse_bytes)]
    bwlimit: Option<u64>,
    /// One JSON object a line per event on stdout
    #[arg(long)]
    json: bool,
}

fn parse_after(text: &str) -> Result<AfterUpload, String> {
    AfterUpload::parse(text).map_err(|e| e.to_string())
}

/// Runs until SIGINT or SIGTERM; exit 0 then. Setup errors are returned (exit 2).
pub async fn watch(
    data_dir: &Path,
    args: WatchArgs,
    policy: &PolicyState,
) -> anyhow::Result<ExitCode> {
    crate::policy::refuse_locked(policy, Setting::WatchedFolders, "valet watch")?;
    for dir in &args.dirs {
        let meta = std::fs::metadata(dir).with_context(|| format!("{}", dir.display()))?;
        anyhow::ensure!(meta.is_dir(), "{} is not a folder", dir.display());
    }
    let mut session = crate::session(data_dir, policy)?;
    // The watch tries a failed file again itself, with backoff and without end: a service call
    // need not hold an upload slot for minutes first.
    session.set_retry_policy(RetryPolicy {
        max_attempts: 5,
        deadline: Duration::from_secs(30),
        ..RetryPolicy::default()
    });
    match session.me().await {
        Ok(_) => {}
        Err(e) if e.is_sign_in() => return Err(anyhow::Error::new(e).context("signing in")),
        // The service may be down now: files wait and go when it is back.
        Err(e) => eprintln!("valet: the service cannot be reached now ({e}); watching anyway"),
    }
    let journal = Journal::open_in(data_dir)?;
    let engine = Arc::new(Engine::new(session, journal.clone()));
    crate::policy::apply(policy, &engine);

    let folders = args
        .dirs
        .iter()
        .map(|dir| WatchedFolder {
            path: dir.clone(),
            prefix: args.to.clone(),
        })
        .collect();
    let mut options = WatchOptions::new(data_dir.to_path_buf(), folders);
    options.settle = args.settle;
    options.include = args.include.clone();
    options.exclude = args.exclude.clone();
    options.hidden = args.hidden;
    options.after_upload = args.after_upload.clone();
    options.ready_capacity = usize::from(args.parallel);
    options.journal = Some(journal);

    let mut put = PutOptions {
        parallel: PARTS_PER_FILE,
        limit: crate::policy::bandwidth(policy, args.bwlimit)?,
        ..PutOptions::default()
    };
    if let Some(part_size) = args.part_size {
        put.part_size = part_size;
    }

    let (watch, ready, mut events) = FolderWatch::start(options)?;
    let uploads = tokio::spawn(watch::upload_ready(
        engine,
        ready,
        put,
        usize::from(args.parallel),
        Events::none(),
    ));
    let json = args.json;
    let printing = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Some(line) = event_line(&event, json) {
                println!("{line}");
            }
        }
    });
    stop_signal().await?;
    watch.stop().await;
    uploads.abort();
    let _ = uploads.await;
    let _ = printing.await;
    if json {
        println!("{}", json!({ "event": "stopped" }));
    } else {
        eprintln!("stopped");
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("listening for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("listening for Ctrl-C")?;
    Ok(())
}

/// One output line for an event, or `None` for events only `--json` shows.
fn event_line(event: &WatchEvent, json: bool) -> Option<String> {
    let shown = |path: &Path| path.display().to_string();
    let line = match (event, json) {
        (
            WatchEvent::Watching {
                root,
                files,
                already_sent,
            },
            true,
        ) => json!({
            "event": "watching", "root": shown(root), "files": files, "already_sent": already_sent,
        }),
        (
            WatchEvent::Watching {
                root,
                files,
                already_sent,
            },
            false,
        ) => {
            return Some(format!(
                "watching  {} ({files} files, {already_sent} sent before)",
                shown(root)
            ));
        }
        (WatchEvent::Seen { path }, true) => json!({ "event": "seen", "path": shown(path) }),
        (WatchEvent::Queued { path }, true) => json!({ "event": "queued", "path": shown(path) }),
        (WatchEvent::Seen { .. } | WatchEvent::Queued { .. }, false) => return None,
        (WatchEvent::Waiting { path, reason }, true) => {
            json!({ "event": "waiting", "path": shown(path), "reason": reason })
        }
        (WatchEvent::Waiting { path, reason }, false) => {
            return Some(format!("waiting   {}: {reason}", shown(path)));
        }
        (
            WatchEvent::Sent {
                path,
                object_key,
                size,
                sha256,
            },
            true,
        ) => json!({
            "event": "sent", "path": shown(path), "object": object_key, "size": size,
            "sha256": sha256, "verified": true,
        }),
        (
            WatchEvent::Sent {
                path,
                object_key,
                size,
                sha256,
            },
            false,
        ) => {
            return Some(format!(
                "sent      {} -> {object_key} ({size} bytes, sha256 {sha256})",
                shown(path)
            ));
        }
        (
            WatchEvent::Duplicate {
                path,
                same_as,
                object_key,
            },
            true,
        ) => json!({
            "event": "duplicate", "path": shown(path), "same_as": shown(same_as),
            "object": object_key,
        }),
        (
            WatchEvent::Duplicate {
                path,
                same_as,
                object_key,
            },
            false,
        ) => {
            return Some(format!(
                "duplicate {}: already sent as {object_key} (from {})",
                shown(path),
                shown(same_as)
            ));
        }
        (
            WatchEvent::Failed {
                path,
                code,
                message,
                retry_in,
            },
            true,
        ) => json!({
            "event": "failed", "path": shown(path),
            "error": { "code": code, "message": message },
            "retry_in_secs": retry_in.map(|d| d.as_secs_f64()),
        }),
        (
            WatchEvent::Failed {
                path,
                code,
                message,
                retry_in,
            },
            false,
        ) => {
            let next = match retry_in {
                Some(delay) => format!("trying again in {}", humantime::format_duration(*delay)),
                None => "tried again when it changes".into(),
            };
            return Some(format!(
                "FAILED    {}: {message} [{code}]; {next}",
                shown(path)
            ));
        }
        (WatchEvent::Moved { path, to }, true) => {
            json!({ "event": "moved", "path": shown(path), "to": shown(to) })
        }
        (WatchEvent::Moved { path, to }, false) => {
            return Some(format!("moved     {} -> {}", shown(path), shown(to)));
        }
        (WatchEvent::Deleted { path }, true) => json!({ "event": "deleted", "path": shown(path) }),
        (WatchEvent::Deleted { path }, false) => {
            return Some(format!("deleted   {}", shown(path)));
        }
        (WatchEvent::AfterUploadSkipped { path, reason }, true) => json!({
            "event": "after_upload_skipped", "path": shown(path), "reason": reason,
        }),
        (WatchEvent::AfterUploadSkipped { path, reason }, false) => {
            return Some(format!("left      {}: {reason}", shown(path)));
        }
        (WatchEvent::FolderMissing { root, reason }, true) => {
            json!({ "event": "folder_missing", "root": shown(root), "reason": reason })
        }
        (WatchEvent::FolderMissing { root, reason }, false) => {
            return Some(format!(
                "MISSING   {}: {reason}; watching for it to come back",
                shown(root)
            ));
        }
        (WatchEvent::FolderBack { root }, true) => {
            json!({ "event": "folder_back", "root": shown(root) })
        }
        (WatchEvent::FolderBack { root }, false) => {
            return Some(format!("back      {}", shown(root)));
        }
        (WatchEvent::Rescan { reason }, true) => json!({ "event": "rescan", "reason": reason }),
        (WatchEvent::Rescan { reason }, false) => {
            return Some(format!("rescan    {reason}"));
        }
        (other, _) => {
            tracing::debug!(event = ?other, "an event this version does not print");
            return None;
        }
    };
    Some(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_lines_carry_what_scripts_need() {
        let event = WatchEvent::Sent {
            path: "/w/a.pdf".into(),
            object_key: "users/u/a.pdf".into(),
            size: 3,
            sha256: "ab".into(),
        };
        let line: serde_json::Value =
            serde_json::from_str(&event_line(&event, true).unwrap()).unwrap();
        assert_eq!(line["event"], "sent");
        assert_eq!(line["object"], "users/u/a.pdf");
        assert_eq!(line["verified"], true);
        let human = event_line(&event, false).unwrap();
        assert!(
            human.starts_with("sent ") && human.contains("users/u/a.pdf"),
            "{human}"
        );
        assert_eq!(
            event_line(
                &WatchEvent::Seen {
                    path: "/w/a".into()
                },
                false
            ),
            None,
            "only --json shows every file seen"
        );
    }
}
