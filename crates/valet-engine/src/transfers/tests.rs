//! The list's rules, without uploads: states, the queue, progress, what a UI is told.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::table::{Table, Taken, TransferState};
use super::*;
use crate::events::Event;

fn table_with(files: &[(&str, u64)]) -> (Table, Vec<TransferId>) {
    let mut table = Table::default();
    let ids = files
        .iter()
        .map(|(name, size)| table.push(PathBuf::from(name), *size, None))
        .collect();
    (table, ids)
}

fn fake_task() -> tokio::task::AbortHandle {
    // A task that never ends, standing in for an upload.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let handle = runtime.spawn(std::future::pending::<()>()).abort_handle();
    std::mem::forget(runtime); // keep the handle's task alive for the test
    handle
}

fn start_all(table: &mut Table, limit: usize) -> Vec<(TransferId, u64)> {
    let mut started = Vec::new();
    while let Some(start) = table.next_start(limit) {
        table.started(start.id, fake_task());
        started.push((start.id, start.run));
    }
    started
}

fn state(table: &Table, id: TransferId) -> TransferState {
    table.snapshot(id, Instant::now()).unwrap().state
}

#[test]
fn only_files_at_once_run_and_the_rest_wait_in_order() {
    let (mut table, ids) = table_with(&[("/a", 1), ("/b", 2), ("/c", 3)]);
    let started = start_all(&mut table, 2);
    assert_eq!(started.iter().map(|s| s.0).collect::<Vec<_>>(), ids[..2]);
    assert_eq!(state(&table, ids[2]), TransferState::Queued);
    let s = table.summary(Instant::now());
    assert_eq!((s.running, s.queued, s.bytes_total), (2, 1, 6));
}

#[test]
fn a_finished_run_frees_its_slot_and_records_the_result() {
    let (mut table, ids) = table_with(&[("/a", 10), ("/b", 20)]);
    let (id, run) = start_all(&mut table, 1)[0];
    let report = UploadReport {
        id: 7,
        path: "/a".into(),
        upload_id: "u".into(),
        object_key: "user/a".into(),
        size: 10,
        sha256: "ab".into(),
        bytes_sent: 10,
        bytes_already_stored: 0,
        resumed: false,
    };
    table.finish(id, run, Ok(report));
    let a = table.snapshot(id, Instant::now()).unwrap();
    assert_eq!(a.state, TransferState::Verified);
    assert_eq!(a.object_key.as_deref(), Some("user/a"));
    assert_eq!(a.bytes_done, 10);
    assert_eq!(start_all(&mut table, 1)[0].0, ids[1], "the next one starts");
}

#[test]
fn a_failure_says_what_to_do_and_retry_puts_it_back_in_the_queue() {
    let (mut table, _) = table_with(&[("/a", 10)]);
    let (id, run) = start_all(&mut table, 1)[0];
    table.finish(
        id,
        run,
        Err(Error::RetriesExhausted {
            what: "sending part 1".into(),
            attempts: 5,
            last: "connection refused".into(),
        }),
    );
    let a = table.snapshot(id, Instant::now()).unwrap();
    assert_eq!(a.state, TransferState::Failed);
    let problem = a.problem.unwrap();
    assert_eq!(problem.code, "retries_exhausted");
    assert!(problem.resumable);
    assert!(problem.advice.contains("Retry"), "{}", problem.advice);
    table
        .requeue(id, &[TransferState::Failed], false)
        .expect("retry a failed row");
    assert_eq!(state(&table, id), TransferState::Queued);
    assert_eq!(start_all(&mut table, 1)[0].0, id);
    assert!(
        table
            .snapshot(id, Instant::now())
            .unwrap()
            .problem
            .is_none()
    );
}

#[test]
fn pause_frees_the_slot_and_resume_goes_first() {
    let (mut table, ids) = table_with(&[("/a", 1), ("/b", 1), ("/c", 1)]);
    let (a, first_run) = start_all(&mut table, 1)[0];
    table.pause(a).unwrap();
    assert_eq!(state(&table, a), TransferState::Paused);
    let (b, _) = start_all(&mut table, 1)[0];
    assert_eq!(b, ids[1], "the slot went to the next file");
    table.requeue(a, &[TransferState::Paused], true).unwrap();
    table.pause(b).unwrap();
    let (next, second_run) = start_all(&mut table, 1)[0];
    assert_eq!(next, a, "a resumed file goes before the waiting ones");
    assert!(second_run > first_run);
}

#[test]
fn events_of_a_paused_run_are_ignored() {
    let (mut table, _) = table_with(&[("/a", 100)]);
    let (id, run) = start_all(&mut table, 1)[0];
    let sent = |bytes| Event::PartSent {
        upload: 1,
        part: 1,
        bytes,
    };
    table.apply(id, run, &sent(40), Instant::now());
    assert_eq!(table.snapshot(id, Instant::now()).unwrap().bytes_done, 40);
    table.pause(id).unwrap();
    table.apply(id, run, &sent(40), Instant::now());
    let a = table.snapshot(id, Instant::now()).unwrap();
    assert_eq!((a.state, a.bytes_done), (TransferState::Paused, 40));
    table.requeue(id, &[TransferState::Paused], true).unwrap();
    let (_, new_run) = start_all(&mut table, 1)[0];
    table.finish(id, run, Ok(report_for(100))); // the old run's late result
    assert_eq!(state(&table, id), TransferState::Uploading);
    table.finish(id, new_run, Ok(report_for(100)));
    assert_eq!(state(&table, id), TransferState::Verified);
}

fn report_for(size: u64) -> UploadReport {
    UploadReport {
        id: 1,
        path: "/a".into(),
        upload_id: "u".into(),
        object_key: "k".into(),
        size,
        sha256: "s".into(),
        bytes_sent: size,
        bytes_already_stored: 0,
        resumed: false,
    }
}

#[test]
fn progress_counts_stored_parts_and_takes_back_retried_bytes() {
    let (mut table, _) = table_with(&[("/a", 100)]);
    let (id, run) = start_all(&mut table, 1)[0];
    let t0 = Instant::now();
    let started = Event::Started {
        upload: 3,
        path: "/a".into(),
        size: 100,
        part_count: 4,
        already_stored: 50,
        resumed: true,
    };
    table.apply(id, run, &started, t0);
    assert_eq!(
        state(&table, id),
        TransferState::Hashing,
        "checking stored parts"
    );
    let sent = Event::PartSent {
        upload: 3,
        part: 3,
        bytes: 25,
    };
    table.apply(id, run, &sent, t0 + Duration::from_secs(1));
    let retry = Event::PartRetry {
        upload: 3,
        part: 3,
        attempt: 1,
        reason: "reset".into(),
        resent: 25,
    };
    table.apply(id, run, &retry, t0 + Duration::from_secs(2));
    let a = table.snapshot(id, t0 + Duration::from_secs(2)).unwrap();
    assert_eq!(a.state, TransferState::Uploading);
    assert_eq!((a.already_stored, a.bytes_sent, a.bytes_done), (50, 25, 50));
    table.apply(id, run, &sent, t0 + Duration::from_secs(3));
    table.apply(id, run, &sent, t0 + Duration::from_secs(4));
    let a = table.snapshot(id, t0 + Duration::from_secs(4)).unwrap();
    assert_eq!(a.bytes_done, 100);
    assert!(a.bytes_per_sec > 0 && a.eta_secs == Some(0), "{a:?}");
    table.apply(id, run, &Event::Verifying { upload: 3 }, t0);
    assert_eq!(state(&table, id), TransferState::Verifying);
    assert!(table.pause(id).is_err(), "verifying cannot be paused");
    assert!(
        table.cancel(id).is_err(),
        "nor cancelled: the object may already be complete"
    );
}

#[test]
fn cancel_frees_the_slot_and_a_cancelled_row_can_be_retried() {
    let (mut table, _) = table_with(&[("/a", 1)]);
    let (id, _) = start_all(&mut table, 1)[0];
    let cancelled = table.cancel(id).unwrap();
    assert_eq!(cancelled.path, PathBuf::from("/a"));
    let a = table.snapshot(id, Instant::now()).unwrap();
    assert_eq!(a.state, TransferState::Cancelled);
    assert_eq!(a.problem.unwrap().code, "cancelled");
    assert!(table.cancel(id).is_err(), "cancelled twice");
    assert_eq!(table.summary(Instant::now()).running, 0);
    table
        .requeue(
            id,
            &[TransferState::Failed, TransferState::Cancelled],
            false,
        )
        .unwrap();
    assert_eq!(state(&table, id), TransferState::Queued);
}

#[test]
fn a_file_is_listed_once_while_unfinished() {
    let (mut table, ids) = table_with(&[("/a", 1)]);
    assert!(table.is_listed("/a".as_ref()));
    let (id, run) = start_all(&mut table, 1)[0];
    table.finish(id, run, Ok(report_for(1)));
    assert!(
        !table.is_listed("/a".as_ref()),
        "done: it may be added again"
    );
    let again = table.push("/a".into(), 1, None);
    assert_ne!(again, ids[0]);
    let (_, run) = start_all(&mut table, 1)[0];
    table.finish(again, run, Err(Error::Invalid("boom".into())));
    let third = table.push("/a".into(), 1, None);
    assert!(
        table
            .requeue(again, &[TransferState::Failed], false)
            .is_err(),
        "the failed row cannot come back while another row has the file"
    );
    assert_eq!(state(&table, third), TransferState::Queued);
}

#[test]
fn changes_name_only_what_changed_and_removed_rows() {
    let (mut table, ids) = table_with(&[("/a", 1), ("/b", 1), ("/c", 1)]);
    let all = table.changes_since(0, Instant::now());
    assert!(all.full);
    assert_eq!(all.rows.len(), 3);
    let quiet = table.changes_since(all.version, Instant::now());
    assert!(!quiet.full && quiet.rows.is_empty() && quiet.removed.is_empty());
    let (id, run) = start_all(&mut table, 1)[0];
    table.finish(id, run, Ok(report_for(1)));
    let one = table.changes_since(all.version, Instant::now());
    assert_eq!(one.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[0]]);
    assert_eq!(table.clear_finished(), 1);
    let gone = table.changes_since(one.version, Instant::now());
    assert_eq!(gone.removed, [ids[0]]);
    assert!(gone.rows.is_empty());
    assert_eq!(gone.summary.queued, 2);
}

#[test]
fn running_rows_are_always_in_the_changes_because_their_speed_moves() {
    let (mut table, _) = table_with(&[("/a", 1_000_000)]);
    let (id, _) = start_all(&mut table, 1)[0];
    let seen = table.changes_since(0, Instant::now());
    let again = table.changes_since(seen.version, Instant::now());
    assert_eq!(again.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
}

#[test]
fn ten_thousand_rows_cost_little_to_poll() {
    let mut table = Table::default();
    for i in 0..10_000 {
        table.push(PathBuf::from(format!("/many/{i}")), 10, None);
    }
    let first = table.changes_since(0, Instant::now());
    assert_eq!(first.rows.len(), 10_000);
    start_all(&mut table, 2);
    let next = table.changes_since(first.version, Instant::now());
    assert_eq!(next.rows.len(), 2, "only the two that started");
    assert_eq!(next.summary.queued, 9_998);
}

#[test]
fn folders_are_walked_and_unreadable_paths_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(dir.path().join("top.bin"), b"1").unwrap();
    std::fs::write(dir.path().join("a/one.bin"), b"22").unwrap();
    std::fs::write(dir.path().join("a/b/two.bin"), b"333").unwrap();
    let missing = dir.path().join("missing");
    let found = expand(vec![dir.path().to_path_buf(), missing.clone()]);
    let mut files: Vec<(String, u64)> = Vec::new();
    let mut unreadable = Vec::new();
    for f in found {
        match f {
            Found::File { path, size } => files.push((
                path.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                size,
            )),
            Found::Unreadable { path, .. } => unreadable.push(path),
        }
    }
    files.sort();
    assert_eq!(
        files,
        [
            ("a/b/two.bin".to_owned(), 3),
            ("a/one.bin".to_owned(), 2),
            ("top.bin".to_owned(), 1)
        ]
    );
    assert_eq!(unreadable, [missing]);
}

#[test]
fn a_watched_file_has_one_row_whose_result_goes_back_to_its_watch() {
    use crate::watch::test_ready_file;
    let mut table = Table::default();
    let (file, mut told) = test_ready_file("/w/a.pdf", "/w", Some("scans"), 10);
    let Taken::Listed(id) = table.take_ready(file) else {
        panic!("a new file gets a row")
    };
    let row = table.snapshot(id, Instant::now()).unwrap();
    assert_eq!(row.watched_folder, Some(PathBuf::from("/w")));
    assert_eq!(row.prefix.as_deref(), Some("scans"));
    // The watch restarted (settings changed) and hands the same file in again: same row.
    let (again, mut told_again) = test_ready_file("/w/a.pdf", "/w", Some("scans"), 10);
    assert!(matches!(table.take_ready(again), Taken::Listed(same) if same == id));
    assert_eq!(table.summary(Instant::now()).queued, 1, "no second row");
    let (_, run) = start_all(&mut table, 1)[0];
    assert_eq!(
        told_again(),
        None,
        "nothing is reported before the upload ends"
    );
    table.finish(id, run, Ok(report_for(10)));
    assert_eq!(told_again().as_deref(), Some("verified k"));
    assert_eq!(
        told().as_deref(),
        Some("failed abandoned"),
        "the replaced handle is dropped, which its (stopped) watch would take as a failure"
    );

    // A new version of a file its watch knows was sent: a new row.
    let (edited, _) = test_ready_file("/w/a.pdf", "/w", Some("scans"), 12);
    match table.take_ready(edited) {
        Taken::Listed(new) => assert_ne!(new, id, "a new version is a new row"),
        other => panic!("expected a new row, not {other:?}"),
    }
}

#[test]
fn a_watched_file_that_fails_is_retried_in_its_row_and_a_cancel_skips_it() {
    use crate::watch::test_ready_file;
    let mut table = Table::default();
    let (file, mut told) = test_ready_file("/w/b.bin", "/w", None, 5);
    let Taken::Listed(id) = table.take_ready(file) else {
        panic!("a row")
    };
    let (_, run) = start_all(&mut table, 1)[0];
    let outage = Error::RetriesExhausted {
        what: "POST /v1/uploads".into(),
        attempts: 5,
        last: "connection refused".into(),
    };
    table.finish(id, run, Err(outage));
    assert_eq!(told().as_deref(), Some("failed retries_exhausted"));
    assert_eq!(state(&table, id), TransferState::Failed);
    // The watch's backoff hands it in again: the failed row goes back in the queue.
    let (retry, mut told) = test_ready_file("/w/b.bin", "/w", None, 5);
    assert!(matches!(table.take_ready(retry), Taken::Listed(same) if same == id));
    assert_eq!(state(&table, id), TransferState::Queued);
    table.cancel(id).unwrap();
    assert_eq!(told().as_deref(), Some("skipped"), "cancelled: not sent");
}

#[test]
fn a_watched_file_busy_elsewhere_or_verified_by_hand_is_not_sent_twice() {
    use crate::watch::test_ready_file;
    let (mut table, ids) = table_with(&[("/w/c.bin", 3)]);
    // Added by hand to the top folder, and now the watch hands it in for "scans".
    let (file, mut told) = test_ready_file("/w/c.bin", "/w", Some("scans"), 3);
    assert!(matches!(table.take_ready(file), Taken::Declined));
    assert_eq!(told().as_deref(), Some("failed already_listed"));
    // Verified by hand, to the folder the watch uses: the journal decides.
    let (_, run) = start_all(&mut table, 1)[0];
    table.finish(ids[0], run, Ok(report_for(3)));
    let (file, mut told) = test_ready_file("/w/c.bin", "/w", None, 3);
    let Taken::Check(file) = table.take_ready(file) else {
        panic!("a file verified behind the watch's back is checked first")
    };
    let fresh = table.push_ready(file);
    assert_ne!(fresh, ids[0]);
    assert_eq!(told(), None);
}
