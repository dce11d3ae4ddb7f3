//! The part pipeline of one upload run:
//!
//! ```text
//! reader (reads; a second thread hashes the whole file and each part in one pass)
//!   ─▶ hasher (checks parts stored earlier; MD5/CRC-64 for stores that check them)
//!   ─▶ keys (batched requests) ─▶ N senders (PUT to store)
//! ```
//!
//! Memory is bounded in bytes whatever the file and part size (see [`plan`]): the reader takes
//! one of `buffers` permits before it reads a part, and the permit goes back only when the part
//! is stored and journaled (or skipped), so at most `buffers × part_size` bytes of parts exist
//! at once. `buffers` is [`MEMORY_BUDGET`] / `part_size`, at most `parallel + READ_AHEAD` and at
//! least 2; at most `buffers − 1` parts are sent at once, so one buffer is always free to read
//! ahead. The first stage to fail stops the run; the others are dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use sha2::Digest;
use time::OffsetDateTime;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};
use valet_protocol::{
    MAX_KEYS_PER_REQUEST, PartChecksum, PartDigest, PartLayout, PartReceipt, StoreKind,
};

use super::RateLimit;
use super::reader::{self, ReadPart};
use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::http::{self, Retry, RetryPolicy};
use crate::journal::Journal;
use crate::session::{KeyLease, Session, StoreTarget};
use crate::source::FileStamp;
use crate::store::{self, OnSent, PartFailure};
use crate::urls;

/// Parts read ahead of the senders (buffers beyond one per sender).
pub(crate) const READ_AHEAD: usize = 2;

/// Bytes of part buffers one upload aims to stay within: 256 MiB. With the default 8 MiB parts
/// that is 32 buffers, more than `--parallel 4` needs; with parts so large that fewer than two
/// fit, two buffers are used anyway (one being read, one being sent), so memory is then
/// `2 × part_size`.
pub const MEMORY_BUDGET: u64 = 256 * 1024 * 1024;

/// How many part buffers a run holds and how many parts it sends at once, for `parallel` asked
/// and parts of `part_size` bytes: `buffers = clamp(MEMORY_BUDGET / part_size, 2,
/// parallel + READ_AHEAD)` and `senders = clamp(buffers − 1, 1, parallel)`. Peak memory for part
/// data is `buffers × part_size`: at most [`MEMORY_BUDGET`], or `2 × part_size` for parts larger
/// than half of it.
pub(crate) fn plan(parallel: usize, part_size: u64) -> (usize, usize) {
    let most = parallel.max(1) + READ_AHEAD;
    let fit = MEMORY_BUDGET / part_size.max(1);
    let buffers = usize::try_from(fit).unwrap_or(usize::MAX).clamp(2, most);
    let senders = (buffers - 1).clamp(1, parallel.max(1));
    (buffers, senders)
}

/// Most key renewals for one part in one run: a store that calls every fresh key expired has
/// a clock problem that renewing cannot fix.
const MAX_RENEWALS: u32 = 8;

/// Everything one run of the pipeline needs.
pub(crate) struct Run {
    pub(crate) session: Arc<Session>,
    pub(crate) journal: Journal,
    pub(crate) client: reqwest::Client,
    pub(crate) upload: i64,
    pub(crate) upload_id: String,
    pub(crate) store: StoreTarget,
    /// The store's protocol: how a part is sent and what its receipt is.
    pub(crate) kind: StoreKind,
    /// Digests the store checks per part, computed with the SHA-256.
    pub(crate) checksums: Vec<PartChecksum>,
    pub(crate) path: PathBuf,
    pub(crate) stamp: FileStamp,
    pub(crate) layout: PartLayout,
    /// Parts the store already holds (journaled receipts): read and checked, not sent.
    pub(crate) done: BTreeMap<u32, PartReceipt>,
    pub(crate) parallel: usize,
    pub(crate) limit: Option<Arc<RateLimit>>,
    pub(crate) retry: RetryPolicy,
    pub(crate) events: Events,
    /// Body bytes handed to the store in this run, retries included.
    pub(crate) sent: AtomicU64,
}

/// A part with its digests, waiting for a key.
struct HashedPart {
    number: u32,
    bytes: Bytes,
    sha256: String,
    md5: Option<String>,
    crc64: Option<String>,
    _buffer: OwnedSemaphorePermit,
}

/// A part's other digests, base64, when the store checks them: MD5 and CRC-64. (Its SHA-256
/// comes from the reader, computed in the same pass as the whole file's.)
struct StoreDigests {
    md5: Option<String>,
    crc64: Option<String>,
}

/// CRC-64/NVME, the CRC Azure calls `x-ms-content-crc64` (polynomial 0xAD93D23594C93659,
/// reflected, as Microsoft's `azure-storage-extensions` computes it).
const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_NVME);

fn store_digests_of(bytes: &[u8], checksums: &[PartChecksum]) -> StoreDigests {
    let wants = |kind| checksums.contains(&kind);
    StoreDigests {
        md5: wants(PartChecksum::Md5).then(|| BASE64.encode(md5::Md5::digest(bytes))),
        // Azure sends the CRC's 8 bytes little-endian.
        crc64: wants(PartChecksum::Crc64)
            .then(|| BASE64.encode(CRC64.checksum(bytes).to_le_bytes())),
    }
}

/// Closes the buffer semaphore when the run ends (normally or not), so a reader blocked on it
/// wakes up and stops.
struct CloseOnDrop(Arc<Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Sends every part not in `run.done`; the whole-file SHA-256 once every part is stored.
pub(crate) async fn run(run: Arc<Run>) -> Result<[u8; 32]> {
    let (capacity, senders) = plan(run.parallel, run.layout.part_size);
    let buffers = Arc::new(Semaphore::new(capacity));
    let _close = CloseOnDrop(buffers.clone());
    let (read_tx, read_rx) = mpsc::channel(capacity);
    let (hashed_tx, hashed_rx) = mpsc::channel(capacity);
    let (keyed_tx, keyed_rx) = mpsc::channel(capacity);

    let reader = {
        let run = run.clone();
        let buffers = buffers.clone();
        tokio::task::spawn_blocking(move || {
            let events = run.events.clone();
            let upload = run.upload;
            reader::read_parts(
                &run.path,
                &run.stamp,
                &run.layout,
                buffers,
                read_tx,
                |bytes_hashed| {
                    events.emit(Event::Hashing {
                        upload,
                        bytes_hashed,
                    })
                },
            )
        })
    };
    let reader = async {
        reader
            .await
            .map_err(|e| Error::Invalid(format!("the file reader stopped: {e}")))?
    };
    let keyed_rx = Arc::new(Mutex::new(keyed_rx));
    let senders = futures_util::future::try_join_all(
        (0..senders).map(|_| sender(run.clone(), keyed_rx.clone())),
    );
    let (whole, (), (), _) = tokio::try_join!(
        reader,
        hasher(run.clone(), read_rx, hashed_tx),
        keys(run.clone(), hashed_rx, keyed_tx),
        senders
    )?;
    whole.ok_or_else(|| Error::Invalid("the file reader stopped early".into()))
}

/// Checks each part the store already holds against the journal, and computes the other
/// digests the store checks (MD5, CRC-64) off the async threads. A part the store holds must
/// hash as journaled, or the file changed.
async fn hasher(
    run: Arc<Run>,
    mut parts: mpsc::Receiver<ReadPart>,
    hashed: mpsc::Sender<HashedPart>,
) -> Result<()> {
    while let Some(part) = parts.recv().await {
        let sha256 = BASE64.encode(part.sha256);
        // A part the store holds already is only checked: its SHA-256 is enough.
        let digests = if run.checksums.is_empty() || run.done.contains_key(&part.number) {
            StoreDigests {
                md5: None,
                crc64: None,
            }
        } else {
            let bytes = part.bytes.clone();
            let checksums = run.checksums.clone();
            tokio::task::spawn_blocking(move || store_digests_of(&bytes, &checksums))
                .await
                .map_err(|e| Error::Invalid(format!("hashing stopped: {e}")))?
        };
        if let Some(done) = run.done.get(&part.number) {
            if done.sha256 != sha256 || done.size != part.bytes.len() as u64 {
                return Err(Error::SourceChanged {
                    path: run.path.clone(),
                    reason: format!(
                        "part {} no longer matches the part stored earlier",
                        part.number
                    ),
                });
            }
            continue; // stored already: the buffer goes back
        }
        let next = HashedPart {
            number: part.number,
            bytes: part.bytes,
            sha256,
            md5: digests.md5,
            crc64: digests.crc64,
            _buffer: part.permit,
        };
        if hashed.send(next).await.is_err() {
            break; // a later stage failed; it reports why
        }
    }
    Ok(())
}

/// Asks for keys in batches: every hashed part waiting when a request goes out (at most
/// [`MAX_KEYS_PER_REQUEST`]).
async fn keys(
    run: Arc<Run>,
    mut hashed: mpsc::Receiver<HashedPart>,
    keyed: mpsc::Sender<(HashedPart, KeyLease)>,
) -> Result<()> {
    while let Some(first) = hashed.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_KEYS_PER_REQUEST {
            match hashed.try_recv() {
                Ok(part) => batch.push(part),
                Err(_) => break,
            }
        }
        let digests: Vec<PartDigest> = batch.iter().map(digest).collect();
        let leases = run
            .session
            .part_keys(&run.upload_id, &digests, &run.store)
            .await?;
        for pair in batch.into_iter().zip(leases) {
            if keyed.send(pair).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn digest(part: &HashedPart) -> PartDigest {
    PartDigest {
        number: part.number,
        size: part.bytes.len() as u64,
        sha256: part.sha256.clone(),
        md5: part.md5.clone(),
        crc64: part.crc64.clone(),
    }
}

/// One of the senders (see [`plan`]): takes the next keyed part and sends it until it is stored.
async fn sender(
    run: Arc<Run>,
    keyed: Arc<Mutex<mpsc::Receiver<(HashedPart, KeyLease)>>>,
) -> Result<()> {
    loop {
        let next = keyed.lock().await.recv().await;
        let Some((part, lease)) = next else {
            return Ok(());
        };
        send_part(&run, part, lease).await?;
    }
}

/// Sends one part until the store accepts it, then journals the receipt.
///
/// - a key with less than the renewal margin of life left is renewed before use;
/// - a `403` saying the key expired, or any `403` once the key has lived its whole life, gets a
///   new key and another attempt (not counted as a failure); another `403` gets one new key;
/// - `400 BadDigest` means the bytes on disk may have changed: the part is read again and its
///   SHA-256 compared with the one its key binds; different means [`Error::SourceChanged`];
/// - an attempt without progress is given up as stalled: no body bytes taken for
///   [`http::STORE_STALL_TIMEOUT`], or no answer [`http::STORE_ANSWER_TIMEOUT`] after the
///   last; a slow attempt that moves is never cut short;
/// - network failures, `429` and `5xx` are retried with backoff (see [`RetryPolicy`]) until the
///   budget is spent: [`Error::RetriesExhausted`] names the part and the last failure.
async fn send_part(run: &Run, part: HashedPart, mut lease: KeyLease) -> Result<()> {
    let number = part.number;
    let mut retry = Retry::new(run.retry);
    let mut renewals = 0u32;
    let mut bad_digests = 0u32;
    loop {
        if lease.needs_renewal(Instant::now()) {
            lease = renew(run, &part, &mut renewals).await?;
        }
        let attempt_sent = Arc::new(AtomicU64::new(0));
        let on_sent: OnSent = {
            let attempt_sent = attempt_sent.clone();
            let events = run.events.clone();
            let upload = run.upload;
            Arc::new(move |bytes| {
                attempt_sent.fetch_add(bytes, Ordering::Relaxed);
                events.emit(Event::PartSent {
                    upload,
                    part: number,
                    bytes,
                });
            })
        };
        let sending = store::put_part(
            run.kind,
            &run.client,
            &lease,
            part.bytes.clone(),
            run.limit.clone(),
            on_sent,
        );
        let outcome = tokio::select! {
            outcome = sending => outcome,
            () = http::stalled(
                &attempt_sent,
                part.bytes.len() as u64,
                http::STORE_STALL_TIMEOUT,
                http::STORE_ANSWER_TIMEOUT,
            ) => Err(PartFailure::Retryable("the connection stalled: no progress".into())),
        };
        let sent_now = attempt_sent.load(Ordering::Relaxed);
        run.sent.fetch_add(sent_now, Ordering::Relaxed);
        let reason = match outcome {
            Ok(etag) => return journal_receipt(run, &part, etag).await,
            Err(PartFailure::Fatal(e)) => return Err(e),
            Err(PartFailure::Expired(reason)) => {
                tracing::debug!(part = number, %reason, "key expired; renewing");
                lease = renew(run, &part, &mut renewals).await?;
                retry_event(run, number, renewals, reason, sent_now);
                continue;
            }
            Err(PartFailure::Forbidden(reason)) => {
                if lease.is_expired(Instant::now()) || renewals == 0 {
                    lease = renew(run, &part, &mut renewals).await?;
                    retry_event(run, number, renewals, reason, sent_now);
                    continue;
                }
                return Err(Error::Store {
                    part: number,
                    status: 403,
                    code: reason,
                    message: "the store refused a fresh key".into(),
                });
            }
            Err(PartFailure::BadDigest) => {
                check_part_on_disk(run, &part).await?;
                bad_digests += 1;
                if bad_digests > 2 {
                    return Err(Error::Store {
                        part: number,
                        status: 400,
                        code: "BadDigest".into(),
                        message: "the store keeps refusing bytes that match the file".into(),
                    });
                }
                "HTTP 400 BadDigest (bytes damaged in transit)".to_owned()
            }
            Err(PartFailure::Retryable(reason)) => reason,
        };
        match retry.failed(Instant::now()) {
            Some(delay) => {
                tracing::info!(part = number, %reason, ?delay, "part failed; retrying");
                retry_event(run, number, retry.attempts(), reason, sent_now);
                tokio::time::sleep(delay).await;
            }
            None => {
                return Err(Error::RetriesExhausted {
                    what: format!("part {number} to {}", urls::redact(&lease.url)),
                    attempts: retry.attempts(),
                    last: reason,
                });
            }
        }
    }
}

fn retry_event(run: &Run, part: u32, attempt: u32, reason: String, resent: u64) {
    run.events.emit(Event::PartRetry {
        upload: run.upload,
        part,
        attempt,
        reason,
        resent,
    });
}

/// A new key for one part.
async fn renew(run: &Run, part: &HashedPart, renewals: &mut u32) -> Result<KeyLease> {
    *renewals += 1;
    if *renewals > MAX_RENEWALS {
        return Err(Error::Store {
            part: part.number,
            status: 403,
            code: "AccessDenied".into(),
            message: format!(
                "every key expired before use ({MAX_RENEWALS} renewals); check the clocks"
            ),
        });
    }
    let mut leases = run
        .session
        .part_keys(&run.upload_id, &[digest(part)], &run.store)
        .await?;
    run.events.emit(Event::KeyRenewed {
        upload: run.upload,
        part: part.number,
    });
    leases
        .pop()
        .ok_or_else(|| Error::Invalid("no key in a checked keys answer".into()))
}

/// After `400 BadDigest`: the part is read again from disk; if it hashes differently from the
/// bytes the key was issued for, the file changed.
async fn check_part_on_disk(run: &Run, part: &HashedPart) -> Result<()> {
    let (offset, len) = run
        .layout
        .part_range(part.number)
        .ok_or_else(|| Error::Invalid(format!("part {} is outside the layout", part.number)))?;
    let path = run.path.clone();
    let stamp = run.stamp;
    let now = tokio::task::spawn_blocking(move || {
        crate::source::check_unchanged(&path, &stamp)?;
        reader::hash_range(&path, offset, len)
    })
    .await
    .map_err(|e| Error::Invalid(format!("re-reading stopped: {e}")))??;
    if BASE64.encode(now) != part.sha256 {
        return Err(Error::SourceChanged {
            path: run.path.clone(),
            reason: format!("part {} changed on disk", part.number),
        });
    }
    Ok(())
}

async fn journal_receipt(run: &Run, part: &HashedPart, etag: String) -> Result<()> {
    let receipt = PartReceipt {
        number: part.number,
        etag,
        sha256: part.sha256.clone(),
        size: part.bytes.len() as u64,
    };
    let journal = run.journal.clone();
    let upload = run.upload;
    tokio::task::spawn_blocking(move || {
        journal.add_receipt(upload, &receipt, OffsetDateTime::now_utc())
    })
    .await
    .map_err(|e| Error::Invalid(format!("journal write stopped: {e}")))??;
    run.events.emit(Event::PartDone {
        upload,
        part: part.number,
        size: part.bytes.len() as u64,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_digests_match_independent_computations() {
        // MD5 of "hello world" (RFC 1321 implementations agree); CRC-64 values computed by
        // Microsoft's azure-storage-extensions 1.x (`checksums.crc64.compute(data, 0)`, sent
        // little-endian, as azure-storage-blob does).
        let d = store_digests_of(b"hello world", &[PartChecksum::Md5, PartChecksum::Crc64]);
        assert_eq!(d.md5.as_deref(), Some("XrY7u+Ae7tCTyyK7j1rNww=="));
        assert_eq!(d.crc64.as_deref(), Some("vo7q9sPVKY0="));
        let big: Vec<u8> = (0..=255u8).cycle().take(256 * 40).collect();
        let d = store_digests_of(&big, &[PartChecksum::Crc64]);
        assert_eq!(d.crc64.as_deref(), Some("mUXr6IU+duE="));
        assert_eq!(d.md5, None, "only what the store asks for");
        assert_eq!(
            CRC64.checksum(b"123456789"),
            0xae8b_1486_0a79_9888,
            "CRC-64/NVME check value"
        );
    }

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn buffers_are_bounded_in_bytes_not_parts() {
        // Small parts: one buffer per sender plus the read-ahead, as before.
        assert_eq!(plan(4, 8 * MIB), (6, 4));
        assert_eq!(plan(1, 8 * MIB), (3, 1));
        // Many senders of default parts: the budget caps them (32 × 8 MiB = 256 MiB).
        assert_eq!(plan(64, 8 * MIB), (32, 31));
        // 525 MiB parts (a 5 TiB file): two buffers, one sender.
        assert_eq!(plan(4, 525 * MIB), (2, 1));
        // `--parallel 64 --part-size 5GiB`: 10 GiB, not 330 GiB.
        assert_eq!(plan(64, 5 * GIB), (2, 1));
        // 100 MiB parts: two fit in the budget.
        assert_eq!(plan(8, 100 * MIB), (2, 1));
        assert_eq!(plan(8, 64 * MIB), (4, 3));
        for parallel in 1..=64 {
            for part_size in [5 * MIB, 8 * MIB, 16 * MIB, 100 * MIB, 525 * MIB, 5 * GIB] {
                let (buffers, senders) = plan(parallel, part_size);
                assert!(buffers >= 2 && buffers <= parallel + READ_AHEAD);
                assert!(senders >= 1 && senders < buffers && senders <= parallel);
                let bytes = buffers as u64 * part_size;
                assert!(
                    bytes <= MEMORY_BUDGET || buffers == 2,
                    "{parallel} × {part_size}: {bytes} bytes"
                );
            }
        }
    }
}
