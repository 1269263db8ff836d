//! The live figures behind `/dashboard` and `/metrics`: per product the DB
//! stock, the Redis stock, orders by status, committed vs applied messages
//! (the consumer backlog) and the reconciliation verdict; the transactions in
//! flight and check-backs; the dead letters; stock-service's counters.

use std::collections::BTreeMap;

use common::metrics::Exposition;
use sea_orm::DatabaseConnection;
use serde::Serialize;

use crate::admission::reconcile::ProductReport;
use crate::metrics::OrderMetrics;
use crate::sales::{SaleError, Sales};
use crate::store;

#[derive(Debug, Serialize)]
pub struct ProductFigures {
    #[serde(flatten)]
    pub report: ProductReport,
    pub opened_stock: i64,
    pub per_user_limit: i64,
    /// Orders by status: NEW, PAID, CANCELLED, FAILED.
    pub orders: BTreeMap<String, i64>,
    /// Committed messages stock-service has not applied yet.
    pub backlog: i64,
    /// `ok`, `settling` (messages still in flight) or the differences found.
    pub verdict: String,
}

#[derive(Debug, Serialize)]
pub struct Dashboard {
    pub generated_at: chrono::DateTime<chrono::Utc>,
    pub ready: bool,
    pub consistent: bool,
    pub products: Vec<ProductFigures>,
    pub order_service: serde_json::Value,
    pub dead_letter_count: i64,
    pub dead_letters: Vec<crate::dead_letters::DeadLetter>,
    /// stock-service's `/api/stock/stats`, or `{"error": …}` when unreachable
    /// (`null` for `/metrics`, which stock-service serves itself).
    pub stock_service: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Sale(#[from] SaleError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// Reconciliation plus orders by status and each sale's terms.
pub async fn collect(
    sales: &Sales,
    db: &DatabaseConnection,
    metrics: &OrderMetrics,
) -> Result<Dashboard, DashboardError> {
    let report = sales.reconcile().await?;
    let mut by_status = store::orders_by_status(db).await?;
    let terms = store::sale_terms(db).await?;
    let products = report
        .products
        .into_iter()
        .map(|p| {
            let mut orders = by_status.remove(&p.product_id).unwrap_or_default();
            for status in ["NEW", "PAID", "CANCELLED", "FAILED"] {
                orders.entry(status.to_owned()).or_insert(0);
            }
            let (opened_stock, per_user_limit) =
                terms.get(&p.product_id).copied().unwrap_or((0, 1));
            let verdict = if !p.differences.is_empty() {
                p.differences.join("; ")
            } else if !p.quiet {
                "settling".to_owned()
            } else {
                "ok".to_owned()
            };
            ProductFigures {
                backlog: (p.committed_orders - p.applied_orders).max(0),
                report: p,
                opened_stock,
                per_user_limit,
                orders,
                verdict,
            }
        })
        .collect();
    Ok(Dashboard {
        generated_at: chrono::Utc::now(),
        ready: report.ready,
        consistent: report.consistent,
        products,
        order_service: metrics.to_json(),
        dead_letter_count: report.dead_letter_count,
        dead_letters: report.dead_letters,
        stock_service: serde_json::Value::Null,
    })
}

impl Dashboard {
    /// Adds stock-service's own counters (one more HTTP call: the page only).
    pub async fn with_stock_service(mut self, sales: &Sales) -> Self {
        self.stock_service = match sales.stock_service_stats().await {
            Ok(stats) => stats,
            Err(err) => serde_json::json!({"error": err.to_string()}),
        };
        self
    }

    /// The per-product gauges of `/metrics`.
    pub fn render(&self, out: &mut Exposition) {
        let per_product = |value: fn(&ProductFigures) -> Option<i64>| {
            self.products.iter().filter_map(move |p| {
                value(p).map(|v| (vec![("product", p.report.product_id.to_string())], v as f64))
            })
        };
        out.gauge(
            "seckill_redis_stock",
            "Admissible stock in Redis per product on sale.",
            per_product(|p| p.report.redis_stock),
        );
        out.gauge(
            "seckill_db_stock",
            "Stock in the stock DB per product on sale.",
            per_product(|p| p.report.db_stock),
        );
        out.gauge(
            "seckill_message_backlog",
            "Committed order messages stock-service has not applied yet.",
            per_product(|p| Some(p.backlog)),
        );
        out.gauge(
            "seckill_orders",
            "Orders per product and status.",
            self.products.iter().flat_map(|p| {
                p.orders.iter().map(|(status, n)| {
                    (
                        vec![
                            ("product", p.report.product_id.to_string()),
                            ("status", status.clone()),
                        ],
                        *n as f64,
                    )
                })
            }),
        );
        out.gauge(
            "seckill_sale_closed",
            "1 while a sale's admission is closed for a rebuild or blocked (orders get SALE_NOT_READY).",
            per_product(|p| Some(i64::from(p.report.admission != "open"))),
        );
        out.gauge(
            "seckill_unapplied_messages",
            "Committed messages stock-service has not applied after the redelivery delay (being resent).",
            per_product(|p| Some(p.report.unapplied.len() as i64)),
        );
        out.gauge(
            "seckill_reconcile_differences",
            "Differences reconciliation finds per product (0 = consistent).",
            per_product(|p| Some(p.report.differences.len() as i64)),
        );
        out.gauge(
            "seckill_dead_letters_unresolved",
            "Stuck messages (DLQ, discarded transactions) not yet resolved.",
            [(vec![], self.dead_letter_count as f64)],
        );
    }
}
