//! Flash-sale admission in Redis: a flood of buyers, lost Redis state, and the
//! scripts' answers — against real Redis, MariaDB and the broker.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::services::{open_sale, place_order, sale_view, stock_of};
use seckill_tests::{TestEnv, db, eventually};

/// Fires `requests` orders of one item, request i from user (i % users) + first_user.
async fn flood(
    orders: &seckill_tests::services::RunningService,
    product: i64,
    requests: usize,
    users: i64,
    first_user: i64,
) -> Vec<(StatusCode, serde_json::Value)> {
    futures::stream::iter(0..requests)
        .map(|i| place_order(orders, first_user + (i as i64 % users), product, 1))
        .buffer_unordered(128)
        .collect()
        .await
}

fn codes(results: &[(StatusCode, serde_json::Value)]) -> HashMap<String, usize> {
    let mut codes = HashMap::new();
    for (status, body) in results {
        let key = if *status == StatusCode::CREATED {
            "CREATED".to_owned()
        } else {
            body["code"].as_str().unwrap_or("?").to_owned()
        };
        *codes.entry(key).or_default() += 1;
    }
    codes
}

async fn wait_quiet(env: &TestEnv, product: i64, committed: i64) {
    let stock_db = db::connect(&env.stock_db).await;
    eventually(
        "stock-service to apply every order",
        Duration::from_secs(60),
        || {
            let stock_db = stock_db.clone();
            async move {
                (db::scalar(
                    &stock_db,
                    "SELECT COUNT(*) FROM tx_log WHERE product_id = ?",
                    [product.into()],
                )
                .await
                    >= committed)
                    .then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_buyers_for_a_hundred_items_get_exactly_a_hundred_orders() {
    // Arrange
    let app = TestApp::spawn().await;
    let (env, stock, orders) = (&app.env, &app.stock, &app.orders);
    open_sale(orders, 1, 100).await;

    // Act: 2,000 requests from 500 users, 128 in flight.
    let results = flood(orders, 1, 2000, 500, 1).await;

    // Assert: 100 winners, each one order; everyone else told sold out or limit.
    let codes = codes(&results);
    assert_eq!(codes.get("CREATED"), Some(&100), "{codes:?}");
    assert_eq!(
        codes.get("SOLD_OUT").unwrap_or(&0) + codes.get("LIMIT_EXCEEDED").unwrap_or(&0),
        1900,
        "{codes:?}"
    );
    let order_db = db::connect(&env.order_db).await;
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        100
    );
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM (SELECT user_id FROM orders GROUP BY user_id HAVING COUNT(*) > 1) t", []).await,
        0,
        "a winner holds two orders"
    );
    wait_quiet(env, 1, 100).await;
    assert_eq!(stock_of(stock, 1).await, 0);
    assert_eq!(
        sale_view(orders, 1).await,
        (0, 100),
        "Redis stock == DB stock"
    );
    let stock_db = db::connect(&env.stock_db).await;
    assert_eq!(
        db::scalar(
            &stock_db,
            "SELECT COUNT(*) FROM tx_log WHERE outcome = 'DEDUCTED'",
            []
        )
        .await,
        100
    );

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_flush_mid_sale_refuses_orders_until_rebuilt_and_never_oversells() {
    // Arrange: a sale half sold; the automatic rebuild is too slow to matter here.
    let app = TestApp::spawn_with(|settings| settings.admission.ready_check_ms = 600_000).await;
    let (env, stock, orders) = (&app.env, &app.stock, &app.orders);
    open_sale(orders, 1, 100).await;
    let first = flood(orders, 1, 50, 50, 1).await;
    assert_eq!(codes(&first).get("CREATED"), Some(&50));

    // Act: Redis loses everything.
    env.flush_redis().await;

    // Assert: refused until rebuilt, then exactly the rest is sold.
    let (status, body) = place_order(orders, 1000, 1, 1).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "SALE_NOT_READY");
    let (status, body) = orders
        .call(Method::POST, "/api/admin/admission/rebuild", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rebuilt_sales"], 1);
    let (stock_left, reserved) = sale_view(orders, 1).await;
    assert_eq!(
        (stock_left, reserved),
        (50, 50),
        "rebuilt from the databases"
    );
    // The first 50 buyers are still held to their limit after the rebuild.
    let (status, body) = place_order(orders, 1, 1, 1).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "LIMIT_EXCEEDED");
    let second = flood(orders, 1, 300, 300, 2000).await;
    assert_eq!(
        codes(&second).get("CREATED"),
        Some(&50),
        "{:?}",
        codes(&second)
    );

    let order_db = db::connect(&env.order_db).await;
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        100
    );
    wait_quiet(env, 1, 100).await;
    assert_eq!(stock_of(stock, 1).await, 0);
    assert_eq!(sale_view(orders, 1).await.0, 0);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_admission_state_is_rebuilt_automatically() {
    let app = TestApp::spawn().await;
    let (env, orders) = (&app.env, &app.orders);
    open_sale(orders, 1, 3).await;
    let (status, _) = place_order(orders, 1, 1, 1).await;
    assert_eq!(status, StatusCode::CREATED);

    env.flush_redis().await;

    let placed = eventually(
        "orders to be admitted again",
        Duration::from_secs(30),
        || {
            let orders = &orders;
            async move {
                let (status, body) = place_order(orders, 2, 1, 1).await;
                match status {
                    StatusCode::SERVICE_UNAVAILABLE => None,
                    _ => Some((status, body)),
                }
            }
        },
    )
    .await;
    assert_eq!(placed.0, StatusCode::CREATED, "{}", placed.1);
    assert_eq!(sale_view(orders, 1).await, (1, 2));

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restock_reaches_every_instance_that_remembered_sold_out() {
    // Two instances; A remembers "sold out" for a minute unless told otherwise.
    let app = TestApp::spawn_with(|settings| settings.admission.sold_out_ttl_ms = 60_000).await;
    let a = &app.orders;
    let b = app.spawn_another_order_service(|_| {}).await;
    open_sale(a, 1, 1).await;
    assert_eq!(place_order(a, 1, 1, 1).await.0, StatusCode::CREATED);
    let (status, body) = place_order(a, 2, 1, 1).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("SOLD_OUT"))
    );

    // B restocks; A hears it over Redis pub/sub and admits again at once.
    open_sale(&b, 1, 5).await;
    eventually(
        "instance A to admit after the restock",
        Duration::from_secs(5),
        || async move {
            let (status, _) = place_order(a, 3, 1, 1).await;
            (status == StatusCode::CREATED).then_some(())
        },
    )
    .await;

    b.stop().await;
    app.stop().await;
}
