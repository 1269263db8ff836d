//! What stock-service counts: every message applied, by result (duplicates
//! are the dedupe hits), and the insufficient-stock reports sent. Exposed on
//! `/metrics` (Prometheus, plus stock per product read from the DB) and as
//! JSON on `/api/stock/stats` for the dashboard.

use common::metrics::{Exposition, LabeledCounter};

use crate::store::{Applied, Restored, Stock};

pub struct StockMetrics {
    pub messages: LabeledCounter,
    pub reports: LabeledCounter,
}

impl Default for StockMetrics {
    fn default() -> Self {
        Self {
            messages: LabeledCounter::new(
                "seckill_stock_messages_total",
                "Order messages consumed, by what applying them did.",
                "result",
                &[
                    "deducted",
                    "insufficient",
                    "short_retry",
                    "duplicate_creation",
                    "restored",
                    "nothing_to_restore",
                    "duplicate_cancellation",
                    "failed",
                ],
            ),
            reports: LabeledCounter::new(
                "seckill_stock_insufficient_reports_total",
                "StockInsufficient reports sent to order-service, by outcome of the send.",
                "sent",
                &["ok", "failed"],
            ),
        }
    }
}

impl StockMetrics {
    pub fn applied(&self, applied: Applied) {
        self.messages.inc(match applied {
            Applied::Deducted => "deducted",
            Applied::Insufficient => "insufficient",
            Applied::ShortForNow => "short_retry",
            Applied::Duplicate { .. } => "duplicate_creation",
        });
    }

    pub fn restored(&self, restored: Restored) {
        self.messages.inc(match restored {
            Restored::Restored => "restored",
            Restored::NothingToRestore => "nothing_to_restore",
            Restored::Duplicate => "duplicate_cancellation",
        });
    }

    /// Deliveries that found their tx_no already applied.
    pub fn dedupe_hits(&self) -> u64 {
        self.messages.get("duplicate_creation") + self.messages.get("duplicate_cancellation")
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
