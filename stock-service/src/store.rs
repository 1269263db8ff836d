//! The stock database: applying an order's creation and its cancellation
//! exactly once each, in either order (one by one, or a whole group commit
//! at once: [`apply_batch`]), reading/setting stock, and paging `tx_log` for
//! order-service's consistency auditor.

mod batch;

use std::collections::HashMap;

use common::db::{is_duplicate_key, stmt};
use common::domain::ProductId;
use common::messages::{OrderCancelled, OrderCreated};
use common::stock_log::AppliedRow;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement, TransactionTrait, Value};
use serde::Serialize;

pub use batch::apply_batch;

/// What `tx_log` records for one message: written once, in `common`, because
/// order-service's auditor reads it too.
pub use common::stock_log::Outcome;

/// An outcome read back from the `outcome` column.
fn outcome_from_db(raw: &str) -> Result<Outcome, DbErr> {
    Outcome::from_db(raw)
        .ok_or_else(|| DbErr::Custom(format!("unexpected stock tx_log outcome {raw:?}")))
}

/// What applying one order message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Deducted,
    /// Not enough stock: nothing deducted, recorded as INSUFFICIENT.
    Insufficient,
    /// The tx_no was applied before: this delivery did nothing.
    /// `insufficient` repeats the first delivery's finding (to tell order-service again).
    Duplicate {
        insufficient: bool,
    },
    /// Not enough stock right now and the caller asked to wait: nothing was
    /// written, so a later delivery decides (see [`apply_order_when_stocked`]).
    ShortForNow,
}

/// What applying one cancellation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The order's deducted stock was given back.
    Restored,
    /// Nothing had been deducted (insufficient), or the cancellation came
    /// before the creation, which is now voided and will deduct nothing.
    NothingToRestore,
    /// This cancellation was applied before: this delivery did nothing.
    Duplicate,
}

/// One DB transaction per message: claim the tx_no in `tx_log`, then deduct
/// only if the stock covers the count. A redelivery hits the duplicate key
/// and changes nothing; a failure rolls everything back for a retry.
pub async fn apply_order(db: &DatabaseConnection, order: &OrderCreated) -> Result<Applied, DbErr> {
    apply(db, order, true).await
}

/// Like [`apply_order`], but when the stock is short it writes nothing and
/// answers [`Applied::ShortForNow`]: a cancellation of another order may be
/// on its way (Redis hands a cancelled item to the next buyer at once, and
/// the two messages travel on different queues), so the consumer retries
/// before recording INSUFFICIENT.
pub async fn apply_order_when_stocked(
    db: &DatabaseConnection,
    order: &OrderCreated,
) -> Result<Applied, DbErr> {
    apply(db, order, false).await
}

#[tracing::instrument(skip_all, fields(tx_no = %order.tx_no, order_no = %order.order_no))]
async fn apply(
    db: &DatabaseConnection,
    order: &OrderCreated,
    record_shortage: bool,
) -> Result<Applied, DbErr> {
    let txn = db.begin().await?;
    let claimed = txn
        .execute_raw(insert_log(
            &[LogRow::creation(order, Outcome::Deducted)],
            OnDuplicate::Fail,
        ))
        .await;
    match claimed {
        Err(err) if is_duplicate_key(&err) => {
            drop(txn);
            let previous = outcomes_of(db, &[order.tx_no.as_str()])
                .await?
                .remove(order.tx_no.as_str());
            tracing::info!(
                ?previous,
                "already applied (or voided); duplicate delivery ignored"
            );
            return Ok(Applied::Duplicate {
                insufficient: previous == Some(Outcome::Insufficient),
            });
        }
        Err(err) => return Err(err),
        Ok(_) => {}
    }
    let count = i64::from(order.count);
    let applied = if deduct(&txn, order.product_id, count).await? {
        Applied::Deducted
    } else if !record_shortage {
        drop(txn);
        tracing::info!("stock short for now; nothing written, retried later");
        return Ok(Applied::ShortForNow);
    } else {
        txn.execute_raw(set_outcome(&[order.tx_no.as_str()], Outcome::Insufficient))
            .await?;
        Applied::Insufficient
    };
    txn.commit().await?;
    tracing::info!(?applied, product_id = %order.product_id, count, "order applied to stock");
    Ok(applied)
}

/// One DB transaction per cancellation. Claims the cancellation's own tx_no
/// (a redelivery stops there), then settles the creation's row: absent means
/// the creation was not applied yet, so a VOIDED row takes its place and the
/// creation, arriving later, hits the duplicate key and deducts nothing;
/// DEDUCTED means the stock goes back. A creation being applied right now
/// holds its row's lock, so the claim waits and then sees its outcome.
#[tracing::instrument(skip_all, fields(tx_no = %cancel.tx_no, order_no = %cancel.order_no))]
pub async fn apply_cancel(
    db: &DatabaseConnection,
    cancel: &OrderCancelled,
) -> Result<Restored, DbErr> {
    let count = i64::from(cancel.count);
    let row = |tx_no, outcome| LogRow {
        tx_no,
        order_no: cancel.order_no.as_str(),
        product_id: cancel.product_id,
        count,
        outcome,
    };
    let txn = db.begin().await?;
    let claimed = txn
        .execute_raw(insert_log(
            &[row(cancel.tx_no.as_str(), Outcome::NothingToRestore)],
            OnDuplicate::Fail,
        ))
        .await;
    match claimed {
        Err(err) if is_duplicate_key(&err) => {
            tracing::info!("cancellation applied before; duplicate delivery ignored");
            return Ok(Restored::Duplicate);
        }
        Err(err) => return Err(err),
        Ok(_) => {}
    }
    let voided = txn
        .execute_raw(insert_log(
            &[row(cancel.order_tx_no.as_str(), Outcome::Voided)],
            OnDuplicate::Keep,
        ))
        .await?
        .rows_affected()
        == 1;
    let creation = if voided {
        Outcome::Voided
    } else {
        outcome_from_db(
            &txn.query_one_raw(stmt(
                "SELECT outcome FROM tx_log WHERE tx_no = ? FOR UPDATE",
                [cancel.order_tx_no.as_str().into()],
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("tx_log {}", cancel.order_tx_no)))?
            .try_get::<String>("", "outcome")?,
        )?
    };
    let restored = if creation == Outcome::Deducted {
        txn.execute_raw(stmt(
            "UPDATE stock SET total_count = total_count + ? WHERE product_id = ?",
            [count.into(), cancel.product_id.get().into()],
        ))
        .await?;
        txn.execute_raw(set_outcome(&[cancel.tx_no.as_str()], Outcome::Restored))
            .await?;
        Restored::Restored
    } else {
        Restored::NothingToRestore
    };
    txn.commit().await?;
    tracing::info!(?restored, ?creation, product_id = %cancel.product_id, count, "cancellation applied");
    Ok(restored)
}

/// One `tx_log` row to write.
struct LogRow<'a> {
    tx_no: &'a str,
    order_no: &'a str,
    product_id: ProductId,
    count: i64,
    outcome: Outcome,
}

impl<'a> LogRow<'a> {
    /// The row of an order's creation.
    fn creation(order: &'a OrderCreated, outcome: Outcome) -> Self {
        Self {
            tx_no: order.tx_no.as_str(),
            order_no: order.order_no.as_str(),
            product_id: order.product_id,
            count: i64::from(order.count),
            outcome,
        }
    }
}

/// What writing a row whose tx_no is in `tx_log` already does.
#[derive(Debug, Clone, Copy)]
enum OnDuplicate {
    /// Fails the statement: the caller turns the duplicate key into its answer.
    Fail,
    /// Keeps the existing row; `rows_affected` tells which rows were written.
    Keep,
}

/// The one statement that writes `tx_log` rows: all of `rows` at once.
fn insert_log(rows: &[LogRow<'_>], on_duplicate: OnDuplicate) -> Statement {
    let verb = match on_duplicate {
        OnDuplicate::Fail => "INSERT",
        OnDuplicate::Keep => "INSERT IGNORE",
    };
    let tuples = vec!["(?, ?, ?, ?, ?)"; rows.len()].join(", ");
    stmt(
        &format!(
            "{verb} INTO tx_log (tx_no, order_no, product_id, count, outcome) VALUES {tuples}"
        ),
        rows.iter().flat_map(|row| {
            [
                row.tx_no.into(),
                row.order_no.into(),
                row.product_id.get().into(),
                row.count.into(),
                row.outcome.as_db().into(),
            ]
        }),
    )
}

/// Records `outcome` on the rows of `tx_nos`.
fn set_outcome(tx_nos: &[&str], outcome: Outcome) -> Statement {
    stmt(
        &format!(
            "UPDATE tx_log SET outcome = ? WHERE tx_no IN ({})",
            marks(tx_nos.len())
        ),
        std::iter::once(outcome.as_db().into()).chain(tx_nos.iter().map(|&t| t.into())),
    )
}

/// Takes `count` from a product's stock only if the stock covers it; whether it did.
async fn deduct(
    conn: &impl ConnectionTrait,
    product_id: ProductId,
    count: i64,
) -> Result<bool, DbErr> {
    Ok(conn
        .execute_raw(stmt(
            "UPDATE stock SET total_count = total_count - ? \
             WHERE product_id = ? AND total_count >= ?",
            [count.into(), product_id.get().into(), count.into()],
        ))
        .await?
        .rows_affected()
        == 1)
}

/// The outcome `tx_log` records for each of `tx_nos` that has a row: a
/// plain read, which takes no lock.
async fn outcomes_of(
    conn: &impl ConnectionTrait,
    tx_nos: &[&str],
) -> Result<HashMap<String, Outcome>, DbErr> {
    if tx_nos.is_empty() {
        return Ok(HashMap::new());
    }
    conn.query_all_raw(stmt(
        &format!(
            "SELECT tx_no, outcome FROM tx_log WHERE tx_no IN ({})",
            marks(tx_nos.len())
        ),
        tx_nos.iter().map(|&t| t.into()),
    ))
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get::<String>("", "tx_no")?,
            outcome_from_db(&row.try_get::<String>("", "outcome")?)?,
        ))
    })
    .collect()
}

/// `n` comma-separated `?` placeholders.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stock {
    pub product_id: i64,
    pub total_count: i64,
    /// Order messages applied for this product: creations (deducted,
    /// insufficient or voided) and cancellations. order-service compares it
    /// with its committed creations + cancellations to know the pipeline is quiet.
    pub applied_orders: i64,
}

pub async fn get_stock(
    db: &DatabaseConnection,
    product_id: ProductId,
) -> Result<Option<Stock>, DbErr> {
    Ok(
        select_stock(db, "WHERE s.product_id = ?", [product_id.get().into()])
            .await?
            .pop(),
    )
}

/// Every product's stock and applied messages, by product id.
pub async fn all_stock(db: &DatabaseConnection) -> Result<Vec<Stock>, DbErr> {
    select_stock(db, "ORDER BY s.product_id", []).await
}

async fn select_stock(
    db: &DatabaseConnection,
    tail: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Vec<Stock>, DbErr> {
    db.query_all_raw(stmt(
        &format!(
            "SELECT s.product_id, s.total_count, \
               (SELECT COUNT(*) FROM tx_log t WHERE t.product_id = s.product_id) AS applied_orders \
             FROM stock s {tail}"
        ),
        values,
    ))
    .await?
    .iter()
    .map(|row| {
        Ok(Stock {
            product_id: row.try_get::<i64>("", "product_id")?,
            total_count: i64::from(row.try_get::<i32>("", "total_count")?),
            applied_orders: row.try_get::<i64>("", "applied_orders")?,
        })
    })
    .collect()
}

/// Sets a product's stock, creating the product when new (an admin operation).
#[tracing::instrument(skip(db))]
pub async fn set_stock(
    db: &DatabaseConnection,
    product_id: ProductId,
    total_count: u32,
) -> Result<Stock, DbErr> {
    db.execute_raw(stmt(
        "INSERT INTO stock (product_id, total_count) VALUES (?, ?) \
         ON DUPLICATE KEY UPDATE total_count = VALUES(total_count)",
        [product_id.get().into(), i64::from(total_count).into()],
    ))
    .await?;
    get_stock(db, product_id)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("stock of {product_id} after setting it")))
}

/// Which of `tx_nos` this service has applied (a `tx_log` row, whatever its
/// outcome): order-service asks, to find committed messages that never
/// arrived and send them again.
#[tracing::instrument(skip_all, fields(asked = tx_nos.len()))]
pub async fn applied_among(
    db: &DatabaseConnection,
    tx_nos: &[String],
) -> Result<Vec<String>, DbErr> {
    let tx_nos: Vec<&str> = tx_nos.iter().map(String::as_str).collect();
    Ok(outcomes_of(db, &tx_nos).await?.into_keys().collect())
}

/// One page of `tx_log` in `tx_no` order, after `after` (exclusive), applied
/// at or after `since`, of one product or all: what the consistency auditor
/// compares with the order database and the broker.
#[tracing::instrument(skip(db))]
pub async fn applied_page(
    db: &DatabaseConnection,
    since: Option<chrono::DateTime<chrono::Utc>>,
    product: Option<ProductId>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<AppliedRow>, DbErr> {
    let mut conditions = vec!["1 = 1"];
    let mut values: Vec<Value> = Vec::new();
    if let Some(since) = since {
        conditions.push("create_time >= ?");
        values.push(since.naive_utc().into());
    }
    if let Some(product) = product {
        conditions.push("product_id = ?");
        values.push(product.get().into());
    }
    if let Some(after) = after {
        conditions.push("tx_no > ?");
        values.push(after.into());
    }
    values.push(i64::from(limit).into());
    db.query_all_raw(stmt(
        &format!(
            "SELECT tx_no, order_no, product_id, count, outcome, create_time FROM tx_log \
             WHERE {} ORDER BY tx_no LIMIT ?",
            conditions.join(" AND ")
        ),
        values,
    ))
    .await?
    .iter()
    .map(|row| {
        Ok(AppliedRow {
            tx_no: row.try_get("", "tx_no")?,
            order_no: row.try_get("", "order_no")?,
            product_id: row.try_get("", "product_id")?,
            count: i64::from(row.try_get::<i32>("", "count")?),
            outcome: outcome_from_db(&row.try_get::<String>("", "outcome")?)?,
            applied_at: row
                .try_get::<chrono::NaiveDateTime>("", "create_time")?
                .and_utc(),
        })
    })
    .collect()
}
