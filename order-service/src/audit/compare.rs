//! The comparison itself, over what was read (no I/O, so each rule has a
//! unit test): every committed fact of the order DB must be in the order
//! topic (at least once: a resend is legitimate) and applied once by
//! stock-service; whatever the topic or stock-service hold must be a
//! committed fact; a half message must not stay undecided; a consumer
//! group must not keep messages waiting.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use common::stock_log::{AppliedRow, MessageKind};

use super::broker::{GroupLag, TopicMessage, UndecidedHalf, copies_by_tx};
use super::report::{Difference, Finding, OrderDbSays, ProductAudit};
use crate::store::TxOutcome;
use crate::store::audit::{Committed, Fact, Known};

/// Consumers commit their offsets every few seconds: a message consumed a
/// moment ago still counts as waiting until then.
pub const OFFSET_COMMIT_SLACK: chrono::Duration = chrono::Duration::seconds(10);

/// Everything one audit read, and how to judge it.
pub struct Observed<'a> {
    /// The order DB's creations and cancellations in the window.
    pub facts: &'a [Fact],
    /// The order DB's COMMITTED `tx_log` rows in the window (empty for a
    /// one-product audit: `tx_log` has no product).
    pub committed: &'a [Committed],
    pub messages: &'a [TopicMessage],
    pub applied: &'a [AppliedRow],
    pub undecided: &'a [UndecidedHalf],
    pub lags: &'a [GroupLag],
    /// The order DB on each tx_no of [`strays`].
    pub known: &'a HashMap<String, Known>,
    /// Creation and cancellation tx_nos of the orders named by stray applied rows.
    pub orders: &'a HashMap<String, (String, Option<String>)>,
    /// Only this product (messages and halves are filtered here).
    pub product: Option<i64>,
    pub now: DateTime<Utc>,
    /// Younger facts are in flight.
    pub settle: chrono::Duration,
    /// The topic was read in full: a fact without a message is missing.
    pub topic_complete: bool,
    /// Facts committed before this are past the broker's retention.
    pub topic_retained_since: Option<DateTime<Utc>>,
    /// stock-service's rows were read in full.
    pub stock_complete: bool,
}

/// The tx_nos the topic, stock-service, the half queue or `tx_log` hold
/// that are not among the window's facts: the order DB is asked about each.
pub fn strays(
    facts: &[Fact],
    committed: &[Committed],
    messages: &[TopicMessage],
    applied: &[AppliedRow],
    undecided: &[UndecidedHalf],
) -> Vec<String> {
    let known: HashSet<&str> = facts.iter().map(|f| f.tx_no.as_str()).collect();
    let mut strays: Vec<String> = committed
        .iter()
        .map(|(tx, _)| tx.as_str())
        .chain(
            messages
                .iter()
                .filter(|m| m.kind.is_some())
                .filter_map(|m| m.tx_no.as_deref()),
        )
        .chain(applied.iter().map(|r| r.tx_no.as_str()))
        .chain(undecided.iter().filter_map(|h| h.tx_no.as_deref()))
        .filter(|tx| !known.contains(tx))
        .map(str::to_owned)
        .collect();
    strays.sort();
    strays.dedup();
    strays
}

/// What the order DB says of a stray tx_no.
fn says(known: &HashMap<String, Known>, tx_no: &str) -> OrderDbSays {
    match known.get(tx_no) {
        Some(Known {
            outcome: Some(TxOutcome::Committed),
            order: Some(_),
        }) => OrderDbSays::Committed,
        Some(Known {
            outcome: Some(TxOutcome::Committed),
            order: None,
        }) => OrderDbSays::CommittedWithoutOrder,
        Some(Known {
            outcome: Some(TxOutcome::RolledBack),
            ..
        }) => OrderDbSays::RolledBack,
        _ => OrderDbSays::Unknown,
    }
}

/// The differences per product (with each product's figures) and overall.
pub fn compare(o: &Observed) -> (BTreeMap<i64, ProductAudit>, Vec<Finding>) {
    let mut products: BTreeMap<i64, ProductAudit> = BTreeMap::new();
    let mut overall = Vec::new();
    let in_scope = |p: Option<i64>| o.product.is_none() || p == o.product;
    let settled_before = o.now - o.settle;
    let facts: HashMap<&str, &Fact> = o.facts.iter().map(|f| (f.tx_no.as_str(), f)).collect();
    let copies = copies_by_tx(o.messages);
    let applied: HashMap<&str, &AppliedRow> =
        o.applied.iter().map(|r| (r.tx_no.as_str(), r)).collect();

    for fact in o.facts {
        let figures = entry(&mut products, fact.product_id);
        match fact.kind {
            MessageKind::Creation => figures.committed_creations += 1,
            MessageKind::Cancellation => figures.committed_cancellations += 1,
        }
        if fact.committed_at > settled_before {
            figures.in_flight += 1;
            continue;
        }
        if fact.outcome != Some(TxOutcome::Committed) {
            let order_db = match fact.outcome {
                Some(TxOutcome::RolledBack) => OrderDbSays::RolledBack,
                _ => OrderDbSays::Unknown,
            };
            add(
                &mut products,
                &mut overall,
                Some(fact.product_id),
                Difference::OrderWithoutCommit {
                    message: fact.kind,
                    tx_no: fact.tx_no.clone(),
                    order_no: fact.order_no.clone(),
                    order_db,
                },
            );
            continue;
        }
        let within_retention = o
            .topic_retained_since
            .is_none_or(|oldest| fact.committed_at >= oldest);
        if o.topic_complete && within_retention {
            match copies.get(fact.tx_no.as_str()).copied().unwrap_or(0) {
                0 => add(
                    &mut products,
                    &mut overall,
                    Some(fact.product_id),
                    Difference::MissingMessage {
                        message: fact.kind,
                        tx_no: fact.tx_no.clone(),
                        order_no: fact.order_no.clone(),
                        committed_at: fact.committed_at,
                    },
                ),
                n => {
                    let figures = entry(&mut products, fact.product_id);
                    figures.in_broker += 1;
                    figures.sent_more_than_once += u64::from(n > 1);
                }
            }
        }
        if !o.stock_complete {
            continue;
        }
        match applied.get(fact.tx_no.as_str()) {
            None => add(
                &mut products,
                &mut overall,
                Some(fact.product_id),
                Difference::NotApplied {
                    message: fact.kind,
                    tx_no: fact.tx_no.clone(),
                    order_no: fact.order_no.clone(),
                    committed_at: fact.committed_at,
                },
            ),
            Some(row) => {
                entry(&mut products, fact.product_id).applied += 1;
                let expected = (fact.kind, fact.product_id, fact.count);
                let found = (row.outcome.kind(), row.product_id, row.count);
                if expected != found {
                    let show = |(kind, product, count): (MessageKind, i64, i64)| {
                        format!("a {} of {count} of product {product}", kind.as_str())
                    };
                    add(
                        &mut products,
                        &mut overall,
                        Some(fact.product_id),
                        Difference::AppliedDifferently {
                            message: fact.kind,
                            tx_no: fact.tx_no.clone(),
                            order_no: fact.order_no.clone(),
                            expected: show(expected),
                            found: format!("{} ({})", show(found), row.outcome.as_db()),
                        },
                    );
                }
            }
        }
    }

    // Messages of the topic that no committed fact explains.
    let mut reported: HashSet<&str> = HashSet::new();
    for message in o.messages.iter().filter(|m| in_scope(m.product_id)) {
        let (Some(kind), Some(tx_no)) = (message.kind, message.tx_no.as_deref()) else {
            continue;
        };
        if facts.contains_key(tx_no) || !reported.insert(tx_no) {
            continue;
        }
        let order_db = says(o.known, tx_no);
        if order_db != OrderDbSays::Committed {
            add(
                &mut products,
                &mut overall,
                message.product_id,
                Difference::UnknownMessage {
                    message: kind,
                    tx_no: tx_no.to_owned(),
                    copies: copies.get(tx_no).copied().unwrap_or(1),
                    order_db,
                },
            );
        }
    }

    // Rows of stock-service that no committed fact explains: a second
    // application of a known order, or an orphan.
    for row in o.applied {
        if facts.contains_key(row.tx_no.as_str()) {
            continue;
        }
        let order_db = says(o.known, &row.tx_no);
        if order_db == OrderDbSays::Committed {
            continue;
        }
        let kind = row.outcome.kind();
        let expected = o
            .orders
            .get(&row.order_no)
            .and_then(|(creation, cancel)| match kind {
                MessageKind::Creation => Some(creation.clone()),
                MessageKind::Cancellation => cancel.clone(),
            });
        let difference = match expected {
            Some(tx_no) if tx_no != row.tx_no => Difference::DuplicateApplication {
                message: kind,
                order_no: row.order_no.clone(),
                tx_no,
                extra_tx_no: row.tx_no.clone(),
                outcome: row.outcome,
                count: row.count,
            },
            _ => Difference::OrphanApplication {
                tx_no: row.tx_no.clone(),
                order_no: row.order_no.clone(),
                outcome: row.outcome,
                count: row.count,
                order_db,
            },
        };
        add(
            &mut products,
            &mut overall,
            Some(row.product_id),
            difference,
        );
    }

    // COMMITTED rows of tx_log that belong to no order.
    for (tx_no, committed_at) in o.committed {
        if !facts.contains_key(tx_no.as_str())
            && says(o.known, tx_no) == OrderDbSays::CommittedWithoutOrder
        {
            overall.push(
                Difference::CommitWithoutOrder {
                    tx_no: tx_no.clone(),
                    committed_at: *committed_at,
                }
                .into(),
            );
        }
    }

    for half in o.undecided.iter().filter(|h| in_scope(h.product_id)) {
        if half.born_at > settled_before {
            if let Some(id) = half.product_id {
                entry(&mut products, id).undecided_in_flight += 1;
            }
            continue;
        }
        let order_db = match half.tx_no.as_deref() {
            Some(tx) if facts.contains_key(tx) => OrderDbSays::Committed,
            Some(tx) => says(o.known, tx),
            None => OrderDbSays::Unknown,
        };
        add(
            &mut products,
            &mut overall,
            half.product_id,
            Difference::UndecidedHalfMessage {
                tx_no: half.tx_no.clone(),
                message: half.kind,
                age_secs: (o.now - half.born_at).num_seconds(),
                checks: half.checks,
                copies: half.copies,
                order_db,
            },
        );
    }

    let lag_limit = settled_before - OFFSET_COMMIT_SLACK;
    for lag in o.lags {
        if let Some(oldest) = lag.oldest_waiting_since.filter(|t| *t < lag_limit) {
            overall.push(
                Difference::ConsumerLag {
                    group: lag.group.clone(),
                    topic: lag.topic.clone(),
                    waiting: lag.waiting,
                    oldest_age_secs: (o.now - oldest).num_seconds(),
                }
                .into(),
            );
        }
    }
    if let Some(only) = o.product {
        products.retain(|id, _| *id == only);
    }
    (products, overall)
}

/// Files `difference` under product `at`, or overall.
fn add(
    products: &mut BTreeMap<i64, ProductAudit>,
    overall: &mut Vec<Finding>,
    at: Option<i64>,
    difference: Difference,
) {
    match at {
        Some(id) => entry(products, id).findings.push(difference.into()),
        None => overall.push(difference.into()),
    }
}

/// The figures of product `id`, created empty when first named.
pub(super) fn entry(products: &mut BTreeMap<i64, ProductAudit>, id: i64) -> &mut ProductAudit {
    products.entry(id).or_insert_with(|| ProductAudit {
        product_id: id,
        ..ProductAudit::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::stock_log::Outcome;

    fn at(secs_ago: i64) -> DateTime<Utc> {
        now() - chrono::Duration::seconds(secs_ago)
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn creation(tx: &str, order: &str, secs_ago: i64) -> Fact {
        Fact {
            tx_no: tx.into(),
            kind: MessageKind::Creation,
            order_no: order.into(),
            product_id: 1,
            count: 1,
            outcome: Some(TxOutcome::Committed),
            committed_at: at(secs_ago),
        }
    }

    fn message(tx: &str) -> TopicMessage {
        TopicMessage {
            kind: Some(MessageKind::Creation),
            tx_no: Some(tx.into()),
            product_id: Some(1),
            stored_at: at(50),
        }
    }

    fn row(tx: &str, order: &str, outcome: Outcome) -> AppliedRow {
        AppliedRow {
            tx_no: tx.into(),
            order_no: order.into(),
            product_id: 1,
            count: 1,
            outcome,
            applied_at: at(40),
        }
    }

    struct Case {
        facts: Vec<Fact>,
        messages: Vec<TopicMessage>,
        applied: Vec<AppliedRow>,
        undecided: Vec<UndecidedHalf>,
        known: HashMap<String, Known>,
        orders: HashMap<String, (String, Option<String>)>,
    }

    impl Case {
        fn clean() -> Self {
            Self {
                facts: vec![creation("tx1", "o1", 60)],
                messages: vec![message("tx1")],
                applied: vec![row("tx1", "o1", Outcome::Deducted)],
                undecided: vec![],
                known: HashMap::new(),
                orders: HashMap::new(),
            }
        }

        fn run(&self) -> (BTreeMap<i64, ProductAudit>, Vec<Finding>) {
            compare(&Observed {
                facts: &self.facts,
                committed: &[],
                messages: &self.messages,
                applied: &self.applied,
                undecided: &self.undecided,
                lags: &[],
                known: &self.known,
                orders: &self.orders,
                product: None,
                now: now(),
                settle: chrono::Duration::seconds(30),
                topic_complete: true,
                topic_retained_since: None,
                stock_complete: true,
            })
        }

        fn kinds(&self) -> Vec<String> {
            let (products, overall) = self.run();
            products
                .values()
                .flat_map(|p| p.findings.iter())
                .chain(overall.iter())
                .map(|f| {
                    serde_json::to_value(f).unwrap()["kind"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        }
    }

    #[test]
    fn a_fact_in_every_place_once_is_clean_and_counted() {
        let (products, overall) = Case::clean().run();
        assert!(overall.is_empty());
        let p = &products[&1];
        assert!(p.findings.is_empty(), "{:?}", p.findings);
        assert_eq!((p.committed_creations, p.in_broker, p.applied), (1, 1, 1));
    }

    #[test]
    fn a_resent_message_is_counted_not_a_difference() {
        let mut case = Case::clean();
        case.messages.push(message("tx1"));
        let (products, _) = case.run();
        assert!(products[&1].findings.is_empty());
        assert_eq!(products[&1].sent_more_than_once, 1);
    }

    #[test]
    fn a_fact_without_message_or_row_is_missing_and_not_applied() {
        let mut case = Case::clean();
        case.messages.clear();
        case.applied.clear();
        assert_eq!(case.kinds(), ["MISSING_MESSAGE", "NOT_APPLIED"]);
    }

    #[test]
    fn a_young_fact_is_in_flight_not_judged() {
        let mut case = Case::clean();
        case.facts = vec![creation("tx1", "o1", 5)];
        case.messages.clear();
        case.applied.clear();
        let (products, _) = case.run();
        assert!(products[&1].findings.is_empty());
        assert_eq!(products[&1].in_flight, 1);
    }

    #[test]
    fn a_second_row_for_a_known_order_is_a_duplicate_and_an_unknown_one_an_orphan() {
        let mut case = Case::clean();
        case.applied.push(row("tx9", "o1", Outcome::Deducted));
        case.applied.push(row("tx8", "o8", Outcome::Deducted));
        case.orders.insert("o1".into(), ("tx1".into(), None));
        assert_eq!(
            case.kinds(),
            ["DUPLICATE_APPLICATION", "ORPHAN_APPLICATION"]
        );
    }

    #[test]
    fn a_row_or_message_of_a_fact_outside_the_window_is_no_difference() {
        let mut case = Case::clean();
        case.messages.push(message("tx0"));
        case.applied.push(row("tx0", "o0", Outcome::Deducted));
        case.known.insert(
            "tx0".into(),
            Known {
                outcome: Some(TxOutcome::Committed),
                order: Some(("o0".into(), MessageKind::Creation)),
            },
        );
        assert!(case.kinds().is_empty());
    }

    #[test]
    fn a_message_of_a_rolled_back_transaction_is_named() {
        let mut case = Case::clean();
        case.messages.push(message("tx5"));
        case.known.insert(
            "tx5".into(),
            Known {
                outcome: Some(TxOutcome::RolledBack),
                order: None,
            },
        );
        let (products, _) = case.run();
        assert!(products[&1].findings[0].summary.contains("rolled back"));
    }

    #[test]
    fn an_old_undecided_half_is_a_difference_a_young_one_in_flight() {
        let mut case = Case::clean();
        let half = |secs_ago| UndecidedHalf {
            tx_no: Some("tx7".into()),
            kind: Some(MessageKind::Creation),
            product_id: Some(1),
            born_at: at(secs_ago),
            checks: 3,
            copies: 4,
            broker: "b".into(),
        };
        case.undecided = vec![half(5)];
        let (products, _) = case.run();
        assert!(products[&1].findings.is_empty());
        assert_eq!(products[&1].undecided_in_flight, 1);
        case.undecided = vec![half(100)];
        assert_eq!(case.kinds(), ["UNDECIDED_HALF_MESSAGE"]);
    }
}
