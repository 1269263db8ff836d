//! stock-service's OpenAPI 3.1 document, served at `GET /api-docs/openapi.json`
//! (public). The handlers parse their bodies field by field from JSON values;
//! the types here only describe the bodies and answers for the document, and
//! the `#[utoipa::path]` items below describe each route of
//! [`super::configure`] with every status it can answer and the error `code`s
//! of each (`tests/tests/openapi.rs` fails when a route is not listed here).
#![allow(dead_code)]

use std::sync::OnceLock;

use common::openapi::{BearerAuth, ErrorSchema, Health, Readiness};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

/// `PUT /api/stock/{product_id}`.
#[derive(ToSchema)]
pub struct SetStockRequest {
    #[schema(minimum = 0, maximum = 2_147_483_647, example = 100)]
    total_count: i64,
}

/// `POST /api/stock/applied`.
#[derive(ToSchema)]
pub struct AppliedRequest {
    /// At most 1,000 tx_nos, each 1–64 characters of `[A-Za-z0-9_-]`.
    #[schema(max_items = 1000)]
    tx_nos: Vec<String>,
}

/// `POST /api/stock/applied` → which of the tx_nos were applied.
#[derive(ToSchema)]
pub struct Applied {
    applied: Vec<String>,
}

/// A product's stock.
#[derive(ToSchema)]
pub struct Stock {
    product_id: i64,
    total_count: i64,
    /// Order messages applied for this product (creations and cancellations).
    applied_orders: i64,
}

/// `DEDUCTED`, `INSUFFICIENT`, `VOIDED` (creations), `RESTORED`,
/// `NOTHING_TO_RESTORE` (cancellations).
#[derive(ToSchema)]
pub enum Outcome {
    #[schema(rename = "DEDUCTED")]
    Deducted,
    #[schema(rename = "INSUFFICIENT")]
    Insufficient,
    #[schema(rename = "VOIDED")]
    Voided,
    #[schema(rename = "RESTORED")]
    Restored,
    #[schema(rename = "NOTHING_TO_RESTORE")]
    NothingToRestore,
}

/// One applied order message (a row of stock-service's `tx_log`).
#[derive(ToSchema)]
pub struct AppliedRow {
    tx_no: String,
    order_no: String,
    product_id: i64,
    count: i64,
    outcome: Outcome,
    applied_at: chrono::DateTime<chrono::Utc>,
}

/// One page of the applied messages, in `tx_no` order.
#[derive(ToSchema)]
pub struct AppliedPage {
    rows: Vec<AppliedRow>,
    /// Pass as `after` for the next page; `null` on the last one.
    next_after: Option<String>,
}

/// The stock figures as JSON, for the dashboard.
#[derive(ToSchema)]
pub struct StockStats(std::collections::BTreeMap<String, Value>);

#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "The process is up", body = Health)))]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "The database and the broker answer", body = Readiness),
        (status = 503, description = "A check failed (`ready: false`; the checks say which)", body = Readiness),
    ))]
fn readyz() {}

#[utoipa::path(get, path = "/api-docs/openapi.json", tag = "docs",
    responses((status = 200, description = "This document", body = Object)))]
fn openapi_document() {}

#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text", body = String, content_type = "text/plain"),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn metrics() {}

#[utoipa::path(get, path = "/api/admin/metrics", tag = "metrics",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`/metrics` for an admin (what the gateway exposes)", body = String, content_type = "text/plain"),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn admin_metrics() {}

#[utoipa::path(get, path = "/api/stock/stats", tag = "stock",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stock figures as JSON", body = StockStats),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn stats() {}

#[utoipa::path(post, path = "/api/stock/applied", tag = "stock",
    security(("bearer" = [])),
    request_body = AppliedRequest,
    responses(
        (status = 200, description = "Which of these order messages (creations or cancellations) were applied", body = Applied),
        (status = 400, description = "`INVALID_JSON`", body = ErrorSchema),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 413, description = "`PAYLOAD_TOO_LARGE` (about 68 KiB)", body = ErrorSchema),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD` (`tx_nos`)", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn applied() {}

#[utoipa::path(get, path = "/api/stock/tx-log", tag = "stock",
    security(("bearer" = [])),
    params(
        ("since" = Option<String>, Query, description = "RFC 3339: only rows applied at or after it"),
        ("product_id" = Option<i64>, Query, description = "Only this product's rows", minimum = 1),
        ("after" = Option<String>, Query, description = "A page's `next_after`: continue after this tx_no"),
        ("limit" = Option<i64>, Query, description = "Rows per page (default 1,000)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "One page of the applied order messages, in tx_no order (for order-service's consistency auditor)", body = AppliedPage),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD` (`since`, `product_id`, `after`, `limit`, `query`: an unknown parameter)", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn tx_log() {}

#[utoipa::path(get, path = "/api/stock/{product_id}", tag = "stock",
    params(("product_id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The product's stock", body = Stock),
        (status = 404, description = "`PRODUCT_NOT_FOUND`", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn get_stock() {}

#[utoipa::path(put, path = "/api/stock/{product_id}", tag = "stock",
    security(("bearer" = [])),
    params(("product_id" = i64, Path, minimum = 1)),
    request_body = SetStockRequest,
    responses(
        (status = 200, description = "The stock as set", body = Stock),
        (status = 400, description = "`INVALID_JSON`", body = ErrorSchema),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorSchema),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD` (`product_id`, `total_count`)", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn set_stock() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "seckill stock-service", description = "Stock of the products on sale, applied exactly once from the order messages. Errors answer `{\"code\", \"message\", \"field\"?}`."),
    paths(healthz, readyz, openapi_document, metrics, admin_metrics, stats, applied, tx_log, get_stock, set_stock),
    components(schemas(ErrorSchema)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The document as JSON (built once).
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

/// `GET /api-docs/openapi.json`.
pub async fn serve() -> actix_web::HttpResponse {
    common::openapi::document_response(document())
}
