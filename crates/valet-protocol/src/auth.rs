//! Sign-in: the token endpoint and who am I.

use serde::{Deserialize, Serialize};

/// Body of `POST /v1/auth/token`, in the spirit of OAuth 2.0's token endpoint (RFC 6749 §4.3, §6)
/// but JSON both ways.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "grant_type", rename_all = "snake_case")]
pub enum TokenRequest {
    /// Sign in with an account name and password.
    Password {
        /// Account name.
        username: String,
        /// The account's password.
        password: String,
    },
    /// Trade a refresh token for a new access token and a new refresh token. The old refresh
    /// token stops working (rotation); presenting it again revokes the whole sign-in.
    RefreshToken {
        /// The refresh token from the last [`TokenResponse`].
        refresh_token: String,
    },
    /// Enroll a managed device with its organisation's enrollment secret (from the machine's
    /// policy). The device gets its own account and a sign-in an administrator can revoke.
    Enrollment {
        /// The organisation's enrollment secret.
        enrollment_secret: String,
        /// The device's name (its host name), shown to administrators.
        device_name: String,
    },
    /// Single sign-on: an OpenID Connect ID token the client got from the deployment's provider
    /// (authorization code with PKCE and a loopback redirect, RFC 8252), with the nonce the
    /// client put in its authorization request. The service checks the token and answers its
    /// own pair; the provider's tokens are not kept.
    IdToken {
        /// The ID token, a signed JWT (OpenID Connect Core §2).
        id_token: String,
        /// The nonce the client sent in its authorization request (§3.1.2.1).
        nonce: String,
    },
}

// Secrets never reach a log through Debug.
impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::RefreshToken { .. } => f
                .debug_struct("RefreshToken")
                .field("refresh_token", &"<redacted>")
                .finish(),
            Self::Enrollment { device_name, .. } => f
                .debug_struct("Enrollment")
                .field("enrollment_secret", &"<redacted>")
                .field("device_name", device_name)
                .finish(),
            Self::IdToken { .. } => f
                .debug_struct("IdToken")
                .field("id_token", &"<redacted>")
                .field("nonce", &"<redacted>")
                .finish(),
        }
    }
}

/// Answer of `GET /v1/auth/sso` (public): the OpenID Connect provider this deployment signs
/// people in with. `404 not_found` when it has none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SsoInfo {
    /// The provider's issuer URL; its discovery document is at
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client id registered at the provider for Valet Upload (a public, native client).
    pub client_id: String,
    /// Scopes to ask for, `openid` among them.
    pub scopes: Vec<String>,
}

/// Answer of the token endpoint.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// Short-lived bearer token for `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token lives from now.
    pub expires_in: u64,
    /// Long-lived, single-use token for the next refresh; keep it in the OS keyring.
    pub refresh_token: String,
    /// Seconds the refresh token lives from now.
    pub refresh_expires_in: u64,
    /// The signed-in account.
    pub user: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"<redacted>")
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("user", &self.user)
            .finish()
    }
}

/// Body of `POST /v1/auth/logout`: revokes the bearer access token of the request and, when
/// given, the refresh token and every token rotated from the same sign-in.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogoutRequest {
    /// The refresh token of the sign-in to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutRequest").finish_non_exhaustive()
    }
}

/// Answer of `GET /v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    /// Account name.
    pub user: String,
    /// The object-key prefix under which all of this account's uploads land.
    pub prefix: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_token_grant_is_json_as_documented_and_never_debug_printed() {
        let request = TokenRequest::IdToken {
            id_token: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".into(),
            nonce: "n-0S6".into(),
        };
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "grant_type": "id_token",
                "id_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
                "nonce": "n-0S6"
            })
        );
        assert_eq!(
            serde_json::from_value::<TokenRequest>(json).unwrap(),
            request
        );
        let shown = format!("{request:?}");
        assert!(
            !shown.contains("eyJ") && !shown.contains("n-0S6"),
            "{shown}"
        );
    }
}
