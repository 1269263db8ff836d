//! Reconciliation, part of the consistency auditor ([`crate::audit`]): per
//! product on sale, Redis's admission state against the stock DB (through
//! stock-service) and the order DB. Once the pipeline is quiet (every
//! committed order applied), Redis stock must equal the DB stock and Redis's
//! reservations must be exactly the NEW/PAID orders (the ones that are not
//! are named). Repair = [`super::rebuild::rebuild`].
//!
//! It is never `consistent` while a product is not quiet, a committed message
//! older than `redelivery.after_secs` is not applied (each is named), a sale is
//! closed or blocked in Redis, or a dead letter is unresolved (each with the
//! verdict of [`crate::redelivery`]: rolled back, already delivered, resent…).

use std::collections::{HashMap, HashSet};

use sea_orm::DatabaseConnection;
use serde::Serialize;

use super::AdmissionGate;
use super::SaleState;
use super::rebuild::RebuildError;
use crate::stock_client::StockClient;
use crate::store::{self, Confirmed, ProductFigure, count_for_product};

/// Reservations and orders named per product at most.
const NAMED: usize = 20;

#[derive(Debug, Serialize)]
pub struct ProductReport {
    pub product_id: i64,
    pub redis_stock: Option<i64>,
    pub redis_reserved_orders: i64,
    pub redis_reserved_items: i64,
    pub db_stock: Option<i64>,
    pub committed_orders: i64,
    pub applied_orders: i64,
    pub held_orders: i64,
    pub held_items: i64,
    /// PAID orders stock-service found no stock for: each needs a refund.
    pub paid_without_stock: i64,
    /// Every committed order applied by stock-service: the comparison is exact.
    pub quiet: bool,
    /// `open`, `rebuilding` or `blocked: <why>` (orders refused until rebuilt).
    pub admission: String,
    /// Committed messages stock-service has not applied after the redelivery
    /// delay (they are being sent again): `creation <tx_no> (order <order_no>)`.
    pub unapplied: Vec<String>,
    /// Reservations (by tx_no) with no NEW/PAID order behind them, and NEW/PAID
    /// orders (by tx_no) with no reservation: at most [`NAMED`] of each.
    pub stale_reservations: Vec<String>,
    pub unreserved_orders: Vec<String>,
    pub differences: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// The admission state is present in Redis.
    pub ready: bool,
    pub consistent: bool,
    pub products: Vec<ProductReport>,
    /// Unresolved stuck messages (DLQs, discarded transactions), newest first.
    pub dead_letters: Vec<crate::dead_letters::DeadLetter>,
    pub dead_letter_count: i64,
}

impl Report {
    /// Nothing for an operator to do: consistent and no unresolved dead letters.
    pub fn all_clear(&self) -> bool {
        self.consistent && self.dead_letter_count == 0
    }
}

#[tracing::instrument(skip_all)]
pub async fn reconcile(
    gate: &AdmissionGate,
    db: &DatabaseConnection,
    stock: &StockClient,
    unapplied_after: std::time::Duration,
) -> Result<Report, RebuildError> {
    let cutoff = (chrono::Utc::now()
        - chrono::Duration::from_std(unapplied_after).unwrap_or_default())
    .naive_utc();
    let ready = gate.is_ready().await?;
    let sales = store::sales(db).await?;
    let levels = stock.levels().await?;
    let mut products = Vec::with_capacity(sales.len());
    for sale in sales {
        let product = sale.product;
        let id = product.get();
        let committed_orders = count_for_product(db, ProductFigure::CommittedMessages, id).await?;
        let held_orders = count_for_product(db, ProductFigure::HeldOrders, id).await?;
        let held_items = count_for_product(db, ProductFigure::HeldItems, id).await?;
        let paid_without_stock = count_for_product(db, ProductFigure::PaidWithoutStock, id).await?;
        let level = levels.get(&id).copied();
        let mut redis = gate.redis();
        let (redis_stock, reservations): (Option<i64>, HashMap<String, String>) = redis::pipe()
            .hget(gate.keys().sale(product), "stock")
            .hgetall(gate.keys().reservations(product))
            .query_async(&mut redis)
            .await?;
        let redis_reserved_items = reservations
            .values()
            .filter_map(|r| super::Reservation::parse(r).map(|r| r.count))
            .sum();
        let held: HashSet<String> = store::holdings(db, id)
            .await?
            .into_iter()
            .map(|h| h.tx_no)
            .collect();
        let named = |mut tx_nos: Vec<String>| {
            tx_nos.sort();
            tx_nos.truncate(NAMED);
            tx_nos
        };
        let stale_reservations = named(
            reservations
                .keys()
                .filter(|tx| !held.contains(*tx))
                .cloned()
                .collect(),
        );
        let unreserved_orders = named(
            held.iter()
                .filter(|tx| !reservations.contains_key(*tx))
                .cloned()
                .collect(),
        );
        let admission = match gate.sale_state(product).await? {
            SaleState::Open => "open".to_owned(),
            SaleState::Rebuilding => "rebuilding".to_owned(),
            SaleState::Blocked(why) => format!("blocked: {why}"),
        };
        let unapplied = unapplied_messages(db, stock, id, cutoff).await?;
        let applied_orders = level.map_or(0, |l| l.applied_orders);
        let db_stock = level.map(|l| l.total_count);
        let quiet = applied_orders >= committed_orders;
        products.push(ProductReport {
            product_id: id,
            redis_stock,
            redis_reserved_orders: reservations.len() as i64,
            redis_reserved_items,
            db_stock,
            committed_orders,
            applied_orders,
            held_orders,
            held_items,
            paid_without_stock,
            quiet,
            admission,
            unapplied,
            stale_reservations,
            unreserved_orders,
            differences: Vec::new(),
        });
    }
    for product in &mut products {
        product.differences = differences_of(product, ready, unapplied_after);
    }
    let (dead_letters, dead_letter_count) = crate::dead_letters::unresolved(db, 100).await?;
    let consistent = ready
        && dead_letter_count == 0
        && products.iter().all(|p| p.quiet && p.differences.is_empty());
    Ok(Report {
        ready,
        consistent,
        products,
        dead_letters,
        dead_letter_count,
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:>12} {:>11} {:>9} {:>13} {:>9} {:>9} {:>6}  verdict",
            "product", "redis stock", "DB stock", "reserved/held", "committed", "applied", "quiet"
        )?;
        for p in &self.products {
            let show = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
            writeln!(
                f,
                "{:>12} {:>11} {:>9} {:>13} {:>9} {:>9} {:>6}  {}",
                p.product_id,
                show(p.redis_stock),
                show(p.db_stock),
                format!("{}/{}", p.redis_reserved_orders, p.held_orders),
                p.committed_orders,
                p.applied_orders,
                if p.quiet { "yes" } else { "no" },
                if p.differences.is_empty() {
                    "ok".to_owned()
                } else {
                    p.differences.join("; ")
                }
            )?;
        }
        if self.dead_letter_count > 0 {
            writeln!(
                f,
                "{} unresolved dead letters (messages that will not be delivered by themselves):",
                self.dead_letter_count
            )?;
            for letter in &self.dead_letters {
                writeln!(
                    f,
                    "  {} from {} [{}] tags={} keys={} seen {}: {}",
                    letter.msg_id,
                    letter.source,
                    letter.verdict.map_or("NOT YET CHECKED", |v| v.as_db()),
                    letter.tags.as_deref().unwrap_or("-"),
                    letter.keys.as_deref().unwrap_or("-"),
                    letter.seen_at.to_rfc3339(),
                    letter.body.chars().take(120).collect::<String>()
                )?;
            }
        }
        write!(
            f,
            "{}",
            match (self.consistent, self.dead_letter_count) {
                (true, _) => "consistent",
                (false, 0) if self.products.iter().all(|p| p.differences.is_empty()) => {
                    "NOT YET CONSISTENT: messages still being applied"
                }
                (false, 0) => "DIFFERENCES FOUND",
                (false, _) => "DEAD LETTERS NEED ATTENTION",
            }
        )
    }
}

/// The committed messages of `product` older than `cutoff` that stock-service
/// has not applied (at most 20 of each kind named).
async fn unapplied_messages(
    db: &DatabaseConnection,
    stock: &StockClient,
    product: i64,
    cutoff: chrono::NaiveDateTime,
) -> Result<Vec<String>, RebuildError> {
    let mut named = Vec::new();
    let creations = store::unconfirmed(db, Confirmed::Creation, cutoff, Some(product), 20).await?;
    let cancellations =
        store::unconfirmed(db, Confirmed::Cancellation, cutoff, Some(product), 20).await?;
    let asked: Vec<String> = creations
        .iter()
        .map(|o| o.tx_no.clone())
        .chain(cancellations.iter().filter_map(|o| o.cancel_tx_no.clone()))
        .collect();
    if asked.is_empty() {
        return Ok(named);
    }
    let applied = stock.applied(&asked).await?;
    for order in &creations {
        if !applied.contains(&order.tx_no) {
            named.push(format!(
                "creation {} (order {})",
                order.tx_no, order.order_no
            ));
        }
    }
    for order in &cancellations {
        if let Some(tx_no) = &order.cancel_tx_no
            && !applied.contains(tx_no)
        {
            named.push(format!("cancellation {tx_no} (order {})", order.order_no));
        }
    }
    Ok(named)
}

/// What an operator must look at for one product (empty: consistent, or not
/// yet comparable while messages are in flight).
fn differences_of(
    p: &ProductReport,
    ready: bool,
    unapplied_after: std::time::Duration,
) -> Vec<String> {
    let mut differences = Vec::new();
    if !p.unapplied.is_empty() {
        differences.push(format!(
            "{} committed message(s) not applied by stock-service after {}s (being sent again): {}",
            p.unapplied.len(),
            unapplied_after.as_secs(),
            p.unapplied.join(", ")
        ));
    }
    if ready && p.admission != "open" {
        differences.push(format!(
            "admission {} (orders refused with SALE_NOT_READY)",
            p.admission
        ));
    }
    if p.paid_without_stock > 0 {
        differences.push(format!(
            "{} PAID orders have no stock (refund needed)",
            p.paid_without_stock
        ));
    }
    if !ready {
        differences.push("admission state missing in Redis (rebuild pending)".to_owned());
    } else if p.quiet {
        if p.redis_stock != p.db_stock {
            differences.push(format!(
                "Redis stock {:?} != DB stock {:?}",
                p.redis_stock, p.db_stock
            ));
        }
        if p.redis_reserved_orders != p.held_orders {
            differences.push(format!(
                "Redis holds {} reservations, the order DB {} NEW/PAID orders",
                p.redis_reserved_orders, p.held_orders
            ));
        }
        if !p.stale_reservations.is_empty() {
            differences.push(format!(
                "stale reservation(s) in Redis with no NEW/PAID order: {}",
                p.stale_reservations.join(", ")
            ));
        }
        if !p.unreserved_orders.is_empty() {
            differences.push(format!(
                "NEW/PAID order(s) with no reservation in Redis: {}",
                p.unreserved_orders.join(", ")
            ));
        }
        if p.redis_reserved_items != p.held_items {
            differences.push(format!(
                "Redis reserves {} items, orders hold {}",
                p.redis_reserved_items, p.held_items
            ));
        }
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet_and_equal() -> ProductReport {
        ProductReport {
            product_id: 1,
            redis_stock: Some(7),
            redis_reserved_orders: 3,
            redis_reserved_items: 3,
            db_stock: Some(7),
            committed_orders: 3,
            applied_orders: 3,
            held_orders: 3,
            held_items: 3,
            paid_without_stock: 0,
            quiet: true,
            admission: "open".into(),
            unapplied: vec![],
            stale_reservations: vec![],
            unreserved_orders: vec![],
            differences: vec![],
        }
    }

    const AFTER: std::time::Duration = std::time::Duration::from_secs(30);

    #[test]
    fn a_quiet_product_where_redis_agrees_has_no_difference() {
        assert!(differences_of(&quiet_and_equal(), true, AFTER).is_empty());
    }

    #[test]
    fn redis_drift_is_compared_only_once_quiet() {
        let drifted = ProductReport {
            redis_stock: Some(6),
            ..quiet_and_equal()
        };
        assert_eq!(differences_of(&drifted, true, AFTER).len(), 1);
        let busy = ProductReport {
            quiet: false,
            ..drifted
        };
        assert!(differences_of(&busy, true, AFTER).is_empty());
    }

    #[test]
    fn an_unapplied_message_and_a_blocked_sale_are_named_even_when_not_quiet() {
        let stuck = ProductReport {
            quiet: false,
            admission: "blocked: not quiet".into(),
            unapplied: vec!["creation tx1 (order o1)".into()],
            ..quiet_and_equal()
        };
        let found = differences_of(&stuck, true, AFTER);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("tx1"));
        assert!(found[1].contains("blocked"));
    }
}
