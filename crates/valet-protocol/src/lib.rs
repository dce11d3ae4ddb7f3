//! The wire contract between the Valet Upload client and the valet service.
//!
//! Everything that crosses the network between `valet-engine` and `valet-service` is declared
//! here and nowhere else: request and response bodies, error codes, and the part layout rules
//! both sides must agree on. All bodies are JSON. Paths are under [`API_PREFIX`].
//!
//! | method | path | request | response |
//! |---|---|---|---|
//! | POST | `/v1/auth/token` | [`TokenRequest`] | [`TokenResponse`] |
//! | GET | `/v1/auth/sso` | | [`SsoInfo`] |
//! | POST | `/v1/auth/logout` | [`LogoutRequest`] | 204 |
//! | GET | `/v1/me` | | [`Me`] |
//! | POST | `/v1/uploads` | [`CreateUpload`] | [`UploadCreated`] |
//! | GET | `/v1/uploads` | | [`UploadList`] |
//! | GET | `/v1/uploads/{id}` | | [`UploadStatus`] |
//! | POST | `/v1/uploads/{id}/keys` | [`PartKeysRequest`] | [`PartKeys`] |
//! | POST | `/v1/uploads/{id}/complete` | [`CompleteUpload`] | [`UploadVerified`] |
//! | DELETE | `/v1/uploads/{id}` | | 204 |
//!
//! Every error is an HTTP status with an [`ApiError`] body whose [`ErrorCode`] is stable: clients
//! classify errors by code, never by message.
#![warn(missing_docs, unreachable_pub)]

mod auth;
mod error;
mod layout;
mod upload;

pub use auth::*;
pub use error::*;
pub use layout::*;
pub use upload::*;

/// Prefix of every API path; bumped only for incompatible changes.
pub const API_PREFIX: &str = "/v1";

/// Timestamps travel as RFC 3339 strings.
pub type Timestamp = time::OffsetDateTime;
