//! What order-service counts as it happens: order requests by outcome,
//! check-backs by answer, transactional sends in flight, orders closed by
//! reason, dead letters recorded. `/metrics` adds per-product gauges read at
//! scrape time (see [`crate::dashboard`]). The JSON form names the instance
//! (an id new at each start), so a reader taking rates from the deltas of two
//! reads never subtracts one replica's counters (or a restarted one's) from
//! another's.

use common::metric_label;
use common::metrics::{DynamicCounter, Exposition, Gauge, LabeledCounter};

metric_label!(
    /// How `POST /api/orders` was answered.
    pub enum OrderAnswer {
        Created = "created",
        Issued = "issued",
        TokenInvalid = "token_invalid",
        Pending = "pending",
        Replayed = "replayed",
        SoldOut = "sold_out",
        LimitExceeded = "limit_exceeded",
        NotOnSale = "not_on_sale",
        NotReady = "not_ready",
        NotStarted = "not_started",
        Ended = "ended",
        Rejected = "rejected",
        RateLimited = "rate_limited",
        Invalid = "invalid",
        Forbidden = "forbidden",
        Unavailable = "unavailable",
    }
);

metric_label!(
    /// What a check-back told the broker.
    pub enum CheckBackAnswer {
        Commit = "commit",
        Rollback = "rollback",
        Unknown = "unknown",
    }
);

metric_label!(
    /// Why an order was closed without being paid (or paid without stock).
    pub enum ClosedBy {
        Buyer = "buyer",
        Timeout = "timeout",
        StockInsufficient = "stock_insufficient",
        PaidWithoutStock = "paid_without_stock",
    }
);

metric_label!(
    /// Where a dead letter was found.
    pub enum DeadLetterSource {
        Dlq = "dlq",
        DiscardedTransaction = "discarded_transaction",
    }
);

metric_label!(
    /// Which kind of committed message was sent again.
    pub enum Resent {
        Creation = "creation",
        Cancellation = "cancellation",
    }
);

metric_label!(
    /// What the group commit sent: single-order messages, batch messages, the
    /// orders committed in batches, and orders a batch's local transaction
    /// refused (the rest went again without them).
    pub enum GroupSend {
        Single = "single",
        Batch = "batch",
        BatchedOrders = "batched_orders",
        Refused = "refused",
    }
);

pub struct OrderMetrics {
    /// This process's counters: an id drawn at start.
    pub instance: String,
    pub orders: LabeledCounter<OrderAnswer>,
    pub check_backs: LabeledCounter<CheckBackAnswer>,
    pub closed: LabeledCounter<ClosedBy>,
    pub dead_letters: LabeledCounter<DeadLetterSource>,
    pub redelivered: LabeledCounter<Resent>,
    pub group_commit: LabeledCounter<GroupSend>,
    pub in_flight: Gauge,
    /// Transactional sends by the broker (name) that stored the half message.
    pub by_broker: DynamicCounter,
}

impl Default for OrderMetrics {
    fn default() -> Self {
        Self {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            orders: LabeledCounter::new(
                "seckill_order_requests_total",
                "Order requests by outcome: POST /api/orders, and the order-token requests before them (refused there: their refusal; `issued`: a token handed out).",
                "outcome",
            ),
            check_backs: LabeledCounter::new(
                "seckill_check_backs_total",
                "Broker check-backs answered, by answer.",
                "answer",
            ),
            closed: LabeledCounter::new(
                "seckill_orders_closed_total",
                "Orders cancelled or failed, by reason (paid_without_stock: PAID, no stock, refund needed).",
                "reason",
            ),
            dead_letters: LabeledCounter::new(
                "seckill_dead_letters_total",
                "Stuck messages recorded (since start), by where they were found.",
                "source",
            ),
            redelivered: LabeledCounter::new(
                "seckill_messages_redelivered_total",
                "Committed messages stock-service had not applied in time, sent again, by kind.",
                "kind",
            ),
            group_commit: LabeledCounter::new(
                "seckill_group_commit_total",
                "Transactional order messages sent alone (single) or as batches, orders committed in batches, orders a batch refused.",
                "sent",
            ),
            in_flight: Gauge::new(
                "seckill_transactions_in_flight",
                "Transactional sends (orders, cancellations) waiting for their outcome.",
            ),
            by_broker: DynamicCounter::new(
                "seckill_transactions_by_broker_total",
                "Half messages stored, by the broker (name) that stored them.",
                "broker",
            ),
        }
    }
}

impl OrderMetrics {
    pub fn render(&self, out: &mut Exposition) {
        self.orders.render(out);
        self.check_backs.render(out);
        self.closed.render(out);
        self.dead_letters.render(out);
        self.redelivered.render(out);
        self.group_commit.render(out);
        self.in_flight.render(out);
        self.by_broker.render(out);
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "instance": self.instance,
            "order_requests": self.orders.to_json(),
            "check_backs": self.check_backs.to_json(),
            "closed": self.closed.to_json(),
            "dead_letters_recorded": self.dead_letters.to_json(),
            "redelivered": self.redelivered.to_json(),
            "group_commit": self.group_commit.to_json(),
            "transactions_in_flight": self.in_flight.get(),
            "transactions_by_broker": self.by_broker.to_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instance_names_its_counters_with_its_own_id() {
        let (one, other) = (OrderMetrics::default(), OrderMetrics::default());
        one.orders.inc(OrderAnswer::Created);
        let json = one.to_json();
        assert_eq!(json["instance"], one.instance.as_str());
        assert_eq!(json["order_requests"]["created"], 1);
        assert_eq!(one.instance.len(), 32);
        assert_ne!(one.instance, other.instance);
    }
}
