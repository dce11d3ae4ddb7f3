//! The last steps of an Azure upload, and its abort. The blocks were committed on the upload's
//! staging blob and verified there; Copy Blob then puts that blob at the object's name, on the
//! condition that the staging blob is still the one verified (`x-ms-source-if-match` its ETag),
//! so a write with a part key after the verification cannot slip through. Azure API reference:
//! Copy Blob, Get Blob Properties, Put Block List, Delete Blob.

use std::time::{Duration, Instant};

use reqwest::Method;

use super::azure::{AzureStore, staging_name};
use super::bare_etag;
use super::http::header;
use crate::Error;

/// Life of the read SAS the copy's source is named with: the whole copy may need it.
const SOURCE_TTL: Duration = Duration::from_secs(30 * 60);
/// How long a copy may stay `pending` before the completion gives up (the client retries).
const COPY_WAIT: Duration = Duration::from_secs(10 * 60);
/// Between two looks at a pending copy.
const COPY_POLL: Duration = Duration::from_secs(1);

const OP: &str = "CopyBlob";

fn copy_failed(message: String) -> Error {
    Error::StoreUnavailable {
        operation: OP,
        message,
    }
}

impl AzureStore {
    /// Copies the verified staging blob of the upload tagged `tag` (ETag `staging_etag`) to
    /// `key`, waits for the copy, checks the object's size and `x-ms-meta-sha256`, and deletes
    /// the staging blob. The object's ETag.
    pub async fn publish(
        &self,
        key: &str,
        tag: &str,
        staging_etag: &str,
        size: u64,
        sha256_hex: &str,
    ) -> Result<String, Error> {
        let staging = staging_name(tag);
        let source = self.sas_url(&staging, "r", SOURCE_TTL, &[]).await?;
        let if_match = format!("\"{}\"", bare_etag(staging_etag));
        let copy = self
            .call(
                OP,
                Method::PUT,
                key,
                &[],
                &[
                    ("x-ms-copy-source", source.as_str()),
                    ("x-ms-source-if-match", &if_match),
                ],
                None,
            )
            .await?;
        let copy_id = header(&copy, "x-ms-copy-id");
        let copy_etag = header(&copy, "etag").as_deref().map(bare_etag);
        let started = Instant::now();
        let object = loop {
            let object = self
                .call("GetBlobProperties", Method::HEAD, key, &[], &[], None)
                .await?;
            if header(&object, "x-ms-copy-id") != copy_id {
                // Another upload of the same name was copied there since: it supersedes this
                // one, and is left alone.
                tracing::info!(key, "the object was superseded while it was copied");
                return Ok(copy_etag.unwrap_or_default());
            }
            match header(&object, "x-ms-copy-status").as_deref() {
                Some("success") => break object,
                Some("pending") if started.elapsed() < COPY_WAIT => {
                    tokio::time::sleep(COPY_POLL).await;
                }
                status => {
                    return Err(copy_failed(format!(
                        "the copy to the object's name is {}",
                        status.unwrap_or("of unknown status")
                    )));
                }
            }
        };
        let copied_size = header(&object, "content-length").and_then(|s| s.parse().ok());
        let copied_sha256 = header(&object, "x-ms-meta-sha256");
        if copied_size != Some(size) || copied_sha256.as_deref() != Some(sha256_hex) {
            // This copy put it there (its copy id): not the verified blob, so it goes.
            if let Err(e) = self.delete(key).await {
                tracing::error!(key, error = %e, "could not delete a wrong copy");
            }
            return Err(copy_failed(format!(
                "the copied object has {copied_size:?} bytes and sha256 {copied_sha256:?}, \
                 not the verified {size} bytes"
            )));
        }
        if let Err(e) = self.delete(&staging).await {
            tracing::warn!(key, error = %e, "could not delete the staging blob");
        }
        Ok(header(&object, "etag")
            .as_deref()
            .map(bare_etag)
            .unwrap_or_default())
    }

    /// Drops the staging blob of the upload tagged `tag`: an empty block list discards its
    /// uncommitted blocks (Azure would keep them a week), then the blob goes.
    pub async fn discard_staging(&self, tag: &str) -> Result<(), Error> {
        let staging = staging_name(tag);
        let empty = r#"<?xml version="1.0" encoding="utf-8"?><BlockList></BlockList>"#;
        self.call(
            "PutBlockList",
            Method::PUT,
            &staging,
            &[("comp", "blocklist")],
            &[("content-type", "application/xml")],
            Some(empty.into()),
        )
        .await?;
        match self.delete(&staging).await {
            Err(Error::StoreRejected { status: 404, .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
