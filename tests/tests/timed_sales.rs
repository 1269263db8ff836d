//! Timed sales with a product and prices: orders are refused before the start
//! (with the time left) and after the end, in Redis's admission step and
//! without reserving anything; the window survives a Redis restart; an order
//! records its unit price and is paid with exactly its amount.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::eventually;
use serde_json::{Value, json};

fn at(offset: chrono::Duration) -> String {
    (Utc::now() + offset).to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn open(app: &TestApp, product: i64, terms: Value) -> Value {
    let (status, body) = app
        .orders
        .call(Method::PUT, &format!("/api/sales/{product}"), Some(&terms))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn sale(app: &TestApp, product: i64) -> Value {
    let (status, body) = app
        .orders
        .call(Method::GET, &format!("/api/sales/{product}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sale_refuses_orders_until_its_start_and_opens_exactly_then() {
    let app = TestApp::spawn().await;
    open(
        &app,
        1,
        json!({"stock": 5, "name": "Phone X", "list_price_cents": 199900,
               "sale_price_cents": 99900, "starts_at": at(chrono::Duration::seconds(3))}),
    )
    .await;
    let shown = sale(&app, 1).await;
    assert_eq!(shown["name"], "Phone X");
    assert_eq!(shown["list_price_cents"], 199900);
    assert_eq!(shown["sale_price_cents"], 99900);
    assert_eq!(shown["state"], "UPCOMING", "{shown}");
    assert!(
        shown["now"].is_string() && shown["starts_at"].is_string(),
        "{shown}"
    );
    let starts_in = shown["starts_in_ms"].as_i64().unwrap();
    assert!((1..=3000).contains(&starts_in), "{shown}");

    let early = app.place_order(1, 1, 1).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{:?}", early.body);
    assert_eq!(early.code(), Some("SALE_NOT_STARTED"));
    let left = early.body["starts_in_ms"].as_i64().unwrap();
    assert!((1..=3000).contains(&left), "{:?}", early.body);
    assert_eq!(
        app.sale_view(1).await,
        (5, 0),
        "nothing reserved before the start"
    );

    let placed = eventually("the sale to start", Duration::from_secs(10), || async {
        let answer = app.place_order(1, 1, 1).await;
        match answer.code() {
            Some("SALE_NOT_STARTED") => None,
            _ => Some(answer),
        }
    })
    .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    assert_eq!(sale(&app, 1).await["state"], "ON_SALE");
    assert_eq!(app.sale_view(1).await, (4, 1));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ended_sale_refuses_orders_and_the_window_survives_a_redis_restart() {
    let app = TestApp::spawn_with(|s| s.admission.ready_check_ms = 200).await;
    open(
        &app,
        1,
        json!({"stock": 5, "starts_at": at(chrono::Duration::hours(-2)),
               "ends_at": at(chrono::Duration::hours(-1))}),
    )
    .await;
    open(
        &app,
        2,
        json!({"stock": 5, "starts_at": at(chrono::Duration::hours(1))}),
    )
    .await;
    assert_eq!(sale(&app, 1).await["state"], "ENDED");
    let ended = app.place_order(1, 1, 1).await;
    assert_eq!(ended.status, StatusCode::CONFLICT);
    assert_eq!(ended.code(), Some("SALE_ENDED"));

    // Redis loses everything; once rebuilt from the order DB the windows hold.
    app.env.flush_redis().await;
    for (product, code) in [(1, "SALE_ENDED"), (2, "SALE_NOT_STARTED")] {
        let answer = eventually("the sale rebuilt", Duration::from_secs(30), || async {
            let answer = app.place_order(7, product, 1).await;
            (answer.code() != Some("SALE_NOT_READY")).then_some(answer)
        })
        .await;
        assert_eq!(
            answer.code(),
            Some(code),
            "product {product}: {:?}",
            answer.body
        );
    }
    assert_eq!(app.sale_view(1).await, (5, 0));
    assert_eq!(app.sale_view(2).await, (5, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_keeps_its_price_and_is_paid_with_exactly_its_amount() {
    let app = TestApp::spawn().await;
    open(
        &app,
        1,
        json!({"stock": 5, "per_user_limit": 2, "sale_price_cents": 990}),
    )
    .await;
    let placed = app.place_order(1, 1, 2).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    let order_no = placed.order_no().to_owned();
    // The price changes later (once the pipeline is quiet); the order keeps
    // the one it was bought at.
    eventually("the order deducted", Duration::from_secs(30), || async {
        (app.stock_of(1).await == 3).then_some(())
    })
    .await;
    open(
        &app,
        1,
        json!({"stock": 3, "per_user_limit": 2, "sale_price_cents": 1500}),
    )
    .await;

    let pay = |body: Value| {
        let app = &app;
        let path = format!("/api/orders/{order_no}/pay");
        async move { app.orders.call(Method::POST, &path, Some(&body)).await }
    };
    for wrong in [
        json!({"user_id": 1, "pay_no": "p-1", "amount_cents": 990}),
        json!({"user_id": 1, "pay_no": "p-1", "amount_cents": 3000}),
        json!({"user_id": 1, "pay_no": "p-1"}),
    ] {
        let (status, answer) = pay(wrong.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{wrong}: {answer}");
        assert_eq!(answer["code"], "AMOUNT_MISMATCH", "{wrong}: {answer}");
        assert_eq!(answer["amount_cents"], 1980, "{answer}");
    }
    let (status, answer) = pay(json!({"user_id": 1, "pay_no": "p-1", "amount_cents": -5})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["field"], "amount_cents");
    let (status, paid) = pay(json!({"user_id": 1, "pay_no": "p-1", "amount_cents": 1980})).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "PAID");
    assert_eq!(paid["unit_price_cents"], 990);
    assert_eq!(paid["amount_cents"], 1980);
    app.stop().await;
}
