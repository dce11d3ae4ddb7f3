//! Single sign-on through the system browser: OAuth 2.0 authorization code with PKCE and a
//! loopback redirect, as RFC 8252 asks of native apps, against the organisation's OpenID
//! Connect provider.
//!
//! ```text
//!  SsoSignIn::start ── discovery ─▶ provider          (its endpoints, issuer checked)
//!        │ binds 127.0.0.1:PORT, makes PKCE verifier, state, nonce
//!        ▼
//!  authorization_url() ──▶ the caller opens the browser ──▶ person signs in at the provider
//!                                                               │ 302 to 127.0.0.1:PORT/callback?code&state
//!  finish(timeout) ◀── loopback listener ◀──────────────────────┘
//!        │ state checked; code + verifier ─▶ token endpoint ─▶ ID token
//!        ▼
//!  POST /v1/auth/token {grant_type: id_token, id_token, nonce} ─▶ valet service ─▶ Session
//! ```
//!
//! The app is a public client (no secret; RFC 8252 §8.4): PKCE (S256) binds the code to this
//! process, `state` binds the answer to this sign-in (§8.9), and the `nonce` binds the ID token
//! to it, which the service checks. The provider's tokens are not kept: the service answers its
//! own pair, stored in the keyring like a password sign-in. The page the browser shows after
//! the redirect says whether the whole sign-in worked, not just the provider's part.
//! Nothing secret (code, verifier, tokens, state, nonce) reaches a log or a `Debug` output.

mod loopback;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, Client, ClientId, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use url::Url;
use valet_protocol::{ErrorCode, SsoInfo, TokenRequest};

use self::loopback::{AbortOnDrop, Callback, Page, read_callback, serve};
use super::{Auth, SecretStore, Session, blocking};
use crate::error::{Error, Result};
use crate::http::{self, MAX_REPLY_BYTES};
use crate::settings::SignIn;
use crate::urls;

/// How long [`SsoSignIn::finish`] waits for the browser by default.
pub const SSO_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Which provider to sign in with, and as which client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoParams {
    /// The provider's issuer URL.
    pub issuer: String,
    /// The app's client id at the provider.
    pub client_id: String,
    /// Scopes to ask for; `openid` is always asked.
    pub scopes: Vec<String>,
}

impl From<SsoInfo> for SsoParams {
    fn from(info: SsoInfo) -> Self {
        Self {
            issuer: info.issuer,
            client_id: info.client_id,
            scopes: info.scopes,
        }
    }
}

impl From<&crate::policy::SsoPolicy> for SsoParams {
    fn from(policy: &crate::policy::SsoPolicy) -> Self {
        Self {
            issuer: policy.issuer.clone(),
            client_id: policy.client_id.clone(),
            // The policy lists the scopes besides openid; the email names the account.
            scopes: if policy.scopes.is_empty() {
                vec!["openid".into(), "email".into(), "profile".into()]
            } else {
                policy.scopes.clone()
            },
        }
    }
}

impl SsoParams {
    /// The provider `server` signs people in with (`GET /v1/auth/sso`), for machines without a
    /// policy naming it.
    pub async fn from_service(server: &str) -> Result<Self> {
        let server = urls::parse_server(server)?;
        let session = Session::new(server.clone(), Auth::Anonymous);
        match session
            .request::<(), SsoInfo>(Method::GET, "v1/auth/sso", None, false)
            .await
        {
            Ok(info) => Ok(info.into()),
            Err(Error::Service { error, .. }) if error.code == ErrorCode::NotFound => {
                Err(Error::Sso(format!(
                    "{} has no single sign-on configured",
                    urls::redact(&server)
                )))
            }
            Err(e) => Err(e),
        }
    }

    fn scopes(&self) -> Vec<String> {
        let mut scopes = vec!["openid".to_owned()];
        for scope in &self.scopes {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        scopes
    }
}

/// The ID token among the token endpoint's answer (OpenID Connect Core §3.1.3.3).
#[derive(Clone, Serialize, Deserialize)]
struct IdToken {
    id_token: String,
}

impl std::fmt::Debug for IdToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdToken(<redacted>)")
    }
}

impl ExtraTokenFields for IdToken {}

type OidcClient = Client<
    BasicErrorResponse,
    StandardTokenResponse<IdToken, BasicTokenType>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The part of the discovery document we use (OpenID Connect Discovery §3).
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
}

/// A sign-in waiting for the browser: [`SsoSignIn::start`] it, show or open
/// [`SsoSignIn::authorization_url`], then [`SsoSignIn::finish`] it.
pub struct SsoSignIn {
    server: Url,
    authorization_url: Url,
    oauth: OidcClient,
    verifier: PkceCodeVerifier,
    state: CsrfToken,
    nonce: CsrfToken,
    listener: TcpListener,
    http: reqwest::Client,
    keyring: Arc<dyn SecretStore>,
    data_dir: PathBuf,
}

impl std::fmt::Debug for SsoSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoSignIn")
            .field("server", &urls::redact(&self.server))
            .field("provider", &urls::redact(&self.authorization_url))
            .finish_non_exhaustive()
    }
}

impl SsoSignIn {
    /// Reads the provider's discovery document, checks that the keyring can keep a sign-in,
    /// binds the loopback listener on a random port, and prepares the authorization request.
    /// Nothing is sent to the valet service yet.
    pub async fn start(
        server: &str,
        params: &SsoParams,
        keyring: Arc<dyn SecretStore>,
        data_dir: &Path,
    ) -> Result<Self> {
        let server = urls::parse_server(server)?;
        let issuer = Url::parse(&params.issuer).map_err(|e| Error::BadUrl {
            url: params.issuer.clone(),
            reason: e.to_string(),
        })?;
        urls::check_secure(&issuer)?;
        // Fail before the browser opens when there is nowhere to keep the sign-in.
        let probe = SignIn {
            server: server.to_string(),
            user: "sso".into(),
        }
        .keyring_account();
        let store = keyring.clone();
        blocking(move || store.get(&probe).map(drop)).await?;

        let http = http::service_client();
        let discovery = discover(&http, &params.issuer).await?;
        urls::check_secure(&discovery.authorization_endpoint)?;
        urls::check_secure(&discovery.token_endpoint)?;

        // RFC 8252 §7.3: the loopback IP literal, any port; bound before the browser opens.
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::Sso(format!("cannot listen on loopback for the answer: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::Sso(format!("loopback listener: {e}")))?
            .port();
        let redirect = RedirectUrl::new(format!("http://127.0.0.1:{port}/callback"))
            .map_err(|e| Error::Sso(format!("redirect URL: {e}")))?;
        let oauth: OidcClient = Client::new(ClientId::new(params.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(discovery.authorization_endpoint))
            .set_token_uri(TokenUrl::from_url(discovery.token_endpoint))
            .set_redirect_uri(redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = CsrfToken::new_random();
        let mut request = oauth
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge)
            .add_extra_param("nonce", nonce.secret().clone());
        for scope in params.scopes() {
            request = request.add_scope(Scope::new(scope));
        }
        let (authorization_url, state) = request.url();
        tracing::debug!(provider = %urls::redact(&authorization_url), port, "single sign-on started");
        Ok(Self {
            server,
            authorization_url,
            oauth,
            verifier,
            state,
            nonce,
            listener,
            http,
            keyring,
            data_dir: data_dir.to_owned(),
        })
    }

    /// The address to open in the browser. It carries no secret (the PKCE challenge, state and
    /// nonce only prove something to whoever holds their originals: this process).
    pub fn authorization_url(&self) -> &Url {
        &self.authorization_url
    }

    /// Waits up to `timeout` for the browser to come back, then trades the code for an ID
    /// token and that for a sign-in with the valet service, kept like [`Session::login`]'s.
    ///
    /// An answer with another `state` (not this sign-in) is refused with an error page and the
    /// wait goes on. `error=access_denied` from the provider is [`Error::SsoCancelled`]; any
    /// other failure is [`Error::Sso`] or the service's refusal. The browser's page says which.
    pub async fn finish(self, timeout: Duration) -> Result<Session> {
        let (callbacks_tx, mut callbacks) = mpsc::channel(8);
        let (flushed_tx, mut flushed) = mpsc::channel(8);
        let Self {
            server,
            oauth,
            verifier,
            state,
            nonce,
            listener,
            http,
            keyring,
            data_dir,
            ..
        } = self;
        let serving = AbortOnDrop(tokio::spawn(serve(listener, callbacks_tx, flushed_tx)));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut verifier = Some(verifier);
        let result = loop {
            let Ok(Some(callback)) = tokio::time::timeout_at(deadline, callbacks.recv()).await
            else {
                break Err(Error::Sso(format!(
                    "no answer from the browser within {}; run the sign-in again",
                    humanize(timeout)
                )));
            };
            let outcome = match read_callback(&callback.query, state.secret()) {
                Callback::Stray => {
                    let _ = callback.reply.send(Page::error(
                        StatusCode::BAD_REQUEST,
                        "This answer does not belong to the sign-in in progress.",
                    ));
                    continue;
                }
                Callback::Refused { error, description } if error == "access_denied" => {
                    Err(Error::SsoCancelled(description))
                }
                Callback::Refused { error, description } => Err(Error::Sso(format!(
                    "the sign-in provider answered {error}{}",
                    description.map(|d| format!(": {d}")).unwrap_or_default()
                ))),
                // The loop ends after the first code, so the verifier is always there.
                Callback::Code(code) => match verifier.take() {
                    None => Err(Error::Sso("a second answer to one sign-in".into())),
                    Some(verifier) => match exchange(&oauth, &http, code, verifier).await {
                        Ok(id_token) => {
                            let request = TokenRequest::IdToken {
                                id_token,
                                nonce: nonce.secret().clone(),
                            };
                            Session::sign_in(
                                server.as_str(),
                                "sso",
                                request,
                                keyring.clone(),
                                &data_dir,
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    },
                },
            };
            let page = match &outcome {
                Ok(_) => Page::signed_in(),
                Err(e) => Page::error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            if callback.reply.send(page).is_ok() {
                // Let the page reach the browser before the listener goes away.
                let _ = tokio::time::timeout(Duration::from_secs(2), flushed.recv()).await;
            }
            break outcome;
        };
        drop(serving);
        result
    }
}

async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let from = "the sign-in provider's discovery document";
    let unreachable = |why: String| Error::Sso(format!("{from} ({issuer}): {why}"));
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| unreachable(http::describe(e)))?;
    let status = response.status();
    let body = http::read_capped(response, MAX_REPLY_BYTES)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !status.is_success() {
        return Err(unreachable(format!("HTTP {status}")));
    }
    let discovery: Discovery = serde_json::from_slice(&body)
        .map_err(|e| unreachable(format!("not the expected JSON ({e})")))?;
    if discovery.issuer != issuer {
        return Err(unreachable(format!(
            "it names issuer {:?}, not {issuer:?}",
            discovery.issuer
        )));
    }
    Ok(discovery)
}

/// The code for an ID token at the provider's token endpoint, with the PKCE verifier.
async fn exchange(
    oauth: &OidcClient,
    http: &reqwest::Client,
    code: String,
    verifier: PkceCodeVerifier,
) -> Result<String> {
    let send = |request: HttpRequest| send(http.clone(), request);
    let tokens = oauth
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&send)
        .await
        .map_err(|e| {
            Error::Sso(match e {
                RequestTokenError::ServerResponse(answer) => format!(
                    "the provider refused the code: {}{}",
                    answer.error(),
                    answer
                        .error_description()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
                RequestTokenError::Request(e) => format!("the provider's token endpoint: {e}"),
                // Never the body: it may hold tokens.
                RequestTokenError::Parse(e, _) => {
                    format!("unreadable answer from the token endpoint at {}", e.path())
                }
                RequestTokenError::Other(why) => format!("the provider's token endpoint: {why}"),
            })
        })?;
    // Only the ID token is used: the provider's access token is for the provider, not kept.
    Ok(tokens.extra_fields().id_token.clone())
}

/// A transport failure of the token request, in words without its URL.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

/// oauth2's HTTP client, over our reqwest client (no redirects, timeouts, capped answers).
async fn send(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, Transport> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| Transport(http::describe(e)))?;
    let mut answer = HttpResponse::new(Vec::new());
    *answer.status_mut() = response.status();
    *answer.headers_mut() = response.headers().clone();
    let body = http::read_capped(response, MAX_REPLY_BYTES)
        .await
        .map_err(|e| Transport(e.to_string()))?;
    *answer.body_mut() = body.to_vec();
    Ok(answer)
}

fn humanize(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests;
