//! The push consumer on the order topic. The client calls the listener
//! synchronously on its blocking lane; each call drives the DB work on the
//! application's runtime with `Handle::block_on`.

use common::messages::{OrderCreated, TAG_ORDER_CREATED};
use common::mq::{MqError, MqRuntime};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQPushConsumer,
    MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use sea_orm::DatabaseConnection;
use tokio::runtime::Handle;

use crate::settings::Settings;
use crate::store;

struct OrderListener {
    db: DatabaseConnection,
    runtime: Handle,
}

impl OrderListener {
    /// Whether this message is done with (applied now or before). A message
    /// that cannot be read or applied is left for redelivery and, after
    /// `max_reconsume_times`, the DLQ: never acknowledged unapplied.
    fn consume_one(&self, msg: &MessageExt) -> bool {
        let body = msg.body().unwrap_or_default();
        let order = match OrderCreated::decode(&body) {
            Ok(order) => order,
            Err(err) => {
                tracing::error!(%err, msg_id = %msg.msg_id(), reconsume_times = msg.reconsume_times(),
                    "unreadable order message; retrying, then DLQ");
                return false;
            }
        };
        let span = tracing::info_span!("consume", tx_no = %order.tx_no, order_no = %order.order_no,
            reconsume_times = msg.reconsume_times());
        let _entered = span.enter();
        match self.runtime.block_on(store::apply_order(&self.db, &order)) {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(%err, "applying the order failed; it will be redelivered");
                false
            }
        }
    }
}

impl MessageListenerConcurrently for OrderListener {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        // Applying is idempotent per message, so retrying a whole batch after a
        // partial failure is safe.
        let all_done = msgs.iter().all(|msg| self.consume_one(msg));
        Ok(if all_done {
            ConsumeConcurrentlyStatus::ConsumeSuccess
        } else {
            ConsumeConcurrentlyStatus::ReconsumeLater
        })
    }
}

/// The running consumer; [`OrderConsumer::shutdown`] stops it.
pub struct OrderConsumer {
    consumer: DefaultMQPushConsumer,
}

impl OrderConsumer {
    pub async fn start(
        mq: &MqRuntime,
        settings: &Settings,
        db: DatabaseConnection,
    ) -> Result<Self, MqError> {
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
        consumer
            .subscribe(settings.mq.order_topic.as_str(), TAG_ORDER_CREATED)
            .await?;
        consumer.register_message_listener_concurrently(OrderListener {
            db,
            runtime: Handle::current(),
        });
        consumer.start().await?;
        Ok(Self { consumer })
    }

    pub async fn shutdown(mut self) {
        self.consumer.shutdown().await;
    }
}
