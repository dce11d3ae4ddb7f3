//! `POST /v1/auth/token`, `GET /v1/auth/sso`, `POST /v1/auth/logout`, `GET /v1/me`.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde_json::json;
use time::OffsetDateTime;
use valet_protocol::{
    ApiError, ErrorCode, LogoutRequest, Me, SsoInfo, TokenRequest, TokenResponse,
};

use super::{AppState, Body, ClientAddr, Failure};
use crate::audit::{self, Entry, Event};
use crate::auth::{self, Caller, REFRESH_PREFIX, random_id};
use crate::db::{self, tokens, tokens::TokenKind};
use crate::throttle::{Scope, Wait};

/// Sign in with a password, or trade a refresh token for the next pair. Failed attempts in a
/// row make the account and address, or the address, wait (`429 rate_limited` with
/// `Retry-After`; see [`crate::throttle`]).
#[utoipa::path(post, path = "/v1/auth/token", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ApiError),
        (status = 429, body = ApiError, headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn token(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Body(request): Body<TokenRequest>,
) -> Response {
    let user = match &request {
        TokenRequest::Password { username, .. } => Some(username.as_str()),
        _ => None,
    };
    let attempt = match state
        .throttle()
        .begin(user, client.as_deref(), Instant::now())
    {
        Ok(attempt) => attempt,
        Err(wait) => return throttled(wait, user, client.as_deref()),
    };
    let name = user.map(str::to_owned);
    let now = OffsetDateTime::now_utc();
    let result = grant(&state, client.as_deref(), request, now).await;
    match &result {
        Ok(_) => state.throttle().succeeded(attempt),
        Err(failure) if failure.0.code.http_status() == 401 => {
            for locked in state.throttle().failed(attempt, Instant::now()) {
                let mut entry = Entry::new(Event::SignInThrottled, now);
                entry.user = match locked.scope {
                    Scope::Account => name.as_deref(),
                    Scope::Address => None,
                };
                entry.client_addr = client.as_deref();
                entry.detail = Some(json!({
                    "scope": locked.scope.as_str(),
                    "failures": locked.failures,
                    "wait_secs": locked.wait.as_secs_f64(),
                }));
                audit::record_or_warn(state.db(), &entry).await;
            }
        }
        Err(_) => state.throttle().undecided(attempt),
    }
    result.map(Json).into_response()
}

/// `429 rate_limited` with `Retry-After` in whole seconds (rounded up). Not audited one by one:
/// the failure that started the wait was, and an attacker must not fill the log.
fn throttled(wait: Wait, user: Option<&str>, client: Option<&str>) -> Response {
    let secs = wait.retry_after.as_secs() + u64::from(wait.retry_after.subsec_nanos() > 0);
    tracing::info!(
        user,
        client,
        scope = wait.scope.as_str(),
        secs,
        "sign-in refused: waiting after failed attempts"
    );
    let whom = match wait.scope {
        Scope::Account => "for this account from this address",
        Scope::Address => "from this address",
    };
    let mut response = Failure::new(
        ErrorCode::RateLimited,
        format!("too many failed sign-ins {whom}; try again in {secs} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// The grant itself, once the throttle let it through.
async fn grant(
    state: &AppState,
    client: Option<&str>,
    request: TokenRequest,
    now: OffsetDateTime,
) -> Result<TokenResponse, Failure> {
    match request {
        TokenRequest::Password { username, password } => {
            let hash = db::user_password_hash(state.db(), &username).await?;
            let known = hash.is_some();
            if !auth::verify_password(password, hash).await {
                let mut entry = Entry::new(Event::SignInFailed, now);
                entry.user = Some(&username);
                entry.client_addr = client;
                entry.detail = Some(json!({ "known_user": known }));
                audit::record_or_warn(state.db(), &entry).await;
                return Err(Failure::new(
                    ErrorCode::InvalidCredentials,
                    "wrong account name or password",
                ));
            }
            let response = auth::issue_pair(state, &username, &random_id(), now).await?;
            let mut entry = Entry::new(Event::SignIn, now);
            entry.user = Some(&username);
            entry.client_addr = client;
            audit::record(state.db(), &entry).await?;
            Ok(response)
        }
        TokenRequest::Enrollment {
            enrollment_secret,
            device_name,
        } => enroll(state, client, &enrollment_secret, &device_name, now).await,
        TokenRequest::IdToken { id_token, nonce } => {
            sso_sign_in(state, client, &id_token, &nonce, now).await
        }
        TokenRequest::RefreshToken { refresh_token } => {
            if !refresh_token.starts_with(REFRESH_PREFIX) {
                return Err(Failure::new(
                    ErrorCode::Unauthenticated,
                    "not a refresh token",
                ));
            }
            let stored =
                auth::check_token(state.db(), &refresh_token, &[TokenKind::Refresh], now).await?;
            let family = stored.family.clone().unwrap_or_default();
            // Single use: whoever marks it first gets the next pair. A second presentation
            // means the token was copied, so the whole sign-in ends. Marking it used, storing
            // the next pair and auditing are one transaction: a failure part way leaves the
            // token unused, so the client's retry is not mistaken for reuse.
            let pair = auth::NewPair::new(state, &stored.user, now);
            let mut entry = Entry::new(Event::TokenRefreshed, now);
            entry.user = Some(&stored.user);
            entry.client_addr = client;
            if !tokens::rotate(
                state.db(),
                &stored.id,
                &pair.rows(&family, now),
                &entry,
                now,
            )
            .await?
            {
                tokens::revoke_family(state.db(), &family, now).await?;
                let mut entry = Entry::new(Event::RefreshTokenReused, now);
                entry.user = Some(&stored.user);
                entry.client_addr = client;
                audit::record_or_warn(state.db(), &entry).await;
                return Err(Failure::new(
                    ErrorCode::TokenRevoked,
                    "refresh token already used; the sign-in was revoked, sign in again",
                ));
            }
            Ok(pair.response)
        }
    }
}

/// Enrolls a managed device: a known enrollment secret gets the device its own account
/// (`NAME-HOSTNAME`, made on first enrollment) and a sign-in of its own, recorded as a device
/// an administrator can list and revoke.
async fn enroll(
    state: &AppState,
    client: Option<&str>,
    secret: &str,
    device_name: &str,
    now: OffsetDateTime,
) -> Result<TokenResponse, Failure> {
    let presented = auth::token_hash(secret);
    let Some(enrollment) = state
        .config()
        .enrollment
        .iter()
        .find(|e| e.secret_sha256.eq_ignore_ascii_case(&presented))
    else {
        let mut entry = Entry::new(Event::DeviceEnrollmentFailed, now);
        entry.client_addr = client;
        entry.detail =
            Some(json!({ "device_name": device_name.chars().take(64).collect::<String>() }));
        audit::record_or_warn(state.db(), &entry).await;
        return Err(Failure::new(
            ErrorCode::InvalidCredentials,
            "unknown enrollment secret; check the policy file's sign_in.enrollment_secret",
        ));
    };
    let Some(user) = auth::device_account(&enrollment.name, device_name) else {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            "device_name must hold letters or digits",
        ));
    };
    if db::devices::is_account_shut_out(state.db(), &user).await? {
        let mut entry = Entry::new(Event::DeviceEnrollmentFailed, now);
        entry.user = Some(&user);
        entry.client_addr = client;
        entry.detail = Some(json!({ "revoked": true }));
        audit::record_or_warn(state.db(), &entry).await;
        return Err(Failure::new(
            ErrorCode::DeviceRevoked,
            "this device was revoked by an administrator and cannot enroll again until they \
             let it back in",
        ));
    }
    if db::user_password_hash(state.db(), &user).await?.is_none() {
        db::insert_user(state.db(), &user, auth::NO_PASSWORD, now).await?;
    }
    let family = random_id();
    let response = auth::issue_pair(state, &user, &family, now).await?;
    db::devices::insert(
        state.db(),
        &db::devices::Device {
            id: family.clone(),
            user: user.clone(),
            name: device_name.chars().take(255).collect(),
            enrollment: enrollment.name.clone(),
            enrolled_at: now,
            revoked_at: None,
        },
    )
    .await?;
    let mut entry = Entry::new(Event::DeviceEnrolled, now);
    entry.user = Some(&user);
    entry.client_addr = client;
    entry.detail = Some(json!({ "device": family, "enrollment": enrollment.name }));
    audit::record(state.db(), &entry).await?;
    Ok(response)
}

/// The OpenID Connect provider this deployment signs people in with, for clients that have no
/// policy naming it.
#[utoipa::path(get, path = "/v1/auth/sso",
    responses((status = 200, body = SsoInfo), (status = 404, body = ApiError)))]
pub async fn sso_info(State(state): State<AppState>) -> Result<Json<SsoInfo>, Failure> {
    let Some(sso) = &state.config().sso else {
        return Err(Failure::new(
            ErrorCode::NotFound,
            "this service has no single sign-on ([sso] is not configured)",
        ));
    };
    Ok(Json(SsoInfo {
        issuer: sso.issuer.clone(),
        client_id: sso.client_id.clone(),
        scopes: sso.scopes.clone(),
    }))
}

/// Single sign-on: a valid ID token from the configured provider gets the account bound to its
/// `(iss, sub)`, made on the first sign-in, and a sign-in of our own (see [`crate::sso`]).
async fn sso_sign_in(
    state: &AppState,
    client: Option<&str>,
    id_token: &str,
    nonce: &str,
    now: OffsetDateTime,
) -> Result<TokenResponse, Failure> {
    let Some(verifier) = state.sso() else {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            "this service has no single sign-on ([sso] is not configured)",
        ));
    };
    let identity = match verifier.verify(id_token, nonce, now).await {
        Ok(identity) => identity,
        Err(refusal) => {
            let mut entry = Entry::new(Event::SsoSignInFailed, now);
            entry.client_addr = client;
            entry.detail = Some(json!({ "reason": refusal.to_string() }));
            audit::record_or_warn(state.db(), &entry).await;
            return Err(match refusal {
                crate::sso::Refusal::Token(why) => Failure::new(ErrorCode::InvalidCredentials, why),
                crate::sso::Refusal::Provider(why) => {
                    tracing::warn!(reason = %why, "single sign-on provider unusable");
                    Failure::new(ErrorCode::Internal, why)
                }
            });
        }
    };
    if !db::identities::spend_id_token(
        state.db(),
        &auth::token_hash(id_token),
        identity.expires_at,
        now,
    )
    .await?
    {
        let why = "this ID token was already used to sign in; sign in again";
        let mut entry = Entry::new(Event::SsoSignInFailed, now);
        entry.client_addr = client;
        entry.detail = Some(json!({ "reason": why, "subject": identity.subject }));
        audit::record_or_warn(state.db(), &entry).await;
        return Err(Failure::new(ErrorCode::InvalidCredentials, why));
    }
    let known =
        db::identities::sign_in(state.db(), &identity.issuer, &identity.subject, now).await?;
    let (user, first) = match known {
        Some(user) => (user, false),
        None => {
            let name = crate::sso::account_name(&identity.name_claim);
            let user = db::identities::create_account(
                state.db(),
                &identity.issuer,
                &identity.subject,
                &name,
                auth::NO_PASSWORD,
                now,
            )
            .await?;
            (user, true)
        }
    };
    let response = auth::issue_pair(state, &user, &random_id(), now).await?;
    let mut entry = Entry::new(Event::SsoSignIn, now);
    entry.user = Some(&user);
    entry.client_addr = client;
    entry.detail = Some(json!({
        "issuer": identity.issuer,
        "subject": identity.subject,
        "new_account": first,
    }));
    audit::record(state.db(), &entry).await?;
    Ok(response)
}

/// End a sign-in: the bearer token stops working, and with `refresh_token`, every token of
/// that refresh token's sign-in too.
#[utoipa::path(post, path = "/v1/auth/logout", request_body = LogoutRequest,
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ApiError)))]
pub async fn logout(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    caller: Caller,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<StatusCode, Failure> {
    // Refused like every other body: an ApiError, not the extractor's plain text.
    let body = body.map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::TooLarge
        } else {
            ErrorCode::BadRequest
        };
        Failure::new(code, rejection.body_text())
    })?;
    // The body is optional: a client with no refresh token may send nothing.
    let request: LogoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Failure::new(ErrorCode::BadRequest, format!("invalid body: {e}")))?
    };
    let now = OffsetDateTime::now_utc();
    tokens::revoke(state.db(), &caller.token_id, now).await?;
    if let Some(family) = &caller.family {
        tokens::revoke_family(state.db(), family, now).await?;
    }
    if let Some(refresh) = request.refresh_token {
        let stored = tokens::find_by_hash(state.db(), &auth::token_hash(&refresh)).await?;
        // Only the caller's own sign-ins; someone else's token is ignored, not revoked.
        if let Some(stored) =
            stored.filter(|t| t.user == caller.user && t.kind == TokenKind::Refresh)
            && let Some(family) = &stored.family
        {
            tokens::revoke_family(state.db(), family, now).await?;
        }
    }
    let mut entry = Entry::new(Event::Logout, now);
    entry.user = Some(&caller.user);
    entry.client_addr = client.as_deref();
    audit::record_or_warn(state.db(), &entry).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the bearer token belongs to, and where their uploads land.
#[utoipa::path(get, path = "/v1/me", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ApiError)))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Json<Me> {
    let prefix = format!(
        "{}/{}/",
        state.config().store.prefix.trim_matches('/'),
        caller.user
    );
    Json(Me {
        user: caller.user,
        prefix,
    })
}
