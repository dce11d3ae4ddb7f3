//! `POST /v1/uploads/{id}/complete`: check the parts, complete the object, verify it.
//!
//! The order matters: nothing is completed until the client's receipts match the digests the
//! service signed and the store's own listing; nothing is reported verified until the store's
//! view of the finished object (size, and composite checksum or a read-back hash) matches. A
//! verification failure deletes the object this request completed, as long as it is still the
//! one at the key: a corrupt object is never reported complete, and a newer upload of the same
//! key that completed in between is never deleted. A store that cannot be reached while verifying changes nothing: the
//! upload stays open and the client's retry verifies again.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::json;
use time::OffsetDateTime;
use valet_protocol::{
    ApiError, CompleteUpload, ErrorCode, PartLayout, PartReceipt, UploadState, UploadVerified,
};

use super::uploads::layout_of;
use super::{AppState, Body, ClientAddr, Failure};
use crate::audit::{self, Entry, Event};
use crate::auth::Caller;
use crate::checksum;
use crate::config::VerifyMode;
use crate::db::uploads::{self, UploadRow, Verified};
use crate::store::{
    CheckFailed, Completed, ConfiguredStore, Finish, ListedPart, ObjectHead, PartToComplete,
    bare_etag,
};

/// Most part problems spelled out in one message.
const MAX_PROBLEMS_SHOWN: usize = 20;
/// Most part numbers named in one message.
const MAX_PART_NUMBERS_SHOWN: usize = 100;

/// Complete an upload and verify the object. Completing a verified upload again answers the
/// same result (a client may retry after losing the answer).
#[utoipa::path(post, path = "/v1/uploads/{id}/complete", request_body = CompleteUpload,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "upload id")),
    responses((status = 200, body = UploadVerified), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 422, body = ApiError),
        (status = 502, body = ApiError)))]
pub async fn complete(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    caller: Caller,
    Path(id): Path<String>,
    Body(request): Body<CompleteUpload>,
) -> Result<Json<UploadVerified>, Failure> {
    let find = || uploads::get_for_user(state.db(), &id, &caller.user);
    let row = find().await?.ok_or_else(Failure::no_upload)?;
    if row.state == UploadState::Verified {
        return Ok(Json(verified_answer(&row, row.size)));
    }
    let Some(_claim) = state.claim_completion(&row.id) else {
        return Err(Failure::new(
            ErrorCode::Conflict,
            "this upload is being completed right now; retry in a moment",
        ));
    };
    // Read again under the claim: a completion that just finished may have changed it.
    let row = find().await?.ok_or_else(Failure::no_upload)?;
    match row.state {
        UploadState::Open => {}
        UploadState::Verified => return Ok(Json(verified_answer(&row, row.size))),
        _ => {
            return Err(Failure::new(
                ErrorCode::Conflict,
                "the upload was aborted or failed; start a new one",
            ));
        }
    }
    let file_sha256 = request.sha256.to_ascii_lowercase();
    if !checksum::is_sha256_hex(&file_sha256) {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            "sha256 must be the file's SHA-256 in hex",
        ));
    }

    let layout = layout_of(&row);
    let signed = uploads::part_digests(state.db(), &row.id).await?;
    check_receipts(&layout, &request.parts, &signed)?;
    let configured = state.store_of(&row)?;
    let store = &configured.store;
    if store.kind() == valet_protocol::StoreKind::Gcs {
        // On GCS a part's receipt is the MD5 its key was issued for; the listing below then
        // compares it with the MD5 of the bytes the store holds.
        let signed_md5 = uploads::part_md5s(state.db(), &row.id).await?;
        check_receipt_md5s(&request.parts, &signed_md5)?;
    }
    let listed = match store
        .list_parts(&row.object_key, &row.store_upload_id)
        .await
    {
        Ok(listed) => Some(listed),
        // The store no longer knows the multipart upload: an earlier completion went through
        // but its answer, or our record of it, was lost. What is there gets verified below.
        Err(e) if e.store_code() == Some("NoSuchUpload") => None,
        Err(e) => return Err(e.into()),
    };
    // Whether this request assembles the object (then a failed verification may delete it), or
    // verifies one found at the key (maybe an earlier upload of the same name).
    let completed_now = listed.is_some();
    // What is verified: the object this request assembles (on Azure a staging blob, copied to
    // the object's name only once verified), or the object found at the key.
    let assembled = if completed_now {
        store.assembled_name(&row.object_key, &row.store_upload_id)
    } else {
        row.object_key.clone()
    };
    let (completed, parts) = match listed {
        Some(listed) => {
            let to_complete = check_listing(&layout, &request.parts, &listed)?;
            let finish = Finish {
                content_type: &row.content_type,
                sha256_hex: &file_sha256,
            };
            let completed = match store
                .complete(&row.object_key, &row.store_upload_id, &to_complete, finish)
                .await
            {
                Ok(done) => done,
                Err(e) => return Err(completion_refused(e)),
            };
            (completed, to_complete)
        }
        None => {
            tracing::info!(upload = %row.id, "upload already completed on the store; verifying");
            let mut receipts: Vec<&PartReceipt> = request.parts.iter().collect();
            receipts.sort_by_key(|r| r.number);
            let parts = receipts
                .into_iter()
                .map(|r| PartToComplete {
                    number: r.number,
                    etag: bare_etag(&r.etag),
                    sha256_b64: r.sha256.clone(),
                    size: r.size,
                    crc32c: None,
                })
                .collect();
            let nothing_reported = Completed {
                etag: None,
                checksum_sha256: None,
            };
            (nothing_reported, parts)
        }
    };

    // Tagged before it is verified: a store that takes `PUT ?tagging` for a `PutObject`
    // (rclone's `serve s3` does) replaces the object with the tag document, and verification
    // must be what sees it.
    if completed_now
        && configured.config.tag_objects
        && let Err(e) = store.record_sha256(&assembled, &file_sha256).await
    {
        tracing::warn!(upload = %row.id, error = %e, "could not tag the object");
    }
    let now = OffsetDateTime::now_utc();
    match verify(
        configured,
        &row,
        &assembled,
        &file_sha256,
        &parts,
        &completed,
    )
    .await
    {
        Ok(mut facts) => {
            if completed_now
                && let Some(etag) = store
                    .publish(
                        &row.object_key,
                        &row.store_upload_id,
                        &facts.etag,
                        facts.size,
                        &file_sha256,
                    )
                    .await
                    .map_err(completion_refused)?
            {
                facts.etag = etag;
            }
            uploads::mark_verified(
                state.db(),
                &row.id,
                &Verified {
                    sha256: &file_sha256,
                    etag: &facts.etag,
                    store_checksum: facts.store_checksum.as_deref(),
                },
                now,
            )
            .await?;
            let mut entry = Entry::new(Event::UploadCompleted, now);
            entry.user = Some(&caller.user);
            entry.upload_id = Some(&row.id);
            entry.client_addr = client.as_deref();
            entry.detail = Some(json!({
                "object_key": row.object_key,
                "size": facts.size,
                "sha256": file_sha256,
                "store_checksum": facts.store_checksum,
            }));
            audit::record_or_warn(state.db(), &entry).await;
            Ok(Json(UploadVerified {
                upload_id: row.id,
                object_key: row.object_key,
                size: facts.size,
                sha256: file_sha256,
                etag: facts.etag,
                store_checksum: facts.store_checksum,
                state: UploadState::Verified,
            }))
        }
        Err(Doubt::StoreUnreachable(e)) => {
            tracing::warn!(upload = %row.id, error = %e, "could not verify yet; the upload stays open");
            Err(e.into())
        }
        Err(Doubt::Mismatch { reason, found_etag }) => {
            if !completed_now {
                tracing::warn!(upload = %row.id, %reason,
                    "verification failed; the object at the key is left alone (it may be an earlier upload)");
            } else if still_ours(completed.etag.as_deref(), found_etag.as_deref()) {
                tracing::warn!(upload = %row.id, %reason, "verification failed; deleting the object");
                if let Err(e) = store.delete(&assembled).await {
                    tracing::error!(upload = %row.id, error = %e, "could not delete the unverified object");
                }
            } else {
                tracing::warn!(upload = %row.id, %reason, completed_etag = ?completed.etag,
                    found_etag = ?found_etag,
                    "verification failed; the object at the key was superseded by another upload of it and is left alone");
            }
            uploads::transition(
                state.db(),
                &row.id,
                UploadState::Open,
                UploadState::Failed,
                now,
            )
            .await?;
            let mut entry = Entry::new(Event::UploadVerificationFailed, now);
            entry.user = Some(&caller.user);
            entry.upload_id = Some(&row.id);
            entry.client_addr = client.as_deref();
            entry.detail = Some(json!({ "reason": reason }));
            audit::record_or_warn(state.db(), &entry).await;
            Err(Failure::new(
                ErrorCode::VerificationFailed,
                format!("the stored object was not accepted: {reason}"),
            ))
        }
    }
}

fn verified_answer(row: &UploadRow, size: u64) -> UploadVerified {
    UploadVerified {
        upload_id: row.id.clone(),
        object_key: row.object_key.clone(),
        size,
        sha256: row.sha256.clone().unwrap_or_default(),
        etag: row.etag.clone().unwrap_or_default(),
        store_checksum: row.store_checksum.clone(),
        state: UploadState::Verified,
    }
}

/// A `parts_mismatch` listing the problems found, part by part.
fn parts_mismatch(problems: &BTreeMap<u32, String>) -> Failure {
    // Bounded, whatever a client reports: 10,000 bogus receipts must not make a 60 KB answer.
    let mut numbers: Vec<String> = problems
        .keys()
        .take(MAX_PART_NUMBERS_SHOWN)
        .map(u32::to_string)
        .collect();
    if problems.len() > MAX_PART_NUMBERS_SHOWN {
        numbers.push(format!("… ({} parts in all)", problems.len()));
    }
    let details: Vec<&str> = problems
        .values()
        .take(MAX_PROBLEMS_SHOWN)
        .map(String::as_str)
        .collect();
    Failure::new(
        ErrorCode::PartsMismatch,
        format!(
            "parts {} do not match; re-upload them: {}",
            numbers.join(", "),
            details.join("; ")
        ),
    )
}

/// The receipts must be exactly parts 1..=part_count, with the layout's sizes and the digest
/// signed into each part's newest key.
fn check_receipts(
    layout: &PartLayout,
    receipts: &[PartReceipt],
    signed: &BTreeMap<u32, String>,
) -> Result<(), Failure> {
    let mut problems = BTreeMap::new();
    let mut by_number: BTreeMap<u32, &PartReceipt> = BTreeMap::new();
    for r in receipts {
        if layout.part_range(r.number).is_none() {
            problems.insert(
                r.number,
                format!("part {} is outside 1..={}", r.number, layout.part_count),
            );
        } else if by_number.insert(r.number, r).is_some() {
            problems.insert(r.number, format!("part {} reported twice", r.number));
        }
    }
    for number in 1..=layout.part_count {
        let Some(receipt) = by_number.get(&number) else {
            problems.insert(number, format!("part {number} missing"));
            continue;
        };
        let (_, size) = layout.part_range(number).unwrap_or_default();
        if receipt.size != size {
            problems.insert(
                number,
                format!(
                    "part {number} has {} bytes, the layout {size}",
                    receipt.size
                ),
            );
        } else if signed.get(&number) != Some(&receipt.sha256) {
            let why = if signed.contains_key(&number) {
                "sha256 differs from the one signed into its key"
            } else {
                "no key was issued for it"
            };
            problems.insert(number, format!("part {number}: {why}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(parts_mismatch(&problems))
    }
}

/// The store must hold every part with the layout's size (and the receipt's ETag where it
/// lists one). Returns what to name in `CompleteMultipartUpload`.
fn check_listing(
    layout: &PartLayout,
    receipts: &[PartReceipt],
    listed: &[ListedPart],
) -> Result<Vec<PartToComplete>, Failure> {
    let listed: BTreeMap<u32, &ListedPart> = listed.iter().map(|p| (p.number, p)).collect();
    let mut problems = BTreeMap::new();
    let mut parts = Vec::with_capacity(receipts.len());
    let mut receipts: Vec<&PartReceipt> = receipts.iter().collect();
    receipts.sort_by_key(|r| r.number);
    for receipt in receipts {
        let number = receipt.number;
        let (_, size) = layout.part_range(number).unwrap_or_default();
        let Some(stored) = listed.get(&number) else {
            problems.insert(number, format!("part {number} is not in the store"));
            continue;
        };
        if stored.size != size {
            problems.insert(
                number,
                format!(
                    "part {number}: the store holds {} bytes, not {size}",
                    stored.size
                ),
            );
            continue;
        }
        let receipt_etag = bare_etag(&receipt.etag);
        if let Some(etag) = &stored.etag
            && *etag != receipt_etag
        {
            problems.insert(
                number,
                format!(
                    "part {number}: the store holds other bytes or another upload of it \
                     (ETag, block id or MD5 differs)"
                ),
            );
            continue;
        }
        if let Some(listed_sha) = &stored.checksum_sha256
            && *listed_sha != receipt.sha256
        {
            problems.insert(
                number,
                format!("part {number}: the store holds bytes with another SHA-256"),
            );
            continue;
        }
        parts.push(PartToComplete {
            number,
            etag: stored.etag.clone().unwrap_or(receipt_etag),
            sha256_b64: receipt.sha256.clone(),
            size,
            crc32c: stored.crc32c,
        });
    }
    if problems.is_empty() {
        Ok(parts)
    } else {
        Err(parts_mismatch(&problems))
    }
}

/// Store refusals at completion that mean "these parts are not right", not "store down"
/// (`SourceConditionNotMet`, Azurite's `ConditionNotMet`: the Azure staging blob was written
/// to after it was verified; the copy sets no other condition).
fn completion_refused(e: crate::Error) -> Failure {
    match e.store_code() {
        Some(
            code @ ("InvalidPart"
            | "InvalidPartOrder"
            | "EntityTooSmall"
            | "BadDigest"
            | "InvalidDigest"
            | "InvalidBlockList"
            | "SourceConditionNotMet"
            | "ConditionNotMet"),
        ) => Failure::new(
            ErrorCode::PartsMismatch,
            format!("the store refused the parts ({code}); re-upload them"),
        ),
        _ => Failure::from(e),
    }
}

/// What a successful verification establishes.
struct VerifiedFacts {
    size: u64,
    etag: String,
    store_checksum: Option<String>,
}

/// Why an object is not (yet) verified.
enum Doubt {
    /// The object is not what the upload says: never reported complete. `found_etag` is the
    /// ETag of the object found at the key (none when there was none, or the store gave none).
    Mismatch {
        reason: String,
        found_etag: Option<String>,
    },
    /// The store could not be asked; nothing is decided.
    StoreUnreachable(crate::Error),
}

impl From<String> for Doubt {
    fn from(reason: String) -> Self {
        Self::Mismatch {
            reason,
            found_etag: None,
        }
    }
}

/// Whether the object found at the key is the one this request's completion produced, so a
/// failed verification may delete it. Another upload of the same key may have completed
/// between our completion and our look at the object: that newer object is a legitimate new
/// version and is never deleted. Without an ETag on either side nothing proves it is ours.
fn still_ours(completed_etag: Option<&str>, found_etag: Option<&str>) -> bool {
    matches!((completed_etag, found_etag), (Some(c), Some(f)) if c == f)
}

/// Checks the finished object, at `name`, against the store's own view of it.
async fn verify(
    configured: &ConfiguredStore,
    row: &UploadRow,
    name: &str,
    file_sha256: &str,
    parts: &[PartToComplete],
    completed: &Completed,
) -> Result<VerifiedFacts, Doubt> {
    let head = match configured.store.head(name).await {
        Ok(head) => head,
        Err(crate::Error::StoreRejected { status: 404, .. }) => {
            return Err(Doubt::from(
                "the store holds no object at the key".to_owned(),
            ));
        }
        Err(e) => return Err(Doubt::StoreUnreachable(e)),
    };
    let found_etag = head.etag.clone();
    check_object(configured, row, name, file_sha256, parts, completed, head)
        .await
        .map_err(|doubt| match doubt {
            Doubt::Mismatch { reason, .. } => Doubt::Mismatch { reason, found_etag },
            other => other,
        })
}

/// Checks the object `head` describes (found at `name`) against the upload.
async fn check_object(
    configured: &ConfiguredStore,
    row: &UploadRow,
    name: &str,
    file_sha256: &str,
    parts: &[PartToComplete],
    completed: &Completed,
    head: ObjectHead,
) -> Result<VerifiedFacts, Doubt> {
    let store = &configured.store;
    if head.size != row.size {
        return Err(format!(
            "the store holds {} bytes, the upload declared {}",
            head.size, row.size
        )
        .into());
    }
    if parts.len() != usize::try_from(row.part_count).unwrap_or(0) {
        return Err("part digests are incomplete".to_owned().into());
    }
    let store_checksum = match configured.config.verify {
        VerifyMode::Checksum => store
            .check_assembled(name, parts, completed, &head, file_sha256)
            .await
            .map_err(|e| match e {
                CheckFailed::Mismatch(reason) => Doubt::from(reason),
                CheckFailed::Unreachable(e) => Doubt::StoreUnreachable(e),
            })?,
        VerifyMode::ReadBack => {
            let (digest, len) = store
                .read_back_sha256(name)
                .await
                .map_err(Doubt::StoreUnreachable)?;
            if len != row.size {
                return Err(format!("read back {len} bytes, expected {}", row.size).into());
            }
            if checksum::to_hex(&digest) != file_sha256 {
                return Err("the object's SHA-256 differs from the file's"
                    .to_owned()
                    .into());
            }
            completed
                .checksum_sha256
                .clone()
                .or_else(|| head.checksum_sha256.clone())
        }
    };
    Ok(VerifiedFacts {
        size: head.size,
        etag: completed.etag.clone().or(head.etag).unwrap_or_default(),
        store_checksum,
    })
}

/// On GCS each receipt's ETag is the part's MD5: it must be the one its newest key signed.
fn check_receipt_md5s(
    receipts: &[PartReceipt],
    signed_md5: &BTreeMap<u32, String>,
) -> Result<(), Failure> {
    let problems: BTreeMap<u32, String> = receipts
        .iter()
        .filter(|r| signed_md5.get(&r.number) != Some(&bare_etag(&r.etag)))
        .map(|r| {
            (
                r.number,
                format!(
                    "part {}: MD5 differs from the one signed into its key",
                    r.number
                ),
            )
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(parts_mismatch(&problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use valet_protocol::MIN_PART_SIZE;

    fn layout() -> PartLayout {
        PartLayout::new(2 * MIN_PART_SIZE + 1, MIN_PART_SIZE).unwrap()
    }

    fn receipt(number: u32, size: u64) -> PartReceipt {
        PartReceipt {
            number,
            etag: format!("\"etag{number}\""),
            sha256: format!("sha{number}"),
            size,
        }
    }

    fn good() -> (Vec<PartReceipt>, BTreeMap<u32, String>) {
        let receipts = vec![
            receipt(1, MIN_PART_SIZE),
            receipt(2, MIN_PART_SIZE),
            receipt(3, 1),
        ];
        let signed = (1..=3).map(|n| (n, format!("sha{n}"))).collect();
        (receipts, signed)
    }

    #[test]
    fn only_the_object_this_completion_produced_is_ours_to_delete() {
        assert!(still_ours(Some("abc-2"), Some("abc-2")));
        assert!(
            !still_ours(Some("abc-2"), Some("def-2")),
            "another upload of the key completed in between"
        );
        assert!(
            !still_ours(None, Some("abc-2")),
            "completion reported no ETag"
        );
        assert!(!still_ours(Some("abc-2"), None), "the store gave no ETag");
        assert!(!still_ours(None, None));
    }

    #[test]
    fn matching_receipts_pass() {
        let (receipts, signed) = good();
        check_receipts(&layout(), &receipts, &signed).unwrap();
    }

    #[test]
    fn missing_resized_or_unsigned_parts_are_named() {
        let (mut receipts, mut signed) = good();
        receipts.remove(1);
        receipts[1].size = 2;
        signed.insert(1, "other".into());
        let e = check_receipts(&layout(), &receipts, &signed).unwrap_err().0;
        assert_eq!(e.code, ErrorCode::PartsMismatch);
        assert!(
            e.message.starts_with("parts 1, 2, 3 do not match"),
            "{}",
            e.message
        );
    }

    #[test]
    fn listing_must_hold_each_part_with_its_size_and_etag() {
        let (receipts, _) = good();
        let listed = vec![
            ListedPart {
                number: 1,
                size: MIN_PART_SIZE,
                etag: Some("etag1".into()),
                checksum_sha256: None,
                crc32c: None,
            },
            ListedPart {
                number: 2,
                size: MIN_PART_SIZE,
                etag: None,
                checksum_sha256: Some("sha2".into()),
                crc32c: None,
            },
            ListedPart {
                number: 3,
                size: 1,
                etag: None,
                checksum_sha256: None,
                crc32c: None,
            },
        ];
        let parts = check_listing(&layout(), &receipts, &listed).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[1].etag, "etag2",
            "receipt ETag used where the store lists none"
        );

        let mut wrong = listed.clone();
        wrong[0].etag = Some("else".into());
        wrong[2].size = 0;
        wrong[1].checksum_sha256 = Some("other".into());
        let e = check_listing(&layout(), &receipts, &wrong).unwrap_err().0;
        assert!(
            e.message.starts_with("parts 1, 2, 3 do not match"),
            "{}",
            e.message
        );
        let e = check_listing(&layout(), &receipts, &listed[..2])
            .unwrap_err()
            .0;
        assert!(
            e.message.contains("part 3 is not in the store"),
            "{}",
            e.message
        );
    }
}
