//! The messages order-service and stock-service exchange, and where they travel.
//!
//! Every body is JSON carrying `schema_version`. Rules for evolving a schema:
//! add fields only with `#[serde(default)]` (old messages still decode), never
//! rename or retype one, and bump [`SCHEMA_VERSION`] when the meaning changes.
//! A consumer refuses versions newer than it knows, so the message is retried
//! until an upgraded consumer takes it, instead of being misread.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{OrderNo, ProductId, Quantity, TxNo, UserId};

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: u16 = 1;

/// Topic of the order events (creation now; cancellation later).
pub const ORDER_TOPIC: &str = "seckill_order_events";
/// Tag of [`OrderCreated`] on [`ORDER_TOPIC`].
pub const TAG_ORDER_CREATED: &str = "OrderCreated";
/// Producer group of order-service's transactional producer. The broker sends
/// check-backs to any live member of this group, so every order-service
/// instance must use the same name.
pub const ORDER_TX_PRODUCER_GROUP: &str = "seckill_order_tx_producer";
/// Consumer group of stock-service on [`ORDER_TOPIC`].
pub const STOCK_CONSUMER_GROUP: &str = "seckill_stock_consumer";

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

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("OrderCreated always serializes")
    }

    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        if body.is_empty() {
            return Err(DecodeError::Empty);
        }
        let kind = "OrderCreated";
        let message: Self = serde_json::from_slice(body)
            .map_err(|source| DecodeError::Malformed { kind, source })?;
        if message.schema_version > SCHEMA_VERSION {
            return Err(DecodeError::TooNew {
                kind,
                found: message.schema_version,
            });
        }
        Ok(message)
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
}
