//! The Google Cloud Storage side: parallel composite uploads.
//!
//! Each part is a temporary object `{parts_prefix}/{tag}/{N:05}`, sent by the client with a
//! V4 signed `PUT` whose signature covers `Content-MD5` (GCS refuses other bytes with 400
//! BadDigest, and another header value breaks the signature). `{parts_prefix}/{tag}/upload`
//! marks the upload as open. At completion the service lists the part objects (size, MD5,
//! CRC32C as the store computed them), composes them into the object (32 sources per call, in
//! rounds) with the content type and the file's SHA-256 as metadata, checks that the object's
//! CRC32C is the parts' CRC32Cs combined, and deletes the parts. The XML API's multipart
//! upload would avoid the copies, but no emulator implements it, so it could not be tested.
//! A composite object may have at most 1024 components, so an upload has at most 1024 parts
//! ([`valet_protocol::StoreLimits::GCS`]): the service chooses parts large enough for that.
//!
//! The service's own calls use the JSON API (objects insert, list, get, compose, delete).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use url::Url;
use valet_protocol::PartDigest;

use super::gcs_sign::{self, ServiceAccount, SignRequest};
use super::http::{self, unreadable};
use super::{CheckFailed, Completed, Finish, ListedPart, ObjectHead, PartToComplete};
use crate::Error;
use crate::config::{GcsApiAuth, StoreConfig};

/// Sources one compose call takes.
const COMPOSE_FAN_IN: usize = 32;
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

/// A GCS bucket the service writes to.
pub struct GcsStore {
    endpoint: Url,
    bucket: String,
    parts_prefix: String,
    origin: String,
    account: ServiceAccount,
    api_auth: GcsApiAuth,
    token: Mutex<Option<(String, Instant)>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStore")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// An object resource of the JSON API (the fields we read).
#[derive(Debug, Deserialize)]
pub(crate) struct ObjectJson {
    name: String,
    #[serde(deserialize_with = "number_or_string")]
    size: u64,
    #[serde(rename = "md5Hash", default)]
    md5_hash: Option<String>,
    #[serde(default)]
    pub(crate) crc32c: Option<String>,
    #[serde(default, deserialize_with = "opt_number_or_string")]
    generation: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListJson {
    #[serde(default)]
    pub(crate) items: Vec<ObjectJson>,
    #[serde(rename = "nextPageToken", default)]
    next_page_token: Option<String>,
}

/// The API writes 64-bit numbers as strings; emulators sometimes as numbers.
fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| serde::de::Error::custom("not a u64")),
        serde_json::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        _ => Err(serde::de::Error::custom("expected a number")),
    }
}

fn opt_number_or_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// CRC32C as GCS writes it: base64 of the big-endian 4 bytes.
pub fn crc32c_b64(crc: u32) -> String {
    STANDARD.encode(crc.to_be_bytes())
}

pub(crate) fn decode_crc32c(b64: &str) -> Option<u32> {
    let bytes = STANDARD.decode(b64).ok()?;
    Some(u32::from_be_bytes(bytes.as_slice().try_into().ok()?))
}

/// A JSON request body for [`GcsStore::call`].
fn json_body(value: &serde_json::Value) -> Option<(&'static str, Bytes)> {
    Some(("application/json", Bytes::from(value.to_string())))
}

/// Percent-encodes an object name as one path segment of the JSON API.
fn segment(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl GcsStore {
    /// A bucket for `config`, signing with the service account in `credentials_file` (or
    /// `GOOGLE_APPLICATION_CREDENTIALS`). Does not contact the store.
    pub fn new(config: &StoreConfig) -> Result<Self, Error> {
        let text = config
            .credentials_text("GOOGLE_APPLICATION_CREDENTIALS")?
            .ok_or_else(|| {
                Error::Config(
                    "store.credentials_file: GCS needs a service account key file (or GOOGLE_APPLICATION_CREDENTIALS)"
                        .to_owned(),
                )
            })?;
        let account = ServiceAccount::from_json(&text)
            .map_err(|e| Error::Config(format!("store.credentials_file: {e}")))?;
        if !super::is_loopback(&config.endpoint) && config.endpoint.scheme() != "https" {
            return Err(Error::Config(
                "store.endpoint: GCS keys are HTTPS only outside loopback".to_owned(),
            ));
        }
        let http = http::client(Duration::from_secs(300))?;
        Ok(Self {
            origin: config.endpoint.origin().ascii_serialization(),
            endpoint: config.endpoint.clone(),
            bucket: config.bucket.clone(),
            parts_prefix: config.gcs.parts_prefix.trim_matches('/').to_owned(),
            account,
            api_auth: config.gcs.api_auth,
            token: Mutex::new(None),
            http,
        })
    }

    /// `scheme://host[:port]` every key URL starts with.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn part_name(&self, tag: &str, number: u32) -> String {
        format!("{}/{tag}/{number:05}", self.parts_prefix)
    }

    fn marker_name(&self, tag: &str) -> String {
        format!("{}/{tag}/upload", self.parts_prefix)
    }

    fn api(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.as_str().trim_end_matches('/'))
    }

    /// An OAuth access token for the service account, cached until 5 minutes before expiry.
    async fn bearer(&self) -> Result<Option<String>, Error> {
        const OP: &str = "OAuthToken";
        if self.api_auth == GcsApiAuth::None {
            return Ok(None);
        }
        if let Some((token, until)) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
            && Instant::now() < until
        {
            return Ok(Some(token));
        }
        let unavailable = |message: String| Error::StoreUnavailable {
            operation: OP,
            message,
        };
        let assertion = self
            .account
            .token_assertion(SCOPE, OffsetDateTime::now_utc())
            .map_err(unavailable)?;
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let response = self
            .http
            .post(&self.account.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "token endpoint answered HTTP {}",
                response.status()
            )));
        }
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        let token: Token = response
            .json()
            .await
            .map_err(|e| unavailable(format!("unreadable token answer: {}", e.without_url())))?;
        let until = Instant::now() + Duration::from_secs(token.expires_in.saturating_sub(300));
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((token.access_token.clone(), until));
        Ok(Some(token.access_token))
    }

    /// Sends one of the service's own calls with `body` (its content type and bytes), as
    /// the service account; a non-2xx answer becomes [`Error::StoreRejected`].
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: String,
        body: Option<(&str, Bytes)>,
    ) -> Result<reqwest::Response, Error> {
        let mut request = self.http.request(method, url);
        if let Some(token) = self.bearer().await? {
            request = request.bearer_auth(token);
        }
        request = match body {
            Some((content_type, body)) => {
                http::with(request, &[("content-type", content_type)], Some(body))
            }
            None => request.header("content-length", "0"),
        };
        let response = http::send(operation, request).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = http::text(operation, response).await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Err(Error::StoreRejected {
            operation,
            status: status.as_u16(),
            code: http::status_code(status),
            message,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        operation: &'static str,
        response: reqwest::Response,
    ) -> Result<T, Error> {
        let text = http::text(operation, response).await?;
        serde_json::from_str(&text).map_err(|e| unreadable(operation, e))
    }

    /// Creates the bucket unless it exists (tests, `dev`).
    pub async fn ensure_bucket(&self) -> Result<(), Error> {
        let url = self.api("/storage/v1/b?project=valet");
        match self
            .call(
                "CreateBucket",
                Method::POST,
                url,
                json_body(&json!({ "name": self.bucket })),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::StoreRejected { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Opens an upload: writes its marker object (which names the destination). The tag.
    pub async fn create(&self, key: &str) -> Result<String, Error> {
        let tag = crate::auth::random_text(16);
        let url = format!(
            "{}?uploadType=media&name={}",
            self.api(&format!("/upload/storage/v1/b/{}/o", self.bucket)),
            segment(&self.marker_name(&tag))
        );
        let body = Bytes::from(key.to_owned());
        self.call(
            "InsertObject",
            Method::POST,
            url,
            Some(("text/plain", body)),
        )
        .await?;
        Ok(tag)
    }

    /// A key: a V4 signed `PUT` of part N's object, `Content-MD5` signed in.
    pub async fn presign_part(
        &self,
        tag: &str,
        part: &PartDigest,
        ttl: Duration,
    ) -> Result<(Url, Vec<(String, String)>), Error> {
        let md5 = part.md5.clone().unwrap_or_default();
        let name = self.part_name(tag, part.number);
        let url = gcs_sign::signed_url(
            &self.account,
            &SignRequest {
                method: "PUT",
                endpoint: &self.endpoint,
                bucket: &self.bucket,
                object: Some(&name),
                headers: &[("content-md5", &md5)],
                query: &[],
                now: OffsetDateTime::now_utc(),
                expires_secs: ttl.as_secs(),
            },
        )
        .map_err(|message| Error::StoreUnavailable {
            operation: "SignUrl",
            message,
        })?;
        Ok((url, vec![("content-md5".to_owned(), md5)]))
    }

    async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectJson>, Error> {
        const OP: &str = "ListObjects";
        let mut objects = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..=20 {
            let mut url = format!(
                "{}?prefix={}&maxResults=1000",
                self.api(&format!("/storage/v1/b/{}/o", self.bucket)),
                segment(prefix)
            );
            if let Some(token) = &page {
                url.push_str(&format!("&pageToken={}", segment(token)));
            }
            let response = self.call(OP, Method::GET, url, None).await?;
            let list: ListJson = Self::json(OP, response).await?;
            objects.extend(list.items);
            match list.next_page_token {
                Some(next) if !next.is_empty() => page = Some(next),
                _ => break,
            }
        }
        Ok(objects)
    }

    /// The part objects of the upload. Without its marker the upload is gone (composed, or
    /// aborted): `NoSuchUpload`, as S3 would say.
    pub async fn list_parts(&self, tag: &str) -> Result<Vec<ListedPart>, Error> {
        let prefix = format!("{}/{tag}/", self.parts_prefix);
        let objects = self.list_prefix(&prefix).await?;
        if !objects.iter().any(|o| o.name == self.marker_name(tag)) {
            return Err(Error::StoreRejected {
                operation: "ListObjects",
                status: 404,
                code: "NoSuchUpload".to_owned(),
                message: "the upload's marker object is gone".to_owned(),
            });
        }
        let mut parts: Vec<ListedPart> = objects
            .into_iter()
            .filter_map(|o| {
                let number = o.name.strip_prefix(&prefix)?;
                let number: u32 = (number.len() == 5).then(|| number.parse().ok())??;
                Some(ListedPart {
                    number,
                    size: o.size,
                    etag: o.md5_hash,
                    checksum_sha256: None,
                    crc32c: o.crc32c.as_deref().and_then(decode_crc32c),
                })
            })
            .collect();
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    async fn compose_one(
        &self,
        sources: &[String],
        destination: &str,
        resource: serde_json::Value,
    ) -> Result<ObjectJson, Error> {
        const OP: &str = "ComposeObject";
        let url = self.api(&format!(
            "/storage/v1/b/{}/o/{}/compose",
            self.bucket,
            segment(destination)
        ));
        let sources: Vec<serde_json::Value> =
            sources.iter().map(|name| json!({ "name": name })).collect();
        let body = json!({ "sourceObjects": sources, "destination": resource });
        let response = self.call(OP, Method::POST, url, json_body(&body)).await?;
        Self::json(OP, response).await
    }

    /// Composes the parts into `key` (in rounds of 32), sets its content type and `sha256`
    /// metadata, then deletes the marker and the temporary objects.
    pub async fn compose(
        &self,
        key: &str,
        tag: &str,
        parts: &[PartToComplete],
        finish: Finish<'_>,
    ) -> Result<Completed, Error> {
        let mut sources: Vec<String> = parts
            .iter()
            .map(|p| self.part_name(tag, p.number))
            .collect();
        let mut round = 0;
        while sources.len() > COMPOSE_FAN_IN {
            round += 1;
            let mut next = Vec::new();
            for (i, group) in sources.chunks(COMPOSE_FAN_IN).enumerate() {
                let name = format!("{}/{tag}/r{round}-{i:05}", self.parts_prefix);
                self.compose_one(group, &name, json!({})).await?;
                next.push(name);
            }
            sources = next;
        }
        let resource = json!({
            "contentType": finish.content_type,
            "metadata": { "sha256": finish.sha256_hex },
        });
        let object = self.compose_one(&sources, key, resource).await?;
        if let Err(e) = self.delete_parts(tag).await {
            tracing::warn!(error = %e, "could not delete the temporary part objects");
        }
        Ok(Completed {
            etag: object.generation,
            checksum_sha256: object.crc32c,
        })
    }

    /// The composed object's CRC32C must be the parts' CRC32Cs (as the store listed them)
    /// combined in order. When they are no longer known (a completion whose answer was lost
    /// already deleted the parts), the object is read back and its SHA-256 compared instead.
    pub async fn check_composed(
        &self,
        key: &str,
        parts: &[PartToComplete],
        reported: Option<String>,
        file_sha256: &str,
    ) -> Result<Option<String>, CheckFailed> {
        let crcs: Option<Vec<(u32, u64)>> = parts
            .iter()
            .map(|p| p.crc32c.map(|c| (c, p.size)))
            .collect();
        let Some(crcs) = crcs else {
            let (digest, _) = self
                .read_back_sha256(key)
                .await
                .map_err(CheckFailed::Unreachable)?;
            return if hex::encode(digest) == file_sha256 {
                Ok(reported)
            } else {
                Err(CheckFailed::Mismatch(
                    "the object's SHA-256 differs from the file's".into(),
                ))
            };
        };
        let combined = crcs
            .iter()
            .fold(None, |acc: Option<u32>, &(crc, len)| {
                Some(match acc {
                    None => crc,
                    Some(acc) => {
                        crc32c::crc32c_combine(acc, crc, usize::try_from(len).unwrap_or(usize::MAX))
                    }
                })
            })
            .unwrap_or(0);
        match reported {
            Some(r) if decode_crc32c(&r) == Some(combined) => Ok(Some(r)),
            Some(_) => Err(CheckFailed::Mismatch(
                "the object's CRC32C is not its parts' CRC32Cs combined".into(),
            )),
            None => Err(CheckFailed::Mismatch("the store reported no CRC32C".into())),
        }
    }

    /// Size, generation and CRC32C of the object.
    pub async fn head(&self, key: &str) -> Result<ObjectHead, Error> {
        const OP: &str = "GetObject";
        let url = self.api(&format!("/storage/v1/b/{}/o/{}", self.bucket, segment(key)));
        let response = self.call(OP, Method::GET, url, None).await?;
        let object: ObjectJson = Self::json(OP, response).await?;
        Ok(ObjectHead {
            size: object.size,
            etag: object.generation,
            checksum_sha256: object.crc32c,
        })
    }

    /// Reads the object and returns its SHA-256 and length, streaming.
    pub async fn read_back_sha256(&self, key: &str) -> Result<([u8; 32], u64), Error> {
        const OP: &str = "GetObjectMedia";
        let url = self.api(&format!(
            "/storage/v1/b/{}/o/{}?alt=media",
            self.bucket,
            segment(key)
        ));
        let response = self.call(OP, Method::GET, url, None).await?;
        http::sha256_of(OP, response).await
    }

    /// Deletes the object.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        let url = self.api(&format!("/storage/v1/b/{}/o/{}", self.bucket, segment(key)));
        match self.call("DeleteObject", Method::DELETE, url, None).await {
            Ok(_) | Err(Error::StoreRejected { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the upload's marker first (so it counts as gone even if a later delete fails),
    /// then every temporary object under its tag.
    pub async fn delete_parts(&self, tag: &str) -> Result<(), Error> {
        self.delete(&self.marker_name(tag)).await?;
        for object in self
            .list_prefix(&format!("{}/{tag}/", self.parts_prefix))
            .await?
        {
            self.delete(&object.name).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_of_parts_combines_into_the_whole() {
        let (a, b) = (b"hello, ".as_slice(), b"world".as_slice());
        let whole = crc32c::crc32c(b"hello, world");
        let combined = crc32c::crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len());
        assert_eq!(combined, whole);
        assert_eq!(decode_crc32c(&crc32c_b64(whole)), Some(whole));
        // GCS's documented example: CRC32C of "hello world" is yZRlqg== (Cloud Storage docs,
        // "Hashes and ETags").
        assert_eq!(crc32c_b64(crc32c::crc32c(b"hello world")), "yZRlqg==");
    }

    #[test]
    fn object_resources_parse_with_sizes_as_strings_or_numbers() {
        let a: ObjectJson = serde_json::from_str(
            r#"{"name":"x","size":"17","md5Hash":"m","crc32c":"iRQAQg==","generation":"12"}"#,
        )
        .unwrap();
        let b: ObjectJson =
            serde_json::from_str(r#"{"name":"x","size":17,"generation":12}"#).unwrap();
        assert_eq!((a.size, b.size), (17, 17));
        assert_eq!(b.generation.as_deref(), Some("12"));
    }
}
