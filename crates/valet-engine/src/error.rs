//! The engine's one error type.
//!
//! When to use which variant:
//! - the user's file: [`Error::SourceUnreadable`] (cannot read it) or [`Error::SourceChanged`]
//!   (it changed while or since we read it; the upload is never completed);
//! - the valet service answered with an error body: [`Error::Service`], carrying its stable
//!   [`ErrorCode`]; an answer we cannot understand (bad JSON, too large, wrong parts):
//!   [`Error::BadReply`];
//! - the store refused a part for a reason retrying cannot fix: [`Error::Store`];
//! - a retryable failure that kept failing until the deadline: [`Error::RetriesExhausted`];
//! - a URL we refuse to talk to: [`Error::InsecureUrl`], [`Error::ForeignKeyHost`];
//! - what the machine's policy does not allow: [`Error::PolicyRefused`];
//! - sign-in state: [`Error::NotSignedIn`], [`Error::KeyringUnavailable`], [`Error::Keyring`];
//! - single sign-on that did not complete: [`Error::Sso`], [`Error::SsoCancelled`];
//! - local state: [`Error::Journal`], [`Error::Settings`].
//!
//! Scripts and UIs classify errors by [`Error::code`], never by the message. Messages never carry
//! a token, a password or a key URL's query.

use std::path::PathBuf;

use valet_protocol::{ApiError, ErrorCode};

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source file changed (size, modification time, identity or content) while or since it
    /// was read. The upload is not completed; the journal marks it failed.
    #[error("{}: the file changed during the upload ({reason}); it was not completed", path.display())]
    SourceChanged {
        /// The file.
        path: PathBuf,
        /// What changed.
        reason: String,
    },
    /// The source file cannot be opened or read.
    #[error("{}: {source}", path.display())]
    SourceUnreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file (directories are not uploaded recursively).
    #[error("{}: not a regular file; pass files, not directories", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The valet service refused the request with a stable error code.
    #[error("the valet service answered {status}: {error}")]
    Service {
        /// HTTP status of the answer.
        status: u16,
        /// The service's error body.
        error: ApiError,
    },
    /// A reply (from the service or the store) we cannot accept: not JSON, too large, wrong part
    /// numbers or counts, missing headers.
    #[error("bad reply from {from}: {what}")]
    BadReply {
        /// Who answered, as `scheme://host/path` (never a query).
        from: String,
        /// What is wrong with it.
        what: String,
    },
    /// The store refused a part for a reason a retry cannot fix.
    #[error("the store refused part {part} with HTTP {status} {code}: {message}")]
    Store {
        /// Part number.
        part: u32,
        /// HTTP status.
        status: u16,
        /// The store's error code (S3 `<Code>`), or empty.
        code: String,
        /// The store's message, or empty.
        message: String,
    },
    /// A retryable failure kept failing until the retry budget ran out.
    #[error("{what}: gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        /// What was being done (`part 3 to http://host/bucket/key`, `POST /v1/uploads`).
        what: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure (status or transport error), without any URL query.
        last: String,
    },
    /// A network failure on a single attempt (not retried at this level).
    #[error("{what}: {source}")]
    Network {
        /// What was being done, URL without its query.
        what: String,
        /// The transport error, stripped of its URL.
        #[source]
        source: reqwest::Error,
    },
    /// A URL that is neither `https://` nor on a loopback host.
    #[error("refusing {url}: only https:// is allowed off loopback")]
    InsecureUrl {
        /// The URL, without its query.
        url: String,
    },
    /// A key URL that points at another origin than the store the service announced.
    #[error("refusing key URL for {origin}: this upload's store is {expected}")]
    ForeignKeyHost {
        /// The key URL's origin.
        origin: String,
        /// The origin the service announced for the upload.
        expected: String,
    },
    /// The machine's policy does not allow it: a file larger than `limits.max_file_size`, or
    /// a store host not in `allowed_storage_hosts`. Nothing was sent.
    #[error("{0}")]
    PolicyRefused(String),
    /// A URL that does not parse.
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given (only ever a service URL, never a key URL).
        url: String,
        /// Why.
        reason: String,
    },
    /// No sign-in is saved and no API token given.
    #[error(
        "not signed in: run `valet login --server URL --user NAME`, or set VALET_SERVER and VALET_TOKEN"
    )]
    NotSignedIn,
    /// The saved sign-in is no longer accepted by the service (revoked or expired).
    #[error("the sign-in for {user}@{server} has ended ({reason}); run `valet login` again")]
    SignInExpired {
        /// Account.
        user: String,
        /// Service URL.
        server: String,
        /// The service's reason.
        reason: String,
    },
    /// There is no OS keyring to keep the refresh token in.
    #[error(
        "no OS keyring available ({detail}); use an API token instead: set VALET_SERVER and VALET_TOKEN"
    )]
    KeyringUnavailable {
        /// The keyring's own error.
        detail: String,
    },
    /// The OS keyring failed in another way.
    #[error("OS keyring: {detail}")]
    Keyring {
        /// The keyring's own error.
        detail: String,
    },
    /// The journal cannot be opened, read or written (corrupt, unwritable, locked).
    #[error("journal {}: {source}", path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The sign-in settings file or the data directory cannot be read or written.
    #[error("{}: {detail}", path.display())]
    Settings {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The requested part layout or option is not possible.
    #[error("{0}")]
    Invalid(String),
    /// Single sign-on did not complete: the provider or the browser step failed, or it took
    /// too long. The message says which; it never holds a code, verifier or token.
    #[error("single sign-on: {0}")]
    Sso(String),
    /// The person cancelled (or was refused) at the organisation's sign-in page.
    #[error("sign-in was cancelled at your organisation's sign-in page{}", .0.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    SsoCancelled(Option<String>),
}

impl Error {
    /// A stable snake_case classification for scripts and UIs (`--json`'s `error.code`).
    ///
    /// For [`Error::Service`] this is the service's own [`ErrorCode`] (`quota_exceeded`,
    /// `verification_failed`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Self::SourceChanged { .. } => "source_changed",
            Self::SourceUnreadable { .. } => "source_unreadable",
            Self::NotAFile { .. } => "not_a_file",
            Self::Service { error, .. } => error.code.as_str(),
            Self::BadReply { .. } => "bad_reply",
            Self::Store { .. } => "store",
            Self::RetriesExhausted { .. } => "retries_exhausted",
            Self::Network { .. } => "network",
            Self::InsecureUrl { .. } => "insecure_url",
            Self::ForeignKeyHost { .. } => "foreign_key_host",
            Self::PolicyRefused(_) => "policy_refused",
            Self::BadUrl { .. } => "bad_url",
            Self::NotSignedIn => "not_signed_in",
            Self::SignInExpired { .. } => "sign_in_expired",
            Self::KeyringUnavailable { .. } => "keyring_unavailable",
            Self::Keyring { .. } => "keyring",
            Self::Journal { .. } => "journal",
            Self::Settings { .. } => "settings",
            Self::Invalid(_) => "invalid",
            Self::Sso(_) => "sso_failed",
            Self::SsoCancelled(_) => "sso_cancelled",
        }
    }

    /// The service's error code, for [`Error::Service`].
    pub fn service_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Service { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// Whether the failure is about signing in (the CLI exits 2 for these).
    pub fn is_sign_in(&self) -> bool {
        matches!(
            self,
            Self::NotSignedIn
                | Self::SignInExpired { .. }
                | Self::KeyringUnavailable { .. }
                | Self::Keyring { .. }
                | Self::Sso(_)
                | Self::SsoCancelled(_)
        ) || matches!(
            self.service_code(),
            Some(
                ErrorCode::InvalidCredentials
                    | ErrorCode::Unauthenticated
                    | ErrorCode::TokenExpired
                    | ErrorCode::TokenRevoked
                    | ErrorCode::DeviceRevoked
            )
        )
    }

    /// Whether `valet resume` may finish the upload later (network trouble, a store or service
    /// outage). Other failures (a changed file, a refusal) end the upload for good.
    pub fn is_resumable(&self) -> bool {
        match self {
            Self::RetriesExhausted { .. } | Self::Network { .. } => true,
            Self::Service { error, .. } => error.code.is_retryable(),
            _ => self.is_sign_in(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_carry_the_service_code() {
        let e = Error::Service {
            status: 413,
            error: ApiError::new(ErrorCode::QuotaExceeded, "full"),
        };
        assert_eq!(e.code(), "quota_exceeded");
        assert!(!e.is_resumable());
        let e = Error::Service {
            status: 502,
            error: ApiError::new(ErrorCode::StoreUnavailable, "down"),
        };
        assert!(e.is_resumable(), "a store outage can be resumed");
    }

    #[test]
    fn keyring_error_names_the_alternative() {
        let e = Error::KeyringUnavailable {
            detail: "no D-Bus".into(),
        };
        let shown = e.to_string();
        assert!(
            shown.contains("VALET_TOKEN") && shown.contains("VALET_SERVER"),
            "{shown}"
        );
        assert_eq!(e.code(), "keyring_unavailable");
        assert!(e.is_sign_in());
    }
}
