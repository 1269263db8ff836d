//! Makes stuck messages visible: a consumer on the DLQs of the watched groups
//! (`%DLQ%<group>`: messages a consumer gave up on) and on the broker's
//! `TRANS_CHECK_MAX_TIME_TOPIC` (half messages discarded after too many
//! check-backs) copies each one into `dead_letters`, logs it at ERROR, and
//! reconciliation lists the unresolved ones until an operator resolves them.

use chrono::{DateTime, NaiveDateTime, Utc};
use common::mq::{ConsumeEach, EachMessage, MqError, MqRuntime};
use rocketmq_client_rust::{DefaultMQPushConsumer, MQPushConsumer};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::MessageConst;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::topic::TopicValidator;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult};
use serde::Serialize;
use tokio::runtime::Handle;

use common::db::stmt;

use crate::metrics::{DeadLetterSource, OrderMetrics};
use crate::settings::Settings;
use std::sync::Arc;

/// The DLQ topic of a consumer group.
pub fn dlq_topic(group: &str) -> String {
    format!("%DLQ%{group}")
}

/// Bodies are kept up to this many bytes (lossy UTF-8).
const BODY_LIMIT: usize = 4096;

/// One stuck message as reconciliation shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub msg_id: String,
    /// `%DLQ%<group>` or `TRANS_CHECK_MAX_TIME_TOPIC`.
    pub source: String,
    pub original_topic: Option<String>,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub body: String,
    pub reconsume_times: i32,
    pub seen_at: DateTime<Utc>,
    /// What [`crate::redelivery`] found and did; `None` until it looked.
    pub verdict: Option<Verdict>,
}

/// What a dead letter of our transactional messages turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Its tx_no never committed: claimed as rolled back, reservation returned.
    RolledBack,
    /// Committed and stock-service had already applied it: harmless.
    AlreadyDelivered,
    /// Committed and not applied: sent again, waiting for stock-service.
    Resent,
    /// Committed, sent again, and now applied.
    Redelivered,
    /// Not one of our order messages (or unreadable): a person must look.
    NeedsOperator,
}

impl Verdict {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::RolledBack => "ROLLED_BACK",
            Self::AlreadyDelivered => "ALREADY_DELIVERED",
            Self::Resent => "RESENT",
            Self::Redelivered => "REDELIVERED",
            Self::NeedsOperator => "NEEDS_OPERATOR",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        [
            Self::RolledBack,
            Self::AlreadyDelivered,
            Self::Resent,
            Self::Redelivered,
            Self::NeedsOperator,
        ]
        .into_iter()
        .find(|v| v.as_db() == raw)
    }

    /// Nothing is missing from stock-service because of this letter.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::RolledBack | Self::AlreadyDelivered | Self::Redelivered
        )
    }
}

#[derive(FromQueryResult)]
struct DeadLetterRow {
    msg_id: String,
    source: String,
    original_topic: Option<String>,
    tags: Option<String>,
    msg_keys: Option<String>,
    body: String,
    reconsume_times: i32,
    seen_at: NaiveDateTime,
    verdict: Option<String>,
}

impl From<DeadLetterRow> for DeadLetter {
    fn from(r: DeadLetterRow) -> Self {
        DeadLetter {
            msg_id: r.msg_id,
            source: r.source,
            original_topic: r.original_topic,
            tags: r.tags,
            keys: r.msg_keys,
            body: r.body,
            reconsume_times: r.reconsume_times,
            seen_at: DateTime::from_naive_utc_and_offset(r.seen_at, Utc),
            verdict: r.verdict.as_deref().and_then(Verdict::from_db),
        }
    }
}

const LETTER_COLUMNS: &str =
    "msg_id, source, original_topic, tags, msg_keys, body, reconsume_times, seen_at, verdict";

/// Records a dead letter once (by msg_id); `true` when it is new.
pub async fn record(db: &DatabaseConnection, letter: &DeadLetter) -> Result<bool, DbErr> {
    let inserted = db
        .execute_raw(stmt(
            "INSERT IGNORE INTO dead_letters (msg_id, source, original_topic, tags, msg_keys, body, \
             reconsume_times) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                letter.msg_id.clone().into(),
                letter.source.clone().into(),
                letter.original_topic.clone().into(),
                letter.tags.clone().into(),
                letter.keys.clone().into(),
                letter.body.clone().into(),
                letter.reconsume_times.into(),
            ],
        ))
        .await?
        .rows_affected();
    Ok(inserted == 1)
}

/// The unresolved dead letters, newest first (at most `limit`), and how many there are.
pub async fn unresolved(
    db: &DatabaseConnection,
    limit: u32,
) -> Result<(Vec<DeadLetter>, i64), DbErr> {
    // One statement, so the count and the list come from one snapshot (two
    // queries let a letter recorded in between make them disagree).
    let rows = db
        .query_all_raw(stmt(
            &format!(
                "SELECT {LETTER_COLUMNS}, COUNT(*) OVER () AS total FROM dead_letters \
                 WHERE resolved_at IS NULL ORDER BY seen_at DESC LIMIT ?"
            ),
            [i64::from(limit).into()],
        ))
        .await?;
    let total = rows
        .first()
        .map(|row| row.try_get::<i64>("", "total"))
        .transpose()?
        .unwrap_or(0);
    let letters = rows
        .iter()
        .map(|row| DeadLetterRow::from_query_result(row, "").map(DeadLetter::from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((letters, total))
}

/// Unresolved dead letters of order messages whose verdict is not settled
/// yet (none, resent, or needing a look), oldest first.
pub async fn unsettled(db: &DatabaseConnection, limit: u32) -> Result<Vec<DeadLetter>, DbErr> {
    Ok(DeadLetterRow::find_by_statement(stmt(
        &format!(
            "SELECT {LETTER_COLUMNS} FROM dead_letters WHERE resolved_at IS NULL \
             AND tags IN (?, ?) AND (verdict IS NULL OR verdict IN (?, ?)) \
             ORDER BY seen_at LIMIT ?"
        ),
        [
            common::messages::TAG_ORDER_CREATED.into(),
            common::messages::TAG_ORDER_CANCELLED.into(),
            Verdict::Resent.as_db().into(),
            Verdict::NeedsOperator.as_db().into(),
            i64::from(limit).into(),
        ],
    ))
    .all(db)
    .await?
    .into_iter()
    .map(DeadLetter::from)
    .collect())
}

/// Records what a dead letter turned out to be.
pub async fn set_verdict(
    db: &DatabaseConnection,
    msg_id: &str,
    verdict: Verdict,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        "UPDATE dead_letters SET verdict = ? WHERE msg_id = ?",
        [verdict.as_db().into(), msg_id.into()],
    ))
    .await?;
    Ok(())
}

/// Marks a dead letter handled; `false` when there is no such unresolved one.
pub async fn resolve(db: &DatabaseConnection, msg_id: &str) -> Result<bool, DbErr> {
    Ok(db
        .execute_raw(stmt(
            "UPDATE dead_letters SET resolved_at = ? WHERE msg_id = ? AND resolved_at IS NULL",
            [Utc::now().naive_utc().into(), msg_id.into()],
        ))
        .await?
        .rows_affected()
        == 1)
}

struct DeadLetterListener {
    db: DatabaseConnection,
    metrics: Arc<OrderMetrics>,
    /// Discarded transactions of other topics (other systems on the broker) are not ours.
    order_topic: String,
    runtime: Handle,
}

impl DeadLetterListener {
    fn letter_of(&self, msg: &MessageExt) -> Option<DeadLetter> {
        let source = msg.topic().to_string();
        let real_topic = msg
            .property(&MessageConst::PROPERTY_REAL_TOPIC.into())
            .map(|t| t.to_string());
        if source == TopicValidator::RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC
            && real_topic.as_deref() != Some(self.order_topic.as_str())
        {
            return None;
        }
        let body = msg.body().unwrap_or_default();
        let body = String::from_utf8_lossy(&body[..body.len().min(BODY_LIMIT)]).into_owned();
        Some(DeadLetter {
            msg_id: msg.msg_id().to_string(),
            source,
            original_topic: real_topic,
            tags: msg.get_tags().map(|t| t.to_string()),
            keys: msg.get_keys().map(|k| k.to_string()),
            body,
            reconsume_times: msg.reconsume_times(),
            seen_at: Utc::now(),
            verdict: None,
        })
    }
}

impl ConsumeEach for DeadLetterListener {
    fn consume_one(&self, msg: &MessageExt) -> bool {
        let Some(letter) = self.letter_of(msg) else {
            return true;
        };
        match self.runtime.block_on(record(&self.db, &letter)) {
            Ok(true) => {
                self.metrics
                    .dead_letters
                    .inc(if letter.source.starts_with("%DLQ%") {
                        DeadLetterSource::Dlq
                    } else {
                        DeadLetterSource::DiscardedTransaction
                    });
                tracing::error!(
                msg_id = %letter.msg_id, source = %letter.source, keys = ?letter.keys,
                tags = ?letter.tags, "dead letter: a message will not be delivered by itself; \
                see GET /api/admin/reconcile"
                )
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(%err, "dead letter not recorded; retrying");
                return false;
            }
        }
        true
    }
}

/// The running watcher; [`DeadLetterWatch::shutdown`] stops it.
pub struct DeadLetterWatch {
    consumer: DefaultMQPushConsumer,
}

impl DeadLetterWatch {
    /// Subscribes to the watched groups' DLQs (created now if missing, so
    /// their route is known at once) and to the discarded transactions.
    pub async fn start(
        mq: &MqRuntime,
        settings: &Settings,
        db: DatabaseConnection,
        metrics: Arc<OrderMetrics>,
    ) -> Result<Self, MqError> {
        let watch = &settings.dead_letters;
        let mut consumer = DefaultMQPushConsumer::builder(mq.client())
            .consumer_group(watch.group.clone())
            .name_server_addr(settings.mq.namesrv_addr.clone())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .consume_thread_min(1)
            .consume_thread_max(2)
            .build();
        for group in &watch.watched_groups {
            let topic = dlq_topic(group);
            common::mq::ensure_topic(mq, &settings.mq, &topic).await?;
            consumer.subscribe(topic.as_str(), "*").await?;
        }
        if watch.watch_discarded_transactions {
            consumer
                .subscribe(TopicValidator::RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC, "*")
                .await?;
        }
        consumer.register_message_listener_concurrently(EachMessage(DeadLetterListener {
            db,
            metrics,
            order_topic: settings.mq.order_topic.clone(),
            runtime: Handle::current(),
        }));
        consumer.start().await?;
        Ok(Self { consumer })
    }

    pub async fn shutdown(mut self) {
        self.consumer.shutdown().await;
    }
}
