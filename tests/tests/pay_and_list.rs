//! Paying an order (NEW → PAID, idempotent per pay_no, one winner among racing
//! payments) and listing a user's orders.

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::db;
use seckill_tests::services::{open_sale_with_limit, place_order};
use serde_json::json;

use seckill_tests::services::pay_order as pay;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paying_an_order_is_idempotent_and_only_for_its_buyer() {
    let app = TestApp::spawn().await;
    let orders = &app.orders;
    open_sale_with_limit(orders, 1, 10, 1).await;
    let (_, placed) = place_order(orders, 7, 1, 1).await;
    let order_no = placed["order_no"].as_str().unwrap().to_owned();

    let (status, paid) = pay(orders, &order_no, 7, "pay-123").await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "PAID");
    assert_eq!(paid["pay_no"], "pay-123");
    assert!(paid["paid_at"].is_string());
    let (status, again) = pay(orders, &order_no, 7, "pay-123").await;
    assert_eq!(status, StatusCode::OK, "same pay_no again: {again}");
    assert_eq!(again["paid_at"], paid["paid_at"], "nothing changed");

    let (status, body) = pay(orders, &order_no, 7, "pay-999").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "ORDER_NOT_PAYABLE");
    let (status, body) = pay(orders, &order_no, 8, "pay-123").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another user's order: {body}"
    );
    assert_eq!(body["code"], "ORDER_NOT_FOUND");
    let (status, _) = pay(orders, "o-unknown", 7, "pay-123").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (body, field) in [
        (json!({"user_id": 7}), "pay_no"),
        (json!({"user_id": 7, "pay_no": ""}), "pay_no"),
        (json!({"user_id": 7, "pay_no": 5}), "pay_no"),
        (json!({"user_id": 7, "pay_no": "has space"}), "pay_no"),
        // (Without user_id the token names the buyer: tests/tests/auth.rs.)
    ] {
        let (status, answer) = orders
            .call(
                Method::POST,
                &format!("/api/orders/{order_no}/pay"),
                Some(&body),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["field"], field, "{body} -> {answer}");
    }
    let (_, order) = orders
        .call(Method::GET, &format!("/api/orders/{order_no}"), None)
        .await;
    assert_eq!(
        (order["status"].as_str(), order["pay_no"].as_str()),
        (Some("PAID"), Some("pay-123"))
    );

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_racing_payments_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let (env, orders) = (&app.env, &app.orders);
    open_sale_with_limit(orders, 1, 10, 1).await;
    let (_, placed) = place_order(orders, 7, 1, 1).await;
    let order_no = placed["order_no"].as_str().unwrap().to_owned();

    let answers: Vec<_> = futures::stream::iter(0..10)
        .map(|i| {
            let order_no = order_no.clone();
            let orders = &orders;
            async move { pay(orders, &order_no, 7, &format!("pay-{i}")).await }
        })
        .buffer_unordered(10)
        .collect()
        .await;

    let winners: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
        "{answers:?}"
    );
    let order_db = db::connect(&env.order_db).await;
    let stored = db::text(
        &order_db,
        "SELECT pay_no FROM orders WHERE order_no = ?",
        [order_no.into()],
    )
    .await;
    assert_eq!(stored.as_deref(), winners[0].1["pay_no"].as_str());

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_orders_are_listed_newest_first_in_pages() {
    let app = TestApp::spawn().await;
    let orders = &app.orders;
    let mut placed = Vec::new();
    for product in 1..=3 {
        open_sale_with_limit(orders, product, 5, 1).await;
        let (status, body) = place_order(orders, 42, product, 1).await;
        assert_eq!(status, StatusCode::CREATED);
        placed.push(body["order_no"].as_str().unwrap().to_owned());
    }
    let (_, _) = place_order(orders, 43, 1, 1).await;

    let (status, page) = orders
        .call(Method::GET, "/api/orders?user_id=42&page_size=2", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 3);
    let listed: Vec<_> = page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_no"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [placed[2].as_str(), placed[1].as_str()]);
    let (_, page2) = orders
        .call(
            Method::GET,
            "/api/orders?user_id=42&page_size=2&page=2",
            None,
        )
        .await;
    assert_eq!(page2["orders"].as_array().unwrap().len(), 1);
    assert_eq!(page2["orders"][0]["order_no"], placed[0].as_str());
    let (_, nobody) = orders
        .call(Method::GET, "/api/orders?user_id=999", None)
        .await;
    assert_eq!(
        (
            nobody["total"].as_i64(),
            nobody["orders"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );

    for (query, field) in [
        ("", "user_id"),
        ("?user_id=abc", "user_id"),
        ("?user_id=0", "user_id"),
        ("?user_id=1&page=0", "page"),
        ("?user_id=1&page_size=101", "page_size"),
        ("?user_id=1&page_size=x", "page_size"),
    ] {
        let (status, answer) = orders
            .call(Method::GET, &format!("/api/orders{query}"), None)
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query} -> {answer}"
        );
        assert_eq!(answer["field"], field, "{query} -> {answer}");
    }

    app.stop().await;
}
