//! What order-service counts as it happens: order requests by outcome,
//! check-backs by answer, transactional sends in flight, orders closed by
//! reason, dead letters recorded. `/metrics` adds per-product gauges read at
//! scrape time (see [`crate::dashboard`]).

use common::metrics::{Exposition, Gauge, LabeledCounter};

pub struct OrderMetrics {
    pub orders: LabeledCounter,
    pub check_backs: LabeledCounter,
    pub closed: LabeledCounter,
    pub dead_letters: LabeledCounter,
    pub redelivered: LabeledCounter,
    pub in_flight: Gauge,
}

impl Default for OrderMetrics {
    fn default() -> Self {
        Self {
            orders: LabeledCounter::new(
                "seckill_order_requests_total",
                "POST /api/orders answers, by outcome.",
                "outcome",
                &[
                    "created",
                    "pending",
                    "replayed",
                    "sold_out",
                    "limit_exceeded",
                    "not_on_sale",
                    "not_ready",
                    "rejected",
                    "rate_limited",
                    "invalid",
                    "unavailable",
                ],
            ),
            check_backs: LabeledCounter::new(
                "seckill_check_backs_total",
                "Broker check-backs answered, by answer.",
                "answer",
                &["commit", "rollback", "unknown"],
            ),
            closed: LabeledCounter::new(
                "seckill_orders_closed_total",
                "Orders cancelled or failed, by reason (paid_without_stock: PAID, no stock, refund needed).",
                "reason",
                &[
                    "buyer",
                    "timeout",
                    "stock_insufficient",
                    "paid_without_stock",
                ],
            ),
            dead_letters: LabeledCounter::new(
                "seckill_dead_letters_total",
                "Stuck messages recorded (since start), by where they were found.",
                "source",
                &["dlq", "discarded_transaction"],
            ),
            redelivered: LabeledCounter::new(
                "seckill_messages_redelivered_total",
                "Committed messages stock-service had not applied in time, sent again, by kind.",
                "kind",
                &["creation", "cancellation"],
            ),
            in_flight: Gauge::new(
                "seckill_transactions_in_flight",
                "Transactional sends (orders, cancellations) waiting for their outcome.",
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
        self.in_flight.render(out);
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "order_requests": self.orders.to_json(),
            "check_backs": self.check_backs.to_json(),
            "closed": self.closed.to_json(),
            "dead_letters_recorded": self.dead_letters.to_json(),
            "redelivered": self.redelivered.to_json(),
            "transactions_in_flight": self.in_flight.get(),
        })
    }
}
