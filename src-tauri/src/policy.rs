//! The machine's policy as the desktop app applies it (`docs/POLICY.md`): the settings in
//! effect are the policy's values over the person's, a locked setting cannot be changed, and
//! the policy's watched folders are always watched. Parse, then resolve: the engine reads and
//! checks the policy ([`valet_engine::policy`]); this turns it into settings and refusals.
//!
//! A value the policy gives is the starting value while the person has saved no settings of
//! their own; a locked one is the value, whatever they saved. The person's saved file keeps
//! their own choices, so removing the policy gives them back.

use std::path::Path;

use valet_engine::policy::{Policy, PolicyFolder, PolicyState, Setting, SignInMode};
use valet_engine::watch;

use crate::dto::{AfterUpload, PolicyInfo, PolicyProblem, Settings, UiError, WatchedFolder};
use crate::settings::MAX_PARALLEL_PARTS;

const MIB: f64 = 1024.0 * 1024.0;

/// The settings in effect: the policy's values over `user`'s for the locked settings, and over
/// the defaults when the person has saved nothing (`user_saved` false).
pub fn effective(user: &Settings, user_saved: bool, policy: Option<&Policy>) -> Settings {
    let mut s = user.clone();
    let Some(p) = policy else {
        return s;
    };
    let applies = |setting: Setting| !user_saved || p.is_locked(setting);
    if let Some(n) = p.limits.parallel_parts
        && applies(Setting::ParallelParts)
    {
        // The settings screen offers up to 16; the engine takes more, as the policy may ask.
        s.parallel_parts = n;
    }
    if let Some(rate) = p.limits.bandwidth
        && applies(Setting::Bandwidth)
    {
        s.bandwidth_limit_mib_s = rate.0 as f64 / MIB;
    }
    if let Some(on) = p.notifications
        && applies(Setting::Notifications)
    {
        s.notifications = on;
    }
    if let Some(on) = p.autostart
        && applies(Setting::Autostart)
    {
        s.start_at_login = on;
    }
    s
}

/// What of `new` (the settings in effect as the UI sends them back) is kept as the person's
/// own: their value for what is not locked, their earlier value for what is. A locked setting
/// asked to change is refused, naming it and the policy file; so is any change to their own
/// watched folders while those are locked, and a folder of theirs that overlaps one of the
/// policy's.
pub fn user_part(
    new: Settings,
    current: &Settings,
    user_before: &Settings,
    state: &PolicyState,
) -> Result<Settings, UiError> {
    let Some(p) = state.policy.as_deref() else {
        return Ok(new);
    };
    let origin = state.origin.as_deref().unwrap_or("in force");
    let refuse = |setting: Setting| {
        UiError::new(
            "locked",
            format!(
                "{} is set by your organisation and cannot be changed (`{setting}` is locked by \
                 the policy {origin})",
                label(setting)
            ),
        )
    };
    let mut kept = new.clone();
    if p.is_locked(Setting::ParallelParts) {
        if new.parallel_parts != current.parallel_parts {
            return Err(refuse(Setting::ParallelParts));
        }
        kept.parallel_parts = user_before.parallel_parts;
    }
    if p.is_locked(Setting::Bandwidth) {
        if (new.bandwidth_limit_mib_s - current.bandwidth_limit_mib_s).abs() > 1e-9 {
            return Err(refuse(Setting::Bandwidth));
        }
        kept.bandwidth_limit_mib_s = user_before.bandwidth_limit_mib_s;
    }
    if p.is_locked(Setting::Notifications) {
        if new.notifications != current.notifications {
            return Err(refuse(Setting::Notifications));
        }
        kept.notifications = user_before.notifications;
    }
    if p.is_locked(Setting::Autostart) {
        if new.start_at_login != current.start_at_login {
            return Err(refuse(Setting::Autostart));
        }
        kept.start_at_login = user_before.start_at_login;
    }
    if p.is_locked(Setting::WatchedFolders) && new.watched_folders != user_before.watched_folders {
        return Err(refuse(Setting::WatchedFolders));
    }
    // A locked value the policy does not give keeps the person's, which the screen may not
    // offer (parallel parts above 16): only a value the person may choose is checked.
    if !p.is_locked(Setting::ParallelParts) && kept.parallel_parts > MAX_PARALLEL_PARTS {
        kept.parallel_parts = MAX_PARALLEL_PARTS;
    }
    for mine in &kept.watched_folders {
        let path = Path::new(&mine.path);
        if let Some(theirs) = managed_folders(Some(p))
            .into_iter()
            .map(|(f, _)| f)
            .find(|f| path.starts_with(&f.path) || Path::new(&f.path).starts_with(path))
        {
            return Err(UiError::new(
                "invalid",
                format!(
                    "watched folder {}: it overlaps {}, which your organisation has this \
                     computer watch already",
                    mine.path, theirs.path
                ),
            ));
        }
    }
    Ok(kept)
}

/// Refuses an action on a locked setting (signing out, another server).
pub fn refuse_if_locked(state: &PolicyState, setting: Setting) -> Result<(), UiError> {
    if !state.is_locked(setting) {
        return Ok(());
    }
    Err(UiError::new(
        "locked",
        format!(
            "{} is not allowed on this computer (`{setting}` is locked by the policy {})",
            label(setting),
            state.origin.as_deref().unwrap_or("in force")
        ),
    ))
}

fn label(setting: Setting) -> &'static str {
    match setting {
        Setting::Server => "The service address",
        Setting::ParallelParts => "Parts sent at once",
        Setting::Bandwidth => "The bandwidth limit",
        Setting::Notifications => "Notifications",
        Setting::Autostart => "Start at login",
        Setting::WatchedFolders => "Your own watched folders",
        Setting::SignOut => "Signing out",
    }
}

/// The policy's watched folders, as the watches and the settings screen take them.
pub fn managed_folders(policy: Option<&Policy>) -> Vec<(WatchedFolder, bool)> {
    policy
        .map(|p| p.watched_folders.iter().map(folder).collect())
        .unwrap_or_default()
}

fn folder(f: &PolicyFolder) -> (WatchedFolder, bool) {
    let (after_upload, move_to) = match f.after_upload() {
        watch::AfterUpload::Leave => (AfterUpload::Leave, String::new()),
        watch::AfterUpload::Delete => (AfterUpload::Delete, String::new()),
        watch::AfterUpload::MoveTo(dir) => (AfterUpload::Move, dir),
    };
    let folder = WatchedFolder {
        path: f.resolved_path().display().to_string(),
        to: f.to.clone().unwrap_or_default(),
        settle_secs: f.settle().as_secs_f64(),
        after_upload,
        move_to,
        include: f.include.clone(),
        exclude: f.exclude.clone(),
        enabled: true,
    };
    (folder, f.hidden)
}

/// What the UI shows of the policy: where it is from, what it locks, its folders, a problem.
pub fn info(state: &PolicyState) -> PolicyInfo {
    let p = state.policy.as_deref();
    let locked = |s: Setting| p.is_some_and(|p| p.is_locked(s));
    PolicyInfo {
        origin: state.origin.clone(),
        file_name: state.origin.as_deref().map(|o| {
            Path::new(o)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| o.to_owned())
        }),
        locked: p
            .map(|p| p.locked.iter().map(|s| s.as_str().to_owned()).collect())
            .unwrap_or_default(),
        server: p.and_then(|p| p.server.clone()),
        server_locked: locked(Setting::Server),
        sign_in_screen: p.is_none_or(|p| p.sign_in.allow_sign_in_screen),
        sso: p.is_some_and(|p| p.sign_in.mode == SignInMode::Sso),
        sign_out_locked: locked(Setting::SignOut),
        folders: managed_folders(p).into_iter().map(|(f, _)| f).collect(),
        problem: state.error.as_ref().map(|e| PolicyProblem {
            origin: e.origin.clone(),
            field: e.field.clone(),
            message: e.to_string(),
            last_good_in_force: p.is_some(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use valet_engine::policy::Format;

    use super::*;

    fn state(json: &str) -> PolicyState {
        let policy = Policy::parse(json, Format::Json, "/etc/valet-upload/policy.json").unwrap();
        PolicyState {
            policy: Some(Arc::new(policy)),
            origin: Some("/etc/valet-upload/policy.json".into()),
            error: None,
        }
    }

    const POLICY: &str = r#"{
        "limits": { "bandwidth": "20 MiB", "parallel_parts": 8 },
        "notifications": false,
        "autostart": true,
        "locked": ["bandwidth", "watched_folders", "sign_out"],
        "watched_folders": [{ "path": "/srv/scans", "to": "scans", "after_upload": "move:sent" }]
    }"#;

    #[test]
    fn policy_values_start_and_locked_ones_stay() {
        let s = state(POLICY);
        let p = s.policy.as_deref();
        let mine = Settings {
            parallel_parts: 2,
            bandwidth_limit_mib_s: 1.0,
            notifications: true,
            start_at_login: false,
            watched_folders: Vec::new(),
        };
        let fresh = effective(&Settings::default(), false, p);
        assert_eq!(
            (fresh.parallel_parts, fresh.bandwidth_limit_mib_s),
            (8, 20.0)
        );
        assert!(
            !fresh.notifications && fresh.start_at_login,
            "starting values"
        );
        let saved = effective(&mine, true, p);
        assert_eq!(saved.bandwidth_limit_mib_s, 20.0, "locked: the policy's");
        assert_eq!(
            saved.parallel_parts, 2,
            "not locked: the person's saved value"
        );
        assert!(saved.notifications && !saved.start_at_login);
        assert_eq!(
            effective(&mine, true, None),
            mine,
            "no policy: the person's"
        );
    }

    #[test]
    fn locked_settings_are_refused_by_name_and_others_kept() {
        let s = state(POLICY);
        let mine = Settings {
            bandwidth_limit_mib_s: 1.0,
            ..Settings::default()
        };
        let current = effective(&mine, true, s.policy.as_deref());
        let faster = Settings {
            bandwidth_limit_mib_s: 50.0,
            ..current.clone()
        };
        let e = user_part(faster, &current, &mine, &s).unwrap_err();
        assert_eq!(e.code, "locked");
        assert!(
            e.message.contains("`bandwidth`") && e.message.contains("policy.json"),
            "{}",
            e.message
        );
        let more_folders = Settings {
            watched_folders: vec![WatchedFolder {
                path: "/home/me/x".into(),
                ..WatchedFolder::default()
            }],
            ..current.clone()
        };
        let e = user_part(more_folders, &current, &mine, &s).unwrap_err();
        assert!(e.message.contains("`watched_folders`"), "{}", e.message);
        let parts = Settings {
            parallel_parts: 3,
            ..current.clone()
        };
        let kept = user_part(parts, &current, &mine, &s).unwrap();
        assert_eq!(kept.parallel_parts, 3, "not locked: changed");
        assert_eq!(
            kept.bandwidth_limit_mib_s, 1.0,
            "locked: the person's own value is kept for when the policy goes"
        );
        let e = refuse_if_locked(&s, Setting::SignOut).unwrap_err();
        assert_eq!(e.code, "locked");
        refuse_if_locked(&s, Setting::Server).expect("server is not locked");
    }

    #[test]
    fn own_folders_may_not_overlap_the_policys() {
        let s = state(r#"{ "watched_folders": [{ "path": "/srv/scans" }] }"#);
        let inside = Settings {
            watched_folders: vec![WatchedFolder {
                path: "/srv/scans/mine".into(),
                ..WatchedFolder::default()
            }],
            ..Settings::default()
        };
        let e = user_part(inside, &Settings::default(), &Settings::default(), &s).unwrap_err();
        assert!(e.message.contains("overlaps /srv/scans"), "{}", e.message);
    }

    #[test]
    fn the_ui_sees_the_file_name_locks_folders_and_problems() {
        let mut s = state(POLICY);
        let i = info(&s);
        assert_eq!(i.file_name.as_deref(), Some("policy.json"));
        assert!(i.locked.contains(&"bandwidth".to_owned()) && i.sign_out_locked);
        assert_eq!(i.folders[0].path, "/srv/scans");
        assert_eq!(
            (i.folders[0].after_upload, i.folders[0].move_to.as_str()),
            (AfterUpload::Move, "sent")
        );
        s.error = Some(
            Policy::parse(
                r#"{"limits":{"parallel_parts":65}}"#,
                Format::Json,
                "/p.json",
            )
            .unwrap_err(),
        );
        let problem = info(&s).problem.unwrap();
        assert_eq!(problem.field, "limits.parallel_parts");
        assert!(problem.last_good_in_force);
    }
}
