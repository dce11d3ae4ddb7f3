//! Upload sessions: create, keys for parts, status, complete, abort.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Body of `POST /v1/uploads`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUpload {
    /// The file's name as the user sees it. The service sanitizes it; it never becomes a path
    /// outside the account's prefix.
    pub file_name: String,
    /// Bytes in the file.
    pub size: u64,
    /// MIME type; the service may refuse types its deployment does not allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Optional folder under the account's prefix (`valet put --to PREFIX`), sanitized like the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The part size the client prefers. The service chooses the layout within its store's
    /// limits ([`crate::StoreLimits::choose_part_size`]: this size unless the store needs
    /// another) and answers it in [`UploadCreated::layout`].
    pub part_size: u64,
    /// Makes the create safe to repeat: a random key the client journals before it sends the
    /// request ([`is_valid_idempotency_key`]: 16 to 128 ASCII letters, digits, `-`, `_`). A create with a key the
    /// caller already used answers the upload created under it (whatever its state now), or
    /// `409 conflict` when the file name, size, content type, folder or layout differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// Longest [`CreateUpload::idempotency_key`] the service takes.
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 128;

/// Shortest [`CreateUpload::idempotency_key`] the service takes: short keys collide.
pub const IDEMPOTENCY_KEY_MIN_LEN: usize = 16;

/// Whether `key` is a usable [`CreateUpload::idempotency_key`].
pub fn is_valid_idempotency_key(key: &str) -> bool {
    (IDEMPOTENCY_KEY_MIN_LEN..=IDEMPOTENCY_KEY_MAX_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The kind of object store a deployment uses.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreKind {
    /// Amazon S3 or an S3-compatible store: parts are `UploadPart` calls whose key binds the
    /// part's `x-amz-checksum-sha256`.
    S3,
    /// Azure Blob Storage: parts are `Put Block` calls with a SAS for the one blob; the store
    /// checks each block's `Content-MD5`. The key's URL names the block id.
    Azure,
    /// Google Cloud Storage: each part is a temporary object sent with a V4 signed URL whose
    /// signature covers the part's `Content-MD5`; the service composes them.
    Gcs,
}

/// A per-part digest the store checks itself, beyond the SHA-256 every key request carries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PartChecksum {
    /// MD5 of the part, standard base64 ([`PartDigest::md5`]); sent as `Content-MD5`.
    Md5,
    /// CRC-64/NVME of the part as Azure's `x-ms-content-crc64` carries it
    /// ([`PartDigest::crc64`]).
    Crc64,
}

/// Which store the keys of an upload point at. The client refuses key URLs for any other origin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreInfo {
    /// The store's protocol.
    pub kind: StoreKind,
    /// `scheme://host[:port]` every key URL of this upload starts with.
    pub origin: String,
    /// Digests each key request must carry besides SHA-256 (none for S3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_checksums: Vec<PartChecksum>,
}

/// Answer of `POST /v1/uploads`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadCreated {
    /// The service's id of this upload.
    pub upload_id: String,
    /// Where the object will be, chosen by the service.
    pub object_key: String,
    /// The part layout the service chose for this store; the client follows it.
    pub layout: crate::PartLayout,
    /// The store the keys will point at.
    pub store: StoreInfo,
    /// Seconds each key lives once issued.
    pub key_ttl_secs: u64,
}

/// What the client knows of one part before it asks for its key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartDigest {
    /// Part number, 1-based.
    pub number: u32,
    /// Bytes in the part; must match the layout.
    pub size: u64,
    /// SHA-256 of the part's bytes, standard base64 of the 32-byte digest (as S3's
    /// `x-amz-checksum-sha256`). The key binds it: the store refuses any other bytes.
    pub sha256: String,
    /// MD5 of the part's bytes, standard base64 of the 16-byte digest, when the store asks
    /// for it ([`PartChecksum::Md5`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// CRC-64/NVME of the part, standard base64 of its 8 little-endian bytes, when the store
    /// asks for it ([`PartChecksum::Crc64`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64: Option<String>,
}

/// Body of `POST /v1/uploads/{id}/keys`: up to [`crate::MAX_KEYS_PER_REQUEST`] parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartKeysRequest {
    /// The parts to issue keys for.
    pub parts: Vec<PartDigest>,
}

/// A key: permission to send one part of one upload, once, for minutes.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartKey {
    /// Part number this key is for.
    pub number: u32,
    /// HTTP method to use, `PUT`.
    pub method: String,
    /// The pre-signed URL. Secret: it carries a signature; never log it with its query.
    pub url: String,
    /// Headers the request must carry exactly (they are signed into the URL).
    pub headers: Vec<(String, String)>,
    /// Seconds the key lives from the moment it was issued (immune to clock skew).
    pub expires_in_secs: u64,
    /// When the key expires, by the service's clock.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for PartKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let without_query = self.url.split('?').next().unwrap_or_default();
        f.debug_struct("PartKey")
            .field("number", &self.number)
            .field("method", &self.method)
            .field("url", &format_args!("{without_query}?<redacted>"))
            .field("expires_in_secs", &self.expires_in_secs)
            .finish_non_exhaustive()
    }
}

/// Answer of `POST /v1/uploads/{id}/keys`: one key per part asked for, in the same order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartKeys {
    /// The keys.
    pub keys: Vec<PartKey>,
}

/// Where an upload stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UploadState {
    /// Parts may be sent.
    Open,
    /// Completed on the store and verified by the service.
    Verified,
    /// Aborted by the client or by the service's cleanup; the store's parts are gone.
    Aborted,
    /// Completion was refused (verification failed); nothing was accepted.
    Failed,
}

/// A part as the store holds it (from the store's own listing, not from the client's word).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredPart {
    /// Part number.
    pub number: u32,
    /// Bytes the store holds for it.
    pub size: u64,
    /// The store's entity tag, where the store lists one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// Answer of `GET /v1/uploads/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadStatus {
    /// The service's id of the upload.
    pub upload_id: String,
    /// The object key.
    pub object_key: String,
    /// The file name as given (before sanitizing).
    pub file_name: String,
    /// The part layout.
    pub layout: crate::PartLayout,
    /// Where it stands.
    pub state: UploadState,
    /// Whole-file SHA-256 (hex), once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// Parts the store holds now (only while open).
    pub parts: Vec<StoredPart>,
}

/// One line of `GET /v1/uploads`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadSummary {
    /// The service's id of the upload.
    pub upload_id: String,
    /// The object key.
    pub object_key: String,
    /// Bytes in the file.
    pub size: u64,
    /// Where it stands.
    pub state: UploadState,
    /// Whole-file SHA-256 (hex), once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Answer of `GET /v1/uploads`: the caller's own uploads, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadList {
    /// The uploads.
    pub uploads: Vec<UploadSummary>,
}

/// The store's receipt for one part, as the client got it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartReceipt {
    /// Part number.
    pub number: u32,
    /// The `ETag` the store answered the part upload with; for Azure, which answers a block
    /// with no `ETag`, the block id the key named.
    pub etag: String,
    /// The part's SHA-256 as sent in its key request (base64).
    pub sha256: String,
    /// Bytes in the part.
    pub size: u64,
}

/// Body of `POST /v1/uploads/{id}/complete`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteUpload {
    /// Whole-file SHA-256, lowercase hex, computed in one pass over the file.
    pub sha256: String,
    /// Every part's receipt, all parts of the layout.
    pub parts: Vec<PartReceipt>,
}

/// Answer of `POST /v1/uploads/{id}/complete`: given only once the service has checked the
/// parts with the store, completed the object and checked what the store reports of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadVerified {
    /// The service's id of the upload.
    pub upload_id: String,
    /// The object key.
    pub object_key: String,
    /// Bytes in the object, as the store reports them.
    pub size: u64,
    /// Whole-file SHA-256 (hex), recorded by the service.
    pub sha256: String,
    /// The store's `ETag` of the object.
    pub etag: String,
    /// The store's checksum of the object where it reports one (S3: composite SHA-256, `…-N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_checksum: Option<String>,
    /// Always [`UploadState::Verified`].
    pub state: UploadState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_debug_hides_the_signature() {
        let key = PartKey {
            number: 1,
            method: "PUT".into(),
            url: "http://127.0.0.1:8333/b/k?X-Amz-Signature=deadbeef".into(),
            headers: vec![],
            expires_in_secs: 60,
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let shown = format!("{key:?}");
        assert!(!shown.contains("deadbeef"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:8333/b/k"), "{shown}");
    }
}
