//! The machine-wide policy an administrator deploys: service URL, sign-in mode, watched folders,
//! limits, allowed storage hosts, proxy, and which settings are locked.
//!
//! ```text
//!  /etc/valet-upload/policy.json ─┐                       ┌─▶ PolicyState { policy, error }
//!  HKLM\SOFTWARE\Policies\… ──────┼─▶ read ─▶ parse ─▶ check ─┤    (last good kept on error)
//!  /Library/Managed Preferences ──┘   (on change: notify       └─▶ policy-last-good.json
//!                                      + a slow poll)
//! ```
//!
//! - **Where**: [`system_sources`] lists the places administrators expect on each OS;
//!   `VALET_POLICY=FILE` names another file (tests, trials).
//! - **Checked**: unknown keys, wrong types and bad values are refused with the file and the
//!   field named ([`PolicyError`]); a bad file never half-applies.
//! - **Last good**: a bad or unreadable file keeps the last good policy in force (also across
//!   restarts: it is saved in the data directory); a removed file removes the policy.
//! - **Live**: [`LivePolicy`] reads the policy again when it changes, without a restart.

mod hosts;
mod live;
mod model;
mod rules;
mod source;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

pub use hosts::HostAllowList;
pub use live::{LAST_GOOD_FILE, LivePolicy, PolicyState};
pub use model::{Limits, Policy, PolicyFolder, Setting, SignInMode, SignInPolicy, SsoPolicy};
pub use rules::UploadRules;
pub use source::{POLICY_ENV, PolicySource, system_sources};

use crate::upload::MAX_PARALLEL;
use crate::watch::{AfterUpload, NameFilter};

/// A policy that cannot be used, naming where it came from and which field is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {origin}: {}{message}", field_prefix(field))]
pub struct PolicyError {
    /// The file (or registry key) the policy came from.
    pub origin: String,
    /// The field, as a path (`limits.parallel_parts`, `watched_folders[0].path`); empty when
    /// the whole file is wrong (syntax, unreadable).
    pub field: String,
    /// What is wrong, in plain words.
    pub message: String,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    }
}

/// The policy file's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON (`.json`; also what registry values and managed preferences are read as).
    Json,
    /// TOML (`.toml`).
    Toml,
}

impl Policy {
    /// Parses and checks a policy written in `format`; `origin` names the file in errors.
    pub fn parse(text: &str, format: Format, origin: &str) -> Result<Self, PolicyError> {
        let policy: Policy = match format {
            Format::Json => {
                let de = &mut serde_json::Deserializer::from_str(text);
                serde_path_to_error::deserialize(de).map_err(|e| {
                    let field = field_path(e.path());
                    PolicyError::new(origin, &field, e.into_inner().to_string())
                })?
            }
            Format::Toml => {
                let de = toml::Deserializer::parse(text)
                    .map_err(|e| PolicyError::new(origin, "", e.to_string().trim().to_owned()))?;
                serde_path_to_error::deserialize(de).map_err(|e| {
                    let field = field_path(e.path());
                    // toml's message repeats the snippet of the file; the first line says it.
                    let message = e.into_inner().to_string();
                    let message = message.lines().last().unwrap_or_default().trim().to_owned();
                    PolicyError::new(origin, &field, message)
                })?
            }
        };
        policy.check(origin)?;
        Ok(policy)
    }

    /// Checks the values that the types alone do not (URLs, ranges, globs, paths).
    pub fn check(&self, origin: &str) -> Result<(), PolicyError> {
        let fail = |field: &str, message: String| Err(PolicyError::new(origin, field, message));
        if let Some(server) = &self.server
            && let Err(e) = crate::urls::parse_server(server)
        {
            return fail("server", e.to_string());
        }
        let sign_in = &self.sign_in;
        match sign_in.mode {
            SignInMode::Password if !sign_in.allow_sign_in_screen => {
                return fail(
                    "sign_in.allow_sign_in_screen",
                    "false needs mode `enrollment` or `sso`: with `password` nobody could sign in"
                        .into(),
                );
            }
            SignInMode::Enrollment
                if sign_in
                    .enrollment_secret
                    .as_deref()
                    .is_none_or(|s| s.trim().is_empty()) =>
            {
                return fail(
                    "sign_in.enrollment_secret",
                    "mode `enrollment` needs the organisation's enrollment secret".into(),
                );
            }
            SignInMode::Sso if sign_in.sso.is_none() => {
                return fail(
                    "sign_in.sso",
                    "mode `sso` needs the provider: { \"issuer\": …, \"client_id\": … }".into(),
                );
            }
            SignInMode::Enrollment | SignInMode::Sso if self.server.is_none() => {
                return fail(
                    "server",
                    "sign-in without a person needs the service URL".into(),
                );
            }
            _ => {}
        }
        if let Some(sso) = &sign_in.sso {
            if let Err(e) = crate::urls::parse_server(&sso.issuer) {
                return fail("sign_in.sso.issuer", e.to_string());
            }
            if sso.client_id.trim().is_empty() {
                return fail("sign_in.sso.client_id", "must not be empty".into());
            }
        }
        for (i, folder) in self.watched_folders.iter().enumerate() {
            folder.check().or_else(|(field, message)| {
                fail(&format!("watched_folders[{i}].{field}"), message)
            })?;
        }
        let limits = &self.limits;
        if let Some(n) = limits.parallel_parts
            && !(1..=MAX_PARALLEL as u32).contains(&n)
        {
            return fail(
                "limits.parallel_parts",
                format!("{n} is out of range: 1 to {MAX_PARALLEL}"),
            );
        }
        if limits.bandwidth.is_some_and(|b| b.0 < 1024) {
            return fail(
                "limits.bandwidth",
                "below 1 KiB/s; leave the field out for no limit".into(),
            );
        }
        if limits.max_file_size.is_some_and(|m| m.0 == 0) {
            return fail("limits.max_file_size", "must be more than 0".into());
        }
        for (i, host) in self.allowed_storage_hosts.iter().enumerate() {
            if let Err(message) = hosts::HostPattern::parse(host) {
                return fail(&format!("allowed_storage_hosts[{i}]"), message);
            }
        }
        if let Some(proxy) = &self.proxy {
            match Url::parse(proxy) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                Ok(url) => {
                    return fail(
                        "proxy",
                        format!(
                            "{}: use http://HOST:PORT or https://HOST:PORT",
                            url.scheme()
                        ),
                    );
                }
                Err(e) => return fail("proxy", format!("not a URL: {e}")),
            }
        }
        if self.locked.contains(&Setting::Server) && self.server.is_none() {
            return fail("locked", "`server` is locked but no `server` is set".into());
        }
        Ok(())
    }

    /// Checks that the service answers at `server` (its `healthz`), so that an unreachable URL
    /// is reported as a policy problem, naming the field. No `server`: nothing to check.
    pub async fn probe_server(&self, origin: &str) -> Result<(), PolicyError> {
        let Some(server) = self.server_url() else {
            return Ok(());
        };
        let shown = crate::urls::redact(&server);
        let unreachable = |why: String| {
            PolicyError::new(
                origin,
                "server",
                format!("{shown} cannot be reached: {why}"),
            )
        };
        let url = server
            .join("healthz")
            .map_err(|e| unreachable(e.to_string()))?;
        let reply = crate::http::service_client()
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| unreachable(crate::http::describe(e)))?;
        if !reply.status().is_success() {
            return Err(unreachable(format!(
                "it answered HTTP {}; is this the valet service?",
                reply.status()
            )));
        }
        Ok(())
    }

    /// Whether the user may not change `setting`.
    pub fn is_locked(&self, setting: Setting) -> bool {
        self.locked.contains(&setting)
    }

    /// The service URL, checked.
    pub fn server_url(&self) -> Option<Url> {
        self.server
            .as_deref()
            .and_then(|s| crate::urls::parse_server(s).ok())
    }

    /// The storage hosts file bytes may go to (`None`: any).
    pub fn storage_hosts(&self) -> Option<HostAllowList> {
        (!self.allowed_storage_hosts.is_empty())
            .then(|| HostAllowList::new(&self.allowed_storage_hosts))
    }
}

/// This computer's name, as an enrolling device reports it to the service.
pub fn device_name() -> String {
    gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_owned()
}

impl PolicyFolder {
    /// The folder's path, with `~/` made the user's home folder.
    pub fn resolved_path(&self) -> PathBuf {
        match self.path.strip_prefix("~/") {
            Some(rest) => directories::BaseDirs::new()
                .map(|dirs| dirs.home_dir().join(rest))
                .unwrap_or_else(|| PathBuf::from(&self.path)),
            None => PathBuf::from(&self.path),
        }
    }

    /// How long a file must stay unchanged.
    pub fn settle(&self) -> Duration {
        self.settle_seconds
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or(crate::watch::DEFAULT_SETTLE)
    }

    /// The after-upload action.
    pub fn after_upload(&self) -> AfterUpload {
        self.after_upload
            .as_deref()
            .and_then(|a| AfterUpload::parse(a).ok())
            .unwrap_or_default()
    }

    /// Checks the folder; the error names the field inside the folder.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.path.starts_with("~/") && !PathBuf::from(&self.path).is_absolute() {
            return Err(("path", format!("{:?} is not an absolute path", self.path)));
        }
        if let Some(to) = &self.to {
            let bad_segment = to
                .split('/')
                .any(|segment| segment.is_empty() || segment == "." || segment == "..");
            if bad_segment || to.contains('\\') {
                return Err((
                    "to",
                    format!("{to:?}: use folder names separated by `/`, without `.` or `..`"),
                ));
            }
        }
        if let Some(s) = self.settle_seconds
            && !(1..=3600).contains(&s)
        {
            return Err(("settle_seconds", format!("{s} is out of range: 1 to 3600")));
        }
        if let Some(action) = &self.after_upload {
            AfterUpload::parse(action).map_err(|e| ("after_upload", e.to_string()))?;
        }
        NameFilter::new(&self.include, &[], self.hidden, None)
            .map_err(|e| ("include", e.to_string()))?;
        NameFilter::new(&[], &self.exclude, self.hidden, None)
            .map_err(|e| ("exclude", e.to_string()))?;
        Ok(())
    }
}

impl PolicyError {
    fn new(origin: &str, field: &str, message: String) -> Self {
        Self {
            origin: origin.to_owned(),
            field: field.to_owned(),
            message,
        }
    }
}

/// `limits.parallel_parts`, `watched_folders[0].path`; empty for the whole document.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let shown = path.to_string();
    if shown == "." || shown == "?" {
        String::new()
    } else {
        shown
    }
}
