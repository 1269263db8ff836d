//! The verdict of one scenario: waits until the system is quiet (every
//! committed message applied, the stock ledger balanced, Redis agreeing with
//! the databases), then checks each invariant against the two databases and
//! the buyers' journal, as PASS/FAIL lines.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use reqwest::Method;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;

use crate::client::Client;
use crate::workload::{Journal, Plan};

/// One invariant's result.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub pass: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, pass: bool, detail: impl Into<String>) -> Self {
        Self {
            name,
            pass,
            detail: detail.into(),
        }
    }
}

/// When the fault was on: from its injection until the services were ready
/// again after healing (plus a grace period).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: Instant,
    pub to: Instant,
}

/// One order row.
#[derive(Debug, Clone)]
struct Order {
    order_no: String,
    tx_no: String,
    user: i64,
    count: i64,
    status: String,
    cancel_tx_no: Option<String>,
}

/// The two databases' view of one product.
#[derive(Debug, Default)]
struct Facts {
    db_stock: i64,
    orders: Vec<Order>,
    /// stock-service's tx_log: tx_no → (count, outcome).
    applied: HashMap<String, (i64, String)>,
}

impl Facts {
    async fn read(
        order_db: &DatabaseConnection,
        stock_db: &DatabaseConnection,
        product: i64,
    ) -> anyhow::Result<Self> {
        let db_stock = common::db::scalar(
            stock_db,
            "SELECT total_count FROM stock WHERE product_id = ?",
            [product.into()],
        )
        .await?;
        let orders = order_db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::MySql,
                "SELECT order_no, tx_no, user_id, CAST(pay_count AS SIGNED), status, cancel_tx_no \
                 FROM orders WHERE product_id = ?",
                [product.into()],
            ))
            .await?
            .into_iter()
            .map(|row| {
                Ok(Order {
                    order_no: row.try_get_by_index(0)?,
                    tx_no: row.try_get_by_index(1)?,
                    user: row.try_get_by_index(2)?,
                    count: row.try_get_by_index(3)?,
                    status: row.try_get_by_index(4)?,
                    cancel_tx_no: row.try_get_by_index(5)?,
                })
            })
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
        let applied = stock_db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::MySql,
                "SELECT tx_no, CAST(count AS SIGNED), outcome FROM tx_log WHERE product_id = ?",
                [product.into()],
            ))
            .await?
            .into_iter()
            .map(|row| {
                Ok((
                    row.try_get_by_index::<String>(0)?,
                    (row.try_get_by_index(1)?, row.try_get_by_index(2)?),
                ))
            })
            .collect::<Result<HashMap<_, _>, sea_orm::DbErr>>()?;
        Ok(Self {
            db_stock,
            orders,
            applied,
        })
    }

    /// The sale's stock invariant, as `common::ledger` states it.
    fn ledger(&self, opened: i64) -> common::ledger::StockLedger {
        common::ledger::StockLedger {
            opened,
            db_stock: self.db_stock,
            sold: self.held(),
        }
    }

    fn held(&self) -> i64 {
        self.orders
            .iter()
            .filter(|o| matches!(o.status.as_str(), "NEW" | "PAID"))
            .map(|o| o.count)
            .sum()
    }

    /// Messages order-service committed (creations and cancellations).
    fn committed(&self) -> usize {
        self.orders.len()
            + self
                .orders
                .iter()
                .filter(|o| o.cancel_tx_no.is_some())
                .count()
    }
}

/// The reconciliation report's entry for a product, and the unresolved
/// dead-letter count; `None` while reconciliation cannot run.
pub async fn reconcile(client: &Client, product: i64) -> Option<(Value, i64)> {
    let answer = client
        .admin(Method::GET, "/api/admin/reconcile", None)
        .await;
    if !answer.is(200) {
        return None;
    }
    let report = answer.body();
    let entry = report["products"]
        .as_array()?
        .iter()
        .find(|p| p["product_id"] == product)?
        .clone();
    Some((entry, report["dead_letter_count"].as_i64().unwrap_or(0)))
}

/// Connects to a database, retrying for a while (it may just have restarted).
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut last = None;
    for _ in 0..60 {
        match sea_orm::Database::connect(url).await {
            Ok(db) => return Ok(db),
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("connecting to {url}: {last:?}")
}

/// Everything a scenario's verdict needs.
pub struct Evidence<'a> {
    pub client: &'a Client,
    pub order_db: &'a DatabaseConnection,
    pub stock_db: &'a DatabaseConnection,
    pub plan: &'a Plan,
    pub journal: &'a Journal,
    pub window: Window,
    pub dead_letters_before: i64,
    /// When the fault was healed and the services ready again.
    pub healed_at: Instant,
    /// Order tokens issued before the fault are still good after it (not
    /// when Redis lost its data).
    pub tokens_survive: bool,
}

/// Waits for quiet (up to the plan's limit), then checks every invariant;
/// the checks and how long after healing the system was quiet.
pub async fn judge(evidence: &Evidence<'_>) -> anyhow::Result<(Vec<Check>, Duration)> {
    let plan = evidence.plan;
    let started = Instant::now();
    let mut last = String::new();
    let mut quiet = false;
    let mut report = None;
    while started.elapsed() < plan.quiet_limit {
        match Facts::read(evidence.order_db, evidence.stock_db, plan.product).await {
            Ok(facts) => {
                let reconciled = reconcile(evidence.client, plan.product).await;
                let agrees = reconciled.as_ref().is_some_and(|(p, _)| {
                    p["redis_stock"].as_i64() == Some(facts.db_stock)
                        && p["differences"].as_array().is_some_and(Vec::is_empty)
                        && p["quiet"] == true
                });
                quiet = facts.committed() == facts.applied.len()
                    && facts.ledger(plan.stock).accounted()
                    && agrees;
                last = format!(
                    "committed {} applied {}, stock {} = DB {} + held {}?, reconcile {}",
                    facts.committed(),
                    facts.applied.len(),
                    plan.stock,
                    facts.db_stock,
                    facts.held(),
                    reconciled
                        .as_ref()
                        .map_or("unavailable".into(), |(p, _)| p.to_string())
                );
                report = reconciled;
                if quiet {
                    break;
                }
            }
            Err(err) => last = format!("the databases are not readable: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let quiet_after = evidence.healed_at.elapsed();
    let facts = Facts::read(evidence.order_db, evidence.stock_db, plan.product).await?;
    let mut checks = vec![Check::new(
        "quiet, Redis == DB",
        quiet,
        if quiet {
            format!(
                "{:.1} s after healing ({:.1} s after the last buyer)",
                quiet_after.as_secs_f64(),
                started.elapsed().as_secs_f64()
            )
        } else {
            format!("not within {:?}: {last}", plan.quiet_limit)
        },
    )];
    checks.extend(invariants(&facts, evidence, report.as_ref()));
    Ok((checks, quiet_after))
}

fn invariants(facts: &Facts, evidence: &Evidence<'_>, report: Option<&(Value, i64)>) -> Vec<Check> {
    let (plan, journal) = (evidence.plan, evidence.journal);
    let held = facts.held();
    let ledger = facts.ledger(plan.stock);
    let by_no: HashMap<&str, &Order> = facts
        .orders
        .iter()
        .map(|o| (o.order_no.as_str(), o))
        .collect();
    let mut checks = vec![
        Check::new(
            "no oversell",
            ledger.oversold() == 0 && facts.db_stock >= 0,
            format!("{held} held of {}, DB stock {}", plan.stock, facts.db_stock),
        ),
        Check::new(
            "stock = DB + NEW/PAID",
            ledger.accounted(),
            format!("{} = {} + {held}", plan.stock, facts.db_stock),
        ),
    ];

    let lost: Vec<&str> = journal
        .placed
        .iter()
        .filter(|p| {
            by_no
                .get(p.order_no.as_str())
                .is_none_or(|o| o.status == "FAILED")
        })
        .map(|p| p.order_no.as_str())
        .collect();
    checks.push(Check::new(
        "every 201 held",
        lost.is_empty(),
        format!(
            "{} orders answered 201, {} missing or rolled back {:?}",
            journal.placed.len(),
            lost.len(),
            &lost[..lost.len().min(5)]
        ),
    ));

    // Each order's net effect on the stock, from stock-service's log.
    let effect = |tx: &str, wanted: &[&str]| {
        facts
            .applied
            .get(tx)
            .filter(|(_, outcome)| wanted.contains(&outcome.as_str()))
            .map_or(0, |(count, _)| *count)
    };
    let wrong: Vec<String> = facts
        .orders
        .iter()
        .filter_map(|o| {
            let deducted = effect(&o.tx_no, &["DEDUCTED"]);
            let restored = o
                .cancel_tx_no
                .as_deref()
                .map_or(0, |tx| effect(tx, &["RESTORED"]));
            let expected = if matches!(o.status.as_str(), "NEW" | "PAID") {
                o.count
            } else {
                0
            };
            (deducted - restored != expected).then(|| {
                format!(
                    "{} {} deducted {deducted} restored {restored}",
                    o.order_no, o.status
                )
            })
        })
        .collect();
    let known: std::collections::HashSet<&str> = facts
        .orders
        .iter()
        .flat_map(|o| std::iter::once(o.tx_no.as_str()).chain(o.cancel_tx_no.as_deref()))
        .collect();
    let orphans = facts
        .applied
        .keys()
        .filter(|tx| !known.contains(tx.as_str()))
        .count();
    checks.push(Check::new(
        "deducted exactly once",
        wrong.is_empty() && orphans == 0,
        format!(
            "{} orders, {} with a wrong net deduction {:?}, {orphans} deductions without an order",
            facts.orders.len(),
            wrong.len(),
            &wrong[..wrong.len().min(3)]
        ),
    ));

    let status_of = |no: &str| by_no.get(no).map_or("missing", |o| o.status.as_str());
    let unpaid: Vec<&str> = journal
        .paid
        .iter()
        .map(String::as_str)
        .filter(|no| status_of(no) != "PAID")
        .collect();
    let uncancelled: Vec<&str> = journal
        .cancelled
        .iter()
        .map(String::as_str)
        .filter(|no| status_of(no) != "CANCELLED")
        .collect();
    checks.push(Check::new(
        "acknowledged pay/cancel durable",
        unpaid.is_empty() && uncancelled.is_empty(),
        format!(
            "{} paid ({} not PAID), {} cancelled ({} not CANCELLED)",
            journal.paid.len(),
            unpaid.len(),
            journal.cancelled.len(),
            uncancelled.len()
        ),
    ));

    let mut per_user: BTreeMap<i64, i64> = BTreeMap::new();
    for o in facts
        .orders
        .iter()
        .filter(|o| matches!(o.status.as_str(), "NEW" | "PAID"))
    {
        *per_user.entry(o.user).or_default() += o.count;
    }
    let over = per_user.values().filter(|n| **n > 1).count();
    checks.push(Check::new(
        "per-user limit",
        over == 0,
        format!(
            "{} buyers hold items, {over} over the limit of 1",
            per_user.len()
        ),
    ));

    let split = journal
        .orders_by_key
        .values()
        .filter(|orders| orders.len() > 1)
        .count();
    checks.push(Check::new(
        "one order per Idempotency-Key",
        split == 0,
        format!(
            "{} keys answered with an order, {split} with more than one",
            journal.orders_by_key.len()
        ),
    ));

    let (clean, detail) = match report {
        Some((product, dead_letters)) => {
            let grew = *dead_letters > evidence.dead_letters_before;
            (
                product["differences"].as_array().is_some_and(Vec::is_empty)
                    && product["unapplied"].as_array().is_some_and(Vec::is_empty)
                    && !grew,
                format!(
                    "differences {}, unapplied {}, unresolved dead letters {} → {dead_letters}",
                    product["differences"], product["unapplied"], evidence.dead_letters_before
                ),
            )
        }
        None => (false, "reconciliation did not answer".into()),
    };
    checks.push(Check::new("reconciliation clean", clean, detail));

    // Every buyer orders with a token it was just given (a retry carries the
    // same one): a refusal of it is a retry the service told to come back
    // and then turned away.
    let refused_tokens: i64 = journal
        .answers
        .iter()
        .filter(|(label, _)| label.ends_with("ORDER_TOKEN_INVALID"))
        .map(|(_, n)| n)
        .sum();
    checks.push(if evidence.tokens_survive {
        Check::new(
            "retries keep their order token",
            refused_tokens == 0,
            format!("{refused_tokens} orders refused ORDER_TOKEN_INVALID"),
        )
    } else {
        Check::new(
            "retries keep their order token",
            true,
            format!(
                "{refused_tokens} orders refused ORDER_TOKEN_INVALID: tokens issued before Redis \
                 lost its data are gone with it (a documented limit; the client asks for a new one)"
            ),
        )
    });

    let undocumented: Vec<&str> = journal
        .fives
        .iter()
        .map(|(_, label)| label.as_str())
        .filter(|label| !documented_503(label))
        .collect();
    checks.push(Check::new(
        "no undocumented 5xx",
        undocumented.is_empty(),
        format!(
            "{} 5xx in all, undocumented: {undocumented:?}",
            journal.fives.len()
        ),
    ));
    let window = evidence.window;
    let outside = journal
        .fives
        .iter()
        .filter(|(at, _)| *at < window.from || *at > window.to)
        .count();
    checks.push(Check::new(
        "no 5xx outside the fault window",
        outside == 0,
        format!("{outside} outside"),
    ));
    checks
}

/// `"order 503 NOT_READY"`: a 503 that names its code.
fn documented_503(label: &str) -> bool {
    let mut words = label.split_whitespace().skip_while(|w| !w.starts_with('5'));
    words.next() == Some("503") && words.next().is_some()
}
