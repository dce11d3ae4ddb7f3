//! Accounts and tokens.
//!
//! - Passwords are argon2id PHC strings.
//! - Tokens are 32 random bytes, base64url, behind a prefix that says what they are: `vat_`
//!   access, `vrt_` refresh, `vpt_` API token. NEVER CHANGE A PREFIX: issued tokens carry it.
//!   Only their SHA-256 is stored, so a copy of the database signs nobody in.
//! - A password sign-in starts a *family*: one access token (short-lived) and one refresh token.
//!   A refresh token is single-use: trading it marks it used and issues the next pair in the
//!   same family. Presenting a used one again means two parties hold it (one stole it), so the
//!   whole family is revoked (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
//! - API tokens (from `valet-service token issue`) are bearer tokens until revoked.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use valet_protocol::{ErrorCode, TokenResponse};

use crate::api::{AppState, Failure};
use crate::db::devices;
use crate::db::tokens::{self, NewToken, TokenKind};
use crate::db::{self, Db, millis_after};
use crate::{Error, names};

/// Prefix of access tokens.
pub const ACCESS_PREFIX: &str = "vat_";
/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "vrt_";
/// Prefix of API tokens.
pub const API_PREFIX: &str = "vpt_";

/// Shortest password `user add` accepts.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Random bytes as URL-safe text: token bodies, ids.
pub fn random_text(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A new random id (public, unguessable, 128 bits): upload ids, token ids, families.
pub fn random_id() -> String {
    let mut buf = [0u8; 16];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new token with `prefix` and its stored hash.
pub fn new_token(prefix: &str) -> (String, String) {
    let token = format!("{prefix}{}", random_text(32));
    let hash = token_hash(&token);
    (token, hash)
}

/// What is stored of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Hashes a password (argon2id, random salt), off the async threads: it is slow on purpose.
pub async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::Invalid(format!("cannot hash password: {e}")))
    })
    .await
    .map_err(|e| Error::Invalid(format!("password hashing task failed: {e}")))?
}

/// Whether `password` matches `phc`. With no `phc` (unknown user) a dummy hash is checked
/// anyway, so the answer takes as long and does not tell which names exist.
pub async fn verify_password(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

/// argon2id hash of a random, forgotten password, made once with the default parameters.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(random_text(24).as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Adds an account. The name must pass [`names::is_valid_user_name`] (it becomes part of
/// object keys).
pub async fn add_user(
    db: &Db,
    name: &str,
    password: &str,
    now: OffsetDateTime,
) -> Result<(), Error> {
    if !names::is_valid_user_name(name) {
        return Err(Error::Invalid(format!(
            "invalid user name {name:?}: use 1-64 of a-z 0-9 - _ . (not starting with .)"
        )));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::Invalid(format!(
            "password too short: at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if db::user_password_hash(db, name).await?.is_some() {
        return Err(Error::Invalid(format!("user {name:?} already exists")));
    }
    let hash = hash_password(password.to_owned()).await?;
    db::insert_user(db, name, &hash, now).await
}

/// The account of a device enrolling under `enrollment` as `device_name`:
/// `ENROLLMENT-HOSTNAME`, the host name lower-cased with anything but a-z 0-9 - _ . made `-`.
/// `None` when nothing of the name is left.
pub fn device_account(enrollment: &str, device_name: &str) -> Option<String> {
    let host = names::user_name_part(device_name, usize::MAX);
    let name: String = format!("{enrollment}-{host}").chars().take(64).collect();
    (!host.is_empty() && names::is_valid_user_name(&name)).then_some(name)
}

/// A password hash no password matches: device accounts sign in only by enrollment.
pub const NO_PASSWORD: &str = "!";

/// Issues an API token for `user`; returns (id, token). The token is shown once.
pub async fn issue_api_token(
    db: &Db,
    user: &str,
    label: Option<&str>,
    now: OffsetDateTime,
) -> Result<(String, String), Error> {
    if db::user_password_hash(db, user).await?.is_none() {
        return Err(Error::Invalid(format!("no user {user:?}")));
    }
    let (token, hash) = new_token(API_PREFIX);
    let id = random_id();
    tokens::insert(
        db,
        &NewToken {
            id: &id,
            token_hash: &hash,
            kind: TokenKind::Api,
            user,
            family: None,
            label,
            created_at: now,
            expires_at_ms: None,
        },
    )
    .await?;
    Ok((id, token))
}

/// A new access and refresh token, not stored yet: the answer, and the rows to store.
pub(crate) struct NewPair {
    /// The answer to send once the rows are stored.
    pub response: TokenResponse,
    /// (id, kind, hash, expiry in Unix ms) of the access and the refresh token.
    rows: [(String, TokenKind, String, i64); 2],
}

impl NewPair {
    /// An access and a refresh token for `user`, with the configured lives.
    pub(crate) fn new(state: &AppState, user: &str, now: OffsetDateTime) -> Self {
        let ttl = &state.config().tokens;
        let (access, access_hash) = new_token(ACCESS_PREFIX);
        let (refresh, refresh_hash) = new_token(REFRESH_PREFIX);
        Self {
            response: TokenResponse {
                access_token: access,
                token_type: "Bearer".to_owned(),
                expires_in: ttl.access_ttl.as_secs(),
                refresh_token: refresh,
                refresh_expires_in: ttl.refresh_ttl.as_secs(),
                user: user.to_owned(),
            },
            rows: [
                (
                    random_id(),
                    TokenKind::Access,
                    access_hash,
                    millis_after(now, ttl.access_ttl),
                ),
                (
                    random_id(),
                    TokenKind::Refresh,
                    refresh_hash,
                    millis_after(now, ttl.refresh_ttl),
                ),
            ],
        }
    }

    /// The rows to store, in sign-in `family`.
    pub(crate) fn rows<'a>(&'a self, family: &'a str, now: OffsetDateTime) -> Vec<NewToken<'a>> {
        self.rows
            .iter()
            .map(|(id, kind, hash, expires_at_ms)| NewToken {
                id,
                token_hash: hash,
                kind: *kind,
                user: &self.response.user,
                family: Some(family),
                label: None,
                created_at: now,
                expires_at_ms: Some(*expires_at_ms),
            })
            .collect()
    }
}

/// Issues an access and a refresh token in `family`.
pub(crate) async fn issue_pair(
    state: &AppState,
    user: &str,
    family: &str,
    now: OffsetDateTime,
) -> Result<TokenResponse, Error> {
    let pair = NewPair::new(state, user, now);
    for row in pair.rows(family, now) {
        tokens::insert(state.db(), &row).await?;
    }
    Ok(pair.response)
}

/// Checks a presented token of an expected kind: known, not revoked, not expired.
pub(crate) async fn check_token(
    db: &Db,
    token: &str,
    kinds: &[TokenKind],
    now: OffsetDateTime,
) -> Result<tokens::StoredToken, Failure> {
    let unknown = || Failure::new(ErrorCode::Unauthenticated, "unknown or malformed token");
    let stored = tokens::find_by_hash(db, &token_hash(token))
        .await?
        .filter(|t| kinds.contains(&t.kind))
        .ok_or_else(unknown)?;
    if stored.revoked_at.is_some() {
        let device_revoked = match &stored.family {
            Some(family) => devices::is_revoked(db, family).await?,
            None => false,
        };
        return Err(if device_revoked {
            Failure::new(
                ErrorCode::DeviceRevoked,
                "this device was revoked by an administrator; it can no longer upload",
            )
        } else {
            Failure::new(ErrorCode::TokenRevoked, "token revoked; sign in again")
        });
    }
    if stored.expires_at.is_some_and(|e| e <= now) {
        return Err(Failure::new(ErrorCode::TokenExpired, "token expired"));
    }
    Ok(stored)
}

/// The signed-in caller of a request, from `Authorization: Bearer vat_…` or `vpt_…`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account.
    pub user: String,
    /// Id of the presented token.
    pub token_id: String,
    /// The sign-in family (access tokens).
    pub family: Option<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Failure> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Failure::new(
                    ErrorCode::Unauthenticated,
                    "missing Authorization: Bearer token",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(ACCESS_PREFIX) || t.starts_with(API_PREFIX))
            .ok_or_else(|| {
                Failure::new(
                    ErrorCode::Unauthenticated,
                    "expected an access or API token as Authorization: Bearer",
                )
            })?;
        let stored = check_token(
            state.db(),
            token,
            &[TokenKind::Access, TokenKind::Api],
            OffsetDateTime::now_utc(),
        )
        .await?;
        Ok(Self {
            user: stored.user,
            token_id: stored.id,
            family: stored.family,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_stored_as_sha256() {
        let (a, hash_a) = new_token(ACCESS_PREFIX);
        let (b, _) = new_token(ACCESS_PREFIX);
        assert!(a.starts_with("vat_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 43, "32 bytes of base64url");
        assert_eq!(hash_a, token_hash(&a));
        assert_eq!(hash_a.len(), 64);
        assert!(!hash_a.contains(&a[4..]));
        // Known answer, from `printf vat_x | sha256sum`.
        assert_eq!(
            token_hash("vat_x"),
            "118fff43f73040aebe085c93be99510fad613603e54b12148fca557881c83f3b"
        );
    }

    #[test]
    fn device_accounts_are_valid_user_names() {
        assert_eq!(
            device_account("laptops", "Scan Station 7").as_deref(),
            Some("laptops-scan-station-7")
        );
        assert_eq!(
            device_account("lab", "WS-042.corp.example").as_deref(),
            Some("lab-ws-042.corp.example")
        );
        assert_eq!(
            device_account("lab", " ..// "),
            None,
            "nothing of the name left"
        );
        let long = device_account("lab", &"x".repeat(200)).unwrap();
        assert_eq!(long.len(), 64);
        assert!(names::is_valid_user_name(&long));
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(hash.clone())).await);
        assert!(!verify_password("wrong".into(), Some(hash)).await);
        assert!(
            !verify_password("anything".into(), None).await,
            "unknown user"
        );
    }
}
