//! The desktop settings a person changes (parallel parts, bandwidth limit, notifications, start
//! at login), kept as JSON beside the journal, and how they become engine options.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use valet_engine::transfers::TransferOptions;
use valet_engine::{MAX_PARALLEL, PutOptions, RateLimit};

use crate::dto::{Settings, UiError};

/// File name of the settings in the data directory.
pub const SETTINGS_FILE: &str = "desktop-settings.json";

/// Most parts of one file in flight that the settings screen offers.
pub const MAX_PARALLEL_PARTS: u32 = 16;

/// The saved settings, or the defaults when there are none. A file that cannot be read or
/// parsed is an error naming the file: the app shows it rather than silently resetting.
pub fn load(data_dir: &Path) -> Result<Settings, UiError> {
    let path = data_dir.join(SETTINGS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let settings: Settings = serde_json::from_slice(&bytes).map_err(|e| {
                UiError::new(
                    "settings",
                    format!("{}: not valid settings: {e}", path.display()),
                )
            })?;
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
    Ok(())
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
