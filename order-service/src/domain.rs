//! What an order request becomes once parsed, and what an order is once stored.

use chrono::{DateTime, Utc};
use common::domain::{InvalidValue, OrderNo, ProductId, Quantity, TxNo, UserId};
use common::http::JsonFields;
use common::messages::{CancelReason, OrderCancelled, OrderCreated};
use serde::Serialize;

/// A valid request for an order, not yet given ids.
#[derive(Debug, Clone, Copy)]
pub struct NewOrder {
    pub user_id: UserId,
    pub product_id: ProductId,
    pub count: Quantity,
}

impl NewOrder {
    /// Parses `{"product_id","count"}` for the signed-in `buyer` (a
    /// `user_id` in the body is checked against it by the route); each error
    /// names its field.
    pub fn parse(
        body: &serde_json::Value,
        max_count_per_order: u32,
        buyer: UserId,
    ) -> Result<Self, InvalidValue> {
        let fields = JsonFields::of(body)?;
        Ok(Self {
            user_id: buyer,
            product_id: ProductId::parse(fields.int("product_id")?)?,
            count: Quantity::parse(fields.int("count")?, max_count_per_order)?,
        })
    }

    /// Gives the order its transaction id and order number: the message to send.
    pub fn into_message(self) -> OrderCreated {
        OrderCreated::new(
            TxNo::generate(),
            OrderNo::generate(),
            self.user_id,
            self.product_id,
            self.count,
        )
    }
}

/// The `Idempotency-Key` header: 1–64 characters of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        common::domain::parse_token(raw, "Idempotency-Key", b".:").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an order stands: `NEW`, then exactly one of `PAID`, `CANCELLED`
/// (buyer or timeout) or `FAILED` (stock-service could not deduct it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    New,
    Paid,
    Cancelled,
    Failed,
}

impl OrderStatus {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Paid => "PAID",
            Self::Cancelled => "CANCELLED",
            Self::Failed => "FAILED",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        [Self::New, Self::Paid, Self::Cancelled, Self::Failed]
            .into_iter()
            .find(|s| s.as_db() == raw)
    }
}

/// An order as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub order_no: String,
    pub tx_no: String,
    pub user_id: i64,
    pub product_id: i64,
    pub count: i64,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub pay_no: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    /// Why a CANCELLED/FAILED order was closed: BUYER, TIMEOUT or STOCK_INSUFFICIENT.
    pub closed_reason: Option<ClosedReason>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Until when a NEW order can be paid; after it, it is cancelled.
    pub pay_deadline: Option<DateTime<Utc>>,
    /// The cancellation's own transaction, once cancelled (not shown).
    #[serde(skip)]
    pub cancel_tx_no: Option<String>,
}

impl Order {
    /// The `OrderCreated` message this order was (or is again) sent as.
    pub fn created_message(&self) -> Result<OrderCreated, InvalidValue> {
        Ok(OrderCreated {
            schema_version: common::messages::SCHEMA_VERSION,
            tx_no: TxNo::parse(&self.tx_no)?,
            order_no: OrderNo::parse(&self.order_no)?,
            user_id: UserId::parse(self.user_id)?,
            product_id: ProductId::parse(self.product_id)?,
            count: Quantity::parse(self.count, Quantity::HARD_MAX)?,
            created_at: self.created_at,
        })
    }

    /// The committed `OrderCancelled` of a cancelled order, rebuilt from its
    /// row for a resend; `None` when the order was not cancelled.
    pub fn cancelled_message(&self) -> Result<Option<OrderCancelled>, InvalidValue> {
        let (Some(tx_no), Some(closed_at)) = (&self.cancel_tx_no, self.closed_at) else {
            return Ok(None);
        };
        let reason = self
            .closed_reason
            .and_then(ClosedReason::cancel_reason)
            .ok_or_else(|| InvalidValue {
                field: "closed_reason",
                reason: format!("not a cancellation reason: {:?}", self.closed_reason),
            })?;
        let mut cancel = OrderCancelled::of(&self.created_message()?, reason);
        cancel.tx_no = TxNo::parse(tx_no)?;
        cancel.cancelled_at = closed_at;
        Ok(Some(cancel))
    }

    /// Fills in [`Order::pay_deadline`] for a NEW order.
    pub fn with_pay_deadline(mut self, payment_timeout: std::time::Duration) -> Self {
        self.pay_deadline = (self.status == OrderStatus::New)
            .then(|| pay_deadline(self.created_at, payment_timeout));
        self
    }
}

/// When an order created at `created_at` stops being payable.
pub fn pay_deadline(
    created_at: DateTime<Utc>,
    payment_timeout: std::time::Duration,
) -> DateTime<Utc> {
    created_at + payment_time(payment_timeout)
}

/// Orders created at or before this instant are past their payment deadline.
pub fn payment_cutoff(payment_timeout: std::time::Duration) -> DateTime<Utc> {
    Utc::now() - payment_time(payment_timeout)
}

fn payment_time(payment_timeout: std::time::Duration) -> chrono::Duration {
    // Beyond chrono's range (centuries) only by misconfiguration: cap it.
    chrono::Duration::from_std(payment_timeout).unwrap_or(chrono::Duration::days(36_500))
}

/// Why a CANCELLED/FAILED order was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClosedReason {
    /// Cancelled by its buyer.
    Buyer,
    /// Cancelled when its payment time ran out.
    Timeout,
    /// Failed: stock-service had no stock for it.
    StockInsufficient,
}

impl ClosedReason {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Buyer => "BUYER",
            Self::Timeout => "TIMEOUT",
            Self::StockInsufficient => "STOCK_INSUFFICIENT",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        [Self::Buyer, Self::Timeout, Self::StockInsufficient]
            .into_iter()
            .find(|r| r.as_db() == raw)
    }

    /// The cancellation reason of a cancelled order (none for a failed one).
    pub fn cancel_reason(self) -> Option<CancelReason> {
        match self {
            Self::Buyer => Some(CancelReason::Buyer),
            Self::Timeout => Some(CancelReason::Timeout),
            Self::StockInsufficient => None,
        }
    }
}

/// A simulated payment reference: 1–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayNo(String);

impl PayNo {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        common::domain::parse_token(raw, "pay_no", b"").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
