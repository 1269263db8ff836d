//! order-service's consumer: its own payment timeouts (cancel the order when
//! due, send an early one on) and stock-service's `StockInsufficient` reports
//! (fail the order, return its reservation). Both are idempotent, so a
//! redelivery changes nothing. The client calls the listener synchronously on
//! its blocking lane; each call drives the work on the application's runtime.

use std::sync::Arc;

use chrono::Utc;
use common::domain::OrderNo;
use common::messages::{
    Envelope, OrderTimeout, StockInsufficient, TAG_ORDER_TIMEOUT, TAG_STOCK_INSUFFICIENT,
};
use common::mq::{ConsumeEach, EachMessage, MqError, MqRuntime};
use futures::StreamExt;
use rocketmq_client_rust::{DefaultMQPushConsumer, MQPushConsumer};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use tokio::runtime::Handle;

use crate::lifecycle::{CancelBy, CancelOutcome, Lifecycle};
use crate::settings::Settings;
use crate::timeouts::TimeoutScheduler;

struct EventListener {
    lifecycle: Arc<Lifecycle>,
    timeouts: Arc<TimeoutScheduler>,
    runtime: Handle,
}

impl ConsumeEach for EventListener {
    /// Whether the message is done with; `false` asks for a redelivery.
    fn consume_one(&self, msg: &MessageExt) -> bool {
        let body = msg.body().unwrap_or_default();
        let tag = msg.get_tags().unwrap_or_default();
        let done = match tag.as_str() {
            TAG_ORDER_TIMEOUT => OrderTimeout::decode(&body)
                .map(|timeout| self.runtime.block_on(self.on_timeout(&timeout))),
            TAG_STOCK_INSUFFICIENT => StockInsufficient::decode(&body)
                .map(|report| self.runtime.block_on(self.on_insufficient(&report))),
            other => {
                tracing::warn!(tag = other, "message with an unexpected tag ignored");
                return true;
            }
        };
        done.unwrap_or_else(|err| {
            tracing::error!(%err, msg_id = %msg.msg_id(), %tag, "unreadable message; retrying, then DLQ");
            false
        })
    }
}

impl EventListener {
    #[tracing::instrument(skip_all, fields(orders = timeout.order_nos.len(), deadline = %timeout.deadline))]
    async fn on_timeout(&self, timeout: &OrderTimeout) -> bool {
        if Utc::now() < timeout.deadline {
            // Delay levels are coarse: wait the rest in another step.
            return self.timeouts.schedule(timeout).await.is_ok();
        }
        let cancels = futures::stream::iter(&timeout.order_nos)
            .map(|order_no| self.cancel_overdue(order_no))
            .buffer_unordered(16)
            .collect::<Vec<bool>>()
            .await;
        // A failure redelivers the message: the others are no longer NEW then.
        cancels.into_iter().all(|done| done)
    }

    async fn cancel_overdue(&self, order_no: &OrderNo) -> bool {
        match self
            .lifecycle
            .cancel(order_no.as_str(), CancelBy::Timeout)
            .await
        {
            Ok(CancelOutcome::Cancelled(_)) => {
                tracing::info!(%order_no, "unpaid order cancelled at its deadline");
                true
            }
            Ok(CancelOutcome::NotCancellable(order)) => {
                tracing::debug!(%order_no, status = ?order.status, "timeout: order already closed");
                true
            }
            // Pending: the check-back decides; the sweeper retries if it rolls back.
            Ok(CancelOutcome::Pending(_) | CancelOutcome::NotFound) => true,
            Err(err) => {
                tracing::warn!(%err, %order_no, "timeout cancel failed; redelivered later");
                false
            }
        }
    }

    async fn on_insufficient(&self, report: &StockInsufficient) -> bool {
        match self.lifecycle.fail(report).await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(%err, "failing the order failed; redelivered later");
                false
            }
        }
    }
}

/// The running consumer; [`EventConsumer::shutdown`] stops it.
pub struct EventConsumer {
    consumer: DefaultMQPushConsumer,
}

impl EventConsumer {
    pub async fn start(
        mq: &MqRuntime,
        settings: &Settings,
        lifecycle: Arc<Lifecycle>,
        timeouts: Arc<TimeoutScheduler>,
    ) -> Result<Self, MqError> {
        let mut consumer = DefaultMQPushConsumer::builder(mq.client())
            .consumer_group(settings.lifecycle.events_group.clone())
            .name_server_addr(settings.mq.namesrv_addr.clone())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .consume_thread_min(8)
            .consume_thread_max(8)
            .build();
        consumer
            .subscribe(settings.mq.order_topic.as_str(), TAG_ORDER_TIMEOUT)
            .await?;
        consumer
            .subscribe(settings.mq.stock_topic.as_str(), TAG_STOCK_INSUFFICIENT)
            .await?;
        consumer.register_message_listener_concurrently(EachMessage(EventListener {
            lifecycle,
            timeouts,
            runtime: Handle::current(),
        }));
        consumer.start().await?;
        Ok(Self { consumer })
    }

    pub async fn shutdown(mut self) {
        self.consumer.shutdown().await;
    }
}
