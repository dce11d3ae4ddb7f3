//! The upload endpoints of the valet service, with every answer checked before use: a reply
//! that does not fit what was asked (wrong upload, wrong part numbers or count, unsafe or foreign
//! key URLs) is a typed error, never a panic and never a request to an unexpected host.

use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use url::Url;
use valet_protocol::{
    CompleteUpload, CreateUpload, MAX_KEYS_PER_REQUEST, PartDigest, PartKey, PartKeys,
    PartKeysRequest, StoreInfo, StoreLimits, UploadCreated, UploadState, UploadStatus,
    UploadVerified,
};

use super::{Call, MAX_TTL, Session, renew_at};
use crate::error::{Error, Result};
use crate::urls;

/// Where the keys of one upload may point, and how long they live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTarget {
    /// `scheme://host[:port]` every key URL must have (from [`StoreInfo::origin`]).
    pub origin: String,
    /// Life of each key, as announced at creation.
    pub key_ttl: Duration,
}

impl StoreTarget {
    /// Checks the store the service announced: its origin must be safe (https or loopback).
    pub fn new(store: &StoreInfo, key_ttl_secs: u64) -> Result<Self> {
        let url = Url::parse(&store.origin).map_err(|e| Error::BadReply {
            from: "POST /v1/uploads".into(),
            what: format!("store origin {:?} does not parse: {e}", store.origin),
        })?;
        urls::check_secure(&url)?;
        Ok(Self {
            origin: urls::origin(&url),
            key_ttl: Duration::from_secs(key_ttl_secs).min(MAX_TTL),
        })
    }
}

/// A checked key and when it was obtained (by the local clock: immune to clock skew).
/// Its `Debug` shows the URL without its query (the signature).
#[derive(Clone)]
pub struct KeyLease {
    /// The key as the service sent it.
    pub key: PartKey,
    /// Its URL, parsed and checked (safe scheme, the upload's store origin).
    pub url: Url,
    /// Its headers, checked to be valid HTTP headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// When the key request was sent.
    pub issued: Instant,
    /// How long the key lives from `issued`.
    pub ttl: Duration,
}

impl std::fmt::Debug for KeyLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLease")
            .field("number", &self.key.number)
            .field(
                "url",
                &format_args!("{}?<redacted>", urls::redact(&self.url)),
            )
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl KeyLease {
    /// Whether to get a new key before using this one at `now` (less than the renewal margin
    /// of life left: 60 s, or half the key's life when that is shorter).
    pub fn needs_renewal(&self, now: Instant) -> bool {
        now >= renew_at(self.issued, self.ttl)
    }

    /// Whether the key has lived its whole life at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.issued) >= self.ttl
    }
}

/// Slowest verification rate allowed for: a service that reads the object back to hash it
/// reads at least this fast.
const VERIFY_BYTES_PER_SEC: u64 = 20 * 1024 * 1024;

/// How long a `complete` of an object of `size` bytes may take: 120 s, plus the time to read
/// it back at 20 MiB/s (a 1 GiB object: 171 s; 100 GiB: about 1 h 27 min).
pub(crate) fn complete_timeout(size: u64) -> Duration {
    Duration::from_secs(120 + size / VERIFY_BYTES_PER_SEC)
}

/// Upload ids go into URL paths: only plain characters are accepted.
fn check_upload_id(from: &str, id: &str) -> Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~');
    if id.is_empty() || id.len() > 200 || !id.chars().all(plain) || id == "." || id == ".." {
        return Err(Error::BadReply {
            from: from.to_owned(),
            what: format!(
                "upload id {:?} is not a plain identifier",
                id.chars().take(40).collect::<String>()
            ),
        });
    }
    Ok(())
}

impl Session {
    /// `POST /v1/uploads`: creates an upload; checks the answer fits the request. The layout
    /// is the service's choice (`create.part_size` is a preference it may raise to fit the
    /// store): it must be for this file and within the limits of the store kind it names.
    pub async fn create_upload(
        &self,
        create: &CreateUpload,
    ) -> Result<(UploadCreated, StoreTarget)> {
        let from = "POST /v1/uploads";
        let created: UploadCreated = self
            .request(Method::POST, "v1/uploads", Some(create), true)
            .await?;
        let store = check_created(from, create, &created)?;
        Ok((created, store))
    }

    /// `POST /v1/uploads/{id}/keys`: one key per part, in order. At most
    /// [`MAX_KEYS_PER_REQUEST`] parts; every key is checked against `store`.
    pub async fn part_keys(
        &self,
        upload_id: &str,
        parts: &[PartDigest],
        store: &StoreTarget,
    ) -> Result<Vec<KeyLease>> {
        if parts.is_empty() || parts.len() > MAX_KEYS_PER_REQUEST {
            return Err(Error::Invalid(format!(
                "asked for {} keys; 1..={MAX_KEYS_PER_REQUEST} per request",
                parts.len()
            )));
        }
        check_upload_id("keys", upload_id)?;
        let path = format!("v1/uploads/{upload_id}/keys");
        let from = format!("POST /{path}");
        let request = PartKeysRequest {
            parts: parts.to_vec(),
        };
        let issued = Instant::now();
        let reply: PartKeys = self
            .request(Method::POST, &path, Some(&request), true)
            .await?;
        check_keys(&from, parts, reply, store, issued)
    }

    /// `GET /v1/uploads/{id}`: where the upload stands and which parts the store holds.
    pub async fn upload_status(&self, upload_id: &str) -> Result<UploadStatus> {
        check_upload_id("status", upload_id)?;
        let path = format!("v1/uploads/{upload_id}");
        let status: UploadStatus = self
            .request::<(), _>(Method::GET, &path, None, true)
            .await?;
        if status.upload_id != upload_id {
            return Err(Error::BadReply {
                from: format!("GET /{path}"),
                what: "the answer is about another upload".into(),
            });
        }
        Ok(status)
    }

    /// `POST /v1/uploads/{id}/complete`: only an answer in state `verified`, for this upload, is
    /// accepted. The service verifies the object before it answers (reading it back, on some
    /// stores), so each attempt may take 120 s plus the object's size at 20 MiB/s.
    pub async fn complete_upload(
        &self,
        upload_id: &str,
        complete: &CompleteUpload,
    ) -> Result<UploadVerified> {
        check_upload_id("complete", upload_id)?;
        let path = format!("v1/uploads/{upload_id}/complete");
        let size = complete.parts.iter().map(|p| p.size).sum();
        let verified: UploadVerified = self
            .call(
                Method::POST,
                &path,
                Some(complete),
                true,
                Call::retried_within(complete_timeout(size)),
            )
            .await?;
        if verified.upload_id != upload_id
            || verified.state != UploadState::Verified
            || !verified.sha256.eq_ignore_ascii_case(&complete.sha256)
        {
            return Err(Error::BadReply {
                from: format!("POST /{path}"),
                what: format!(
                    "the answer does not confirm this upload as verified (state {:?})",
                    verified.state
                ),
            });
        }
        Ok(verified)
    }

    /// `DELETE /v1/uploads/{id}`: aborts the upload; the store drops its parts.
    pub async fn abort_upload(&self, upload_id: &str) -> Result<()> {
        check_upload_id("abort", upload_id)?;
        self.request_raw::<()>(
            Method::DELETE,
            &format!("v1/uploads/{upload_id}"),
            None,
            true,
        )
        .await
        .map(drop)
    }
}

/// Checks a create answer against the request: a plain upload id, a layout for this file that
/// fits its store kind, keys that live, a safe store origin.
pub(crate) fn check_created(
    from: &str,
    create: &CreateUpload,
    created: &UploadCreated,
) -> Result<StoreTarget> {
    check_upload_id(from, &created.upload_id)?;
    let layout = created.layout;
    let kind = created.store.kind;
    let refused = |why: String| Error::BadReply {
        from: from.into(),
        what: format!(
            "layout {} bytes / {} per part / {} parts {why}",
            layout.size, layout.part_size, layout.part_count
        ),
    };
    if layout.size != create.size {
        return Err(refused(format!(
            "is not for a file of {} bytes",
            create.size
        )));
    }
    match StoreLimits::of(kind).check(layout.size, layout.part_size) {
        Ok(checked) if checked == layout => {}
        Ok(checked) => {
            return Err(refused(format!(
                "counts its parts wrong ({} parts)",
                checked.part_count
            )));
        }
        Err(e) => return Err(refused(format!("does not fit a {kind:?} store: {e}"))),
    }
    if created.key_ttl_secs == 0 {
        return Err(Error::BadReply {
            from: from.into(),
            what: "keys that live 0 seconds".into(),
        });
    }
    StoreTarget::new(&created.store, created.key_ttl_secs)
}

/// Checks a keys answer against the request: same count, same part numbers in the same order,
/// method `PUT`, safe URLs at the announced origin, valid headers.
pub(crate) fn check_keys(
    from: &str,
    asked: &[PartDigest],
    reply: PartKeys,
    store: &StoreTarget,
    issued: Instant,
) -> Result<Vec<KeyLease>> {
    let bad = |what: String| Error::BadReply {
        from: from.to_owned(),
        what,
    };
    if reply.keys.len() != asked.len() {
        return Err(bad(format!(
            "{} keys for {} parts",
            reply.keys.len(),
            asked.len()
        )));
    }
    let mut leases = Vec::with_capacity(asked.len());
    for (digest, key) in asked.iter().zip(reply.keys) {
        if key.number != digest.number {
            return Err(bad(format!(
                "key for part {} where part {} was asked",
                key.number, digest.number
            )));
        }
        if !key.method.eq_ignore_ascii_case("PUT") {
            return Err(bad(format!(
                "part {}: method {:?}, expected PUT",
                key.number, key.method
            )));
        }
        let url = urls::check_key_url(&key.url, &store.origin)?;
        let mut headers = Vec::with_capacity(key.headers.len());
        for (name, value) in &key.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("part {}: invalid header name", key.number)))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                bad(format!(
                    "part {}: invalid value for header {name}",
                    key.number
                ))
            })?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        if key.expires_in_secs == 0 {
            return Err(bad(format!("part {}: key lives 0 seconds", key.number)));
        }
        let ttl = Duration::from_secs(key.expires_in_secs).min(MAX_TTL);
        leases.push(KeyLease {
            key,
            url,
            headers,
            issued,
            ttl,
        });
    }
    Ok(leases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(number: u32) -> PartDigest {
        PartDigest {
            number,
            size: 5,
            sha256: "x".into(),
            md5: None,
            crc64: None,
        }
    }

    fn key(number: u32, url: &str) -> PartKey {
        PartKey {
            number,
            method: "PUT".into(),
            url: url.into(),
            headers: vec![("x-amz-checksum-sha256".into(), "x".into())],
            expires_in_secs: 4,
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn store() -> StoreTarget {
        StoreTarget {
            origin: "http://127.0.0.1:9000".into(),
            key_ttl: Duration::from_secs(4),
        }
    }

    #[test]
    fn keys_must_match_the_request() {
        let now = Instant::now();
        let ok = PartKeys {
            keys: vec![
                key(1, "http://127.0.0.1:9000/b/k?s=1"),
                key(2, "http://127.0.0.1:9000/b/k?s=2"),
            ],
        };
        let leases = check_keys("t", &[digest(1), digest(2)], ok.clone(), &store(), now).unwrap();
        assert_eq!(leases.len(), 2);
        assert!(!leases[0].needs_renewal(now));
        assert!(
            leases[0].needs_renewal(now + Duration::from_secs(2)),
            "half of a 4 s life"
        );
        assert!(leases[0].is_expired(now + Duration::from_secs(4)));

        let e = check_keys("t", &[digest(1)], ok.clone(), &store(), now).unwrap_err();
        assert_eq!(e.code(), "bad_reply", "wrong count: {e}");
        let e = check_keys("t", &[digest(2), digest(1)], ok, &store(), now).unwrap_err();
        assert_eq!(e.code(), "bad_reply", "wrong order: {e}");
        let foreign = PartKeys {
            keys: vec![key(1, "http://127.0.0.2:9000/b/k?s=1")],
        };
        let e = check_keys("t", &[digest(1)], foreign, &store(), now).unwrap_err();
        assert_eq!(e.code(), "foreign_key_host");
        let mut bad_header = key(1, "http://127.0.0.1:9000/b/k");
        bad_header.headers = vec![("bad header".into(), "v".into())];
        let e = check_keys(
            "t",
            &[digest(1)],
            PartKeys {
                keys: vec![bad_header],
            },
            &store(),
            now,
        )
        .unwrap_err();
        assert_eq!(e.code(), "bad_reply");
    }

    #[test]
    fn store_origin_must_be_safe() {
        let info = StoreInfo {
            kind: valet_protocol::StoreKind::S3,
            origin: "http://s3.example.com".into(),
            part_checksums: vec![],
        };
        assert_eq!(
            StoreTarget::new(&info, 60).unwrap_err().code(),
            "insecure_url"
        );
    }

    #[test]
    fn complete_may_take_as_long_as_reading_the_object_back() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(complete_timeout(0), Duration::from_secs(120));
        assert_eq!(complete_timeout(20 * MIB - 1), Duration::from_secs(120));
        assert_eq!(complete_timeout(1024 * MIB), Duration::from_secs(171));
        assert_eq!(
            complete_timeout(5 * 1024 * 1024 * MIB),
            Duration::from_secs(120 + 262_144),
            "5 TiB: about three days"
        );
    }

    #[test]
    fn upload_ids_are_plain() {
        assert!(check_upload_id("t", "01HX-abc_def.1").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a b", "ü"] {
            assert!(check_upload_id("t", bad).is_err(), "{bad:?}");
        }
    }
}
