//! The hidden order path: `POST /api/orders` needs a one-time `Order-Token`
//! from `POST /api/sales/{id}/order-token`, good once, for its buyer and
//! product only, for a short time; the token request refuses what an order
//! would be refused for (not started, sold out, over the limit) without
//! reserving anything.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::auth::{Caller, buyer_token};
use seckill_tests::services::RunningService;
use serde_json::{Value, json};

/// `POST /api/orders` as `user` with `token` (or none), without the harness's own token.
async fn order_with(
    app: &TestApp,
    user: i64,
    product: i64,
    token: Option<&str>,
) -> (StatusCode, Value) {
    order_on(&app.orders, user, product, token, None).await
}

/// `POST /api/orders` to `orders` as `user`, with `token` and `key` when given.
async fn order_on(
    orders: &RunningService,
    user: i64,
    product: i64,
    token: Option<&str>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/orders", orders.base_url))
        .bearer_auth(buyer_token(user))
        .json(&json!({"product_id": product, "count": 1}));
    if let Some(token) = token {
        request = request.header("Order-Token", token);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("order request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_needs_a_fresh_token_of_its_own_buyer_and_product() {
    let app = TestApp::spawn().await;
    seckill_tests::services::open_sale_with_limit(&app.orders, 1, 5, 3).await;
    app.open_sale(2, 5).await;
    let token = app.orders.order_token(1, 1).await.expect("a token");
    let other_product = app.orders.order_token(1, 2).await.expect("a token");

    for (user, product, sent) in [
        (1, 1, None),
        (1, 1, Some("not a token!")),
        (1, 1, Some("0123456789abcdef0123456789abcdef")),
        (2, 1, Some(token.as_str())),
        (1, 1, Some(other_product.as_str())),
    ] {
        let (status, answer) = order_with(&app, user, product, sent).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{user}/{product}/{sent:?}: {answer}"
        );
        assert_eq!(answer["code"], "ORDER_TOKEN_INVALID", "{answer}");
    }
    assert_eq!(
        app.sale_view(1).await,
        (5, 0),
        "nothing reserved by a refused order"
    );

    let (status, placed) = order_with(&app, 1, 1, Some(&token)).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let (status, again) = order_with(&app, 1, 1, Some(&token)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a token is good once: {again}"
    );
    assert_eq!(again["code"], "ORDER_TOKEN_INVALID");
    assert_eq!(app.sale_view(1).await, (4, 1));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_expires() {
    let app = TestApp::spawn_with(|s| s.orders.order_token_ttl_ms = 300).await;
    app.open_sale(1, 5).await;
    let (status, issued) = app
        .orders
        .call_as(
            Caller::Buyer(1),
            Method::POST,
            "/api/sales/1/order-token",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["expires_in_ms"], 300);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, answer) = order_with(&app, 1, 1, issued["order_token"].as_str()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["code"], "ORDER_TOKEN_INVALID");
    assert_eq!(app.sale_view(1).await, (5, 0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_token_request_refuses_what_an_order_would_be_refused_for() {
    let app = TestApp::spawn().await;
    app.open_sale(1, 1).await;
    let starts_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) = app
        .orders
        .call(
            Method::PUT,
            "/api/sales/2",
            Some(&json!({"stock": 5, "starts_at": starts_at})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let token_for = |user: i64, product: i64| {
        let orders = &app.orders;
        async move {
            orders
                .call_as(
                    Caller::Buyer(user),
                    Method::POST,
                    &format!("/api/sales/{product}/order-token"),
                    None,
                )
                .await
        }
    };
    let anonymous_token_request = || {
        app.orders.call_as(
            Caller::Anonymous,
            Method::POST,
            "/api/sales/1/order-token",
            None,
        )
    };
    let (status, answer) = token_for(1, 2).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::CONFLICT, Some("SALE_NOT_STARTED")),
        "{answer}"
    );
    assert!(
        answer["starts_in_ms"].as_i64().unwrap() > 3_000_000,
        "{answer}"
    );
    let (status, answer) = token_for(1, 3).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("PRODUCT_NOT_ON_SALE"))
    );
    let (status, answer) = anonymous_token_request().await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED"))
    );

    // Buyer 1 takes the only item: it is over its limit, everyone else sold out
    // (the second time from memory, without Redis).
    assert_eq!(app.place_order(1, 1, 1).await.status, StatusCode::CREATED);
    let (status, answer) = token_for(1, 1).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    for user in [2, 3] {
        let (status, answer) = token_for(user, 1).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::CONFLICT, Some("SOLD_OUT")),
            "{answer}"
        );
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("seckill_order_requests_total{outcome=\"sold_out\"} 3"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("order_requests"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(app.sale_view(1).await, (0, 1));

    // Seen sold out, a token request is answered before anything else, even
    // before the caller is authenticated (sold out is public).
    let (status, answer) = anonymous_token_request().await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::CONFLICT, Some("SOLD_OUT")),
        "{answer}"
    );
    app.stop().await;
}

/// Found by the chaos suite against the containers (`retry-storm`, two
/// replicas): a keyed retry of an order refused SOLD_OUT reached the replica
/// that had not seen the sale sold out, and was told 403 ORDER_TOKEN_INVALID
/// (the refusal had used the token up). A refusal leaves the token good: the
/// retry is told what the first attempt was, and once a cancellation gives an
/// item back, the same token places the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_order_leaves_its_token_good_for_the_retry_on_another_replica() {
    // Arrange: one item; buyer 7 holds a token while buyer 8 takes the item.
    let app = TestApp::spawn().await;
    let other = app.spawn_another_order_service(|_| {}).await;
    app.open_sale(1, 1).await;
    let token = app.orders.order_token(7, 1).await.expect("a token");
    let taken = app.place_order(8, 1, 1).await;
    assert_eq!(taken.status, StatusCode::CREATED, "{:?}", taken.body);

    // Act: buyer 7 orders on the first replica, retries on the other.
    let first = order_on(&app.orders, 7, 1, Some(&token), Some("storm-1")).await;
    let retry = order_on(&other, 7, 1, Some(&token), Some("storm-1")).await;

    // Assert: both told SOLD_OUT (the retry was 403 ORDER_TOKEN_INVALID).
    for (status, answer) in [&first, &retry] {
        assert_eq!(
            (*status, answer["code"].as_str()),
            (StatusCode::CONFLICT, Some("SOLD_OUT")),
            "{answer}"
        );
    }
    assert_eq!(app.sale_view(1).await, (0, 1));

    // A cancellation gives the item back; the other replica (which has not
    // seen the sale sold out) places buyer 7's retry with the same token.
    let cancelled = app.cancel_order(taken.order_no(), 8).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    let (status, placed) = order_on(&other, 7, 1, Some(&token), Some("storm-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(app.sale_view(1).await, (0, 1));
    other.stop().await;
    app.stop().await;
}
