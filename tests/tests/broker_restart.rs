//! A broker SIGKILLed mid-sale and restarted: no committed order is lost,
//! and `/readyz` says ready only when orders can be placed again. The test
//! runs its own name server and broker, so killing it disturbs no other test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use seckill_tests::app::TestApp;
use seckill_tests::broker::PrivateBroker;
use seckill_tests::services::{
    RunningService, open_sale, place_order, place_order_with_key, sale_view,
};
use seckill_tests::{db, eventually};

async fn readyz(service: &RunningService) -> StatusCode {
    service
        .http
        .get(format!("{}/readyz", service.base_url))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_loses_no_committed_order_and_readiness_waits_for_the_producer() {
    // Arrange: both services on a broker of this test's own; buyers keep
    // ordering (one order each) while the broker is killed and restarted.
    let mut broker = PrivateBroker::start().await;
    let app = Arc::new(
        TestApp::builder()
            .broker(&broker)
            .spawn_with(|settings| {
                settings.redelivery.after_secs = 5;
                settings.redelivery.interval_ms = 1_000;
            })
            .await,
    );
    let (env, orders) = (&app.env, &app.orders);
    open_sale(orders, 1, 100_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let buyers: Vec<_> = (0..8)
        .map(|lane| {
            let app = Arc::clone(&app);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut user = lane * 1_000_000 + 1;
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = place_order(&app.orders, user, 1, 1).await;
                    answers.push((status, body));
                    user += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Act: SIGKILL the broker with orders in flight; restart it 3 s later.
    broker.kill_broker();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(readyz(orders).await, StatusCode::SERVICE_UNAVAILABLE);
    let restarted = Instant::now();
    broker.restart_broker().await;

    // Assert 1: once /readyz says ready, orders are placed (not 503).
    eventually("ready again", Duration::from_secs(90), || async move {
        (readyz(orders).await == StatusCode::OK).then_some(())
    })
    .await;
    let ready_after = restarted.elapsed();
    for user in 900_000_001..900_000_004 {
        let (status, body) = place_order(orders, user, 1, 1).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "/readyz said ready {ready_after:?} after the restart, yet: {body}"
        );
    }
    println!("ready and ordering again {ready_after:?} after the broker restart");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut created = Vec::new();
    for buyer in buyers {
        for (status, body) in buyer.await.expect("buyer") {
            if status == StatusCode::CREATED {
                created.push(body["tx_no"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(!created.is_empty());

    // Assert 2: every order answered 201 is applied to stock exactly once,
    // and every committed order too (none lost with the broker).
    let order_db = db::connect(&env.order_db).await;
    let stock_db = db::connect(&env.stock_db).await;
    eventually(
        "every committed order applied",
        Duration::from_secs(180),
        || {
            let (order_db, stock_db) = (order_db.clone(), stock_db.clone());
            async move {
                let committed = db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await;
                let applied = db::scalar(
                    &stock_db,
                    "SELECT COUNT(*) FROM tx_log WHERE outcome = 'DEDUCTED'",
                    [],
                )
                .await;
                (committed == applied).then_some(())
            }
        },
    )
    .await;
    for tx_no in &created {
        assert_eq!(
            db::scalar(
                &stock_db,
                "SELECT COUNT(*) FROM tx_log WHERE tx_no = ? AND outcome = 'DEDUCTED'",
                [tx_no.as_str().into()]
            )
            .await,
            1,
            "order {tx_no} answered 201 but not deducted"
        );
    }
    let sold = db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await;
    assert_eq!(
        db::scalar(
            &stock_db,
            "SELECT CAST(total_count AS SIGNED) FROM stock WHERE product_id = 1",
            []
        )
        .await,
        100_000 - sold,
        "stock DB + sold = opened"
    );

    Arc::into_inner(app).expect("buyers done").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_the_broker_was_away_is_placed_with_the_same_order_token() {
    // Arrange: a sale on a broker of this test's own, which is then killed.
    let mut broker = PrivateBroker::start().await;
    let app = TestApp::builder().broker(&broker).spawn().await;
    let orders = &app.orders;
    open_sale(orders, 1, 10).await;
    broker.kill_broker();

    // Act 1: an order with a key (and its one-time token) while the broker is away.
    let (status, body, _) = place_order_with_key(orders, 7, 1, 1, "retry-after-503").await;

    // Assert 1: refused with a 503 that invites a retry; the reservation is back.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        sale_view(orders, 1).await,
        (10, 0),
        "reservation given back"
    );

    // Act 2: the broker returns; the client retries the same request (same
    // key, same order token), as the 503 told it to.
    broker.restart_broker().await;
    eventually("ready again", Duration::from_secs(90), || async move {
        (readyz(orders).await == StatusCode::OK).then_some(())
    })
    .await;
    let (status, body, replayed) = place_order_with_key(orders, 7, 1, 1, "retry-after-503").await;

    // Assert 2: placed (the chaos suite found it refused 403 ORDER_TOKEN_INVALID:
    // the first attempt had used the token up).
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        !replayed,
        "nothing was placed before: a new order, not a replay"
    );
    assert_eq!(sale_view(orders, 1).await, (9, 1));

    app.stop().await;
}
