//! Resuming an upload whose every part is journaled, when the store has already completed it
//! (an earlier completion went through but its answer was lost): the engine re-checks the file
//! and its whole-file hash and goes straight to `complete`, whatever the status call says; and
//! a completion still running elsewhere is waited for (canned service replies from a loopback
//! server; the store is never contacted).

mod canned;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use canned::{Canned, Reply, serve};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use valet_engine::{
    Engine, Events, FileStamp, Journal, NewEntry, PutOptions, RetryPolicy, SecretString, Session,
};
use valet_protocol::{MIB, PartReceipt};

const PART: u64 = 5 * MIB;

struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
    data: Vec<u8>,
    journal: Journal,
    id: i64,
}

/// The file: two parts.
fn file_data() -> Vec<u8> {
    (0..PART + 1234).map(|i| (i % 251) as u8).collect()
}

/// The file, and its upload `u1` on the service at `url`, journaled with both parts done.
fn setup(url: &str) -> Setup {
    let server = &format!("{url}/");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.bin");
    let data = file_data();
    std::fs::write(&path, &data).unwrap();
    let path = std::fs::canonicalize(&path).unwrap();
    let journal = Journal::open_in(&dir.path().join("data")).unwrap();
    let now = OffsetDateTime::now_utc();
    let id = journal
        .begin(
            &NewEntry {
                path: &path,
                stamp: FileStamp::read(&path).unwrap(),
                part_size: PART,
                server,
                prefix: None,
            },
            now,
        )
        .unwrap();
    journal
        .set_created(id, "u1", "users/a/f.bin", "http://127.0.0.1:9", 600, now)
        .unwrap();
    for (number, bytes) in (1..).zip(data.chunks(PART as usize)) {
        let receipt = PartReceipt {
            number,
            etag: format!("\"e{number}\""),
            sha256: BASE64.encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
        };
        journal.add_receipt(id, &receipt, now).unwrap();
    }
    Setup {
        _dir: dir,
        path,
        data,
        journal,
        id,
    }
}

fn session(url: &str) -> Session {
    let mut session = Session::with_api_token(url, SecretString::from("vpt_test")).unwrap();
    session.set_retry_policy(RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_attempts: 3,
        deadline: Duration::from_secs(5),
    });
    session
}

fn verified_json(data: &[u8]) -> String {
    format!(
        r#"{{"upload_id":"u1","object_key":"users/a/f.bin","size":{},"sha256":"{}","etag":"\"x-2\"","state":"verified"}}"#,
        data.len(),
        hex::encode(Sha256::digest(data))
    )
}

fn open_status_json(size: u64, parts: &str) -> String {
    format!(
        r#"{{"upload_id":"u1","object_key":"users/a/f.bin","file_name":"f.bin","layout":{{"size":{size},"part_size":{PART},"part_count":2}},"state":"open","created_at":"2026-01-01T00:00:00Z","parts":{parts}}}"#
    )
}

async fn put_and_check(server: &Canned, completes: usize) {
    let setup = setup(&server.url);
    let path = &setup.path;
    let session = session(&server.url);
    let engine = Engine::new(session, setup.journal.clone());
    let (events, _rx) = Events::channel();
    let report = engine
        .put(path, &PutOptions::default(), &events)
        .await
        .unwrap();
    assert_eq!(report.id, setup.id, "the journaled upload was resumed");
    assert_eq!(report.sha256, hex::encode(Sha256::digest(&setup.data)));
    assert_eq!(report.bytes_sent, 0);
    assert_eq!(report.bytes_already_stored, setup.data.len() as u64);
    assert_eq!(
        setup.journal.entry(setup.id).unwrap().state,
        valet_engine::EntryState::Verified
    );
    let hits = server.hits.lock().unwrap().clone();
    assert!(!hits.iter().any(|l| l.contains("/keys")), "{hits:?}");
    assert!(!hits.iter().any(|l| l.starts_with("DELETE")), "{hits:?}");
    assert_eq!(
        hits.iter().filter(|l| l.contains("/complete")).count(),
        completes,
        "{hits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_parts_journaled_and_status_failing_completes() {
    // An older service answers 502 when the store no longer knows the multipart upload.
    let server = serve(vec![
        (
            "/v1/uploads/u1/complete",
            Reply::Body(200, verified_json(&file_data())),
        ),
        (
            "/v1/uploads/u1",
            Reply::Body(
                502,
                r#"{"code":"store_unavailable","message":"NoSuchUpload"}"#.into(),
            ),
        ),
    ])
    .await;
    put_and_check(&server, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_parts_journaled_and_no_parts_listed_completes() {
    // A newer service answers an open upload with no parts when the store no longer knows it.
    let data = file_data();
    let server = serve(vec![
        (
            "/v1/uploads/u1/complete",
            Reply::Body(200, verified_json(&data)),
        ),
        (
            "/v1/uploads/u1",
            Reply::Body(200, open_status_json(data.len() as u64, "[]")),
        ),
    ])
    .await;
    put_and_check(&server, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_running_elsewhere_is_waited_for() {
    // "Being completed right now" while the upload is still open (an earlier attempt is still
    // verifying): ask again after a pause instead of failing the upload.
    let data = file_data();
    let listed = format!(
        r#"[{{"number":1,"size":{PART}}},{{"number":2,"size":{}}}]"#,
        data.len() as u64 - PART
    );
    let server = serve(vec![
        (
            "/v1/uploads/u1/complete",
            Reply::sequence(vec![
                (
                    409,
                    r#"{"code":"conflict","message":"this upload is being completed right now"}"#
                        .into(),
                ),
                (200, verified_json(&data)),
            ]),
        ),
        (
            "/v1/uploads/u1",
            Reply::Body(200, open_status_json(data.len() as u64, &listed)),
        ),
    ])
    .await;
    put_and_check(&server, 2).await;
}
