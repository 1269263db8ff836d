//! order-service's OpenAPI 3.1 document, served at `GET /api-docs/openapi.json`
//! (public). The handlers parse their bodies field by field from JSON values;
//! the types here only describe the bodies and answers for the document, and
//! the `#[utoipa::path]` items below describe each route of
//! [`super::configure`] — one each, with every status it can answer and the
//! error `code`s of each (`tests/tests/openapi.rs` fails when a route is not
//! listed here).
//!
//! Each JSON body endpoint can also answer 400 `INVALID_JSON`, 413
//! `PAYLOAD_TOO_LARGE` (16 KiB) and 415 `UNSUPPORTED_MEDIA_TYPE`
//! (`common::http::json_config`); each one with a token 401
//! `UNAUTHENTICATED` (missing, malformed, expired or forged) and 403
//! `FORBIDDEN` (a valid token without the role).
#![allow(dead_code)]

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use common::openapi::{BearerAuth, ErrorSchema, Health, Readiness};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

// ---------------------------------------------------------------- bodies

/// `POST /api/orders`: one order of the signed-in buyer.
#[derive(ToSchema)]
pub struct PlaceOrderRequest {
    #[schema(minimum = 1, example = 1)]
    product_id: i64,
    /// At least 1, at most `rules.max_count_per_order` (else 422).
    #[schema(minimum = 1, maximum = 1_000_000, example = 1)]
    count: i64,
    /// Older clients repeat the buyer; naming another one is 403.
    #[schema(minimum = 1)]
    user_id: Option<i64>,
}

/// `POST /api/orders/{order_no}/pay`.
#[derive(ToSchema)]
pub struct PayOrderRequest {
    /// The payment's own id: 1–64 characters of `[A-Za-z0-9_-]`; paying
    /// again with the same one answers 200 and changes nothing.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pay_no: String,
    /// count × unit price; may be left out only for an order without a price.
    #[schema(minimum = 0, maximum = 4_611_686_018_427_387_903_i64)]
    amount_cents: Option<i64>,
    #[schema(minimum = 1)]
    user_id: Option<i64>,
}

/// `POST /api/orders/{order_no}/cancel` (the body is optional).
#[derive(ToSchema)]
pub struct CancelOrderRequest {
    #[schema(minimum = 1)]
    user_id: Option<i64>,
}

/// `POST /api/auth/dev-token`.
#[derive(ToSchema)]
pub struct DevTokenRequest {
    #[schema(minimum = 1, example = 42)]
    user_id: i64,
    /// With the admin role (default false).
    admin: Option<bool>,
}

/// `PUT /api/sales/{product_id}`: the sale's terms.
#[derive(ToSchema)]
pub struct OpenSaleRequest {
    #[schema(minimum = 0, maximum = 2_147_483_647, example = 100)]
    stock: i64,
    /// Orders one buyer may hold (default `admission.default_per_user_limit`).
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    per_user_limit: Option<i64>,
    /// 1 to 200 printable characters (trimmed).
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    #[schema(minimum = 0, maximum = 100_000_000)]
    list_price_cents: Option<i64>,
    /// At most `list_price_cents`.
    #[schema(minimum = 0, maximum = 100_000_000)]
    sale_price_cents: Option<i64>,
    /// RFC 3339, years 2000–9999 (default: now).
    starts_at: Option<DateTime<Utc>>,
    /// RFC 3339, after `starts_at` (default: open-ended).
    ends_at: Option<DateTime<Utc>>,
}

/// `POST /api/admin/batch`.
#[derive(ToSchema)]
pub struct StartBatchRequest {
    #[schema(minimum = 1, maximum = 20_000)]
    buyers: i64,
    #[schema(minimum = 1, maximum = 256)]
    concurrency: i64,
    #[schema(minimum = 0, maximum = 1_000_000)]
    stock: i64,
}

// ---------------------------------------------------------------- answers

/// `NEW`, `PAID`, `CANCELLED` or `FAILED`.
#[derive(ToSchema)]
pub enum OrderStatus {
    #[schema(rename = "NEW")]
    New,
    #[schema(rename = "PAID")]
    Paid,
    #[schema(rename = "CANCELLED")]
    Cancelled,
    #[schema(rename = "FAILED")]
    Failed,
}

/// Why a CANCELLED/FAILED order was closed.
#[derive(ToSchema)]
pub enum ClosedReason {
    #[schema(rename = "BUYER")]
    Buyer,
    #[schema(rename = "TIMEOUT")]
    Timeout,
    #[schema(rename = "STOCK_INSUFFICIENT")]
    StockInsufficient,
}

/// An order.
#[derive(ToSchema)]
pub struct Order {
    order_no: String,
    tx_no: String,
    user_id: i64,
    product_id: i64,
    count: i64,
    status: OrderStatus,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    pay_no: Option<String>,
    paid_at: Option<DateTime<Utc>>,
    closed_reason: Option<ClosedReason>,
    closed_at: Option<DateTime<Utc>>,
    /// Until when a NEW order can be paid.
    pay_deadline: Option<DateTime<Utc>>,
    unit_price_cents: Option<i64>,
    amount_cents: Option<i64>,
}

/// A placed order: 201 `NEW` (committed; a replay of an `Idempotency-Key`
/// answers the whole [`Order`]) or 202 `PENDING` (the broker's check-back
/// decides; a pending replay carries only `order_no`, `tx_no`, `status`).
#[derive(ToSchema)]
pub struct PlacedOrder {
    order_no: String,
    tx_no: String,
    /// `NEW` (201), `PENDING` (202), or the order's status on a replay.
    status: String,
    user_id: Option<i64>,
    product_id: Option<i64>,
    count: Option<i64>,
    created_at: Option<DateTime<Utc>>,
}

/// `POST /api/orders/{order_no}/cancel` → 202 while the check-back decides.
#[derive(ToSchema)]
pub struct CancelPending {
    order_no: String,
    /// `CANCEL_PENDING`.
    #[schema(example = "CANCEL_PENDING")]
    status: String,
}

/// One page of a buyer's orders, newest first.
#[derive(ToSchema)]
pub struct OrderPage {
    user_id: i64,
    page: i64,
    page_size: i64,
    total: i64,
    orders: Vec<Order>,
}

/// A one-time order token.
#[derive(ToSchema)]
pub struct OrderTokenAnswer {
    /// Send it as `Order-Token` with one `POST /api/orders`.
    order_token: String,
    expires_in_ms: i64,
}

/// A minted token.
#[derive(ToSchema)]
pub struct MintedToken {
    token: String,
    expires_at: DateTime<Utc>,
}

/// `UPCOMING`, `ON_SALE`, `SOLD_OUT` or `ENDED`.
#[derive(ToSchema)]
pub enum SaleState {
    #[schema(rename = "UPCOMING")]
    Upcoming,
    #[schema(rename = "ON_SALE")]
    OnSale,
    #[schema(rename = "SOLD_OUT")]
    SoldOut,
    #[schema(rename = "ENDED")]
    Ended,
}

/// A sale: product, prices, window, state, and the admission view
/// (admissible stock, limit, reserved orders).
#[derive(ToSchema)]
pub struct Sale {
    product_id: i64,
    name: Option<String>,
    list_price_cents: Option<i64>,
    sale_price_cents: Option<i64>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    starts_in_ms: Option<i64>,
    state: SaleState,
    stock: i64,
    per_user_limit: i64,
    reserved_orders: i64,
    opened_stock: i64,
    /// The server's clock (`GET /api/sales/{product_id}` only).
    now: Option<DateTime<Utc>>,
}

/// Every sale, newest first, and the server's clock.
#[derive(ToSchema)]
pub struct SaleList {
    sales: Vec<Sale>,
    now: DateTime<Utc>,
}

/// The terms a sale was opened with.
#[derive(ToSchema)]
pub struct OpenedSale {
    product_id: i64,
    stock: i64,
    per_user_limit: i64,
    name: Option<String>,
    list_price_cents: Option<i64>,
    sale_price_cents: Option<i64>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
}

/// `running`, `settling`, `done` or `failed`.
#[derive(ToSchema)]
pub enum BatchState {
    #[schema(rename = "running")]
    Running,
    #[schema(rename = "settling")]
    Settling,
    #[schema(rename = "done")]
    Done,
    #[schema(rename = "failed")]
    Failed,
}

/// What a finished batch checked.
#[derive(ToSchema)]
pub struct BatchChecks {
    orders_held: i64,
    items_sold: i64,
    db_stock: i64,
    redis_stock: Option<i64>,
    oversold: i64,
    stock_accounted: bool,
    redis_equals_db: bool,
    one_order_per_buyer: bool,
    passed: bool,
}

/// A batch purchase and where it stands.
#[derive(ToSchema)]
pub struct BatchStatus {
    id: String,
    product_id: i64,
    buyers: i64,
    concurrency: i64,
    stock: i64,
    state: BatchState,
    answered: i64,
    created: i64,
    /// Answers other than 201, by code.
    rejections: std::collections::BTreeMap<String, i64>,
    started_at: DateTime<Utc>,
    elapsed_ms: i64,
    requests_per_sec: f64,
    checks: Option<BatchChecks>,
    error: Option<String>,
}

/// `POST /api/admin/admission/rebuild`.
#[derive(ToSchema)]
pub struct Rebuilt {
    rebuilt_sales: i64,
}

/// `POST /api/admin/dead-letters/{msg_id}/resolve`.
#[derive(ToSchema)]
pub struct Resolved {
    msg_id: String,
    resolved: bool,
}

/// A JSON object whose fields are described in README (dashboard, reconcile).
#[derive(ToSchema)]
pub struct Report(std::collections::BTreeMap<String, Value>);

/// The kind of an audit difference.
#[derive(ToSchema)]
pub enum DifferenceKind {
    #[schema(rename = "MISSING_MESSAGE")]
    MissingMessage,
    #[schema(rename = "NOT_APPLIED")]
    NotApplied,
    #[schema(rename = "APPLIED_DIFFERENTLY")]
    AppliedDifferently,
    #[schema(rename = "DUPLICATE_APPLICATION")]
    DuplicateApplication,
    #[schema(rename = "ORPHAN_APPLICATION")]
    OrphanApplication,
    #[schema(rename = "UNKNOWN_MESSAGE")]
    UnknownMessage,
    #[schema(rename = "COMMIT_WITHOUT_ORDER")]
    CommitWithoutOrder,
    #[schema(rename = "ORDER_WITHOUT_COMMIT")]
    OrderWithoutCommit,
    #[schema(rename = "UNDECIDED_HALF_MESSAGE")]
    UndecidedHalfMessage,
    #[schema(rename = "CONSUMER_LAG")]
    ConsumerLag,
    #[schema(rename = "RECONCILE")]
    Reconcile,
    #[schema(rename = "DEAD_LETTERS")]
    DeadLetters,
}

/// One difference: its kind, a sentence, and the kind's own fields
/// (`tx_no`, `order_no`, `message`, `outcome`, `copies`, `age_secs`, …).
#[derive(ToSchema)]
pub struct AuditFinding {
    kind: DifferenceKind,
    summary: String,
    tx_no: Option<String>,
    order_no: Option<String>,
    /// `CREATION` or `CANCELLATION`.
    message: Option<String>,
}

/// One product's figures and differences.
#[derive(ToSchema)]
pub struct AuditProduct {
    product_id: i64,
    committed_creations: i64,
    committed_cancellations: i64,
    /// Committed facts younger than `settle_secs`: not judged yet.
    in_flight: i64,
    /// Judged facts with a message in the order topic.
    in_broker: i64,
    /// Facts with more than one message (order-service resends: not a difference).
    sent_more_than_once: i64,
    /// Judged facts stock-service applied.
    applied: i64,
    undecided_in_flight: i64,
    findings: Vec<AuditFinding>,
}

/// The consistency audit: is every committed creation and cancellation in
/// the order topic and applied once by stock-service, with no half message
/// left undecided, no consumer group behind, Redis in step and no dead letter?
#[derive(ToSchema)]
pub struct AuditAnswer {
    generated_at: DateTime<Utc>,
    product_id: Option<i64>,
    since: Option<DateTime<Utc>>,
    /// Facts younger than this are in flight (`redelivery.after_secs`).
    settle_secs: i64,
    /// Complete and without a difference.
    clean: bool,
    /// Everything in the window was read (`audit.max_messages` not reached).
    complete: bool,
    incomplete_because: Vec<String>,
    differences: i64,
    products: Vec<AuditProduct>,
    /// Differences of no one product (consumer lag, dead letters, commits without order).
    overall: Vec<AuditFinding>,
    /// The order topic's queues and what was read, half messages in flight, lag per group.
    broker: Report,
    /// The reconciliation (Redis against both databases, dead letters).
    reconcile: Report,
}

/// One queue of the order topic on one broker.
#[derive(ToSchema)]
pub struct BrokerQueue {
    broker: String,
    queue_id: i32,
    min_offset: i64,
    max_offset: i64,
}

/// How far behind one consumer group is on one topic.
#[derive(ToSchema)]
pub struct BrokerGroupLag {
    group: String,
    topic: String,
    /// Messages stored and not yet consumed (by the group's committed offsets).
    waiting: i64,
    oldest_waiting_since: Option<DateTime<Utc>>,
}

/// The order topic's transactional half messages nobody decided yet.
#[derive(ToSchema)]
pub struct UndecidedHalves {
    count: i64,
    oldest_born_at: Option<DateTime<Utc>>,
    oldest_age_secs: Option<i64>,
    /// Most check-backs the broker sent for one of them.
    most_checks: i64,
    /// Half and op messages read to find them.
    read: i64,
    /// The read stopped at its budget: `count` is a lower bound.
    truncated: bool,
}

/// The broker's own figures (admin API), without reading the topic's messages.
#[derive(ToSchema)]
pub struct BrokerAnswer {
    read_at: DateTime<Utc>,
    took_ms: i64,
    order_topic: String,
    queues: Vec<BrokerQueue>,
    /// Per watched group (`dead_letters.watched_groups`) and topic.
    lags: Vec<BrokerGroupLag>,
    /// Watched groups whose lag could not be read, and why.
    lag_errors: Vec<String>,
    undecided_halves: UndecidedHalves,
}

// ---------------------------------------------------------------- operations

#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "The process is up", body = Health)))]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "The database, Redis and the broker answer, and the order producer reaches the broker", body = Readiness),
        (status = 503, description = "A check failed (`ready: false`; the checks say which)", body = Readiness),
    ))]
fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text: the counters, and the per-product gauges when they could be read", body = String, content_type = "text/plain")))]
fn metrics() {}

#[utoipa::path(get, path = "/api-docs/openapi.json", tag = "docs",
    responses((status = 200, description = "This document", body = Object)))]
fn openapi_document() {}

#[utoipa::path(post, path = "/api/orders", tag = "orders",
    security(("bearer" = [])),
    params(
        ("Order-Token" = String, Header, description = "A one-time token from `POST /api/sales/{product_id}/order-token` (required unless `rules.require_order_token` is off)"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–64 characters of `[A-Za-z0-9_-]`: a retry with the same key answers the first order again", min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$"),
    ),
    request_body = PlaceOrderRequest,
    responses(
        (status = 201, description = "Placed (`NEW`), or a replay of a keyed order (header `Idempotent-Replayed: true`)", body = PlacedOrder),
        (status = 202, description = "`PENDING`: the broker's check-back decides", body = PlacedOrder),
        (status = 400, description = "`INVALID_JSON`", body = ErrorSchema),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN` (`user_id` names another buyer; the token's subject is no buyer), `ORDER_TOKEN_INVALID` (missing, expired, used, another buyer's or product's)", body = ErrorSchema),
        (status = 404, description = "`PRODUCT_NOT_ON_SALE`", body = ErrorSchema),
        (status = 409, description = "`SOLD_OUT`, `LIMIT_EXCEEDED`, `SALE_NOT_STARTED` (with `starts_in_ms`), `SALE_ENDED`, `ORDER_REJECTED`", body = ErrorSchema),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorSchema),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD` (with `field`), `IDEMPOTENCY_KEY_REUSED`", body = ErrorSchema),
        (status = 429, description = "`RATE_LIMITED` (with `Retry-After`)", body = ErrorSchema),
        (status = 503, description = "`SALE_NOT_READY`, `ADMISSION_UNAVAILABLE`, `IDEMPOTENCY_UNAVAILABLE`, `BROKER_UNAVAILABLE`, `ORDER_NOT_PLACED`, `DATABASE_UNAVAILABLE` (nothing was placed; retry)", body = ErrorSchema),
    ))]
fn place_order() {}

#[utoipa::path(get, path = "/api/orders", tag = "orders",
    security(("bearer" = [])),
    params(
        ("user_id" = Option<i64>, Query, description = "Whose orders: the buyer's own (default) or, for an admin, anyone's (an admin must name one)", minimum = 1),
        ("page" = Option<i64>, Query, description = "Default 1", minimum = 1, maximum = 1_000_000),
        ("page_size" = Option<i64>, Query, description = "Default 20", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "The buyer's orders, newest first", body = OrderPage),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: another buyer's orders", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD` (`user_id`, `page`, `page_size`)", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn list_orders() {}

#[utoipa::path(get, path = "/api/orders/{order_no}", tag = "orders",
    security(("bearer" = [])),
    params(("order_no" = String, Path, description = "The order's number")),
    responses(
        (status = 200, description = "The order (a buyer's own; an admin sees any)", body = Order),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 404, description = "`ORDER_NOT_FOUND` (unknown, rolled back or another buyer's)", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn get_order() {}

#[utoipa::path(post, path = "/api/orders/{order_no}/pay", tag = "orders",
    security(("bearer" = [])),
    params(("order_no" = String, Path, description = "The order's number")),
    request_body = PayOrderRequest,
    responses(
        (status = 200, description = "`PAID` (again with the same `pay_no`: nothing changes)", body = Order),
        (status = 400, description = "`INVALID_JSON`", body = ErrorSchema),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`", body = ErrorSchema),
        (status = 404, description = "`ORDER_NOT_FOUND`", body = ErrorSchema),
        (status = 409, description = "`ORDER_NOT_PAYABLE` (cancelled, failed, past its deadline, paid with another `pay_no`), `AMOUNT_MISMATCH` (with `amount_cents`)", body = ErrorSchema),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorSchema),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD`", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn pay_order() {}

#[utoipa::path(post, path = "/api/orders/{order_no}/cancel", tag = "orders",
    security(("bearer" = [])),
    params(("order_no" = String, Path, description = "The order's number")),
    request_body(content = Option<CancelOrderRequest>, description = "Optional; a body that is not JSON is ignored"),
    responses(
        (status = 200, description = "`CANCELLED`: stock and reservation go back", body = Order),
        (status = 202, description = "`CANCEL_PENDING`: the broker's check-back decides", body = CancelPending),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`", body = ErrorSchema),
        (status = 404, description = "`ORDER_NOT_FOUND`", body = ErrorSchema),
        (status = 409, description = "`ORDER_NOT_CANCELLABLE` (not `NEW`)", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD` (`user_id`)", body = ErrorSchema),
        (status = 503, description = "`ORDER_NOT_CHANGED`, `DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn cancel_order() {}

#[utoipa::path(post, path = "/api/sales/{product_id}/order-token", tag = "orders",
    security(("bearer" = [])),
    params(("product_id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "A token for one order of this buyer and product", body = OrderTokenAnswer),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`", body = ErrorSchema),
        (status = 404, description = "`PRODUCT_NOT_ON_SALE`", body = ErrorSchema),
        (status = 409, description = "`SOLD_OUT`, `LIMIT_EXCEEDED`, `SALE_NOT_STARTED` (with `starts_in_ms`), `SALE_ENDED`", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD` (`product_id`)", body = ErrorSchema),
        (status = 429, description = "`RATE_LIMITED` (with `Retry-After`)", body = ErrorSchema),
        (status = 503, description = "`SALE_NOT_READY`, `ADMISSION_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn order_token() {}

#[utoipa::path(post, path = "/api/auth/dev-token", tag = "auth",
    request_body = DevTokenRequest,
    responses(
        (status = 200, description = "A token minted with the service's key (local use and tests only)", body = MintedToken),
        (status = 400, description = "`INVALID_JSON`", body = ErrorSchema),
        (status = 404, description = "`NOT_FOUND`: dev tokens are off (`auth.dev_tokens`)", body = ErrorSchema),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorSchema),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD`", body = ErrorSchema),
    ))]
fn dev_token() {}

#[utoipa::path(get, path = "/api/sales", tag = "sales",
    responses(
        (status = 200, description = "Every sale, newest first", body = SaleList),
        (status = 503, description = "`DATABASE_UNAVAILABLE`, `ADMISSION_UNAVAILABLE`, `STOCK_SERVICE_UNAVAILABLE`, `SALE_NOT_READY`", body = ErrorSchema),
    ))]
fn list_sales() {}

#[utoipa::path(get, path = "/api/sales/{product_id}", tag = "sales",
    params(("product_id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The sale", body = Sale),
        (status = 404, description = "`PRODUCT_NOT_ON_SALE`", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`, `ADMISSION_UNAVAILABLE`, `STOCK_SERVICE_UNAVAILABLE`, `SALE_NOT_READY`", body = ErrorSchema),
    ))]
fn get_sale() {}

#[utoipa::path(put, path = "/api/sales/{product_id}", tag = "sales",
    security(("bearer" = [])),
    params(("product_id" = i64, Path, minimum = 1)),
    request_body = OpenSaleRequest,
    responses(
        (status = 200, description = "Stock set in stock-service, sale recorded and opened in Redis (on an error, repeating is safe)", body = OpenedSale),
        (status = 400, description = "`INVALID_JSON`", body = ErrorSchema),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 409, description = "`REBUILD_RUNNING`", body = ErrorSchema),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorSchema),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD`", body = ErrorSchema),
        (status = 503, description = "`STOCK_SERVICE_UNAVAILABLE`, `ADMISSION_UNAVAILABLE`, `DATABASE_UNAVAILABLE`, `SALE_NOT_READY`", body = ErrorSchema),
    ))]
fn open_sale() {}

#[utoipa::path(get, path = "/api/admin/metrics", tag = "metrics",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`/metrics` for an admin (what the gateway exposes)", body = String, content_type = "text/plain"),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
    ))]
fn admin_metrics() {}

#[utoipa::path(get, path = "/api/admin/dashboard", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The dashboard's figures (per product: stock in Redis and both databases, orders by status, backlog, verdict)", body = Report),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 503, description = "`FIGURES_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn dashboard() {}

#[utoipa::path(post, path = "/api/admin/batch", tag = "admin",
    security(("bearer" = [])),
    request_body = StartBatchRequest,
    responses(
        (status = 202, description = "Started (header `Location`: where to follow it)", body = BatchStatus,
            headers(("Location" = String, description = "`/api/admin/batch/{id}`"))),
        (status = 400, description = "`INVALID_JSON`", body = ErrorSchema),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorSchema),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD`", body = ErrorSchema),
    ))]
fn start_batch() {}

#[utoipa::path(get, path = "/api/admin/batch/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "Where the batch stands", body = BatchStatus),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 404, description = "`BATCH_NOT_FOUND` (on this instance)", body = ErrorSchema),
    ))]
fn get_batch() {}

#[utoipa::path(post, path = "/api/admin/admission/rebuild", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The Redis admission state rebuilt from the databases", body = Rebuilt),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 409, description = "`REBUILD_RUNNING`", body = ErrorSchema),
        (status = 503, description = "`SALE_NOT_READY`, `STOCK_SERVICE_UNAVAILABLE`, `ADMISSION_UNAVAILABLE`, `DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn rebuild() {}

#[utoipa::path(get, path = "/api/admin/reconcile", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Redis against both databases, per product, and the dead letters", body = Report),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 409, description = "`REBUILD_RUNNING`", body = ErrorSchema),
        (status = 503, description = "`SALE_NOT_READY`, `STOCK_SERVICE_UNAVAILABLE`, `ADMISSION_UNAVAILABLE`, `DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn reconcile() {}

#[utoipa::path(get, path = "/api/admin/audit", tag = "admin",
    security(("bearer" = [])),
    params(
        ("product_id" = Option<i64>, Query, description = "Only this product (default: every product)", minimum = 1),
        ("since" = Option<String>, Query, description = "Only facts committed from then on: an RFC 3339 time or a span back from now (`90s`, `15m`, `2h`, `7d`); default: everything the broker still holds, up to `audit.max_messages`"),
    ),
    responses(
        (status = 200, description = "The audit, whatever it found (`clean`: complete and no difference)", body = AuditAnswer),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 409, description = "`AUDIT_RUNNING`: another audit runs on this instance", body = ErrorSchema),
        (status = 422, description = "`INVALID_FIELD` (`product_id`, `since`, `query`: an unknown parameter)", body = ErrorSchema),
        (status = 503, description = "`BROKER_UNAVAILABLE` (name server or broker not answering), `STOCK_SERVICE_UNAVAILABLE`, `DATABASE_UNAVAILABLE`, `ADMISSION_UNAVAILABLE`, `RECONCILE_UNAVAILABLE`, `AUDIT_TIMED_OUT` (`audit.timeout_secs`: narrow the audit); all but the last with `Retry-After`", body = ErrorSchema),
    ))]
fn audit() {}

#[utoipa::path(get, path = "/api/admin/broker", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The broker's view for the dashboard: the order topic's queues (min/max offsets), each watched group's lag, the undecided half messages; read at most once a second per instance", body = BrokerAnswer),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 503, description = "`BROKER_UNAVAILABLE` (name server or broker not answering, or no answer within 10 s), with `Retry-After`", body = ErrorSchema),
    ))]
fn broker() {}

#[utoipa::path(post, path = "/api/admin/reconcile/repair", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every sale rebuilt, then the reconciliation", body = Report),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 409, description = "`REBUILD_RUNNING`", body = ErrorSchema),
        (status = 503, description = "`SALE_NOT_READY`, `STOCK_SERVICE_UNAVAILABLE`, `ADMISSION_UNAVAILABLE`, `DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn repair() {}

#[utoipa::path(post, path = "/api/admin/dead-letters/{msg_id}/resolve", tag = "admin",
    security(("bearer" = [])),
    params(("msg_id" = String, Path, description = "The dead letter's message id")),
    responses(
        (status = 200, description = "Resolved: reconciliation stops listing it", body = Resolved),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorSchema),
        (status = 403, description = "`FORBIDDEN`: not an admin", body = ErrorSchema),
        (status = 404, description = "`DEAD_LETTER_NOT_FOUND` (unknown or resolved)", body = ErrorSchema),
        (status = 503, description = "`DATABASE_UNAVAILABLE`", body = ErrorSchema),
    ))]
fn resolve_dead_letter() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "seckill order-service", description = "Flash-sale orders: sales, one-time order tokens, orders (place, read, list, pay, cancel), admin operations. Errors answer `{\"code\", \"message\", \"field\"?}`."),
    paths(
        healthz, readyz, metrics, openapi_document,
        place_order, list_orders, get_order, pay_order, cancel_order, order_token,
        dev_token, list_sales, get_sale, open_sale,
        admin_metrics, dashboard, start_batch, get_batch,
        rebuild, reconcile, audit, broker, repair, resolve_dead_letter,
    ),
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
