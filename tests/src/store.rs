//! The test stores, one of each kind, and reading objects back from them with the store's own
//! credentials, to compare bytes with the source file. This is the test's independent view,
//! not the service's word.

use std::io::Read;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use valet_service::store::azure_sas::{self, BlobSas, SasKey};

use crate::azurite::{self, Azurite};
use crate::files::hex;
use crate::gcs::GcsEmulator;
use crate::seaweed::{ACCESS_KEY, SECRET_KEY, SeaweedFs};

/// The kinds of store every end-to-end test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// SeaweedFS (S3).
    S3,
    /// Azurite (Azure Blob).
    Azure,
    /// gcp-storage-emulator (GCS).
    Gcs,
}

/// What a service needs to know of a test store.
pub trait TestStoreEndpoint {
    /// Its kind.
    fn kind(&self) -> StoreKind;
    /// The endpoint the service is configured with.
    fn endpoint(&self) -> &str;
}

impl TestStoreEndpoint for SeaweedFs {
    fn kind(&self) -> StoreKind {
        StoreKind::S3
    }
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl TestStoreEndpoint for crate::rclone_s3::RcloneS3 {
    fn kind(&self) -> StoreKind {
        StoreKind::S3
    }
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl TestStoreEndpoint for Azurite {
    fn kind(&self) -> StoreKind {
        StoreKind::Azure
    }
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl TestStoreEndpoint for GcsEmulator {
    fn kind(&self) -> StoreKind {
        StoreKind::Gcs
    }
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// A running store of any kind.
pub enum TestStore {
    /// SeaweedFS.
    S3(SeaweedFs),
    /// Azurite.
    Azure(Azurite),
    /// The GCS emulator.
    Gcs(GcsEmulator),
}

impl TestStore {
    /// The shared store of `kind` (`VALET_TEST_S3`, `VALET_TEST_AZURE`, `VALET_TEST_GCS`), or
    /// a private one.
    pub fn shared_or_start(kind: StoreKind) -> Self {
        match kind {
            StoreKind::S3 => Self::S3(SeaweedFs::shared_or_start()),
            StoreKind::Azure => Self::Azure(Azurite::shared_or_start()),
            StoreKind::Gcs => Self::Gcs(GcsEmulator::shared_or_start()),
        }
    }
}

impl TestStoreEndpoint for TestStore {
    fn kind(&self) -> StoreKind {
        match self {
            Self::S3(_) => StoreKind::S3,
            Self::Azure(_) => StoreKind::Azure,
            Self::Gcs(_) => StoreKind::Gcs,
        }
    }
    fn endpoint(&self) -> &str {
        match self {
            Self::S3(s) => &s.endpoint,
            Self::Azure(s) => &s.endpoint,
            Self::Gcs(s) => &s.endpoint,
        }
    }
}

/// One bucket (container) of a test store, read with the store's own credentials.
pub struct StoreBucket {
    kind: StoreKind,
    endpoint: String,
    name: String,
    s3: Bucket,
    http: reqwest::blocking::Client,
}

impl StoreBucket {
    /// The S3 bucket `name` at `endpoint`, path-style.
    pub fn new(endpoint: &str, name: &str) -> Self {
        Self::of(StoreKind::S3, endpoint, name)
    }

    /// The bucket (container) `name` of the `kind` store at `endpoint`.
    pub fn of(kind: StoreKind, endpoint: &str, name: &str) -> Self {
        let s3 = Bucket::new(
            endpoint.parse().unwrap(),
            UrlStyle::Path,
            name.to_string(),
            "us-east-1",
        )
        .unwrap();
        crate::install_tls_provider();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap();
        Self {
            kind,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            name: name.to_owned(),
            s3,
            http,
        }
    }

    fn s3_credentials() -> Credentials {
        Credentials::new(ACCESS_KEY, SECRET_KEY)
    }

    /// A read SAS URL for one blob (Azure).
    fn azure_blob_url(&self, key: &str) -> url::Url {
        let now = OffsetDateTime::now_utc();
        let query = azure_sas::blob_sas(
            &BlobSas {
                account: azurite::ACCOUNT,
                container: &self.name,
                blob: key,
                permissions: "r",
                start: now - Duration::from_secs(300),
                expiry: now + Duration::from_secs(600),
                https_only: false,
            },
            &SasKey::Account(base64_decode(azurite::ACCOUNT_KEY)),
        );
        let mut url: url::Url = format!("{}/{}/{key}", self.endpoint, self.name)
            .parse()
            .unwrap();
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(n, v)| (*n, v.as_str())));
        url
    }

    /// The JSON API URL of one object (GCS; the emulator takes no credentials).
    fn gcs_object_url(&self, key: &str) -> String {
        let name: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        format!("{}/storage/v1/b/{}/o/{name}", self.endpoint, self.name)
    }

    fn get(&self, key: &str) -> reqwest::blocking::Response {
        let request = match self.kind {
            StoreKind::S3 => self.http.get(
                self.s3
                    .get_object(Some(&Self::s3_credentials()), key)
                    .sign(Duration::from_secs(600)),
            ),
            StoreKind::Azure => self.http.get(self.azure_blob_url(key)),
            StoreKind::Gcs => self
                .http
                .get(format!("{}?alt=media", self.gcs_object_url(key))),
        };
        request.send().unwrap()
    }

    /// The store's endpoint (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Size and lowercase hex SHA-256 of the object, streamed; `None` when there is no such object.
    pub fn object_digest(&self, key: &str) -> Option<(u64, String)> {
        let mut response = self.get(key);
        if response.status() == 404 {
            return None;
        }
        assert!(
            response.status().is_success(),
            "GET {key}: {}",
            response.status()
        );
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = response.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
        }
        Some((size, hex(&hasher.finalize())))
    }

    /// The object's tag set as raw XML (S3; empty when untagged or absent).
    pub fn object_tagging_xml(&self, key: &str) -> String {
        let credentials = Self::s3_credentials();
        let mut action = self.s3.get_object(Some(&credentials), key);
        action.query_mut().insert("tagging", "");
        let url = action.sign(Duration::from_secs(60));
        self.http.get(url).send().unwrap().text().unwrap()
    }

    /// The SHA-256 the service recorded on the object: S3's `sha256` tag, Azure's
    /// `x-ms-meta-sha256`, GCS's metadata `sha256`.
    pub fn recorded_sha256(&self, key: &str) -> Option<String> {
        match self.kind {
            StoreKind::S3 => {
                let xml = self.object_tagging_xml(key);
                let value = xml.split("<Key>sha256</Key>").nth(1)?;
                let value = value.split("<Value>").nth(1)?.split("</Value>").next()?;
                Some(value.to_owned())
            }
            StoreKind::Azure => {
                let response = self.http.head(self.azure_blob_url(key)).send().unwrap();
                response
                    .headers()
                    .get("x-ms-meta-sha256")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            }
            StoreKind::Gcs => {
                let response = self.http.get(self.gcs_object_url(key)).send().unwrap();
                let object: serde_json::Value = response.json().ok()?;
                object["metadata"]["sha256"].as_str().map(str::to_owned)
            }
        }
    }

    /// Keys of every object in the bucket under `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        match self.kind {
            StoreKind::S3 => {
                let credentials = Self::s3_credentials();
                let mut action = self.s3.list_objects_v2(Some(&credentials));
                action.with_prefix(prefix);
                let url = action.sign(Duration::from_secs(60));
                let body = self.http.get(url).send().unwrap().text().unwrap();
                let parsed = rusty_s3::actions::ListObjectsV2::parse_response(&body).unwrap();
                parsed
                    .contents
                    .into_iter()
                    .map(|object| object.key)
                    .collect()
            }
            StoreKind::Azure => {
                let now = OffsetDateTime::now_utc();
                let sas = azure_sas::container_account_sas(
                    azurite::ACCOUNT,
                    &base64_decode(azurite::ACCOUNT_KEY),
                    "l",
                    now - Duration::from_secs(300),
                    now + Duration::from_secs(600),
                    false,
                );
                let mut url: url::Url = format!("{}/{}", self.endpoint, self.name).parse().unwrap();
                url.query_pairs_mut()
                    .append_pair("restype", "container")
                    .append_pair("comp", "list")
                    .append_pair("prefix", prefix)
                    .extend_pairs(sas.iter().map(|(n, v)| (*n, v.as_str())));
                let body = self.http.get(url).send().unwrap().text().unwrap();
                body.split("<Name>")
                    .skip(1)
                    .filter_map(|rest| rest.split("</Name>").next())
                    .map(str::to_owned)
                    .collect()
            }
            StoreKind::Gcs => {
                let prefix: String =
                    url::form_urlencoded::byte_serialize(prefix.as_bytes()).collect();
                let url = format!(
                    "{}/storage/v1/b/{}/o?prefix={prefix}",
                    self.endpoint, self.name
                );
                let list: serde_json::Value = self.http.get(url).send().unwrap().json().unwrap();
                list["items"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|o| o["name"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            }
        }
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
