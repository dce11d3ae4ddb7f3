//! The desktop settings a person changes (parallel parts, bandwidth limit, notifications, start
//! at login, watched folders), kept as JSON beside the journal, and how they become engine
//! options.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use valet_engine::transfers::TransferOptions;
use valet_engine::watch::{self, NameFilter};
use valet_engine::{MAX_PARALLEL, PutOptions, RateLimit};

use crate::dto::{AfterUpload, Settings, UiError, WatchedFolder};

/// File name of the settings in the data directory.
pub const SETTINGS_FILE: &str = "desktop-settings.json";

/// Most parts of one file in flight that the settings screen offers.
pub const MAX_PARALLEL_PARTS: u32 = 16;

/// Shortest and longest settle time of a watched folder, seconds. Below half a second, a
/// writer's pauses between two writes would pass for the end of the file on systems that do
/// not report closes; above an hour, a file would seem never to be sent.
pub const SETTLE_SECS: std::ops::RangeInclusive<f64> = 0.5..=3600.0;

/// The saved settings, or the defaults when there are none. A file that cannot be read or
/// parsed is an error naming the file: the app shows it rather than silently resetting.
pub fn load(data_dir: &Path) -> Result<Settings, UiError> {
    let path = data_dir.join(SETTINGS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let invalid = |e: serde_json::Error| {
                UiError::new(
                    "settings",
                    format!("{}: not valid settings: {e}", path.display()),
                )
            };
            let mut value: serde_json::Value = serde_json::from_slice(&bytes).map_err(invalid)?;
            // Files written before watched folders existed have none.
            if let Some(fields) = value.as_object_mut() {
                fields
                    .entry("watchedFolders")
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            }
            let settings: Settings = serde_json::from_value(value).map_err(invalid)?;
            check(&settings)?;
            Ok(settings)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(UiError::new(
            "settings",
            format!("{}: cannot read: {e}", path.display()),
        )),
    }
}

/// Checks and saves `settings` (written to a temporary file and renamed, so a crash never
/// leaves half a file).
pub fn save(data_dir: &Path, settings: &Settings) -> Result<PathBuf, UiError> {
    check(settings)?;
    valet_engine::ensure_data_dir(data_dir)?;
    let path = data_dir.join(SETTINGS_FILE);
    let temp = data_dir.join(format!("{SETTINGS_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(settings)
        .map_err(|e| UiError::new("settings", format!("cannot encode settings: {e}")))?;
    std::fs::write(&temp, text)
        .and_then(|()| std::fs::rename(&temp, &path))
        .map_err(|e| UiError::new("settings", format!("{}: cannot write: {e}", path.display())))?;
    Ok(path)
}

/// Refuses values the engine cannot honour, naming the setting.
pub fn check(settings: &Settings) -> Result<(), UiError> {
    if !(1..=MAX_PARALLEL_PARTS).contains(&settings.parallel_parts) {
        return Err(UiError::new(
            "invalid",
            format!(
                "parallel parts must be 1 to {MAX_PARALLEL_PARTS}, not {}",
                settings.parallel_parts
            ),
        ));
    }
    let limit = settings.bandwidth_limit_mib_s;
    if !limit.is_finite() || !(0.0..=100_000.0).contains(&limit) {
        return Err(UiError::new(
            "invalid",
            format!("the bandwidth limit must be 0 (none) to 100000 MiB/s, not {limit}"),
        ));
    }
    check_watched(&settings.watched_folders)
}

/// Trims what a person typed: paths, folders, globs (empty globs dropped).
pub fn tidy(mut settings: Settings) -> Settings {
    for folder in &mut settings.watched_folders {
        folder.path = folder.path.trim().to_owned();
        folder.to = folder.to.trim().trim_matches('/').to_owned();
        folder.move_to = folder.move_to.trim().to_owned();
        for globs in [&mut folder.include, &mut folder.exclude] {
            *globs = globs
                .iter()
                .map(|g| g.trim().to_owned())
                .filter(|g| !g.is_empty())
                .collect();
        }
    }
    settings
}

/// Each watched folder: an absolute path, watched once (not inside another one, where its
/// files would be sent twice), a settle time in [`SETTLE_SECS`], an after-upload sub-folder
/// that is one plain name, and globs that parse. Whether the folder exists is not checked
/// here: one that is missing is shown as such and watched when it is back.
fn check_watched(folders: &[WatchedFolder]) -> Result<(), UiError> {
    for (i, folder) in folders.iter().enumerate() {
        let invalid = |what: String| {
            UiError::new("invalid", format!("watched folder {}: {what}", folder.path))
        };
        let path = Path::new(&folder.path);
        if folder.path.is_empty() {
            return Err(UiError::new("invalid", "a watched folder needs a path"));
        }
        if !path.is_absolute() {
            return Err(invalid("give the full path of the folder".into()));
        }
        if let Some(other) = folders[..i]
            .iter()
            .map(|f| Path::new(&f.path))
            .find(|other| path.starts_with(other) || other.starts_with(path))
        {
            return Err(invalid(if other == path {
                "it is in the list twice".into()
            } else {
                format!(
                    "it overlaps {}, which is watched already (its files would be sent twice)",
                    other.display()
                )
            }));
        }
        let settle = folder.settle_secs;
        if !settle.is_finite() || !SETTLE_SECS.contains(&settle) {
            return Err(invalid(format!(
                "the settle time must be {} to {} seconds, not {settle}",
                SETTLE_SECS.start(),
                SETTLE_SECS.end()
            )));
        }
        let after = after_upload(folder)?;
        let skip_dir = match &after {
            watch::AfterUpload::MoveTo(dir) => Some(dir.as_str()),
            _ => None,
        };
        NameFilter::new(&folder.include, &folder.exclude, false, skip_dir)
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

/// The engine's after-upload action of a watched folder.
pub fn after_upload(folder: &WatchedFolder) -> Result<watch::AfterUpload, UiError> {
    match folder.after_upload {
        AfterUpload::Leave => Ok(watch::AfterUpload::Leave),
        AfterUpload::Delete => Ok(watch::AfterUpload::Delete),
        AfterUpload::Move => watch::AfterUpload::parse(&format!("move:{}", folder.move_to))
            .map_err(|_| {
                UiError::new(
                    "invalid",
                    format!(
                        "watched folder {}: move uploaded files into one sub-folder name \
                         (no / or ..), not {:?}",
                        folder.path, folder.move_to
                    ),
                )
            }),
    }
}

/// The engine options these settings ask for. Every upload shares `limit`, whose rate is set
/// here, so a new bandwidth limit applies at once to uploads already running too.
pub fn transfer_options(settings: &Settings, limit: &Arc<RateLimit>) -> TransferOptions {
    let bytes_per_sec = (settings.bandwidth_limit_mib_s * 1024.0 * 1024.0).round() as u64;
    limit.set_rate(if bytes_per_sec > 0 {
        bytes_per_sec
    } else {
        RateLimit::UNLIMITED
    });
    TransferOptions {
        put: PutOptions {
            parallel: (settings.parallel_parts as usize).clamp(1, MAX_PARALLEL),
            limit: Some(limit.clone()),
            ..PutOptions::default()
        },
        ..TransferOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_defaults_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Settings::default());
        let changed = Settings {
            parallel_parts: 8,
            bandwidth_limit_mib_s: 2.5,
            notifications: false,
            start_at_login: true,
            watched_folders: vec![WatchedFolder {
                path: "/home/me/Scans".into(),
                to: "scans".into(),
                settle_secs: 1.5,
                after_upload: AfterUpload::Move,
                move_to: "done".into(),
                include: vec!["*.pdf".into()],
                exclude: vec!["draft/**".into()],
                enabled: false,
            }],
        };
        save(dir.path(), &changed).unwrap();
        assert_eq!(load(dir.path()).unwrap(), changed);
        let limit = Arc::new(RateLimit::new(RateLimit::UNLIMITED));
        let options = transfer_options(&changed, &limit);
        assert_eq!(options.put.parallel, 8);
        assert_eq!(options.put.limit.unwrap().rate(), 2_621_440);
        transfer_options(&Settings::default(), &limit);
        assert_eq!(
            limit.rate(),
            RateLimit::UNLIMITED,
            "0 is no limit, on the same shared limit"
        );
    }

    #[test]
    fn bad_values_and_broken_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let too_many = Settings {
            parallel_parts: 99,
            ..Settings::default()
        };
        let e = save(dir.path(), &too_many).unwrap_err();
        assert!(e.message.contains("parallel parts"), "{}", e.message);
        let negative = Settings {
            bandwidth_limit_mib_s: -1.0,
            ..Settings::default()
        };
        assert!(check(&negative).unwrap_err().message.contains("bandwidth"));
        std::fs::write(dir.path().join(SETTINGS_FILE), b"{ not json").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.message.contains(SETTINGS_FILE), "{}", e.message);
    }
}

#[cfg(test)]
mod watched_tests {
    use super::*;

    fn folder(path: &str) -> WatchedFolder {
        WatchedFolder {
            path: path.into(),
            ..WatchedFolder::default()
        }
    }

    fn with(folders: Vec<WatchedFolder>) -> Settings {
        Settings {
            watched_folders: folders,
            ..Settings::default()
        }
    }

    #[test]
    fn files_without_watched_folders_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"parallelParts":4,"bandwidthLimitMibS":0,"notifications":true,"startAtLogin":false}"#;
        std::fs::write(dir.path().join(SETTINGS_FILE), old).unwrap();
        assert_eq!(load(dir.path()).unwrap().watched_folders, []);
    }

    #[test]
    fn watched_folders_are_checked_by_name() {
        let refused = |folders: Vec<WatchedFolder>| check(&with(folders)).unwrap_err().message;
        assert!(refused(vec![folder("relative/path")]).contains("full path"));
        assert!(refused(vec![folder("/w"), folder("/w")]).contains("twice"));
        let nested = refused(vec![folder("/w"), folder("/w/inner")]);
        assert!(nested.contains("overlaps /w"), "{nested}");
        check(&with(vec![folder("/w"), folder("/wx")])).expect("a sibling is not inside");
        let slow = WatchedFolder {
            settle_secs: 0.0,
            ..folder("/w")
        };
        assert!(refused(vec![slow]).contains("settle time"));
        let bad_move = WatchedFolder {
            after_upload: AfterUpload::Move,
            move_to: "a/b".into(),
            ..folder("/w")
        };
        assert!(refused(vec![bad_move]).contains("one sub-folder name"));
        let bad_glob = WatchedFolder {
            include: vec!["[".into()],
            ..folder("/w")
        };
        let message = refused(vec![bad_glob]);
        assert!(
            message.starts_with("watched folder /w:") && message.contains('['),
            "{message}"
        );
    }

    #[test]
    fn typed_values_are_tidied() {
        let typed = with(vec![WatchedFolder {
            path: "  /w  ".into(),
            to: " /in/ ".into(),
            include: vec![" *.pdf ".into(), "  ".into()],
            ..folder("")
        }]);
        let tidy = tidy(typed).watched_folders.remove(0);
        assert_eq!((tidy.path.as_str(), tidy.to.as_str()), ("/w", "in"));
        assert_eq!(tidy.include, ["*.pdf"]);
    }
}
