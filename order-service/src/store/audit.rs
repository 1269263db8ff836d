//! What the consistency auditor reads from the order database: every
//! committed business fact (an order's creation and its cancellation, each a
//! transaction of its own with a tx_no) in a time window, and look-ups of the
//! tx_nos the broker or stock-service know that the window did not hold.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use common::db::stmt;
use common::domain::BATCH_TX_PREFIX;
use common::stock_log::MessageKind;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, QueryResult, Value};

use super::TxOutcome;

/// An order's creation or cancellation, as the order DB records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub tx_no: String,
    pub kind: MessageKind,
    pub order_no: String,
    pub product_id: i64,
    pub count: i64,
    /// The `tx_log` row's outcome; `None` when the row is missing.
    pub outcome: Option<TxOutcome>,
    /// When it was committed (`tx_log.create_time`, else the order's own time).
    pub committed_at: DateTime<Utc>,
}

/// The creations and cancellations recorded at or after `since`, of one
/// product or all, oldest first; at most `limit` of each kind, and `true`
/// when there were more.
#[tracing::instrument(skip(db))]
pub async fn facts(
    db: &DatabaseConnection,
    since: Option<DateTime<Utc>>,
    product: Option<i64>,
    limit: u64,
) -> Result<(Vec<Fact>, bool), DbErr> {
    let mut truncated = false;
    let since = since.unwrap_or(DateTime::UNIX_EPOCH).naive_utc();
    let mut facts = Vec::new();
    for (kind, tx_column, time_column) in [
        (MessageKind::Creation, "o.tx_no", "o.create_time"),
        (MessageKind::Cancellation, "o.cancel_tx_no", "o.closed_at"),
    ] {
        let mut values: Vec<Value> = vec![since.into()];
        let filter = match product {
            Some(p) => {
                values.push(p.into());
                " AND o.product_id = ?"
            }
            None => "",
        };
        values.push((limit + 1).into());
        let mut rows = db
            .query_all_raw(stmt(
                &format!(
                    "SELECT {tx_column} AS fact_tx_no, o.order_no, o.product_id, o.pay_count, \
                     {time_column} AS recorded_at, t.outcome, t.create_time AS committed_at \
                     FROM orders o LEFT JOIN tx_log t ON t.tx_no = {tx_column} \
                     WHERE {tx_column} IS NOT NULL AND {time_column} >= ?{filter} \
                     ORDER BY {time_column} LIMIT ?"
                ),
                values,
            ))
            .await?;
        if rows.len() as u64 > limit {
            truncated = true;
            rows.truncate(limit as usize);
        }
        for row in rows {
            facts.push(fact_of(&row, kind)?);
        }
    }
    Ok((facts, truncated))
}

fn fact_of(row: &QueryResult, kind: MessageKind) -> Result<Fact, DbErr> {
    let outcome = row
        .try_get::<Option<String>>("", "outcome")?
        .map(|raw| TxOutcome::from_db(&raw))
        .transpose()?;
    let committed_at = row
        .try_get::<Option<NaiveDateTime>>("", "committed_at")?
        .or(row.try_get::<Option<NaiveDateTime>>("", "recorded_at")?)
        .unwrap_or_default()
        .and_utc();
    Ok(Fact {
        tx_no: row.try_get("", "fact_tx_no")?,
        kind,
        order_no: row.try_get("", "order_no")?,
        product_id: row.try_get("", "product_id")?,
        count: i64::from(row.try_get::<i32>("", "pay_count")?),
        outcome,
        committed_at,
    })
}

/// A COMMITTED `tx_log` row: its tx_no and when.
pub type Committed = (String, DateTime<Utc>);

/// The tx_nos `tx_log` holds as COMMITTED from `since` on, with their
/// commit time (each must be an order's creation or cancellation; a group
/// commit's own row is not a business fact, its orders' rows are): at most
/// `limit`, and `true` when there were more.
#[tracing::instrument(skip(db))]
pub async fn committed_since(
    db: &DatabaseConnection,
    since: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<(Vec<Committed>, bool), DbErr> {
    let since = since.unwrap_or(DateTime::UNIX_EPOCH).naive_utc();
    let mut committed = db
        .query_all_raw(stmt(
            "SELECT tx_no, create_time FROM tx_log WHERE outcome = 'COMMITTED' AND create_time >= ? \
             AND tx_no NOT LIKE ? ORDER BY create_time LIMIT ?",
            [
                since.into(),
                format!("{BATCH_TX_PREFIX}%").into(),
                (limit + 1).into(),
            ],
        ))
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("", "tx_no")?,
                row.try_get::<NaiveDateTime>("", "create_time")?.and_utc(),
            ))
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let truncated = committed.len() as u64 > limit;
    committed.truncate(limit as usize);
    Ok((committed, truncated))
}

/// What the order DB knows of each of `tx_nos`, whatever its time: the
/// `tx_log` outcome and the order it created or cancelled (absent: unknown).
#[tracing::instrument(skip_all, fields(asked = tx_nos.len()))]
pub async fn look_up(
    db: &DatabaseConnection,
    tx_nos: &[String],
) -> Result<HashMap<String, Known>, DbErr> {
    let mut known: HashMap<String, Known> = HashMap::new();
    for chunk in tx_nos.chunks(1000) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let values = || chunk.iter().map(|t| Value::from(t.as_str()));
        for row in db
            .query_all_raw(stmt(
                &format!("SELECT tx_no, outcome FROM tx_log WHERE tx_no IN ({marks})"),
                values(),
            ))
            .await?
        {
            let tx_no: String = row.try_get("", "tx_no")?;
            known.entry(tx_no).or_default().outcome =
                Some(TxOutcome::from_db(&row.try_get::<String>("", "outcome")?)?);
        }
        let rows = db
            .query_all_raw(stmt(
                &format!(
                    "SELECT order_no, tx_no, cancel_tx_no FROM orders \
                     WHERE tx_no IN ({marks}) OR cancel_tx_no IN ({marks})"
                ),
                values().chain(values()),
            ))
            .await?;
        for row in rows {
            let order_no: String = row.try_get("", "order_no")?;
            let tx_no: String = row.try_get("", "tx_no")?;
            let cancel: Option<String> = row.try_get("", "cancel_tx_no")?;
            for (tx, kind) in [
                (Some(tx_no), MessageKind::Creation),
                (cancel, MessageKind::Cancellation),
            ] {
                if let Some(tx) = tx.filter(|t| chunk.contains(t)) {
                    known.entry(tx).or_default().order = Some((order_no.clone(), kind));
                }
            }
        }
    }
    Ok(known)
}

/// One tx_no as the order DB knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub outcome: Option<TxOutcome>,
    pub order: Option<(String, MessageKind)>,
}

/// The creation and cancellation tx_nos of each of `order_nos` that exists.
#[tracing::instrument(skip_all, fields(asked = order_nos.len()))]
pub async fn transactions_of_orders(
    db: &DatabaseConnection,
    order_nos: &[String],
) -> Result<HashMap<String, (String, Option<String>)>, DbErr> {
    let mut found = HashMap::new();
    for chunk in order_nos.chunks(1000) {
        let marks = vec!["?"; chunk.len()].join(", ");
        for row in db
            .query_all_raw(stmt(
                &format!(
                    "SELECT order_no, tx_no, cancel_tx_no FROM orders WHERE order_no IN ({marks})"
                ),
                chunk.iter().map(|o| Value::from(o.as_str())),
            ))
            .await?
        {
            found.insert(
                row.try_get("", "order_no")?,
                (row.try_get("", "tx_no")?, row.try_get("", "cancel_tx_no")?),
            );
        }
    }
    Ok(found)
}
