//! The consistency auditor (`GET /api/admin/audit`, `order-service audit`):
//! a clean sale audits clean; each kind of difference, injected into one
//! place behind the services' backs, is named — a committed order with no
//! message in the broker, a second deduction of one order, a deduction
//! nobody committed, a Redis reservation without an order, a half message
//! nobody decides — while a message sent twice (a resend) is counted, not
//! named; and a broker that cannot be read is a 503, not a 500.

use std::time::Duration;

use common::domain::{OrderNo, TxNo};
use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::broker::{PrivateBroker, TopicWriter, UndecidedProducer};
use seckill_tests::services::order_service_command_with;
use seckill_tests::{db, eventually, order_message};
use serde_json::Value;

/// Committed facts younger than this are in flight (`redelivery.after_secs`).
const SETTLE_SECS: u64 = 2;

/// The auditor's settings for these tests: a short settle time, and the
/// redelivery safety net paused — it would resend the message a test
/// removed before the auditor had a look.
fn audit_settings(settings: &mut order_service::settings::Settings) {
    settings.redelivery.after_secs = SETTLE_SECS;
    settings.redelivery.interval_ms = 3_600_000;
}

/// `order-service audit <args>` with this test's settings (and its settle time).
fn audit_command(app: &TestApp, args: &[&str]) -> (i32, String) {
    let settle = SETTLE_SECS.to_string();
    let mut with_audit = vec!["audit"];
    with_audit.extend_from_slice(args);
    order_service_command_with(
        &app.env,
        &app.stock,
        &with_audit,
        &[("APP_REDELIVERY__AFTER_SECS", &settle)],
    )
}

/// A sale of product 1 (stock 10): buyers 1–3 order one item each, buyer 3
/// cancels; returns once stock-service applied all four messages and they
/// are older than the settle time. The orders (order_no, tx_no), buyer 1's first.
async fn settled_sale() -> (TestApp, Vec<(String, String)>) {
    let app = TestApp::spawn_with(audit_settings).await;
    app.open_sale(1, 10).await;
    let mut placed = Vec::new();
    for user in 1..=3 {
        let answer = app.place_order(user, 1, 1).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        placed.push((answer.order_no().to_owned(), answer.tx_no().to_owned()));
    }
    let cancelled = app.cancel_order(&placed[2].0, 3).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let stock_db = db::connect(&app.env.stock_db).await;
    eventually(
        "three creations and a cancellation applied",
        Duration::from_secs(30),
        || {
            let stock_db = stock_db.clone();
            async move {
                (db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await == 4).then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(SETTLE_SECS + 1)).await;
    (app, placed)
}

/// `GET /api/admin/audit<query>` as an admin (asserted 200).
async fn audit(app: &TestApp, query: &str) -> Value {
    let (status, report) = app
        .orders
        .call(Method::GET, &format!("/api/admin/audit{query}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report
}

/// Every finding of a report, the products' and the overall ones.
fn findings(report: &Value) -> Vec<Value> {
    report["products"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["findings"].as_array().cloned().unwrap_or_default())
        .chain(report["overall"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The findings of one kind.
fn of_kind(report: &Value, kind: &str) -> Vec<Value> {
    findings(report)
        .into_iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

fn product(report: &Value, id: i64) -> Value {
    report["products"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["product_id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("product {id} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clean_sale_audits_clean_through_the_endpoint_and_the_command() {
    // Arrange
    let (app, _) = settled_sale().await;

    // Act
    let report = audit(&app, "").await;
    let (code, printed) = audit_command(&app, &["--product", "1"]);

    // Assert: every place holds the four facts once; nothing else is named.
    assert_eq!(report["clean"], true, "{report:#}");
    assert_eq!(report["differences"], 0, "{report:#}");
    let sale = product(&report, 1);
    assert_eq!(sale["committed_creations"], 3, "{sale:#}");
    assert_eq!(sale["committed_cancellations"], 1, "{sale:#}");
    assert_eq!(sale["in_broker"], 4, "{sale:#}");
    assert_eq!(sale["applied"], 4, "{sale:#}");
    assert!(report["broker"]["messages_read"].as_u64().unwrap() >= 4);
    assert_eq!(code, 0, "{printed}");
    assert!(printed.contains("clean: every committed fact"), "{printed}");

    let recent = audit(&app, "?product_id=1&since=10m").await;
    assert_eq!(recent["clean"], true, "{recent:#}");
    assert_eq!(product(&recent, 1)["in_broker"], 4, "{recent:#}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resent_message_is_counted_not_named_a_difference() {
    // Arrange: buyer 1's creation sent once more as a plain message, as the
    // redelivery safety net does for a message it has not seen applied.
    let (app, placed) = settled_sale().await;
    let order_db = db::connect(&app.env.order_db).await;
    let order = order_service::store::find_order(&order_db, &placed[0].0)
        .await
        .unwrap()
        .expect("buyer 1's order");
    let writer = TopicWriter::start(&app.env).await;
    writer.send(&order.created_message().unwrap()).await;
    writer.stop().await;

    // Act
    let report = eventually(
        "the resend read by the auditor",
        Duration::from_secs(10),
        || async {
            let report = audit(&app, "").await;
            (product(&report, 1)["sent_more_than_once"] == 1).then_some(report)
        },
    )
    .await;

    // Assert: two copies of one fact are no difference.
    assert_eq!(report["clean"], true, "{report:#}");
    assert_eq!(product(&report, 1)["in_broker"], 4, "{report:#}");
    assert_eq!(product(&report, 1)["applied"], 4, "{report:#}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_audit_parameters_are_refused_naming_the_parameter() {
    let app = TestApp::spawn_with(audit_settings).await;
    for (query, field) in [
        ("?since=yesterday", "since"),
        ("?since=2999-01-01T00:00:00Z", "since"),
        ("?product_id=0", "product_id"),
        ("?product_id=abc", "product_id"),
        ("?limit=5", "query"),
    ] {
        let (status, body) = app
            .orders
            .call(Method::GET, &format!("/api/admin/audit{query}"), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["code"], "INVALID_FIELD", "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let (code, printed) = audit_command(&app, &["--since", "soon"]);
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("since"), "{printed}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_committed_order_without_a_message_is_named_missing() {
    // Arrange: a committed order written straight into the order DB, as if
    // its message had never reached the broker.
    let (app, _) = settled_sale().await;
    let lost = db::insert_committed_order(&app.env.order_db, 9, 1, 10).await;

    // Act
    let report = audit(&app, "").await;
    let (code, printed) = audit_command(&app, &["--product", "1"]);
    println!("order-service audit --product 1 (exit {code}):\n{printed}");

    // Assert: missing from the topic and from stock-service; nothing else of the sale.
    assert_eq!(report["clean"], false);
    let missing = of_kind(&report, "MISSING_MESSAGE");
    assert_eq!(missing.len(), 1, "{report:#}");
    assert_eq!(missing[0]["tx_no"], lost.tx_no.as_str());
    assert_eq!(missing[0]["order_no"], lost.order_no.as_str());
    assert_eq!(missing[0]["message"], "CREATION");
    let unapplied = of_kind(&report, "NOT_APPLIED");
    assert_eq!(unapplied.len(), 1, "{report:#}");
    assert_eq!(unapplied[0]["tx_no"], lost.tx_no.as_str());
    assert_eq!(product(&report, 1)["in_broker"], 4, "{report:#}");
    assert_eq!(code, 1, "{printed}");
    assert!(
        printed.contains(&format!("missing message: the creation {}", lost.tx_no)),
        "{printed}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_deduction_of_one_order_is_named_a_duplicate() {
    // Arrange: stock-service's tx_log gets a second DEDUCTED row for buyer
    // 1's order under another tx_no, and its stock the deduction.
    let (app, placed) = settled_sale().await;
    let (order_no, tx_no) = &placed[0];
    let extra = TxNo::generate();
    db::insert_stock_row(
        &app.env.stock_db,
        extra.as_str(),
        order_no,
        1,
        1,
        "DEDUCTED",
    )
    .await;
    let stock_db = db::connect(&app.env.stock_db).await;
    db::exec(
        &stock_db,
        "UPDATE stock SET total_count = total_count - 1 WHERE product_id = 1",
    )
    .await;

    // Act
    let report = audit(&app, "?product_id=1").await;

    // Assert
    let duplicates = of_kind(&report, "DUPLICATE_APPLICATION");
    assert_eq!(duplicates.len(), 1, "{report:#}");
    let duplicate = &duplicates[0];
    assert_eq!(duplicate["order_no"], order_no.as_str());
    assert_eq!(duplicate["tx_no"], tx_no.as_str());
    assert_eq!(duplicate["extra_tx_no"], extra.as_str());
    assert_eq!(duplicate["outcome"], "DEDUCTED");
    assert!(
        duplicate["summary"]
            .as_str()
            .unwrap()
            .starts_with("duplicate deduction"),
        "{duplicate}"
    );
    assert!(
        of_kind(&report, "ORPHAN_APPLICATION").is_empty(),
        "{report:#}"
    );
    assert_eq!(report["clean"], false);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deduction_nobody_committed_is_named_an_orphan() {
    // Arrange: a DEDUCTED row in stock-service's tx_log for a tx_no and an
    // order the order DB never had.
    let (app, _) = settled_sale().await;
    let (orphan, order_no) = (TxNo::generate(), OrderNo::generate());
    db::insert_stock_row(
        &app.env.stock_db,
        orphan.as_str(),
        order_no.as_str(),
        1,
        2,
        "DEDUCTED",
    )
    .await;

    // Act
    let report = audit(&app, "").await;

    // Assert
    let orphans = of_kind(&report, "ORPHAN_APPLICATION");
    assert_eq!(orphans.len(), 1, "{report:#}");
    assert_eq!(orphans[0]["tx_no"], orphan.as_str());
    assert_eq!(orphans[0]["order_no"], order_no.as_str());
    assert_eq!(orphans[0]["count"], 2);
    assert_eq!(orphans[0]["order_db"], "UNKNOWN");
    assert!(
        orphans[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("orphan deduction"),
        "{report:#}"
    );
    assert!(
        of_kind(&report, "DUPLICATE_APPLICATION").is_empty(),
        "{report:#}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reservation_without_an_order_is_named_stale() {
    // Arrange: Redis reserves for a tx_no no order has.
    let (app, _) = settled_sale().await;
    let stale = TxNo::generate();
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis();
    redis::cmd("HSET")
        .arg(format!("{}:sale:1:resv", app.env.redis_prefix))
        .arg(stale.as_str())
        .arg(format!("77:1:{now_ms}"))
        .query_async::<()>(&mut redis)
        .await
        .unwrap();

    // Act
    let report = audit(&app, "?product_id=1").await;

    // Assert: reconciliation's finding, naming the tx_no, inside the audit.
    let stale_found: Vec<Value> = of_kind(&report, "RECONCILE")
        .into_iter()
        .filter(|f| {
            let finding = f["finding"].as_str().unwrap();
            finding.contains("stale reservation") && finding.contains(stale.as_str())
        })
        .collect();
    assert_eq!(stale_found.len(), 1, "{report:#}");
    assert_eq!(report["clean"], false);
    assert!(of_kind(&report, "MISSING_MESSAGE").is_empty(), "{report:#}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_message_nobody_decides_is_named_with_its_age() {
    // Arrange: a producer of another group sends a half message on the
    // order topic and answers UNKNOWN to every check-back.
    let app = TestApp::spawn_with(audit_settings).await;
    app.open_sale(1, 10).await;
    let undecided = UndecidedProducer::start(&app.env).await;
    let stuck = order_message(5, 1, 1);
    undecided.send_half(&stuck).await;

    // Act: audits until the broker has checked it back three times (each
    // check-back re-appends it; it is discarded after 30, ~30 s).
    let found = eventually(
        "the undecided half message named after three check-backs",
        Duration::from_secs(25),
        || async {
            let report = audit(&app, "").await;
            of_kind(&report, "UNDECIDED_HALF_MESSAGE")
                .into_iter()
                .find(|f| f["tx_no"] == stuck.tx_no.as_str() && f["checks"].as_u64() >= Some(3))
        },
    )
    .await;
    println!("{}", found["summary"]);

    // Assert: its age runs from the first send, not from the latest copy.
    let age = found["age_secs"].as_i64().unwrap();
    assert!(age >= 3 && age >= SETTLE_SECS as i64, "{found}");
    assert!(found["copies"].as_u64().unwrap() >= 1, "{found}");
    assert_eq!(found["order_db"], "UNKNOWN", "{found}");
    assert_eq!(found["message"], "CREATION", "{found}");
    undecided.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_broker_is_a_503_with_a_code_and_exit_2() {
    // Arrange: the services on a broker of this test's own, then the broker killed.
    let mut broker = PrivateBroker::start().await;
    let app = TestApp::builder()
        .broker(&broker)
        .spawn_with(audit_settings)
        .await;
    app.open_sale(1, 10).await;
    broker.kill_broker();

    // Act
    let (status, body) = app.orders.call(Method::GET, "/api/admin/audit", None).await;
    let (code, printed) = audit_command(&app, &[]);

    // Assert
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "BROKER_UNAVAILABLE", "{body}");
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("audit not done"), "{printed}");
    broker.restart_broker().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_committed_in_batches_audit_clean_one_fact_per_order() {
    // Arrange: 40 buyers at once, so orders are recorded by group commits
    // (OrderBatch messages), all applied and older than the settle time.
    let app = TestApp::spawn_with(|s| {
        audit_settings(s);
        s.rate_limit.per_user_per_sec = 0;
    })
    .await;
    app.open_sale(1, 40).await;
    let answers = futures::future::join_all(
        (1..=40).map(|user| seckill_tests::services::place_order(&app.orders, user, 1, 1)),
    )
    .await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{answers:?}"
    );
    let stock_db = db::connect(&app.env.stock_db).await;
    eventually("40 creations applied", Duration::from_secs(30), || {
        let stock_db = stock_db.clone();
        async move {
            (db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await == 40).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(SETTLE_SECS + 1)).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("seckill_group_commit_total{sent=\"batch\"}")
            && !metrics.contains("seckill_group_commit_total{sent=\"batch\"} 0"),
        "no batch was sent:\n{metrics}"
    );

    // Act
    let report = audit(&app, "?product_id=1").await;

    // Assert: every order is one fact in the broker (read out of its batch),
    // applied once; the batches' own tx_log rows are no stray facts.
    assert_eq!(report["clean"], true, "{report:#}");
    let sale = product(&report, 1);
    assert_eq!(sale["committed_creations"], 40, "{sale:#}");
    assert_eq!(sale["in_broker"], 40, "{sale:#}");
    assert_eq!(sale["applied"], 40, "{sale:#}");
    app.stop().await;
}
