//! Committed messages never lost: the safety net behind the broker.
//!
//! A committed creation or cancellation reaches stock-service through the
//! broker only; a broker restart, a producer the broker could not reach for
//! its check-backs (it then discards the half message to
//! `TRANS_CHECK_MAX_TIME_TOPIC`) or a DLQ can leave one unapplied for good.
//! Every `redelivery.interval_ms`, [`Redelivery::pass`] asks stock-service
//! which committed messages older than `redelivery.after_secs` it has applied,
//! records those (`orders.stock_applied_at` / `cancel_applied_at`), and sends
//! the others again as plain messages: stock-service dedupes on tx_no, so a
//! resend of a message that was merely slow changes nothing.
//!
//! It also settles the dead letters of our transactional messages: a tx_no
//! never committed is claimed as rolled back (the check-back's own claim) and
//! its reservation goes back once; a committed one is resent until applied.
//! Each dead letter gets a verdict for reconciliation; resolving stays an
//! operator's call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::messages::{
    Envelope, OrderCancelled, OrderCreated, TAG_ORDER_CANCELLED, TAG_ORDER_CREATED,
};
use common::mq::{MqError, MqRuntime, PlainProducer};
use rocketmq_model::common::message::message_single::Message;
use sea_orm::{DatabaseConnection, DbErr};

use crate::admission::AdmissionGate;
use crate::dead_letters::{self, DeadLetter, Verdict};
use crate::domain::Order;
use crate::metrics::{OrderMetrics, Resent};
use crate::order_tx;
use crate::settings::Settings;
use crate::stock_client::{StockClient, StockClientError};
use crate::store::{self, Confirmed, TxOutcome};

/// Orders asked about per query.
const BATCH: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RedeliveryError {
    #[error("order database: {0}")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Stock(#[from] StockClientError),
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Redelivered {
    /// Messages stock-service was seen to have applied (recorded now).
    pub confirmed: usize,
    /// Committed messages sent again.
    pub resent: usize,
    /// Dead letters given a (new) verdict.
    pub dead_letters_settled: usize,
}

/// One committed message, as it is sent again.
enum Committed {
    Creation(OrderCreated),
    Cancellation(OrderCancelled),
}

impl Committed {
    fn tx_no(&self) -> &str {
        match self {
            Self::Creation(m) => m.tx_no.as_str(),
            Self::Cancellation(m) => m.tx_no.as_str(),
        }
    }
}

pub struct Redelivery {
    db: DatabaseConnection,
    stock: Arc<StockClient>,
    admission: Arc<AdmissionGate>,
    producer: PlainProducer,
    topic: String,
    after: Duration,
    metrics: Arc<OrderMetrics>,
    /// When each tx_no was last resent (at most one resend per `after`).
    resent: Mutex<HashMap<String, Instant>>,
}

impl Redelivery {
    pub async fn start(
        mq: &MqRuntime,
        settings: &Settings,
        db: DatabaseConnection,
        stock: Arc<StockClient>,
        admission: Arc<AdmissionGate>,
        metrics: Arc<OrderMetrics>,
    ) -> Result<Self, MqError> {
        Ok(Self {
            producer: PlainProducer::start(mq, &settings.mq, &settings.redelivery.producer_group)
                .await?,
            topic: settings.mq.order_topic.clone(),
            after: settings.redelivery.after(),
            db,
            stock,
            admission,
            metrics,
            resent: Mutex::new(HashMap::new()),
        })
    }

    /// Confirms what stock-service applied, resends what it did not, settles
    /// dead letters.
    #[tracing::instrument(skip_all)]
    pub async fn pass(&self) -> Result<Redelivered, RedeliveryError> {
        let mut done = Redelivered::default();
        let cutoff =
            (Utc::now() - chrono::Duration::from_std(self.after).unwrap_or_default()).naive_utc();
        for which in [Confirmed::Creation, Confirmed::Cancellation] {
            // Pages until a page confirms nothing new (what is left is unapplied).
            for _ in 0..20 {
                let orders = store::unconfirmed(&self.db, which, cutoff, None, BATCH).await?;
                let (confirmed, missing) = self.sort_out(&orders, which).await?;
                done.confirmed += confirmed;
                for message in missing {
                    if self.resend(&message).await {
                        done.resent += 1;
                    }
                }
                if confirmed == 0 || orders.len() < BATCH as usize {
                    break;
                }
            }
        }
        done.dead_letters_settled = self.settle_dead_letters().await?;
        self.forget_old_resends();
        Ok(done)
    }

    /// Records which of `orders`' messages stock-service applied; returns how
    /// many, and the committed messages it has not applied.
    async fn sort_out(
        &self,
        orders: &[Order],
        which: Confirmed,
    ) -> Result<(usize, Vec<Committed>), RedeliveryError> {
        let messages: Vec<Committed> = orders
            .iter()
            .filter_map(|order| {
                let message = match which {
                    Confirmed::Creation => order.created_message().map(|m| Some(Committed::Creation(m))),
                    Confirmed::Cancellation => order
                        .cancelled_message()
                        .map(|m| m.map(Committed::Cancellation)),
                };
                message
                    .inspect_err(|err| {
                        tracing::error!(%err, order_no = %order.order_no, "stored order cannot be sent again")
                    })
                    .ok()
                    .flatten()
            })
            .collect();
        let tx_nos: Vec<String> = messages.iter().map(|m| m.tx_no().to_owned()).collect();
        let applied = self.stock.applied(&tx_nos).await?;
        let applied_list: Vec<String> = applied.iter().cloned().collect();
        store::confirm_applied(&self.db, which, &applied_list).await?;
        let missing = messages
            .into_iter()
            .filter(|m| !applied.contains(m.tx_no()))
            .collect();
        Ok((applied_list.len(), missing))
    }

    /// Sends a committed message again, unless it was resent within `after`.
    async fn resend(&self, message: &Committed) -> bool {
        let tx_no = message.tx_no().to_owned();
        if let Ok(resent) = self.resent.lock()
            && resent
                .get(&tx_no)
                .is_some_and(|at| at.elapsed() < self.after)
        {
            return false;
        }
        let (tag, keys, body) = match message {
            Committed::Creation(m) => (
                TAG_ORDER_CREATED,
                vec![m.tx_no.to_string(), m.order_no.to_string()],
                m.encode(),
            ),
            Committed::Cancellation(m) => (
                TAG_ORDER_CANCELLED,
                vec![
                    m.tx_no.to_string(),
                    m.order_no.to_string(),
                    m.order_tx_no.to_string(),
                ],
                m.encode(),
            ),
        };
        let built = Message::builder()
            .topic(self.topic.as_str())
            .tags(tag)
            .keys(keys)
            .body(body)
            .build();
        let sent = match built {
            Ok(msg) => self.producer.send(msg).await,
            Err(err) => Err(err.to_string()),
        };
        match sent {
            Ok(()) => {
                if let Ok(mut resent) = self.resent.lock() {
                    resent.insert(tx_no.clone(), Instant::now());
                }
                self.metrics.redelivered.inc(match message {
                    Committed::Creation(_) => Resent::Creation,
                    Committed::Cancellation(_) => Resent::Cancellation,
                });
                tracing::warn!(%tx_no, tag, "committed message not applied by stock-service in time: sent again");
                true
            }
            Err(err) => {
                tracing::warn!(%err, %tx_no, "resending a committed message failed; the next pass retries");
                false
            }
        }
    }

    /// Gives every unsettled dead letter of our transactional messages a
    /// verdict, acting on it: rolled back (claimed now if undecided; the
    /// reservation goes back), delivered, or resent.
    async fn settle_dead_letters(&self) -> Result<usize, RedeliveryError> {
        let mut settled = 0;
        for letter in dead_letters::unsettled(&self.db, 100).await? {
            let verdict = self.verdict_of(&letter).await?;
            if Some(verdict) != letter.verdict {
                dead_letters::set_verdict(&self.db, &letter.msg_id, verdict).await?;
                tracing::warn!(msg_id = %letter.msg_id, ?verdict, "dead letter settled");
                settled += 1;
            }
        }
        Ok(settled)
    }

    async fn verdict_of(&self, letter: &DeadLetter) -> Result<Verdict, RedeliveryError> {
        let message = match letter.tags.as_deref() {
            Some(TAG_ORDER_CREATED) => OrderCreated::decode(letter.body.as_bytes())
                .ok()
                .map(Committed::Creation),
            Some(TAG_ORDER_CANCELLED) => OrderCancelled::decode(letter.body.as_bytes())
                .ok()
                .map(Committed::Cancellation),
            _ => None,
        };
        let Some(message) = message else {
            return Ok(Verdict::NeedsOperator);
        };
        match order_tx::settle(&self.db, message.tx_no()).await? {
            TxOutcome::RolledBack => {
                if let Committed::Creation(order) = &message
                    && let Err(err) = self.admission.release(order.product_id, &order.tx_no).await
                {
                    tracing::warn!(%err, "reservation not returned yet; the next pass retries");
                    return Ok(Verdict::NeedsOperator);
                }
                Ok(Verdict::RolledBack)
            }
            TxOutcome::Committed => {
                let applied = self.stock.applied(&[message.tx_no().to_owned()]).await?;
                if !applied.is_empty() {
                    return Ok(match letter.verdict {
                        Some(Verdict::Resent | Verdict::Redelivered) => Verdict::Redelivered,
                        _ => Verdict::AlreadyDelivered,
                    });
                }
                self.resend(&message).await;
                Ok(Verdict::Resent)
            }
        }
    }

    fn forget_old_resends(&self) {
        if let Ok(mut resent) = self.resent.lock() {
            let keep = self.after * 10;
            resent.retain(|_, at| at.elapsed() < keep);
        }
    }

    pub async fn shutdown(&self) {
        self.producer.shutdown().await;
    }
}

/// Runs [`Redelivery::pass`] every `every` until the task is stopped.
pub async fn keep_redelivering(
    redelivery: Arc<Redelivery>,
    every: Duration,
    mut shutdown: common::shutdown::Shutdown,
) {
    while shutdown.sleep(every).await {
        match redelivery.pass().await {
            Ok(done) if done.resent > 0 || done.dead_letters_settled > 0 => {
                tracing::warn!(?done, "redelivery pass")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "redelivery pass failed; the next one retries"),
        }
    }
}
