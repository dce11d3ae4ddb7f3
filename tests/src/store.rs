//! Reading objects back from the S3 store with the store's own credentials, to compare bytes
//! with the source file. This is the test's independent view, not the service's word.

use std::io::Read;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use sha2::{Digest, Sha256};

use crate::files::hex;
use crate::seaweed::{ACCESS_KEY, SECRET_KEY};

/// One bucket of the test store.
pub struct StoreBucket {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::blocking::Client,
}

impl StoreBucket {
    /// The bucket `name` at `endpoint`, path-style.
    pub fn new(endpoint: &str, name: &str) -> Self {
        let bucket = Bucket::new(
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
            bucket,
            credentials: Credentials::new(ACCESS_KEY, SECRET_KEY),
            http,
        }
    }

    /// Size and lowercase hex SHA-256 of the object, streamed; `None` when there is no such object.
    pub fn object_digest(&self, key: &str) -> Option<(u64, String)> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(Duration::from_secs(600));
        let mut response = self.http.get(url).send().unwrap();
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

    /// The object's tag set as raw XML (empty when untagged or absent).
    pub fn object_tagging_xml(&self, key: &str) -> String {
        let mut action = self.bucket.get_object(Some(&self.credentials), key);
        action.query_mut().insert("tagging", "");
        let url = action.sign(Duration::from_secs(60));
        self.http.get(url).send().unwrap().text().unwrap()
    }

    /// Keys of every object in the bucket under `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
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
}
