use std::path::Path;

use time::OffsetDateTime;
use valet_protocol::PartReceipt;

use super::*;

fn stamp(size: u64) -> FileStamp {
    FileStamp {
        size,
        mtime_ns: 1_700_000_000_123_456_789,
        inode: Some(42),
    }
}

fn receipt(number: u32) -> PartReceipt {
    PartReceipt {
        number,
        etag: format!("\"etag-{number}\""),
        sha256: format!("sha-{number}"),
        size: 5,
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn begin(journal: &Journal, path: &Path, size: u64) -> i64 {
    let new = NewEntry {
        path,
        stamp: stamp(size),
        part_size: valet_protocol::MIN_PART_SIZE,
        server: "http://127.0.0.1:8080/",
        prefix: Some("docs"),
    };
    journal.begin(&new, now()).unwrap()
}

#[test]
fn round_trip_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new("/data/big.iso");
    let id = {
        let journal = Journal::open_in(dir.path()).unwrap();
        let id = begin(&journal, path, 12 * 1024 * 1024);
        journal
            .set_created(
                id,
                "up1",
                "users/a/docs/big.iso",
                "http://127.0.0.1:9000",
                600,
                now(),
            )
            .unwrap();
        journal.add_receipt(id, &receipt(2), now()).unwrap();
        journal.add_receipt(id, &receipt(1), now()).unwrap();
        id
    };
    let journal = Journal::open(&dir.path().join(JOURNAL_FILE)).unwrap();
    let entry = journal.entry(id).unwrap();
    assert_eq!(entry.path, path);
    assert_eq!(entry.stamp, stamp(12 * 1024 * 1024));
    assert_eq!(entry.upload_id.as_deref(), Some("up1"));
    assert_eq!(entry.store_origin.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(entry.key_ttl_secs, Some(600));
    assert_eq!(entry.prefix.as_deref(), Some("docs"));
    assert_eq!(entry.state, EntryState::Uploading);
    assert_eq!((entry.parts_done, entry.part_count), (2, 3));
    assert_eq!(
        journal.receipts(id).unwrap(),
        vec![receipt(1), receipt(2)],
        "receipts come back by part number"
    );
}

#[test]
fn resume_bookkeeping() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_in(dir.path()).unwrap();
    let path = Path::new("/data/f.bin");
    let id = begin(&journal, path, 100);
    let other = begin(&journal, Path::new("/data/g.bin"), 100);

    assert_eq!(
        journal
            .find_unfinished(path, &stamp(100), Some("docs"))
            .unwrap()
            .map(|e| e.id),
        Some(id),
        "same path, size and mtime: resume"
    );
    assert!(
        journal
            .find_unfinished(path, &stamp(101), Some("docs"))
            .unwrap()
            .is_none(),
        "other size"
    );
    let touched = FileStamp {
        mtime_ns: 1,
        ..stamp(100)
    };
    assert!(
        journal
            .find_unfinished(path, &touched, Some("docs"))
            .unwrap()
            .is_none(),
        "other mtime"
    );
    assert!(
        journal
            .find_unfinished(path, &stamp(100), Some("archive"))
            .unwrap()
            .is_none(),
        "another --to folder: not this upload"
    );
    assert!(
        journal
            .find_unfinished(path, &stamp(100), None)
            .unwrap()
            .is_none(),
        "no --to: not this upload"
    );
    let replaced = FileStamp {
        inode: Some(43),
        ..stamp(100)
    };
    assert!(
        journal
            .find_unfinished(path, &replaced, Some("docs"))
            .unwrap()
            .is_none(),
        "another inode: another file"
    );
    let no_inode = FileStamp {
        inode: None,
        ..stamp(100)
    };
    assert_eq!(
        journal
            .find_unfinished(path, &no_inode, Some("docs"))
            .unwrap()
            .map(|e| e.id),
        Some(id),
        "no inode to compare (not Unix): size and mtime decide"
    );
    assert_eq!(journal.unfinished().unwrap().len(), 2);

    journal
        .set_created(id, "up", "k", "http://127.0.0.1:9", 60, now())
        .unwrap();
    journal.add_receipt(id, &receipt(1), now()).unwrap();
    journal.remove_receipts(id, &[1]).unwrap();
    assert!(
        journal.receipts(id).unwrap().is_empty(),
        "a part the store lost is forgotten"
    );

    journal.add_receipt(id, &receipt(1), now()).unwrap();
    journal
        .reset_upload(id, "https://other.example/", now())
        .unwrap();
    let reset = journal.entry(id).unwrap();
    assert_eq!(reset.upload_id, None);
    assert_eq!(reset.parts_done, 0, "a restarted upload keeps no receipts");
    assert_eq!(reset.server.as_deref(), Some("https://other.example/"));

    let changed = Error::SourceChanged {
        path: path.to_path_buf(),
        reason: "size".into(),
    };
    journal
        .note_error(other, "retries_exhausted", "network down", now())
        .unwrap();
    assert_eq!(
        journal.entry(other).unwrap().state,
        EntryState::Uploading,
        "resumable"
    );
    journal
        .mark_failed(id, changed.code(), &changed.to_string(), now())
        .unwrap();
    let failed = journal.entry(id).unwrap();
    assert_eq!(failed.state, EntryState::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("source_changed"));
    assert!(
        journal
            .find_unfinished(path, &stamp(100), Some("docs"))
            .unwrap()
            .is_none(),
        "failed is final"
    );

    journal
        .mark_verified(other, "abc", "users/a/g.bin", now())
        .unwrap();
    let verified = journal.entry(other).unwrap();
    assert_eq!(verified.state, EntryState::Verified);
    assert_eq!(verified.error, None, "the old error is cleared");
    assert!(journal.unfinished().unwrap().is_empty());
    assert_eq!(journal.entries().unwrap().len(), 2);
    assert!(journal.contains(id).unwrap() && !journal.contains(999).unwrap());
}

#[test]
fn a_corrupt_journal_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let e = Journal::open(&path).unwrap_err();
    assert_eq!(e.code(), "journal");
    assert!(e.to_string().contains(JOURNAL_FILE), "names the file: {e}");
}

#[test]
fn an_unwritable_journal_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: cannot be opened as a database.
    std::fs::create_dir(dir.path().join(JOURNAL_FILE)).unwrap();
    let e = Journal::open_in(dir.path()).unwrap_err();
    assert_eq!(e.code(), "journal", "{e}");
}

#[test]
fn the_store_protocol_is_kept_for_resume_and_old_journals_mean_s3() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join(JOURNAL_FILE)).unwrap();
    let file = dir.path().join("f");
    let id = begin(&journal, &file, 10);
    assert_eq!(
        journal.store_protocol(id).unwrap(),
        (valet_protocol::StoreKind::S3, vec![]),
        "nothing recorded: S3"
    );
    journal
        .set_store_protocol(
            id,
            valet_protocol::StoreKind::Azure,
            &[valet_protocol::PartChecksum::Md5],
        )
        .unwrap();
    drop(journal);
    let journal = Journal::open(&dir.path().join(JOURNAL_FILE)).unwrap();
    assert_eq!(
        journal.store_protocol(id).unwrap(),
        (
            valet_protocol::StoreKind::Azure,
            vec![valet_protocol::PartChecksum::Md5]
        )
    );
}

#[test]
fn a_journal_without_the_store_protocol_column_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
    }
    let journal = Journal::open(&path).unwrap();
    let id = begin(&journal, &dir.path().join("f"), 3);
    journal
        .set_store_protocol(id, valet_protocol::StoreKind::Gcs, &[])
        .unwrap();
    assert_eq!(
        journal.store_protocol(id).unwrap().0,
        valet_protocol::StoreKind::Gcs
    );
}

#[test]
fn the_part_size_the_service_chose_replaces_the_one_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_in(dir.path()).unwrap();
    let id = begin(&journal, Path::new("/data/big.iso"), 40 * 1024 * 1024);
    assert_eq!(journal.entry(id).unwrap().part_count, 8, "5 MiB asked for");
    journal.set_part_size(id, 7 * 1024 * 1024).unwrap();
    let entry = journal.entry(id).unwrap();
    assert_eq!((entry.part_size, entry.part_count), (7 * 1024 * 1024, 6));
}

/// A disk that fills up mid-upload (here: SQLite's own page limit, which fails the same way,
/// `SQLITE_FULL`): the write that does not fit is an error naming the journal, and every
/// receipt written before it is still there when the journal is opened again.
#[test]
fn a_full_disk_fails_the_write_and_keeps_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_in(dir.path()).unwrap();
    let id = begin(&journal, Path::new("/data/full.bin"), 1 << 30);
    {
        let conn = journal.conn();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .unwrap();
        conn.execute_batch(&format!("PRAGMA max_page_count = {};", pages + 1))
            .unwrap();
    }
    // Receipts with long etags fill the pages left.
    let mut written = 0u32;
    let error = loop {
        let mut big = receipt(written + 1);
        big.etag = "e".repeat(1500);
        match journal.add_receipt(id, &big, now()) {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 1000, "the page limit never took effect");
    };
    assert!(
        written >= 1,
        "some receipts fitted before the disk was full"
    );
    assert_eq!(error.code(), "journal");
    let shown = error.to_string();
    assert!(
        shown.contains("journal.sqlite") && shown.contains("disk is full"),
        "names the journal and the full disk: {shown}"
    );
    drop(journal);

    let again = Journal::open_in(dir.path()).unwrap();
    let entry = again.entry(id).unwrap();
    assert_eq!(entry.state, EntryState::Uploading, "still resumable");
    assert_eq!(
        entry.parts_done, written,
        "every receipt written before the full disk"
    );
    assert_eq!(again.receipts(id).unwrap().len(), written as usize);
}

#[test]
fn the_idempotency_key_is_journaled_once_and_forgotten_with_the_service_side() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_in(dir.path()).unwrap();
    let id = begin(&journal, Path::new("/data/a.bin"), 3);
    assert_eq!(journal.entry(id).unwrap().idempotency_key, None);
    let key = journal.idempotency_key(id).unwrap();
    assert!(
        valet_protocol::is_valid_idempotency_key(&key),
        "a key the service takes: {key}"
    );
    assert_eq!(
        journal.idempotency_key(id).unwrap(),
        key,
        "the same key again"
    );
    let other = begin(&journal, Path::new("/data/b.bin"), 3);
    assert_ne!(
        journal.idempotency_key(other).unwrap(),
        key,
        "random per upload"
    );
    drop(journal);

    let journal = Journal::open_in(dir.path()).unwrap();
    assert_eq!(
        journal.entry(id).unwrap().idempotency_key.as_deref(),
        Some(key.as_str()),
        "kept across a restart"
    );
    journal
        .reset_upload(id, "http://127.0.0.1:8080/", now())
        .unwrap();
    assert_eq!(journal.entry(id).unwrap().idempotency_key, None);
    assert_ne!(
        journal.idempotency_key(id).unwrap(),
        key,
        "a new upload on the service gets a new key"
    );
}

#[test]
fn a_journal_from_before_the_added_columns_opens_and_keeps_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO uploads (path, size, mtime_ns, part_size, upload_id, state, created_at,
                                  updated_at)
             VALUES ('/data/old.bin', 3, 1, 5242880, 'u-old', 'uploading', 1, 1)",
            [],
        )
        .unwrap();
    }
    let journal = Journal::open(&path).unwrap();
    let old = journal.unfinished().unwrap().pop().unwrap();
    assert_eq!(old.upload_id.as_deref(), Some("u-old"));
    assert_eq!(old.idempotency_key, None);
    let key = journal.idempotency_key(old.id).unwrap();
    assert_eq!(
        journal.entry(old.id).unwrap().idempotency_key,
        Some(key),
        "the added column takes the key"
    );
}
