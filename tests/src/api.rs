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

/// One answer as it came: status, headers and body, for tests of what the protocol types do
/// not say (status codes, headers, bodies of refusals).
#[derive(Debug)]
pub struct RawAnswer {
    /// The HTTP status.
    pub status: u16,
    /// Every header.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The value of header `name`, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as the service's error, when it is one.
    pub fn error(&self) -> Option<ApiError> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A client whose connections come from `local` (any 127.0.0.0/8 address on Linux), so one
/// test can be several client addresses; `None`: the system's choice.
pub fn client_from(local: Option<std::net::IpAddr>) -> Client {
    crate::install_tls_provider();
    Client::builder()
        .local_address(local)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Sends `method base+path` as written: `authorization` verbatim as the header's value, and
/// `body`, when given, as `application/json`.
pub fn send(
    client: &Client,
    base: &str,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<Vec<u8>>,
) -> RawAnswer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client.request(method, format!("{}{path}", base.trim_end_matches('/')));
    if let Some(value) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    let response = request.send().unwrap();
    RawAnswer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().unwrap().to_vec(),
    }
}

/// `POST /v1/auth/token` with a password grant.
pub fn password_grant(client: &Client, base: &str, user: &str, password: &str) -> RawAnswer {
    let body =
        serde_json::json!({"grant_type": "password", "username": user, "password": password});
    send(
        client,
        base,
        "POST",
        "/v1/auth/token",
        None,
        Some(body.to_string().into_bytes()),
    )
}
