//! Errors as they travel: an HTTP status plus a stable code and a human message.

use serde::{Deserialize, Serialize};

/// Body of every error answer of the service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[error("{message} ({})", code.as_str())]
pub struct ApiError {
    /// Stable, machine-readable classification.
    pub code: ErrorCode,
    /// What happened and what to do, for a person. Never contains a secret.
    pub message: String,
}

impl ApiError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Stable error codes. New codes may be added; clients treat unknown ones as [`ErrorCode::Unknown`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed or breaks a rule (HTTP 400).
    BadRequest,
    /// Wrong account name or password (HTTP 401).
    InvalidCredentials,
    /// No bearer token, or one the service does not know (HTTP 401).
    Unauthenticated,
    /// The token expired; refresh it (HTTP 401).
    TokenExpired,
    /// The token was revoked or its refresh token reused; sign in again (HTTP 401).
    TokenRevoked,
    /// An administrator revoked this enrolled device: its sign-in ended, and it cannot enroll
    /// again until they let it back in (HTTP 401).
    DeviceRevoked,
    /// Too many attempts; wait and retry (HTTP 429).
    RateLimited,
    /// The upload does not exist or belongs to someone else (HTTP 404; the two are not told apart).
    NotFound,
    /// The upload is not in a state that allows this (HTTP 409), e.g. keys for a completed upload.
    Conflict,
    /// Larger than the deployment's maximum file size (HTTP 413).
    TooLarge,
    /// The account's storage quota would be exceeded (HTTP 413).
    QuotaExceeded,
    /// The content type is not allowed by the deployment (HTTP 415).
    ContentTypeNotAllowed,
    /// The parts the store holds do not match what the client reported (HTTP 422). Nothing was
    /// completed; re-upload the parts named in the message.
    PartsMismatch,
    /// The completed object does not match its size or checksums (HTTP 422); it was not accepted.
    VerificationFailed,
    /// The store failed or could not be reached (HTTP 502); retry later.
    StoreUnavailable,
    /// A bug or an unexpected condition in the service (HTTP 500).
    Internal,
    /// A code this client does not know (newer service).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status the service answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::InvalidCredentials
            | Self::Unauthenticated
            | Self::TokenExpired
            | Self::TokenRevoked
            | Self::DeviceRevoked => 401,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::TooLarge | Self::QuotaExceeded => 413,
            Self::ContentTypeNotAllowed => 415,
            Self::PartsMismatch | Self::VerificationFailed => 422,
            Self::RateLimited => 429,
            Self::StoreUnavailable => 502,
            Self::Internal | Self::Unknown => 500,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Unauthenticated => "unauthenticated",
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked => "token_revoked",
            Self::DeviceRevoked => "device_revoked",
            Self::RateLimited => "rate_limited",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::TooLarge => "too_large",
            Self::QuotaExceeded => "quota_exceeded",
            Self::ContentTypeNotAllowed => "content_type_not_allowed",
            Self::PartsMismatch => "parts_mismatch",
            Self::VerificationFailed => "verification_failed",
            Self::StoreUnavailable => "store_unavailable",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }

    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::StoreUnavailable | Self::Internal
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_from_a_newer_service_still_parse() {
        let e: ApiError = serde_json::from_str(r#"{"code":"brand_new","message":"m"}"#).unwrap();
        assert_eq!(e.code, ErrorCode::Unknown);
    }

    #[test]
    fn codes_are_snake_case_on_the_wire() {
        let s = serde_json::to_string(&ApiError::new(ErrorCode::TokenExpired, "x")).unwrap();
        assert_eq!(s, r#"{"code":"token_expired","message":"x"}"#);
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::ContentTypeNotAllowed,
            ErrorCode::PartsMismatch,
        ] {
            let wire = serde_json::to_string(&code).unwrap();
            assert_eq!(
                wire,
                format!("\"{}\"", code.as_str()),
                "as_str agrees with serde"
            );
        }
    }
}
