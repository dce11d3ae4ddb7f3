//! The journal: what the engine has done, so that an upload survives a crash, a reboot or a lost
//! network, and so that a changed file is never completed.
//!
//! A SQLite file (`journal.sqlite` in the data directory) in WAL mode. Each upload is a row in
//! `uploads` (the file's path, size, modification time and inode as they were when it started,
//! the part size, the service's upload id and object key, the store origin and key life, the
//! state and the last error); each part the store accepted is a row in `parts`, written in its
//! own transaction as soon as the store answers, so a crash loses at most the parts in flight.
//!
//! A journal that cannot be opened, is not a SQLite database, or cannot be written is an
//! [`Error::Journal`] naming the file, never a panic.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use valet_protocol::{PartChecksum, PartReceipt, StoreKind};

use crate::error::{Error, Result};
use crate::source::FileStamp;

/// File name of the journal in the data directory.
pub const JOURNAL_FILE: &str = "journal.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS uploads (
    id            INTEGER PRIMARY KEY,
    path          TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    mtime_ns      INTEGER NOT NULL,
    inode         INTEGER,
    part_size     INTEGER NOT NULL,
    server        TEXT,
    prefix        TEXT,
    upload_id     TEXT,
    object_key    TEXT,
    store_origin  TEXT,
    key_ttl_secs  INTEGER,
    state         TEXT    NOT NULL CHECK (state IN ('uploading', 'verified', 'failed')),
    sha256        TEXT,
    error_code    TEXT,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_path ON uploads (path, state);
CREATE TABLE IF NOT EXISTS parts (
    upload  INTEGER NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    number  INTEGER NOT NULL,
    etag    TEXT    NOT NULL,
    sha256  TEXT    NOT NULL,
    size    INTEGER NOT NULL,
    PRIMARY KEY (upload, number)
);
";

/// Columns added to `uploads` after its first version, each empty in older journals:
/// - `store_protocol` (JSON: the store kind and the part digests its keys need; empty: S3);
/// - `idempotency_key`, sent with the create request and journaled before it (empty: never
///   sent, or the service side was reset).
const ADDED_COLUMNS: &[&str] = &["store_protocol", "idempotency_key"];

/// Adds the [`ADDED_COLUMNS`] an older journal lacks.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for column in ADDED_COLUMNS {
        let has: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('uploads') WHERE name = ?1")?
            .exists([column])?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE uploads ADD COLUMN {column} TEXT"))?;
        }
    }
    Ok(())
}

/// Where a journaled upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryState {
    /// Not finished: `resume` will finish it.
    Uploading,
    /// The service verified it.
    Verified,
    /// Ended without being completed (changed file, refusal); see the entry's error.
    Failed,
}

impl EntryState {
    /// `uploading`, `verified` or `failed`, as in the journal and `valet status --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Verified => "verified",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "verified" => Self::Verified,
            "failed" => Self::Failed,
            _ => Self::Uploading,
        }
    }
}

/// One journaled upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The journal's own id of the upload.
    pub id: i64,
    /// The file (absolute).
    pub path: PathBuf,
    /// The file as it was when the upload started.
    pub stamp: FileStamp,
    /// Bytes per part (the last may be shorter).
    pub part_size: u64,
    /// The service URL the upload was created on.
    pub server: Option<String>,
    /// The `--to` folder asked for.
    pub prefix: Option<String>,
    /// The service's id, once created.
    pub upload_id: Option<String>,
    /// The object key, once created.
    pub object_key: Option<String>,
    /// The store origin key URLs must have.
    pub store_origin: Option<String>,
    /// Life of each key, seconds.
    pub key_ttl_secs: Option<u64>,
    /// Where it stands.
    pub state: EntryState,
    /// Whole-file SHA-256 (hex), once verified.
    pub sha256: Option<String>,
    /// Code of the last error ([`Error::code`]).
    pub error_code: Option<String>,
    /// Message of the last error.
    pub error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Parts the store accepted (journaled receipts).
    pub parts_done: u32,
    /// Parts in the layout.
    pub part_count: u32,
    /// The key of the create request, journaled before it was sent: with no upload id, an
    /// earlier run may have created the upload on the service without hearing the answer.
    pub idempotency_key: Option<String>,
}

/// What is known of an upload before it is created on the service.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// The file (absolute).
    pub path: &'a Path,
    /// The file as it is now.
    pub stamp: FileStamp,
    /// Bytes per part.
    pub part_size: u64,
    /// The service URL.
    pub server: &'a str,
    /// The `--to` folder.
    pub prefix: Option<&'a str>,
}

/// The journal file. Cheap to clone; calls block briefly on SQLite (call them from
/// `spawn_blocking` in async code).
#[derive(Clone)]
pub struct Journal {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (or creates) `data_dir/journal.sqlite`.
    pub fn open_in(data_dir: &Path) -> Result<Self> {
        crate::settings::ensure_data_dir(data_dir)?;
        Self::open(&data_dir.join(JOURNAL_FILE))
    }

    /// Opens (or creates) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |source| Error::Journal {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        // WAL: a reader (`valet status`) never blocks a writer; NORMAL sync is durable across
        // process crashes and loses at most the last receipts on power loss, which resume redoes.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .map_err(err)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        add_missing_columns(&conn).map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Journal {
            path: self.path.clone(),
            source,
        }
    }

    /// Records a new upload in state `uploading`; its id.
    pub fn begin(&self, new: &NewEntry<'_>, now: OffsetDateTime) -> Result<i64> {
        let now = now.unix_timestamp();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO uploads (path, size, mtime_ns, inode, part_size, server, prefix, state,
                                  created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'uploading', ?8, ?8)",
            params![
                path_text(new.path),
                new.stamp.size as i64,
                new.stamp.mtime_ns,
                new.stamp.inode.map(|i| i as i64),
                new.part_size as i64,
                new.server,
                new.prefix,
                now
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// The idempotency key of the create request of upload `id`: the one journaled, or a new
    /// random one (128 bits, hex) journaled before it is returned: a create sent with it can
    /// be sent again after a crash, and the service answers the upload it made then.
    pub fn idempotency_key(&self, id: i64) -> Result<String> {
        let fresh = hex::encode(rand::random::<[u8; 16]>());
        let conn = self.conn();
        conn.execute(
            "UPDATE uploads SET idempotency_key = ?2 WHERE id = ?1 AND idempotency_key IS NULL",
            params![id, fresh],
        )
        .map_err(|e| self.err(e))?;
        conn.query_row(
            "SELECT idempotency_key FROM uploads WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .map_err(|e| self.err(e))
    }

    /// Records the service's answer to the creation of upload `id`.
    pub fn set_created(
        &self,
        id: i64,
        upload_id: &str,
        object_key: &str,
        store_origin: &str,
        key_ttl_secs: u64,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.update(
            "UPDATE uploads SET upload_id = ?2, object_key = ?3, store_origin = ?4,
                    key_ttl_secs = ?5, updated_at = ?6 WHERE id = ?1",
            params![
                id,
                upload_id,
                object_key,
                store_origin,
                key_ttl_secs as i64,
                now.unix_timestamp()
            ],
        )
    }

    /// Records the part size the service chose for upload `id` (the one journaled at
    /// [`Journal::begin`] was only asked for). Written before [`Journal::set_created`], so an
    /// entry with an upload id always has that upload's part size.
    pub fn set_part_size(&self, id: i64, part_size: u64) -> Result<()> {
        self.update(
            "UPDATE uploads SET part_size = ?2 WHERE id = ?1",
            params![id, part_size as i64],
        )
    }

    /// Records the store protocol of upload `id` as the service announced it (kind and the
    /// part digests its keys need), so a resumed run sends parts the same way.
    pub fn set_store_protocol(
        &self,
        id: i64,
        kind: StoreKind,
        part_checksums: &[PartChecksum],
    ) -> Result<()> {
        let protocol = serde_json::json!({ "kind": kind, "part_checksums": part_checksums });
        self.update(
            "UPDATE uploads SET store_protocol = ?2 WHERE id = ?1",
            params![id, protocol.to_string()],
        )
    }

    /// The store protocol of upload `id`: S3 without extra digests when none was recorded
    /// (journals written before other stores existed).
    pub fn store_protocol(&self, id: i64) -> Result<(StoreKind, Vec<PartChecksum>)> {
        #[derive(serde::Deserialize)]
        struct Protocol {
            kind: StoreKind,
            #[serde(default)]
            part_checksums: Vec<PartChecksum>,
        }
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT store_protocol FROM uploads WHERE id = ?1",
                params![id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        match text.map(|t| serde_json::from_str::<Protocol>(&t)) {
            None => Ok((StoreKind::S3, Vec::new())),
            Some(Ok(p)) => Ok((p.kind, p.part_checksums)),
            Some(Err(e)) => Err(Error::Invalid(format!(
                "journal entry {id} names a store this version does not know: {e}"
            ))),
        }
    }

    /// Forgets the service side of upload `id` (its upload id, its create request's key and
    /// every receipt), to start it again on the service: after the service lost or aborted it.
    pub fn reset_upload(&self, id: i64, server: &str, now: OffsetDateTime) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM parts WHERE upload = ?1", params![id])
            .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE uploads SET upload_id = NULL, object_key = NULL, store_origin = NULL,
                    store_protocol = NULL, key_ttl_secs = NULL, idempotency_key = NULL,
                    server = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, server, now.unix_timestamp()],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records the store's receipt for one part of upload `id`, in its own transaction.
    pub fn add_receipt(&self, id: i64, receipt: &PartReceipt, now: OffsetDateTime) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO parts (upload, number, etag, sha256, size)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                receipt.number,
                receipt.etag,
                receipt.sha256,
                receipt.size as i64
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE uploads SET updated_at = ?2 WHERE id = ?1",
            params![id, now.unix_timestamp()],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Forgets the receipts of the given parts (the store no longer holds them).
    pub fn remove_receipts(&self, id: i64, numbers: &[u32]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for number in numbers {
            tx.execute(
                "DELETE FROM parts WHERE upload = ?1 AND number = ?2",
                params![id, number],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The receipts of upload `id`, by part number.
    pub fn receipts(&self, id: i64) -> Result<Vec<PartReceipt>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT number, etag, sha256, size FROM parts WHERE upload = ?1 ORDER BY number",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![id], |row| {
                Ok(PartReceipt {
                    number: row.get(0)?,
                    etag: row.get(1)?,
                    sha256: row.get(2)?,
                    size: row.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Marks upload `id` verified by the service.
    pub fn mark_verified(
        &self,
        id: i64,
        sha256: &str,
        object_key: &str,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.update(
            "UPDATE uploads SET state = 'verified', sha256 = ?2, object_key = ?3,
                    error_code = NULL, error = NULL, updated_at = ?4 WHERE id = ?1",
            params![id, sha256, object_key, now.unix_timestamp()],
        )
    }

    /// Marks upload `id` failed for good, with the reason.
    /// `code` is an [`Error::code`], `message` the error as shown.
    pub fn mark_failed(
        &self,
        id: i64,
        code: &str,
        message: &str,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.update(
            "UPDATE uploads SET state = 'failed', error_code = ?2, error = ?3, updated_at = ?4
             WHERE id = ?1",
            params![id, code, message, now.unix_timestamp()],
        )
    }

    /// Records the last error of upload `id`, leaving it to be resumed.
    pub fn note_error(
        &self,
        id: i64,
        code: &str,
        message: &str,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.update(
            "UPDATE uploads SET error_code = ?2, error = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, code, message, now.unix_timestamp()],
        )
    }

    fn update(&self, sql: &str, params: impl rusqlite::Params) -> Result<()> {
        self.conn()
            .execute(sql, params)
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Upload `id`.
    pub fn entry(&self, id: i64) -> Result<JournalEntry> {
        self.select("WHERE u.id = ?1", params![id])?
            .pop()
            .ok_or_else(|| self.err(rusqlite::Error::QueryReturnedNoRows))
    }

    /// The unfinished upload of `path` to the `--to` folder `prefix`, started when the file was
    /// as `stamp` says (size, modification time, and inode where both stamps have one), if any.
    /// An upload of the same file to another folder is not a match: resuming it would put the
    /// object where this upload was not asked to.
    pub fn find_unfinished(
        &self,
        path: &Path,
        stamp: &FileStamp,
        prefix: Option<&str>,
    ) -> Result<Option<JournalEntry>> {
        let found = self.select(
            "WHERE u.state = 'uploading' AND u.path = ?1 AND u.size = ?2 AND u.mtime_ns = ?3
                   AND u.prefix IS ?4 AND (u.inode IS ?5 OR u.inode IS NULL OR ?5 IS NULL)
             ORDER BY u.id DESC LIMIT 1",
            params![
                path_text(path),
                stamp.size as i64,
                stamp.mtime_ns,
                prefix,
                stamp.inode.map(|i| i as i64)
            ],
        )?;
        Ok(found.into_iter().next())
    }

    /// Every unfinished upload of `path` (whatever the file was like then).
    pub fn unfinished_of(&self, path: &Path) -> Result<Vec<JournalEntry>> {
        self.select(
            "WHERE u.state = 'uploading' AND u.path = ?1 ORDER BY u.id",
            params![path_text(path)],
        )
    }

    /// Every unfinished upload, oldest first.
    pub fn unfinished(&self) -> Result<Vec<JournalEntry>> {
        self.select("WHERE u.state = 'uploading' ORDER BY u.id", params![])
    }

    /// Every journaled upload, oldest first.
    pub fn entries(&self) -> Result<Vec<JournalEntry>> {
        self.select("ORDER BY u.id", params![])
    }

    fn select(&self, filter: &str, params: impl rusqlite::Params) -> Result<Vec<JournalEntry>> {
        let sql = format!(
            "SELECT u.id, u.path, u.size, u.mtime_ns, u.inode, u.part_size, u.server, u.prefix,
                    u.upload_id, u.object_key, u.store_origin, u.key_ttl_secs, u.state, u.sha256,
                    u.error_code, u.error, u.created_at, u.updated_at,
                    (SELECT COUNT(*) FROM parts p WHERE p.upload = u.id), u.idempotency_key
             FROM uploads u {filter}"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params, |row| {
                let size = row.get::<_, i64>(2)? as u64;
                let part_size = row.get::<_, i64>(5)? as u64;
                Ok(JournalEntry {
                    id: row.get(0)?,
                    path: PathBuf::from(row.get::<_, String>(1)?),
                    stamp: FileStamp {
                        size,
                        mtime_ns: row.get(3)?,
                        inode: row.get::<_, Option<i64>>(4)?.map(|i| i as u64),
                    },
                    part_size,
                    server: row.get(6)?,
                    prefix: row.get(7)?,
                    upload_id: row.get(8)?,
                    object_key: row.get(9)?,
                    store_origin: row.get(10)?,
                    key_ttl_secs: row.get::<_, Option<i64>>(11)?.map(|t| t as u64),
                    state: EntryState::parse(&row.get::<_, String>(12)?),
                    sha256: row.get(13)?,
                    error_code: row.get(14)?,
                    error: row.get(15)?,
                    created_at: row.get(16)?,
                    updated_at: row.get(17)?,
                    parts_done: row.get(18)?,
                    part_count: valet_protocol::part_count(size, part_size),
                    idempotency_key: row.get(19)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Whether there is a row for upload `id` (used by tests and by resume bookkeeping).
    pub fn contains(&self, id: i64) -> Result<bool> {
        self.conn()
            .query_row("SELECT 1 FROM uploads WHERE id = ?1", params![id], |_| {
                Ok(())
            })
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.err(e))
    }
}

/// Paths are stored as text; a non-UTF-8 path is stored lossily (it will not match on resume,
/// so such a file is uploaded from the start rather than resumed).
fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
