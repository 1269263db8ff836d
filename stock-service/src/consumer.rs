//! The push consumer on the order topic: applies each order's creation
//! (deduct) and cancellation (give back) exactly once — creations one per
//! message or a group commit's worth per [`OrderBatch`] — and tells
//! order-service when a creation found too little stock. The client calls the
//! listener synchronously on its blocking lane; each call drives the DB work
//! on the application's runtime with `Handle::block_on`.

use common::messages::{
    Envelope, OrderBatch, OrderCancelled, OrderCreated, StockInsufficient, TAG_ORDER_BATCH,
    TAG_ORDER_CANCELLED, TAG_ORDER_CREATED, TAG_STOCK_INSUFFICIENT,
};
use common::mq::{ConsumeEach, EachMessage, MqError, MqRuntime, PlainProducer};
use rocketmq_client_rust::{DefaultMQPushConsumer, MQPushConsumer};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use tokio::runtime::Handle;

use crate::metrics::{MessageResult, Report, StockMetrics};
use crate::settings::Settings;
use crate::store::{self, Applied};

/// Sends [`StockInsufficient`] to order-service.
struct StockEvents {
    producer: PlainProducer,
    topic: String,
}

impl StockEvents {
    async fn tell_insufficient(&self, order: &OrderCreated) -> Result<(), String> {
        let message = Message::builder()
            .topic(self.topic.as_str())
            .tags(TAG_STOCK_INSUFFICIENT)
            .keys(vec![order.tx_no.to_string(), order.order_no.to_string()])
            .body(StockInsufficient::of(order).encode())
            .build()
            .map_err(|e| e.to_string())?;
        self.producer.send(message).await
    }
}

struct OrderListener {
    db: DatabaseConnection,
    /// Redeliveries an order short of stock waits for before it is INSUFFICIENT.
    insufficient_retries: i32,
    metrics: Arc<StockMetrics>,
    events: Arc<StockEvents>,
    runtime: Handle,
}

impl ConsumeEach for OrderListener {
    /// Whether this message is done with (applied now or before, and
    /// order-service told of insufficient stock). A message that cannot be
    /// read or applied is left for redelivery and, after
    /// `max_reconsume_times`, the DLQ: never acknowledged unapplied.
    fn consume_one(&self, msg: &MessageExt) -> bool {
        let body = msg.body().unwrap_or_default();
        let tag = msg.get_tags().unwrap_or_default();
        let done = match tag.as_str() {
            TAG_ORDER_CANCELLED => OrderCancelled::decode(&body).map(|cancel| {
                let span = tracing::info_span!("consume_cancel", tx_no = %cancel.tx_no,
                    order_no = %cancel.order_no, reconsume_times = msg.reconsume_times());
                let _entered = span.enter();
                self.runtime.block_on(self.apply_cancel(&cancel))
            }),
            TAG_ORDER_BATCH => OrderBatch::decode(&body).map(|batch| {
                let span = tracing::info_span!("consume_batch", batch_tx_no = %batch.batch_tx_no,
                    size = batch.orders.len(), reconsume_times = msg.reconsume_times());
                let _entered = span.enter();
                let retries_left = msg.reconsume_times() < self.insufficient_retries;
                self.runtime
                    .block_on(self.apply_batch(&batch, retries_left))
            }),
            _ => OrderCreated::decode(&body).map(|order| {
                let span = tracing::info_span!("consume", tx_no = %order.tx_no,
                    order_no = %order.order_no, reconsume_times = msg.reconsume_times());
                let _entered = span.enter();
                let retries_left = msg.reconsume_times() < self.insufficient_retries;
                self.runtime
                    .block_on(self.apply_order(&order, retries_left))
            }),
        };
        done.unwrap_or_else(|err| {
            tracing::error!(%err, msg_id = %msg.msg_id(), %tag, reconsume_times = msg.reconsume_times(),
                "unreadable order message; retrying, then DLQ");
            false
        })
    }
}

impl OrderListener {
    async fn apply_order(&self, order: &OrderCreated, retries_left: bool) -> bool {
        let applied = if retries_left {
            store::apply_order_when_stocked(&self.db, order).await
        } else {
            store::apply_order(&self.db, order).await
        };
        match applied {
            Ok(applied) => self.settle(order, applied).await,
            Err(err) => {
                self.metrics.messages.inc(MessageResult::Failed);
                tracing::warn!(%err, "applying the order failed; it will be redelivered");
                false
            }
        }
    }

    /// Applies a group commit's orders together; done with only when every
    /// order is (none short of stock for now, order-service told of each
    /// insufficient one).
    async fn apply_batch(&self, batch: &OrderBatch, retries_left: bool) -> bool {
        match store::apply_batch(&self.db, batch, !retries_left).await {
            Ok(applied) => {
                let mut done = true;
                for (order, applied) in batch.orders.iter().zip(applied) {
                    done &= self.settle(order, applied).await;
                }
                done
            }
            Err(err) => {
                for _ in &batch.orders {
                    self.metrics.messages.inc(MessageResult::Failed);
                }
                tracing::warn!(%err, "applying the order batch failed; it will be redelivered");
                false
            }
        }
    }

    /// Counts what applying `order` did and tells order-service when it
    /// found too little stock; whether the order is done with.
    async fn settle(&self, order: &OrderCreated, applied: Applied) -> bool {
        self.metrics.applied(applied);
        match applied {
            // Redelivered in 10 s, after any cancellation in flight.
            Applied::ShortForNow => return false,
            Applied::Insufficient | Applied::Duplicate { insufficient: true } => {}
            Applied::Deducted
            | Applied::Duplicate {
                insufficient: false,
            } => return true,
        }
        // Recorded INSUFFICIENT; acknowledged only once order-service is told,
        // so a failed send is retried by the redelivery (which finds the row).
        let told = self.events.tell_insufficient(order).await;
        self.metrics.reports.inc(if told.is_ok() {
            Report::Ok
        } else {
            Report::Failed
        });
        match told {
            Ok(()) => {
                tracing::warn!(tx_no = %order.tx_no, order_no = %order.order_no,
                    product_id = %order.product_id, "insufficient stock; order-service told");
                true
            }
            Err(err) => {
                tracing::warn!(%err, tx_no = %order.tx_no,
                    "telling order-service of insufficient stock failed; retrying");
                false
            }
        }
    }

    async fn apply_cancel(&self, cancel: &OrderCancelled) -> bool {
        match store::apply_cancel(&self.db, cancel).await {
            Ok(restored) => {
                self.metrics.restored(restored);
                true
            }
            Err(err) => {
                self.metrics.messages.inc(MessageResult::Failed);
                tracing::warn!(%err, "applying the cancellation failed; it will be redelivered");
                false
            }
        }
    }
}

/// The running consumer and its producer; [`OrderConsumer::shutdown`] stops them.
pub struct OrderConsumer {
    consumer: DefaultMQPushConsumer,
    events: Arc<StockEvents>,
}

impl OrderConsumer {
    pub async fn start(
        mq: &MqRuntime,
        settings: &Settings,
        db: DatabaseConnection,
        metrics: Arc<StockMetrics>,
    ) -> Result<Self, MqError> {
        let producer =
            PlainProducer::start(mq, &settings.mq, &settings.consumer.events_producer_group)
                .await?;
        let events = Arc::new(StockEvents {
            producer,
            topic: settings.mq.stock_topic.clone(),
        });
        let mut consumer = DefaultMQPushConsumer::builder(mq.client())
            .consumer_group(settings.consumer.group.clone())
            .name_server_addr(settings.mq.namesrv_addr.clone())
            // A new group starts from the oldest retained message: redelivering
            // is harmless (tx_log dedupes), skipping an order is not.
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .consume_thread_min(settings.consumer.threads)
            .consume_thread_max(settings.consumer.threads)
            .max_reconsume_times(settings.consumer.max_reconsume_times)
            .build();
        // No spaces around `||`: client 1.0.0 hashes each tag untrimmed, so
        // "A || B" silently matches neither.
        consumer
            .subscribe(
                settings.mq.order_topic.as_str(),
                format!("{TAG_ORDER_CREATED}||{TAG_ORDER_CANCELLED}||{TAG_ORDER_BATCH}").as_str(),
            )
            .await?;
        consumer.register_message_listener_concurrently(EachMessage(OrderListener {
            db,
            // A retry past max_reconsume_times would send the order to the DLQ.
            insufficient_retries: settings
                .consumer
                .insufficient_retries
                .clamp(0, settings.consumer.max_reconsume_times.max(0)),
            metrics,
            events: Arc::clone(&events),
            runtime: Handle::current(),
        }));
        consumer.start().await?;
        Ok(Self { consumer, events })
    }

    pub async fn shutdown(mut self) {
        self.consumer.shutdown().await;
        self.events.producer.shutdown().await;
    }
}
