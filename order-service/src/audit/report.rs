//! What an audit found, as `GET /api/admin/audit` answers it (JSON) and
//! `order-service audit` prints it (text): per product the figures of each
//! place and the differences, the differences that belong to no product, the
//! broker's figures, and the reconciliation the audit includes.

use chrono::{DateTime, Utc};
use common::stock_log::{MessageKind, Outcome};
use serde::Serialize;

use super::broker::{GroupLag, QueueRange, UndecidedHalf};
use crate::admission::reconcile::Report;

/// What the order DB says of a tx_no found elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderDbSays {
    /// COMMITTED, and the order it belongs to exists.
    Committed,
    /// COMMITTED in `tx_log`, but no order was created or cancelled by it.
    CommittedWithoutOrder,
    RolledBack,
    /// No `tx_log` row.
    Unknown,
}

impl OrderDbSays {
    fn describe(self) -> &'static str {
        match self {
            Self::Committed => "committed there",
            Self::CommittedWithoutOrder => "committed there without an order",
            Self::RolledBack => "rolled back there",
            Self::Unknown => "unknown there",
        }
    }
}

/// One difference: a committed fact missing from a place, present twice, or
/// present where nothing was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Difference {
    /// Committed in the order DB; no message with its tx_no in the order topic.
    MissingMessage {
        message: MessageKind,
        tx_no: String,
        order_no: String,
        committed_at: DateTime<Utc>,
    },
    /// Committed in the order DB; no row in stock-service's `tx_log`.
    NotApplied {
        message: MessageKind,
        tx_no: String,
        order_no: String,
        committed_at: DateTime<Utc>,
    },
    /// stock-service applied the tx_no as something else (other message,
    /// product or count).
    AppliedDifferently {
        message: MessageKind,
        tx_no: String,
        order_no: String,
        expected: String,
        found: String,
    },
    /// stock-service applied one order's creation (or cancellation) a second
    /// time, under a tx_no the order DB does not know.
    DuplicateApplication {
        message: MessageKind,
        order_no: String,
        tx_no: String,
        extra_tx_no: String,
        outcome: Outcome,
        count: i64,
    },
    /// stock-service applied a tx_no no order of the order DB committed.
    OrphanApplication {
        tx_no: String,
        order_no: String,
        outcome: Outcome,
        count: i64,
        order_db: OrderDbSays,
    },
    /// A creation or cancellation message in the order topic for a tx_no no
    /// order of the order DB committed.
    UnknownMessage {
        message: MessageKind,
        tx_no: String,
        copies: u32,
        order_db: OrderDbSays,
    },
    /// COMMITTED in the order DB's `tx_log`, but no order was created or
    /// cancelled by it.
    CommitWithoutOrder {
        tx_no: String,
        committed_at: DateTime<Utc>,
    },
    /// An order whose creation (or cancellation) has no COMMITTED `tx_log` row.
    OrderWithoutCommit {
        message: MessageKind,
        tx_no: String,
        order_no: String,
        order_db: OrderDbSays,
    },
    /// A transactional half message of the order topic that neither commit
    /// nor rollback decided.
    UndecidedHalfMessage {
        tx_no: Option<String>,
        message: Option<MessageKind>,
        age_secs: i64,
        checks: u32,
        copies: u32,
        order_db: OrderDbSays,
    },
    /// A consumer group has messages waiting longer than the settle time.
    ConsumerLag {
        group: String,
        topic: String,
        waiting: i64,
        oldest_age_secs: i64,
    },
    /// Reconciliation's finding (Redis against both databases).
    Reconcile { finding: String },
    /// Dead letters no one resolved (listed under `reconcile`).
    DeadLetters { unresolved: i64 },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingMessage {
                message,
                tx_no,
                order_no,
                committed_at,
            } => write!(
                f,
                "missing message: the {} {tx_no} of order {order_no}, committed {}, has no message in the order topic",
                message.as_str(),
                committed_at.to_rfc3339()
            ),
            Self::NotApplied {
                message,
                tx_no,
                order_no,
                committed_at,
            } => write!(
                f,
                "not applied: stock-service has no row for the {} {tx_no} of order {order_no}, committed {}",
                message.as_str(),
                committed_at.to_rfc3339()
            ),
            Self::AppliedDifferently {
                message,
                tx_no,
                order_no,
                expected,
                found,
            } => write!(
                f,
                "applied differently: the {} {tx_no} of order {order_no} is {expected} in the order DB, {found} in stock-service",
                message.as_str()
            ),
            Self::DuplicateApplication {
                message,
                order_no,
                tx_no,
                extra_tx_no,
                outcome,
                count,
            } => {
                let what = match (message, outcome) {
                    (_, Outcome::Deducted) => "duplicate deduction",
                    (_, Outcome::Restored) => "duplicate restoration",
                    (MessageKind::Creation, _) => "creation applied twice",
                    (MessageKind::Cancellation, _) => "cancellation applied twice",
                };
                write!(
                    f,
                    "{what}: order {order_no}'s {} {tx_no} was applied again by stock-service as {extra_tx_no} ({} {count}), unknown to the order DB",
                    message.as_str(),
                    outcome.as_db()
                )
            }
            Self::OrphanApplication {
                tx_no,
                order_no,
                outcome,
                count,
                order_db,
            } => {
                let what = match outcome {
                    Outcome::Deducted => "orphan deduction",
                    Outcome::Restored => "orphan restoration",
                    _ => "orphan application",
                };
                write!(
                    f,
                    "{what}: stock-service applied {tx_no} (order {order_no}, {} {count}); the order DB has no such order ({})",
                    outcome.as_db(),
                    order_db.describe()
                )
            }
            Self::UnknownMessage {
                message,
                tx_no,
                copies,
                order_db,
            } => write!(
                f,
                "unknown message: the order topic carries {copies} {} message(s) of {tx_no}, which no order committed ({})",
                message.as_str(),
                order_db.describe()
            ),
            Self::CommitWithoutOrder {
                tx_no,
                committed_at,
            } => write!(
                f,
                "commit without order: tx_log holds {tx_no} as COMMITTED ({}) but no order was created or cancelled by it",
                committed_at.to_rfc3339()
            ),
            Self::OrderWithoutCommit {
                message,
                tx_no,
                order_no,
                order_db,
            } => write!(
                f,
                "order without commit: order {order_no}'s {} {tx_no} is not COMMITTED in tx_log ({})",
                message.as_str(),
                order_db.describe()
            ),
            Self::UndecidedHalfMessage {
                tx_no,
                message,
                age_secs,
                checks,
                copies,
                order_db,
            } => write!(
                f,
                "undecided half message: {} {} sent {age_secs}s ago, checked back {checks} time(s), {copies} cop(ies) in the half queue; {}",
                message.map_or("message", MessageKind::as_str),
                tx_no.as_deref().unwrap_or("(no tx_no)"),
                match order_db {
                    OrderDbSays::Committed =>
                        "committed in the order DB (the check-back will commit it)",
                    OrderDbSays::RolledBack =>
                        "rolled back in the order DB (the check-back will roll it back)",
                    OrderDbSays::CommittedWithoutOrder =>
                        "committed in the order DB without an order",
                    OrderDbSays::Unknown => "unknown to the order DB",
                }
            ),
            Self::ConsumerLag {
                group,
                topic,
                waiting,
                oldest_age_secs,
            } => write!(
                f,
                "consumer lag: group {group} has {waiting} message(s) of {topic} waiting, the oldest for {oldest_age_secs}s"
            ),
            Self::Reconcile { finding } => write!(f, "reconcile: {finding}"),
            Self::DeadLetters { unresolved } => write!(
                f,
                "dead letters: {unresolved} unresolved (see the reconcile part)"
            ),
        }
    }
}

/// A difference with its sentence, as the JSON answer carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    #[serde(flatten)]
    pub difference: Difference,
    pub summary: String,
}

impl From<Difference> for Finding {
    fn from(difference: Difference) -> Self {
        Self {
            summary: difference.to_string(),
            difference,
        }
    }
}

/// One product: how many committed facts each place holds, and the differences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProductAudit {
    pub product_id: i64,
    pub committed_creations: u64,
    pub committed_cancellations: u64,
    /// Committed facts younger than the settle time: not judged yet.
    pub in_flight: u64,
    /// Judged facts with a message in the order topic.
    pub in_broker: u64,
    /// Of those, facts with more than one message: order-service sends a
    /// committed message stock-service has not applied again (redelivery), so
    /// this is a count, not a difference.
    pub sent_more_than_once: u64,
    /// Judged facts stock-service applied.
    pub applied: u64,
    /// Half messages of the product not decided yet but younger than the settle time.
    pub undecided_in_flight: u64,
    pub findings: Vec<Finding>,
}

/// The broker's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerFigures {
    pub order_topic: String,
    pub queues: Vec<QueueRange>,
    pub messages_read: u64,
    pub half_messages_read: u64,
    /// Undecided half messages younger than the settle time.
    pub undecided_in_flight: Vec<UndecidedHalf>,
    pub lags: Vec<GroupLag>,
    /// Watched groups whose lag could not be read, and why.
    pub lag_errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub generated_at: DateTime<Utc>,
    pub product_id: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    /// Facts younger than this are in flight, not judged (`redelivery.after_secs`).
    pub settle_secs: u64,
    /// Complete, and not one difference.
    pub clean: bool,
    /// Every place was read in full (else `incomplete_because` says what not).
    pub complete: bool,
    pub incomplete_because: Vec<String>,
    pub differences: usize,
    pub products: Vec<ProductAudit>,
    /// Differences that belong to no one product.
    pub overall: Vec<Finding>,
    pub broker: BrokerFigures,
    /// Redis against both databases, and the dead letters (the reconciliation).
    pub reconcile: Report,
}

impl AuditReport {
    /// Counts the differences and decides `clean`.
    pub fn settle_verdict(mut self) -> Self {
        self.differences = self.overall.len()
            + self
                .products
                .iter()
                .map(|p| p.findings.len())
                .sum::<usize>();
        self.complete = self.incomplete_because.is_empty();
        self.clean = self.complete && self.differences == 0;
        self
    }
}

impl std::fmt::Display for AuditReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "audit of {} committed since {} (facts younger than {}s are in flight), at {}",
            self.product_id
                .map_or("every product".to_owned(), |p| format!("product {p}")),
            self.since
                .map_or("the beginning".to_owned(), |s| s.to_rfc3339()),
            self.settle_secs,
            self.generated_at.to_rfc3339()
        )?;
        for p in &self.products {
            writeln!(
                f,
                "product {}: committed {} creation(s), {} cancellation(s); {} in flight; {} in the broker ({} sent more than once); {} applied by stock-service; {} undecided half message(s) in flight",
                p.product_id,
                p.committed_creations,
                p.committed_cancellations,
                p.in_flight,
                p.in_broker,
                p.sent_more_than_once,
                p.applied,
                p.undecided_in_flight
            )?;
            for finding in &p.findings {
                writeln!(f, "  DIFFERENCE {}", finding.summary)?;
            }
        }
        let b = &self.broker;
        writeln!(
            f,
            "broker: {} message(s) read from {} queue(s) of {}; {} half/op message(s) read",
            b.messages_read,
            b.queues.len(),
            b.order_topic,
            b.half_messages_read
        )?;
        for lag in &b.lags {
            writeln!(
                f,
                "  group {} on {}: {} waiting{}",
                lag.group,
                lag.topic,
                lag.waiting,
                lag.oldest_waiting_since.map_or(String::new(), |t| format!(
                    ", the oldest since {}",
                    t.to_rfc3339()
                ))
            )?;
        }
        for error in &b.lag_errors {
            writeln!(f, "  lag not read: {error}")?;
        }
        for finding in &self.overall {
            writeln!(f, "DIFFERENCE {}", finding.summary)?;
        }
        for reason in &self.incomplete_because {
            writeln!(f, "INCOMPLETE {reason}")?;
        }
        write!(
            f,
            "{}",
            match (self.complete, self.differences) {
                (true, 0) => "clean: every committed fact is in every place, once".to_owned(),
                (false, 0) => "INCOMPLETE: no difference in what was read".to_owned(),
                (_, n) => format!("{n} DIFFERENCE(S) FOUND"),
            }
        )
    }
}
