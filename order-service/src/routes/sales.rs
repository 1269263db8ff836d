//! Opening a sale (`PUT /api/sales/{product_id}`: admins), reading sales
//! (public: product, prices, window, stock left, and the server's `now` so a
//! page can correct its clock), and the admin rebuild of the admission state.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use common::auth::Admin;
use common::domain::{InvalidValue, ProductId};
use common::http::{ApiFailure, Failure};
use serde_json::json;

use crate::admission::rebuild::{RebuildError, Scope};
use crate::domain::{SaleRecord, SaleTerms};
use crate::sales::{SaleError, SaleView};
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum SaleApiError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error("product {0} is not on sale")]
    NotOnSale(String),
    #[error("no unresolved dead letter {0}")]
    DeadLetterNotFound(String),
    #[error(transparent)]
    Sale(#[from] SaleError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

common::impl_response_error!(SaleApiError);

impl ApiFailure for SaleApiError {
    fn failure(&self) -> Failure {
        use StatusCode as S;
        match self {
            Self::Invalid(err) => Failure::invalid(err),
            Self::NotOnSale(product) => Failure::new(
                S::NOT_FOUND,
                "PRODUCT_NOT_ON_SALE",
                format!("product {product} is not on sale"),
            ),
            Self::DeadLetterNotFound(msg_id) => Failure::new(
                S::NOT_FOUND,
                "DEAD_LETTER_NOT_FOUND",
                format!("no unresolved dead letter {msg_id}"),
            ),
            Self::Sale(SaleError::Rebuild(RebuildError::Busy)) => Failure::new(
                S::CONFLICT,
                "REBUILD_RUNNING",
                "a rebuild is already running",
            ),
            Self::Sale(SaleError::Rebuild(err)) => Failure::new(
                S::SERVICE_UNAVAILABLE,
                "SALE_NOT_READY",
                format!("the admission state could not be rebuilt: {err}"),
            )
            .error(err),
            Self::Sale(SaleError::Stock(err)) => Failure::new(
                S::SERVICE_UNAVAILABLE,
                "STOCK_SERVICE_UNAVAILABLE",
                "stock-service could not set the stock; retry",
            )
            .error(err),
            Self::Sale(SaleError::Redis(err)) => Failure::new(
                S::SERVICE_UNAVAILABLE,
                "ADMISSION_UNAVAILABLE",
                "Redis is unavailable; retry",
            )
            .error(err),
            Self::Database(err) | Self::Sale(SaleError::Database(err)) => Failure::new(
                S::SERVICE_UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
                "the order database is unavailable; retry",
            )
            .error(err),
        }
    }
}

/// `PUT /api/sales/{product_id}` `{"stock", "per_user_limit"?, "name"?,
/// "list_price_cents"?, "sale_price_cents"?, "starts_at"?, "ends_at"?}`
/// (see [`SaleTerms::parse`]): sets the stock in stock-service, records the
/// sale, and opens it in Redis. A 200 means all three are done; on an error,
/// repeating the call is safe.
pub async fn open_sale(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, SaleApiError> {
    let product = ProductId::parse_text(&path)?;
    let now = Utc::now();
    let terms = SaleTerms::parse(&body, state.admission_settings.default_per_user_limit, now)?;
    state.sales.open(product, &terms).await?;
    Ok(HttpResponse::Ok().json(json!({
        "product_id": product, "stock": terms.stock, "per_user_limit": terms.per_user_limit,
        "name": terms.name, "list_price_cents": terms.list_price_cents,
        "sale_price_cents": terms.sale_price_cents, "starts_at": terms.window.starts_at,
        "ends_at": terms.window.ends_at, "now": now,
    })))
}

/// Where a sale stands at `now`.
fn sale_state(sale: &SaleRecord, view: &SaleView, now: DateTime<Utc>) -> &'static str {
    match (sale.window.starts_at, sale.window.ends_at) {
        (Some(start), _) if now < start => "UPCOMING",
        (_, Some(end)) if now >= end => "ENDED",
        _ if view.stock <= 0 => "SOLD_OUT",
        _ => "ON_SALE",
    }
}

/// One sale as the API shows it.
fn sale_json(sale: &SaleRecord, view: &SaleView, now: DateTime<Utc>) -> serde_json::Value {
    json!({
        "product_id": sale.product, "name": sale.name,
        "list_price_cents": sale.list_price_cents, "sale_price_cents": sale.sale_price_cents,
        "starts_at": sale.window.starts_at, "ends_at": sale.window.ends_at,
        "starts_in_ms": sale.window.starts_at.map(|s| (s - now).num_milliseconds().max(0)),
        "state": sale_state(sale, view, now),
        "stock": view.stock, "per_user_limit": view.per_user_limit,
        "reserved_orders": view.reserved_orders, "opened_stock": sale.opened_stock,
    })
}

/// `GET /api/sales/{product_id}`: the sale (product, prices, window, state)
/// with Redis's view — admissible stock, limit, reserved orders — and `now`.
pub async fn get_sale(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, SaleApiError> {
    let raw = path.into_inner();
    let product = ProductId::parse_text(&raw).map_err(|_| SaleApiError::NotOnSale(raw.clone()))?;
    match state.sales.find(product).await? {
        Some((sale, view)) => {
            let now = Utc::now();
            let mut body = sale_json(&sale, &view, now);
            body["now"] = json!(now);
            Ok(HttpResponse::Ok().json(body))
        }
        None => Err(SaleApiError::NotOnSale(raw)),
    }
}

/// `GET /api/sales`: every sale (newest first) as [`get_sale`] shows it, and
/// the server's `now`, for the order page's product cards.
pub async fn list_sales(state: web::Data<AppState>) -> Result<HttpResponse, SaleApiError> {
    let now = Utc::now();
    let sales: Vec<_> = state
        .sales
        .list()
        .await?
        .iter()
        .map(|(sale, view)| sale_json(sale, view, now))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "sales": sales, "now": now })))
}

/// `POST /api/admin/admission/rebuild`: rebuilds the Redis admission state from the databases.
pub async fn rebuild(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SaleApiError> {
    let sales = state.sales.rebuild(Scope::All).await?;
    Ok(HttpResponse::Ok().json(json!({"rebuilt_sales": sales})))
}

/// `GET /api/admin/reconcile`: Redis against both databases, and dead letters.
pub async fn reconcile(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SaleApiError> {
    Ok(HttpResponse::Ok().json(state.sales.reconcile().await?))
}

/// `POST /api/admin/reconcile/repair`: rebuilds every sale, then reconciles.
pub async fn repair(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SaleApiError> {
    Ok(HttpResponse::Ok().json(state.sales.repair().await?))
}

/// `POST /api/admin/dead-letters/{msg_id}/resolve`: an operator handled this
/// stuck message; reconciliation stops listing it.
pub async fn resolve_dead_letter(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, SaleApiError> {
    let msg_id = path.into_inner();
    if crate::dead_letters::resolve(&state.db, &msg_id).await? {
        Ok(HttpResponse::Ok().json(json!({"msg_id": msg_id, "resolved": true})))
    } else {
        Err(SaleApiError::DeadLetterNotFound(msg_id))
    }
}
