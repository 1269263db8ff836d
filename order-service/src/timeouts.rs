//! The payment timeout as RocketMQ delayed messages. A transactional message
//! cannot carry a delay, so each committed order's deadline is collected
//! here and, a few times a second, the orders due within the same second go
//! out as one delayed `OrderTimeout` (one broker send per second of orders,
//! not one per order: the order path's throughput is bounded by the broker).
//! The message comes back after the longest delay level not beyond the
//! deadline and is sent on until the deadline is reached; then
//! [`crate::events`] cancels each order still NEW. The sweeper
//! ([`crate::lifecycle::keep_sweeping`]) backs it up for a lost message or a
//! stop before the flush.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::domain::OrderNo;
use common::messages::{Envelope, OrderCreated, OrderTimeout, TAG_ORDER_TIMEOUT};
use common::mq::{MqError, MqRuntime, PlainProducer, delay_level_for};
use rocketmq_model::common::message::message_single::Message;

use crate::settings::Settings;

/// Orders per message at most (keeps a message well under the broker's size limit).
const MAX_ORDERS_PER_MESSAGE: usize = 500;
/// How often collected deadlines are sent.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

pub struct TimeoutScheduler {
    producer: PlainProducer,
    topic: String,
    payment_timeout: Duration,
    /// Order numbers waiting to be sent, by deadline (whole seconds, rounded up).
    due: Mutex<BTreeMap<i64, Vec<OrderNo>>>,
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
            due: Mutex::new(BTreeMap::new()),
        })
    }

    /// The payment deadline of an order.
    pub fn deadline_of(&self, order: &OrderCreated) -> DateTime<Utc> {
        crate::domain::pay_deadline(order.created_at, self.payment_timeout)
    }

    /// Collects a freshly committed order's deadline; [`Self::flush`] sends it.
    pub fn schedule_for(&self, order: &OrderCreated) {
        let deadline = self.deadline_of(order);
        let second = deadline.timestamp() + i64::from(deadline.timestamp_subsec_nanos() > 0);
        if let Ok(mut due) = self.due.lock() {
            due.entry(second).or_default().push(order.order_no.clone());
        }
    }

    /// Sends what was collected, one message per deadline second. A failed
    /// send is only logged: the sweeper cancels those orders anyway.
    pub async fn flush(&self) {
        let due = match self.due.lock() {
            Ok(mut due) => std::mem::take(&mut *due),
            Err(_) => return,
        };
        for (second, order_nos) in due {
            let deadline = Utc
                .timestamp_opt(second, 0)
                .single()
                .unwrap_or_else(Utc::now);
            for chunk in order_nos.chunks(MAX_ORDERS_PER_MESSAGE) {
                let timeout = OrderTimeout::new(deadline, chunk.to_vec());
                if let Err(err) = self.schedule(&timeout).await {
                    tracing::warn!(%err, orders = chunk.len(), "timeouts not scheduled; the sweeper will cancel them");
                }
            }
        }
    }

    /// Sends `timeout` with the longest delay level not beyond its deadline.
    pub async fn schedule(&self, timeout: &OrderTimeout) -> Result<(), String> {
        let remaining = (timeout.deadline - Utc::now()).to_std().unwrap_or_default();
        let (level, delay) = delay_level_for(remaining);
        let mut message = Message::builder()
            .topic(self.topic.as_str())
            .tags(TAG_ORDER_TIMEOUT)
            .body(timeout.encode())
            .build()
            .map_err(|e| e.to_string())?;
        message.set_delay_time_level(level);
        self.producer.send(message).await?;
        tracing::debug!(
            orders = timeout.order_nos.len(),
            ?delay,
            "timeouts scheduled"
        );
        Ok(())
    }

    /// Sends what is still collected, then stops the producer.
    pub async fn shutdown(&self) {
        self.flush().await;
        self.producer.shutdown().await;
    }
}

/// Runs [`TimeoutScheduler::flush`] every [`FLUSH_EVERY`] until aborted.
pub async fn keep_flushing(
    timeouts: std::sync::Arc<TimeoutScheduler>,
    mut shutdown: common::shutdown::Shutdown,
) {
    while shutdown.sleep(FLUSH_EVERY).await {
        timeouts.flush().await;
    }
    timeouts.flush().await; // what was collected goes out before the producer stops
}
