//! The messages order-service and stock-service exchange, and where they travel.
//!
//! Every body is JSON carrying `schema_version`. Rules for evolving a schema:
//! add fields only with `#[serde(default)]` (old messages still decode), never
//! rename or retype one, and bump [`SCHEMA_VERSION`] when the meaning changes.
//! A consumer refuses versions newer than it knows, so the message is retried
//! until an upgraded consumer takes it, instead of being misread.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::{OrderNo, ProductId, Quantity, TxNo, UserId};

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: u16 = 1;

/// Topic of the order events: [`OrderCreated`] and [`OrderCancelled`] (for
/// stock-service) and the delayed [`OrderTimeout`] (for order-service itself).
pub const ORDER_TOPIC: &str = "seckill_order_events";
/// Topic of stock-service's events for order-service: [`StockInsufficient`].
pub const STOCK_TOPIC: &str = "seckill_stock_events";
/// Tag of [`OrderCreated`] on [`ORDER_TOPIC`].
pub const TAG_ORDER_CREATED: &str = "OrderCreated";
/// Tag of [`OrderBatch`] on [`ORDER_TOPIC`]: the orders one group commit recorded.
pub const TAG_ORDER_BATCH: &str = "OrderBatch";
/// Tag of [`OrderCancelled`] on [`ORDER_TOPIC`].
pub const TAG_ORDER_CANCELLED: &str = "OrderCancelled";
/// Tag of [`OrderTimeout`] on [`ORDER_TOPIC`].
pub const TAG_ORDER_TIMEOUT: &str = "OrderTimeout";
/// Tag of [`StockInsufficient`] on [`STOCK_TOPIC`].
pub const TAG_STOCK_INSUFFICIENT: &str = "StockInsufficient";
/// Producer group of order-service's transactional producer. The broker sends
/// check-backs to any live member of this group, so every order-service
/// instance must use the same name.
pub const ORDER_TX_PRODUCER_GROUP: &str = "seckill_order_tx_producer";
/// Consumer group of stock-service on [`ORDER_TOPIC`].
pub const STOCK_CONSUMER_GROUP: &str = "seckill_stock_consumer";
/// Producer group of stock-service's [`StockInsufficient`] producer.
pub const STOCK_EVENTS_PRODUCER_GROUP: &str = "seckill_stock_events_producer";
/// Consumer group of order-service on its own timeouts and on [`STOCK_TOPIC`].
pub const ORDER_EVENTS_CONSUMER_GROUP: &str = "seckill_order_events_consumer";
/// Consumer group of order-service's watch on the DLQs and discarded transactions.
pub const DEAD_LETTER_WATCH_GROUP: &str = "seckill_dead_letter_watch";
/// Producer group of order-service's plain producer (the delayed timeouts).
pub const ORDER_TIMEOUT_PRODUCER_GROUP: &str = "seckill_order_timeout_producer";

/// An order was committed in the order database; stock must be deducted once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub schema_version: u16,
    pub tx_no: TxNo,
    pub order_no: OrderNo,
    pub user_id: UserId,
    pub product_id: ProductId,
    pub count: Quantity,
    pub created_at: DateTime<Utc>,
}

/// The orders one local transaction of order-service committed together
/// (group commit): one transactional message for all of them. `batch_tx_no`
/// is the distributed transaction's own id (order-service's check-back
/// decides on it); each order keeps its own `tx_no`, on which stock-service
/// dedupes exactly as for a single [`OrderCreated`], so a redelivered batch,
/// or an order seen before in another message, has one effect per order.
/// Orders are listed in admission order, which is the order stock is handed
/// out in when it does not cover them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderBatch {
    pub schema_version: u16,
    pub batch_tx_no: TxNo,
    pub orders: Vec<OrderCreated>,
}

impl OrderBatch {
    pub fn new(batch_tx_no: TxNo, orders: Vec<OrderCreated>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            batch_tx_no,
            orders,
        }
    }
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelReason {
    /// The buyer cancelled it.
    Buyer,
    /// It was not paid in time.
    Timeout,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buyer => "BUYER",
            Self::Timeout => "TIMEOUT",
        }
    }
}

/// A NEW order was cancelled in the order database (its own distributed
/// transaction, `tx_no`); stock-service gives the stock of the order created
/// by `order_tx_no` back, once, even when this arrives before the creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub schema_version: u16,
    /// The cancellation's own transaction: stock-service dedupes on it.
    pub tx_no: TxNo,
    pub order_no: OrderNo,
    /// The transaction that created the order (the [`OrderCreated`] tx_no).
    pub order_tx_no: TxNo,
    pub user_id: UserId,
    pub product_id: ProductId,
    pub count: Quantity,
    pub reason: CancelReason,
    pub cancelled_at: DateTime<Utc>,
}

/// The payment deadline of the orders committed within one second, sent
/// delayed as one message: when it arrives, each of them still NEW is
/// cancelled (an early arrival is sent on again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTimeout {
    pub schema_version: u16,
    /// Not before every listed order's own deadline.
    pub deadline: DateTime<Utc>,
    pub order_nos: Vec<OrderNo>,
}

/// stock-service could not deduct the order created by `order_tx_no`
/// (nothing was deducted; recorded INSUFFICIENT in its tx_log). Sent again on
/// redelivery until the send succeeds; order-service applies it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockInsufficient {
    pub schema_version: u16,
    pub order_tx_no: TxNo,
    pub order_no: OrderNo,
    pub product_id: ProductId,
    pub count: Quantity,
    pub detected_at: DateTime<Utc>,
}

/// A versioned JSON message body.
pub trait Envelope: Serialize + DeserializeOwned {
    /// Its name in errors and logs.
    const KIND: &'static str;

    fn schema_version(&self) -> u16;

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("messages always serialize")
    }

    fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        if body.is_empty() {
            return Err(DecodeError::Empty);
        }
        let kind = Self::KIND;
        let message: Self = serde_json::from_slice(body)
            .map_err(|source| DecodeError::Malformed { kind, source })?;
        let found = message.schema_version();
        if found > SCHEMA_VERSION {
            return Err(DecodeError::TooNew { kind, found });
        }
        Ok(message)
    }
}

macro_rules! envelope {
    ($($ty:ident),*) => {$(
        impl Envelope for $ty {
            const KIND: &'static str = stringify!($ty);
            fn schema_version(&self) -> u16 {
                self.schema_version
            }
        }
    )*};
}
envelope!(
    OrderCreated,
    OrderBatch,
    OrderCancelled,
    OrderTimeout,
    StockInsufficient
);

impl OrderCancelled {
    /// Cancels the order `created` describes, as a transaction of its own.
    pub fn of(created: &OrderCreated, reason: CancelReason) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            tx_no: TxNo::generate(),
            order_no: created.order_no.clone(),
            order_tx_no: created.tx_no.clone(),
            user_id: created.user_id,
            product_id: created.product_id,
            count: created.count,
            reason,
            cancelled_at: Utc::now(),
        }
    }
}

impl OrderTimeout {
    pub fn new(deadline: DateTime<Utc>, order_nos: Vec<OrderNo>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            deadline,
            order_nos,
        }
    }
}

impl StockInsufficient {
    pub fn of(created: &OrderCreated) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            order_tx_no: created.tx_no.clone(),
            order_no: created.order_no.clone(),
            product_id: created.product_id,
            count: created.count,
            detected_at: Utc::now(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message body is empty")]
    Empty,
    #[error("message body is not a valid {kind}: {source}")]
    Malformed {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{kind} schema_version {found} is newer than the supported {SCHEMA_VERSION}")]
    TooNew { kind: &'static str, found: u16 },
}

impl OrderCreated {
    pub fn new(
        tx_no: TxNo,
        order_no: OrderNo,
        user_id: UserId,
        product_id: ProductId,
        count: Quantity,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            tx_no,
            order_no,
            user_id,
            product_id,
            count,
            created_at: Utc::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OrderCreated {
        OrderCreated::new(
            TxNo::generate(),
            OrderNo::generate(),
            UserId::parse(7).unwrap(),
            ProductId::parse(42).unwrap(),
            Quantity::parse(2, 10).unwrap(),
        )
    }

    #[test]
    fn order_created_round_trips() {
        let message = sample();
        assert_eq!(OrderCreated::decode(&message.encode()).unwrap(), message);
    }

    /// The exact v1 wire format: if this stops decoding, deployed producers break.
    #[test]
    fn v1_wire_format_still_decodes() {
        let v1 = br#"{"schema_version":1,"tx_no":"tx0190a1b2c3d4","order_no":"o0190a1b2c3d4",
            "user_id":7,"product_id":42,"count":2,"created_at":"2026-11-23T10:00:00.123Z"}"#;
        let message = OrderCreated::decode(v1).unwrap();
        assert_eq!(message.tx_no.as_str(), "tx0190a1b2c3d4");
        assert_eq!(message.count.get(), 2);
        assert_eq!(message.created_at.timestamp_millis(), 1_795_428_000_123);
    }

    #[test]
    fn unknown_fields_from_a_newer_minor_producer_are_ignored() {
        let body = br#"{"schema_version":1,"tx_no":"tx1","order_no":"o1","user_id":1,
            "product_id":1,"count":1,"created_at":"2026-11-23T10:00:00Z","coupon":"X"}"#;
        assert!(OrderCreated::decode(body).is_ok());
    }

    #[test]
    fn newer_schema_versions_are_refused_not_misread() {
        let mut message = sample();
        message.schema_version = SCHEMA_VERSION + 1;
        assert!(matches!(
            OrderCreated::decode(&message.encode()),
            Err(DecodeError::TooNew { .. })
        ));
    }

    #[test]
    fn invalid_values_inside_a_message_are_refused() {
        let body = br#"{"schema_version":1,"tx_no":"tx1","order_no":"o1","user_id":1,
            "product_id":1,"count":0,"created_at":"2026-11-23T10:00:00Z"}"#;
        assert!(matches!(
            OrderCreated::decode(body),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(OrderCreated::decode(b""), Err(DecodeError::Empty)));
    }

    #[test]
    fn a_batch_round_trips_and_its_v1_wire_format_decodes() {
        let batch = OrderBatch::new(TxNo::generate(), vec![sample(), sample()]);
        assert_eq!(OrderBatch::decode(&batch.encode()).unwrap(), batch);
        let v1 = br#"{"schema_version":1,"batch_tx_no":"txb1","orders":[
            {"schema_version":1,"tx_no":"tx1","order_no":"o1","user_id":7,"product_id":42,
             "count":1,"created_at":"2026-11-23T10:00:00Z"}]}"#;
        let decoded = OrderBatch::decode(v1).unwrap();
        assert_eq!(decoded.batch_tx_no.as_str(), "txb1");
        assert_eq!(decoded.orders[0].product_id.get(), 42);
        // A single-order body is not a batch: refused, not misread as an empty one.
        assert!(OrderBatch::decode(&sample().encode()).is_err());
    }

    #[test]
    fn a_cancellation_names_both_transactions_and_round_trips() {
        let created = sample();
        let cancel = OrderCancelled::of(&created, CancelReason::Timeout);
        assert_ne!(cancel.tx_no, created.tx_no);
        assert_eq!(cancel.order_tx_no, created.tx_no);
        let body = String::from_utf8(cancel.encode()).unwrap();
        assert!(body.contains(r#""reason":"TIMEOUT""#), "{body}");
        assert_eq!(OrderCancelled::decode(body.as_bytes()).unwrap(), cancel);
        let insufficient = StockInsufficient::of(&created);
        assert_eq!(
            StockInsufficient::decode(&insufficient.encode()).unwrap(),
            insufficient
        );
    }
}
