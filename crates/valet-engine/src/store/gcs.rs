//! Google Cloud Storage: one temporary object per part, sent with a V4 signed `PUT` whose
//! signature covers `Content-MD5`; GCS refuses other bytes (400 BadDigest) and another header
//! value (403). The receipt is that MD5: the service compares it with the MD5 the store
//! computed of the part object before composing.

use super::PartFailure;
use crate::error::Error;
use crate::session::KeyLease;
use crate::urls;

/// The receipt of an accepted part: the `Content-MD5` its key required.
pub(crate) fn receipt(lease: &KeyLease) -> Result<String, PartFailure> {
    lease
        .headers
        .iter()
        .find(|(name, _)| name.as_str().eq_ignore_ascii_case("content-md5"))
        .and_then(|(_, value)| value.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            PartFailure::Fatal(Error::BadReply {
                from: urls::redact(&lease.url),
                what: format!("the key for part {} has no Content-MD5", lease.key.number),
            })
        })
}
