//! An order's life after creation on the real stack: cancel (stock and Redis
//! reservation back exactly once, buyer may buy again), payment timeout by
//! delayed message and by the sweeper, pay racing the timeout, and
//! compensation when stock-service finds too little stock. Every test ends
//! with the invariant: initial stock = DB stock + Σ NEW/PAID, Redis agrees.

use std::time::Duration;

use common::messages::StockInsufficient;
use reqwest::StatusCode;
use seckill_tests::app::TestApp;
use seckill_tests::broker::TopicWriter;
use seckill_tests::invariants::{assert_every_unit_accounted, wait_for_status};
use seckill_tests::services::{
    cancel_order, open_sale, open_sale_with_limit, pay_order, place_order, sale_view, set_stock,
    stock_of,
};
use seckill_tests::{db, eventually};

fn order_no(placed: &serde_json::Value) -> String {
    placed["order_no"].as_str().expect("order_no").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_returns_the_stock_and_reservation_once_and_the_buyer_can_buy_again() {
    let app = TestApp::spawn().await;
    let (env, stock, orders) = (&app.env, &app.stock, &app.orders);
    open_sale(orders, 1, 5).await;
    let (status, placed) = place_order(orders, 7, 1, 2).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order_no = order_no(&placed);
    assert!(placed["order_no"].is_string());
    eventually("deducted", Duration::from_secs(30), || async {
        (stock_of(stock, 1).await == 3).then_some(())
    })
    .await;
    assert_eq!(
        place_order(orders, 7, 1, 1).await.0,
        StatusCode::CONFLICT,
        "limit 1"
    );

    let (status, body) = cancel_order(orders, &order_no, 8).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another buyer's order: {body}"
    );
    let (status, cancelled) = cancel_order(orders, &order_no, 7).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["closed_reason"], "BUYER");
    let (status, body) = cancel_order(orders, &order_no, 7).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "ORDER_NOT_CANCELLABLE");
    let (status, body) = pay_order(orders, &order_no, 7, "pay-1").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "ORDER_NOT_PAYABLE");

    // Redis gave the reservation back at once; stock-service gives the stock back.
    assert_eq!(sale_view(orders, 1).await, (5, 0));
    eventually("stock restored", Duration::from_secs(30), || async {
        (stock_of(stock, 1).await == 5).then_some(())
    })
    .await;
    let stock_db = db::connect(&env.stock_db).await;
    assert_eq!(
        db::scalar(
            &stock_db,
            "SELECT COUNT(*) FROM tx_log WHERE outcome = 'RESTORED'",
            []
        )
        .await,
        1
    );

    let (status, again) = place_order(orders, 7, 1, 1).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the buyer may buy again: {again}"
    );
    assert_every_unit_accounted(env, orders, 1, 5).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unpaid_orders_are_cancelled_by_their_timeout_message_and_cannot_be_paid_late() {
    let app = TestApp::spawn_with(|settings| {
        settings.lifecycle.payment_timeout_secs = 2;
        settings.lifecycle.sweep_interval_ms = 3_600_000; // the delayed message alone
    })
    .await;
    let (env, orders) = (&app.env, &app.orders);
    open_sale(orders, 1, 5).await;
    let unpaid = order_no(&place_order(orders, 1, 1, 1).await.1);
    let paid = order_no(&place_order(orders, 2, 1, 1).await.1);
    let (status, body) = pay_order(orders, &paid, 2, "pay-2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["pay_deadline"].is_null(),
        "a paid order has no deadline: {body}"
    );

    let cancelled = wait_for_status(orders, &unpaid, "CANCELLED", Duration::from_secs(20)).await;
    assert_eq!(cancelled["closed_reason"], "TIMEOUT");
    let (status, body) = pay_order(orders, &unpaid, 1, "pay-1").await;
    assert_eq!(status, StatusCode::CONFLICT, "pay after timeout: {body}");
    assert_eq!(body["code"], "ORDER_NOT_PAYABLE");
    assert_eq!(
        wait_for_status(orders, &paid, "PAID", Duration::from_secs(1)).await["pay_no"],
        "pay-2"
    );
    assert_every_unit_accounted(env, orders, 1, 5).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweeper_cancels_overdue_orders_whose_timeout_message_is_far_off() {
    // Created under a one-hour payment time: its timeout message is an hour away.
    let app = TestApp::spawn_with(|settings| settings.lifecycle.payment_timeout_secs = 3_600).await;
    let orders = &app.orders;
    open_sale(orders, 1, 3).await;
    let placed = place_order(orders, 1, 1, 1).await;
    assert_eq!(placed.0, StatusCode::CREATED, "{}", placed.1);
    let order_no = order_no(&placed.1);
    assert!(placed.1["order_no"].is_string());
    let stock_only = app.stop_orders().await;

    // Restarted with a one-second payment time: only the sweeper can notice.
    let app = stock_only
        .spawn_orders_with(|settings| {
            settings.lifecycle.payment_timeout_secs = 1;
            settings.lifecycle.sweep_interval_ms = 300;
        })
        .await;
    let (env, orders) = (&app.env, &app.orders);
    let cancelled = wait_for_status(orders, &order_no, "CANCELLED", Duration::from_secs(20)).await;
    assert_eq!(cancelled["closed_reason"], "TIMEOUT");
    assert_eq!(sale_view(orders, 1).await, (3, 0));
    assert_every_unit_accounted(env, orders, 1, 3).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_racing_the_timeout_fifty_times_each_end_in_exactly_one_state() {
    const ORDERS: i64 = 50;
    let app = TestApp::spawn_with(|settings| {
        settings.lifecycle.payment_timeout_secs = 2;
        settings.lifecycle.sweep_interval_ms = 100;
        settings.rate_limit.per_user_per_sec = 0;
    })
    .await;
    let (env, orders) = (&app.env, &app.orders);
    open_sale(orders, 1, ORDERS).await;
    let mut placed = Vec::new();
    for user in 1..=ORDERS {
        let (status, body) = place_order(orders, user, 1, 1).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let created: chrono::DateTime<chrono::Utc> =
            body["created_at"].as_str().unwrap().parse().unwrap();
        placed.push((user, order_no(&body), created));
    }
    // Each payment lands within ±250 ms of its order's deadline.
    let racers = placed.iter().map(|(user, order_no, created)| {
        let (user, order_no) = (*user, order_no.clone());
        let jitter = chrono::Duration::milliseconds((user * 37 % 500) - 250);
        let at = *created + chrono::Duration::seconds(2) + jitter;
        async move {
            if let Ok(wait) = (at - chrono::Utc::now()).to_std() {
                tokio::time::sleep(wait).await;
            }
            let (status, body) = pay_order(orders, &order_no, user, &format!("pay-{user}")).await;
            assert!(
                status == StatusCode::OK || status == StatusCode::CONFLICT,
                "{status} {body}"
            );
            (order_no, status == StatusCode::OK)
        }
    });
    let results = futures::future::join_all(racers).await;
    let mut paid = 0;
    for (order_no, payment_won) in &results {
        let expected = if *payment_won { "PAID" } else { "CANCELLED" };
        let order = wait_for_status(orders, order_no, expected, Duration::from_secs(20)).await;
        if *payment_won {
            paid += 1;
            assert!(order["closed_reason"].is_null(), "{order}");
        }
    }
    tracing::info!(paid, cancelled = ORDERS - paid, "race outcome");
    assert_every_unit_accounted(env, orders, 1, ORDERS).await;
    let (stock_left, reserved) = sale_view(orders, 1).await;
    assert_eq!((stock_left, reserved), (ORDERS - paid, paid));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn insufficient_stock_fails_the_order_and_returns_its_reservation_once() {
    let app = TestApp::spawn().await;
    let (env, stock, orders) = (&app.env, &app.stock, &app.orders);
    open_sale_with_limit(orders, 1, 5, 1).await;
    // Redis and the stock DB disagree: Redis admits, the DB has nothing.
    set_stock(stock, 1, 0).await;
    let (status, placed) = place_order(orders, 7, 1, 2).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order_no = order_no(&placed);
    let failed = wait_for_status(orders, &order_no, "FAILED", Duration::from_secs(30)).await;
    assert_eq!(failed["closed_reason"], "STOCK_INSUFFICIENT");
    eventually("reservation returned", Duration::from_secs(10), || async {
        (sale_view(orders, 1).await == (5, 0)).then_some(())
    })
    .await;
    let (status, body) = pay_order(orders, &order_no, 7, "pay-7").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a failed order is not payable: {body}"
    );

    // A repeated report changes nothing: no second release.
    let writer = TopicWriter::start(env).await;
    let mut created = seckill_tests::order_message(7, 1, 2);
    created.tx_no = common::domain::TxNo::parse(failed["tx_no"].as_str().unwrap()).unwrap();
    created.order_no = common::domain::OrderNo::parse(&order_no).unwrap();
    writer
        .send_insufficient(&StockInsufficient::of(&created))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sale_view(orders, 1).await, (5, 0));
    let order_db = db::connect(&env.order_db).await;
    assert_eq!(
        db::scalar(
            &order_db,
            "SELECT COUNT(*) FROM orders WHERE status = 'FAILED'",
            []
        )
        .await,
        1
    );
    let stock_db = db::connect(&env.stock_db).await;
    assert_eq!(
        db::scalar(
            &stock_db,
            "SELECT COUNT(*) FROM tx_log WHERE outcome = 'INSUFFICIENT'",
            []
        )
        .await,
        1
    );
    // The stock DB never went below zero and holds nothing for the failed order.
    assert_eq!(stock_of(stock, 1).await, 0);
    writer.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweeper_returns_a_reservation_a_stop_left_behind() {
    // A cancellation committed, then the instance stopped before giving the
    // Redis reservation back: the row says CANCELLED, reservation not returned.
    let app = TestApp::spawn_with(|settings| {
        settings.lifecycle.sweep_interval_ms = 300;
    })
    .await;
    let (env, orders) = (&app.env, &app.orders);
    open_sale(orders, 1, 5).await;
    let placed = place_order(orders, 7, 1, 2).await;
    assert_eq!(placed.0, StatusCode::CREATED, "{}", placed.1);
    assert_eq!(sale_view(orders, 1).await, (3, 1));
    let order_db = db::connect(&env.order_db).await;
    db::exec(
        &order_db,
        "UPDATE orders SET status = 'CANCELLED', closed_reason = 'BUYER', closed_at = NOW(3)",
    )
    .await;

    eventually(
        "reservation returned by the sweeper",
        Duration::from_secs(10),
        || async { (sale_view(orders, 1).await == (5, 0)).then_some(()) },
    )
    .await;
    assert_eq!(
        db::scalar(
            &order_db,
            "SELECT COUNT(*) FROM orders WHERE reservation_returned_at IS NOT NULL",
            []
        )
        .await,
        1
    );
    // Once only: another pass changes nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sale_view(orders, 1).await, (5, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_paid_before_its_stock_was_found_missing_stays_paid_and_is_reported() {
    let app = TestApp::builder()
        .stock_settings(|settings| {
            settings.consumer.insufficient_retries = 1; // the verdict comes ~10 s later
        })
        .spawn()
        .await;
    let (stock, orders) = (&app.stock, &app.orders);
    open_sale(orders, 1, 5).await;
    set_stock(stock, 1, 0).await; // Redis admits, the DB has nothing
    let (status, placed) = place_order(orders, 7, 1, 1).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order_no = order_no(&placed);
    let (status, paid) = pay_order(orders, &order_no, 7, "pay-7").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "paid while the deduction waits: {paid}"
    );

    let report = eventually(
        "the missing stock reported",
        Duration::from_secs(60),
        || async {
            let (_, report) = orders
                .call(reqwest::Method::GET, "/api/admin/reconcile", None)
                .await;
            (report["products"][0]["paid_without_stock"] == 1).then_some(report)
        },
    )
    .await;
    let differences = report["products"][0]["differences"].to_string();
    assert!(differences.contains("refund needed"), "{report}");
    assert_eq!(report["consistent"], false);
    let order = wait_for_status(orders, &order_no, "PAID", Duration::from_secs(1)).await;
    assert!(
        order["closed_reason"].is_null(),
        "no other transition: {order}"
    );
    assert_eq!(stock_of(stock, 1).await, 0, "never negative");
    app.stop().await;
}
