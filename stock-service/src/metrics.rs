//! What stock-service counts: every message applied, by result (duplicates
//! are the dedupe hits), and the insufficient-stock reports sent. Exposed on
//! `/metrics` (Prometheus, plus stock per product read from the DB) and as
//! JSON on `/api/stock/stats` for the dashboard.

use common::metric_label;
use common::metrics::{Exposition, LabeledCounter};

use crate::store::{Applied, Restored, Stock};

metric_label!(
    /// What applying one message did.
    pub enum MessageResult {
        Deducted = "deducted",
        Insufficient = "insufficient",
        ShortRetry = "short_retry",
        DuplicateCreation = "duplicate_creation",
        Restored = "restored",
        NothingToRestore = "nothing_to_restore",
        DuplicateCancellation = "duplicate_cancellation",
        Failed = "failed",
    }
);

metric_label!(
    /// Whether telling order-service of insufficient stock worked.
    pub enum Report {
        Ok = "ok",
        Failed = "failed",
    }
);

pub struct StockMetrics {
    pub messages: LabeledCounter<MessageResult>,
    pub reports: LabeledCounter<Report>,
}

impl Default for StockMetrics {
    fn default() -> Self {
        Self {
            messages: LabeledCounter::new(
                "seckill_stock_messages_total",
                "Order messages consumed (each order of a batch counts as one), by what applying them did.",
                "result",
            ),
            reports: LabeledCounter::new(
                "seckill_stock_insufficient_reports_total",
                "StockInsufficient reports sent to order-service, by outcome of the send.",
                "sent",
            ),
        }
    }
}

impl StockMetrics {
    pub fn applied(&self, applied: Applied) {
        self.messages.inc(match applied {
            Applied::Deducted => MessageResult::Deducted,
            Applied::Insufficient => MessageResult::Insufficient,
            Applied::ShortForNow => MessageResult::ShortRetry,
            Applied::Duplicate { .. } => MessageResult::DuplicateCreation,
        });
    }

    pub fn restored(&self, restored: Restored) {
        self.messages.inc(match restored {
            Restored::Restored => MessageResult::Restored,
            Restored::NothingToRestore => MessageResult::NothingToRestore,
            Restored::Duplicate => MessageResult::DuplicateCancellation,
        });
    }

    /// Deliveries that found their tx_no already applied.
    pub fn dedupe_hits(&self) -> u64 {
        self.messages.get(MessageResult::DuplicateCreation)
            + self.messages.get(MessageResult::DuplicateCancellation)
    }

    pub fn render(&self, stock: &[Stock]) -> Exposition {
        let mut out = Exposition::default();
        self.messages.render(&mut out);
        self.reports.render(&mut out);
        out.gauge(
            "seckill_stock_dedupe_hits",
            "Deliveries that found their tx_no already applied (since start).",
            [(vec![], self.dedupe_hits() as f64)],
        );
        let per_product = |value: fn(&Stock) -> i64| {
            stock
                .iter()
                .map(move |s| (vec![("product", s.product_id.to_string())], value(s) as f64))
        };
        out.gauge(
            "seckill_stock_total_count",
            "Stock per product in the stock DB.",
            per_product(|s| s.total_count),
        );
        out.gauge(
            "seckill_stock_applied_messages",
            "Order messages applied per product (creations and cancellations).",
            per_product(|s| s.applied_orders),
        );
        out
    }

    pub fn to_json(&self, stock: &[Stock]) -> serde_json::Value {
        serde_json::json!({
            "messages": self.messages.to_json(),
            "dedupe_hits": self.dedupe_hits(),
            "insufficient_reports": self.reports.to_json(),
            "products": stock,
        })
    }
}
