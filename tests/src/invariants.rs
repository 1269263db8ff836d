//! The invariant every lifecycle test ends with: for each product, the stock a
//! sale opened with = DB stock + Σ count of its NEW/PAID orders, every
//! committed message was applied by stock-service, and Redis agrees once quiet
//! (its stock equals the DB's, its reservations are exactly the NEW/PAID orders).

use std::time::Duration;

use reqwest::Method;
use sea_orm::DatabaseConnection;
use serde_json::Value;

use crate::services::RunningService;
use crate::{TestEnv, db, eventually};

/// What the databases say about one product at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    pub db_stock: i64,
    pub held_items: i64,
    pub committed_messages: i64,
    pub applied_messages: i64,
}

pub async fn accounts(env: &TestEnv, product: i64) -> Accounts {
    let order_db = db::connect(&env.order_db).await;
    let stock_db = db::connect(&env.stock_db).await;
    let accounts = accounts_in(&order_db, &stock_db, product).await;
    let _ = order_db.close().await;
    let _ = stock_db.close().await;
    accounts
}

/// [`accounts`] on given connections (the cluster tests' databases).
pub async fn accounts_in(
    order_db: &DatabaseConnection,
    stock_db: &DatabaseConnection,
    product: i64,
) -> Accounts {
    Accounts {
        db_stock: db::scalar(
            stock_db,
            "SELECT total_count FROM stock WHERE product_id = ?",
            [product.into()],
        )
        .await,
        held_items: db::scalar(
            order_db,
            "SELECT CAST(SUM(pay_count) AS SIGNED) FROM orders \
             WHERE product_id = ? AND status IN ('NEW', 'PAID')",
            [product.into()],
        )
        .await,
        committed_messages: db::scalar(
            order_db,
            "SELECT COUNT(*) + COUNT(cancel_tx_no) FROM orders WHERE product_id = ?",
            [product.into()],
        )
        .await,
        applied_messages: db::scalar(
            stock_db,
            "SELECT COUNT(*) FROM tx_log WHERE product_id = ?",
            [product.into()],
        )
        .await,
    }
}

/// Waits (up to 60 s) until the pipeline is quiet and every unit is
/// accounted for, in both databases and in Redis; panics with the last
/// reading otherwise.
pub async fn assert_every_unit_accounted(
    env: &TestEnv,
    orders: &RunningService,
    product: i64,
    initial_stock: i64,
) {
    let order_db = db::connect(&env.order_db).await;
    let stock_db = db::connect(&env.stock_db).await;
    assert_accounted_in(
        &order_db,
        &stock_db,
        orders,
        product,
        initial_stock,
        Duration::from_secs(60),
    )
    .await;
    let _ = order_db.close().await;
    let _ = stock_db.close().await;
}

/// [`assert_every_unit_accounted`] on given connections, asking `orders`
/// (a service or the gateway) for Redis's view; waits up to `limit`.
pub async fn assert_accounted_in(
    order_db: &DatabaseConnection,
    stock_db: &DatabaseConnection,
    orders: &RunningService,
    product: i64,
    initial_stock: i64,
    limit: Duration,
) {
    let mut last = None;
    let settled = tokio::time::timeout(limit, async {
        loop {
            let now = accounts_in(order_db, stock_db, product).await;
            let report = redis_report(orders, product).await;
            let quiet = now.applied_messages == now.committed_messages;
            let balanced = common::ledger::StockLedger {
                opened: initial_stock,
                db_stock: now.db_stock,
                sold: now.held_items,
            }
            .accounted();
            let redis_agrees = report["redis_stock"].as_i64() == Some(now.db_stock)
                && report["differences"].as_array().is_some_and(Vec::is_empty);
            if quiet && balanced && redis_agrees {
                return;
            }
            last = Some((now, report));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "product {product}: initial {initial_stock} != DB stock + NEW/PAID items, or not quiet, \
         or Redis disagrees: {last:?}"
    );
}

/// The reconciliation report's entry for `product`; the refusal itself when
/// reconciliation could not run (e.g. 503 while a dependency is away: the
/// caller polls again).
async fn redis_report(orders: &RunningService, product: i64) -> Value {
    let (status, report) = orders.call(Method::GET, "/api/admin/reconcile", None).await;
    if !status.is_success() {
        return serde_json::json!({"refused": status.as_u16(), "answer": report});
    }
    report["products"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["product_id"] == product).cloned())
        .unwrap_or(Value::Null)
}

/// Polls an order until its status is `status`.
pub async fn wait_for_status(
    orders: &RunningService,
    order_no: &str,
    status: &str,
    limit: Duration,
) -> Value {
    eventually(&format!("order {order_no} {status}"), limit, || async {
        let (code, body) = orders
            .call(Method::GET, &format!("/api/orders/{order_no}"), None)
            .await;
        (code.is_success() && body["status"] == status).then_some(body)
    })
    .await
}
