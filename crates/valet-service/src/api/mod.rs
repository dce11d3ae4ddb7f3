//! The HTTP API: one file per area, the router, and what every handler shares (state, error
//! answers, the JSON body extractor, the client address).

pub mod auth;
pub mod complete;
pub mod keys;
pub mod uploads;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use valet_protocol::{ApiError, ErrorCode};

use crate::config::Config;
use crate::db::Db;
use crate::db::uploads::UploadRow;
use crate::store::{ConfiguredStore, Store, Stores};
use crate::{Error, openapi};

/// Largest JSON body accepted: 100 part digests are about 10 KiB, so 1 MiB is plenty.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    stores: Stores,
    config: Config,
    /// Checks ID tokens when `[sso]` is configured; keeps the provider's keys.
    sso: Option<crate::sso::Verifier>,
    /// Uploads whose completion is running now, so a retry in flight is told to wait instead
    /// of completing twice.
    completing: Mutex<HashSet<String>>,
    /// Waits after failed sign-ins.
    throttle: crate::throttle::Throttle,
}

impl AppState {
    /// State over an opened database and the deployment's stores.
    pub fn new(db: Db, stores: Stores, config: Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                stores,
                sso: config.sso.clone().map(crate::sso::Verifier::new),
                throttle: crate::throttle::Throttle::new(config.throttle.clone()),
                config,
                completing: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The `[store]` store.
    pub fn store(&self) -> &Store {
        &self.inner.stores.default_store().store
    }

    /// Every store of the deployment, and which users go where.
    pub fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    /// The store `row` was created on.
    pub(crate) fn store_of(&self, row: &UploadRow) -> Result<&ConfiguredStore, Failure> {
        self.inner.stores.named(row.store.as_deref()).ok_or_else(|| {
            tracing::error!(upload = %row.id, store = ?row.store, "the upload's store is no longer configured");
            Failure::new(
                ErrorCode::StoreUnavailable,
                "the store this upload was created on is no longer configured",
            )
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The sign-in throttle.
    pub fn throttle(&self) -> &crate::throttle::Throttle {
        &self.inner.throttle
    }

    /// The ID token verifier, when the deployment has single sign-on.
    pub fn sso(&self) -> Option<&crate::sso::Verifier> {
        self.inner.sso.as_ref()
    }

    /// Claims the completion of `upload_id`; `None` when one is already running.
    pub(crate) fn claim_completion(&self, upload_id: &str) -> Option<CompletionClaim> {
        let mut running = self
            .inner
            .completing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        running
            .insert(upload_id.to_owned())
            .then(|| CompletionClaim {
                state: self.clone(),
                upload_id: upload_id.to_owned(),
            })
    }
}

/// Released when dropped, whatever path the completion took.
pub(crate) struct CompletionClaim {
    state: AppState,
    upload_id: String,
}

impl Drop for CompletionClaim {
    fn drop(&mut self) {
        let mut running = self
            .state
            .inner
            .completing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        running.remove(&self.upload_id);
    }
}

/// The router with every route and layer. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so audit entries get client addresses.
pub fn router(state: AppState) -> Router {
    let tls = state.config().tls.is_some();
    let router = Router::new()
        .route("/v1/auth/token", post(auth::token))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/sso", get(auth::sso_info))
        .route("/v1/me", get(auth::me))
        .route("/v1/uploads", post(uploads::create).get(uploads::list))
        .route(
            "/v1/uploads/{id}",
            get(uploads::status).delete(uploads::abort),
        )
        .route("/v1/uploads/{id}/keys", post(keys::issue))
        .route("/v1/uploads/{id}/complete", post(complete::complete))
        .route("/openapi.json", get(openapi::serve))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY));
    security_headers(router, tls)
        .layer(TraceLayer::new_for_http())
        // Outermost, so the trace layer already sees Authorization marked sensitive.
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
        ]))
}

/// Headers on every answer, errors included. The API answers JSON to programs, never pages to
/// browsers, so they say: do not guess the type, keep no copy (answers carry tokens and keys),
/// send no referrer, never frame or run anything. HSTS only over TLS (RFC 6797 §7.2: a
/// browser ignores it over plain HTTP, and loopback HTTP is for development).
fn security_headers(router: Router, tls: bool) -> Router {
    use axum::http::{HeaderName, HeaderValue, header};
    use tower_http::set_header::SetResponseHeaderLayer;

    let fixed: [(HeaderName, &'static str); 5] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    let mut router = router;
    for (name, value) in fixed {
        router = router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if tls {
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    router
}

/// Liveness: answers 200 `ok` while the process serves.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> Failure {
    Failure::new(ErrorCode::NotFound, "no such route")
}

/// An error answer: the code's HTTP status with an [`ApiError`] body.
#[derive(Debug)]
pub struct Failure(pub ApiError);

impl Failure {
    /// A failure with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ApiError::new(code, message))
    }

    /// `not_found` for an upload id, whether it does not exist or is someone else's.
    pub fn no_upload() -> Self {
        Self::new(ErrorCode::NotFound, "no such upload")
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match &e {
            Error::StoreUnavailable { operation, .. } | Error::StoreRejected { operation, .. } => {
                tracing::warn!(error = %e, "store call failed");
                let code = e
                    .store_code()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                Self::new(
                    ErrorCode::StoreUnavailable,
                    format!("the store failed during {operation}{code}; retry later"),
                )
            }
            _ => {
                tracing::error!(error = %e, "request failed");
                Self::new(ErrorCode::Internal, "internal error; see the service log")
            }
        }
    }
}

/// A JSON body whose rejections are [`ApiError`]s like every other error.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ErrorCode::TooLarge
                } else {
                    ErrorCode::BadRequest
                };
                Err(Failure::new(code, rejection.body_text()))
            }
        }
    }
}

/// The client's address as the connection shows it (for the audit log), when known.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.to_string()),
        ))
    }
}
