//! The payment timeout as a RocketMQ delayed message: sent when an order
//! commits (a transactional message cannot carry a delay), it comes back
//! after the longest delay level that does not pass the deadline and is sent
//! on until the deadline is reached; then [`crate::events`] cancels the order
//! unless it was paid. The sweeper ([`crate::lifecycle::keep_sweeping`]) backs
//! it up for a lost message.

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::messages::{Envelope, OrderCreated, OrderTimeout, TAG_ORDER_TIMEOUT};
use common::mq::{MqError, MqRuntime, PlainProducer, delay_level_for};
use rocketmq_model::common::message::message_single::Message;

use crate::settings::Settings;

pub struct TimeoutScheduler {
    producer: PlainProducer,
    topic: String,
    payment_timeout: Duration,
}

impl TimeoutScheduler {
    pub async fn start(mq: &MqRuntime, settings: &Settings) -> Result<Self, MqError> {
        Ok(Self {
            producer: PlainProducer::start(
                mq,
                &settings.mq,
                &settings.lifecycle.timeout_producer_group,
            )
            .await?,
            topic: settings.mq.order_topic.clone(),
            payment_timeout: settings.lifecycle.payment_timeout(),
        })
    }

    /// The deadline of an order created now.
    pub fn deadline_of(&self, order: &OrderCreated) -> DateTime<Utc> {
        order.created_at
            + chrono::Duration::from_std(self.payment_timeout).unwrap_or(chrono::Duration::MAX)
    }

    /// Schedules the timeout of a freshly committed order. A failure is only
    /// logged: the sweeper cancels the order anyway.
    pub async fn schedule_for(&self, order: &OrderCreated) {
        let timeout = OrderTimeout::new(order.order_no.clone(), self.deadline_of(order));
        if let Err(err) = self.schedule(&timeout).await {
            tracing::warn!(%err, order_no = %order.order_no, "timeout not scheduled; the sweeper will cancel it");
        }
    }

    /// Sends `timeout` with the longest delay level not beyond its deadline.
    pub async fn schedule(&self, timeout: &OrderTimeout) -> Result<(), String> {
        let remaining = (timeout.deadline - Utc::now()).to_std().unwrap_or_default();
        let (level, delay) = delay_level_for(remaining);
        let mut message = Message::builder()
            .topic(self.topic.as_str())
            .tags(TAG_ORDER_TIMEOUT)
            .key(timeout.order_no.to_string())
            .body(timeout.encode())
            .build()
            .map_err(|e| e.to_string())?;
        message.set_delay_time_level(level);
        self.producer.send(message).await?;
        tracing::debug!(order_no = %timeout.order_no, ?delay, "timeout scheduled");
        Ok(())
    }

    pub async fn shutdown(&self) {
        self.producer.shutdown().await;
    }
}
