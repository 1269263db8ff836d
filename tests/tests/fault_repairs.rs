//! The five defects a fault-injection run found (killing and restarting the
//! broker, Redis and order-service mid-sale), each as the state the fault left
//! behind, and the repair that must follow: a lost committed message is sent
//! again, one stuck sale blocks only itself, an orphan reservation goes back,
//! a rebuild does not resurrect a cancellation, and a keyed retry of a winning
//! order is replayed rather than told SOLD_OUT.

use std::time::Duration;

use common::domain::ProductId;
use order_service::admission::rebuild::{self, Scope, snapshot};
use order_service::admission::{Admission, AdmissionGate, Keys};
use order_service::stock_client::StockClient;
use reqwest::{Method, StatusCode};
use seckill_tests::app::{TestApp, metrics_of, product_report};
use seckill_tests::broker::UndecidedProducer;
use seckill_tests::services::place_order_with_key;
use seckill_tests::{TestEnv, db, eventually, order_message};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_committed_order_blocks_only_its_own_sale_and_is_sent_again() {
    // Arrange: two sales; product 1 has a committed order stock-service never
    // got (as after a broker restart that discarded its half message).
    let app = TestApp::spawn_with(|s| {
        s.redelivery.interval_ms = 3_600_000; // this instance never resends
        s.admission.rebuild_quiet_timeout_secs = 2;
    })
    .await;
    app.open_sale(1, 10).await;
    app.open_sale(2, 10).await;
    assert_eq!(app.place_order(1, 1, 1).await.status, StatusCode::CREATED);
    // (A committed order whose message never reached the broker's consumers.)
    let lost = db::insert_committed_order(&app.env.order_db, 2, 1, 60)
        .await
        .tx_no
        .to_string();

    // Reconciliation names it and never says consistent meanwhile.
    let report = eventually("the lost order named", Duration::from_secs(30), || {
        let (app, lost) = (&app, lost.clone());
        async move {
            let report = app.reconcile().await;
            let named = product_report(&report, 1)["unapplied"]
                .as_array()
                .is_some_and(|u| u.iter().any(|n| n.as_str().unwrap().contains(&lost)));
            named.then_some(report)
        }
    })
    .await;
    assert_eq!(report["consistent"], false, "{report}");

    // Act 1: Redis loses everything.
    app.env.flush_redis().await;

    // Assert 1: product 2 sells again; product 1 stays refused, named as blocked.
    eventually("product 2 open again", Duration::from_secs(30), || async {
        (app.place_order(3, 2, 1).await.status == StatusCode::CREATED).then_some(())
    })
    .await;
    let blocked = eventually("product 1 blocked", Duration::from_secs(30), || {
        let app = &app;
        async move {
            let report = app.reconcile().await;
            let admission = product_report(&report, 1)["admission"]
                .as_str()
                .unwrap()
                .to_owned();
            admission.starts_with("blocked").then_some(admission)
        }
    })
    .await;
    assert!(blocked.contains("applied 1 of 2"), "{blocked}");
    let refused = app.place_order(4, 1, 1).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert_eq!(refused.code(), Some("SALE_NOT_READY"));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("seckill_sale_closed{product=\"1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("seckill_sale_closed{product=\"2\"} 0"),
        "{metrics}"
    );

    // Act 2: an instance whose redelivery runs (resends after 1 s).
    let repairer = app
        .spawn_another_order_service(|s| {
            s.redelivery.after_secs = 1;
            s.redelivery.interval_ms = 300;
        })
        .await;

    // Assert 2: the lost order is applied once, product 1 reopens by itself.
    eventually("product 1 open again", Duration::from_secs(60), || async {
        (app.place_order(5, 1, 1).await.status == StatusCode::CREATED).then_some(())
    })
    .await;
    let stock_db = db::connect(&app.env.stock_db).await;
    assert_eq!(
        db::scalar(
            &stock_db,
            "SELECT COUNT(*) FROM tx_log WHERE tx_no = ? AND outcome = 'DEDUCTED'",
            [lost.as_str().into()]
        )
        .await,
        1
    );
    let report = eventually("consistent", Duration::from_secs(30), || async {
        let report = app.reconcile().await;
        (report["consistent"] == true).then_some(report)
    })
    .await;
    assert_eq!(product_report(&report, 1)["db_stock"], 7, "{report}");
    assert_eq!(product_report(&report, 1)["redis_stock"], 7, "{report}");
    assert_eq!(app.stock_of(2).await, 9);
    let metrics = metrics_of(&repairer).await;
    let resent = metrics
        .lines()
        .find_map(|l| l.strip_prefix("seckill_messages_redelivered_total{kind=\"creation\"} "))
        .and_then(|n| n.parse::<f64>().ok());
    assert!(resent.is_some_and(|n| n >= 1.0), "{metrics}");

    repairer.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_cancellation_is_sent_again_and_its_stock_comes_back_once() {
    // Arrange: an order, deducted; its cancellation committed locally but
    // never delivered (tx_log + CANCELLED written as the local transaction does).
    let app = TestApp::spawn_with(|s| {
        s.redelivery.after_secs = 1;
        s.redelivery.interval_ms = 300;
    })
    .await;
    app.open_sale(1, 5).await;
    let order = app.place_order(1, 1, 1).await;
    assert_eq!(order.status, StatusCode::CREATED);
    eventually("deducted", Duration::from_secs(30), || async {
        (app.stock_of(1).await == 4).then_some(())
    })
    .await;
    let cancel_tx = common::domain::TxNo::generate().to_string();
    let order_db = db::connect(&app.env.order_db).await;
    db::exec(
        &order_db,
        &format!("INSERT INTO tx_log (tx_no, outcome) VALUES ('{cancel_tx}', 'COMMITTED')"),
    )
    .await;
    db::exec(
        &order_db,
        &format!(
            "UPDATE orders SET status = 'CANCELLED', cancel_tx_no = '{cancel_tx}', closed_reason = 'BUYER', \
             closed_at = NOW(3) - INTERVAL 1 MINUTE WHERE order_no = '{}'",
            order.order_no()
        ),
    )
    .await;

    // Assert: the cancellation is sent again and applied once: stock back to 5.
    let stock_db = db::connect(&app.env.stock_db).await;
    eventually("the cancellation applied", Duration::from_secs(30), || {
        let stock_db = stock_db.clone();
        let cancel_tx = cancel_tx.clone();
        async move {
            (db::scalar(
                &stock_db,
                "SELECT COUNT(*) FROM tx_log WHERE tx_no = ? AND outcome = 'RESTORED'",
                [cancel_tx.as_str().into()],
            )
            .await
                == 1)
                .then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // more passes: still once
    assert_eq!(app.stock_of(1).await, 5);
    assert_eq!(
        db::scalar(
            &order_db,
            "SELECT COUNT(*) FROM orders WHERE cancel_applied_at IS NOT NULL AND stock_applied_at IS NOT NULL",
            []
        )
        .await,
        1,
        "both messages recorded as applied"
    );

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reservation_whose_process_died_before_its_half_message_is_returned_once() {
    // Arrange: a live order, and a reservation made by admission whose process
    // died before sending its half message (no order row, no message).
    let app = TestApp::spawn_with(|s| {
        s.lifecycle.orphan_reservation_secs = 1;
        s.lifecycle.sweep_interval_ms = 300;
    })
    .await;
    app.open_sale(1, 10).await;
    assert_eq!(app.place_order(1, 1, 2).await.status, StatusCode::CREATED);
    let gate = test_gate(&app.env).await;
    let orphan = order_message(2, 1, 3);
    assert!(matches!(
        gate.admit(&orphan, None).await.unwrap(),
        Admission::Admitted { .. }
    ));
    assert_eq!(app.sale_view(1).await, (5, 2));

    // Assert: the orphan goes back (claimed as rolled back first), once; the
    // live order's reservation stays however old it gets.
    eventually("the orphan returned", Duration::from_secs(30), || async {
        (app.sale_view(1).await == (8, 1)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.sale_view(1).await, (8, 1));
    let order_db = db::connect(&app.env.order_db).await;
    assert_eq!(
        db::text(
            &order_db,
            "SELECT outcome FROM tx_log WHERE tx_no = ?",
            [orphan.tx_no.as_str().into()]
        )
        .await
        .as_deref(),
        Some("ROLLED_BACK")
    );
    // The buyer can buy again.
    assert_eq!(app.place_order(2, 1, 1).await.status, StatusCode::CREATED);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_during_a_rebuild_is_not_resurrected() {
    // Arrange: one NEW order, applied; Redis then loses its state, and the
    // automatic rebuild is slow (it is driven step by step here).
    let app = TestApp::spawn_with(|s| s.admission.ready_check_ms = 3_600_000).await;
    app.open_sale(1, 5).await;
    let order = app.place_order(1, 1, 1).await;
    assert_eq!(order.status, StatusCode::CREATED);
    let product = ProductId::parse(1).unwrap();
    let order_db = db::connect(&app.env.order_db).await;
    let stock_client = StockClient::new(
        &app.stock.base_url,
        std::sync::Arc::new(
            common::auth::Signer::from_settings(&seckill_tests::auth::settings()).unwrap(),
        ),
    );
    let gate = test_gate(&app.env).await;
    eventually("deducted", Duration::from_secs(30), || async {
        (app.stock_of(1).await == 4).then_some(())
    })
    .await;
    app.env.flush_redis().await;

    // Act: the rebuild reads the order as NEW; the buyer cancels it (its
    // release finds nothing to return); then the rebuild writes its snapshot.
    let snap = snapshot(&order_db, &stock_client, product, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(snap.holdings.len(), 1);
    let cancelled = app.cancel_order(order.order_no(), 1).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    rebuild::write(&gate, product, 1, &snap).await.unwrap();
    let resurrected = gate.sale_view(product).await.unwrap().unwrap();
    assert_eq!((resurrected.0, resurrected.2), (4, 1), "the race is real");
    rebuild::recheck(&gate, &order_db, product, &snap)
        .await
        .unwrap();

    // Assert: the cancelled order's reservation is gone, the stock back.
    let rebuilt = gate.sale_view(product).await.unwrap().unwrap();
    assert_eq!((rebuilt.0, rebuilt.2), (5, 0));
    eventually("stock DB restored", Duration::from_secs(30), || async {
        (app.stock_of(1).await == 5).then_some(())
    })
    .await;
    // And the whole rebuild agrees and reopens the sale.
    rebuild::rebuild(
        &gate,
        &order_db,
        &stock_client,
        Duration::from_secs(10),
        Scope::All,
    )
    .await
    .unwrap();
    assert_eq!(app.sale_view(1).await, (5, 0));
    assert_eq!(app.place_order(1, 1, 1).await.status, StatusCode::CREATED);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_retries_of_winning_orders_are_replayed_after_sold_out_is_remembered() {
    // Arrange: 20 buyers win the 20 items, each with an Idempotency-Key; a
    // 21st buyer is told SOLD_OUT, so this instance remembers it (60 s).
    let app = TestApp::spawn_with(|s| s.admission.sold_out_ttl_ms = 60_000).await;
    app.open_sale(1, 20).await;
    let keyed = |user: i64, key: String| {
        let orders = &app.orders;
        async move { place_order_with_key(orders, user, 1, 1, &key).await }
    };
    let mut first = Vec::new();
    for user in 1..=20 {
        let (status, body, _) = keyed(user, format!("k-{user}")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        first.push(body["order_no"].as_str().unwrap().to_owned());
    }
    let loser = app.place_order(99, 1, 1).await;
    assert_eq!(
        (loser.status, loser.code()),
        (StatusCode::CONFLICT, Some("SOLD_OUT"))
    );

    // Act: every winner retries at once (twice each), as after a client timeout.
    let retries = futures::future::join_all(
        (1..=20).flat_map(|user| [0, 1].map(|_| keyed(user, format!("k-{user}")))),
    )
    .await;

    // Assert: each retry replays its own order; a new key is still SOLD_OUT.
    for (i, (status, body, replayed)) in retries.iter().enumerate() {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
        assert!(replayed, "{body}");
        assert_eq!(body["order_no"], first[i / 2].as_str());
    }
    let (status, body, _) = keyed(1, "another-key".into()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discarded_half_messages_are_settled_committed_ones_resent_undecided_ones_rolled_back() {
    // Arrange: two admitted orders whose half messages the broker will
    // discard (their producer never answers its check-backs, as when
    // order-service could not be reached after a broker restart): one
    // committed in the order DB, one never decided. The periodic resend is
    // off here (1 h): the dead-letter path alone must repair them.
    let app = TestApp::spawn_with(|s| {
        s.redelivery.after_secs = 3600;
        s.redelivery.interval_ms = 300;
    })
    .await;
    app.open_sale(1, 10).await;
    let (env, orders) = (&app.env, &app.orders);
    let gate = test_gate(env).await;
    let committed = order_message(1, 1, 1);
    let undecided = order_message(2, 1, 1);
    for order in [&committed, &undecided] {
        assert!(matches!(
            gate.admit(order, None).await.unwrap(),
            Admission::Admitted { .. }
        ));
    }
    let order_db = db::connect(&env.order_db).await;
    db::exec(
        &order_db,
        &format!(
            "INSERT INTO tx_log (tx_no, outcome) VALUES ('{}', 'COMMITTED')",
            committed.tx_no
        ),
    )
    .await;
    db::exec(
        &order_db,
        &format!(
            "INSERT INTO orders (order_no, tx_no, user_id, product_id, pay_count, status) \
             VALUES ('{}', '{}', 1, 1, 1, 'NEW')",
            committed.order_no, committed.tx_no
        ),
    )
    .await;
    let producer = UndecidedProducer::start(env).await;
    for order in [&committed, &undecided] {
        producer.send_half(order).await;
    }

    // Assert: after the discard (30 check-backs at 1 s), the committed one is
    // resent and applied; the undecided one claimed as rolled back, its
    // reservation returned.
    let letters = eventually(
        "both dead letters settled",
        Duration::from_secs(120),
        || {
            let app = &app;
            async move {
                let report = app.reconcile().await;
                let verdicts: Vec<(String, String)> = report["dead_letters"]
                    .as_array()?
                    .iter()
                    .map(|l| {
                        (
                            l["keys"].as_str().unwrap_or_default().to_owned(),
                            l["verdict"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                let settled = verdicts.len() == 2
                    && verdicts
                        .iter()
                        .all(|(_, v)| v == "REDELIVERED" || v == "ROLLED_BACK");
                settled.then_some((verdicts, report))
            }
        },
    )
    .await;
    let (verdicts, report) = letters;
    assert!(
        verdicts.contains(&(committed.tx_no.to_string(), "REDELIVERED".into())),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&(undecided.tx_no.to_string(), "ROLLED_BACK".into())),
        "{verdicts:?}"
    );
    assert_eq!(
        report["consistent"], false,
        "unresolved dead letters: {report}"
    );
    assert_eq!(
        db::text(
            &order_db,
            "SELECT outcome FROM tx_log WHERE tx_no = ?",
            [undecided.tx_no.as_str().into()]
        )
        .await
        .as_deref(),
        Some("ROLLED_BACK")
    );
    assert_eq!(app.stock_of(1).await, 9);
    assert_eq!(app.sale_view(1).await, (9, 1));

    // An operator resolves them: consistent.
    for letter in report["dead_letters"].as_array().unwrap() {
        let path = format!(
            "/api/admin/dead-letters/{}/resolve",
            letter["msg_id"].as_str().unwrap()
        );
        assert_eq!(
            orders.call(Method::POST, &path, None).await.0,
            StatusCode::OK
        );
    }
    let report = app.reconcile().await;
    assert_eq!(report["consistent"], true, "{report}");

    producer.stop().await;
    app.stop().await;
}

/// An admission gate on this test's Redis prefix (as order-service builds it).
async fn test_gate(env: &TestEnv) -> AdmissionGate {
    let redis = common::redis_link::RedisLink::connect(&common::settings::RedisSettings::default())
        .await
        .unwrap();
    AdmissionGate::new(
        redis,
        Keys::new(&env.redis_prefix),
        Duration::from_millis(1),
    )
}
