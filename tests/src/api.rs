//! The service's HTTP API, called directly with a bearer token: what the CLI does not expose
//! (other users' attempts, raw keys for tampering tests, the service's own record).

use reqwest::blocking::{Client, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use valet_protocol::{ApiError, ErrorCode};

/// A signed-in API client.
pub struct Api {
    base: String,
    token: String,
    http: Client,
}

impl Api {
    /// A client for `base` (the service URL) with bearer `token`.
    pub fn new(base: &str, token: &str) -> Self {
        crate::install_tls_provider();
        Self {
            base: base.trim_end_matches('/').into(),
            token: token.into(),
            http: Client::new(),
        }
    }

    /// GET `path` (under /v1) and decode the answer, or the service's error.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        decode(
            self.http
                .get(self.url(path))
                .bearer_auth(&self.token)
                .send()
                .unwrap(),
        )
    }

    /// POST `body` to `path` and decode the answer, or the service's error.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        decode(
            self.http
                .post(self.url(path))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .unwrap(),
        )
    }

    /// DELETE `path`; `Ok` on any success status.
    pub fn delete(&self, path: &str) -> Result<(), ApiError> {
        let response = self
            .http
            .delete(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .unwrap();
        if response.status().is_success() {
            Ok(())
        } else {
            Err(error_of(response))
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1{path}", self.base)
    }
}

fn decode<T: DeserializeOwned>(response: Response) -> Result<T, ApiError> {
    if response.status().is_success() {
        Ok(response
            .json()
            .expect("service answer matches valet-protocol"))
    } else {
        Err(error_of(response))
    }
}

fn error_of(response: Response) -> ApiError {
    let status = response.status();
    let body = response.text().unwrap_or_default();
    serde_json::from_str(&body).unwrap_or_else(|_| {
        ApiError::new(
            ErrorCode::Unknown,
            format!("HTTP {status} with a non-JSON body: {body}"),
        )
    })
}
