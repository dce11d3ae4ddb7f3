//! The signed-in connection to the valet service.
//!
//! Two ways to authenticate:
//! - a **sign-in** ([`Session::login`]): the account's password is traded once for an access
//!   token (kept in memory only) and a refresh token (kept in the OS keyring through a
//!   [`SecretStore`]). The access token is renewed shortly before it expires by one refresher at
//!   a time; the rotated refresh token is written back to the keyring after every refresh, before
//!   the new access token is used (losing it would end the sign-in). "One at a time" holds across
//!   processes too: every process using the sign-in (two `valet put` started together) keeps its
//!   own access token but refreshes only while holding an exclusive lock on `signin.lock` in the
//!   data dir, reads the refresh token from the keyring only once it holds the lock (another
//!   process may have just rotated it), and stores the rotated one before letting go. Without it,
//!   two processes would present the same refresh token and the service would end the sign-in;
//! - a **single sign-on** ([`SsoSignIn`]): the organisation's OpenID Connect provider signs the
//!   person in through the system browser, and its ID token is traded once for the same kind of
//!   sign-in as a password's;
//! - an **API token** ([`Session::with_api_token`], `VALET_SERVER` + `VALET_TOKEN`), used directly
//!   as the bearer token: for scripts, CI, and machines without a keyring.
//!
//! Every request goes through one retry loop (see [`RetryPolicy`]); a `401 token_expired` answer
//! triggers one refresh and one more attempt. The refresh itself is sent exactly once, never
//! retried: refresh tokens are single-use, and presenting one twice revokes the sign-in.

mod api;
mod secrets;
mod sso;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use valet_protocol::{ApiError, ErrorCode, LogoutRequest, Me, TokenRequest, TokenResponse};

pub(crate) use api::complete_timeout;
pub use api::{KeyLease, StoreTarget};
#[cfg(feature = "fuzzing")]
pub(crate) use api::{check_created, check_keys};
pub use secrets::{KEYRING_SERVICE, MemoryKeyring, OsKeyring, SecretStore};
pub use sso::{SSO_TIMEOUT, SsoParams, SsoSignIn};

use crate::error::{Error, Result};
use crate::http::{self, MAX_REPLY_BYTES, Retry, RetryPolicy};
use crate::settings::{SIGN_IN_LOCK_FILE, SignIn};
use crate::urls;

/// A connection to the valet service, authenticated by a sign-in or an API token.
pub struct Session {
    server: Url,
    http: reqwest::Client,
    auth: Auth,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("server", &urls::redact(&self.server))
            .field("user", &self.user())
            .finish_non_exhaustive()
    }
}

enum Auth {
    /// Only while signing in: no token yet.
    Anonymous,
    ApiToken(SecretString),
    SignedIn(SignedIn),
}

struct SignedIn {
    sign_in: SignIn,
    keyring: Arc<dyn SecretStore>,
    /// `signin.lock` in the data dir: held across processes while refreshing.
    refresh_lock_file: PathBuf,
    /// Read on every request (fast path); written by the refresher only.
    current: RwLock<Option<AccessToken>>,
    /// Held by the one task that refreshes; others wait and then reuse its result.
    refresh_lock: tokio::sync::Mutex<()>,
}

struct AccessToken {
    token: SecretString,
    renew_at: Instant,
}

/// When to renew a token (or key) that was issued at `issued` and lives `ttl`: a margin before
/// it expires of 60 s, or half its life when that is shorter, so that clock drift and a slow
/// request never present an expired token.
pub fn renew_at(issued: Instant, ttl: Duration) -> Instant {
    let margin = Duration::from_secs(60).min(ttl / 2);
    issued + (ttl - margin)
}

/// The longest lifetime the engine believes (a hostile `expires_in` cannot overflow a clock).
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

impl Session {
    /// Signs in with a password: the refresh token goes to `keyring`, the server and account
    /// name to `data_dir/signin.json`.
    pub async fn login(
        server: &str,
        user: &str,
        password: SecretString,
        keyring: Arc<dyn SecretStore>,
        data_dir: &Path,
    ) -> Result<Self> {
        let request = TokenRequest::Password {
            username: user.to_owned(),
            password: password.expose_secret().to_owned(),
        };
        Self::sign_in(server, user, request, keyring, data_dir).await
    }

    /// Enrolls this device with its organisation's enrollment secret (from the machine's
    /// policy): the service makes the device an account of its own and a sign-in an
    /// administrator can revoke. Kept like a password sign-in: refresh token in `keyring`.
    pub async fn enroll(
        server: &str,
        enrollment_secret: SecretString,
        device_name: &str,
        keyring: Arc<dyn SecretStore>,
        data_dir: &Path,
    ) -> Result<Self> {
        let request = TokenRequest::Enrollment {
            enrollment_secret: enrollment_secret.expose_secret().to_owned(),
            device_name: device_name.to_owned(),
        };
        Self::sign_in(server, "device", request, keyring, data_dir).await
    }

    /// Trades `request` at the token endpoint for a sign-in kept in `keyring` and `data_dir`.
    /// `user` names the keyring entry probed before anything is sent; the account the service
    /// answers with is the one kept.
    async fn sign_in(
        server: &str,
        user: &str,
        request: TokenRequest,
        keyring: Arc<dyn SecretStore>,
        data_dir: &Path,
    ) -> Result<Self> {
        let server = urls::parse_server(server)?;
        let mut sign_in = SignIn {
            server: server.to_string(),
            user: user.to_owned(),
        };
        // Fail before the secret is sent when there is nowhere to keep the refresh token.
        let probe = (keyring.clone(), sign_in.keyring_account());
        blocking(move || probe.0.get(&probe.1).map(drop)).await?;
        let mut session = Self::new(server, Auth::Anonymous);
        let sent = Instant::now();
        // An ID token works once: a retry after the service took it would only be refused.
        let how = match request {
            TokenRequest::IdToken { .. } => Call::ONCE,
            _ => Call::RETRIED,
        };
        let tokens: TokenResponse = session
            .call(Method::POST, "v1/auth/token", Some(&request), false, how)
            .await?;
        if tokens.user.is_empty() {
            return Err(Error::BadReply {
                from: "POST /v1/auth/token".into(),
                what: "no account name in the answer".into(),
            });
        }
        sign_in.user = tokens.user.clone();
        let signed_in = SignedIn {
            sign_in,
            keyring,
            refresh_lock_file: data_dir.join(SIGN_IN_LOCK_FILE),
            current: RwLock::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
        };
        // The new refresh token is written under the cross-process lock: a refresh of the old
        // sign-in running in another process then finishes before it, never overwrites it.
        crate::settings::ensure_data_dir(data_dir)?;
        let one_process = signed_in.lock_across_processes().await?;
        let token = signed_in.accept(tokens, sent).await?;
        drop(one_process);
        *signed_in.current.write().unwrap_or_else(|p| p.into_inner()) = Some(token);
        signed_in.sign_in.save(data_dir)?;
        session.auth = Auth::SignedIn(signed_in);
        Ok(session)
    }

    /// The sign-in saved in `data_dir` by [`Session::login`]; its refresh token is read from
    /// `keyring` on first use. [`Error::NotSignedIn`] when there is none.
    pub fn saved(data_dir: &Path, keyring: Arc<dyn SecretStore>) -> Result<Self> {
        let sign_in = SignIn::load(data_dir)?.ok_or(Error::NotSignedIn)?;
        let server = urls::parse_server(&sign_in.server)?;
        Ok(Self::new(
            server,
            Auth::SignedIn(SignedIn {
                sign_in,
                keyring,
                refresh_lock_file: data_dir.join(SIGN_IN_LOCK_FILE),
                current: RwLock::new(None),
                refresh_lock: tokio::sync::Mutex::new(()),
            }),
        ))
    }

    /// A session that presents an API token as its bearer token (`VALET_SERVER` + `VALET_TOKEN`).
    pub fn with_api_token(server: &str, token: SecretString) -> Result<Self> {
        let server = urls::parse_server(server)?;
        if token.expose_secret().trim().is_empty() {
            return Err(Error::NotSignedIn);
        }
        Ok(Self::new(server, Auth::ApiToken(token)))
    }

    fn new(server: Url, auth: Auth) -> Self {
        Self {
            server,
            http: http::service_client(),
            auth,
            retry: RetryPolicy::default(),
        }
    }

    /// Replaces the retry policy of service calls.
    pub fn set_retry_policy(&mut self, policy: RetryPolicy) {
        self.retry = policy;
    }

    /// The service's base URL.
    pub fn server(&self) -> &Url {
        &self.server
    }

    /// The signed-in account, when signed in with a password (`None` for an API token).
    pub fn user(&self) -> Option<&str> {
        match &self.auth {
            Auth::Anonymous | Auth::ApiToken(_) => None,
            Auth::SignedIn(s) => Some(&s.sign_in.user),
        }
    }

    /// Who the service says we are; a cheap way to check the session works.
    pub async fn me(&self) -> Result<Me> {
        self.request::<(), _>(Method::GET, "v1/me", None, true)
            .await
    }

    /// Ends the sign-in: asks the service to revoke its tokens, then forgets the refresh token
    /// and the sign-in settings, even when the service cannot be reached.
    ///
    /// `Err` when the local cleanup failed; `Ok(Some(error))` when it succeeded but the service
    /// could not revoke the tokens (they expire on their own); `Ok(None)` when both succeeded.
    /// An API-token session has nothing to end: `Ok(None)`.
    pub async fn logout(self, data_dir: &Path) -> Result<Option<Error>> {
        let Auth::SignedIn(signed_in) = &self.auth else {
            return Ok(None);
        };
        let account = signed_in.sign_in.keyring_account();
        let revoked = async {
            // Refresh first: the bearer must be valid, and the token to revoke is the newest.
            self.bearer().await?;
            let refresh_token = signed_in.refresh_token().await?;
            let body = LogoutRequest {
                refresh_token: Some(refresh_token.expose_secret().to_owned()),
            };
            self.request_raw(Method::POST, "v1/auth/logout", Some(&body), true)
                .await
                .map(drop)
        }
        .await;
        let keyring = signed_in.keyring.clone();
        blocking(move || keyring.delete(&account)).await?;
        SignIn::remove(data_dir)?;
        Ok(revoked.err())
    }

    /// A bearer token valid for at least the renewal margin.
    async fn bearer(&self) -> Result<SecretString> {
        let signed_in = match &self.auth {
            Auth::ApiToken(token) => return Ok(token.clone()),
            Auth::Anonymous => return Err(Error::NotSignedIn),
            Auth::SignedIn(s) => s,
        };
        if let Some(token) = signed_in.fresh(Instant::now()) {
            return Ok(token);
        }
        let _one_refresher = signed_in.refresh_lock.lock().await;
        if let Some(token) = signed_in.fresh(Instant::now()) {
            return Ok(token); // another task refreshed while we waited
        }
        // One refresher across processes too: held until the rotated token is stored (dropping
        // the file unlocks it, also when this future is dropped or returns early). Only then is
        // the refresh token read: another process may have rotated it while we waited.
        let _one_process = signed_in.lock_across_processes().await?;
        let refresh_token = signed_in.refresh_token().await?;
        let request = TokenRequest::RefreshToken {
            refresh_token: refresh_token.expose_secret().to_owned(),
        };
        let sent = Instant::now();
        // Sent once, never retried: the service rotates the refresh token on every use and
        // treats a second presentation of it as theft, revoking the whole sign-in. A refresh
        // that fails in transit is an error now; the next call refreshes again.
        let reply = Box::pin(self.call::<_, TokenResponse>(
            Method::POST,
            "v1/auth/token",
            Some(&request),
            false,
            Call::ONCE,
        ))
        .await;
        let tokens = match reply {
            Ok(tokens) => tokens,
            Err(Error::Service { error, .. }) if is_sign_in_over(error.code) => {
                return Err(Error::SignInExpired {
                    user: signed_in.sign_in.user.clone(),
                    server: urls::redact(&self.server),
                    reason: error.message,
                });
            }
            Err(e) => return Err(e),
        };
        let token = signed_in.accept(tokens, sent).await?;
        let bearer = token.token.clone();
        *signed_in.current.write().unwrap_or_else(|p| p.into_inner()) = Some(token);
        tracing::debug!(user = %signed_in.sign_in.user, "access token refreshed");
        Ok(bearer)
    }

    /// Forgets the in-memory access token (after the service said it expired).
    fn invalidate(&self) {
        if let Auth::SignedIn(s) = &self.auth {
            *s.current.write().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Sends a JSON request and parses a JSON answer, with retries (see [`RetryPolicy`]).
    pub(crate) async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        authenticated: bool,
    ) -> Result<T> {
        self.call(method, path, body, authenticated, Call::RETRIED)
            .await
    }

    /// Sends a JSON request as `how` says and parses a JSON answer.
    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        authenticated: bool,
        how: Call,
    ) -> Result<T> {
        let (from, bytes) = self
            .call_raw(method, path, body, authenticated, how)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| json_error(&from, &e))
    }

    /// Sends a JSON request, with retries; the answer's body when it succeeded (2xx).
    pub(crate) async fn request_raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        authenticated: bool,
    ) -> Result<(String, Bytes)> {
        self.call_raw(method, path, body, authenticated, Call::RETRIED)
            .await
    }

    /// Sends a JSON request as `how` says; the answer's body when it succeeded (2xx).
    async fn call_raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        authenticated: bool,
        how: Call,
    ) -> Result<(String, Bytes)> {
        let url = self
            .server
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::Invalid(format!("bad API path {path:?}: {e}")))?;
        let what = format!("{method} {}", urls::redact(&url));
        let body = match body {
            Some(b) => Some(Bytes::from(serde_json::to_vec(b).map_err(|e| {
                Error::Invalid(format!("{what}: cannot encode the request: {e}"))
            })?)),
            None => None,
        };
        let mut retry = Retry::new(if how.retried {
            self.retry
        } else {
            RetryPolicy {
                max_attempts: 1,
                ..self.retry
            }
        });
        let mut refreshed = false;
        loop {
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(timeout) = how.timeout {
                req = req.timeout(timeout);
            }
            if authenticated {
                let bearer = self.bearer().await?;
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {}", bearer.expose_secret())).map_err(
                        |_| Error::Invalid("the token is not a valid header value".into()),
                    )?;
                value.set_sensitive(true);
                req = req.header(AUTHORIZATION, value);
            }
            if let Some(body) = &body {
                req = req
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            tracing::debug!(request = %what, "service call");
            let failure = match req.send().await {
                Err(e) if e.is_builder() => {
                    return Err(Error::Network {
                        what,
                        source: e.without_url(),
                    });
                }
                Err(e) => e.without_url().to_string(),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let reply = http::read_capped(resp, MAX_REPLY_BYTES).await;
                    tracing::debug!(request = %what, status, "service answer");
                    match reply {
                        Ok(bytes) if (200..300).contains(&status) => return Ok((what, bytes)),
                        Err(http::ReadError::TooLarge(cap)) => {
                            return Err(Error::BadReply {
                                from: what,
                                what: format!("HTTP {status} with a body larger than {cap} bytes"),
                            });
                        }
                        Err(e @ http::ReadError::Transport(_)) => e.to_string(),
                        Ok(bytes) => {
                            let parsed = serde_json::from_slice::<ApiError>(&bytes);
                            match parsed {
                                Ok(error)
                                    if status == 401
                                        && error.code == ErrorCode::TokenExpired
                                        && authenticated
                                        && !refreshed
                                        && matches!(self.auth, Auth::SignedIn(_)) =>
                                {
                                    refreshed = true;
                                    self.invalidate();
                                    continue;
                                }
                                // A sign-in refused after failed attempts names its wait;
                                // retrying sooner meets the same answer, so say it at once.
                                Ok(error)
                                    if error.code == ErrorCode::RateLimited && !authenticated =>
                                {
                                    return Err(Error::Service { status, error });
                                }
                                Ok(error) if !http::is_retryable_status(status) => {
                                    return Err(Error::Service { status, error });
                                }
                                Ok(error) => format!("HTTP {status}: {error}"),
                                Err(e) if !http::is_retryable_status(status) => {
                                    return Err(Error::BadReply {
                                        from: what,
                                        what: format!(
                                            "HTTP {status} without a valid error body ({})",
                                            json_error_kind(&e)
                                        ),
                                    });
                                }
                                Err(_) => format!("HTTP {status}"),
                            }
                        }
                    }
                }
            };
            match retry.failed(Instant::now()) {
                Some(delay) => {
                    tracing::info!(request = %what, error = %failure, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                }
                None => {
                    return Err(Error::RetriesExhausted {
                        what,
                        attempts: retry.attempts(),
                        last: failure,
                    });
                }
            }
        }
    }
}

/// How one service call is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Call {
    /// Whether failures worth retrying are retried (see [`RetryPolicy`]); when not, the request
    /// is sent exactly once.
    retried: bool,
    /// Total time allowed for each attempt, instead of the service client's 120 s.
    timeout: Option<Duration>,
}

impl Call {
    /// The usual: retried.
    pub(crate) const RETRIED: Self = Self {
        retried: true,
        timeout: None,
    };
    /// Exactly one attempt: for requests that must never reach the service twice.
    pub(crate) const ONCE: Self = Self {
        retried: false,
        timeout: None,
    };

    /// Retried, each attempt allowed `timeout` in all.
    pub(crate) const fn retried_within(timeout: Duration) -> Self {
        Self {
            retried: true,
            timeout: Some(timeout),
        }
    }
}

impl SignedIn {
    fn fresh(&self, now: Instant) -> Option<SecretString> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current
            .as_ref()
            .filter(|t| now < t.renew_at)
            .map(|t| t.token.clone())
    }

    /// Waits for the exclusive lock on `signin.lock` (created when missing); it is held until
    /// the returned file is dropped. A process that dies holding it releases it with it.
    async fn lock_across_processes(&self) -> Result<File> {
        let path = self.refresh_lock_file.clone();
        blocking(move || {
            let locked = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .and_then(|file| file.lock().map(|()| file));
            locked.map_err(|e| Error::Settings {
                detail: format!("cannot lock the sign-in for a refresh: {e}"),
                path,
            })
        })
        .await
    }

    async fn refresh_token(&self) -> Result<SecretString> {
        let keyring = self.keyring.clone();
        let account = self.sign_in.keyring_account();
        blocking(move || keyring.get(&account))
            .await?
            .ok_or(Error::NotSignedIn)
    }

    /// Checks a token answer and saves its refresh token; the access token to use.
    async fn accept(&self, tokens: TokenResponse, sent: Instant) -> Result<AccessToken> {
        if !tokens.token_type.eq_ignore_ascii_case("bearer") || tokens.access_token.is_empty() {
            return Err(Error::BadReply {
                from: "POST /v1/auth/token".into(),
                what: format!("unexpected token type {:?}", tokens.token_type),
            });
        }
        let keyring = self.keyring.clone();
        let account = self.sign_in.keyring_account();
        let refresh = SecretString::from(tokens.refresh_token);
        blocking(move || keyring.set(&account, &refresh)).await?;
        let ttl = Duration::from_secs(tokens.expires_in).min(MAX_TTL);
        Ok(AccessToken {
            token: SecretString::from(tokens.access_token),
            renew_at: renew_at(sent, ttl),
        })
    }
}

/// Answers to a refresh that mean "sign in again". Not `device_revoked`: signing in again is
/// no help there, so the service's own words (ask the administrator) go up as they are.
fn is_sign_in_over(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::TokenRevoked
            | ErrorCode::TokenExpired
            | ErrorCode::Unauthenticated
            | ErrorCode::InvalidCredentials
    )
}

/// Runs a keyring call (Secret Service calls block on D-Bus) or a file lock off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::Keyring {
            detail: format!("keyring call failed: {e}"),
        })
    })
}

/// A JSON error that never quotes the reply (it could hold a token).
pub(crate) fn json_error(from: &str, e: &serde_json::Error) -> Error {
    Error::BadReply {
        from: from.to_owned(),
        what: format!("not the expected JSON ({})", json_error_kind(e)),
    }
}

fn json_error_kind(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "wrong shape",
        serde_json::error::Category::Eof => "truncated",
    };
    format!("{kind} at line {}, column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests;
