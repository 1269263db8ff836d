//! The stock database: applying an order's creation and its cancellation
//! exactly once each, in either order, reading/setting stock, and paging
//! `tx_log` for order-service's consistency auditor.

use common::db::{is_duplicate_key, stmt};
use common::domain::ProductId;
use common::messages::{OrderCancelled, OrderCreated};
use common::stock_log::AppliedRow;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait, Value};
use serde::Serialize;

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
        .execute_raw(stmt(
            "INSERT INTO tx_log (tx_no, order_no, product_id, count, outcome) \
             VALUES (?, ?, ?, ?, ?)",
            [
                order.tx_no.as_str().into(),
                order.order_no.as_str().into(),
                order.product_id.get().into(),
                i64::from(order.count).into(),
                Outcome::Deducted.as_db().into(),
            ],
        ))
        .await;
    match claimed {
        Err(err) if is_duplicate_key(&err) => {
            drop(txn);
            let previous = outcome_of(db, order.tx_no.as_str()).await?;
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
    let deducted = txn
        .execute_raw(stmt(
            "UPDATE stock SET total_count = total_count - ? \
             WHERE product_id = ? AND total_count >= ?",
            [count.into(), order.product_id.get().into(), count.into()],
        ))
        .await?
        .rows_affected()
        == 1;
    let applied = if deducted {
        Applied::Deducted
    } else if !record_shortage {
        drop(txn);
        tracing::info!("stock short for now; nothing written, retried later");
        return Ok(Applied::ShortForNow);
    } else {
        txn.execute_raw(stmt(
            "UPDATE tx_log SET outcome = ? WHERE tx_no = ?",
            [
                Outcome::Insufficient.as_db().into(),
                order.tx_no.as_str().into(),
            ],
        ))
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
    let row = |tx_no: &str, outcome: Outcome| -> [Value; 5] {
        [
            tx_no.into(),
            cancel.order_no.as_str().into(),
            cancel.product_id.get().into(),
            count.into(),
            outcome.as_db().into(),
        ]
    };
    let txn = db.begin().await?;
    let claimed = txn
        .execute_raw(stmt(
            "INSERT INTO tx_log (tx_no, order_no, product_id, count, outcome) VALUES (?, ?, ?, ?, ?)",
            row(cancel.tx_no.as_str(), Outcome::NothingToRestore),
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
        .execute_raw(stmt(
            "INSERT IGNORE INTO tx_log (tx_no, order_no, product_id, count, outcome) \
             VALUES (?, ?, ?, ?, ?)",
            row(cancel.order_tx_no.as_str(), Outcome::Voided),
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
        txn.execute_raw(stmt(
            "UPDATE tx_log SET outcome = ? WHERE tx_no = ?",
            [
                Outcome::Restored.as_db().into(),
                cancel.tx_no.as_str().into(),
            ],
        ))
        .await?;
        Restored::Restored
    } else {
        Restored::NothingToRestore
    };
    txn.commit().await?;
    tracing::info!(?restored, ?creation, product_id = %cancel.product_id, count, "cancellation applied");
    Ok(restored)
}

async fn outcome_of(db: &DatabaseConnection, tx_no: &str) -> Result<Option<Outcome>, DbErr> {
    db.query_one_raw(stmt(
        "SELECT outcome FROM tx_log WHERE tx_no = ?",
        [tx_no.into()],
    ))
    .await?
    .map(|row| outcome_from_db(&row.try_get::<String>("", "outcome")?))
    .transpose()
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
    if tx_nos.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; tx_nos.len()].join(", ");
    db.query_all_raw(stmt(
        &format!("SELECT tx_no FROM tx_log WHERE tx_no IN ({marks})"),
        tx_nos.iter().map(|t| Value::from(t.as_str())),
    ))
    .await?
    .iter()
    .map(|row| row.try_get::<String>("", "tx_no"))
    .collect()
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
