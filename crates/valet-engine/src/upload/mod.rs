//! Uploads: one file, start to verified, resumable.
//!
//! 1. The file is stat-ed and journaled (path, size, mtime, inode, preferred part size) — or,
//!    when an unfinished journal entry matches (path, size, mtime, inode, `--to` folder), that
//!    upload is resumed instead; other unfinished uploads of the path are marked failed.
//! 2. The service creates the upload and chooses its part size within the store's limits
//!    (the journal then holds that size); or, on resume, says which parts the store holds.
//! 3. The [`pipeline`] reads the whole file once (whole-file SHA-256), checks parts stored
//!    earlier, and sends the others in parallel, journaling each receipt.
//! 4. The file is checked unchanged, and the service is asked to complete: only its
//!    "verified" answer marks the upload verified.
//!
//! A changed file ([`Error::SourceChanged`]) or a refusal ends the upload as `failed`; network
//! trouble and outages leave it `uploading`, for [`Engine::resume_all`].

mod pipeline;
mod ratelimit;
mod reader;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use valet_protocol::{
    CompleteUpload, CreateUpload, DEFAULT_PART_SIZE, ErrorCode, LayoutError, MAX_OBJECT_SIZE,
    PartLayout, PartReceipt, StoreKind, StoreLimits, UploadState,
};

pub use pipeline::MEMORY_BUDGET;
pub use ratelimit::RateLimit;
pub use reader::read_and_hash;

use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::http::{self, RetryPolicy};
use crate::journal::{Journal, JournalEntry, NewEntry};
use crate::policy::UploadRules;
use crate::session::{Session, StoreTarget};
use crate::source::{FileStamp, check_readable, check_unchanged};

/// How to upload.
#[derive(Debug, Clone)]
pub struct PutOptions {
    /// Folder under the account's prefix (`--to`).
    pub prefix: Option<String>,
    /// MIME type to announce; the service decides when `None`.
    pub content_type: Option<String>,
    /// Parts sent at once (`--parallel`), 1 to 64, as far as [`MEMORY_BUDGET`] allows: part
    /// buffers are `clamp(MEMORY_BUDGET / part size, 2, parallel + 2)` and at most one fewer
    /// parts are sent at once, so part data takes at most 256 MiB, or two parts when a part is
    /// larger than 128 MiB.
    pub parallel: usize,
    /// Preferred part size (`--part-size`). The service chooses the part size within its
    /// store's limits ([`valet_protocol::StoreLimits::choose_part_size`]): this one unless the
    /// file needs larger parts to fit the store's most parts, or the store takes no part this
    /// small or this large; [`Event::PartSizeChanged`] says so. Only used for new uploads.
    pub part_size: u64,
    /// Bandwidth limit shared by every part (and every upload given the same limit).
    pub limit: Option<Arc<RateLimit>>,
    /// Retries of part uploads.
    pub retry: RetryPolicy,
}

impl Default for PutOptions {
    fn default() -> Self {
        Self {
            prefix: None,
            content_type: None,
            parallel: 4,
            part_size: DEFAULT_PART_SIZE,
            limit: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// Most parts sent at once.
pub const MAX_PARALLEL: usize = 64;

/// A verified upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReport {
    /// Journal id.
    pub id: i64,
    /// The file (absolute).
    pub path: PathBuf,
    /// The service's upload id.
    pub upload_id: String,
    /// Where the object is.
    pub object_key: String,
    /// Bytes in the object.
    pub size: u64,
    /// Whole-file SHA-256, hex.
    pub sha256: String,
    /// Body bytes sent to the store in this run, retries included.
    pub bytes_sent: u64,
    /// Bytes the store held from earlier runs and that were not sent again.
    pub bytes_already_stored: u64,
    /// Whether an earlier run was continued.
    pub resumed: bool,
}

/// The upload engine: a session with the service, the journal, and a client for the store.
///
/// ```no_run
/// # async fn example() -> valet_engine::Result<()> {
/// use std::sync::Arc;
/// use valet_engine::{Engine, Events, Journal, OsKeyring, PutOptions, Session};
///
/// let data_dir = valet_engine::default_data_dir()?;
/// let session = Session::saved(&data_dir, Arc::new(OsKeyring))?;
/// let engine = Engine::new(session, Journal::open_in(&data_dir)?);
/// let (events, mut rx) = Events::channel();
/// tokio::spawn(async move { while let Some(_event) = rx.recv().await { /* progress */ } });
/// let report = engine
///     .put("big.iso".as_ref(), &PutOptions::default(), &events)
///     .await?;
/// println!("{} verified, sha256 {}", report.object_key, report.sha256);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Engine {
    session: Arc<Session>,
    journal: Journal,
    client: reqwest::Client,
    /// What the machine's policy allows; replaced when the policy changes.
    rules: std::sync::RwLock<UploadRules>,
}

impl Engine {
    /// An engine over `session` and `journal`.
    pub fn new(session: Session, journal: Journal) -> Self {
        Self {
            session: Arc::new(session),
            journal,
            client: http::store_client(),
            rules: std::sync::RwLock::default(),
        }
    }

    /// Applies a policy's rules (largest file, storage hosts) to every upload from now on,
    /// resumed ones included.
    pub fn set_rules(&self, rules: UploadRules) {
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    fn rules(&self) -> UploadRules {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Uploads the file at `path` until the service verifies it, resuming an unfinished upload
    /// of the same file (same path, size, modification time and inode) to the same `--to`
    /// folder instead of starting over.
    ///
    /// Other unfinished uploads of the same path (the file has changed since, or they go to
    /// another folder) are marked failed and aborted, and a new upload starts.
    pub async fn put(
        &self,
        path: &Path,
        options: &PutOptions,
        events: &Events,
    ) -> Result<UploadReport> {
        check_options(options)?;
        let path = std::fs::canonicalize(path).map_err(|source| Error::SourceUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let stamp = FileStamp::read(&path)?;
        check_readable(&path)?;
        self.rules().check_size(&path, stamp.size)?;
        let found = {
            let (journal, path) = (self.journal.clone(), path.clone());
            let prefix = options.prefix.clone();
            blocking(move || journal.find_unfinished(&path, &stamp, prefix.as_deref())).await?
        };
        if let Some(entry) = found {
            return self.run_entry(entry, options, events).await;
        }
        self.fail_stale(&path, &stamp, options.prefix.as_deref())
            .await?;
        // No store takes more; the rest of the layout is the service's to choose.
        if stamp.size > MAX_OBJECT_SIZE {
            let error = LayoutError::TooLarge {
                size: stamp.size,
                max: MAX_OBJECT_SIZE,
            };
            return Err(Error::Invalid(error.to_string()));
        }
        let part_size = options.part_size;
        let server = self.session.server().to_string();
        let id = {
            let journal = self.journal.clone();
            let path = path.clone();
            let prefix = options.prefix.clone();
            blocking(move || {
                let new = NewEntry {
                    path: &path,
                    stamp,
                    part_size,
                    server: &server,
                    prefix: prefix.as_deref(),
                };
                journal.begin(&new, OffsetDateTime::now_utc())
            })
            .await?
        };
        let entry = self.entry(id).await?;
        self.run_entry(entry, options, events).await
    }

    /// Finishes every unfinished upload in the journal (after a crash, a reboot, a lost
    /// network), oldest first; one result per upload.
    pub async fn resume_all(
        &self,
        options: &PutOptions,
        events: &Events,
    ) -> Result<Vec<(PathBuf, Result<UploadReport>)>> {
        check_options(options)?;
        let journal = self.journal.clone();
        let entries = blocking(move || journal.unfinished()).await?;
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            let path = entry.path.clone();
            let result = self.run_entry(entry, options, events).await;
            results.push((path, result));
        }
        Ok(results)
    }

    /// Earlier unfinished uploads of `path` that this put does not resume (the file was
    /// different, or they go to another `--to` folder) are superseded by it: they are marked
    /// failed and aborted on the service (best effort).
    async fn fail_stale(&self, path: &Path, stamp: &FileStamp, prefix: Option<&str>) -> Result<()> {
        let stale = {
            let (journal, path) = (self.journal.clone(), path.to_path_buf());
            blocking(move || journal.unfinished_of(&path)).await?
        };
        for old in stale {
            let (code, message) = stale_reason(&old, stamp, prefix);
            let journal = self.journal.clone();
            blocking(move || {
                journal.mark_failed(old.id, code, &message, OffsetDateTime::now_utc())
            })
            .await?;
            let same_server = old.server.as_deref() == Some(self.session.server().as_str());
            if let (Some(upload_id), true) = (&old.upload_id, same_server)
                && let Err(e) = self.session.abort_upload(upload_id).await
            {
                tracing::info!(upload = old.id, error = %e, "could not abort a stale upload");
            }
        }
        Ok(())
    }

    async fn entry(&self, id: i64) -> Result<JournalEntry> {
        let journal = self.journal.clone();
        blocking(move || journal.entry(id)).await
    }

    /// Runs one journaled upload and journals how it ended.
    async fn run_entry(
        &self,
        entry: JournalEntry,
        options: &PutOptions,
        events: &Events,
    ) -> Result<UploadReport> {
        let id = entry.id;
        let result = self.drive(entry, options, events).await;
        if let Err(error) = &result {
            events.emit(Event::Failed {
                upload: id,
                code: error.code(),
                message: error.to_string(),
            });
            let journal = self.journal.clone();
            // A journal that cannot be written (a full disk) says nothing against the upload:
            // the store keeps its parts, and a run with space again goes on from the receipts.
            let resumable = error.is_resumable() || matches!(error, Error::Journal { .. });
            let (code, message) = (error.code(), error.to_string());
            let written = blocking(move || {
                let now = OffsetDateTime::now_utc();
                if resumable {
                    journal.note_error(id, code, &message, now)
                } else {
                    journal.mark_failed(id, code, &message, now)
                }
            })
            .await;
            if let Err(e) = written {
                tracing::warn!(upload = id, error = %e, "could not journal the failure");
            }
            if !resumable {
                self.abort_failed(id).await;
            }
        }
        result
    }

    /// A failed upload will never be completed: the service is asked to abort it, so the
    /// store drops its parts now rather than at the service's next sweep. Best effort.
    async fn abort_failed(&self, id: i64) {
        let Ok(entry) = self.entry(id).await else {
            return;
        };
        let same_server = entry.server.as_deref() == Some(self.session.server().as_str());
        if let (Some(upload_id), true) = (&entry.upload_id, same_server)
            && let Err(e) = self.session.abort_upload(upload_id).await
        {
            tracing::info!(upload = id, error = %e, "could not abort the failed upload");
        }
    }

    async fn drive(
        &self,
        mut entry: JournalEntry,
        options: &PutOptions,
        events: &Events,
    ) -> Result<UploadReport> {
        check_unchanged(&entry.path, &entry.stamp)?;
        let rules = self.rules();
        rules.check_size(&entry.path, entry.stamp.size)?;
        let server = self.session.server().to_string();
        // An earlier run sent the create and stopped before journaling the answer (killed, or
        // the answer lost): the same key asks again, the service answers the upload it made
        // then, and that upload is checked below like any journaled one.
        if entry.upload_id.is_none()
            && entry.idempotency_key.is_some()
            && entry.server.as_deref() == Some(server.as_str())
        {
            tracing::info!(
                upload = entry.id,
                "asking the service again for the upload an interrupted create made"
            );
            self.create(&entry, options, events).await?;
            entry = self.entry(entry.id).await?;
        }
        let resumed = entry.upload_id.is_some();
        let mut done = BTreeMap::new();

        // Bring what the journal knows in line with what the service and store hold.
        if let Some(upload_id) = entry.upload_id.clone() {
            let layout = journaled_layout(&entry)?;
            let same_server = entry.server.as_deref() == Some(server.as_str());
            let known = same_server && entry.store_origin.is_some();
            let journaled = if known {
                self.receipts(entry.id).await?
            } else {
                Vec::new()
            };
            // Every part journaled: the store may have completed the upload already (an earlier
            // completion went through and its answer was lost), and then it lists no parts, or
            // an older service fails the status call. The file is still checked unchanged and
            // hashed again by the pipeline, which sends nothing, and `complete` decides.
            let all_journaled = is_every_part(&journaled, &layout);
            let status = if known {
                match self.session.upload_status(&upload_id).await {
                    Ok(status) => Ok(Some(status)),
                    Err(e) if e.service_code() == Some(ErrorCode::NotFound) => Ok(None),
                    Err(e) if all_journaled => Err(e),
                    Err(e) => return Err(e),
                }
            } else {
                Ok(None)
            };
            match status {
                Err(e) => {
                    tracing::info!(
                        upload = entry.id,
                        error = %e,
                        "no status, but every part is journaled; completing"
                    );
                    done = journaled.into_iter().map(|r| (r.number, r)).collect();
                }
                Ok(Some(status)) if status.state == UploadState::Verified => {
                    return self.already_verified(&entry, status.sha256).await;
                }
                Ok(Some(status))
                    if status.state == UploadState::Open
                        && status.layout == layout
                        && status.parts.is_empty()
                        && all_journaled =>
                {
                    tracing::info!(
                        upload = entry.id,
                        "the store lists no parts, but every part is journaled; completing"
                    );
                    done = journaled.into_iter().map(|r| (r.number, r)).collect();
                }
                Ok(Some(status))
                    if status.state == UploadState::Open && status.layout == layout =>
                {
                    let stored: BTreeMap<u32, u64> =
                        status.parts.iter().map(|p| (p.number, p.size)).collect();
                    let (keep, gone): (Vec<PartReceipt>, Vec<PartReceipt>) = journaled
                        .into_iter()
                        .partition(|r| stored.get(&r.number) == Some(&r.size));
                    if !gone.is_empty() {
                        let numbers: Vec<u32> = gone.iter().map(|r| r.number).collect();
                        tracing::info!(
                            upload = entry.id,
                            ?numbers,
                            "store lost parts; sending them again"
                        );
                        let journal = self.journal.clone();
                        let id = entry.id;
                        blocking(move || journal.remove_receipts(id, &numbers)).await?;
                    }
                    done = keep.into_iter().map(|r| (r.number, r)).collect();
                }
                Ok(_) => {
                    tracing::info!(
                        upload = entry.id,
                        "the service no longer has this upload; starting it again"
                    );
                    let journal = self.journal.clone();
                    let (id, server) = (entry.id, server.clone());
                    blocking(move || journal.reset_upload(id, &server, OffsetDateTime::now_utc()))
                        .await?;
                    entry = self.entry(entry.id).await?;
                }
            }
        }

        let (upload_id, object_key, store, layout) = match (
            entry.upload_id.clone(),
            entry.object_key.clone(),
            entry.store_origin.clone(),
            entry.key_ttl_secs,
        ) {
            (Some(upload_id), Some(object_key), Some(origin), Some(ttl)) => {
                let store = StoreTarget {
                    origin,
                    key_ttl: std::time::Duration::from_secs(ttl),
                };
                (upload_id, object_key, store, journaled_layout(&entry)?)
            }
            _ => self.create(&entry, options, events).await?,
        };
        // Before a single byte goes out: the store must be one the policy allows.
        rules.check_store(&store.origin)?;
        let (kind, checksums) = {
            let journal = self.journal.clone();
            let id = entry.id;
            blocking(move || journal.store_protocol(id)).await?
        };

        let already_stored: u64 = done.values().map(|r| r.size).sum();
        events.emit(Event::Started {
            upload: entry.id,
            path: entry.path.clone(),
            size: entry.stamp.size,
            part_count: layout.part_count,
            already_stored,
            resumed,
        });
        let run = Arc::new(pipeline::Run {
            session: self.session.clone(),
            journal: self.journal.clone(),
            client: self.client.clone(),
            upload: entry.id,
            upload_id: upload_id.clone(),
            store,
            kind,
            checksums,
            path: entry.path.clone(),
            stamp: entry.stamp,
            layout,
            done,
            parallel: options.parallel,
            limit: options.limit.clone(),
            retry: options.retry,
            events: events.clone(),
            sent: AtomicU64::new(0),
        });
        let whole = pipeline::run(run.clone()).await?;
        let bytes_sent = run.sent.load(Ordering::Relaxed);
        let sha256 = hex::encode(whole);

        check_unchanged(&entry.path, &entry.stamp)?;
        let parts = self.receipts(entry.id).await?;
        if !is_every_part(&parts, &layout) {
            return Err(Error::Invalid(format!(
                "{} of {} parts journaled after sending every part",
                parts.len(),
                layout.part_count
            )));
        }
        events.emit(Event::Verifying { upload: entry.id });
        let complete = CompleteUpload {
            sha256: sha256.clone(),
            parts,
        };
        let verified = self.complete(&upload_id, &complete).await?;
        let object_key = if verified.is_empty() {
            object_key
        } else {
            verified
        };
        self.mark_verified(entry.id, &sha256, &object_key).await?;
        events.emit(Event::Verified {
            upload: entry.id,
            object_key: object_key.clone(),
            sha256: sha256.clone(),
        });
        Ok(UploadReport {
            id: entry.id,
            path: entry.path,
            upload_id,
            object_key,
            size: entry.stamp.size,
            sha256,
            bytes_sent,
            bytes_already_stored: already_stored,
            resumed,
        })
    }

    /// Asks the service to complete and verify the upload; the object key it reports.
    ///
    /// `conflict` means another completion of it is running (an earlier attempt whose answer
    /// was lost, still verifying; or another process): while the upload is still open, the
    /// request is sent again after a growing pause (0.5 s to 15 s), for as long as a completion
    /// of this size may take. Still running then: a resumable error, the upload stays
    /// `uploading`. Verified meanwhile, with this SHA-256: done.
    async fn complete(&self, upload_id: &str, complete: &CompleteUpload) -> Result<String> {
        let size = complete.parts.iter().map(|p| p.size).sum();
        let give_up = Instant::now() + crate::session::complete_timeout(size);
        let mut pause = Duration::from_millis(500);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let e = match self.session.complete_upload(upload_id, complete).await {
                Ok(verified) => return Ok(verified.object_key),
                Err(e) if e.service_code() == Some(ErrorCode::Conflict) => e,
                Err(e) => return Err(e),
            };
            let status = self.session.upload_status(upload_id).await?;
            match status.state {
                UploadState::Verified
                    if status
                        .sha256
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case(&complete.sha256)) =>
                {
                    return Ok(status.object_key);
                }
                UploadState::Open if Instant::now() + pause <= give_up => {
                    tracing::info!(upload_id, ?pause, "being completed elsewhere; asking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(15));
                }
                UploadState::Open => {
                    return Err(Error::RetriesExhausted {
                        what: format!("completing upload {upload_id}"),
                        attempts,
                        last: e.to_string(),
                    });
                }
                _ => return Err(e),
            }
        }
    }

    /// Creates the upload on the service and journals the answer, with the part layout the
    /// service chose (reported when it is not the part size asked for). The request carries
    /// the entry's idempotency key, journaled first: sent again, it makes no second upload.
    async fn create(
        &self,
        entry: &JournalEntry,
        options: &PutOptions,
        events: &Events,
    ) -> Result<(String, String, StoreTarget, PartLayout)> {
        let file_name = entry
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let idempotency_key = {
            let (journal, id) = (self.journal.clone(), entry.id);
            blocking(move || journal.idempotency_key(id)).await?
        };
        let create = CreateUpload {
            file_name,
            size: entry.stamp.size,
            content_type: Some(content_type_of(&entry.path, options)),
            prefix: entry.prefix.clone(),
            part_size: entry.part_size,
            idempotency_key: Some(idempotency_key),
        };
        let (created, store) = self.session.create_upload(&create).await?;
        let layout = created.layout;
        if layout.part_size != entry.part_size {
            let reason = part_size_reason(created.store.kind, entry.part_size, &layout);
            tracing::info!(
                upload = entry.id,
                asked = entry.part_size,
                chosen = layout.part_size,
                part_count = layout.part_count,
                "{reason}"
            );
            events.emit(Event::PartSizeChanged {
                upload: entry.id,
                path: entry.path.clone(),
                asked: entry.part_size,
                chosen: layout.part_size,
                part_count: layout.part_count,
                reason,
            });
        }
        let journal = self.journal.clone();
        let (id, upload_id, object_key, origin) = (
            entry.id,
            created.upload_id.clone(),
            created.object_key.clone(),
            store.origin.clone(),
        );
        let ttl = created.key_ttl_secs;
        let (kind, checksums) = (created.store.kind, created.store.part_checksums.clone());
        blocking(move || {
            journal.set_part_size(id, layout.part_size)?;
            journal.set_store_protocol(id, kind, &checksums)?;
            journal.set_created(
                id,
                &upload_id,
                &object_key,
                &origin,
                ttl,
                OffsetDateTime::now_utc(),
            )
        })
        .await?;
        Ok((created.upload_id, created.object_key, store, layout))
    }

    /// The service verified this upload in an earlier run whose answer was lost.
    async fn already_verified(
        &self,
        entry: &JournalEntry,
        sha256: Option<String>,
    ) -> Result<UploadReport> {
        let sha256 = sha256.unwrap_or_default();
        let object_key = entry.object_key.clone().unwrap_or_default();
        self.mark_verified(entry.id, &sha256, &object_key).await?;
        Ok(UploadReport {
            id: entry.id,
            path: entry.path.clone(),
            upload_id: entry.upload_id.clone().unwrap_or_default(),
            object_key,
            size: entry.stamp.size,
            sha256,
            bytes_sent: 0,
            bytes_already_stored: entry.stamp.size,
            resumed: true,
        })
    }

    async fn receipts(&self, id: i64) -> Result<Vec<PartReceipt>> {
        let journal = self.journal.clone();
        blocking(move || journal.receipts(id)).await
    }

    async fn mark_verified(&self, id: i64, sha256: &str, object_key: &str) -> Result<()> {
        let journal = self.journal.clone();
        let (sha256, object_key) = (sha256.to_owned(), object_key.to_owned());
        blocking(move || journal.mark_verified(id, &sha256, &object_key, OffsetDateTime::now_utc()))
            .await
    }
}

/// Why an unfinished upload of the same path is not resumed by a new put of the file as
/// `stamp` says to `prefix`: the code and message to journal it failed with.
fn stale_reason(
    old: &JournalEntry,
    stamp: &FileStamp,
    prefix: Option<&str>,
) -> (&'static str, String) {
    if let Some(reason) = old.stamp.difference(stamp) {
        let error = Error::SourceChanged {
            path: old.path.clone(),
            reason,
        };
        return (error.code(), error.to_string());
    }
    let folder = |p: Option<&str>| match p {
        Some(p) => format!("--to {p}"),
        None => "no --to".to_owned(),
    };
    (
        "superseded",
        format!(
            "{}: replaced by a new upload with {} (this one had {}); it was not completed",
            old.path.display(),
            folder(prefix),
            folder(old.prefix.as_deref())
        ),
    )
}

/// The layout of an upload the service created earlier, as journaled.
fn journaled_layout(entry: &JournalEntry) -> Result<PartLayout> {
    PartLayout::new(entry.stamp.size, entry.part_size).map_err(|e| Error::Invalid(e.to_string()))
}

/// Why the service chose `layout` rather than parts of `asked` bytes on a store of `kind`,
/// for a person.
fn part_size_reason(kind: StoreKind, asked: u64, layout: &PartLayout) -> String {
    let limits = StoreLimits::of(kind);
    let why = if layout.part_size < asked {
        format!("the store's largest part is {}", mib(limits.max_part_size))
    } else if asked < limits.min_part_size && layout.part_size == limits.min_part_size {
        format!("the store's smallest part is {}", mib(limits.min_part_size))
    } else {
        format!(
            "{} parts of {} would be more than the store takes",
            valet_protocol::part_count(layout.size, asked.max(1)),
            mib(asked)
        )
    };
    format!(
        "parts of {} instead of {} ({} parts): {why}",
        mib(layout.part_size),
        mib(asked),
        layout.part_count
    )
}

/// Bytes as MiB, with two decimals when not whole.
fn mib(bytes: u64) -> String {
    let mib = valet_protocol::MIB;
    if bytes.is_multiple_of(mib) {
        format!("{} MiB", bytes / mib)
    } else {
        format!("{:.2} MiB", bytes as f64 / mib as f64)
    }
}

/// Whether `receipts` (by part number) are one for each part of `layout`.
fn is_every_part(receipts: &[PartReceipt], layout: &PartLayout) -> bool {
    receipts.len() == layout.part_count as usize
        && receipts.iter().zip(1..).all(|(r, n)| r.number == n)
}

fn check_options(options: &PutOptions) -> Result<()> {
    if !(1..=MAX_PARALLEL).contains(&options.parallel) {
        return Err(Error::Invalid(format!(
            "parallel must be 1 to {MAX_PARALLEL}, not {}",
            options.parallel
        )));
    }
    Ok(())
}

/// Runs a journal call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::Invalid(format!("journal call stopped: {e}"))))
}

/// The content type to declare: the caller's, else guessed from the file's extension (so that
/// deployments allowing only some types accept the right files, and objects are served with
/// the right type), else `application/octet-stream`.
fn content_type_of(path: &std::path::Path, options: &PutOptions) -> String {
    options.content_type.clone().unwrap_or_else(|| {
        mime_guess::from_path(path)
            .first_or_octet_stream()
            .essence_str()
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_to_another_folder_is_superseded_not_called_changed() {
        let stamp = FileStamp {
            size: 10,
            mtime_ns: 5,
            inode: Some(7),
        };
        let old = JournalEntry {
            id: 1,
            path: PathBuf::from("/d/f.bin"),
            stamp,
            part_size: DEFAULT_PART_SIZE,
            server: None,
            prefix: Some("backups".into()),
            upload_id: None,
            object_key: None,
            store_origin: None,
            key_ttl_secs: None,
            state: crate::journal::EntryState::Uploading,
            sha256: None,
            error_code: None,
            error: None,
            created_at: 0,
            updated_at: 0,
            parts_done: 0,
            part_count: 1,
            idempotency_key: None,
        };
        let (code, message) = stale_reason(&old, &stamp, Some("archive"));
        assert_eq!(code, "superseded");
        assert!(
            message.contains("--to archive") && message.contains("--to backups"),
            "{message}"
        );
        let replaced = FileStamp {
            inode: Some(8),
            ..stamp
        };
        let (code, message) = stale_reason(&old, &replaced, Some("backups"));
        assert_eq!(code, "source_changed");
        assert!(message.contains("replaced"), "{message}");
    }

    #[test]
    fn the_reason_names_the_limit_that_moved_the_part_size() {
        const MIB: u64 = valet_protocol::MIB;
        let layout = |size, part_size| PartLayout::new(size, part_size).unwrap();
        let cases = [
            (
                StoreKind::S3,
                MIB,
                layout(8 * MIB, 5 * MIB),
                "parts of 5 MiB instead of 1 MiB (2 parts): the store's smallest part is 5 MiB",
            ),
            (
                StoreKind::Azure,
                5 << 30,
                layout(10 << 30, 4000 * MIB),
                "parts of 4000 MiB instead of 5120 MiB (3 parts): the store's largest part is 4000 MiB",
            ),
            (
                StoreKind::Gcs,
                8 * MIB,
                layout(9 << 30, 9 * MIB),
                "parts of 9 MiB instead of 8 MiB (1024 parts): 1152 parts of 8 MiB would be more than the store takes",
            ),
            (
                StoreKind::Gcs,
                1_500_000,
                layout(3 << 30, 3 * MIB),
                "parts of 3 MiB instead of 1.43 MiB (1024 parts): 2148 parts of 1.43 MiB would be more than the store takes",
            ),
        ];
        for (kind, asked, layout, expected) in cases {
            assert_eq!(part_size_reason(kind, asked, &layout), expected);
        }
    }

    #[test]
    fn content_type_is_guessed_from_the_extension_unless_given() {
        let guess =
            |name: &str| content_type_of(std::path::Path::new(name), &PutOptions::default());
        assert_eq!(guess("holiday.JPG"), "image/jpeg");
        assert_eq!(guess("report.pdf"), "application/pdf");
        assert_eq!(guess("disk.img.unknownext"), "application/octet-stream");
        assert_eq!(guess("no-extension"), "application/octet-stream");
        let given = PutOptions {
            content_type: Some("text/csv".into()),
            ..PutOptions::default()
        };
        assert_eq!(
            content_type_of(std::path::Path::new("a.pdf"), &given),
            "text/csv"
        );
    }
}
