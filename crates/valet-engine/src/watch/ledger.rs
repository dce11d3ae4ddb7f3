//! What the folder watch has sent: `watch.sqlite` in the data directory, apart from the upload
//! journal (which records uploads, not which version of which watched file is already in the
//! store).
//!
//! One row per (watched folder, `--to` folder, file path): the file's size, modification time
//! and inode when it was sent, its SHA-256 and object key. A file is "already sent" when its
//! path has a row with the same stamp; "moved" when another row has its stamp (a rename keeps
//! inode, size and mtime); "a copy" when another row has its size and SHA-256. Paths are stored
//! as their OS bytes, so names that are not UTF-8 stay exact.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::source::FileStamp;

/// File name of the folder watch's record in the data directory.
pub const WATCH_LEDGER_FILE: &str = "watch.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sent (
    root        BLOB    NOT NULL,
    prefix      TEXT    NOT NULL,
    path        BLOB    NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    inode       INTEGER,
    sha256      TEXT    NOT NULL,
    object_key  TEXT    NOT NULL,
    sent_at     INTEGER NOT NULL,
    PRIMARY KEY (root, prefix, path)
);
CREATE INDEX IF NOT EXISTS sent_by_stamp ON sent (root, prefix, size, mtime_ns, inode);
CREATE INDEX IF NOT EXISTS sent_by_content ON sent (root, prefix, size, sha256);
";

/// Which watched folder, sent to which `--to` folder: rows of one scope never answer for
/// another (the same folder watched into another `--to` folder is sent again).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Scope {
    /// The watched folder (canonical).
    pub(crate) root: PathBuf,
    /// The `--to` folder, or empty.
    pub(crate) prefix: String,
}

/// A version of a file that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentFile {
    /// The file, when it was recorded.
    pub(crate) path: PathBuf,
    /// Its stamp.
    pub(crate) stamp: FileStamp,
    /// Whole-file SHA-256, hex.
    pub(crate) sha256: String,
    /// Where it is in the store.
    pub(crate) object_key: String,
}

/// The record. Owned by the watch loop alone (one connection, no locking).
#[derive(Debug)]
pub(crate) struct Ledger {
    conn: Connection,
    path: PathBuf,
}

impl Ledger {
    /// Opens (creating when missing) `watch.sqlite` in `data_dir`.
    pub(crate) fn open_in(data_dir: &Path) -> Result<Self> {
        crate::settings::ensure_data_dir(data_dir)?;
        Self::open(&data_dir.join(WATCH_LEDGER_FILE))
    }

    /// Opens (creating when missing) the record at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let err = |source| Error::Journal {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        // WAL without a sync per commit: a crash may lose the last rows, and then a file is
        // checked against the upload journal or its content again, never lost.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Journal {
            path: self.path.clone(),
            source,
        }
    }

    /// The stamp recorded for `path`, if it was sent.
    pub(crate) fn stamp_of(&self, scope: &Scope, path: &Path) -> Result<Option<FileStamp>> {
        self.conn
            .prepare_cached(
                "SELECT size, mtime_ns, inode FROM sent WHERE root = ?1 AND prefix = ?2 AND path = ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![bytes(&scope.root), scope.prefix, bytes(path)],
                    |row| {
                        Ok(FileStamp {
                            size: row.get::<_, i64>(0)? as u64,
                            mtime_ns: row.get(1)?,
                            inode: row.get::<_, Option<i64>>(2)?.map(|i| i as u64),
                        })
                    },
                )
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// A file sent with exactly this stamp (inode included): the same file, renamed or moved.
    pub(crate) fn find_stamp(&self, scope: &Scope, stamp: &FileStamp) -> Result<Option<SentFile>> {
        let Some(inode) = stamp.inode else {
            return Ok(None);
        };
        self.find(
            "size = ?3 AND mtime_ns = ?4 AND inode = ?5",
            params![
                bytes(&scope.root),
                scope.prefix,
                stamp.size as i64,
                stamp.mtime_ns,
                inode as i64
            ],
        )
    }

    /// Whether any file of `size` bytes was sent (only then is a content check worth a read).
    pub(crate) fn has_size(&self, scope: &Scope, size: u64) -> Result<bool> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sent WHERE root = ?1 AND prefix = ?2 AND size = ?3)",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![bytes(&scope.root), scope.prefix, size as i64],
                    |row| row.get(0),
                )
            })
            .map_err(|e| self.err(e))
    }

    /// A file sent with this size and content.
    pub(crate) fn find_content(
        &self,
        scope: &Scope,
        size: u64,
        sha256: &str,
    ) -> Result<Option<SentFile>> {
        self.find(
            "size = ?3 AND sha256 = ?4",
            params![bytes(&scope.root), scope.prefix, size as i64, sha256],
        )
    }

    fn find(&self, filter: &str, params: impl rusqlite::Params) -> Result<Option<SentFile>> {
        let sql = format!(
            "SELECT path, size, mtime_ns, inode, sha256, object_key FROM sent
             WHERE root = ?1 AND prefix = ?2 AND {filter} ORDER BY sent_at DESC LIMIT 1"
        );
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_row(params, |row| {
                    Ok(SentFile {
                        path: from_bytes(row.get(0)?),
                        stamp: FileStamp {
                            size: row.get::<_, i64>(1)? as u64,
                            mtime_ns: row.get(2)?,
                            inode: row.get::<_, Option<i64>>(3)?.map(|i| i as u64),
                        },
                        sha256: row.get(4)?,
                        object_key: row.get(5)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// Records that `file` was sent (or is the same as a file that was), replacing what was
    /// recorded for its path.
    pub(crate) fn record(&self, scope: &Scope, file: &SentFile, now: OffsetDateTime) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO sent
                 (root, prefix, path, size, mtime_ns, inode, sha256, object_key, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    bytes(&scope.root),
                    scope.prefix,
                    bytes(&file.path),
                    file.stamp.size as i64,
                    file.stamp.mtime_ns,
                    file.stamp.inode.map(|i| i as i64),
                    file.sha256,
                    file.object_key,
                    now.unix_timestamp(),
                ])
            })
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

fn from_bytes(raw: Vec<u8>) -> PathBuf {
    // SAFETY-free: bytes written by `bytes` on this platform; a foreign or damaged row becomes
    // a lossy path that simply matches no file.
    match String::from_utf8(raw) {
        Ok(text) => PathBuf::from(text),
        Err(e) => {
            #[cfg(unix)]
            {
                use std::os::unix::ffi::OsStringExt;
                PathBuf::from(std::ffi::OsString::from_vec(e.into_bytes()))
            }
            #[cfg(not(unix))]
            {
                PathBuf::from(String::from_utf8_lossy(e.as_bytes()).into_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(path: &str, size: u64, mtime_ns: i64, inode: u64, sha: &str) -> SentFile {
        SentFile {
            path: PathBuf::from(path),
            stamp: FileStamp {
                size,
                mtime_ns,
                inode: Some(inode),
            },
            sha256: sha.into(),
            object_key: format!("users/u/{path}"),
        }
    }

    #[test]
    fn sent_files_are_found_by_path_stamp_and_content_within_their_scope() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open_in(dir.path()).unwrap();
        let scope = Scope {
            root: "/w".into(),
            prefix: "in".into(),
        };
        let other = Scope {
            root: "/w".into(),
            prefix: "elsewhere".into(),
        };
        let a = sent("/w/a.txt", 5, 100, 9, "aa");
        ledger
            .record(&scope, &a, OffsetDateTime::now_utc())
            .unwrap();

        assert_eq!(ledger.stamp_of(&scope, &a.path).unwrap(), Some(a.stamp));
        assert_eq!(ledger.stamp_of(&other, &a.path).unwrap(), None);
        assert_eq!(
            ledger.find_stamp(&scope, &a.stamp).unwrap(),
            Some(a.clone())
        );
        assert!(ledger.has_size(&scope, 5).unwrap());
        assert!(!ledger.has_size(&scope, 6).unwrap());
        assert_eq!(
            ledger
                .find_content(&scope, 5, "aa")
                .unwrap()
                .map(|f| f.path),
            Some(a.path.clone())
        );
        assert_eq!(ledger.find_content(&scope, 5, "bb").unwrap(), None);

        // A new version of the same path replaces the old row.
        let edited = sent("/w/a.txt", 7, 200, 9, "cc");
        ledger
            .record(&scope, &edited, OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(
            ledger.stamp_of(&scope, &a.path).unwrap(),
            Some(edited.stamp)
        );
        assert_eq!(ledger.find_stamp(&scope, &a.stamp).unwrap(), None);

        // Kept across opens.
        drop(ledger);
        let ledger = Ledger::open_in(dir.path()).unwrap();
        assert_eq!(
            ledger.stamp_of(&scope, &a.path).unwrap(),
            Some(edited.stamp)
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_paths_stay_exact() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open_in(dir.path()).unwrap();
        let scope = Scope {
            root: "/w".into(),
            prefix: String::new(),
        };
        let name = std::ffi::OsStr::from_bytes(b"/w/caf\xe9.txt");
        let mut file = sent("x", 1, 1, 1, "s");
        file.path = PathBuf::from(name);
        ledger
            .record(&scope, &file, OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(
            ledger
                .find_stamp(&scope, &file.stamp)
                .unwrap()
                .unwrap()
                .path,
            file.path
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WATCH_LEDGER_FILE), vec![7u8; 4096]).unwrap();
        let e = Ledger::open_in(dir.path()).unwrap_err();
        assert_eq!(e.code(), "journal");
        assert!(e.to_string().contains(WATCH_LEDGER_FILE), "{e}");
    }
}
