//! Token rows. Only the SHA-256 of a token is stored; the token itself exists only in the
//! answer that issued it.

use sqlx::Row as _;
use time::OffsetDateTime;

use super::{Db, from_millis, to_millis};
use crate::Error;
use crate::audit::{self, Entry};

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Short-lived bearer token of a sign-in (`vat_`).
    Access,
    /// Single-use token that trades for the next access token (`vrt_`).
    Refresh,
    /// Long-lived bearer token issued from the command line (`vpt_`).
    Api,
}

impl TokenKind {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
            Self::Api => "api",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(Self::Access),
            "refresh" => Some(Self::Refresh),
            "api" => Some(Self::Api),
            _ => None,
        }
    }
}

/// A token row to insert.
#[derive(Debug)]
pub struct NewToken<'a> {
    /// Public id.
    pub id: &'a str,
    /// Hex SHA-256 of the token.
    pub token_hash: &'a str,
    /// Kind.
    pub kind: TokenKind,
    /// Owner.
    pub user: &'a str,
    /// Sign-in family (access and refresh tokens).
    pub family: Option<&'a str>,
    /// Free text (API tokens).
    pub label: Option<&'a str>,
    /// Issue time.
    pub created_at: OffsetDateTime,
    /// Expiry in Unix ms, or none.
    pub expires_at_ms: Option<i64>,
}

/// A stored token, as found by its hash.
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// Public id.
    pub id: String,
    /// Kind.
    pub kind: TokenKind,
    /// Owner.
    pub user: String,
    /// Sign-in family.
    pub family: Option<String>,
    /// Expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// When a refresh token was rotated.
    pub used_at: Option<OffsetDateTime>,
    /// When it was revoked.
    pub revoked_at: Option<OffsetDateTime>,
}

/// An API token as `token list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiTokenInfo {
    /// Public id, for `token revoke`.
    pub id: String,
    /// Owner.
    pub user: String,
    /// Label given at issue.
    pub label: Option<String>,
    /// Issue time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Revocation time.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Stores a new token.
pub async fn insert(db: &Db, token: &NewToken<'_>) -> Result<(), Error> {
    insert_with(db.pool(), token).await
}

async fn insert_with<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    token: &NewToken<'_>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO tokens (id, token_hash, kind, user_name, family, label, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(token.id)
    .bind(token.token_hash)
    .bind(token.kind.as_str())
    .bind(token.user)
    .bind(token.family)
    .bind(token.label)
    .bind(to_millis(token.created_at))
    .bind(token.expires_at_ms)
    .execute(executor)
    .await?;
    Ok(())
}

/// The token whose SHA-256 is `token_hash`.
pub async fn find_by_hash(db: &Db, token_hash: &str) -> Result<Option<StoredToken>, Error> {
    let row = sqlx::query(
        "SELECT id, kind, user_name, family, expires_at, used_at, revoked_at
         FROM tokens WHERE token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.and_then(|r| {
        Some(StoredToken {
            id: r.get("id"),
            kind: TokenKind::parse(r.get::<&str, _>("kind"))?,
            user: r.get("user_name"),
            family: r.get("family"),
            expires_at: r.get::<Option<i64>, _>("expires_at").map(from_millis),
            used_at: r.get::<Option<i64>, _>("used_at").map(from_millis),
            revoked_at: r.get::<Option<i64>, _>("revoked_at").map(from_millis),
        })
    }))
}

/// Marks a refresh token used; false when it already was (a concurrent or repeated use).
pub async fn mark_used(db: &Db, id: &str, now: OffsetDateTime) -> Result<bool, Error> {
    mark_used_with(db.pool(), id, now).await
}

async fn mark_used_with<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    id: &str,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let done = sqlx::query("UPDATE tokens SET used_at = ? WHERE id = ? AND used_at IS NULL")
        .bind(to_millis(now))
        .bind(id)
        .execute(executor)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Trades refresh token `used_id` for its `successors`, in one transaction: marks it used,
/// stores the new tokens and appends `entry` to the audit log. Either all of it happens or
/// none: a failure part way never leaves a used token without a successor (whose next
/// presentation would look like reuse). False, with nothing changed, when the token was
/// already used (a concurrent or repeated use).
pub async fn rotate(
    db: &Db,
    used_id: &str,
    successors: &[NewToken<'_>],
    entry: &Entry<'_>,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let mut tx = db.pool().begin().await?;
    if !mark_used_with(&mut *tx, used_id, now).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    for token in successors {
        insert_with(&mut *tx, token).await?;
    }
    audit::record_with(&mut *tx, entry).await?;
    tx.commit().await?;
    Ok(true)
}

/// Revokes every token of a sign-in; returns how many were still live.
pub async fn revoke_family(db: &Db, family: &str, now: OffsetDateTime) -> Result<u64, Error> {
    let done =
        sqlx::query("UPDATE tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL")
            .bind(to_millis(now))
            .bind(family)
            .execute(db.pool())
            .await?;
    Ok(done.rows_affected())
}

/// Revokes one token by id; false when unknown or already revoked.
pub async fn revoke(db: &Db, id: &str, now: OffsetDateTime) -> Result<bool, Error> {
    let done = sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(to_millis(now))
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// API tokens, of one user or all, oldest first.
pub async fn list_api(db: &Db, user: Option<&str>) -> Result<Vec<ApiTokenInfo>, Error> {
    let rows = sqlx::query(
        "SELECT id, user_name, label, created_at, revoked_at FROM tokens
         WHERE kind = 'api' AND (? IS NULL OR user_name = ?)
         ORDER BY created_at, id",
    )
    .bind(user)
    .bind(user)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ApiTokenInfo {
            id: r.get("id"),
            user: r.get("user_name"),
            label: r.get("label"),
            created_at: from_millis(r.get("created_at")),
            revoked_at: r.get::<Option<i64>, _>("revoked_at").map(from_millis),
        })
        .collect())
}
