//! Object stores. One key issuer per store protocol, the same shape in each (`s3.rs`,
//! `azure.rs`, `gcs.rs`): create an upload, sign a key for one part, list the parts the store
//! holds, assemble them, look at the result. [`Store`] picks one per deployment; `dev.rs` is the
//! embedded S3 store of `valet-service dev`.
//!
//! | | S3 | Azure Blob | GCS |
//! |---|---|---|---|
//! | upload | multipart upload | uncommitted blocks of a staging blob | temporary part objects |
//! | key | presigned `UploadPart`, signs `x-amz-checksum-sha256` | SAS for the staging blob, `cw` | V4 signed `PUT` of the part object, signs `Content-MD5` |
//! | store checks per part | SHA-256 | `Content-MD5` (and `x-ms-content-crc64` when asked) | `Content-MD5` |
//! | assemble | `CompleteMultipartUpload` | `Put Block List` on the staging blob (sets `x-ms-meta-sha256`); once verified, `Copy Blob` to the object's name if its ETag is unchanged | `compose` (sets metadata `sha256`), then deletes the parts |
//! | verify | composite SHA-256 of the signed digests | committed block list: ids, order, sizes | part MD5s as signed; object CRC32C = CRC32C of the parts combined |

pub mod azure;
mod azure_entra;
mod azure_publish;
pub mod azure_sas;
pub mod dev;
pub mod gcs;
pub mod gcs_sign;
mod http;
pub mod s3;
pub(crate) mod xml;

use std::time::Duration;

use url::Url;
use valet_protocol::{PartChecksum, PartDigest, StoreKind};

pub use azure::AzureStore;
pub use gcs::GcsStore;
pub use s3::S3Store;

use crate::Error;
use crate::checksum;
use crate::config::{Config, StoreConfig, StoreKindConfig};

/// A part as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    /// Part number.
    pub number: u32,
    /// Bytes stored.
    pub size: u64,
    /// What identifies this upload of the part: S3's ETag without quotes, Azure's block id,
    /// GCS's MD5 (base64); compared with the client's receipt.
    pub etag: Option<String>,
    /// The part's SHA-256 (base64), where listed (AWS does; SeaweedFS and s3s-fs do not).
    pub checksum_sha256: Option<String>,
    /// The part's CRC32C as the store computed it (GCS).
    pub crc32c: Option<u32>,
}

/// A part to assemble.
#[derive(Debug, Clone)]
pub struct PartToComplete {
    /// Part number.
    pub number: u32,
    /// Its ETag (S3, without quotes) or block id (Azure) or MD5 (GCS).
    pub etag: String,
    /// Its SHA-256, base64 (required by S3 when the upload was created with SHA256).
    pub sha256_b64: String,
    /// Bytes in it.
    pub size: u64,
    /// Its CRC32C as the store listed it (GCS), to check the assembled object.
    pub crc32c: Option<u32>,
}

/// What assembling answered.
#[derive(Debug, Clone)]
pub struct Completed {
    /// The object's ETag (without quotes) or generation (GCS).
    pub etag: Option<String>,
    /// The store's checksum of the object, where reported: S3's composite SHA-256 `…-N`,
    /// GCS's CRC32C (base64).
    pub checksum_sha256: Option<String>,
}

/// What the store says of an object.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    /// Bytes in the object.
    pub size: u64,
    /// ETag (without quotes), or generation (GCS).
    pub etag: Option<String>,
    /// The object's checksum where the store reports it: S3's SHA-256 (composite `…-N` for
    /// multipart), GCS's CRC32C (base64).
    pub checksum_sha256: Option<String>,
}

/// What the object gets when it is assembled.
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    /// Its content type.
    pub content_type: &'a str,
    /// The whole file's SHA-256, hex: kept as object metadata where the store sets it at
    /// assembly (Azure, GCS).
    pub sha256_hex: &'a str,
}

/// Why the assembled object is not accepted.
#[derive(Debug)]
pub enum CheckFailed {
    /// It is not what the parts say.
    Mismatch(String),
    /// The store could not be asked.
    Unreachable(Error),
}

/// ETags travel quoted (`"abc"`); compare and store them bare.
pub fn bare_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_owned()
}

/// A store with the settings it was made from.
#[derive(Debug)]
pub struct ConfiguredStore {
    /// Its `[store]` or `[stores.NAME]` table.
    pub config: StoreConfig,
    /// The store.
    pub store: Store,
}

/// The deployment's stores: `[store]`, the named `[stores.NAME]`, and which users' uploads go
/// to which (`[routing]`). An upload keeps the store it was created on.
#[derive(Debug)]
pub struct Stores {
    default: ConfiguredStore,
    named: std::collections::BTreeMap<String, ConfiguredStore>,
    routing: std::collections::BTreeMap<String, String>,
}

impl Stores {
    /// `default` for `[store]`, and every `[stores.NAME]` of `config` made from its table.
    pub fn new(default: Store, config: &Config) -> Result<Self, Error> {
        let named = config
            .stores
            .iter()
            .map(|(name, table)| {
                let store = Store::from_store_config(table)?;
                Ok((
                    name.clone(),
                    ConfiguredStore {
                        config: table.clone(),
                        store,
                    },
                ))
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            default: ConfiguredStore {
                config: config.store.clone(),
                store: default,
            },
            named,
            routing: config.routing.users.clone(),
        })
    }

    /// The `[store]` store.
    pub fn default_store(&self) -> &ConfiguredStore {
        &self.default
    }

    /// Where `user`'s new uploads go: the store's name (`None` for `[store]`) and the store.
    pub fn for_user(&self, user: &str) -> (Option<&str>, &ConfiguredStore) {
        match self
            .routing
            .get(user)
            .and_then(|name| self.named.get_key_value(name))
        {
            Some((name, store)) => (Some(name.as_str()), store),
            None => (None, &self.default),
        }
    }

    /// The store named `name` (`None`: `[store]`), when the config still has it.
    pub fn named(&self, name: Option<&str>) -> Option<&ConfiguredStore> {
        match name {
            None => Some(&self.default),
            Some(name) => self.named.get(name),
        }
    }

    /// Every store, `[store]` first.
    pub fn all(&self) -> impl Iterator<Item = &ConfiguredStore> {
        std::iter::once(&self.default).chain(self.named.values())
    }
}

/// The store of a deployment.
#[derive(Debug)]
pub enum Store {
    /// S3 or S3-compatible. (Each store is boxed: they differ much in size.)
    S3(Box<S3Store>),
    /// Azure Blob Storage.
    Azure(Box<AzureStore>),
    /// Google Cloud Storage.
    Gcs(Box<GcsStore>),
}

impl Store {
    /// The store `config.store` describes, with its credentials (see docs/CONTRACTS.md).
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        Self::from_store_config(&config.store)
    }

    /// The store one `[store]` or `[stores.NAME]` table describes, with its credentials.
    pub fn from_store_config(config: &StoreConfig) -> Result<Self, Error> {
        Ok(match config.kind {
            StoreKindConfig::S3 => {
                Self::S3(Box::new(S3Store::new(config, &config.s3_credentials()?)?))
            }
            StoreKindConfig::Azure => Self::Azure(Box::new(AzureStore::new(config)?)),
            StoreKindConfig::Gcs => Self::Gcs(Box::new(GcsStore::new(config)?)),
        })
    }

    /// The protocol clients speak to it.
    pub fn kind(&self) -> StoreKind {
        match self {
            Self::S3(_) => StoreKind::S3,
            Self::Azure(_) => StoreKind::Azure,
            Self::Gcs(_) => StoreKind::Gcs,
        }
    }

    /// `scheme://host[:port]` every key URL starts with.
    pub fn origin(&self) -> &str {
        match self {
            Self::S3(s) => s.origin(),
            Self::Azure(s) => s.origin(),
            Self::Gcs(s) => s.origin(),
        }
    }

    /// Digests each key request must carry besides SHA-256.
    pub fn part_checksums(&self) -> Vec<PartChecksum> {
        match self {
            Self::S3(_) => Vec::new(),
            Self::Azure(s) => s.part_checksums(),
            Self::Gcs(_) => vec![PartChecksum::Md5],
        }
    }

    /// Why `part` cannot get a key from this store (a digest it needs is missing or malformed).
    pub fn refuse_digest(&self, part: &PartDigest) -> Option<String> {
        for kind in self.part_checksums() {
            let (name, value, len) = match kind {
                PartChecksum::Md5 => ("md5", &part.md5, 16),
                PartChecksum::Crc64 => ("crc64", &part.crc64, 8),
                _ => continue,
            };
            let ok = value
                .as_deref()
                .and_then(checksum::decode_base64)
                .is_some_and(|bytes| bytes.len() == len);
            if !ok {
                return Some(format!(
                    "part {}: this store needs {name}, standard base64 of {len} bytes",
                    part.number
                ));
            }
        }
        None
    }

    /// Creates the bucket or container unless it exists (tests, `dev`).
    pub async fn ensure_bucket(&self) -> Result<(), Error> {
        match self {
            Self::S3(s) => s.ensure_bucket().await,
            Self::Azure(s) => s.ensure_container().await,
            Self::Gcs(s) => s.ensure_bucket().await,
        }
    }

    /// Starts an upload of `key`; the store's id for it.
    pub async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, Error> {
        match self {
            Self::S3(s) => s.create_multipart(key, content_type).await,
            Self::Azure(_) => Ok(crate::auth::random_text(16)),
            Self::Gcs(s) => s.create(key).await,
        }
    }

    /// A key for one part: its URL and the headers the request must carry exactly.
    pub async fn presign_part(
        &self,
        key: &str,
        store_upload_id: &str,
        part: &PartDigest,
        ttl: Duration,
    ) -> Result<(Url, Vec<(String, String)>), Error> {
        match self {
            Self::S3(s) => Ok((
                s.presign_part(key, store_upload_id, part.number, &part.sha256, ttl),
                vec![(s3::CHECKSUM_HEADER.to_owned(), part.sha256.clone())],
            )),
            Self::Azure(s) => s.presign_part(store_upload_id, part, ttl).await,
            Self::Gcs(s) => s.presign_part(store_upload_id, part, ttl).await,
        }
    }

    /// Every part the store holds for the upload, in part order. An upload the store no
    /// longer knows (completed, or dropped) is [`Error::StoreRejected`] with code
    /// `NoSuchUpload`, whatever the store.
    pub async fn list_parts(
        &self,
        key: &str,
        store_upload_id: &str,
    ) -> Result<Vec<ListedPart>, Error> {
        match self {
            Self::S3(s) => s.list_parts(key, store_upload_id).await,
            Self::Azure(s) => s.list_parts(key, store_upload_id).await,
            Self::Gcs(s) => s.list_parts(store_upload_id).await,
        }
    }

    /// Where the object [`Store::complete`] assembles is to be verified: the object's name, or
    /// on Azure the upload's staging blob ([`Store::publish`] then copies it to the name).
    pub fn assembled_name(&self, key: &str, store_upload_id: &str) -> String {
        match self {
            Self::Azure(_) => azure::staging_name(store_upload_id),
            Self::S3(_) | Self::Gcs(_) => key.to_owned(),
        }
    }

    /// Puts the verified object (ETag `verified_etag` at [`Store::assembled_name`]) at `key`;
    /// the object's ETag there, when it differs. Only Azure assembles elsewhere.
    pub async fn publish(
        &self,
        key: &str,
        store_upload_id: &str,
        verified_etag: &str,
        size: u64,
        sha256_hex: &str,
    ) -> Result<Option<String>, Error> {
        match self {
            Self::Azure(s) => s
                .publish(key, store_upload_id, verified_etag, size, sha256_hex)
                .await
                .map(Some),
            Self::S3(_) | Self::Gcs(_) => Ok(None),
        }
    }

    /// Assembles the object from `parts`.
    pub async fn complete(
        &self,
        key: &str,
        store_upload_id: &str,
        parts: &[PartToComplete],
        finish: Finish<'_>,
    ) -> Result<Completed, Error> {
        match self {
            Self::S3(s) => s.complete(key, store_upload_id, parts).await,
            Self::Azure(s) => s.commit(store_upload_id, parts, finish).await,
            Self::Gcs(s) => s.compose(key, store_upload_id, parts, finish).await,
        }
    }

    /// Drops what the store holds of an unfinished upload. An upload the store no longer knows
    /// counts as aborted.
    pub async fn abort(&self, key: &str, store_upload_id: &str) -> Result<(), Error> {
        match self {
            Self::S3(s) => s.abort(key, store_upload_id).await,
            // The staging blob only: the object's name may hold an earlier upload of it.
            Self::Azure(s) => s.discard_staging(store_upload_id).await,
            Self::Gcs(s) => s.delete_parts(store_upload_id).await,
        }
    }

    /// Size, ETag and checksum of the object.
    pub async fn head(&self, key: &str) -> Result<ObjectHead, Error> {
        match self {
            Self::S3(s) => s.head(key).await,
            Self::Azure(s) => s.head(key).await,
            Self::Gcs(s) => s.head(key).await,
        }
    }

    /// Reads the object and returns its SHA-256 and length, streaming.
    pub async fn read_back_sha256(&self, key: &str) -> Result<([u8; 32], u64), Error> {
        match self {
            Self::S3(s) => s.read_back_sha256(key).await,
            Self::Azure(s) => s.read_back_sha256(key).await,
            Self::Gcs(s) => s.read_back_sha256(key).await,
        }
    }

    /// Records the verified SHA-256 on the object where it is not there yet (S3 tags it;
    /// Azure and GCS set it as metadata when assembling).
    pub async fn record_sha256(&self, key: &str, sha256_hex: &str) -> Result<(), Error> {
        match self {
            Self::S3(s) => s.put_tag(key, "sha256", sha256_hex).await,
            Self::Azure(_) | Self::Gcs(_) => Ok(()),
        }
    }

    /// Deletes the object (a refused completion must leave nothing behind).
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        match self {
            Self::S3(s) => s.delete(key).await,
            Self::Azure(s) => s.delete(key).await,
            Self::Gcs(s) => s.delete(key).await,
        }
    }

    /// Checks the assembled object at `key` (its [`Store::assembled_name`], or the object's
    /// name when it was assembled earlier) against its parts, by what the store reports (the
    /// `checksum` verify mode). The store's checksum of the object, when it reports one.
    pub async fn check_assembled(
        &self,
        key: &str,
        parts: &[PartToComplete],
        completed: &Completed,
        head: &ObjectHead,
        file_sha256: &str,
    ) -> Result<Option<String>, CheckFailed> {
        let reported = completed
            .checksum_sha256
            .clone()
            .or_else(|| head.checksum_sha256.clone());
        match self {
            Self::S3(_) => {
                let digests: Vec<[u8; 32]> = parts
                    .iter()
                    .filter_map(|p| checksum::decode_part_sha256(&p.sha256_b64))
                    .collect();
                if digests.len() != parts.len() {
                    return Err(CheckFailed::Mismatch("part digests are incomplete".into()));
                }
                let expected = checksum::composite_sha256(&digests);
                let expected_digest = expected.rsplit_once('-').map_or("", |(d, _)| d);
                match reported.as_deref() {
                    Some(r) if r == expected || r == expected_digest => Ok(reported),
                    Some(_) => Err(CheckFailed::Mismatch(
                        "the store's composite SHA-256 differs from the signed part digests".into(),
                    )),
                    None => Err(CheckFailed::Mismatch(
                        "the store reported no SHA-256 checksum".into(),
                    )),
                }
            }
            Self::Azure(s) => s.check_committed(key, parts).await.map(|()| None),
            Self::Gcs(s) => s.check_composed(key, parts, reported, file_sha256).await,
        }
    }
}

/// Whether `url` points at this machine (an emulator): only there may keys travel over
/// plain HTTP and the GCS JSON API go unauthenticated.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_config(kind: &str, endpoint: &str, credentials: &std::path::Path) -> StoreConfig {
        let text = format!(
            "data_dir = \"/tmp\"\n[store]\nkind = \"{kind}\"\nendpoint = \"{endpoint}\"\n\
             bucket = \"uploads\"\ncredentials_file = \"{}\"\n[store.gcs]\napi_auth = \"oauth\"\n",
            credentials.display()
        );
        Config::from_toml(&text).unwrap().store
    }

    fn azure_credentials(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("azure.toml");
        std::fs::write(&path, "account_key = \"c2VjcmV0\"\n").unwrap();
        path
    }

    fn gcs_credentials() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/store/testdata/gcs-conformance-service-account.json")
    }

    fn digest(md5: Option<&str>) -> PartDigest {
        PartDigest {
            number: 3,
            size: 1,
            sha256: "x".into(),
            md5: md5.map(str::to_owned),
            crc64: None,
        }
    }

    #[test]
    fn azure_and_gcs_keys_need_the_parts_md5() {
        let dir = tempfile::tempdir().unwrap();
        let azure = Store::from_store_config(&store_config(
            "azure",
            "http://127.0.0.1:10000/devstoreaccount1",
            &azure_credentials(dir.path()),
        ))
        .unwrap();
        let gcs = Store::from_store_config(&store_config(
            "gcs",
            "https://storage.googleapis.com",
            &gcs_credentials(),
        ))
        .unwrap();
        for store in [&azure, &gcs] {
            assert_eq!(store.part_checksums(), vec![PartChecksum::Md5]);
            let missing = store.refuse_digest(&digest(None)).expect("refused");
            assert!(
                missing.contains("part 3") && missing.contains("md5"),
                "{missing}"
            );
            assert!(store.refuse_digest(&digest(Some("not base64!"))).is_some());
            assert!(
                store.refuse_digest(&digest(Some("AAAA"))).is_some(),
                "3 bytes"
            );
            assert_eq!(
                store.refuse_digest(&digest(Some("1B2M2Y8AsgTpgAmY7PhCfg=="))),
                None
            );
        }
        assert_eq!(azure.origin(), "http://127.0.0.1:10000");
        assert_eq!(gcs.origin(), "https://storage.googleapis.com");
    }

    #[test]
    fn keys_travel_over_https_only_off_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let plain = store_config(
            "azure",
            "http://myaccount.blob.core.windows.net",
            &azure_credentials(dir.path()),
        );
        let e = Store::from_store_config(&plain).unwrap_err().to_string();
        assert!(e.contains("store.endpoint") && e.contains("HTTPS"), "{e}");
        let plain = store_config("gcs", "http://storage.example.com", &gcs_credentials());
        assert!(Store::from_store_config(&plain).is_err());
    }
}
