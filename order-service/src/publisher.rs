//! Sends each order as a transactional `OrderCreated` message, and each
//! cancellation as a transactional `OrderCancelled`, and turns the client's
//! answer into a definite [`Placement`] / [`Cancellation`] for the caller.

use std::sync::Arc;

use chrono::NaiveDateTime;
use common::messages::{
    Envelope, OrderCancelled, OrderCreated, TAG_ORDER_CANCELLED, TAG_ORDER_CREATED,
};
use common::mq::{MqError, MqRuntime};
use rocketmq_client_rust::{LocalTransactionState, TransactionMQProducer};
use rocketmq_model::common::message::message_single::Message;
use sea_orm::DatabaseConnection;
use tokio::sync::RwLock;

use crate::listener::{LocalResult, LocalWork, OrderTxListener, PendingTx};
use crate::metrics::OrderMetrics;
use crate::settings::Settings;
use crate::store::{self, TxOutcome};

/// Where an order ended up once the send returned.
#[derive(Debug)]
pub enum Placement {
    /// Stored and committed: stock-service will deduct it.
    Committed(OrderCreated),
    /// Not decided yet; the broker's check-back will decide it.
    Pending(OrderCreated),
    /// Nothing was stored and nothing will be delivered.
    NotPlaced {
        order: OrderCreated,
        reason: NotPlaced,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPlaced {
    /// The user's Idempotency-Key already has an order.
    DuplicateRequest,
    /// The database refused the order (constraint, trigger).
    Refused(String),
    /// The database or the broker could not be used; retrying may succeed.
    Unavailable(String),
}

/// Where a cancellation ended up once the send returned.
#[derive(Debug)]
pub enum Cancellation {
    /// CANCELLED and committed: stock-service will give the stock back.
    Cancelled(OrderCancelled),
    /// Not decided yet; the broker's check-back will decide it.
    Pending(OrderCancelled),
    /// The order was not NEW (paid, cancelled, failed) or not due: nothing changed.
    NotCancellable,
    /// The database or the broker could not be used; nothing changed.
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker did not take the half message: {0}")]
    Broker(#[from] rocketmq_client_rust::ClientError),
    #[error("building the message: {0}")]
    Message(String),
    #[error("the producer is shut down")]
    ShutDown,
}

pub struct OrderPublisher {
    producer: RwLock<Option<TransactionMQProducer>>,
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
        let mut producer = TransactionMQProducer::builder(mq.client())
            .producer_group(settings.orders.producer_group.clone())
            .name_server_addr(settings.mq.namesrv_addr.clone())
            .topics(vec![settings.mq.order_topic.clone()])
            .send_msg_timeout(settings.mq.send_timeout_ms)
            .check_thread_pool_min_size(4)
            .check_thread_pool_max_size(settings.mq.listener_concurrency as u32)
            .check_request_hold_max(settings.mq.listener_queue_depth as u32)
            .transaction_listener(listener)
            .build();
        producer.start().await?;
        Ok(Self {
            producer: RwLock::new(Some(producer)),
            topic: settings.mq.order_topic.clone(),
            db,
            metrics,
        })
    }

    /// Sends the half message, lets the listener record the order, and returns
    /// a definite answer whenever one can be had now.
    #[tracing::instrument(skip_all, fields(tx_no = %order.tx_no, order_no = %order.order_no))]
    pub async fn place(
        &self,
        order: OrderCreated,
        idempotency_key: Option<String>,
    ) -> Result<Placement, PublishError> {
        let (state, local) = self
            .send_in_transaction(
                TAG_ORDER_CREATED,
                vec![order.tx_no.to_string(), order.order_no.to_string()],
                order.encode(),
                LocalWork::Create {
                    order: order.clone(),
                    idempotency_key,
                },
            )
            .await?;
        Ok(match (state, local) {
            (LocalTransactionState::CommitMessage, _) => Placement::Committed(order),
            (LocalTransactionState::RollbackMessage, Some(LocalResult::Refused(why))) => {
                Placement::NotPlaced {
                    order,
                    reason: NotPlaced::Refused(why),
                }
            }
            (LocalTransactionState::RollbackMessage, Some(LocalResult::Unavailable(why))) => {
                Placement::NotPlaced {
                    order,
                    reason: NotPlaced::Unavailable(why),
                }
            }
            (LocalTransactionState::RollbackMessage, Some(LocalResult::DuplicateRequest)) => {
                Placement::NotPlaced {
                    order,
                    reason: NotPlaced::DuplicateRequest,
                }
            }
            (LocalTransactionState::RollbackMessage, None) => Placement::NotPlaced {
                order,
                reason: NotPlaced::Unavailable("the broker could not store the message".into()),
            },
            // UNKNOWN (the listener never ran, or its commit's fate is unknown) or a
            // rollback decided by a check-back: settle it now with the same claim
            // the check-back makes, so the buyer rarely has to wait for the broker.
            _ => match self.settle(order.tx_no.as_str()).await {
                Some(TxOutcome::Committed) => Placement::Committed(order),
                Some(TxOutcome::RolledBack) => Placement::NotPlaced {
                    order,
                    reason: NotPlaced::Unavailable(
                        "the order could not be recorded in time".into(),
                    ),
                },
                None => Placement::Pending(order),
            },
        })
    }

    /// Sends the cancellation's half message; the listener runs its local
    /// transaction (NEW → CANCELLED, only if `due_if_created_before` is met).
    #[tracing::instrument(skip_all, fields(tx_no = %cancel.tx_no, order_no = %cancel.order_no))]
    pub async fn cancel(
        &self,
        cancel: OrderCancelled,
        due_if_created_before: Option<NaiveDateTime>,
    ) -> Result<Cancellation, PublishError> {
        let (state, local) = self
            .send_in_transaction(
                TAG_ORDER_CANCELLED,
                vec![
                    cancel.tx_no.to_string(),
                    cancel.order_no.to_string(),
                    cancel.order_tx_no.to_string(),
                ],
                cancel.encode(),
                LocalWork::Cancel {
                    cancel: cancel.clone(),
                    due_if_created_before,
                },
            )
            .await?;
        Ok(match (state, local) {
            (LocalTransactionState::CommitMessage, _) => Cancellation::Cancelled(cancel),
            (LocalTransactionState::RollbackMessage, Some(LocalResult::NotCancellable)) => {
                Cancellation::NotCancellable
            }
            (
                LocalTransactionState::RollbackMessage,
                Some(LocalResult::Refused(why) | LocalResult::Unavailable(why)),
            ) => Cancellation::Unavailable(why),
            (LocalTransactionState::RollbackMessage, None) => {
                Cancellation::Unavailable("the broker could not store the message".into())
            }
            _ => match self.settle(cancel.tx_no.as_str()).await {
                Some(TxOutcome::Committed) => Cancellation::Cancelled(cancel),
                Some(TxOutcome::RolledBack) => Cancellation::Unavailable(
                    "the cancellation could not be recorded in time".into(),
                ),
                None => Cancellation::Pending(cancel),
            },
        })
    }

    /// One half message with its local work; the broker's answer and the
    /// listener's own (None when the local transaction never ran).
    async fn send_in_transaction(
        &self,
        tag: &str,
        keys: Vec<String>,
        body: Vec<u8>,
        work: LocalWork,
    ) -> Result<(LocalTransactionState, Option<LocalResult>), PublishError> {
        let message = Message::builder()
            .topic(self.topic.as_str())
            .tags(tag)
            .keys(keys)
            .body(body)
            .build()
            .map_err(|e| PublishError::Message(e.to_string()))?;
        let pending = PendingTx::new(work);
        let _in_flight = self.metrics.in_flight.track();
        let sent = {
            let producer = self.producer.read().await;
            let producer = producer.as_ref().ok_or(PublishError::ShutDown)?;
            producer
                .send_message_in_transaction(message, Some(Arc::clone(&pending)))
                .await?
        };
        let state = sent
            .local_transaction_state
            .unwrap_or(LocalTransactionState::Unknown);
        let local = pending.result();
        tracing::info!(?state, ?local, "transactional send returned");
        Ok((state, local))
    }

    /// Decides an undecided tx_no now with the check-back's own claim; `None`
    /// when the database cannot say (the broker's check-back will).
    async fn settle(&self, tx_no: &str) -> Option<TxOutcome> {
        store::resolve_tx(&self.db, tx_no)
            .await
            .inspect_err(
                |err| tracing::warn!(%err, "outcome unknown; the broker's check-back will decide"),
            )
            .ok()
    }

    /// Waits for in-flight sends, then stops the producer.
    pub async fn shutdown(&self) {
        if let Some(mut producer) = self.producer.write().await.take() {
            producer.shutdown().await;
        }
    }
}
