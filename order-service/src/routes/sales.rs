//! Opening a sale (`PUT /api/sales/{product_id}`), reading Redis's view of it,
//! and the admin rebuild of the admission state.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use common::auth::Admin;
use common::domain::{InvalidValue, ProductId};
use common::http::{ApiFailure, Failure, JsonFields};
use serde_json::json;

use crate::admission::rebuild::{RebuildError, Scope};
use crate::sales::SaleError;
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

fn bounded(field: &'static str, value: i64, min: i64) -> Result<u32, InvalidValue> {
    if value < min || value > i64::from(i32::MAX) {
        return Err(InvalidValue {
            field,
            reason: format!("must be between {min} and {}, got {value}", i32::MAX),
        });
    }
    Ok(value as u32)
}

/// `PUT /api/sales/{product_id}` `{"stock": int >= 0, "per_user_limit": int >= 1 (optional)}`:
/// sets the stock in stock-service, records the sale, and opens it in Redis.
/// A 200 means all three are done; on an error, repeating the call is safe.
pub async fn open_sale(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, SaleApiError> {
    let product = ProductId::parse_text(&path)?;
    let fields = JsonFields::of(&body)?;
    let stock = bounded("stock", fields.int("stock")?, 0)?;
    let limit = match body.get("per_user_limit") {
        None | Some(serde_json::Value::Null) => state.admission_settings.default_per_user_limit,
        Some(_) => bounded("per_user_limit", fields.int("per_user_limit")?, 1)?,
    };
    state.sales.open(product, stock, limit).await?;
    Ok(HttpResponse::Ok()
        .json(json!({"product_id": product, "stock": stock, "per_user_limit": limit})))
}

/// `GET /api/sales/{product_id}`: Redis's view — admissible stock, limit, reserved orders.
pub async fn get_sale(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, SaleApiError> {
    let raw = path.into_inner();
    let product = ProductId::parse_text(&raw).map_err(|_| SaleApiError::NotOnSale(raw.clone()))?;
    match state.sales.view(product).await? {
        Some(view) => Ok(HttpResponse::Ok().json(json!({
            "product_id": product, "stock": view.stock, "per_user_limit": view.per_user_limit,
            "reserved_orders": view.reserved_orders,
        }))),
        None => Err(SaleApiError::NotOnSale(raw)),
    }
}

/// `GET /api/sales`: every sale (newest first) with Redis's view of it, for
/// the order page's product picker.
pub async fn list_sales(state: web::Data<AppState>) -> Result<HttpResponse, SaleApiError> {
    let sales: Vec<_> = state
        .sales
        .list()
        .await?
        .into_iter()
        .map(|(product, opened_stock, view)| {
            json!({
                "product_id": product, "stock": view.stock, "per_user_limit": view.per_user_limit,
                "reserved_orders": view.reserved_orders, "opened_stock": opened_stock,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "sales": sales })))
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
