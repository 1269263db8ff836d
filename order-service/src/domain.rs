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

/// A one-time order token (the `Order-Token` header): 128 random bits as
/// 32 hex digits, issued for one buyer and one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderToken(String);

impl OrderToken {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// What a client sent; anything not shaped like a token is refused.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        common::domain::parse_token(raw, "Order-Token", b"").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
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
    /// The price of one item when it was bought (none: a sale without a price).
    pub unit_price_cents: Option<i64>,
    /// What paying it takes: count × unit price.
    pub amount_cents: Option<i64>,
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

/// When a sale admits orders: from `starts_at` (none: at once) until
/// `ends_at` (none: open-ended). Copied into Redis as milliseconds, where the
/// admission script checks it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SaleWindow {
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
}

impl SaleWindow {
    pub fn starts_at_ms(&self) -> Option<i64> {
        self.starts_at.map(|t| t.timestamp_millis())
    }

    pub fn ends_at_ms(&self) -> Option<i64> {
        self.ends_at.map(|t| t.timestamp_millis())
    }
}

/// What an admin sets when opening a sale (`PUT /api/sales/{product_id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleTerms {
    pub stock: u32,
    pub per_user_limit: u32,
    pub name: Option<String>,
    pub list_price_cents: Option<i64>,
    pub sale_price_cents: Option<i64>,
    pub window: SaleWindow,
}

/// The largest price accepted, in cents (one million in currency units).
pub const MAX_PRICE_CENTS: i64 = 100_000_000;

impl SaleTerms {
    /// Parses `{"stock", "per_user_limit"?, "name"?, "list_price_cents"?,
    /// "sale_price_cents"?, "starts_at"?, "ends_at"?}` (times RFC 3339;
    /// `starts_at` defaults to now, `ends_at` to open-ended); each error names
    /// its field.
    pub fn parse(
        body: &serde_json::Value,
        default_limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Self, InvalidValue> {
        let fields = JsonFields::of(body)?;
        let present =
            |field: &str| !matches!(body.get(field), None | Some(serde_json::Value::Null));
        let stock = bounded("stock", fields.int("stock")?, 0, i64::from(i32::MAX))?;
        let per_user_limit = if present("per_user_limit") {
            bounded(
                "per_user_limit",
                fields.int("per_user_limit")?,
                1,
                i64::from(i32::MAX),
            )?
        } else {
            default_limit
        };
        let name = if present("name") {
            let name = body["name"].as_str().map(str::trim).ok_or(InvalidValue {
                field: "name",
                reason: "must be a string".into(),
            })?;
            if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
                return Err(InvalidValue {
                    field: "name",
                    reason: "must be 1 to 200 printable characters".into(),
                });
            }
            Some(name.to_owned())
        } else {
            None
        };
        let price = |field: &'static str| -> Result<Option<i64>, InvalidValue> {
            if !present(field) {
                return Ok(None);
            }
            let cents = fields.int(field)?;
            bounded(field, cents, 0, MAX_PRICE_CENTS)?;
            Ok(Some(cents))
        };
        let list_price_cents = price("list_price_cents")?;
        let sale_price_cents = price("sale_price_cents")?;
        if let (Some(list), Some(sale)) = (list_price_cents, sale_price_cents)
            && sale > list
        {
            return Err(InvalidValue {
                field: "sale_price_cents",
                reason: format!("must not exceed list_price_cents ({list}), got {sale}"),
            });
        }
        let time = |field: &'static str| -> Result<Option<DateTime<Utc>>, InvalidValue> {
            if !present(field) {
                return Ok(None);
            }
            let raw = body[field].as_str().ok_or(InvalidValue {
                field,
                reason: "must be an RFC 3339 time such as 2026-12-01T10:00:00Z".into(),
            })?;
            let at = DateTime::parse_from_rfc3339(raw)
                .map_err(|_| InvalidValue {
                    field,
                    reason: format!(
                        "must be an RFC 3339 time such as 2026-12-01T10:00:00Z, got {raw:?}"
                    ),
                })?
                .with_timezone(&Utc);
            if !(2000..=9999).contains(&chrono::Datelike::year(&at)) {
                return Err(InvalidValue {
                    field,
                    reason: format!("must be between the years 2000 and 9999, got {raw:?}"),
                });
            }
            Ok(Some(at))
        };
        let starts_at = time("starts_at")?.unwrap_or(now);
        let ends_at = time("ends_at")?;
        if let Some(ends_at) = ends_at
            && ends_at <= starts_at
        {
            return Err(InvalidValue {
                field: "ends_at",
                reason: "must be after starts_at".into(),
            });
        }
        Ok(Self {
            stock,
            per_user_limit,
            name,
            list_price_cents,
            sale_price_cents,
            window: SaleWindow {
                starts_at: Some(starts_at),
                ends_at,
            },
        })
    }
}

fn bounded(field: &'static str, value: i64, min: i64, max: i64) -> Result<u32, InvalidValue> {
    if value < min || value > max {
        return Err(InvalidValue {
            field,
            reason: format!("must be between {min} and {max}, got {value}"),
        });
    }
    Ok(u32::try_from(value).unwrap_or(u32::MAX))
}

/// A sale as recorded in the order database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleRecord {
    pub product: ProductId,
    pub per_user_limit: u32,
    pub opened_stock: i64,
    pub name: Option<String>,
    pub list_price_cents: Option<i64>,
    pub sale_price_cents: Option<i64>,
    pub window: SaleWindow,
}

#[cfg(test)]
mod sale_terms_tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_full_sale_parses_and_a_bare_one_starts_now_without_end() {
        let full = SaleTerms::parse(
            &json!({"stock": 10, "per_user_limit": 2, "name": " Phone ", "list_price_cents": 19900,
                    "sale_price_cents": 9900, "starts_at": "2026-12-01T10:00:00+08:00",
                    "ends_at": "2026-12-01T03:00:00Z"}),
            1,
            now(),
        )
        .unwrap();
        assert_eq!(full.name.as_deref(), Some("Phone"));
        assert_eq!(full.sale_price_cents, Some(9900));
        assert_eq!(
            full.window.starts_at_ms(),
            Some(
                DateTime::parse_from_rfc3339("2026-12-01T02:00:00Z")
                    .unwrap()
                    .timestamp_millis()
            )
        );
        let bare = SaleTerms::parse(&json!({"stock": 3}), 1, now()).unwrap();
        assert_eq!(bare.per_user_limit, 1);
        assert_eq!(bare.window.starts_at, Some(now()));
        assert_eq!(bare.window.ends_at, None);
        assert_eq!(bare.sale_price_cents, None);
    }

    #[test]
    fn bad_terms_name_their_field() {
        for (body, field) in [
            (json!({"stock": 1, "name": ""}), "name"),
            (json!({"stock": 1, "name": 5}), "name"),
            (
                json!({"stock": 1, "sale_price_cents": -1}),
                "sale_price_cents",
            ),
            (
                json!({"stock": 1, "list_price_cents": 1.5}),
                "list_price_cents",
            ),
            (
                json!({"stock": 1, "list_price_cents": 100, "sale_price_cents": 200}),
                "sale_price_cents",
            ),
            (json!({"stock": 1, "starts_at": "tomorrow"}), "starts_at"),
            (json!({"stock": 1, "starts_at": 1700000000}), "starts_at"),
            (
                json!({"stock": 1, "ends_at": "2026-11-30T09:00:00Z"}),
                "ends_at",
            ),
            (
                json!({"stock": 1, "starts_at": "0001-01-01T00:00:00Z"}),
                "starts_at",
            ),
            (json!({"stock": -1}), "stock"),
            (json!({"stock": 1, "per_user_limit": 0}), "per_user_limit"),
        ] {
            let err = SaleTerms::parse(&body, 1, now()).unwrap_err();
            assert_eq!(err.field, field, "{body}: {err}");
        }
    }
}
