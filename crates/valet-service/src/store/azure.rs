//! The Azure Blob side: part keys (a SAS for the upload's staging blob, create and write only),
//! and the service's own calls: list the uncommitted blocks, commit the block list, look at the
//! blob, copy the verified staging blob to the object's name (`azure_publish.rs`).
//!
//! An upload is the uncommitted blocks of its staging blob, [`staging_name`], whose ids carry
//! the upload's random tag (`store_upload_id`); part N is the block `base64("{tag}-{N:05}")`, so
//! every id of the blob has the same length, as Azure requires. Azure has no permission for
//! "Put Block only": a part key can also Put Blob or Put Block List its blob. So it never names
//! the object: whatever its holder writes lands on the staging blob, which the service
//! verifies and only then copies to the object's name. The client sends each block with `Content-MD5`,
//! which the store checks (Azurite too); the SAS cannot bind it, so the service also checks at
//! completion that the blob's committed blocks are exactly the upload's ids, in order, with the
//! layout's sizes. Azure API reference: Put Block, Get Block List, Put Block List, Get Blob
//! Properties; "Create a service SAS"; "Create a user delegation SAS".

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;
use valet_protocol::{PartChecksum, PartDigest};

use super::azure_entra::Entra;
use super::azure_sas::{self, BlobSas, SAS_VERSION, SasKey};
use super::http::{self, header, unreadable};
use super::{
    CheckFailed, Completed, Finish, ListedPart, ObjectHead, PartToComplete, bare_etag, is_loopback,
};
use crate::Error;
use crate::config::{AzureAuth, StoreConfig};

/// Life of the SAS of the service's own calls: they are used at once.
const CALL_TTL: Duration = Duration::from_secs(120);

/// How the service signs.
enum Signer {
    /// The account key.
    SharedKey(Vec<u8>),
    /// Entra ID: an access token for the service's own calls and a delegation key for SAS.
    Entra(Box<Entra>),
}

/// An Azure Blob container the service writes to.
pub struct AzureStore {
    /// `scheme://host[:port][/account]`, no trailing slash.
    endpoint: String,
    account: String,
    container: String,
    origin: String,
    https_only: bool,
    crc64: bool,
    clock_skew: Duration,
    signer: Signer,
    http: reqwest::Client,
}

impl std::fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStore")
            .field("endpoint", &self.endpoint)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

/// `<BlockList>` of Get Block List.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BlockListXml {
    #[serde(rename = "CommittedBlocks", default)]
    pub(crate) committed: BlocksXml,
    #[serde(rename = "UncommittedBlocks", default)]
    pub(crate) uncommitted: BlocksXml,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct BlocksXml {
    #[serde(rename = "Block", default)]
    pub(crate) blocks: Vec<BlockXml>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BlockXml {
    #[serde(rename = "Name")]
    pub(crate) name: String,
    #[serde(rename = "Size")]
    size: u64,
}

/// `<Error>` of a failed call.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorXml {
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

/// The block id of part `number` of the upload tagged `tag`.
pub fn block_id(tag: &str, number: u32) -> String {
    STANDARD.encode(format!("{tag}-{number:05}"))
}

/// The part number a block id names, when it is one of the upload tagged `tag`: only the exact
/// id [`block_id`] gives that part (five digits; `+0001` is not part 1), so that no block a
/// client named itself can stand in for a part.
pub(crate) fn part_of(tag: &str, id: &str) -> Option<u32> {
    let raw = STANDARD.decode(id).ok()?;
    let raw = std::str::from_utf8(&raw).ok()?;
    let number = raw.strip_prefix(tag)?.strip_prefix('-')?;
    let digits = number.len() == 5 && number.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| number.parse().ok())?
}

/// Where the blocks of the upload tagged `tag` are staged: outside every user's prefix (object
/// names are `{prefix}/{user}/…`), so no reader of a user's objects sees it, named by the tag
/// alone, so every call finds it from the upload's record, and short whatever the object's name.
pub fn staging_name(tag: &str) -> String {
    format!(".valet-staging/{tag}")
}

/// Percent-encodes a blob name for a URL path (slashes kept).
fn encode_path(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace("%2F", "/")
        .replace('+', "%20")
}

impl AzureStore {
    /// A container for `config`, with credentials from `credentials_file` or the environment.
    /// Does not contact the store.
    pub fn new(config: &StoreConfig) -> Result<Self, Error> {
        let endpoint = config.endpoint.as_str().trim_end_matches('/').to_owned();
        let loopback = is_loopback(&config.endpoint);
        if !loopback && config.endpoint.scheme() != "https" {
            return Err(Error::Config(
                "store.endpoint: Azure keys are HTTPS only outside loopback".to_owned(),
            ));
        }
        let account = match &config.azure.account {
            Some(account) => account.clone(),
            None if loopback => config
                .endpoint
                .path_segments()
                .and_then(|mut s| s.next())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| Error::Config("store.azure.account: not set, and the loopback endpoint names no account (http://127.0.0.1:PORT/ACCOUNT)".to_owned()))?,
            None => config
                .endpoint
                .host_str()
                .and_then(|h| h.split('.').next())
                .map(str::to_owned)
                .ok_or_else(|| Error::Config("store.azure.account: not set".to_owned()))?,
        };
        let signer = match config.azure.auth {
            AzureAuth::SharedKey => {
                let key = config.credential_field("account_key", "AZURE_STORAGE_KEY")?;
                Signer::SharedKey(STANDARD.decode(key.trim()).map_err(|_| {
                    Error::Config("store.credentials_file: account_key is not base64".to_owned())
                })?)
            }
            AzureAuth::Entra => Signer::Entra(Box::new(Entra::new(
                &config.azure,
                config.credential_field("client_secret", "AZURE_CLIENT_SECRET")?,
            )?)),
        };
        let http = http::client(Duration::from_secs(120))?;
        Ok(Self {
            origin: config.endpoint.origin().ascii_serialization(),
            endpoint,
            account,
            container: config.bucket.clone(),
            https_only: !loopback,
            crc64: config.azure.crc64,
            clock_skew: config.azure.clock_skew,
            signer,
            http,
        })
    }

    /// `scheme://host[:port]` every key URL starts with.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// MD5 always (the store checks `Content-MD5`), CRC-64 when configured.
    pub fn part_checksums(&self) -> Vec<PartChecksum> {
        let mut kinds = vec![PartChecksum::Md5];
        if self.crc64 {
            kinds.push(PartChecksum::Crc64);
        }
        kinds
    }

    fn blob_url(&self, blob: &str) -> String {
        format!("{}/{}/{}", self.endpoint, self.container, encode_path(blob))
    }

    async fn sas_key(&self) -> Result<SasKey, Error> {
        match &self.signer {
            Signer::SharedKey(key) => Ok(SasKey::Account(key.clone())),
            Signer::Entra(entra) => entra
                .delegation_key(&self.http, &self.endpoint)
                .await
                .map(SasKey::Delegation),
        }
    }

    /// A SAS URL for `blob` with `permissions`, living `ttl` (started `clock_skew` ago).
    pub(super) async fn sas_url(
        &self,
        blob: &str,
        permissions: &str,
        ttl: Duration,
        extra: &[(&str, &str)],
    ) -> Result<Url, Error> {
        let now = OffsetDateTime::now_utc();
        let query = azure_sas::blob_sas(
            &BlobSas {
                account: &self.account,
                container: &self.container,
                blob,
                permissions,
                start: now - self.clock_skew,
                expiry: now + ttl,
                https_only: self.https_only,
            },
            &self.sas_key().await?,
        );
        let mut url = Url::parse(&self.blob_url(blob))
            .map_err(|e| Error::Config(format!("store.endpoint: {e}")))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in extra {
                pairs.append_pair(name, value);
            }
            for (name, value) in &query {
                pairs.append_pair(name, value);
            }
        }
        Ok(url)
    }

    /// A key: a SAS for the upload's staging blob, create and write only, naming part N's
    /// block id. The client sends the block with `Content-MD5` (and `x-ms-content-crc64` when
    /// configured), which the store checks.
    pub async fn presign_part(
        &self,
        tag: &str,
        part: &PartDigest,
        ttl: Duration,
    ) -> Result<(Url, Vec<(String, String)>), Error> {
        let id = block_id(tag, part.number);
        let url = self
            .sas_url(
                &staging_name(tag),
                "cw",
                ttl,
                &[("comp", "block"), ("blockid", &id)],
            )
            .await?;
        let mut headers = vec![(
            "content-md5".to_owned(),
            part.md5.clone().unwrap_or_default(),
        )];
        if self.crc64 {
            headers.push((
                "x-ms-content-crc64".to_owned(),
                part.crc64.clone().unwrap_or_default(),
            ));
        }
        Ok((url, headers))
    }

    /// Sends one of the service's own calls, authorized by a short SAS (shared key) or a
    /// bearer token (Entra ID).
    pub(super) async fn call(
        &self,
        operation: &'static str,
        method: Method,
        blob: &str,
        extra: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, Error> {
        let (url, bearer) = match &self.signer {
            Signer::SharedKey(_) => (self.sas_url(blob, "rcwd", CALL_TTL, extra).await?, None),
            Signer::Entra(entra) => {
                let mut url = Url::parse(&self.blob_url(blob))
                    .map_err(|e| Error::Config(format!("store.endpoint: {e}")))?;
                url.query_pairs_mut().extend_pairs(extra);
                (url, Some(entra.access_token(&self.http).await?))
            }
        };
        self.send(operation, method, url, bearer, headers, body)
            .await
    }

    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        bearer: Option<String>,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, Error> {
        let mut request = self
            .http
            .request(method, url)
            .header("x-ms-version", SAS_VERSION);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = http::send(operation, http::with(request, headers, body)).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let header_code = header(&response, "x-ms-error-code");
        let text = http::text(operation, response).await.unwrap_or_default();
        let body: ErrorXml = quick_xml::de::from_str(&text).unwrap_or_default();
        let code = header_code
            .or_else(|| (!body.code.is_empty()).then(|| body.code.clone()))
            .unwrap_or_else(|| http::status_code(status));
        Err(Error::StoreRejected {
            operation,
            status: status.as_u16(),
            code,
            message: body.message.lines().next().unwrap_or_default().to_owned(),
        })
    }

    /// Creates the container unless it exists (tests, `dev`).
    pub async fn ensure_container(&self) -> Result<(), Error> {
        const OP: &str = "CreateContainer";
        let base = format!("{}/{}", self.endpoint, self.container);
        let mut url =
            Url::parse(&base).map_err(|e| Error::Config(format!("store.endpoint: {e}")))?;
        url.query_pairs_mut().append_pair("restype", "container");
        let bearer = match &self.signer {
            Signer::SharedKey(key) => {
                let now = OffsetDateTime::now_utc();
                let sas = azure_sas::container_account_sas(
                    &self.account,
                    key,
                    "c",
                    now - self.clock_skew,
                    now + CALL_TTL,
                    self.https_only,
                );
                url.query_pairs_mut()
                    .extend_pairs(sas.iter().map(|(n, v)| (*n, v.as_str())));
                None
            }
            Signer::Entra(entra) => Some(entra.access_token(&self.http).await?),
        };
        match self.send(OP, Method::PUT, url, bearer, &[], None).await {
            Ok(_) => Ok(()),
            Err(Error::StoreRejected { code, .. }) if code == "ContainerAlreadyExists" => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn block_list(&self, key: &str) -> Result<BlockListXml, Error> {
        const OP: &str = "GetBlockList";
        let response = match self
            .call(
                OP,
                Method::GET,
                key,
                &[("comp", "blocklist"), ("blocklisttype", "all")],
                &[],
                None,
            )
            .await
        {
            Ok(response) => response,
            // No blob and no uncommitted block yet.
            Err(Error::StoreRejected { status: 404, .. }) => return Ok(BlockListXml::default()),
            Err(e) => return Err(e),
        };
        let text = http::text(OP, response).await?;
        quick_xml::de::from_str(&text).map_err(|e| unreadable(OP, e))
    }

    /// The upload's blocks on its staging blob, as parts: the uncommitted ones, and the
    /// committed ones of a staging blob committed but not yet copied (a completion cut short).
    /// When there is none and the object's committed blocks are this upload's, it was
    /// completed already: `NoSuchUpload`, as S3 would say.
    pub async fn list_parts(&self, key: &str, tag: &str) -> Result<Vec<ListedPart>, Error> {
        let list = self.block_list(&staging_name(tag)).await?;
        let mut parts: Vec<ListedPart> = list
            .uncommitted
            .blocks
            .iter()
            .chain(&list.committed.blocks)
            .filter_map(|b| {
                Some(ListedPart {
                    number: part_of(tag, &b.name)?,
                    size: b.size,
                    etag: Some(b.name.clone()),
                    checksum_sha256: None,
                    crc32c: None,
                })
            })
            .collect();
        if parts.is_empty()
            && self
                .block_list(key)
                .await?
                .committed
                .blocks
                .iter()
                .any(|b| part_of(tag, &b.name).is_some())
        {
            return Err(Error::StoreRejected {
                operation: "GetBlockList",
                status: 404,
                code: "NoSuchUpload".to_owned(),
                message: "the upload's blocks are committed".to_owned(),
            });
        }
        // Stable: an uncommitted block, newer than a committed one of the same id, stays first.
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    /// `Put Block List` on the staging blob of the parts' blocks, in order (`Latest`: the
    /// uncommitted block, or the committed one of a completion cut short), with the content
    /// type and the file's SHA-256 as metadata (`x-ms-meta-sha256`), set in the same call; the
    /// copy to the object's name carries both.
    pub async fn commit(
        &self,
        tag: &str,
        parts: &[PartToComplete],
        finish: Finish<'_>,
    ) -> Result<Completed, Error> {
        let mut body = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for part in parts {
            body.push_str(&format!("<Latest>{}</Latest>", block_id(tag, part.number)));
        }
        body.push_str("</BlockList>");
        let response = self
            .call(
                "PutBlockList",
                Method::PUT,
                &staging_name(tag),
                &[("comp", "blocklist")],
                &[
                    ("content-type", "application/xml"),
                    ("x-ms-blob-content-type", finish.content_type),
                    ("x-ms-meta-sha256", finish.sha256_hex),
                ],
                Some(body.into()),
            )
            .await?;
        Ok(Completed {
            etag: header(&response, "etag").as_deref().map(bare_etag),
            checksum_sha256: None,
        })
    }

    /// The committed blocks of `key` (the staging blob, or an object copied from one, which
    /// keeps its block ids) must be exactly the parts' block ids, in order, with their sizes.
    pub async fn check_committed(
        &self,
        key: &str,
        parts: &[PartToComplete],
    ) -> Result<(), CheckFailed> {
        let list = self
            .block_list(key)
            .await
            .map_err(CheckFailed::Unreachable)?;
        let committed: Vec<(&str, u64)> = list
            .committed
            .blocks
            .iter()
            .map(|b| (b.name.as_str(), b.size))
            .collect();
        let expected: Vec<(&str, u64)> = parts.iter().map(|p| (p.etag.as_str(), p.size)).collect();
        if committed == expected {
            Ok(())
        } else {
            Err(CheckFailed::Mismatch(format!(
                "the blob's committed blocks ({}) are not the upload's {} parts",
                committed.len(),
                expected.len()
            )))
        }
    }

    /// Get Blob Properties.
    pub async fn head(&self, key: &str) -> Result<ObjectHead, Error> {
        const OP: &str = "GetBlobProperties";
        let response = self.call(OP, Method::HEAD, key, &[], &[], None).await?;
        let size = header(&response, "content-length")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::StoreUnavailable {
                operation: OP,
                message: "answer without Content-Length".to_owned(),
            })?;
        Ok(ObjectHead {
            size,
            etag: header(&response, "etag").as_deref().map(bare_etag),
            checksum_sha256: None,
        })
    }

    /// Reads the blob and returns its SHA-256 and length, streaming.
    pub async fn read_back_sha256(&self, key: &str) -> Result<([u8; 32], u64), Error> {
        const OP: &str = "GetBlob";
        let response = self.call(OP, Method::GET, key, &[], &[], None).await?;
        http::sha256_of(OP, response).await
    }

    /// Deletes the blob.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.call("DeleteBlob", Method::DELETE, key, &[], &[], None)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_one_length_and_name_their_part() {
        let tag = "abcdefgh12345678";
        let ids: Vec<String> = [1, 42, 10_000].iter().map(|&n| block_id(tag, n)).collect();
        assert!(ids.iter().all(|id| id.len() == ids[0].len()), "{ids:?}");
        assert_eq!(part_of(tag, &ids[1]), Some(42));
        assert_eq!(
            part_of("another-upload00", &ids[1]),
            None,
            "other uploads' blocks are not ours"
        );
        assert_eq!(part_of(tag, "not base64!"), None);
        // Same length as part 1's id, and u32's parser takes a sign: still not part 1.
        let signed = STANDARD.encode(format!("{tag}-+0001"));
        assert_eq!(signed.len(), block_id(tag, 1).len());
        assert_eq!(part_of(tag, &signed), None);
    }

    #[test]
    fn block_lists_are_read() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><BlockList><CommittedBlocks><Block><Name>YQ==</Name><Size>5</Size></Block></CommittedBlocks><UncommittedBlocks><Block><Name>Yg==</Name><Size>7</Size></Block><Block><Name>Yw==</Name><Size>1</Size></Block></UncommittedBlocks></BlockList>"#;
        let list: BlockListXml = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(list.committed.blocks.len(), 1);
        assert_eq!(list.uncommitted.blocks[1].size, 1);
        let empty: BlockListXml = quick_xml::de::from_str(
            "<BlockList><CommittedBlocks/><UncommittedBlocks/></BlockList>",
        )
        .unwrap();
        assert!(empty.committed.blocks.is_empty());
    }

    #[test]
    fn blob_names_are_encoded_with_their_slashes() {
        assert_eq!(encode_path("users/a b/c+d.bin"), "users/a%20b/c%2Bd.bin");
    }
}
