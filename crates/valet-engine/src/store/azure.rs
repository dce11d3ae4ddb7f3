//! Azure Blob `Put Block` with a SAS for the one blob (`?comp=block&blockid=…`).
//!
//! The key's headers carry `Content-MD5` (and `x-ms-content-crc64` where the deployment asks
//! for it); the store refuses a block whose bytes do not match (400 Md5Mismatch; Azurite: 400
//! InvalidOperation). Put Block answers 201 with no `ETag`: the receipt is the block id the
//! key named, which the service finds again in the blob's uncommitted block list.

use super::PartFailure;
use crate::error::Error;
use crate::session::KeyLease;
use crate::urls;

/// The receipt of an accepted block: its id, from the key's URL.
pub(crate) fn receipt(lease: &KeyLease) -> Result<String, PartFailure> {
    lease
        .url
        .query_pairs()
        .find(|(name, _)| name == "blockid")
        .map(|(_, id)| id.into_owned())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            PartFailure::Fatal(Error::BadReply {
                from: urls::redact(&lease.url),
                what: format!("the key for part {} names no block id", lease.key.number),
            })
        })
}
