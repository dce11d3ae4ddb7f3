//! `POST /v1/uploads/{id}/keys`: keys for parts, each bound to the part's SHA-256.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::json;
use time::OffsetDateTime;
use valet_protocol::{
    ApiError, ErrorCode, MAX_KEYS_PER_REQUEST, PartKey, PartKeys, PartKeysRequest, UploadState,
};

use super::uploads::layout_of;
use super::{AppState, Body, ClientAddr, Failure};
use crate::audit::{Entry, Event};
use crate::auth::Caller;
use crate::checksum;
use crate::db::uploads;

/// Issue keys for up to 100 parts. On S3 each key is a pre-signed `UploadPart` URL with the
/// part's `x-amz-checksum-sha256` signed in: the store refuses other bytes (400 BadDigest) and a
/// changed header (403). On Azure it is a SAS for the one blob naming the part's block, sent
/// with `Content-MD5`; on GCS a V4 signed `PUT` of the part's object with `Content-MD5` signed
/// in (see `store/mod.rs`). Asking again for a part renews its key; the newest digest counts.
#[utoipa::path(post, path = "/v1/uploads/{id}/keys", request_body = PartKeysRequest,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "upload id")),
    responses((status = 200, body = PartKeys), (status = 400, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn issue(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    caller: Caller,
    Path(id): Path<String>,
    Body(request): Body<PartKeysRequest>,
) -> Result<Json<PartKeys>, Failure> {
    let row = uploads::get_for_user(state.db(), &id, &caller.user)
        .await?
        .ok_or_else(Failure::no_upload)?;
    if row.state != UploadState::Open {
        return Err(Failure::new(
            ErrorCode::Conflict,
            "the upload is not open; no more keys are issued for it",
        ));
    }
    if request.parts.is_empty() || request.parts.len() > MAX_KEYS_PER_REQUEST {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            format!("ask for 1 to {MAX_KEYS_PER_REQUEST} parts per request"),
        ));
    }
    let store = &state.store_of(&row)?.store;
    // Check every part before issuing any key, so a bad batch leaves no trace.
    let layout = layout_of(&row);
    let mut seen = HashSet::new();
    for part in &request.parts {
        let Some((_, expected_size)) = layout.part_range(part.number) else {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!("part {} is outside 1..={}", part.number, layout.part_count),
            ));
        };
        if part.size != expected_size {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "part {} has {} bytes; the layout says {expected_size}",
                    part.number, part.size
                ),
            ));
        }
        if checksum::decode_part_sha256(&part.sha256).is_none() {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "part {}: sha256 must be standard base64 of 32 bytes",
                    part.number
                ),
            ));
        }
        if let Some(why) = store.refuse_digest(part) {
            return Err(Failure::new(ErrorCode::BadRequest, why));
        }
        if !seen.insert(part.number) {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!("part {} asked for twice", part.number),
            ));
        }
    }

    let ttl = state.config().keys.ttl;
    let now = OffsetDateTime::now_utc();
    let expires_at = now + ttl;
    // Signed before anything is recorded: a store that cannot sign leaves no trace either.
    let mut keys = Vec::with_capacity(request.parts.len());
    for part in &request.parts {
        let (url, headers) = store
            .presign_part(&row.object_key, &row.store_upload_id, part, ttl)
            .await?;
        keys.push(PartKey {
            number: part.number,
            method: "PUT".to_owned(),
            url: url.to_string(),
            headers,
            expires_in_secs: ttl.as_secs(),
            expires_at,
        });
    }
    uploads::record_keys(state.db(), &row.id, &request.parts, now, |renewed| {
        request
            .parts
            .iter()
            .map(|part| {
                let mut entry = Entry::new(Event::KeyIssued, now);
                entry.user = Some(&caller.user);
                entry.upload_id = Some(&row.id);
                entry.part = Some(part.number);
                entry.expires_at = Some(expires_at);
                entry.client_addr = client.as_deref();
                entry.detail = renewed
                    .contains(&part.number)
                    .then(|| json!({ "renewal": true }));
                entry
            })
            .collect()
    })
    .await?;
    Ok(Json(PartKeys { keys }))
}
