//! Per-user and per-address limits on placing orders: 429 RATE_LIMITED with Retry-After.

use reqwest::StatusCode;
use seckill_tests::app::TestApp;
use seckill_tests::db;
use seckill_tests::services::open_sale_with_limit;
use serde_json::json;

async fn post(
    http: &reqwest::Client,
    base: &str,
    user: i64,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = http
        .post(format!("{base}/api/orders"))
        .bearer_auth(seckill_tests::auth::buyer_token(user))
        .json(&json!({"user_id": user, "product_id": 1, "count": 1}));
    if let Some(ip) = forwarded_for {
        request = request.header("X-Forwarded-For", ip);
    }
    request.send().await.expect("HTTP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_over_the_limit_is_told_when_to_retry() {
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limit.per_user_per_sec = 1;
        settings.rate_limit.per_user_burst = 2;
        // These count order requests alone, without the token requests.
        settings.orders.require_order_token = false;
    })
    .await;
    let (env, orders) = (&app.env, &app.orders);
    open_sale_with_limit(orders, 1, 100, 100).await;
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

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_address_over_the_limit_is_refused_per_forwarded_address() {
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limit.per_address_per_sec = 1;
        settings.rate_limit.per_address_burst = 3;
        settings.orders.require_order_token = false;
        settings.rate_limit.trust_forwarded_for = true;
    })
    .await;
    let orders = &app.orders;
    open_sale_with_limit(orders, 1, 100, 1).await;
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

    app.stop().await;
}

/// Two replicas share one limit: a user spreading requests over both gets the
/// limit's burst in all, not twice it (the buckets live in Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_hold_one_limit_between_them() {
    let limited = |settings: &mut order_service::settings::Settings| {
        settings.rate_limit.per_user_per_sec = 1;
        settings.rate_limit.per_user_burst = 3;
        settings.orders.require_order_token = false;
    };
    let app = seckill_tests::app::TestApp::spawn_with(limited).await;
    let replica = app.spawn_another_order_service(limited).await;
    open_sale_with_limit(&app.orders, 1, 100, 100).await;
    let http = reqwest::Client::new();

    let mut created = 0;
    let mut limited_answers = 0;
    for i in 0..8 {
        let base = if i % 2 == 0 {
            &app.orders.base_url
        } else {
            &replica.base_url
        };
        match post(&http, base, 7, None).await.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => limited_answers += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // A burst of 3 (plus at most one token refilled while the 8 requests ran).
    assert!(
        (3..=4).contains(&created),
        "created {created} across two replicas"
    );
    assert_eq!(created + limited_answers, 8);
    replica.stop().await;
    app.stop().await;
}

/// The token request and the keyed order count against the same shared
/// buckets as the plain order, each by its own path: the token script counts
/// it in its own round trip, the keyed order is checked alone before its
/// Idempotency-Key is claimed. Spread over two replicas, each path admits the
/// burst in all, not twice it; the refused get 429 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_requests_and_keyed_orders_hold_the_shared_limit_across_replicas() {
    let limited = |settings: &mut order_service::settings::Settings| {
        settings.rate_limit.per_user_per_sec = 1;
        settings.rate_limit.per_user_burst = 3;
        settings.orders.require_order_token = false;
    };
    let app = TestApp::spawn_with(limited).await;
    let replica = app.spawn_another_order_service(limited).await;
    open_sale_with_limit(&app.orders, 1, 100, 100).await;
    let http = reqwest::Client::new();
    let bases = [&app.orders.base_url, &replica.base_url];

    // Token requests of user 8.
    let mut issued = 0;
    for i in 0..8 {
        let response = http
            .post(format!("{}/api/sales/1/order-token", bases[i % 2]))
            .bearer_auth(seckill_tests::auth::buyer_token(8))
            .send()
            .await
            .expect("HTTP");
        match response.status() {
            StatusCode::OK => issued += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(response.headers().contains_key("retry-after"));
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["code"], "RATE_LIMITED");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (3..=4).contains(&issued),
        "{issued} tokens across two replicas"
    );

    // Keyed orders of user 9, each with its own key.
    let mut created = 0;
    let mut refused_keys = Vec::new();
    for i in 0..8 {
        let response = http
            .post(format!("{}/api/orders", bases[i % 2]))
            .bearer_auth(seckill_tests::auth::buyer_token(9))
            .header("Idempotency-Key", format!("rate-{i}"))
            .json(&json!({"product_id": 1, "count": 1}))
            .send()
            .await
            .expect("HTTP");
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => refused_keys.push(format!("rate-{i}")),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (3..=4).contains(&created),
        "{created} keyed orders across two replicas"
    );
    // A refused keyed request left no claim on its key: sent again once the
    // bucket refills, it is placed (not replayed, not PENDING).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let retried = http
        .post(format!("{}/api/orders", app.orders.base_url))
        .bearer_auth(seckill_tests::auth::buyer_token(9))
        .header("Idempotency-Key", &refused_keys[0])
        .json(&json!({"product_id": 1, "count": 1}))
        .send()
        .await
        .expect("HTTP");
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert!(!retried.headers().contains_key("idempotent-replayed"));

    replica.stop().await;
    app.stop().await;
}
