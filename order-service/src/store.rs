//! The order database: the local transaction that records an order, the
//! check-back's claim on a tx_no, and order look-ups. Plain functions over a
//! connection, so tests can drive them directly; [`audit`] holds what the
//! consistency auditor reads.

use chrono::{DateTime, NaiveDateTime, Utc};
use common::db::{is_duplicate_key, stmt};
use common::messages::{OrderBatch, OrderCancelled, OrderCreated};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, TransactionTrait, Value,
};

use crate::domain::{ClosedReason, Order, OrderStatus, SaleRecord, SaleTerms, SaleWindow};

pub mod audit;

/// The final outcome of one distributed transaction, as `tx_log` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    Committed,
    RolledBack,
}

impl TxOutcome {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Committed => "COMMITTED",
            Self::RolledBack => "ROLLED_BACK",
        }
    }

    fn from_db(raw: &str) -> Result<Self, DbErr> {
        match raw {
            "COMMITTED" => Ok(Self::Committed),
            "ROLLED_BACK" => Ok(Self::RolledBack),
            other => Err(DbErr::Custom(format!(
                "unexpected tx_log outcome {other:?}"
            ))),
        }
    }
}

/// Why [`record_order`] did not commit.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The tx_no was already decided (a check-back claimed it first).
    #[error("transaction already decided: {0:?}")]
    AlreadyDecided(TxOutcome),
    /// The order to cancel is no longer NEW (paid, cancelled, failed) or not due.
    #[error("the order is not cancellable")]
    NotCancellable,
    /// An order with the same user and Idempotency-Key exists already.
    #[error("an order for this Idempotency-Key exists")]
    DuplicateRequest,
    /// The database refused the order (a constraint or trigger); nothing was written.
    #[error("the database refused the order: {0}")]
    Refused(#[source] DbErr),
    /// The database could not be used before the commit; nothing was written.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] DbErr),
    /// COMMIT itself failed: the order may or may not be stored. Only a later
    /// [`resolve_tx`] can tell.
    #[error("the commit's outcome is unknown: {0}")]
    CommitUncertain(#[source] DbErr),
}

/// The local transaction: the `tx_log` row (COMMITTED) and the `NEW` order,
/// committed together or not at all. `tx_log` goes first, so a concurrent
/// check-back's claim on the same tx_no waits for this transaction to end.
#[tracing::instrument(skip_all, fields(tx_no = %order.tx_no, order_no = %order.order_no))]
pub async fn record_order(
    db: &DatabaseConnection,
    order: &OrderCreated,
    idempotency_key: Option<&str>,
) -> Result<(), RecordError> {
    let txn = begin_claimed(db, order.tx_no.as_str()).await?;
    insert_order(&txn, order, idempotency_key).await?;
    txn.commit().await.map_err(RecordError::CommitUncertain)?;
    tracing::info!("order recorded");
    Ok(())
}

/// The values of one `NEW` order row, in the column order of both order
/// inserts (the last one, the product again, finds the sale's price).
fn order_row(order: &OrderCreated, idempotency_key: Option<&str>) -> [Value; 10] {
    [
        order.order_no.as_str().into(),
        order.tx_no.as_str().into(),
        order.user_id.get().into(),
        order.product_id.get().into(),
        i64::from(order.count).into(),
        OrderStatus::New.as_db().into(),
        order.created_at.naive_utc().into(),
        order.created_at.naive_utc().into(),
        idempotency_key.map(str::to_owned).into(),
        order.product_id.get().into(),
    ]
}

/// The `NEW` order row of `order`, its unit price copied from its sale.
async fn insert_order(
    txn: &impl ConnectionTrait,
    order: &OrderCreated,
    idempotency_key: Option<&str>,
) -> Result<(), RecordError> {
    txn.execute_raw(stmt(
        "INSERT INTO orders (order_no, tx_no, user_id, product_id, pay_count, status, create_time, updated_at, \
         idempotency_key, unit_price_cents) \
         SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT sale_price_cents FROM sales WHERE product_id = ?)",
        order_row(order, idempotency_key),
    ))
    .await
    .map_err(|err| {
        if idempotency_key.is_some() && is_duplicate_key(&err) {
            RecordError::DuplicateRequest
        } else {
            classify(err)
        }
    })?;
    Ok(())
}

/// Why [`record_batch`] did not commit.
#[derive(Debug, thiserror::Error)]
pub enum BatchRecordError {
    /// Nothing of the batch was written, for a reason that holds for all of
    /// it (the batch tx_no decided first, the database unavailable, or the
    /// COMMIT's fate unknown: then all of it may be stored).
    #[error(transparent)]
    Whole(RecordError),
    /// These orders (index in the batch, why) cannot be recorded; nothing was
    /// written, so the others can go again in a batch of their own.
    #[error("{} orders of the batch refused", .0.len())]
    Some(Vec<(usize, RecordError)>),
}

/// The group commit's local transaction: the batch's own `tx_log` row
/// (COMMITTED, first, so a check-back on the batch waits for it), each
/// order's `tx_log` row and each `NEW` order, all committed together or not
/// at all. Tried at once first ([`record_batch_at_once`]: four round trips,
/// two statements whose text does not depend on the batch's size); when that
/// is refused (an Idempotency-Key used before, an order's tx_no already
/// claimed by a check-back or a sweeper, a constraint), it is rolled back
/// whole, and each order is tried on its own under a savepoint of a fresh
/// transaction to name the refused ones; with any, that is rolled back too:
/// the half message lists every order, so it may only commit with every
/// order in it.
#[tracing::instrument(skip_all, fields(batch_tx_no = %batch.batch_tx_no, size = batch.orders.len()))]
pub async fn record_batch(
    db: &DatabaseConnection,
    batch: &OrderBatch,
    idempotency_keys: &[Option<String>],
) -> Result<(), BatchRecordError> {
    match record_batch_at_once(db, batch, idempotency_keys).await {
        Ok(()) => {
            tracing::info!("batch of orders recorded");
            return Ok(());
        }
        Err(RecordError::Refused(err)) => {
            tracing::info!(%err, "the batch was refused at once; recording it order by order");
        }
        Err(err) => return Err(BatchRecordError::Whole(err)),
    }
    let txn = begin_claimed(db, batch.batch_tx_no.as_str())
        .await
        .map_err(BatchRecordError::Whole)?;
    // The transaction holds just the batch's claim: the refused attempt at
    // once was rolled back whole, its orders' claims with it (claims left
    // behind made every order read COMMITTED and be answered as placed while
    // the batch was rolled back: found by the chaos suite, 22 orders answered
    // 201 and never recorded). Each order on its own names the refused ones;
    // with any, everything is rolled back.
    let refused = record_one_by_one(&txn, batch, idempotency_keys).await?;
    if !refused.is_empty() {
        tracing::info!(
            refused = refused.len(),
            "orders of the batch refused; the rest go again"
        );
        return Err(BatchRecordError::Some(refused));
    }
    txn.commit()
        .await
        .map_err(|e| BatchRecordError::Whole(RecordError::CommitUncertain(e)))?;
    tracing::info!("batch of orders recorded");
    Ok(())
}

/// The whole batch in one transaction of two statements: the `tx_log` rows
/// (the batch's own claim with every order's, COMMITTED: a check-back on the
/// batch or an order waits for this transaction, or wins first and makes it
/// fail on the duplicate key), then the `NEW` orders. Each statement reads
/// its rows from one JSON array (`JSON_TABLE`), so its text is the same for
/// every batch size and the server prepares it once per connection (a
/// multi-row `VALUES` list was a new statement for each size: a prepare, and
/// the eviction of another, on most batches). Any refusal
/// ([`RecordError::Refused`]: a duplicate key, a constraint) rolls it all
/// back; nothing of the batch is written then.
async fn record_batch_at_once(
    db: &DatabaseConnection,
    batch: &OrderBatch,
    idempotency_keys: &[Option<String>],
) -> Result<(), RecordError> {
    let claims: Vec<&str> = std::iter::once(batch.batch_tx_no.as_str())
        .chain(batch.orders.iter().map(|o| o.tx_no.as_str()))
        .collect();
    let rows: Vec<serde_json::Value> = batch
        .orders
        .iter()
        .enumerate()
        .map(|(i, order)| {
            let created = order
                .created_at
                .naive_utc()
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string();
            let mut row = serde_json::json!({
                "o": order.order_no.as_str(),
                "t": order.tx_no.as_str(),
                "u": order.user_id.get(),
                "p": order.product_id.get(),
                "c": order.count,
                "at": created,
            });
            if let Some(key) = idempotency_keys.get(i).and_then(|k| k.as_deref()) {
                row["k"] = key.into();
            }
            row
        })
        .collect();
    let txn = db.begin().await.map_err(RecordError::Unavailable)?;
    let written = async {
        txn.execute_raw(stmt(
            "INSERT INTO tx_log (tx_no, outcome) SELECT j.tx_no, 'COMMITTED' \
             FROM JSON_TABLE(?, '$[*]' COLUMNS (tx_no VARCHAR(64) PATH '$')) AS j",
            [serde_json::to_string(&claims).unwrap_or_default().into()],
        ))
        .await?;
        txn.execute_raw(stmt(
            "INSERT INTO orders (order_no, tx_no, user_id, product_id, pay_count, status, \
             create_time, updated_at, idempotency_key, unit_price_cents) \
             SELECT j.o, j.t, j.u, j.p, j.c, 'NEW', j.at, j.at, j.k, \
             (SELECT sale_price_cents FROM sales WHERE product_id = j.p) \
             FROM JSON_TABLE(?, '$[*]' COLUMNS (o VARCHAR(64) PATH '$.o', t VARCHAR(64) PATH '$.t', \
             u BIGINT PATH '$.u', p BIGINT PATH '$.p', c INT PATH '$.c', at DATETIME(6) PATH '$.at', \
             k VARCHAR(64) PATH '$.k')) AS j",
            [serde_json::Value::Array(rows).to_string().into()],
        ))
        .await
    }
    .await;
    match written {
        Ok(_) => txn.commit().await.map_err(RecordError::CommitUncertain),
        Err(err) => {
            txn.rollback().await.map_err(RecordError::Unavailable)?;
            Err(classify(err))
        }
    }
}

/// Each order of `batch` under a savepoint of `txn`: the ones refused (index,
/// why). An error that is not about one order (the database unavailable)
/// ends it for the whole batch.
async fn record_one_by_one(
    txn: &sea_orm::DatabaseTransaction,
    batch: &OrderBatch,
    idempotency_keys: &[Option<String>],
) -> Result<Vec<(usize, RecordError)>, BatchRecordError> {
    let whole = |e: DbErr| BatchRecordError::Whole(RecordError::Unavailable(e));
    let mut refused = Vec::new();
    for (i, order) in batch.orders.iter().enumerate() {
        let key = idempotency_keys.get(i).and_then(|k| k.as_deref());
        let savepoint = txn.begin().await.map_err(whole)?;
        let one = match claim_tx(&savepoint, order.tx_no.as_str()).await {
            Ok(()) => insert_order(&savepoint, order, key).await,
            Err(err) => Err(err),
        };
        if one.is_ok() {
            savepoint.commit().await.map_err(whole)?;
            continue;
        }
        savepoint.rollback().await.map_err(whole)?;
        match one {
            Ok(()) => {}
            Err(RecordError::AlreadyDecided(_)) => {
                let outcome = tx_outcome(txn, order.tx_no.as_str())
                    .await
                    .map_err(whole)?
                    .unwrap_or(TxOutcome::RolledBack);
                refused.push((i, RecordError::AlreadyDecided(outcome)));
            }
            Err(err @ (RecordError::Unavailable(_) | RecordError::CommitUncertain(_))) => {
                return Err(BatchRecordError::Whole(err));
            }
            Err(err) => refused.push((i, err)),
        }
    }
    Ok(refused)
}

/// A `tx_log` row claiming `tx_no` as COMMITTED inside a local transaction:
/// a row already there means it was decided elsewhere (a check-back or a
/// sweeper claimed it; the caller reads which way).
async fn claim_tx(txn: &impl ConnectionTrait, tx_no: &str) -> Result<(), RecordError> {
    match txn
        .execute_raw(stmt(
            "INSERT INTO tx_log (tx_no, outcome) VALUES (?, 'COMMITTED')",
            [tx_no.into()],
        ))
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if is_duplicate_key(&err) => {
            Err(RecordError::AlreadyDecided(TxOutcome::RolledBack))
        }
        Err(err) => Err(classify(err)),
    }
}

/// Opens a local transaction whose first statement claims `tx_no` as
/// COMMITTED in `tx_log`: the row lock makes a concurrent check-back wait for
/// this transaction's end; a row already there means the tx_no was decided.
async fn begin_claimed(
    db: &DatabaseConnection,
    tx_no: &str,
) -> Result<sea_orm::DatabaseTransaction, RecordError> {
    let txn = db.begin().await.map_err(RecordError::Unavailable)?;
    match claim_tx(&txn, tx_no).await {
        Ok(()) => Ok(txn),
        Err(RecordError::AlreadyDecided(_)) => {
            drop(txn);
            let outcome = resolve_tx(db, tx_no)
                .await
                .map_err(RecordError::Unavailable)?;
            Err(RecordError::AlreadyDecided(outcome))
        }
        Err(err) => Err(err),
    }
}

/// The cancellation's local transaction: its own `tx_log` row (COMMITTED) and
/// the conditional `NEW → CANCELLED` update, together or not at all. When the
/// order is not NEW any more (or, for a timeout, not yet due: created after
/// `due_if_created_before`) nothing is written and the answer is
/// [`RecordError::NotCancellable`]: of a cancel racing a payment, exactly one wins.
#[tracing::instrument(skip_all, fields(tx_no = %cancel.tx_no, order_no = %cancel.order_no))]
pub async fn record_cancel(
    db: &DatabaseConnection,
    cancel: &OrderCancelled,
    due_if_created_before: Option<NaiveDateTime>,
) -> Result<(), RecordError> {
    let txn = begin_claimed(db, cancel.tx_no.as_str()).await?;
    let now = Utc::now().naive_utc();
    let mut sql = String::from(
        "UPDATE orders SET status = 'CANCELLED', cancel_tx_no = ?, closed_reason = ?, \
         closed_at = ?, updated_at = ? WHERE order_no = ? AND tx_no = ? AND status = 'NEW'",
    );
    let mut values: Vec<Value> = vec![
        cancel.tx_no.as_str().into(),
        cancel.reason.as_str().into(),
        now.into(),
        now.into(),
        cancel.order_no.as_str().into(),
        cancel.order_tx_no.as_str().into(),
    ];
    if let Some(cutoff) = due_if_created_before {
        sql.push_str(" AND create_time <= ?");
        values.push(cutoff.into());
    }
    let changed = txn
        .execute_raw(stmt(&sql, values))
        .await
        .map_err(classify)?
        .rows_affected();
    if changed != 1 {
        drop(txn);
        return Err(RecordError::NotCancellable);
    }
    txn.commit().await.map_err(RecordError::CommitUncertain)?;
    tracing::info!(reason = cancel.reason.as_str(), "order cancelled");
    Ok(())
}

/// What [`fail_order`] came to.
#[derive(Debug)]
pub enum Failing {
    /// NEW → FAILED now.
    Failed(Order),
    /// Closed before (cancelled, failed by an earlier delivery) or paid.
    AlreadyClosed(Order),
    NotFound,
}

/// Compensation for stock that could not be deducted: `NEW → FAILED`, once.
#[tracing::instrument(skip(db))]
pub async fn fail_order(db: &DatabaseConnection, order_tx_no: &str) -> Result<Failing, DbErr> {
    let now = Utc::now().naive_utc();
    let changed = db
        .execute_raw(stmt(
            "UPDATE orders SET status = 'FAILED', closed_reason = ?, closed_at = ?, updated_at = ? \
             WHERE tx_no = ? AND status = 'NEW'",
            [
                ClosedReason::StockInsufficient.as_db().into(),
                now.into(),
                now.into(),
                order_tx_no.into(),
            ],
        ))
        .await?
        .rows_affected();
    let order = select_order("tx_no = ?", [order_tx_no.into()], db).await?;
    Ok(match order {
        None => Failing::NotFound,
        Some(order) if changed == 1 => Failing::Failed(order),
        Some(order) => Failing::AlreadyClosed(order),
    })
}

/// Flags a PAID order stock-service found no stock for; `true` the first time.
pub async fn mark_stock_missing(db: &DatabaseConnection, order_no: &str) -> Result<bool, DbErr> {
    Ok(db
        .execute_raw(stmt(
            "UPDATE orders SET stock_missing_at = ? WHERE order_no = ? AND status = 'PAID' \
             AND stock_missing_at IS NULL",
            [Utc::now().naive_utc().into(), order_no.into()],
        ))
        .await?
        .rows_affected()
        == 1)
}

/// Records that a closed order's Redis reservation was given back.
pub async fn mark_reservation_returned(
    db: &DatabaseConnection,
    order_no: &str,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        "UPDATE orders SET reservation_returned_at = ? WHERE order_no = ? \
         AND reservation_returned_at IS NULL",
        [Utc::now().naive_utc().into(), order_no.into()],
    ))
    .await?;
    Ok(())
}

/// NEW orders created before `cutoff` (their payment time is over), oldest first.
pub async fn orders_past_deadline(
    db: &DatabaseConnection,
    cutoff: NaiveDateTime,
    limit: u32,
) -> Result<Vec<Order>, DbErr> {
    select_orders(
        "status = 'NEW' AND create_time <= ? ORDER BY create_time LIMIT ?",
        [cutoff.into(), i64::from(limit).into()],
        db,
    )
    .await
}

/// CANCELLED/FAILED orders whose Redis reservation was not yet given back
/// (the service stopped between the two), oldest first.
pub async fn closed_orders_holding_reservations(
    db: &DatabaseConnection,
    limit: u32,
) -> Result<Vec<Order>, DbErr> {
    select_orders(
        "status IN ('CANCELLED', 'FAILED') AND reservation_returned_at IS NULL \
         ORDER BY closed_at LIMIT ?",
        [i64::from(limit).into()],
        db,
    )
    .await
}

/// The order matching a condition on a unique key, if any.
async fn select_order(
    condition: &str,
    values: impl IntoIterator<Item = Value>,
    db: &DatabaseConnection,
) -> Result<Option<Order>, DbErr> {
    Ok(select_orders(condition, values, db).await?.pop())
}

async fn select_orders(
    condition: &str,
    values: impl IntoIterator<Item = Value>,
    db: &DatabaseConnection,
) -> Result<Vec<Order>, DbErr> {
    OrderRow::find_by_statement(stmt(
        &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE {condition}"),
        values,
    ))
    .all(db)
    .await?
    .into_iter()
    .map(Order::try_from)
    .collect()
}

/// A per-product figure of the order DB (see [`count_for_product`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductFigure {
    /// Messages committed for the product, as stock-service counts them: one
    /// per order (its creation) plus one per cancellation.
    CommittedMessages,
    /// Orders holding stock (NEW or PAID).
    HeldOrders,
    /// Items those orders hold.
    HeldItems,
    /// The most NEW/PAID orders one buyer holds.
    MostPerBuyer,
    /// PAID orders stock-service found no stock for.
    PaidWithoutStock,
}

impl ProductFigure {
    /// Its query: the first column a BIGINT, the one `?` the product.
    fn sql(self) -> &'static str {
        match self {
            Self::CommittedMessages => {
                "SELECT COUNT(*) + COUNT(cancel_tx_no) FROM orders WHERE product_id = ?"
            }
            Self::HeldOrders => {
                "SELECT COUNT(*) FROM orders WHERE product_id = ? AND status IN ('NEW', 'PAID')"
            }
            Self::HeldItems => {
                "SELECT CAST(SUM(pay_count) AS SIGNED) FROM orders \
                 WHERE product_id = ? AND status IN ('NEW', 'PAID')"
            }
            Self::MostPerBuyer => {
                "SELECT CAST(MAX(n) AS SIGNED) FROM (SELECT COUNT(*) AS n FROM orders \
                 WHERE product_id = ? AND status IN ('NEW', 'PAID') GROUP BY user_id) per_buyer"
            }
            Self::PaidWithoutStock => {
                "SELECT COUNT(*) FROM orders WHERE product_id = ? AND stock_missing_at IS NOT NULL"
            }
        }
    }
}

/// One of a product's [`ProductFigure`]s; NULL counts as 0.
pub async fn count_for_product(
    db: &DatabaseConnection,
    figure: ProductFigure,
    product: i64,
) -> Result<i64, DbErr> {
    common::db::scalar(db, figure.sql(), [product.into()]).await
}

/// A statement that the server executed and refused is a refusal; anything
/// else (connection lost, pool exhausted) means the database was unavailable.
fn classify(err: DbErr) -> RecordError {
    match err {
        DbErr::Exec(_) | DbErr::Query(_) => RecordError::Refused(err),
        other => RecordError::Unavailable(other),
    }
}

/// The check-back's answer, final by construction: claim the tx_no with a
/// ROLLED_BACK row unless a row exists. If the local transaction is still
/// running, the claim waits on its row lock and then sees its outcome; if the
/// local transaction has not started yet, the claim wins and that transaction
/// later fails on the duplicate key. Either way both sides see the same row.
#[tracing::instrument(skip(db))]
pub async fn resolve_tx(db: &DatabaseConnection, tx_no: &str) -> Result<TxOutcome, DbErr> {
    let claim = db
        .execute_raw(stmt(
            "INSERT IGNORE INTO tx_log (tx_no, outcome) VALUES (?, 'ROLLED_BACK')",
            [tx_no.into()],
        ))
        .await?;
    let outcome = tx_outcome(db, tx_no)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("tx_log row {tx_no} after claiming it")))?;
    tracing::info!(
        ?outcome,
        claimed = claim.rows_affected() == 1,
        "transaction resolved"
    );
    Ok(outcome)
}

#[derive(Debug, FromQueryResult)]
struct OrderRow {
    order_no: String,
    tx_no: String,
    user_id: i64,
    product_id: i64,
    pay_count: i32,
    status: String,
    create_time: NaiveDateTime,
    updated_at: NaiveDateTime,
    pay_no: Option<String>,
    paid_at: Option<NaiveDateTime>,
    closed_reason: Option<String>,
    closed_at: Option<NaiveDateTime>,
    cancel_tx_no: Option<String>,
    unit_price_cents: Option<i64>,
}

impl TryFrom<OrderRow> for Order {
    type Error = DbErr;

    fn try_from(row: OrderRow) -> Result<Self, DbErr> {
        let status = OrderStatus::from_db(&row.status)
            .ok_or_else(|| DbErr::Custom(format!("unexpected order status {:?}", row.status)))?;
        Ok(Order {
            order_no: row.order_no,
            tx_no: row.tx_no,
            user_id: row.user_id,
            product_id: row.product_id,
            count: i64::from(row.pay_count),
            status,
            created_at: DateTime::from_naive_utc_and_offset(row.create_time, Utc),
            updated_at: DateTime::from_naive_utc_and_offset(row.updated_at, Utc),
            pay_no: row.pay_no,
            paid_at: row
                .paid_at
                .map(|t| DateTime::from_naive_utc_and_offset(t, Utc)),
            closed_reason: row
                .closed_reason
                .map(|raw| {
                    ClosedReason::from_db(&raw)
                        .ok_or_else(|| DbErr::Custom(format!("unexpected closed_reason {raw:?}")))
                })
                .transpose()?,
            closed_at: row
                .closed_at
                .map(|t| DateTime::from_naive_utc_and_offset(t, Utc)),
            pay_deadline: None,
            cancel_tx_no: row.cancel_tx_no,
            unit_price_cents: row.unit_price_cents,
            amount_cents: row
                .unit_price_cents
                .map(|unit| unit * i64::from(row.pay_count)),
        })
    }
}

const ORDER_COLUMNS: &str = "order_no, tx_no, user_id, product_id, pay_count, status, create_time, \
     updated_at, pay_no, paid_at, closed_reason, closed_at, cancel_tx_no, unit_price_cents";

/// What paying an order came to.
#[derive(Debug)]
pub enum Payment {
    /// NEW → PAID now (or earlier with the same pay_no: repeating is harmless).
    Paid(Order),
    /// The order is not NEW: cancelled, failed, or paid with another pay_no.
    NotPayable(Order),
    /// The amount is not what the order costs (nothing changed).
    AmountMismatch(Order),
    /// No such order for this user.
    NotFound,
}

/// `NEW → PAID` as one conditional update: of racing payments (or a payment
/// racing a cancel or the timeout), exactly one changes the row. An order
/// created at or before `created_after` is past its deadline: not payable.
/// `amount_cents` must be what the order costs (count × unit price); it may
/// be left out only for an order without a price.
#[tracing::instrument(skip(db), fields(order_no = %order_no))]
pub async fn pay_order(
    db: &DatabaseConnection,
    order_no: &str,
    user_id: i64,
    pay_no: &str,
    amount_cents: Option<i64>,
    created_after: NaiveDateTime,
) -> Result<Payment, DbErr> {
    let now = Utc::now().naive_utc();
    db.execute_raw(stmt(
        "UPDATE orders SET status = 'PAID', pay_no = ?, paid_at = ?, updated_at = ? \
         WHERE order_no = ? AND user_id = ? AND status = 'NEW' AND create_time > ? \
         AND COALESCE(unit_price_cents * pay_count, 0) = COALESCE(?, 0)",
        [
            pay_no.into(),
            now.into(),
            now.into(),
            order_no.into(),
            user_id.into(),
            created_after.into(),
            amount_cents.into(),
        ],
    ))
    .await?;
    let Some(order) = find_order(db, order_no)
        .await?
        .filter(|o| o.user_id == user_id)
    else {
        return Ok(Payment::NotFound);
    };
    let owed = order.amount_cents.unwrap_or(0);
    Ok(
        if order.status == OrderStatus::Paid && order.pay_no.as_deref() == Some(pay_no) {
            tracing::info!(pay_no, "order paid");
            Payment::Paid(order)
        } else if order.status == OrderStatus::New
            && amount_cents.map_or(owed != 0, |given| given != owed)
        {
            Payment::AmountMismatch(order)
        } else {
            Payment::NotPayable(order)
        },
    )
}

/// A user's orders, newest first: one page and the total.
#[tracing::instrument(skip(db))]
pub async fn orders_of_user(
    db: &DatabaseConnection,
    user_id: i64,
    page: u32,
    page_size: u32,
) -> Result<(Vec<Order>, i64), DbErr> {
    let total = db
        .query_one_raw(stmt(
            "SELECT COUNT(*) AS n FROM orders WHERE user_id = ?",
            [user_id.into()],
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    let offset = u64::from(page.saturating_sub(1)) * u64::from(page_size);
    let orders = select_orders(
        "user_id = ? ORDER BY create_time DESC, id DESC LIMIT ? OFFSET ?",
        [
            user_id.into(),
            i64::from(page_size).into(),
            (offset as i64).into(),
        ],
        db,
    )
    .await?;
    Ok((orders, total))
}

/// The order a user created with `idempotency_key`, if any.
#[tracing::instrument(skip(db))]
pub async fn find_order_by_idempotency_key(
    db: &DatabaseConnection,
    user_id: i64,
    idempotency_key: &str,
) -> Result<Option<Order>, DbErr> {
    select_order(
        "user_id = ? AND idempotency_key = ?",
        [user_id.into(), idempotency_key.into()],
        db,
    )
    .await
}

#[tracing::instrument(skip(db))]
pub async fn find_order(db: &DatabaseConnection, order_no: &str) -> Result<Option<Order>, DbErr> {
    select_order("order_no = ?", [order_no.into()], db).await
}

/// Which message of an order stock-service was seen to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    Creation,
    Cancellation,
}

/// Orders whose committed creation (or cancellation) stock-service has not
/// been seen to apply, committed at or before `cutoff`, oldest first; one
/// product or all.
pub async fn unconfirmed(
    db: &DatabaseConnection,
    which: Confirmed,
    cutoff: NaiveDateTime,
    product: Option<i64>,
    limit: u32,
) -> Result<Vec<Order>, DbErr> {
    let condition = match which {
        Confirmed::Creation => "stock_applied_at IS NULL AND create_time <= ?",
        Confirmed::Cancellation => {
            "cancel_tx_no IS NOT NULL AND cancel_applied_at IS NULL AND closed_at <= ?"
        }
    };
    let order_by = match which {
        Confirmed::Creation => "create_time",
        Confirmed::Cancellation => "closed_at",
    };
    let mut values: Vec<Value> = vec![cutoff.into()];
    let filter = match product {
        Some(p) => {
            values.push(p.into());
            " AND product_id = ?"
        }
        None => "",
    };
    values.push(i64::from(limit).into());
    select_orders(
        &format!("{condition}{filter} ORDER BY {order_by} LIMIT ?"),
        values,
        db,
    )
    .await
}

/// Records that stock-service applied these messages (by their tx_no), so
/// they are not asked about again.
pub async fn confirm_applied(
    db: &DatabaseConnection,
    which: Confirmed,
    tx_nos: &[String],
) -> Result<(), DbErr> {
    if tx_nos.is_empty() {
        return Ok(());
    }
    let (column, key) = match which {
        Confirmed::Creation => ("stock_applied_at", "tx_no"),
        Confirmed::Cancellation => ("cancel_applied_at", "cancel_tx_no"),
    };
    let marks = vec!["?"; tx_nos.len()].join(", ");
    let mut values: Vec<Value> = vec![Utc::now().naive_utc().into()];
    values.extend(tx_nos.iter().map(|t| Value::from(t.as_str())));
    db.execute_raw(stmt(
        &format!("UPDATE orders SET {column} = ? WHERE {key} IN ({marks}) AND {column} IS NULL"),
        values,
    ))
    .await?;
    Ok(())
}

/// The outcome `tx_log` holds for a tx_no, without claiming it.
pub async fn tx_outcome(
    db: &impl ConnectionTrait,
    tx_no: &str,
) -> Result<Option<TxOutcome>, DbErr> {
    db.query_one_raw(stmt(
        "SELECT outcome FROM tx_log WHERE tx_no = ?",
        [tx_no.into()],
    ))
    .await?
    .map(|row| TxOutcome::from_db(&row.try_get::<String>("", "outcome")?))
    .transpose()
}

/// One NEW/PAID order's hold on its sale (what Redis must reserve for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub tx_no: String,
    pub user_id: i64,
    pub count: i64,
}

/// A product's NEW/PAID orders.
pub async fn holdings(db: &DatabaseConnection, product: i64) -> Result<Vec<Holding>, DbErr> {
    db.query_all_raw(stmt(
        "SELECT tx_no, user_id, pay_count FROM orders WHERE product_id = ? AND status IN ('NEW', 'PAID')",
        [product.into()],
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
    .collect()
}

/// Every sale recorded in the order DB.
pub async fn sales(db: &DatabaseConnection) -> Result<Vec<SaleRecord>, DbErr> {
    db.query_all_raw(stmt(
        &format!("SELECT {SALE_COLUMNS} FROM sales ORDER BY product_id"),
        [],
    ))
    .await?
    .iter()
    .map(sale_record)
    .collect()
}

/// The order created by `tx_no`, if any.
pub async fn find_order_by_tx(
    db: &DatabaseConnection,
    tx_no: &str,
) -> Result<Option<Order>, DbErr> {
    select_order("tx_no = ?", [tx_no.into()], db).await
}

/// Records a sale (or its new terms when opened again).
pub async fn record_sale(
    db: &DatabaseConnection,
    product: common::domain::ProductId,
    terms: &SaleTerms,
) -> Result<(), DbErr> {
    let naive = |t: Option<DateTime<Utc>>| t.map(|t| t.naive_utc());
    db.execute_raw(stmt(
        "INSERT INTO sales (product_id, per_user_limit, opened_stock, name, list_price_cents, \
         sale_price_cents, starts_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE per_user_limit = VALUES(per_user_limit), \
         opened_stock = VALUES(opened_stock), opened_at = CURRENT_TIMESTAMP(3), \
         name = VALUES(name), list_price_cents = VALUES(list_price_cents), \
         sale_price_cents = VALUES(sale_price_cents), starts_at = VALUES(starts_at), \
         ends_at = VALUES(ends_at)",
        [
            product.get().into(),
            i64::from(terms.per_user_limit).into(),
            i64::from(terms.stock).into(),
            terms.name.clone().into(),
            terms.list_price_cents.into(),
            terms.sale_price_cents.into(),
            naive(terms.window.starts_at).into(),
            naive(terms.window.ends_at).into(),
        ],
    ))
    .await?;
    Ok(())
}

const SALE_COLUMNS: &str = "product_id, per_user_limit, opened_stock, name, list_price_cents, \
     sale_price_cents, starts_at, ends_at";

fn sale_record(row: &sea_orm::QueryResult) -> Result<SaleRecord, DbErr> {
    let utc = |t: Option<NaiveDateTime>| t.map(|t| DateTime::from_naive_utc_and_offset(t, Utc));
    Ok(SaleRecord {
        product: common::domain::ProductId::parse(row.try_get::<i64>("", "product_id")?)
            .map_err(|e| DbErr::Custom(e.to_string()))?,
        per_user_limit: u32::try_from(row.try_get::<i32>("", "per_user_limit")?).unwrap_or(1),
        opened_stock: i64::from(row.try_get::<i32>("", "opened_stock")?),
        name: row.try_get("", "name")?,
        list_price_cents: row.try_get("", "list_price_cents")?,
        sale_price_cents: row.try_get("", "sale_price_cents")?,
        window: SaleWindow {
            starts_at: utc(row.try_get("", "starts_at")?),
            ends_at: utc(row.try_get("", "ends_at")?),
        },
    })
}

/// One sale as recorded, if any.
pub async fn find_sale(
    db: &DatabaseConnection,
    product: common::domain::ProductId,
) -> Result<Option<SaleRecord>, DbErr> {
    db.query_one_raw(stmt(
        &format!("SELECT {SALE_COLUMNS} FROM sales WHERE product_id = ?"),
        [product.get().into()],
    ))
    .await?
    .as_ref()
    .map(sale_record)
    .transpose()
}

/// The newest `limit` sales.
pub async fn newest_sales(db: &DatabaseConnection, limit: u32) -> Result<Vec<SaleRecord>, DbErr> {
    db.query_all_raw(stmt(
        &format!("SELECT {SALE_COLUMNS} FROM sales ORDER BY opened_at DESC LIMIT ?"),
        [i64::from(limit).into()],
    ))
    .await?
    .iter()
    .map(sale_record)
    .collect()
}

/// Every sale's opened stock and per-user limit, by product.
pub async fn sale_terms(
    db: &DatabaseConnection,
) -> Result<std::collections::BTreeMap<i64, (i64, i64)>, DbErr> {
    db.query_all_raw(stmt(
        "SELECT product_id, opened_stock, per_user_limit FROM sales",
        [],
    ))
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get::<i64>("", "product_id")?,
            (
                i64::from(row.try_get::<i32>("", "opened_stock")?),
                i64::from(row.try_get::<i32>("", "per_user_limit")?),
            ),
        ))
    })
    .collect()
}

/// Orders per product and status.
pub async fn orders_by_status(
    db: &DatabaseConnection,
) -> Result<std::collections::BTreeMap<i64, std::collections::BTreeMap<String, i64>>, DbErr> {
    let mut by_status: std::collections::BTreeMap<i64, std::collections::BTreeMap<String, i64>> =
        Default::default();
    for row in db
        .query_all_raw(stmt(
            "SELECT product_id, status, COUNT(*) AS n FROM orders GROUP BY product_id, status",
            [],
        ))
        .await?
    {
        by_status
            .entry(row.try_get("", "product_id")?)
            .or_default()
            .insert(row.try_get("", "status")?, row.try_get("", "n")?);
    }
    Ok(by_status)
}
