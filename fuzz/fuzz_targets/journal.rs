//! Journal rows as the engine reads them back from SQLite: hostile rows (any value of any
//! SQLite type in any column, parts of no upload, unknown store protocols) are read as entries,
//! receipts and store protocols without a panic; rows the engine wrote read back as written.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rusqlite::types::Value;
use time::OffsetDateTime;
use valet_engine::{FileStamp, Journal, NewEntry};
use valet_protocol::{PartChecksum, PartReceipt, StoreKind};

#[derive(Arbitrary, Debug)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    fn value(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Int(i) => Value::Integer(*i),
            Self::Real(r) => Value::Real(*r),
            Self::Text(t) => Value::Text(t.clone()),
            Self::Blob(b) => Value::Blob(b.clone()),
        }
    }
}

/// The columns of `uploads` after `id`, in order, and `store_protocol`.
const UPLOAD_COLUMNS: [&str; 18] = [
    "path",
    "size",
    "mtime_ns",
    "inode",
    "part_size",
    "server",
    "prefix",
    "upload_id",
    "object_key",
    "store_origin",
    "key_ttl_secs",
    "state",
    "sha256",
    "error_code",
    "error",
    "created_at",
    "updated_at",
    "store_protocol",
];

#[derive(Arbitrary, Debug)]
struct Written {
    path: String,
    size: u64,
    mtime_ns: i64,
    inode: Option<u64>,
    part_size: u64,
    prefix: Option<String>,
    upload_id: String,
    key_ttl_secs: u64,
    kind: u8,
    checksums: Vec<bool>,
    receipts: Vec<(u32, String, String, u64)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    hostile_uploads: Vec<(Cell, [Cell; 18])>,
    hostile_parts: Vec<[Cell; 5]>,
    written: Option<Written>,
}

struct Fixture {
    journal: Journal,
    raw: rusqlite::Connection,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static std::sync::Mutex<Fixture> {
    static FIXTURE: OnceLock<std::sync::Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("journal.sqlite");
        let journal = Journal::open(&path).expect("a new journal opens");
        let raw = rusqlite::Connection::open(&path).expect("a second connection");
        std::sync::Mutex::new(Fixture {
            journal,
            raw,
            _dir: dir,
        })
    })
}

fuzz_target!(|input: Input| {
    let fixture = fixture().lock().unwrap_or_else(|p| p.into_inner());
    let (journal, raw) = (&fixture.journal, &fixture.raw);
    raw.execute_batch("DELETE FROM parts; DELETE FROM uploads;")
        .expect("tables empty");
    if let Some(written) = &input.written {
        written_rows_read_back(journal, written);
    }
    let columns = UPLOAD_COLUMNS.join(", ");
    let marks = (1..=19)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!("INSERT INTO uploads (id, {columns}) VALUES ({marks})");
    for (id, cells) in input.hostile_uploads.iter().take(8) {
        let values: Vec<Value> = std::iter::once(id).chain(cells).map(Cell::value).collect();
        // The schema refuses some rows (NOT NULL, CHECK): a hostile file could hold only these.
        let _ = raw.execute(&insert, rusqlite::params_from_iter(values));
    }
    for cells in input.hostile_parts.iter().take(16) {
        let values: Vec<Value> = cells.iter().map(Cell::value).collect();
        let _ = raw.execute(
            "INSERT OR REPLACE INTO parts (upload, number, etag, sha256, size)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params_from_iter(values),
        );
    }
    hostile_rows_read(journal);
});

/// Whatever the rows, every read is an entry or a clear error, never a panic.
fn hostile_rows_read(journal: &Journal) {
    let entries = match journal.entries() {
        Ok(entries) => entries,
        Err(e) => {
            assert_eq!(e.code(), "journal", "{e}");
            Vec::new()
        }
    };
    for entry in &entries {
        assert_eq!(
            entry.part_count,
            valet_protocol::part_count(entry.stamp.size, entry.part_size)
        );
        assert!(entry.part_count >= 1);
        if let Err(e) = journal.receipts(entry.id) {
            assert_eq!(e.code(), "journal", "{e}");
        }
        if let Err(e) = journal.store_protocol(entry.id) {
            assert!(matches!(e.code(), "journal" | "invalid"), "{e}");
        }
        let _ = journal.entry(entry.id);
        let _ = journal.unfinished_of(&entry.path);
        let _ = journal.find_unfinished(&entry.path, &entry.stamp, entry.prefix.as_deref());
    }
    let _ = journal.unfinished();
}

/// What the engine writes, it reads back the same.
fn written_rows_read_back(journal: &Journal, w: &Written) {
    let now = OffsetDateTime::UNIX_EPOCH;
    let stamp = FileStamp {
        size: w.size,
        mtime_ns: w.mtime_ns,
        inode: w.inode,
    };
    let new = NewEntry {
        path: Path::new(&w.path),
        stamp,
        part_size: w.part_size,
        server: "https://valet.example.com/",
        prefix: w.prefix.as_deref(),
    };
    let id = journal.begin(&new, now).expect("begin");
    let origin = "https://s3.example.com";
    journal
        .set_created(id, &w.upload_id, "k", origin, w.key_ttl_secs, now)
        .expect("set_created");
    let kind = [StoreKind::S3, StoreKind::Azure, StoreKind::Gcs][usize::from(w.kind % 3)];
    let checksums: Vec<PartChecksum> = w
        .checksums
        .iter()
        .map(|&md5| {
            if md5 {
                PartChecksum::Md5
            } else {
                PartChecksum::Crc64
            }
        })
        .collect();
    journal
        .set_store_protocol(id, kind, &checksums)
        .expect("set_store_protocol");
    let mut expected = std::collections::BTreeMap::new();
    for (number, etag, sha256, size) in w.receipts.iter().take(32) {
        let receipt = PartReceipt {
            number: *number,
            etag: etag.clone(),
            sha256: sha256.clone(),
            size: *size,
        };
        journal.add_receipt(id, &receipt, now).expect("add_receipt");
        expected.insert(*number, receipt);
    }

    let entry = journal.entry(id).expect("the entry reads back");
    assert_eq!(entry.path, Path::new(&w.path));
    assert_eq!(entry.stamp, stamp);
    assert_eq!(entry.part_size, w.part_size);
    assert_eq!(entry.prefix.as_deref(), w.prefix.as_deref());
    assert_eq!(entry.upload_id.as_deref(), Some(w.upload_id.as_str()));
    assert_eq!(entry.key_ttl_secs, Some(w.key_ttl_secs));
    assert_eq!(entry.parts_done as usize, expected.len());
    assert_eq!(
        journal.store_protocol(id).expect("protocol"),
        (kind, checksums)
    );
    let receipts = journal.receipts(id).expect("receipts");
    assert_eq!(receipts, expected.into_values().collect::<Vec<_>>());
    let found = journal
        .find_unfinished(Path::new(&w.path), &stamp, w.prefix.as_deref())
        .expect("find_unfinished");
    assert_eq!(
        found.map(|e| e.id),
        Some(id),
        "an unfinished upload is found again"
    );
}
