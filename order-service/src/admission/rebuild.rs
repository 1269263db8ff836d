//! Rebuilding the Redis admission state from the databases, after Redis lost
//! it (restart, flush) — automatically by [`keep_ready`], or by the admin
//! endpoint.
//!
//! For each sale (order DB `sales`), wait until stock-service has applied
//! every committed order of the product (so the stock DB is final), then set:
//! stock = the stock DB's count, per-user holdings and reservations = the
//! product's NEW/PAID orders. Finally mark the state ready. Admission stays
//! closed (`SALE_NOT_READY`) until then, so nothing is admitted on a guess.

use std::time::{Duration, Instant};

use common::domain::ProductId;
use redis::RedisError;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use super::AdmissionGate;
use crate::stock_client::{StockClient, StockClientError};
use crate::store::{count_for_product, per_product};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("another rebuild is running")]
    Busy,
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("order database: {0}")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Stock(#[from] StockClientError),
    #[error(
        "product {product}: stock-service has applied {applied} of {committed} orders after {waited:?}"
    )]
    NotQuiet {
        product: i64,
        applied: i64,
        committed: i64,
        waited: Duration,
    },
}

struct Holding {
    tx_no: String,
    user_id: i64,
    count: i64,
}

/// Rebuilds every sale's admission state and marks it ready; returns how many sales.
#[tracing::instrument(skip_all)]
pub async fn rebuild(
    gate: &AdmissionGate,
    db: &DatabaseConnection,
    stock: &StockClient,
    quiet_timeout: Duration,
) -> Result<usize, RebuildError> {
    let keys = gate.keys();
    let mut redis = gate.redis();
    let locked: bool = redis::cmd("SET")
        .arg(keys.rebuild_lock())
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(quiet_timeout.as_millis() as u64 + 30_000)
        .query_async::<Option<String>>(&mut redis)
        .await?
        .is_some();
    if !locked {
        return Err(RebuildError::Busy);
    }
    let result = rebuild_locked(gate, db, stock, quiet_timeout).await;
    let _ = redis::cmd("DEL")
        .arg(keys.rebuild_lock())
        .query_async::<()>(&mut redis)
        .await;
    result
}

async fn rebuild_locked(
    gate: &AdmissionGate,
    db: &DatabaseConnection,
    stock: &StockClient,
    quiet_timeout: Duration,
) -> Result<usize, RebuildError> {
    let keys = gate.keys();
    let sales = db
        .query_all_raw(Statement::from_string(
            DbBackend::MySql,
            "SELECT product_id, per_user_limit FROM sales ORDER BY product_id",
        ))
        .await?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for row in &sales {
        let product = ProductId::parse(row.try_get::<i64>("", "product_id")?)
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        let limit = row.try_get::<i32>("", "per_user_limit")?;
        let level = wait_until_applied(db, stock, product, quiet_timeout).await?;
        let holdings = db
            .query_all_raw(common::db::stmt(
                "SELECT tx_no, user_id, pay_count FROM orders WHERE product_id = ? AND status IN ('NEW', 'PAID')",
                [product.get().into()],
            ))
            .await?
            .iter()
            .map(|r| {
                Ok(Holding {
                    tx_no: r.try_get("", "tx_no")?,
                    user_id: r.try_get("", "user_id")?,
                    count: i64::from(r.try_get::<i32>("", "pay_count")?),
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        pipe.del(&[
            keys.sale(product),
            keys.users(product),
            keys.reservations(product),
        ])
        .ignore()
        .hset_multiple(
            keys.sale(product),
            &[("stock", level), ("limit", i64::from(limit))],
        )
        .ignore();
        for holding in &holdings {
            pipe.hincr(keys.users(product), holding.user_id, 1)
                .ignore()
                .hset(
                    keys.reservations(product),
                    &holding.tx_no,
                    format!("{}:{}", holding.user_id, holding.count),
                )
                .ignore();
        }
        tracing::info!(%product, stock = level, holdings = holdings.len(), "sale rebuilt");
    }
    pipe.set(keys.ready(), chrono::Utc::now().to_rfc3339())
        .ignore();
    pipe.query_async::<()>(&mut gate.redis()).await?;
    tracing::info!(sales = sales.len(), "admission state rebuilt");
    Ok(sales.len())
}

/// Waits until stock-service has applied every committed order of `product`
/// (creations and cancellations);
/// returns the then-final stock.
pub(crate) async fn wait_until_applied(
    db: &DatabaseConnection,
    stock: &StockClient,
    product: ProductId,
    timeout: Duration,
) -> Result<i64, RebuildError> {
    let started = Instant::now();
    loop {
        let committed =
            count_for_product(db, per_product::COMMITTED_MESSAGES, product.get()).await?;
        let level = stock.stock(product).await?;
        let (applied, total) = level.map_or((0, 0), |l| (l.applied_orders, l.total_count));
        if applied >= committed {
            return Ok(total);
        }
        if started.elapsed() > timeout {
            return Err(RebuildError::NotQuiet {
                product: product.get(),
                applied,
                committed,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Rebuilds whenever the ready marker is missing; runs until aborted.
pub async fn keep_ready(
    gate: std::sync::Arc<AdmissionGate>,
    db: DatabaseConnection,
    stock: std::sync::Arc<StockClient>,
    every: Duration,
    quiet_timeout: Duration,
) {
    loop {
        match gate.is_ready().await {
            Ok(true) => {}
            Ok(false) => match rebuild(&gate, &db, &stock, quiet_timeout).await {
                Ok(sales) => tracing::warn!(
                    sales,
                    "admission state was missing; rebuilt from the databases"
                ),
                Err(RebuildError::Busy) => {}
                Err(err) => {
                    tracing::error!(%err, "rebuilding the admission state failed; orders stay refused")
                }
            },
            Err(err) => tracing::warn!(%err, "cannot read the admission state"),
        }
        tokio::time::sleep(every).await;
    }
}
