//! The figures behind the dashboard and `/metrics` on both services, the
//! sales list of the order page, and the batch purchase the `/batch` page runs.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::eventually;
use seckill_tests::services::{RunningService, cancel_order, open_sale, place_order, stock_of};
use serde_json::{Value, json};

async fn text(service: &RunningService, path: &str) -> String {
    let response = service
        .http
        .get(format!("{}{path}", service.base_url))
        .bearer_auth(seckill_tests::auth::admin_token())
        .send()
        .await
        .expect("HTTP request");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_and_metrics_show_stock_orders_by_status_and_dedupe() {
    let app = TestApp::spawn().await;
    let (stock, orders) = (&app.stock, &app.orders);
    open_sale(orders, 1, 5).await;
    let kept = place_order(orders, 1, 1, 1).await;
    assert_eq!(kept.0, StatusCode::CREATED, "{}", kept.1);
    let (_, cancelled) = place_order(orders, 2, 1, 2).await;
    let order_no = cancelled["order_no"].as_str().unwrap();
    // Both deductions first, so the cancellation restores (not voids) and the
    // counters below do not depend on which message arrives first.
    eventually("both orders deducted", Duration::from_secs(30), || async {
        (stock_of(stock, 1).await == 2).then_some(())
    })
    .await;
    assert_eq!(cancel_order(orders, order_no, 2).await.0, StatusCode::OK);
    assert_eq!(place_order(orders, 1, 1, 1).await.0, StatusCode::CONFLICT);

    let product: Value = eventually("figures settle", Duration::from_secs(30), || async {
        let (status, body) = orders.call(Method::GET, "/api/admin/dashboard", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let product = body["products"][0].clone();
        (product["verdict"] == "ok" && product["db_stock"] == 4).then_some(product)
    })
    .await;
    assert_eq!(product["redis_stock"], 4);
    assert_eq!(
        product["orders"],
        json!({"NEW": 1, "PAID": 0, "CANCELLED": 1, "FAILED": 0})
    );
    assert_eq!(product["backlog"], 0);
    assert_eq!(product["opened_stock"], 5);

    let (_, sales) = orders.call(Method::GET, "/api/sales", None).await;
    assert_eq!(sales["sales"][0]["product_id"], 1);
    assert_eq!(sales["sales"][0]["stock"], 4);

    let order_metrics = text(orders, "/metrics").await;
    for line in [
        "seckill_order_requests_total{outcome=\"created\"} 2",
        "seckill_order_requests_total{outcome=\"limit_exceeded\"} 1",
        "seckill_orders_closed_total{reason=\"buyer\"} 1",
        "seckill_orders{product=\"1\",status=\"CANCELLED\"} 1",
        "seckill_redis_stock{product=\"1\"} 4",
        "seckill_message_backlog{product=\"1\"} 0",
        "seckill_dead_letters_unresolved 0",
    ] {
        assert!(
            order_metrics.contains(line),
            "{line} missing from:\n{order_metrics}"
        );
    }
    let stock_metrics = text(stock, "/metrics").await;
    for line in [
        "seckill_stock_messages_total{result=\"deducted\"} 2",
        "seckill_stock_messages_total{result=\"restored\"} 1",
        "seckill_stock_total_count{product=\"1\"} 4",
    ] {
        assert!(
            stock_metrics.contains(line),
            "{line} missing from:\n{stock_metrics}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_purchase_sells_exactly_the_stock_and_checks_the_invariants() {
    let app = TestApp::spawn().await;
    let orders = &app.orders;
    let (status, body) = orders
        .call(
            Method::POST,
            "/api/admin/batch",
            Some(&json!({"buyers": 0, "concurrency": 8, "stock": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "buyers");

    let (status, started) = orders
        .call(
            Method::POST,
            "/api/admin/batch",
            Some(&json!({"buyers": 200, "concurrency": 32, "stock": 50})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let path = format!("/api/admin/batch/{}", started["id"].as_str().unwrap());
    let done = eventually("batch done", Duration::from_secs(90), || async {
        let (_, status) = orders.call(Method::GET, &path, None).await;
        assert_ne!(status["state"], "failed", "{status}");
        (status["state"] == "done").then_some(status)
    })
    .await;
    assert_eq!(done["answered"], 200, "{done}");
    assert_eq!(done["created"], 50, "{done}");
    assert_eq!(done["rejections"]["SOLD_OUT"], 150, "{done}");
    let checks = &done["checks"];
    assert_eq!(checks["oversold"], 0, "{done}");
    assert_eq!(checks["items_sold"], 50);
    assert_eq!(checks["db_stock"], 0);
    assert_eq!(checks["redis_equals_db"], true);
    assert_eq!(checks["passed"], true);
    let (status, _) = orders
        .call(Method::GET, "/api/admin/batch/bnope", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

/// `/metrics` keeps this instance's counters when the per-product figures
/// cannot be read (stock-service away): Prometheus does not lose them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_keep_the_counters_while_stock_service_is_away() {
    let TestApp {
        env: _env,
        stock,
        orders,
    } = TestApp::spawn().await;
    let scrape = || async {
        let response = orders
            .http
            .get(format!("{}/metrics", orders.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    };
    assert!(scrape().await.contains("seckill_figures_available 1"));
    stock.stop().await;

    let text = scrape().await;
    assert!(
        text.contains("seckill_order_requests_total{outcome=\"created\"} 0"),
        "{text}"
    );
    assert!(text.contains("seckill_figures_available 0"), "{text}");
    orders.stop().await;
}
