//! `POST /v1/auth/token`, `GET /v1/auth/sso`, `POST /v1/auth/logout`, `GET /v1/me`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use time::OffsetDateTime;
use valet_protocol::{
    ApiError, ErrorCode, LogoutRequest, Me, SsoInfo, TokenRequest, TokenResponse,
};

use super::{AppState, Body, ClientAddr, Failure};
use crate::audit::{self, Entry, Event};
use crate::auth::{self, Caller, REFRESH_PREFIX, random_id};
use crate::db::{self, tokens, tokens::TokenKind};

/// Sign in with a password, or trade a refresh token for the next pair.
#[utoipa::path(post, path = "/v1/auth/token", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ApiError)))]
pub async fn token(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Body(request): Body<TokenRequest>,
) -> Result<Json<TokenResponse>, Failure> {
    let now = OffsetDateTime::now_utc();
    match request {
        TokenRequest::Password { username, password } => {
            let hash = db::user_password_hash(state.db(), &username).await?;
            let known = hash.is_some();
            if !auth::verify_password(password, hash).await {
                let mut entry = Entry::new(Event::SignInFailed, now);
                entry.user = Some(&username);
                entry.client_addr = client.as_deref();
                entry.detail = Some(json!({ "known_user": known }));
                audit::record_or_warn(state.db(), &entry).await;
                return Err(Failure::new(
                    ErrorCode::InvalidCredentials,
                    "wrong account name or password",
                ));
            }
            let response = auth::issue_pair(&state, &username, &random_id(), now).await?;
            let mut entry = Entry::new(Event::SignIn, now);
            entry.user = Some(&username);
            entry.client_addr = client.as_deref();
            audit::record(state.db(), &entry).await?;
            Ok(Json(response))
        }
        TokenRequest::Enrollment {
            enrollment_secret,
            device_name,
        } => enroll(
            &state,
            client.as_deref(),
            &enrollment_secret,
            &device_name,
            now,
        )
        .await
        .map(Json),
        TokenRequest::IdToken { id_token, nonce } => {
            sso_sign_in(&state, client.as_deref(), &id_token, &nonce, now)
                .await
                .map(Json)
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
            let pair = auth::NewPair::new(&state, &stored.user, now);
            let mut entry = Entry::new(Event::TokenRefreshed, now);
            entry.user = Some(&stored.user);
            entry.client_addr = client.as_deref();
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
                entry.client_addr = client.as_deref();
                audit::record_or_warn(state.db(), &entry).await;
                return Err(Failure::new(
                    ErrorCode::TokenRevoked,
                    "refresh token already used; the sign-in was revoked, sign in again",
                ));
            }
            Ok(Json(pair.response))
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
    body: axum::body::Bytes,
) -> Result<StatusCode, Failure> {
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
