//! The consistency auditor: per product and overall, is every committed
//! business fact in every place it must be, exactly once?
//!
//! A fact is an order's creation or its cancellation: a transaction of its
//! own, with a tx_no, COMMITTED in the order DB's `tx_log`. Each must be
//! - a message with that tx_no in the order topic — read from the broker
//!   itself with the admin and pull APIs ([`broker`]), never taken from a
//!   service. order-service resends a committed message stock-service has
//!   not applied (`redelivery`), so two copies are counted, not a difference;
//! - one row of stock-service's `tx_log` — read through stock-service's
//!   admin API (`GET /api/stock/tx-log`; each service stays the only door to
//!   its database), where a second row for the same order or a row for a
//!   tx_no nobody committed is a difference.
//!
//! Besides: half messages of the order topic the broker still holds
//! undecided (with their age and check-backs), each watched consumer group's
//! lag (`dead_letters.watched_groups`), and the reconciliation — Redis's
//! reservations against the NEW/PAID orders, Redis's stock against the DB's,
//! and the unresolved dead letters — included whole, not redone.
//!
//! A fact younger than `redelivery.after_secs` is in flight, not judged.
//! Bounds: `since` narrows the window (orders, rows and broker offsets by
//! time); `audit.max_messages` caps what is read from the broker and from
//! each database (past it the audit says it is incomplete, never clean);
//! `audit.timeout_secs` caps the whole audit; one audit runs at a time per
//! instance. [`compare`] judges what was read; [`report`] shows it.
//!
//! [`Auditor::broker_glance`] is the light read for the dashboard's broker
//! panel (`GET /api/admin/broker`): offsets, lags and undecided half messages
//! without the topic's messages, shared by the callers of one second.

pub mod broker;
mod compare;
pub mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::domain::{InvalidValue, ProductId};
use rocketmq_client_rust::ClientRuntime;
use sea_orm::{DatabaseConnection, DbErr};

use self::broker::{BrokerGlance, BrokerReadError, BrokerScope};
use self::compare::Observed;
use self::report::{AuditReport, BrokerFigures, Difference, ProductAudit};
use crate::admission::rebuild::RebuildError;
use crate::sales::{SaleError, Sales};
use crate::settings::{AuditSettings, Settings};
use crate::stock_client::{StockClient, StockClientError};
use crate::store::audit as facts;

/// What one audit covers: one product or all, from `since` or from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditScope {
    pub product: Option<ProductId>,
    pub since: Option<DateTime<Utc>>,
}

impl AuditScope {
    /// `product_id` and `since` as the endpoint's query or the command's
    /// flags give them (`since`: an RFC 3339 time, or a span back from `now`
    /// such as `90s`, `15m`, `2h`, `7d`).
    pub fn parse(
        product: Option<&str>,
        since: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, InvalidValue> {
        Ok(Self {
            product: product.map(ProductId::parse_text).transpose()?,
            since: since.map(|raw| parse_since(raw, now)).transpose()?,
        })
    }
}

fn parse_since(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, InvalidValue> {
    let invalid = |reason: String| InvalidValue {
        field: "since",
        reason,
    };
    let at = match DateTime::parse_from_rfc3339(raw) {
        Ok(at) => at.to_utc(),
        Err(_) => {
            let unit = raw.chars().last().unwrap_or(' ');
            let number = raw[..raw.len() - unit.len_utf8().min(raw.len())]
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0);
            let seconds = match (number, unit) {
                (Some(n), 's') => i64::from(n),
                (Some(n), 'm') => i64::from(n) * 60,
                (Some(n), 'h') => i64::from(n) * 3600,
                (Some(n), 'd') => i64::from(n) * 86_400,
                _ => {
                    return Err(invalid(format!(
                        "must be an RFC 3339 time or a span back from now such as 90s, 15m, 2h, 7d; got {raw:?}"
                    )));
                }
            };
            now - chrono::Duration::seconds(seconds)
        }
    };
    if at > now {
        return Err(invalid(format!("{raw:?} is in the future")));
    }
    Ok(at)
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("an audit is already running in this instance")]
    Busy,
    #[error(
        "the audit took longer than {0}s (audit.timeout_secs): narrow it with since or product"
    )]
    TimedOut(u64),
    #[error(transparent)]
    Broker(#[from] BrokerReadError),
    #[error(transparent)]
    Stock(#[from] StockClientError),
    #[error("order database: {0}")]
    Database(#[from] DbErr),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("reconciliation: {0}")]
    Reconcile(String),
}

impl From<SaleError> for AuditError {
    fn from(err: SaleError) -> Self {
        match err {
            SaleError::Rebuild(RebuildError::Redis(e)) | SaleError::Redis(e) => Self::Redis(e),
            SaleError::Rebuild(RebuildError::Database(e)) | SaleError::Database(e) => {
                Self::Database(e)
            }
            SaleError::Rebuild(RebuildError::Stock(e)) | SaleError::Stock(e) => Self::Stock(e),
            SaleError::Rebuild(other) => Self::Reconcile(other.to_string()),
        }
    }
}

pub struct Auditor {
    db: DatabaseConnection,
    stock: Arc<StockClient>,
    sales: Arc<Sales>,
    mq: Arc<ClientRuntime>,
    broker: BrokerScope,
    settings: AuditSettings,
    settle: Duration,
    /// One audit at a time: its pull group is one per instance, and two
    /// audits at once would only double the load for the same answer.
    running: tokio::sync::Mutex<()>,
    /// The glances' scope: a pull group of their own (an audit may run at
    /// the same time) and a small budget of half messages.
    glance_scope: BrokerScope,
    /// The last glance: callers within [`GLANCE_FRESH`] of it (several
    /// dashboards open) share it, and one glance reads at a time.
    last_glance: tokio::sync::Mutex<Option<(Instant, Arc<BrokerGlance>)>>,
}

/// A glance younger than this is answered again rather than read anew.
const GLANCE_FRESH: Duration = Duration::from_secs(1);
/// Most half and op messages one glance reads.
const GLANCE_BUDGET: u64 = 2_000;
/// How long one glance may take.
const GLANCE_TIMEOUT: Duration = Duration::from_secs(10);

impl Auditor {
    pub fn new(
        settings: &Settings,
        db: DatabaseConnection,
        stock: Arc<StockClient>,
        sales: Arc<Sales>,
        mq: Arc<ClientRuntime>,
    ) -> Self {
        let broker = BrokerScope {
            namesrv_addr: settings.mq.namesrv_addr.clone(),
            order_topic: settings.mq.order_topic.clone(),
            group: settings.audit.group.clone(),
            lag_groups: settings.dead_letters.watched_groups.clone(),
            since: None,
            max_messages: settings.audit.max_messages,
        };
        Self {
            db,
            stock,
            sales,
            mq,
            glance_scope: BrokerScope {
                group: format!("{}_glance", broker.group),
                max_messages: broker.max_messages.min(GLANCE_BUDGET),
                ..broker.clone()
            },
            broker,
            settings: settings.audit.clone(),
            settle: settings.redelivery.after(),
            running: tokio::sync::Mutex::new(()),
            last_glance: tokio::sync::Mutex::new(None),
        }
    }

    /// The broker's figures for the dashboard ([`broker::glance`]): read at
    /// most once per [`GLANCE_FRESH`], whoever asks.
    #[tracing::instrument(skip(self))]
    pub async fn broker_glance(&self) -> Result<Arc<BrokerGlance>, BrokerReadError> {
        let mut last = self.last_glance.lock().await;
        if let Some((at, glance)) = last.as_ref()
            && at.elapsed() < GLANCE_FRESH
        {
            return Ok(Arc::clone(glance));
        }
        let glance = tokio::time::timeout(
            GLANCE_TIMEOUT,
            broker::glance(Arc::clone(&self.mq), &self.glance_scope),
        )
        .await
        .map_err(|_| BrokerReadError::TimedOut(GLANCE_TIMEOUT))??;
        let glance = Arc::new(glance);
        *last = Some((Instant::now(), Arc::clone(&glance)));
        Ok(glance)
    }

    /// Audits `scope`; [`AuditError::Busy`] while another audit runs here.
    #[tracing::instrument(skip(self))]
    pub async fn audit(&self, scope: AuditScope) -> Result<AuditReport, AuditError> {
        let _only_one = self.running.try_lock().map_err(|_| AuditError::Busy)?;
        let limit = self.settings.timeout_secs;
        tokio::time::timeout(Duration::from_secs(limit), self.run(scope))
            .await
            .map_err(|_| AuditError::TimedOut(limit))?
    }

    async fn run(&self, scope: AuditScope) -> Result<AuditReport, AuditError> {
        let now = Utc::now();
        let max = self.settings.max_messages;
        let product = scope.product.map(ProductId::get);
        let mut reconcile = self.sales.reconcile().await?;
        reconcile
            .products
            .retain(|p| product.is_none_or(|only| p.product_id == only));
        let mut incomplete = Vec::new();
        let (facts, facts_truncated) = facts::facts(&self.db, scope.since, product, max).await?;
        if facts_truncated {
            incomplete.push(format!(
                "more than {max} orders in the window: only the oldest were compared"
            ));
        }
        let (committed, committed_truncated) = match product {
            None => facts::committed_since(&self.db, scope.since, max).await?,
            Some(_) => (Vec::new(), false),
        };
        if committed_truncated {
            incomplete.push(format!(
                "more than {max} committed transactions in the window: only the oldest were matched to orders"
            ));
        }
        let (applied, stock_truncated) = self
            .stock
            .applied_rows(scope.since, scope.product, max)
            .await?;
        if stock_truncated {
            incomplete.push(format!(
                "stock-service applied more than {max} messages in the window: their presence was not checked"
            ));
        }
        let view = broker::read(
            Arc::clone(&self.mq),
            &BrokerScope {
                since: scope.since,
                ..self.broker.clone()
            },
        )
        .await?;
        if view.topic.truncated || view.halves.truncated {
            incomplete.push(format!(
                "the broker holds more than {max} messages in the window (audit.max_messages): \
                 missing messages and undecided half messages were not all checked"
            ));
        }
        let strays = compare::strays(
            &facts,
            &committed,
            &view.topic.messages,
            &applied,
            &view.halves.undecided,
        );
        let known = facts::look_up(&self.db, &strays).await?;
        let stray_orders: Vec<String> = applied
            .iter()
            .filter(|r| strays.binary_search(&r.tx_no).is_ok())
            .map(|r| r.order_no.clone())
            .collect();
        let orders = facts::transactions_of_orders(&self.db, &stray_orders).await?;
        let settle = chrono::Duration::from_std(self.settle).unwrap_or_default();
        let (mut products, mut overall) = compare::compare(&Observed {
            facts: &facts,
            committed: &committed,
            messages: &view.topic.messages,
            applied: &applied,
            undecided: &view.halves.undecided,
            lags: &view.lags,
            known: &known,
            orders: &orders,
            product,
            now,
            settle,
            topic_complete: !view.topic.truncated,
            topic_retained_since: view.topic.retained_since,
            stock_complete: !stock_truncated,
        });
        add_reconciliation(&mut products, &reconcile);
        if reconcile.dead_letter_count > 0 {
            overall.push(
                Difference::DeadLetters {
                    unresolved: reconcile.dead_letter_count,
                }
                .into(),
            );
        }
        let undecided_in_flight = view
            .halves
            .undecided
            .iter()
            .filter(|h| h.born_at > now - settle)
            .filter(|h| product.is_none() || h.product_id == product)
            .cloned()
            .collect();
        Ok(AuditReport {
            generated_at: now,
            product_id: product,
            since: scope.since,
            settle_secs: self.settle.as_secs(),
            clean: false,
            complete: false,
            incomplete_because: incomplete,
            differences: 0,
            products: products.into_values().collect(),
            overall,
            broker: BrokerFigures {
                order_topic: self.broker.order_topic.clone(),
                queues: view.topic.queues,
                messages_read: view.topic.messages.len() as u64,
                half_messages_read: view.halves.read,
                undecided_in_flight,
                lags: view.lags,
                lag_errors: view.lag_errors,
            },
            reconcile,
        }
        .settle_verdict())
    }
}

/// Files reconciliation's differences (Redis against both databases) under
/// their products; a product on sale with nothing committed is listed too.
fn add_reconciliation(
    products: &mut BTreeMap<i64, ProductAudit>,
    reconcile: &crate::admission::reconcile::Report,
) {
    for p in &reconcile.products {
        let entry = compare::entry(products, p.product_id);
        for finding in &p.differences {
            entry.findings.push(
                Difference::Reconcile {
                    finding: finding.clone(),
                }
                .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn since_is_a_time_or_a_span_back_from_now() {
        let parse = |raw| parse_since(raw, now());
        assert_eq!(parse("15m").unwrap(), now() - chrono::Duration::minutes(15));
        assert_eq!(parse("2h").unwrap(), now() - chrono::Duration::hours(2));
        assert_eq!(parse("7d").unwrap(), now() - chrono::Duration::days(7));
        assert_eq!(
            parse("2023-11-14T22:00:00Z").unwrap(),
            DateTime::from_timestamp(1_699_999_200, 0).unwrap()
        );
        for bad in [
            "",
            "m",
            "0s",
            "-5m",
            "5y",
            "yesterday",
            "2099-01-01T00:00:00Z",
        ] {
            assert_eq!(parse(bad).unwrap_err().field, "since", "{bad:?}");
        }
    }

    #[test]
    fn a_product_must_be_a_positive_id() {
        let err = AuditScope::parse(Some("x"), None, now()).unwrap_err();
        assert_eq!(err.field, "product_id");
        assert_eq!(
            AuditScope::parse(Some("3"), None, now()).unwrap().product,
            Some(ProductId::parse(3).unwrap())
        );
    }
}
