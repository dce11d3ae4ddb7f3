//! `POST /v1/uploads`, `GET /v1/uploads`, `GET /v1/uploads/{id}`, `DELETE /v1/uploads/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;
use time::OffsetDateTime;
use valet_protocol::{
    ApiError, CreateUpload, ErrorCode, LayoutError, PartLayout, StoreInfo, StoredPart,
    UploadCreated, UploadList, UploadState, UploadStatus, UploadSummary, is_valid_idempotency_key,
};

use super::{AppState, Body, ClientAddr, Failure};
use crate::audit::{self, Entry, Event};
use crate::auth::{Caller, random_id};
use crate::db::uploads::{self, UploadRow};
use crate::names;

/// Content type sent to the store when the client gives none.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Start an upload: the service checks it, chooses the part layout within the store's limits
/// (the client's part size is a preference), picks the object key under the caller's prefix
/// and creates the multipart upload on the store.
///
/// With an idempotency key the caller used before, nothing is created: the answer names the
/// upload made then (whatever its state now), or is `409 conflict` when this request differs.
#[utoipa::path(post, path = "/v1/uploads", request_body = CreateUpload, security(("bearer" = [])),
    responses((status = 200, body = UploadCreated), (status = 400, body = ApiError),
        (status = 409, body = ApiError), (status = 413, body = ApiError),
        (status = 415, body = ApiError), (status = 502, body = ApiError)))]
pub async fn create(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    caller: Caller,
    Body(request): Body<CreateUpload>,
) -> Result<Json<UploadCreated>, Failure> {
    let config = state.config();
    if let Some(key) = &request.idempotency_key
        && !is_valid_idempotency_key(key)
    {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            "idempotency_key must be 16 to 128 ASCII letters, digits, '-' or '_'",
        ));
    }
    let name = names::sanitize_file_name(&request.file_name).ok_or_else(|| {
        Failure::new(
            ErrorCode::BadRequest,
            "file_name has no usable characters once path parts and unsafe characters are removed",
        )
    })?;
    let folder = match request.prefix.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(names::sanitize_prefix(raw).ok_or_else(|| {
            Failure::new(ErrorCode::BadRequest, "prefix has no usable path segments")
        })?),
    };
    let max = config.limits.max_file_size.as_u64();
    if request.size > max {
        return Err(Failure::new(
            ErrorCode::TooLarge,
            format!(
                "file of {} bytes is larger than the {max}-byte limit",
                request.size
            ),
        ));
    }
    let content_type = request
        .content_type
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or(DEFAULT_CONTENT_TYPE);
    check_content_type(content_type, &config.limits.allowed_content_types)?;
    // The client's part size is a preference: the store's limits decide (larger parts when the
    // file would need more parts than the store takes), and the client follows the answer.
    let (store_name, configured) = state.stores().for_user(&caller.user);
    let store = &configured.store;
    let layout = configured
        .config
        .limits()
        .choose_layout(request.size, request.part_size)
        .map_err(|e| match e {
            LayoutError::TooLarge { .. } => Failure::new(ErrorCode::TooLarge, e.to_string()),
            _ => Failure::new(ErrorCode::BadRequest, e.to_string()),
        })?;
    if layout.part_size != request.part_size {
        tracing::info!(
            size = request.size,
            preferred = request.part_size,
            part_size = layout.part_size,
            part_count = layout.part_count,
            "part size chosen within the store's limits"
        );
    }
    let object_key = object_key(
        &configured.config.prefix,
        &caller.user,
        folder.as_deref(),
        &name,
    );
    if let Some(key) = &request.idempotency_key
        && let Some(earlier) =
            uploads::get_by_idempotency_key(state.db(), &caller.user, key).await?
    {
        let asked = Asked {
            request: &request,
            content_type,
            object_key: &object_key,
            layout: &layout,
        };
        return answer_repeated(&state, earlier, &asked);
    }
    let quota = config.limits.user_quota.map(|q| q.as_u64());
    let over_quota = |used: u64| {
        Failure::new(
            ErrorCode::QuotaExceeded,
            format!(
                "{used} bytes in use plus {} would exceed the {}-byte quota",
                request.size,
                quota.unwrap_or_default()
            ),
        )
    };
    // A first look, so an upload plainly over quota never reaches the store; the insert below
    // checks again, atomically, against concurrent creates.
    if let Some(quota) = quota {
        let used = uploads::bytes_in_use(state.db(), &caller.user).await?;
        if used.saturating_add(request.size) > quota {
            return Err(over_quota(used));
        }
    }

    let store_upload_id = store.create_multipart(&object_key, content_type).await?;
    let now = OffsetDateTime::now_utc();
    let row = UploadRow {
        id: random_id(),
        user: caller.user.clone(),
        object_key,
        file_name: request.file_name.clone(),
        size: request.size,
        content_type: content_type.to_owned(),
        part_size: layout.part_size,
        part_count: layout.part_count,
        store_upload_id,
        state: UploadState::Open,
        sha256: None,
        etag: None,
        store_checksum: None,
        store: store_name.map(str::to_owned),
        created_at: now,
        idempotency_key: request.idempotency_key.clone(),
    };
    let inserted = match quota {
        None => uploads::insert(state.db(), &row).await.map(|()| None),
        Some(quota) => uploads::insert_within_quota(state.db(), &row, quota).await,
    };
    let refused = match inserted {
        Ok(None) => None,
        Ok(Some(used)) => Some(Err(over_quota(used))),
        // A concurrent create with the same key got in first: answer its upload.
        Err(e) if uploads::is_unique_violation(&e) => {
            let key = row.idempotency_key.as_deref().unwrap_or_default();
            let earlier = uploads::get_by_idempotency_key(state.db(), &caller.user, key)
                .await?
                .ok_or(e)?;
            let asked = Asked {
                request: &request,
                content_type,
                object_key: &row.object_key,
                layout: &layout,
            };
            Some(answer_repeated(&state, earlier, &asked))
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(answer) = refused {
        // Not stored: drop the multipart upload just made.
        if let Err(e) = store.abort(&row.object_key, &row.store_upload_id).await {
            tracing::warn!(error = %e, "could not abort the multipart upload not stored");
        }
        return answer;
    }
    let mut entry = Entry::new(Event::UploadCreated, now);
    entry.user = Some(&caller.user);
    entry.upload_id = Some(&row.id);
    entry.client_addr = client.as_deref();
    entry.detail = Some(json!({
        "object_key": row.object_key,
        "size": row.size,
        "part_count": row.part_count,
    }));
    audit::record(state.db(), &entry).await?;
    Ok(Json(UploadCreated {
        upload_id: row.id,
        object_key: row.object_key,
        layout,
        store: StoreInfo {
            kind: store.kind(),
            origin: store.origin().to_owned(),
            part_checksums: store.part_checksums(),
        },
        key_ttl_secs: config.keys.ttl.as_secs(),
    }))
}

/// What a create asked for, as the service resolved it (sanitized, defaulted, laid out).
struct Asked<'a> {
    request: &'a CreateUpload,
    content_type: &'a str,
    object_key: &'a str,
    layout: &'a PartLayout,
}

/// The answer to a create whose idempotency key made `earlier`: that upload as it was
/// created, when the request is the same (file name, size, content type, object key and
/// layout); `409 conflict` naming what differs otherwise. A finished upload is answered too:
/// its state is the status call's to tell.
fn answer_repeated(
    state: &AppState,
    earlier: UploadRow,
    asked: &Asked<'_>,
) -> Result<Json<UploadCreated>, Failure> {
    let layout = layout_of(&earlier);
    let differs: Vec<&str> = [
        ("file_name", earlier.file_name == asked.request.file_name),
        ("size", earlier.size == asked.request.size),
        ("content_type", earlier.content_type == asked.content_type),
        ("prefix", earlier.object_key == asked.object_key),
        ("part_size", layout == *asked.layout),
    ]
    .into_iter()
    .filter_map(|(field, same)| (!same).then_some(field))
    .collect();
    if !differs.is_empty() {
        return Err(Failure::new(
            ErrorCode::Conflict,
            format!(
                "this idempotency key was used for another upload ({} differ); \
                 a new upload needs a new key",
                differs.join(", ")
            ),
        ));
    }
    let key = earlier.idempotency_key.as_deref().unwrap_or_default();
    tracing::info!(
        upload = %earlier.id,
        key_start = key.get(..8).unwrap_or(key),
        state = ?earlier.state,
        "create repeated with its idempotency key; answering the upload it made"
    );
    let store = &state.store_of(&earlier)?.store;
    Ok(Json(UploadCreated {
        upload_id: earlier.id,
        object_key: earlier.object_key,
        layout,
        store: StoreInfo {
            kind: store.kind(),
            origin: store.origin().to_owned(),
            part_checksums: store.part_checksums(),
        },
        key_ttl_secs: state.config().keys.ttl.as_secs(),
    }))
}

/// `{prefix}/{user}/[{folder}/]{name}`: every part is sanitized, so the key stays under the
/// user's own prefix.
pub fn object_key(prefix: &str, user: &str, folder: Option<&str>, name: &str) -> String {
    let prefix = prefix.trim_matches('/');
    match folder {
        Some(folder) => format!("{prefix}/{user}/{folder}/{name}"),
        None => format!("{prefix}/{user}/{name}"),
    }
}

/// Refuses content types that are malformed (they become a signed header) or not allowed.
pub(crate) fn check_content_type(content_type: &str, allowed: &[String]) -> Result<(), Failure> {
    let well_formed = content_type.len() <= 255
        && content_type.bytes().all(|b| (0x20..0x7f).contains(&b))
        && content_type.contains('/');
    if !well_formed {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            "content_type must be a MIME type such as text/plain",
        ));
    }
    // Parameters (`; charset=utf-8`) do not change what kind of content it is.
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if allowed.iter().any(|glob| glob_matches(glob, essence)) {
        Ok(())
    } else {
        Err(Failure::new(
            ErrorCode::ContentTypeNotAllowed,
            format!("content type {essence} is not allowed here"),
        ))
    }
}

/// Case-insensitive glob where `*` matches any run of characters.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let text = text.to_ascii_lowercase();
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The caller's uploads, newest first.
#[utoipa::path(get, path = "/v1/uploads", security(("bearer" = [])),
    responses((status = 200, body = UploadList), (status = 401, body = ApiError)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UploadList>, Failure> {
    let rows = uploads::list_for_user(state.db(), &caller.user).await?;
    Ok(Json(UploadList {
        uploads: rows
            .into_iter()
            .map(|u| UploadSummary {
                upload_id: u.id,
                object_key: u.object_key,
                size: u.size,
                state: u.state,
                sha256: u.sha256,
                created_at: u.created_at,
            })
            .collect(),
    }))
}

/// Where an upload stands, with the parts the store holds now (while open).
#[utoipa::path(get, path = "/v1/uploads/{id}", security(("bearer" = [])),
    params(("id" = String, Path, description = "upload id")),
    responses((status = 200, body = UploadStatus), (status = 404, body = ApiError)))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UploadStatus>, Failure> {
    let row = uploads::get_for_user(state.db(), &id, &caller.user)
        .await?
        .ok_or_else(Failure::no_upload)?;
    let listed = if row.state == UploadState::Open {
        match state
            .store_of(&row)?
            .store
            .list_parts(&row.object_key, &row.store_upload_id)
            .await
        {
            Ok(listed) => listed,
            // The store no longer knows the multipart upload: it completed it but the answer
            // was lost, or a lifecycle rule aborted it. No parts are listed; the client's
            // completion then verifies whatever is at the key. (A 502 here would be retried
            // forever.)
            Err(e) if e.store_code() == Some("NoSuchUpload") => {
                tracing::info!(upload = %row.id, "the store no longer knows the open upload; no parts listed");
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        Vec::new()
    };
    let parts = listed
        .into_iter()
        .map(|p| StoredPart {
            number: p.number,
            size: p.size,
            etag: p.etag,
        })
        .collect();
    Ok(Json(UploadStatus {
        layout: layout_of(&row),
        upload_id: row.id,
        object_key: row.object_key,
        file_name: row.file_name,
        state: row.state,
        sha256: row.sha256,
        created_at: row.created_at,
        parts,
    }))
}

/// The layout recorded for an upload.
pub(crate) fn layout_of(row: &UploadRow) -> PartLayout {
    PartLayout {
        size: row.size,
        part_size: row.part_size,
        part_count: row.part_count,
    }
}

/// Abort an open upload: the store drops its parts. Aborting an aborted upload is a no-op.
#[utoipa::path(delete, path = "/v1/uploads/{id}", security(("bearer" = [])),
    params(("id" = String, Path, description = "upload id")),
    responses((status = 204), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn abort(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Failure> {
    let row = uploads::get_for_user(state.db(), &id, &caller.user)
        .await?
        .ok_or_else(Failure::no_upload)?;
    match row.state {
        UploadState::Open => {}
        UploadState::Aborted => return Ok(StatusCode::NO_CONTENT),
        _ => {
            return Err(Failure::new(
                ErrorCode::Conflict,
                "the upload is finished; only open uploads can be aborted",
            ));
        }
    }
    let Some(_claim) = state.claim_completion(&row.id) else {
        return Err(Failure::new(
            ErrorCode::Conflict,
            "the upload is being completed right now",
        ));
    };
    state
        .store_of(&row)?
        .store
        .abort(&row.object_key, &row.store_upload_id)
        .await?;
    let now = OffsetDateTime::now_utc();
    uploads::transition(
        state.db(),
        &row.id,
        UploadState::Open,
        UploadState::Aborted,
        now,
    )
    .await?;
    let mut entry = Entry::new(Event::UploadAborted, now);
    entry.user = Some(&caller.user);
    entry.upload_id = Some(&row.id);
    entry.client_addr = client.as_deref();
    audit::record_or_warn(state.db(), &entry).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_globs() {
        assert!(glob_matches("*/*", "image/png"));
        assert!(glob_matches("image/*", "IMAGE/png"));
        assert!(!glob_matches("image/*", "text/plain"));
        assert!(glob_matches("application/pdf", "application/pdf"));
        assert!(!glob_matches("application/pdf", "application/pdfx"));
        assert!(glob_matches("*", "anything/at-all"));
        assert!(glob_matches("application/*+json", "application/ld+json"));
        assert!(!glob_matches("a*a", "a"));
    }

    #[test]
    fn content_types_that_could_inject_headers_are_refused() {
        let all = ["*/*".to_owned()];
        assert!(check_content_type("text/plain; charset=utf-8", &all).is_ok());
        assert!(check_content_type("text/plain\r\nx-amz-acl: public-read", &all).is_err());
        assert!(check_content_type("plain", &all).is_err());
        let images = ["image/*".to_owned()];
        let refused = check_content_type("text/html", &images).unwrap_err();
        assert_eq!(refused.0.code, ErrorCode::ContentTypeNotAllowed);
    }

    #[test]
    fn object_keys_stay_under_the_user_prefix() {
        let name = names::sanitize_file_name("../../x/../secret.txt").unwrap();
        let folder = names::sanitize_prefix("../bob/").unwrap();
        let key = object_key("users/", "alice", Some(&folder), &name);
        assert_eq!(key, "users/alice/bob/secret.txt");
        assert!(key.starts_with("users/alice/"));
    }
}
