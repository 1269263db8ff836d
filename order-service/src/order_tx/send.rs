//! Sends each order as a transactional `OrderCreated` message, and each
//! cancellation as a transactional `OrderCancelled`, and turns the client's
//! answer into a definite [`Outcome`] for the caller.
//!
//! Reconnecting: the client's transport refuses every connection to a broker
//! for 30 s after 5 failed connects (a fixed circuit breaker), so after a
//! broker restart sends failed and check-backs went unanswered for ~30 s. A
//! send that finds the broker unreachable marks the producer down (`/readyz`
//! says not ready); [`keep_connected`] then starts a fresh producer (a new
//! client instance, a closed breaker) as soon as the broker's port answers,
//! and retires the old one in the background.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;
use common::messages::{
    Envelope, OrderBatch, OrderCancelled, OrderCreated, TAG_ORDER_BATCH, TAG_ORDER_CANCELLED,
    TAG_ORDER_CREATED,
};
use common::mq::{MqError, MqRuntime};
use rocketmq_client_rust::{LocalTransactionState, TransactionMQProducer};
use rocketmq_model::common::message::message_single::Message;
use sea_orm::DatabaseConnection;
use tokio::sync::RwLock;

use super::{LocalWork, OrderTxListener, Outcome, PendingTx, Rejection, settle};
use crate::metrics::OrderMetrics;
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker did not take the half message: {0}")]
    Broker(#[from] rocketmq_client_rust::ClientError),
    #[error("building the message: {0}")]
    Message(String),
    #[error("the producer is shut down")]
    ShutDown,
    /// The send of the group commit this order was in failed.
    #[error("{0}")]
    Batch(Arc<PublishError>),
}

/// One started producer; replaced whole when the broker must be reconnected.
struct Generation {
    producer: RwLock<Option<TransactionMQProducer>>,
}

/// Everything needed to start another producer like the first.
struct Recipe {
    client: Arc<rocketmq_client_rust::ClientRuntime>,
    group: String,
    namesrv_addr: String,
    /// The configured master brokers (`mq.broker_addr`, parsed once).
    brokers: Vec<String>,
    topic: String,
    send_timeout_ms: u32,
    listener_concurrency: u32,
    listener_queue_depth: u32,
    listener: OrderTxListener,
}

impl Recipe {
    async fn start(&self) -> Result<Generation, MqError> {
        let mut producer = TransactionMQProducer::builder(Arc::clone(&self.client))
            .producer_group(self.group.clone())
            .name_server_addr(self.namesrv_addr.clone())
            .topics(vec![self.topic.clone()])
            .send_msg_timeout(self.send_timeout_ms)
            .check_thread_pool_min_size(4)
            .check_thread_pool_max_size(self.listener_concurrency)
            .check_request_hold_max(self.listener_queue_depth)
            .transaction_listener(self.listener.clone())
            .build();
        producer.start().await?;
        Ok(Generation {
            producer: RwLock::new(Some(producer)),
        })
    }
}

pub struct OrderPublisher {
    current: std::sync::RwLock<Arc<Generation>>,
    recipe: Recipe,
    /// Cleared when a send finds the broker unreachable; set by a reconnect.
    broker_ok: AtomicBool,
    shut_down: AtomicBool,
    topic: String,
    db: DatabaseConnection,
    metrics: Arc<OrderMetrics>,
}

impl OrderPublisher {
    pub async fn start(
        mq: &MqRuntime,
        settings: &Settings,
        listener: OrderTxListener,
        db: DatabaseConnection,
        metrics: Arc<OrderMetrics>,
    ) -> Result<Self, MqError> {
        let recipe = Recipe {
            client: mq.client(),
            group: settings.orders.producer_group.clone(),
            namesrv_addr: settings.mq.namesrv_addr.clone(),
            brokers: settings.mq.broker_addrs(),
            topic: settings.mq.order_topic.clone(),
            send_timeout_ms: settings.mq.send_timeout_ms,
            listener_concurrency: settings.mq.listener_concurrency as u32,
            listener_queue_depth: settings.mq.listener_queue_depth as u32,
            listener,
        };
        let first = recipe.start().await?;
        Ok(Self {
            current: std::sync::RwLock::new(Arc::new(first)),
            recipe,
            broker_ok: AtomicBool::new(true),
            shut_down: AtomicBool::new(false),
            topic: settings.mq.order_topic.clone(),
            db,
            metrics,
        })
    }

    /// Whether the last sends reached the broker (false from a send that found
    /// it unreachable until a fresh producer is up): part of `/readyz`.
    pub fn broker_ready(&self) -> bool {
        self.broker_ok.load(Ordering::Acquire)
    }

    fn generation(&self) -> Arc<Generation> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// How many of the configured master brokers accept connections now.
    async fn brokers_up(&self) -> usize {
        common::mq::reachable(&self.recipe.brokers)
            .await
            .iter()
            .filter(|(_, up)| *up)
            .count()
    }

    /// A send found a broker unreachable. With none reachable (the broker is
    /// down) or all of them (a stale connection or the client's open breaker),
    /// the producer is marked down and replaced once a broker answers. With
    /// some down and some up (one master of a cluster lost), the client
    /// avoids the dead one by itself: a fresh producer would only forget that.
    async fn note_unreachable(&self, err: &rocketmq_client_rust::ClientError) {
        let configured = self.recipe.brokers.len();
        let up = self.brokers_up().await;
        if (up == 0 || up == configured) && self.broker_ok.swap(false, Ordering::AcqRel) {
            tracing::error!(%err, up, configured, "the broker is unreachable: not ready until a fresh producer connects");
        } else {
            tracing::warn!(%err, up, configured, "a send found a broker unreachable");
        }
    }

    /// Starts a fresh producer once the broker accepts connections, swaps it
    /// in, and shuts the old one down in the background (it waits for its
    /// in-flight sends). `true` when swapped.
    pub async fn reconnect(&self) -> bool {
        if self.shut_down.load(Ordering::Acquire) || self.brokers_up().await == 0 {
            return false;
        }
        let fresh = match self.recipe.start().await {
            Ok(fresh) => Arc::new(fresh),
            Err(err) => {
                tracing::warn!(%err, "a fresh producer did not start; retrying");
                return false;
            }
        };
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
            fresh,
        );
        self.broker_ok.store(true, Ordering::Release);
        tracing::warn!("the broker answers again: a fresh transactional producer took over");
        tokio::spawn(async move {
            if let Some(mut producer) = old.producer.write().await.take() {
                producer.shutdown().await;
            }
        });
        true
    }

    /// Sends the half message, lets the local transaction record the order,
    /// and returns a definite answer whenever one can be had now.
    #[tracing::instrument(skip_all, fields(tx_no = %order.tx_no, order_no = %order.order_no))]
    pub async fn place(
        &self,
        order: &OrderCreated,
        idempotency_key: Option<String>,
    ) -> Result<Outcome, PublishError> {
        self.send_in_transaction(
            TAG_ORDER_CREATED,
            vec![order.tx_no.to_string(), order.order_no.to_string()],
            order.encode(),
            PendingTx::new(LocalWork::Create {
                order: order.clone(),
                idempotency_key,
            }),
        )
        .await
    }

    /// A group commit: one half message for all of `batch`'s orders, whose
    /// local transaction records them all or none. The batch's [`Outcome`],
    /// and the orders its local transaction refused (index, outcome): with
    /// any refused, the batch is rejected and the others may go again.
    #[tracing::instrument(skip_all, fields(batch_tx_no = %batch.batch_tx_no, size = batch.orders.len()))]
    pub async fn place_batch(
        &self,
        batch: &OrderBatch,
        idempotency_keys: Vec<Option<String>>,
    ) -> Result<(Outcome, Vec<(usize, Outcome)>), PublishError> {
        let keys = std::iter::once(batch.batch_tx_no.to_string())
            .chain(batch.orders.iter().map(|o| o.tx_no.to_string()))
            .collect();
        let pending = PendingTx::new(LocalWork::CreateBatch {
            batch: batch.clone(),
            idempotency_keys,
        });
        let outcome = self
            .send_in_transaction(TAG_ORDER_BATCH, keys, batch.encode(), Arc::clone(&pending))
            .await?;
        Ok((outcome, pending.refused()))
    }

    /// Sends the cancellation's half message; its local transaction moves the
    /// order NEW → CANCELLED, only if `due_if_created_before` is met.
    #[tracing::instrument(skip_all, fields(tx_no = %cancel.tx_no, order_no = %cancel.order_no))]
    pub async fn cancel(
        &self,
        cancel: &OrderCancelled,
        due_if_created_before: Option<NaiveDateTime>,
    ) -> Result<Outcome, PublishError> {
        self.send_in_transaction(
            TAG_ORDER_CANCELLED,
            vec![
                cancel.tx_no.to_string(),
                cancel.order_no.to_string(),
                cancel.order_tx_no.to_string(),
            ],
            cancel.encode(),
            PendingTx::new(LocalWork::Cancel {
                cancel: cancel.clone(),
                due_if_created_before,
            }),
        )
        .await
    }

    /// One half message with its local work, concluded: the local
    /// transaction's own [`Outcome`] when the broker took its answer, else the
    /// tx_no settled now with the check-back's claim (so the buyer rarely waits
    /// for the broker), else pending.
    async fn send_in_transaction(
        &self,
        tag: &str,
        keys: Vec<String>,
        body: Vec<u8>,
        pending: Arc<PendingTx>,
    ) -> Result<Outcome, PublishError> {
        let message = Message::builder()
            .topic(self.topic.as_str())
            .tags(tag)
            .keys(keys)
            .body(body)
            .build()
            .map_err(|e| PublishError::Message(e.to_string()))?;
        let tx_no = pending.work.tx_no().to_owned();
        let _in_flight = self.metrics.in_flight.track();
        let generation = self.generation();
        let sent = {
            let producer = generation.producer.read().await;
            let producer = producer.as_ref().ok_or(PublishError::ShutDown)?;
            producer
                .send_message_in_transaction(message, Some(Arc::clone(&pending)))
                .await
        };
        let sent = match sent {
            Ok(sent) => sent,
            Err(err) => {
                if broker_unreachable(&err) {
                    self.note_unreachable(&err).await;
                }
                return Err(err.into());
            }
        };
        if let Some(queue) = sent
            .send_result
            .as_ref()
            .and_then(|r| r.message_queue.as_ref())
        {
            self.metrics.by_broker.inc(queue.broker_name().as_str());
        }
        let state = sent
            .local_transaction_state
            .unwrap_or(LocalTransactionState::Unknown);
        let local = pending.outcome();
        tracing::info!(?state, ?local, "transactional send returned");
        Ok(match (state, local) {
            (LocalTransactionState::CommitMessage, _) => Outcome::Committed,
            (LocalTransactionState::RollbackMessage, Some(Outcome::Rejected(why))) => {
                Outcome::Rejected(why)
            }
            (LocalTransactionState::RollbackMessage, None) => Outcome::Rejected(
                Rejection::Unavailable("the broker could not store the message".into()),
            ),
            // UNKNOWN (the local transaction never ran, or its commit's fate is
            // unknown): settle it now with the claim the check-back makes.
            _ => match settle(&self.db, &tx_no).await {
                Ok(settled) => Outcome::of_settled(settled),
                Err(err) => {
                    tracing::warn!(%err, "outcome unknown; the broker's check-back will decide");
                    Outcome::Pending
                }
            },
        })
    }

    /// Waits for in-flight sends, then stops the producer.
    pub async fn shutdown(&self) {
        self.shut_down.store(true, Ordering::Release);
        if let Some(mut producer) = self.generation().producer.write().await.take() {
            producer.shutdown().await;
        }
    }
}

/// A send error that means the broker could not be reached (refused, timed
/// out connecting, session lost, no route), as opposed to a refused message.
pub fn broker_unreachable(err: &rocketmq_client_rust::ClientError) -> bool {
    let code = err.descriptor().code();
    let code = code.as_str();
    code.starts_with("transport.")
        || code == "core.argument.invalid" && err.to_string().contains("route")
}

/// Reconnects the publisher whenever a send found the broker unreachable:
/// checks twice a second, at most one fresh producer every 3 s.
pub async fn keep_connected(
    publisher: Arc<OrderPublisher>,
    mut shutdown: common::shutdown::Shutdown,
) {
    while shutdown.sleep(Duration::from_millis(500)).await {
        if !publisher.broker_ready()
            && publisher.reconnect().await
            && !shutdown.sleep(Duration::from_secs(3)).await
        {
            break;
        }
    }
}
