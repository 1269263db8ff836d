//! Per-user and per-address limits on placing orders: 429 RATE_LIMITED with Retry-After.

use reqwest::StatusCode;
use seckill_tests::services::{
    open_sale_with_limit, order_settings, spawn_order_service_with, spawn_stock_service,
};
use seckill_tests::{TestEnv, db};
use serde_json::json;

async fn post(
    http: &reqwest::Client,
    base: &str,
    user: i64,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = http
        .post(format!("{base}/api/orders"))
        .json(&json!({"user_id": user, "product_id": 1, "count": 1}));
    if let Some(ip) = forwarded_for {
        request = request.header("X-Forwarded-For", ip);
    }
    request.send().await.expect("HTTP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_over_the_limit_is_told_when_to_retry() {
    let env = TestEnv::new();
    let stock = spawn_stock_service(&env).await;
    let mut settings = order_settings(&env, &stock.base_url);
    settings.rate_limit.per_user_per_sec = 1;
    settings.rate_limit.per_user_burst = 2;
    let orders = spawn_order_service_with(settings).await;
    open_sale_with_limit(&orders, 1, 100, 100).await;
    let http = reqwest::Client::new();

    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = post(&http, &orders.base_url, 1, None).await;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["code"], "RATE_LIMITED");
        }
        statuses.push(status);
    }
    assert_eq!(
        &statuses[..2],
        [StatusCode::CREATED, StatusCode::CREATED],
        "{statuses:?}"
    );
    assert!(
        statuses[2..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Another user is not affected.
    assert_eq!(
        post(&http, &orders.base_url, 2, None).await.status(),
        StatusCode::CREATED
    );
    let order_db = db::connect(&env.order_db).await;
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        3
    );

    orders.stop().await;
    stock.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_address_over_the_limit_is_refused_per_forwarded_address() {
    let env = TestEnv::new();
    let stock = spawn_stock_service(&env).await;
    let mut settings = order_settings(&env, &stock.base_url);
    settings.rate_limit.per_address_per_sec = 1;
    settings.rate_limit.per_address_burst = 3;
    settings.rate_limit.trust_forwarded_for = true;
    let orders = spawn_order_service_with(settings).await;
    open_sale_with_limit(&orders, 1, 100, 1).await;
    let http = reqwest::Client::new();

    let mut statuses = Vec::new();
    for user in 1..=5 {
        statuses.push(
            post(&http, &orders.base_url, user, Some("203.0.113.7"))
                .await
                .status(),
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // A buyer behind another address still gets through.
    assert_eq!(
        post(&http, &orders.base_url, 6, Some("198.51.100.9"))
            .await
            .status(),
        StatusCode::CREATED
    );

    orders.stop().await;
    stock.stop().await;
}
