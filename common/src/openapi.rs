//! Pieces both services' OpenAPI documents share (each service builds its own
//! in `routes::openapi` with `utoipa`): the error body, the probes' bodies,
//! the bearer-token security scheme, and the handler serving a document at
//! `GET /api-docs/openapi.json`. These types only describe answers; the
//! handlers build their JSON themselves.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, ToSchema};

/// The name of the security scheme (`Authorization: Bearer <JWT>`); the
/// operations name it as `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

/// The body of every error answer ([`crate::http::Failure`]): `code` says
/// what happened (each operation lists the codes of each status), `message`
/// says it for people; `field` names the refused field of a 422.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
pub struct ErrorSchema {
    /// What happened, e.g. `SOLD_OUT`, `INVALID_FIELD`, `UNAUTHENTICATED`.
    #[schema(example = "INVALID_FIELD")]
    code: String,
    message: String,
    /// The field a 422 `INVALID_FIELD` refused.
    field: Option<String>,
    /// `SALE_NOT_STARTED`: milliseconds until the sale starts.
    starts_in_ms: Option<i64>,
    /// `AMOUNT_MISMATCH`: what paying the order takes, in cents.
    amount_cents: Option<i64>,
}

/// `GET /healthz`: the process is up.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    #[schema(example = "ok")]
    status: String,
}

/// One dependency's readiness.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReadinessCheck {
    /// `database`, `redis` or `broker`.
    name: String,
    ok: bool,
    error: Option<String>,
    /// What the check saw in detail (e.g. each broker's reachability).
    detail: Option<serde_json::Value>,
}

/// `GET /readyz`: 200 when every check passed, 503 otherwise.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Readiness {
    ready: bool,
    checks: Vec<ReadinessCheck>,
}

/// Adds the bearer-token (JWT) security scheme to a document.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A signed token (HS256, RS256 or EdDSA) with `sub` = the buyer's user id, \
                         and `roles` holding `admin` for admins (see README, Identity).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The answer of `GET /api-docs/openapi.json`: `document`, rendered once.
pub fn document_response(document: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document)
}
