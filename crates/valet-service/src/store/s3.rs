//! The S3 side: the service's own calls to the store, and the part keys it hands out.
//!
//! Every call is a SigV4 pre-signed URL from `rusty-s3` sent with reqwest; answers are read
//! with quick-xml (see `xml.rs`). Errors never carry the URL: its query holds the signature
//! (`reqwest::Error::without_url`, and messages built from the store's error code only).

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use url::Url;

use super::http::{self, header, unreadable};
use super::xml::{self, S3ErrorBody};
use super::{Completed, ListedPart, ObjectHead, PartToComplete, bare_etag};
use crate::Error;
use crate::config::{StoreConfig, StoreCredentials};

/// Life of the URLs of the service's own calls: they are used at once.
const CALL_TTL: Duration = Duration::from_secs(60);

/// An S3 bucket the service writes to.
#[derive(Debug, Clone)]
pub struct S3Store {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
    origin: String,
}

/// The header a part key signs; the client must send it with exactly this value.
pub const CHECKSUM_HEADER: &str = "x-amz-checksum-sha256";

impl S3Store {
    /// A store for `config` with these credentials. Does not contact it.
    pub fn new(config: &StoreConfig, credentials: &StoreCredentials) -> Result<Self, Error> {
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            config.endpoint.clone(),
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| Error::Config(format!("store.endpoint / store.bucket: {e:?}")))?;
        let credentials = match &credentials.session_token {
            Some(token) => Credentials::new_with_token(
                &credentials.access_key_id,
                &credentials.secret_access_key,
                token,
            ),
            None => Credentials::new(&credentials.access_key_id, &credentials.secret_access_key),
        };
        let origin = bucket.base_url().origin().ascii_serialization();
        // S3 keeps a slow CompleteMultipartUpload alive with whitespace, so a read gap this
        // long means the store is gone.
        let http = http::client(Duration::from_secs(120))?;
        Ok(Self {
            bucket,
            credentials,
            http,
            origin,
        })
    }

    /// `scheme://host[:port]` every key URL starts with.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Sends one pre-signed request; a non-2xx answer becomes [`Error::StoreRejected`].
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, Error> {
        let request = http::with(self.http.request(method, url), headers, body);
        let response = http::send(operation, request).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = http::text(operation, response).await.unwrap_or_default();
        let body: S3ErrorBody = xml::parse(&text).unwrap_or_default();
        Err(Error::StoreRejected {
            operation,
            status: status.as_u16(),
            code: if body.code.is_empty() {
                http::status_code(status)
            } else {
                body.code
            },
            message: body.message,
        })
    }

    /// Creates the bucket unless it exists (for tests and `dev`).
    pub async fn ensure_bucket(&self) -> Result<(), Error> {
        let head = self
            .bucket
            .head_bucket(Some(&self.credentials))
            .sign(CALL_TTL);
        match self.send("HeadBucket", Method::HEAD, head, &[], None).await {
            Ok(_) => return Ok(()),
            Err(Error::StoreRejected { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let action = self.bucket.create_bucket(&self.credentials);
        let body = action.body();
        let url = action.sign(CALL_TTL);
        self.send("CreateBucket", Method::PUT, url, &[], Some(body.into()))
            .await
            .map(drop)
    }

    /// `CreateMultipartUpload` with SHA-256 part checksums; returns the store's upload id.
    pub async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, Error> {
        const OP: &str = "CreateMultipartUpload";
        let mut action = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key);
        action.headers_mut().insert("content-type", content_type);
        action
            .headers_mut()
            .insert("x-amz-checksum-algorithm", "SHA256");
        let url = action.sign(CALL_TTL);
        let headers = [
            ("content-type", content_type),
            ("x-amz-checksum-algorithm", "SHA256"),
        ];
        let response = self.send(OP, Method::POST, url, &headers, None).await?;
        let text = http::text(OP, response).await?;
        let parsed: xml::InitiateMultipartUploadResult =
            xml::parse(&text).map_err(|why| unreadable(OP, why))?;
        Ok(parsed.upload_id)
    }

    /// A key: a pre-signed `UploadPart` URL whose signature covers `x-amz-checksum-sha256`, so
    /// the store accepts only the bytes with that digest (and only with that header).
    pub fn presign_part(
        &self,
        key: &str,
        store_upload_id: &str,
        part: u32,
        sha256_b64: &str,
        ttl: Duration,
    ) -> Url {
        // Part numbers are checked against the layout (at most 10,000) before we get here.
        let number = u16::try_from(part).unwrap_or(u16::MAX);
        let mut action =
            self.bucket
                .upload_part(Some(&self.credentials), key, number, store_upload_id);
        action
            .headers_mut()
            .insert("x-amz-checksum-sha256", sha256_b64.to_owned());
        action.sign(ttl)
    }

    /// Every part the store holds for the upload, in part order (all pages of `ListParts`).
    pub async fn list_parts(
        &self,
        key: &str,
        store_upload_id: &str,
    ) -> Result<Vec<ListedPart>, Error> {
        const OP: &str = "ListParts";
        let mut parts = Vec::new();
        let mut marker: u16 = 0;
        // 10,000 parts at 1,000 a page; the bound guards against a store that never ends.
        for _page in 0..=20 {
            let mut action = self
                .bucket
                .list_parts(Some(&self.credentials), key, store_upload_id);
            action.set_max_parts(1000);
            if marker > 0 {
                action.set_part_number_marker(marker);
            }
            let url = action.sign(CALL_TTL);
            let response = self.send(OP, Method::GET, url, &[], None).await?;
            let text = http::text(OP, response).await?;
            let page: xml::ListPartsResult =
                xml::parse(&text).map_err(|why| unreadable(OP, why))?;
            parts.extend(page.parts.into_iter().map(|p| ListedPart {
                number: p.part_number,
                size: p.size,
                etag: p.etag.as_deref().map(bare_etag),
                checksum_sha256: p.checksum_sha256,
                crc32c: None,
            }));
            let next = page
                .next_part_number_marker
                .and_then(|m| u16::try_from(m).ok());
            match next {
                Some(next) if page.is_truncated && next > marker => marker = next,
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    /// `CompleteMultipartUpload` naming each part's ETag and SHA-256. A 200 answer whose body is
    /// an `<Error>` (S3 decides late) is an error too.
    pub async fn complete(
        &self,
        key: &str,
        store_upload_id: &str,
        parts: &[PartToComplete],
    ) -> Result<Completed, Error> {
        const OP: &str = "CompleteMultipartUpload";
        let action = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            store_upload_id,
            std::iter::empty::<&str>(),
        );
        let url = action.sign(CALL_TTL);
        let body = complete_body(parts);
        let response = self
            .send(
                OP,
                Method::POST,
                url,
                &[("content-type", "application/xml")],
                Some(body.into()),
            )
            .await?;
        let text = http::text(OP, response).await?;
        if xml::root_name(&text) == Some("Error") {
            let e: S3ErrorBody = xml::parse(&text).unwrap_or_default();
            return Err(Error::StoreRejected {
                operation: OP,
                status: 200,
                code: e.code,
                message: e.message,
            });
        }
        let done: xml::CompleteMultipartUploadResult =
            xml::parse(&text).map_err(|why| unreadable(OP, why))?;
        Ok(Completed {
            etag: done.etag.as_deref().map(bare_etag),
            checksum_sha256: done.checksum_sha256,
        })
    }

    /// `AbortMultipartUpload`: the store drops the parts. An upload the store no longer knows
    /// counts as aborted.
    pub async fn abort(&self, key: &str, store_upload_id: &str) -> Result<(), Error> {
        let url = self
            .bucket
            .abort_multipart_upload(Some(&self.credentials), key, store_upload_id)
            .sign(CALL_TTL);
        match self
            .send("AbortMultipartUpload", Method::DELETE, url, &[], None)
            .await
        {
            Err(Error::StoreRejected { code, .. }) if code == "NoSuchUpload" => Ok(()),
            other => other.map(drop),
        }
    }

    /// `HeadObject` with `x-amz-checksum-mode: ENABLED`, so S3 reports the object's checksum.
    pub async fn head(&self, key: &str) -> Result<ObjectHead, Error> {
        const OP: &str = "HeadObject";
        let mut action = self.bucket.head_object(Some(&self.credentials), key);
        action
            .headers_mut()
            .insert("x-amz-checksum-mode", "ENABLED");
        let url = action.sign(CALL_TTL);
        let response = self
            .send(
                OP,
                Method::HEAD,
                url,
                &[("x-amz-checksum-mode", "ENABLED")],
                None,
            )
            .await?;
        let size = header(&response, "content-length")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::StoreUnavailable {
                operation: OP,
                message: "answer without Content-Length".to_owned(),
            })?;
        Ok(ObjectHead {
            size,
            etag: header(&response, "etag").as_deref().map(bare_etag),
            checksum_sha256: header(&response, "x-amz-checksum-sha256"),
        })
    }

    /// Reads the object and returns its SHA-256 and length, streaming (memory stays small).
    pub async fn read_back_sha256(&self, key: &str) -> Result<([u8; 32], u64), Error> {
        const OP: &str = "GetObject";
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(CALL_TTL);
        let response = self.send(OP, Method::GET, url, &[], None).await?;
        http::sha256_of(OP, response).await
    }

    /// Sets the object's tags to the one `key=value` (`PutObjectTagging`).
    pub async fn put_tag(&self, object: &str, key: &str, value: &str) -> Result<(), Error> {
        use base64::Engine as _;
        use md5::Digest as _;
        let body = format!(
            "<Tagging><TagSet><Tag><Key>{}</Key><Value>{}</Value></Tag></TagSet></Tagging>",
            quick_xml::escape::escape(key),
            quick_xml::escape::escape(value)
        );
        // S3 requires a body digest on PutObjectTagging.
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        let mut action = self.bucket.put_object(Some(&self.credentials), object);
        action.query_mut().insert("tagging", "");
        let url = action.sign(CALL_TTL);
        self.send(
            "PutObjectTagging",
            Method::PUT,
            url,
            &[("content-md5", &md5), ("content-type", "application/xml")],
            Some(body.into()),
        )
        .await
        .map(drop)
    }

    /// Deletes the object (a refused completion must leave nothing behind).
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(CALL_TTL);
        self.send("DeleteObject", Method::DELETE, url, &[], None)
            .await
            .map(drop)
    }
}

/// The `CompleteMultipartUpload` body, parts in order.
fn complete_body(parts: &[PartToComplete]) -> String {
    let mut body = String::from(
        r#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
    );
    for p in parts {
        body.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag><ChecksumSHA256>{}</ChecksumSHA256></Part>",
            p.number,
            quick_xml::escape::escape(p.etag.as_str()),
            quick_xml::escape::escape(p.sha256_b64.as_str()),
        ));
    }
    body.push_str("</CompleteMultipartUpload>");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> S3Store {
        let config = crate::config::Config::from_toml(
            "data_dir = \"/tmp\"\n[store]\nendpoint = \"http://127.0.0.1:8333\"\nbucket = \"valet-test\"\npath_style = true\n",
        )
        .unwrap();
        S3Store::new(
            &config.store,
            &StoreCredentials {
                access_key_id: "test".into(),
                secret_access_key: "testtest".into(),
                session_token: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn part_keys_sign_the_checksum_header() {
        let url =
            store().presign_part("users/a/f.bin", "up-1", 3, "AAAA", Duration::from_secs(120));
        let s = url.as_str();
        assert!(
            s.starts_with("http://127.0.0.1:8333/valet-test/users/a/f.bin?"),
            "{s}"
        );
        assert!(s.contains("partNumber=3"), "{s}");
        assert!(s.contains("uploadId=up-1"), "{s}");
        assert!(s.contains("X-Amz-Expires=120"), "{s}");
        assert!(
            s.contains("X-Amz-SignedHeaders=host%3Bx-amz-checksum-sha256"),
            "{s}"
        );
        assert_eq!(store().origin(), "http://127.0.0.1:8333");
    }

    #[test]
    fn complete_body_names_etag_and_checksum_of_each_part() {
        let body = complete_body(&[PartToComplete {
            number: 1,
            etag: "abc".into(),
            sha256_b64: "x+y/=".into(),
            size: 1,
            crc32c: None,
        }]);
        assert!(body.contains("<Part><PartNumber>1</PartNumber><ETag>\"abc\"</ETag><ChecksumSHA256>x+y/=</ChecksumSHA256></Part>"), "{body}");
    }

    #[test]
    fn etags_are_compared_without_quotes() {
        assert_eq!(bare_etag("\"abc-2\""), "abc-2");
        assert_eq!(bare_etag("abc"), "abc");
    }
}
