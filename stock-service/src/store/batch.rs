//! Applying an [`OrderBatch`] — the orders one group commit of order-service
//! recorded — in one DB transaction: each order exactly once, with the
//! outcome [`super::apply_order`] would give it applied alone in admission
//! order, but with one stock UPDATE per product, so the hot row is locked
//! once per batch instead of once per order.
//!
//! Lock order is the single-order path's: `tx_log` rows first (in tx_no
//! order), then the stock rows (in product order), then commit. The hot
//! stock row is held only for its UPDATE and the commit, and a batch never
//! waits for a `tx_log` lock while it holds a stock row, which a concurrent
//! single order or cancellation could be waiting on in turn.

use std::collections::{BTreeMap, HashMap};

use common::db::{is_duplicate_key, stmt};
use common::domain::ProductId;
use common::messages::{OrderBatch, OrderCreated};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, Statement, TransactionTrait,
};

use super::{
    Applied, LogRow, OnDuplicate, Outcome, deduct, insert_log, marks, outcomes_of, set_outcome,
};

/// Rows per INSERT, at 5 placeholders a row: far below the 65,535 a
/// statement may have. (The `IN` lists take one a tx_no, which bounds a
/// batch at 65,535 orders, far above any group commit.)
const CLAIMS_PER_INSERT: usize = 1_000;

/// Applies every order of `batch` in one DB transaction; one [`Applied`] per
/// order, at its index in `batch.orders`:
/// - an order whose tx_no `tx_log` has already (deducted, insufficient, or
///   voided by a cancellation that came first) is a `Duplicate` and writes
///   nothing; a tx_no listed twice in the batch counts once (the repeat is
///   answered as a redelivery of the first would be);
/// - the others are claimed in `tx_log` as DEDUCTED with one INSERT and
///   deducted with one conditional UPDATE per product;
/// - when a product's stock does not cover all its orders, they are deducted
///   one by one in admission order, so the earliest get the stock; those
///   that do not fit are recorded INSUFFICIENT when `record_shortage`, else
///   answered `ShortForNow` with nothing written for them (a redelivery
///   retries them; the others are duplicates by then).
///
/// A concurrent delivery that claims one of these tx_nos after this batch
/// read `tx_log` fails the insert on the duplicate key: everything is rolled
/// back and applied once more (that read then sees the row); a second
/// failure is returned, and the message is redelivered.
#[tracing::instrument(skip_all, fields(batch_tx_no = %batch.batch_tx_no, size = batch.orders.len()))]
pub async fn apply_batch(
    db: &DatabaseConnection,
    batch: &OrderBatch,
    record_shortage: bool,
) -> Result<Vec<Applied>, DbErr> {
    if batch.orders.is_empty() {
        return Ok(Vec::new());
    }
    match apply_once(db, &batch.orders, record_shortage).await {
        Err(err) if is_duplicate_key(&err) => {
            tracing::info!(%err, "a tx_no of the batch was applied meanwhile; applying it again");
            apply_once(db, &batch.orders, record_shortage).await
        }
        applied => applied,
    }
}

async fn apply_once(
    db: &DatabaseConnection,
    orders: &[OrderCreated],
    record_shortage: bool,
) -> Result<Vec<Applied>, DbErr> {
    // Each order's first occurrence in the batch, by index.
    let mut first_index: HashMap<&str, usize> = HashMap::with_capacity(orders.len());
    let first_of: Vec<usize> = orders
        .iter()
        .enumerate()
        .map(|(i, order)| *first_index.entry(order.tx_no.as_str()).or_insert(i))
        .collect();
    let tx_nos: Vec<&str> = first_index.keys().copied().collect();

    let txn = db.begin().await?;
    let seen = outcomes_of(&txn, &tx_nos).await?;
    let mut applied: Vec<Option<Applied>> = vec![None; orders.len()];
    let mut new = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        if first_of[i] != i {
            continue;
        }
        match seen.get(order.tx_no.as_str()) {
            Some(&previous) => {
                applied[i] = Some(Applied::Duplicate {
                    insufficient: previous == Outcome::Insufficient,
                });
            }
            None => new.push(i),
        }
    }
    if !new.is_empty() {
        let new_orders: Vec<&OrderCreated> = new.iter().map(|&i| &orders[i]).collect();
        let outcomes = claim_and_deduct(&txn, &new_orders, record_shortage).await?;
        for (i, outcome) in new.into_iter().zip(outcomes) {
            applied[i] = Some(outcome);
        }
    }
    txn.commit().await?;

    let applied: Vec<Applied> = first_of
        .iter()
        .enumerate()
        .map(|(i, &first)| {
            let outcome = applied[first].expect("every first occurrence has an outcome");
            if first == i {
                outcome
            } else {
                seen_again(outcome)
            }
        })
        .collect();
    let count = |wanted: fn(&Applied) -> bool| applied.iter().filter(|a| wanted(a)).count();
    tracing::info!(
        deducted = count(|a| *a == Applied::Deducted),
        insufficient = count(|a| *a == Applied::Insufficient),
        short_for_now = count(|a| *a == Applied::ShortForNow),
        duplicates = count(|a| matches!(a, Applied::Duplicate { .. })),
        "order batch applied to stock"
    );
    Ok(applied)
}

/// Claims `orders` (none in `tx_log` yet, each tx_no once) as DEDUCTED, then
/// deducts them per product; their outcomes, in the same order.
async fn claim_and_deduct(
    txn: &DatabaseTransaction,
    orders: &[&OrderCreated],
    record_shortage: bool,
) -> Result<Vec<Applied>, DbErr> {
    // In tx_no order: two deliveries of overlapping batches lock the same
    // rows in the same order, so one waits for the other instead of deadlocking.
    let mut claims: Vec<LogRow<'_>> = orders
        .iter()
        .map(|order| LogRow::creation(order, Outcome::Deducted))
        .collect();
    claims.sort_unstable_by(|a, b| a.tx_no.cmp(b.tx_no));
    for rows in claims.chunks(CLAIMS_PER_INSERT) {
        txn.execute_raw(insert_log(rows, OnDuplicate::Fail)).await?;
    }

    // In product order, for the same reason across batches of several products.
    let mut by_product: BTreeMap<ProductId, Vec<usize>> = BTreeMap::new();
    for (i, order) in orders.iter().enumerate() {
        by_product.entry(order.product_id).or_default().push(i);
    }
    let mut applied = vec![Applied::Deducted; orders.len()];
    let mut short = Vec::new();
    for (product_id, members) in by_product {
        let total: i64 = members.iter().map(|&i| i64::from(orders[i].count)).sum();
        if deduct(txn, product_id, total).await? {
            continue;
        }
        tracing::info!(%product_id, total, orders = members.len(),
            "the stock does not cover the batch; deducting order by order");
        for i in members {
            if !deduct(txn, product_id, i64::from(orders[i].count)).await? {
                applied[i] = if record_shortage {
                    Applied::Insufficient
                } else {
                    Applied::ShortForNow
                };
                short.push(orders[i].tx_no.as_str());
            }
        }
    }
    if !short.is_empty() {
        txn.execute_raw(if record_shortage {
            set_outcome(&short, Outcome::Insufficient)
        } else {
            unclaim(&short)
        })
        .await?;
    }
    Ok(applied)
}

/// Takes back this transaction's claims of `tx_nos`: orders short of stock
/// for now leave no row, so that their redelivery decides.
fn unclaim(tx_nos: &[&str]) -> Statement {
    stmt(
        &format!(
            "DELETE FROM tx_log WHERE tx_no IN ({})",
            marks(tx_nos.len())
        ),
        tx_nos.iter().map(|&t| t.into()),
    )
}

/// What a tx_no listed again in the same batch gets: what a redelivery
/// right after its first occurrence would.
fn seen_again(first: Applied) -> Applied {
    match first {
        Applied::Deducted => Applied::Duplicate {
            insufficient: false,
        },
        Applied::Insufficient => Applied::Duplicate { insufficient: true },
        other @ (Applied::Duplicate { .. } | Applied::ShortForNow) => other,
    }
}
