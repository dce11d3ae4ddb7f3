//! Store adapters: each turns "send part N of these bytes with this key" into the store's HTTP
//! request and reads its answer. Everything else (scheduling, hashing, retries, key renewal,
//! journal) is shared and lives in [`crate::upload`].
//!
//! Every store's key is a pre-signed `PUT` sent with exactly the key's headers (`s3::send`);
//! what differs is the receipt the service later checks against the store's own listing:
//! S3's `ETag`, Azure's block id (Put Block answers no `ETag`), GCS's `Content-MD5`.

pub(crate) mod azure;
pub(crate) mod gcs;
pub(crate) mod s3;

use std::sync::Arc;

use bytes::Bytes;
use valet_protocol::StoreKind;

pub(crate) use s3::{OnSent, PartFailure};

use crate::session::KeyLease;
use crate::upload::RateLimit;

/// Sends one part with its key; the receipt to journal and report at completion.
pub(crate) async fn put_part(
    kind: StoreKind,
    client: &reqwest::Client,
    lease: &KeyLease,
    body: Bytes,
    limit: Option<Arc<RateLimit>>,
    on_sent: OnSent,
) -> Result<String, PartFailure> {
    let answer = s3::send(client, lease, body, limit, on_sent).await?;
    match kind {
        StoreKind::Azure => azure::receipt(lease),
        StoreKind::Gcs => gcs::receipt(lease),
        _ => s3::receipt(lease, &answer),
    }
}
