//! Typed domain values. Raw JSON numbers and strings become these at the HTTP or
//! message edge, so the rest of the code cannot mix a user id with a product id
//! or pass a non-positive quantity.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a raw value was refused; the `field` names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidValue {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name(i64);

        impl $name {
            pub fn parse(raw: i64) -> Result<Self, InvalidValue> {
                if raw <= 0 {
                    return Err(InvalidValue::new($field, format!("must be a positive integer, got {raw}")));
                }
                Ok(Self(raw))
            }

            pub fn get(self) -> i64 {
                self.0
            }

            /// Parses a path segment or query value such as `"42"`.
            pub fn parse_text(raw: &str) -> Result<Self, InvalidValue> {
                let number = raw.parse::<i64>().map_err(|_| {
                    InvalidValue::new($field, format!("must be a positive integer, got {raw:?}"))
                })?;
                Self::parse(number)
            }
        }

        impl TryFrom<i64> for $name {
            type Error = InvalidValue;
            fn try_from(raw: i64) -> Result<Self, Self::Error> {
                Self::parse(raw)
            }
        }

        impl From<$name> for i64 {
            fn from(value: $name) -> i64 {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

positive_id!(
    /// A buyer.
    UserId,
    "user_id"
);
positive_id!(
    /// A product on sale.
    ProductId,
    "product_id"
);

/// How many items one order takes: at least 1 and at most the configured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(u32);

impl Quantity {
    /// The largest count any configuration may allow per order.
    pub const HARD_MAX: u32 = 1_000_000;

    pub fn parse(raw: i64, max_per_order: u32) -> Result<Self, InvalidValue> {
        if raw <= 0 {
            return Err(InvalidValue::new(
                "count",
                format!("must be a positive integer, got {raw}"),
            ));
        }
        if raw > i64::from(max_per_order.min(Self::HARD_MAX)) {
            return Err(InvalidValue::new(
                "count",
                format!("at most {max_per_order} items per order, got {raw}"),
            ));
        }
        Ok(Self(raw as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = InvalidValue;
    fn try_from(raw: i64) -> Result<Self, Self::Error> {
        Self::parse(raw, Self::HARD_MAX)
    }
}

impl From<Quantity> for i64 {
    fn from(value: Quantity) -> i64 {
        i64::from(value.0)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The one parser of every textual token (tx_no, order_no, pay_no,
/// Idempotency-Key): 1–64 characters of `[A-Za-z0-9_-]` plus `extra`.
pub fn parse_token(raw: &str, field: &'static str, extra: &[u8]) -> Result<String, InvalidValue> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || extra.contains(&b));
    if !ok {
        let extra = String::from_utf8_lossy(extra);
        return Err(InvalidValue::new(
            field,
            format!("must be 1-64 characters of [A-Za-z0-9_{extra}-]"),
        ));
    }
    Ok(raw.to_owned())
}

macro_rules! token {
    ($(#[$doc:meta])* $name:ident, $field:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// A fresh, time-ordered value (UUID v7 under a readable prefix).
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Accepts 1–64 characters of `[A-Za-z0-9_-]`, the shape every generated value has.
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                $crate::domain::parse_token(raw, $field, b"").map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token!(
    /// The id of one distributed transaction: the key of both services' `tx_log`.
    TxNo,
    "tx_no",
    "tx"
);
impl TxNo {
    /// A fresh id for a group commit's own transaction (`OrderBatch`):
    /// `txg` + UUID v7, never the shape of an order's or a cancellation's
    /// (`tx` + hex), so `tx_log` readers can tell the two apart.
    pub fn generate_batch() -> Self {
        Self(format!(
            "{BATCH_TX_PREFIX}{}",
            uuid::Uuid::now_v7().simple()
        ))
    }

    /// Whether this names a group commit rather than one order or cancellation.
    pub fn is_batch(raw: &str) -> bool {
        raw.starts_with(BATCH_TX_PREFIX)
    }
}

/// The prefix of a group commit's tx_no (see [`TxNo::generate_batch`]).
pub const BATCH_TX_PREFIX: &str = "txg";

token!(
    /// The business id of an order, shown to the buyer.
    OrderNo,
    "order_no",
    "o"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive() {
        assert!(UserId::parse(1).is_ok());
        assert_eq!(UserId::parse(0).unwrap_err().field, "user_id");
        assert_eq!(ProductId::parse(-5).unwrap_err().field, "product_id");
        assert_eq!(ProductId::parse_text("42").unwrap().get(), 42);
        assert!(ProductId::parse_text("4x").is_err());
        assert!(ProductId::parse_text("0").is_err());
    }

    #[test]
    fn quantity_respects_the_configured_maximum() {
        assert_eq!(Quantity::parse(3, 5).unwrap().get(), 3);
        assert!(Quantity::parse(6, 5).is_err());
        assert!(Quantity::parse(0, 5).is_err());
        assert!(Quantity::parse(i64::MAX, u32::MAX).is_err());
    }

    #[test]
    fn one_token_parser_names_the_field_and_its_alphabet() {
        assert_eq!(parse_token("a-b_9", "pay_no", b"").unwrap(), "a-b_9");
        assert_eq!(
            parse_token("k:1.2", "Idempotency-Key", b".:").unwrap(),
            "k:1.2"
        );
        let refused = parse_token("k:1", "pay_no", b"").unwrap_err();
        assert_eq!(refused.field, "pay_no");
        assert_eq!(refused.reason, "must be 1-64 characters of [A-Za-z0-9_-]");
        assert!(parse_token("", "x", b"").is_err());
        assert!(parse_token(&"a".repeat(65), "x", b"").is_err());
        assert!(parse_token(&"a".repeat(64), "x", b"").is_ok());
        assert_eq!(
            parse_token("a b", "Idempotency-Key", b".:")
                .unwrap_err()
                .reason,
            "must be 1-64 characters of [A-Za-z0-9_.:-]"
        );
    }

    #[test]
    fn generated_tokens_are_unique_and_parse_back() {
        let a = TxNo::generate();
        let b = TxNo::generate();
        assert!(!TxNo::is_batch(a.as_str()));
        let batch = TxNo::generate_batch();
        assert!(TxNo::is_batch(batch.as_str()));
        assert_eq!(TxNo::parse(batch.as_str()).unwrap(), batch);
        assert_ne!(a, b);
        assert_eq!(TxNo::parse(a.as_str()).unwrap(), a);
        assert!(OrderNo::parse("o 1").is_err());
        assert!(OrderNo::parse("").is_err());
        assert!(OrderNo::parse(&"x".repeat(65)).is_err());
    }
}
