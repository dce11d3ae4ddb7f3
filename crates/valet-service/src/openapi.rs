//! The OpenAPI document, generated from the handlers and the protocol types, served at
//! `GET /openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

/// The service's API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Valet Upload service", description = "Signs users in, issues upload keys (pre-signed URLs) for parts, verifies completed uploads."),
    paths(
        api::auth::token,
        api::auth::sso_info,
        api::auth::logout,
        api::auth::me,
        api::uploads::create,
        api::uploads::list,
        api::uploads::status,
        api::uploads::abort,
        api::keys::issue,
        api::complete::complete,
        api::healthz,
    ),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the paths refer to.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an access token (vat_…) or an API token (vpt_…)"))
                    .build(),
            ),
        );
    }
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route_and_the_protocol_schemas() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for path in [
            "/v1/auth/token",
            "/v1/auth/logout",
            "/v1/auth/sso",
            "/v1/me",
            "/v1/uploads",
            "/v1/uploads/{id}",
            "/v1/uploads/{id}/keys",
            "/v1/uploads/{id}/complete",
            "/healthz",
        ] {
            assert!(doc["paths"][path].is_object(), "missing {path}");
        }
        for schema in [
            "TokenRequest",
            "PartKeys",
            "UploadVerified",
            "ApiError",
            "ErrorCode",
        ] {
            assert!(
                doc["components"]["schemas"][schema].is_object(),
                "missing schema {schema}"
            );
        }
    }
}
