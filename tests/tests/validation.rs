//! Bad input gets a 4xx JSON answer naming the problem, and writes nothing.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::db;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_order_input_is_refused_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let (env, orders) = (&app.env, &app.orders);

    let json_cases = [
        (json!([1, 2]), "body"),
        // (A body without user_id is ordered for the token's buyer: tests/tests/auth.rs.)
        (json!({"user_id": 1, "count": 1}), "product_id"),
        (json!({"user_id": 1, "product_id": 1}), "count"),
        (
            json!({"user_id": 1, "product_id": 1, "count": null}),
            "count",
        ),
        (
            json!({"user_id": 1, "product_id": 1, "count": "2"}),
            "count",
        ),
        (
            json!({"user_id": 1, "product_id": 1, "count": 1.5}),
            "count",
        ),
        (json!({"user_id": 1, "product_id": 1, "count": 0}), "count"),
        (json!({"user_id": 1, "product_id": 1, "count": -1}), "count"),
        (json!({"user_id": 1, "product_id": 1, "count": 6}), "count"),
        (
            json!({"user_id": 1, "product_id": 1, "count": 1e30}),
            "count",
        ),
        (
            json!({"user_id": 0, "product_id": 1, "count": 1}),
            "user_id",
        ),
        (
            json!({"user_id": -4, "product_id": 1, "count": 1}),
            "user_id",
        ),
        (
            json!({"user_id": true, "product_id": 1, "count": 1}),
            "user_id",
        ),
        (
            json!({"user_id": 1, "product_id": 0, "count": 1}),
            "product_id",
        ),
        (
            json!({"user_id": 1, "product_id": "x", "count": 1}),
            "product_id",
        ),
    ];
    for (body, field) in &json_cases {
        let (status, answer) = orders.call(Method::POST, "/api/orders", Some(body)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["code"], "INVALID_FIELD", "{body} -> {answer}");
        assert_eq!(answer["field"], *field, "{body} -> {answer}");
        assert!(
            answer["message"].as_str().unwrap().starts_with(field),
            "{body} -> {answer}"
        );
    }

    let raw_cases = [
        (
            "application/json",
            "{\"user_id\": 1,",
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
        ),
        (
            "application/json",
            "",
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
        ),
        (
            "text/plain",
            "{\"user_id\":1,\"product_id\":1,\"count\":1}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ];
    for (content_type, body, expected, code) in raw_cases {
        let (status, answer) = orders.call_raw("/api/orders", content_type, body).await;
        assert_eq!(status, expected, "{body:?} -> {answer}");
        assert_eq!(answer["code"], code, "{body:?} -> {answer}");
    }
    let huge = Box::leak(
        format!(
            "{{\"user_id\":1,\"product_id\":1,\"count\":1,\"pad\":\"{}\"}}",
            "x".repeat(64 * 1024)
        )
        .into_boxed_str(),
    );
    let (status, answer) = orders
        .call_raw("/api/orders", "application/json", huge)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["code"], "PAYLOAD_TOO_LARGE");

    for path in [
        "/api/orders/o-unknown",
        "/api/orders/not%20an%20order",
        "/api/orders/x'--",
    ] {
        let (status, answer) = orders.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} -> {answer}");
        assert_eq!(answer["code"], "ORDER_NOT_FOUND", "{path} -> {answer}");
    }
    let (status, answer) = orders
        .call(
            Method::POST,
            "/api/orders",
            Some(&json!({"user_id": 1, "product_id": 77, "count": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "PRODUCT_NOT_ON_SALE");

    let sale_cases = [
        ("/api/sales/1", json!({"stock": -1}), "stock"),
        ("/api/sales/1", json!({}), "stock"),
        ("/api/sales/1", json!({"stock": "9"}), "stock"),
        (
            "/api/sales/1",
            json!({"stock": 5, "per_user_limit": 0}),
            "per_user_limit",
        ),
        (
            "/api/sales/1",
            json!({"stock": 5, "per_user_limit": "x"}),
            "per_user_limit",
        ),
        ("/api/sales/0", json!({"stock": 5}), "product_id"),
        ("/api/sales/abc", json!({"stock": 5}), "product_id"),
    ];
    for (path, body, field) in &sale_cases {
        let (status, answer) = orders.call(Method::PUT, path, Some(body)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body} -> {answer}"
        );
        assert_eq!(answer["field"], *field, "{path} {body} -> {answer}");
    }
    let (status, answer) = orders.call(Method::GET, "/api/sales/77", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "PRODUCT_NOT_ON_SALE");

    let (status, answer) = orders.call(Method::GET, "/api/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["code"], "NOT_FOUND");

    // Nothing written, nothing sent (the stock service would have logged it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let order_db = db::connect(&env.order_db).await;
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        0
    );
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM tx_log", []).await,
        0
    );
    let stock_db = db::connect(&env.stock_db).await;
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        0
    );

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_stock_input_is_refused_and_nothing_is_written() {
    let app = TestApp::builder().spawn_stock().await;
    let (env, stock) = (&app.env, &app.stock);

    let cases = [
        (
            "/api/stock/1",
            json!({"total_count": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "total_count",
        ),
        (
            "/api/stock/1",
            json!({"total_count": 3_000_000_000_i64}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "total_count",
        ),
        (
            "/api/stock/1",
            json!({"total_count": "5"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "total_count",
        ),
        (
            "/api/stock/1",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "total_count",
        ),
        (
            "/api/stock/0",
            json!({"total_count": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "product_id",
        ),
        (
            "/api/stock/abc",
            json!({"total_count": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "product_id",
        ),
    ];
    for (path, body, expected, field) in &cases {
        let (status, answer) = stock.call(Method::PUT, path, Some(body)).await;
        assert_eq!(status, *expected, "{path} {body} -> {answer}");
        assert_eq!(answer["field"], *field, "{path} {body} -> {answer}");
    }
    for path in ["/api/stock/1", "/api/stock/abc", "/api/stock/-1"] {
        let (status, answer) = stock.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} -> {answer}");
        assert_eq!(answer["code"], "PRODUCT_NOT_FOUND");
    }
    let stock_db = db::connect(&env.stock_db).await;
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM stock", []).await,
        0
    );

    app.stop().await;
}

/// The redelivery pass asks about up to 1,000 tx_nos of up to 64 characters
/// at once: such a query is answered (it was refused with 413 by the default
/// 16 KiB body limit), and 1,001 are refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_largest_applied_query_is_answered_and_a_larger_one_is_refused() {
    let app = TestApp::builder().spawn_stock().await;
    let stock = &app.stock;
    let tx_nos = |n: usize| {
        (0..n)
            .map(|i| format!("tx{i:062}"))
            .collect::<Vec<String>>()
    };

    let (status, body) = stock
        .call(
            Method::POST,
            "/api/stock/applied",
            Some(&json!({ "tx_nos": tx_nos(1000) })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"], json!([]));

    let (status, body) = stock
        .call(
            Method::POST,
            "/api/stock/applied",
            Some(&json!({ "tx_nos": tx_nos(1001) })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "INVALID_FIELD");
    app.stop().await;
}
