//! The service's database: SQLite through sqlx, schema applied at start from embedded SQL files.
//!
//! Queries are plain `sqlx::query` strings read with `Row::get` (no compile-time macros, so the
//! build needs no database) and stay portable SQL so PostgreSQL can follow with the same text.

pub mod devices;
pub mod identities;
pub mod tokens;
pub mod uploads;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;

use crate::Error;

/// The schema, oldest first. Never edit an applied file: add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("migrations/0001_initial.sql")),
    (2, "part md5", include_str!("migrations/0002_part_md5.sql")),
    (
        3,
        "upload store",
        include_str!("migrations/0003_upload_store.sql"),
    ),
    (4, "devices", include_str!("migrations/0004_devices.sql")),
    (
        5,
        "identities",
        include_str!("migrations/0005_identities.sql"),
    ),
    (
        6,
        "used id tokens",
        include_str!("migrations/0006_used_id_tokens.sql"),
    ),
    (
        7,
        "idempotency key",
        include_str!("migrations/0007_idempotency_key.sql"),
    ),
];

/// A handle on the database (cheap to clone).
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating when missing) the SQLite file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            // Several connections write (requests, sweeper); wait rather than fail on a lock.
            .busy_timeout(Duration::from_secs(10))
            // In WAL mode, NORMAL syncs the log at checkpoints, not at every commit: a crash
            // of the service loses nothing and the file is never corrupt, but a power loss
            // or OS crash may undo the last commits. FULL's sync per commit halved the keys
            // answered per second (bench/service.sh).
            .synchronous(SqliteSynchronous::Normal);
        // SQLite takes one writer at a time and each connection is a thread: two (a writer
        // and a reader beside it) answered more and with a shorter tail on 2 cores than four.
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        let migrator = Migrator::with_migrations(
            MIGRATIONS
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(
                        *version,
                        (*name).into(),
                        MigrationType::Simple,
                        sqlx::SqlSafeStr::into_sql_str(*sql),
                        false,
                    )
                })
                .collect(),
        );
        migrator.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for the query modules.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection (end of a command, end of a test).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Unix milliseconds, the column format of every time.
pub(crate) fn to_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Back from a time column.
pub(crate) fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `t + d` in column format.
pub(crate) fn millis_after(t: OffsetDateTime, d: Duration) -> i64 {
    to_millis(t).saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Adds a user; `password_hash` is a PHC string.
pub async fn insert_user(
    db: &Db,
    name: &str,
    password_hash: &str,
    now: OffsetDateTime,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?)")
        .bind(name)
        .bind(password_hash)
        .bind(to_millis(now))
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The password hash of `name`, when the user exists.
pub async fn user_password_hash(db: &Db, name: &str) -> Result<Option<String>, Error> {
    use sqlx::Row as _;
    let row = sqlx::query("SELECT password_hash FROM users WHERE name = ?")
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.get("password_hash")))
}

/// Replaces the password hash of an existing user; false when there is no such user.
pub async fn set_user_password_hash(
    db: &Db,
    name: &str,
    password_hash: &str,
) -> Result<bool, Error> {
    let done = sqlx::query("UPDATE users SET password_hash = ? WHERE name = ?")
        .bind(password_hash)
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}
