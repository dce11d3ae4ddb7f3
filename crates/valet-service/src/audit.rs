//! The audit log: who was given which key, when, from where; sign-ins; completions.
//!
//! Entries never hold a secret: no token, no password, no key URL (its query carries the
//! signature). `detail` is a small JSON object of non-secret facts.

use serde::Serialize;
use sqlx::Row as _;
use time::OffsetDateTime;

use crate::Error;
use crate::db::{Db, from_millis, to_millis};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A password sign-in succeeded.
    SignIn,
    /// A password sign-in failed.
    SignInFailed,
    /// Failed sign-ins in a row made an account and address, or an address, wait (the detail
    /// says which, after how many failures, and how long).
    SignInThrottled,
    /// A refresh token was traded for new tokens.
    TokenRefreshed,
    /// A rotated refresh token was presented again; its sign-in was revoked.
    RefreshTokenReused,
    /// A sign-in ended.
    Logout,
    /// An upload was created.
    UploadCreated,
    /// A key for one part was issued.
    KeyIssued,
    /// An upload was completed and verified.
    UploadCompleted,
    /// An upload's completion was refused; the object was deleted.
    UploadVerificationFailed,
    /// An upload was aborted by its owner.
    UploadAborted,
    /// An idle upload was aborted by the sweeper.
    UploadAbandoned,
    /// A managed device enrolled with an enrollment secret.
    DeviceEnrolled,
    /// An enrollment with an unknown secret was refused.
    DeviceEnrollmentFailed,
    /// An administrator revoked a device.
    DeviceRevoked,
    /// A single sign-on (OpenID Connect ID token) succeeded.
    SsoSignIn,
    /// A single sign-on was refused; the detail says which check failed.
    SsoSignInFailed,
}

impl Event {
    /// The name in the log and in `audit --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SignInFailed => "sign_in_failed",
            Self::SignInThrottled => "sign_in_throttled",
            Self::TokenRefreshed => "token_refreshed",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::Logout => "logout",
            Self::UploadCreated => "upload_created",
            Self::KeyIssued => "key_issued",
            Self::UploadCompleted => "upload_completed",
            Self::UploadVerificationFailed => "upload_verification_failed",
            Self::UploadAborted => "upload_aborted",
            Self::UploadAbandoned => "upload_abandoned",
            Self::DeviceEnrolled => "device_enrolled",
            Self::DeviceEnrollmentFailed => "device_enrollment_failed",
            Self::DeviceRevoked => "device_revoked",
            Self::SsoSignIn => "sso_sign_in",
            Self::SsoSignInFailed => "sso_sign_in_failed",
        }
    }
}

/// One entry to write.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// What happened.
    pub event: Event,
    /// When.
    pub at: OffsetDateTime,
    /// The account (or the name tried, for failed sign-ins).
    pub user: Option<&'a str>,
    /// The upload concerned.
    pub upload_id: Option<&'a str>,
    /// The part concerned (keys).
    pub part: Option<u32>,
    /// When the issued key expires.
    pub expires_at: Option<OffsetDateTime>,
    /// The client's address as the service saw it.
    pub client_addr: Option<&'a str>,
    /// Other facts.
    pub detail: Option<serde_json::Value>,
}

impl<'a> Entry<'a> {
    /// An entry with only the event and time set.
    pub fn new(event: Event, at: OffsetDateTime) -> Self {
        Self {
            event,
            at,
            user: None,
            upload_id: None,
            part: None,
            expires_at: None,
            client_addr: None,
            detail: None,
        }
    }
}

/// Appends an entry.
pub async fn record(db: &Db, e: &Entry<'_>) -> Result<(), Error> {
    record_with(db.pool(), e).await
}

/// Appends an entry through `executor` (a transaction, so it commits with what it records).
pub(crate) async fn record_with<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    e: &Entry<'_>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO audit_log (at, event, user_name, upload_id, part, expires_at, client_addr, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(to_millis(e.at))
    .bind(e.event.as_str())
    .bind(e.user)
    .bind(e.upload_id)
    .bind(e.part.map(i64::from))
    .bind(e.expires_at.map(to_millis))
    .bind(e.client_addr)
    .bind(e.detail.as_ref().map(|d| d.to_string()))
    .execute(executor)
    .await?;
    Ok(())
}

/// Appends entries in one statement through `executor` (a transaction: a batch of keys).
pub(crate) async fn record_all_with<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    entries: &[Entry<'_>],
) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO audit_log (at, event, user_name, upload_id, part, expires_at, client_addr, detail) ",
    );
    insert.push_values(entries, |mut row, e| {
        row.push_bind(to_millis(e.at))
            .push_bind(e.event.as_str())
            .push_bind(e.user)
            .push_bind(e.upload_id)
            .push_bind(e.part.map(i64::from))
            .push_bind(e.expires_at.map(to_millis))
            .push_bind(e.client_addr)
            .push_bind(e.detail.as_ref().map(|d| d.to_string()));
    });
    insert.build().execute(executor).await?;
    Ok(())
}

/// Appends an entry; a failure is logged, not returned, for paths where the action itself
/// already happened and must still be answered.
pub async fn record_or_warn(db: &Db, e: &Entry<'_>) {
    if let Err(err) = record(db, e).await {
        tracing::error!(event = e.event.as_str(), error = %err, "could not write audit entry");
    }
}

/// One entry as read back, the line format of `valet-service audit --json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    /// When (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    pub event: String,
    /// The account.
    pub user: Option<String>,
    /// The upload.
    pub upload_id: Option<String>,
    /// The part.
    pub part: Option<u32>,
    /// When the issued key expires (RFC 3339).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The client's address.
    pub client_addr: Option<String>,
    /// Other facts.
    pub detail: Option<serde_json::Value>,
}

/// Entries in the order written, all or those of one upload.
pub async fn list(db: &Db, upload_id: Option<&str>) -> Result<Vec<Line>, Error> {
    let rows = sqlx::query(
        "SELECT at, event, user_name, upload_id, part, expires_at, client_addr, detail
         FROM audit_log WHERE (? IS NULL OR upload_id = ?) ORDER BY seq",
    )
    .bind(upload_id)
    .bind(upload_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| Line {
            at: from_millis(r.get("at")),
            event: r.get("event"),
            user: r.get("user_name"),
            upload_id: r.get("upload_id"),
            part: r
                .get::<Option<i64>, _>("part")
                .and_then(|p| u32::try_from(p).ok()),
            expires_at: r.get::<Option<i64>, _>("expires_at").map(from_millis),
            client_addr: r.get("client_addr"),
            detail: r
                .get::<Option<String>, _>("detail")
                .and_then(|d| serde_json::from_str(&d).ok()),
        })
        .collect())
}
