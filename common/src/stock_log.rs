//! stock-service's `tx_log` as both services see it: the outcome it records
//! for each order message it applied, and one row as `GET /api/stock/tx-log`
//! pages it to order-service's consistency auditor. stock-service writes it;
//! the auditor reads it; neither spells the outcomes a second time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What `tx_log` records for one message (its `outcome` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A creation whose stock was deducted.
    Deducted,
    /// A creation the stock could not cover: nothing deducted.
    Insufficient,
    /// A creation whose cancellation came first: it will deduct nothing.
    Voided,
    /// A cancellation that gave its creation's stock back.
    Restored,
    /// A cancellation with nothing to give back (insufficient or voided creation).
    NothingToRestore,
}

/// Which of an order's two messages a `tx_log` row applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageKind {
    Creation,
    Cancellation,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creation => "creation",
            Self::Cancellation => "cancellation",
        }
    }
}

impl Outcome {
    const ALL: [Self; 5] = [
        Self::Deducted,
        Self::Insufficient,
        Self::Voided,
        Self::Restored,
        Self::NothingToRestore,
    ];

    pub fn as_db(self) -> &'static str {
        match self {
            Self::Deducted => "DEDUCTED",
            Self::Insufficient => "INSUFFICIENT",
            Self::Voided => "VOIDED",
            Self::Restored => "RESTORED",
            Self::NothingToRestore => "NOTHING_TO_RESTORE",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_db() == raw)
    }

    /// The message a row with this outcome applied.
    pub fn kind(self) -> MessageKind {
        match self {
            Self::Deducted | Self::Insufficient | Self::Voided => MessageKind::Creation,
            Self::Restored | Self::NothingToRestore => MessageKind::Cancellation,
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_db())
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::from_db(&raw)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown tx_log outcome {raw:?}")))
    }
}

/// One applied message: a row of stock-service's `tx_log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRow {
    pub tx_no: String,
    pub order_no: String,
    pub product_id: i64,
    pub count: i64,
    pub outcome: Outcome,
    pub applied_at: DateTime<Utc>,
}

/// One page of `GET /api/stock/tx-log`, in `tx_no` order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedPage {
    pub rows: Vec<AppliedRow>,
    /// Pass as `after` for the next page; `None` on the last one.
    pub next_after: Option<String>,
}

/// Rows one page holds at most.
pub const PAGE_MAX: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_the_db_spelling_and_json() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::from_db(outcome.as_db()), Some(outcome));
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{}\"", outcome.as_db()));
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), outcome);
        }
        assert!(serde_json::from_str::<Outcome>("\"LOST\"").is_err());
    }

    #[test]
    fn creations_and_cancellations_are_told_apart_by_outcome() {
        assert_eq!(Outcome::Voided.kind(), MessageKind::Creation);
        assert_eq!(Outcome::NothingToRestore.kind(), MessageKind::Cancellation);
    }
}
