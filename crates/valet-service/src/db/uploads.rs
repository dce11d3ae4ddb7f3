//! Upload rows and the part digests signed into their keys.

use std::collections::{BTreeMap, HashSet};

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row as _, Sqlite};
use time::OffsetDateTime;
use valet_protocol::{PartDigest, UploadState};

use super::{Db, from_millis, to_millis};
use crate::Error;
use crate::audit::{self, Entry};

/// One upload session.
#[derive(Debug, Clone)]
pub struct UploadRow {
    /// Random id.
    pub id: String,
    /// Owner.
    pub user: String,
    /// Where the object goes.
    pub object_key: String,
    /// The name as the client gave it.
    pub file_name: String,
    /// Declared size.
    pub size: u64,
    /// Content type sent to the store.
    pub content_type: String,
    /// Bytes in every part but the last.
    pub part_size: u64,
    /// Number of parts.
    pub part_count: u32,
    /// The store's multipart upload id.
    pub store_upload_id: String,
    /// Where it stands.
    pub state: UploadState,
    /// Whole-file hex SHA-256, once verified.
    pub sha256: Option<String>,
    /// The object's ETag, once verified.
    pub etag: Option<String>,
    /// The store's checksum of the object, once verified (where reported).
    pub store_checksum: Option<String>,
    /// The named store (`[stores.NAME]`) it was created on; `None` for `[store]`.
    pub store: Option<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// The key the client's create request carried, if any (unique per user).
    pub idempotency_key: Option<String>,
}

fn state_str(state: UploadState) -> &'static str {
    match state {
        UploadState::Open => "open",
        UploadState::Verified => "verified",
        UploadState::Aborted => "aborted",
        _ => "failed",
    }
}

fn parse_state(s: &str) -> UploadState {
    match s {
        "open" => UploadState::Open,
        "verified" => UploadState::Verified,
        "aborted" => UploadState::Aborted,
        _ => UploadState::Failed,
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_row(r: &SqliteRow) -> UploadRow {
    UploadRow {
        id: r.get("id"),
        user: r.get("user_name"),
        object_key: r.get("object_key"),
        file_name: r.get("file_name"),
        size: u64::try_from(r.get::<i64, _>("size")).unwrap_or(0),
        content_type: r.get("content_type"),
        part_size: u64::try_from(r.get::<i64, _>("part_size")).unwrap_or(0),
        part_count: u32::try_from(r.get::<i64, _>("part_count")).unwrap_or(0),
        store_upload_id: r.get("store_upload_id"),
        state: parse_state(r.get::<&str, _>("state")),
        sha256: r.get("sha256"),
        etag: r.get("etag"),
        store_checksum: r.get("store_checksum"),
        store: r.get("store_name"),
        created_at: from_millis(r.get("created_at")),
        idempotency_key: r.get("idempotency_key"),
    }
}

const COLUMNS: &str = "id, user_name, object_key, file_name, size, content_type, part_size, \
                       part_count, store_upload_id, state, sha256, etag, store_checksum, created_at, \
                       store_name, idempotency_key";

/// Stores a new (open) upload.
pub async fn insert(db: &Db, u: &UploadRow) -> Result<(), Error> {
    insert_with(db.pool(), u).await
}

/// Stores a new (open) upload unless the user's open and verified uploads would then take more
/// than `quota` bytes. Check and insert are one transaction that first takes a write lock on
/// the user's row (SQLite: the database's write lock; PostgreSQL: that row's lock), so
/// concurrent creates of one user are checked one after the other and cannot together pass
/// the quota. Returns the bytes in use when refused (nothing stored).
pub async fn insert_within_quota(db: &Db, u: &UploadRow, quota: u64) -> Result<Option<u64>, Error> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("UPDATE users SET created_at = created_at WHERE name = ?")
        .bind(&u.user)
        .execute(&mut *tx)
        .await?;
    let used = bytes_in_use_with(&mut *tx, &u.user).await?;
    if used.saturating_add(u.size) > quota {
        tx.rollback().await?;
        return Ok(Some(used));
    }
    insert_with(&mut *tx, u).await?;
    tx.commit().await?;
    Ok(None)
}

async fn insert_with<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    u: &UploadRow,
) -> Result<(), Error> {
    let now = to_millis(u.created_at);
    sqlx::query(
        "INSERT INTO uploads (id, user_name, object_key, file_name, size, content_type, part_size,
            part_count, store_upload_id, state, created_at, updated_at, last_activity_at, store_name,
            idempotency_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&u.id)
    .bind(&u.user)
    .bind(&u.object_key)
    .bind(&u.file_name)
    .bind(to_i64(u.size))
    .bind(&u.content_type)
    .bind(to_i64(u.part_size))
    .bind(i64::from(u.part_count))
    .bind(&u.store_upload_id)
    .bind(state_str(u.state))
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(&u.store)
    .bind(&u.idempotency_key)
    .execute(executor)
    .await?;
    Ok(())
}

/// The upload `id` if it belongs to `user`: another user's upload is not found, exactly like
/// one that does not exist.
pub async fn get_for_user(db: &Db, id: &str, user: &str) -> Result<Option<UploadRow>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM uploads WHERE id = ? AND user_name = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(user)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// The upload `user` created with idempotency key `key`, if any.
pub async fn get_by_idempotency_key(
    db: &Db,
    user: &str,
    key: &str,
) -> Result<Option<UploadRow>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM uploads WHERE user_name = ? AND idempotency_key = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user)
        .bind(key)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Whether `e` is an insert refused by a unique index (here: a concurrent create with the
/// same idempotency key got in first).
pub fn is_unique_violation(e: &Error) -> bool {
    matches!(e, Error::Database(sqlx::Error::Database(db)) if db.is_unique_violation())
}

/// The user's uploads, newest first.
pub async fn list_for_user(db: &Db, user: &str) -> Result<Vec<UploadRow>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM uploads WHERE user_name = ? ORDER BY created_at DESC, id LIMIT 1000"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Bytes the user's open and verified uploads take (what a quota counts).
pub async fn bytes_in_use(db: &Db, user: &str) -> Result<u64, Error> {
    bytes_in_use_with(db.pool(), user).await
}

async fn bytes_in_use_with<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    user: &str,
) -> Result<u64, Error> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(size), 0) AS total FROM uploads
         WHERE user_name = ? AND state IN ('open', 'verified')",
    )
    .bind(user)
    .fetch_one(executor)
    .await?;
    Ok(u64::try_from(row.get::<i64, _>("total")).unwrap_or(0))
}

/// Open uploads whose last activity is before `idle_since`, for the sweeper.
pub async fn idle_open(db: &Db, idle_since: OffsetDateTime) -> Result<Vec<UploadRow>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM uploads WHERE state = 'open' AND last_activity_at < ? LIMIT 500"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to_millis(idle_since))
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Records activity (keys issued), which keeps the sweeper away.
async fn touch_with<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    id: &str,
    now: OffsetDateTime,
) -> Result<(), Error> {
    sqlx::query("UPDATE uploads SET last_activity_at = ?, updated_at = ? WHERE id = ?")
        .bind(to_millis(now))
        .bind(to_millis(now))
        .bind(id)
        .execute(executor)
        .await?;
    Ok(())
}

/// Moves an upload from `from` to `to`; false when it was not in `from` any more.
pub async fn transition(
    db: &Db,
    id: &str,
    from: UploadState,
    to: UploadState,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let done =
        sqlx::query("UPDATE uploads SET state = ?, updated_at = ? WHERE id = ? AND state = ?")
            .bind(state_str(to))
            .bind(to_millis(now))
            .bind(id)
            .bind(state_str(from))
            .execute(db.pool())
            .await?;
    Ok(done.rows_affected() == 1)
}

/// What a verified upload records.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    /// Whole-file hex SHA-256.
    pub sha256: &'a str,
    /// The object's ETag.
    pub etag: &'a str,
    /// The store's checksum, where reported.
    pub store_checksum: Option<&'a str>,
}

/// Marks an open upload verified.
pub async fn mark_verified(
    db: &Db,
    id: &str,
    v: &Verified<'_>,
    now: OffsetDateTime,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE uploads SET state = 'verified', sha256 = ?, etag = ?, store_checksum = ?,
            updated_at = ?, completed_at = ?
         WHERE id = ?",
    )
    .bind(v.sha256)
    .bind(v.etag)
    .bind(v.store_checksum)
    .bind(to_millis(now))
    .bind(to_millis(now))
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Records a batch of issued keys of upload `id`: the digest signed into each part's newest
/// key, the audit entries `entries` makes of them (given the parts that had a key before, the
/// renewals), and the upload's activity. One transaction, so the batch is recorded whole or not
/// at all, and one commit (one sync of the log) for the batch instead of two per part.
pub async fn record_keys<'a>(
    db: &Db,
    id: &str,
    parts: &[PartDigest],
    now: OffsetDateTime,
    entries: impl FnOnce(&HashSet<u32>) -> Vec<Entry<'a>>,
) -> Result<(), Error> {
    let mut tx = db.pool().begin().await?;
    // The write comes first: it takes SQLite's write lock (PostgreSQL: the row's lock) before
    // anything is read, so the transaction never has to upgrade a read to a write, which WAL
    // refuses at once (busy) when another writer committed in between.
    touch_with(&mut *tx, id, now).await?;
    let mut existing =
        QueryBuilder::<Sqlite>::new("SELECT part_number FROM part_digests WHERE upload_id = ");
    existing.push_bind(id).push(" AND part_number IN (");
    let mut numbers = existing.separated(", ");
    for part in parts {
        numbers.push_bind(i64::from(part.number));
    }
    existing.push(")");
    let renewed: HashSet<u32> = existing
        .build()
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .filter_map(|r| u32::try_from(r.get::<i64, _>("part_number")).ok())
        .collect();

    let mut upsert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO part_digests (upload_id, part_number, size, sha256, md5, issued_at) ",
    );
    upsert.push_values(parts, |mut row, part| {
        row.push_bind(id)
            .push_bind(i64::from(part.number))
            .push_bind(to_i64(part.size))
            .push_bind(part.sha256.as_str())
            .push_bind(part.md5.as_deref())
            .push_bind(to_millis(now));
    });
    upsert.push(
        " ON CONFLICT (upload_id, part_number)
         DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, md5 = excluded.md5,
                       issued_at = excluded.issued_at",
    );
    upsert.build().execute(&mut *tx).await?;
    audit::record_all_with(&mut *tx, &entries(&renewed)).await?;
    tx.commit().await?;
    Ok(())
}

/// The MD5 (base64) the newest key of each part was issued for, where the store needed one.
pub async fn part_md5s(db: &Db, id: &str) -> Result<BTreeMap<u32, String>, Error> {
    signed_digests(db, id, "md5").await
}

/// The digest (base64) signed into the newest key of each part, by part number.
pub async fn part_digests(db: &Db, id: &str) -> Result<BTreeMap<u32, String>, Error> {
    signed_digests(db, id, "sha256").await
}

/// One digest `column` of `part_digests` (a name written here, never input) for each part of
/// upload `id` that has one, by part number.
async fn signed_digests(
    db: &Db,
    id: &str,
    column: &'static str,
) -> Result<BTreeMap<u32, String>, Error> {
    let sql = format!(
        "SELECT part_number, {column} AS digest FROM part_digests
         WHERE upload_id = ? AND {column} IS NOT NULL"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(db.pool())
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let n = u32::try_from(r.get::<i64, _>("part_number")).ok()?;
            Some((n, r.get::<String, _>("digest")))
        })
        .collect())
}
