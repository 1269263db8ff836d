//! `GET /api/stock/{product_id}`, the admin `PUT /api/stock/{product_id}`,
//! the applied query, the stats, and the admin `GET /api/stock/tx-log` the
//! consistency auditor pages through.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use common::auth::Admin;
use common::domain::{InvalidValue, ProductId};
use common::http::{ApiFailure, Failure, JsonFields};

use crate::metrics::StockMetrics;
use crate::store;
use common::deps::Dependencies;

#[derive(Debug, thiserror::Error)]
pub enum StockApiError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error("product {0} has no stock record")]
    NotFound(String),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

common::impl_response_error!(StockApiError);

impl ApiFailure for StockApiError {
    fn failure(&self) -> Failure {
        match self {
            Self::Invalid(err) => Failure::invalid(err),
            Self::NotFound(product) => Failure::new(
                StatusCode::NOT_FOUND,
                "PRODUCT_NOT_FOUND",
                format!("product {product} has no stock record"),
            ),
            Self::Database(err) => Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
                "the stock database is unavailable, retry",
            )
            .error(err),
        }
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(
    deps: web::Data<Dependencies>,
    metrics: web::Data<StockMetrics>,
) -> Result<HttpResponse, StockApiError> {
    let stock = store::all_stock(&deps.db).await?;
    Ok(metrics.render(&stock).into_response())
}

/// `GET /api/admin/metrics`: `/metrics` for an admin (what the gateway exposes).
pub async fn admin_metrics(
    _admin: Admin,
    deps: web::Data<Dependencies>,
    metrics: web::Data<StockMetrics>,
) -> Result<HttpResponse, StockApiError> {
    self::metrics(deps, metrics).await
}

/// `GET /api/stock/stats`: the same figures as JSON, for the dashboard.
pub async fn stats(
    _admin: Admin,
    deps: web::Data<Dependencies>,
    metrics: web::Data<StockMetrics>,
) -> Result<HttpResponse, StockApiError> {
    let stock = store::all_stock(&deps.db).await?;
    Ok(HttpResponse::Ok().json(metrics.to_json(&stock)))
}

pub async fn get_stock(
    deps: web::Data<Dependencies>,
    path: web::Path<String>,
) -> Result<HttpResponse, StockApiError> {
    let raw = path.into_inner();
    let product_id =
        ProductId::parse_text(&raw).map_err(|_| StockApiError::NotFound(raw.clone()))?;
    match store::get_stock(&deps.db, product_id).await? {
        Some(stock) => Ok(HttpResponse::Ok().json(stock)),
        None => Err(StockApiError::NotFound(raw)),
    }
}

/// At most this many tx_nos per `POST /api/stock/applied`.
pub const APPLIED_QUERY_MAX: usize = 1000;

/// The body of a full `POST /api/stock/applied`: 1,000 tx_nos of up to 64
/// characters, quoted, with commas (the default 16 KiB held ~440 generated
/// ones: order-service's redelivery pass was refused with 413 once more than
/// that waited for confirmation — seen in the cluster tests).
pub const APPLIED_BODY_MAX: usize = APPLIED_QUERY_MAX * (64 + 3) + 1024;

/// `POST /api/stock/applied` `{"tx_nos": [string, …]}` → `{"applied": [...]}`:
/// which of these order messages (creations or cancellations) were applied.
pub async fn applied(
    _admin: Admin,
    deps: web::Data<Dependencies>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, StockApiError> {
    let invalid = |reason: String| InvalidValue {
        field: "tx_nos",
        reason,
    };
    let list = body
        .get("tx_nos")
        .and_then(|v| v.as_array())
        .ok_or_else(|| invalid("is required: an array of tx_no strings".into()))?;
    if list.len() > APPLIED_QUERY_MAX {
        return Err(invalid(format!(
            "at most {APPLIED_QUERY_MAX} per request, got {}",
            list.len()
        ))
        .into());
    }
    let tx_nos = list
        .iter()
        .map(|v| {
            v.as_str()
                .and_then(|s| common::domain::TxNo::parse(s).ok())
                .map(|t| t.as_str().to_owned())
                .ok_or_else(|| invalid(format!("not a tx_no: {v}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let applied = store::applied_among(&deps.db, &tx_nos).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "applied": applied })))
}

/// Sets the stock of a product: `{"total_count": int >= 0}` (admins only).
pub async fn set_stock(
    _admin: Admin,
    deps: web::Data<Dependencies>,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, StockApiError> {
    let product_id = ProductId::parse_text(&path)?;
    let total = JsonFields::of(&body)?.int("total_count")?;
    let total_count = u32::try_from(total)
        .ok()
        .filter(|n| *n <= i32::MAX as u32)
        .ok_or(InvalidValue {
            field: "total_count",
            reason: format!("must be between 0 and {}, got {total}", i32::MAX),
        })?;
    let stock = store::set_stock(&deps.db, product_id, total_count).await?;
    Ok(HttpResponse::Ok().json(stock))
}

/// `GET /api/stock/tx-log?since=&product_id=&after=&limit=` (admins): one
/// page of the applied messages, in `tx_no` order — `since` (RFC 3339) keeps
/// rows applied at or after it, `after` continues from a page's `next_after`,
/// `limit` is 1 to 1,000 (default 1,000).
pub async fn tx_log(
    _admin: Admin,
    deps: web::Data<Dependencies>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, StockApiError> {
    use common::stock_log::{AppliedPage, PAGE_MAX};
    let invalid = |field: &'static str, reason: String| InvalidValue { field, reason };
    if let Some(unknown) = query
        .keys()
        .find(|k| !["since", "product_id", "after", "limit"].contains(&k.as_str()))
    {
        return Err(invalid("query", format!("unknown parameter {unknown:?}")).into());
    }
    let since = query
        .get("since")
        .map(|raw| {
            chrono::DateTime::parse_from_rfc3339(raw)
                .map(|t| t.to_utc())
                .map_err(|e| {
                    invalid(
                        "since",
                        format!("must be an RFC 3339 time, got {raw:?}: {e}"),
                    )
                })
        })
        .transpose()?;
    let product = query
        .get("product_id")
        .map(|raw| ProductId::parse_text(raw))
        .transpose()?;
    let after = query
        .get("after")
        .map(|raw| {
            common::domain::TxNo::parse(raw)
                .map(|t| t.as_str().to_owned())
                .map_err(|_| invalid("after", format!("not a tx_no: {raw:?}")))
        })
        .transpose()?;
    let limit = match query.get("limit") {
        None => PAGE_MAX,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=PAGE_MAX).contains(n))
            .ok_or_else(|| invalid("limit", format!("must be 1 to {PAGE_MAX}, got {raw:?}")))?,
    };
    let rows = store::applied_page(&deps.db, since, product, after.as_deref(), limit).await?;
    let next_after = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.tx_no.clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(AppliedPage { rows, next_after }))
}
