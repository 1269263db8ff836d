//! Identity: without a valid token nothing but the public endpoints answer;
//! a buyer acts only as itself and sees only its own orders; only an admin
//! opens sales, sets stock and reads the admin endpoints.

use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::auth::{Caller, admin_token};
use seckill_tests::services::{order_of, order_service_command};
use serde_json::{Value, json};

/// `(status, body)` of a request with a raw `Authorization` header value.
async fn with_header(url: &str, method: Method, header: Option<&str>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(header) = header {
        request = request.header("Authorization", header);
    }
    let response = request
        .json(&json!({"product_id": 1, "count": 1, "stock": 5, "total_count": 5}))
        .send()
        .await
        .expect("HTTP request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_valid_token_only_the_public_endpoints_answer() {
    let app = TestApp::spawn().await;
    app.open_sale(1, 5).await;
    let (orders, stock) = (&app.orders.base_url, &app.stock.base_url);

    let protected = [
        (Method::POST, format!("{orders}/api/orders")),
        (Method::GET, format!("{orders}/api/orders")),
        (Method::PUT, format!("{orders}/api/sales/1")),
        (Method::GET, format!("{orders}/api/admin/reconcile")),
        (Method::GET, format!("{orders}/api/admin/dashboard")),
        (Method::GET, format!("{orders}/api/admin/metrics")),
        (Method::POST, format!("{orders}/api/admin/batch")),
        (Method::PUT, format!("{stock}/api/stock/1")),
        (Method::GET, format!("{stock}/api/stock/stats")),
        (Method::POST, format!("{stock}/api/stock/applied")),
    ];
    let expired = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let claims = json!({"sub": "1", "iss": "seckill", "aud": "seckill-api", "iat": 0,
            "exp": chrono::Utc::now().timestamp() - 600, "roles": ["buyer", "admin"]});
        let secret = seckill_tests::auth::secret();
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let forged = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let claims = json!({"sub": "1", "iss": "seckill", "aud": "seckill-api", "iat": 0,
            "exp": chrono::Utc::now().timestamp() + 600, "roles": ["buyer", "admin"]});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"not the services' secret, but 32+ bytes long"),
        )
        .unwrap()
    };
    let bad_headers = [
        None,
        Some("Bearer".to_owned()),
        Some("Bearer not-a-jwt".to_owned()),
        Some(format!("Basic {}", admin_token())),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {forged}")),
    ];
    for (method, url) in &protected {
        for header in &bad_headers {
            let (status, body) = with_header(url, method.clone(), header.as_deref()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {url} with {header:?}: {body}"
            );
            assert_eq!(body["code"], "UNAUTHENTICATED", "{method} {url}: {body}");
        }
    }
    // Nothing was changed by the refused requests.
    assert_eq!(app.sale_view(1).await, (5, 0));
    assert_eq!(app.stock_of(1).await, 5);

    for url in [
        format!("{orders}/api/sales"),
        format!("{orders}/api/sales/1"),
        format!("{orders}/healthz"),
        format!("{orders}/metrics"),
        format!("{stock}/api/stock/1"),
        format!("{stock}/metrics"),
    ] {
        let status = reqwest::get(&url).await.expect("GET").status();
        assert_eq!(status, StatusCode::OK, "{url} is public");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_is_refused_every_admin_operation() {
    let app = TestApp::spawn().await;
    app.open_sale(1, 5).await;
    let buyer = Caller::Buyer(7);
    let body = json!({"stock": 50, "total_count": 50, "buyers": 10, "concurrency": 1});
    for (service, method, path) in [
        (&app.orders, Method::PUT, "/api/sales/1"),
        (&app.orders, Method::PUT, "/api/sales/2"),
        (&app.orders, Method::GET, "/api/admin/reconcile"),
        (&app.orders, Method::POST, "/api/admin/reconcile/repair"),
        (&app.orders, Method::POST, "/api/admin/admission/rebuild"),
        (&app.orders, Method::GET, "/api/admin/dashboard"),
        (&app.orders, Method::GET, "/api/admin/metrics"),
        (&app.orders, Method::POST, "/api/admin/batch"),
        (
            &app.orders,
            Method::POST,
            "/api/admin/dead-letters/x/resolve",
        ),
        (&app.stock, Method::PUT, "/api/stock/1"),
        (&app.stock, Method::GET, "/api/stock/stats"),
        (&app.stock, Method::GET, "/api/admin/metrics"),
    ] {
        let (status, answer) = service
            .call_as(buyer, method.clone(), path, Some(&body))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["code"], "FORBIDDEN", "{method} {path}: {answer}");
    }
    assert_eq!(app.sale_view(1).await, (5, 0), "the sale is unchanged");
    assert_eq!(app.stock_of(1).await, 5);
    let (status, _) = app
        .orders
        .call_as(Caller::Anonymous, Method::GET, "/api/sales/2", None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no sale was opened for product 2"
    );

    let metrics = reqwest::Client::new()
        .get(format!("{}/api/admin/metrics", app.orders.base_url))
        .bearer_auth(admin_token())
        .send()
        .await
        .expect("GET /api/admin/metrics");
    assert_eq!(
        metrics.status(),
        StatusCode::OK,
        "an admin reads the metrics"
    );
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("seckill_order_requests_total")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_orders_as_itself_and_sees_only_its_own_orders() {
    let app = TestApp::spawn().await;
    // A limit of 2: buyer 1's second order is refused for naming buyer 2, not for its limit.
    seckill_tests::services::open_sale_with_limit(&app.orders, 1, 5, 2).await;
    let orders = &app.orders;

    // The token names the buyer: no user_id needed.
    let (status, placed) = orders
        .call_as(
            Caller::Buyer(1),
            Method::POST,
            "/api/orders",
            Some(&json!({"product_id": 1, "count": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["user_id"], 1);
    let order_no = placed["order_no"].as_str().unwrap().to_owned();

    // Naming another buyer is refused, and nothing is reserved.
    let (status, refused) = orders
        .call_as(
            Caller::Buyer(1),
            Method::POST,
            "/api/orders",
            Some(&json!({"user_id": 2, "product_id": 1, "count": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["code"], "FORBIDDEN");
    assert_eq!(app.sale_view(1).await, (4, 1));

    // Another buyer does not see, pay or cancel it, nor list its buyer's orders.
    let other = Caller::Buyer(2);
    let path = format!("/api/orders/{order_no}");
    let (status, _) = orders.call_as(other, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for action in ["pay", "cancel"] {
        let (status, answer) = orders
            .call_as(
                other,
                Method::POST,
                &format!("{path}/{action}"),
                Some(&json!({"pay_no": "p-1"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {answer}");
        assert_eq!(answer["code"], "ORDER_NOT_FOUND");
    }
    let (status, _) = orders
        .call_as(other, Method::GET, "/api/orders?user_id=1", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, listed) = orders
        .call_as(other, Method::GET, "/api/orders", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["total"], 0, "buyer 2 has no orders: {listed}");
    assert_eq!(
        order_of(orders, &order_no).await["status"],
        "NEW",
        "untouched"
    );

    // Its owner lists, pays and sees it; an admin reads it too.
    let (status, mine) = orders
        .call_as(Caller::Buyer(1), Method::GET, "/api/orders", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["total"], 1, "{mine}");
    let (status, paid) = orders
        .call_as(
            Caller::Buyer(1),
            Method::POST,
            &format!("{path}/pay"),
            Some(&json!({"pay_no": "p-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "PAID");
    let (status, seen) = orders
        .call_as(Caller::Admin, Method::GET, &path, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["status"], "PAID");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_tokens_and_the_cli_mint_tokens_the_services_accept() {
    let app = TestApp::spawn().await;
    app.open_sale(1, 5).await;
    let orders = &app.orders;

    let (status, minted) = orders
        .call_as(
            Caller::Anonymous,
            Method::POST,
            "/api/auth/dev-token",
            Some(&json!({"user_id": 42, "admin": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    assert!(minted["expires_at"].is_string(), "{minted}");
    let token = minted["token"].as_str().unwrap();
    let (status, answer) = with_header(
        &format!("{}/api/sales/3", orders.base_url),
        Method::PUT,
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a dev admin opens a sale: {answer}");

    let (status, answer) = orders
        .call_as(
            Caller::Anonymous,
            Method::POST,
            "/api/auth/dev-token",
            Some(&json!({"user_id": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["field"], "user_id");

    let (code, printed) = order_service_command(&app.env, &app.stock, &["token", "--user", "42"]);
    assert_eq!(code, 0, "{printed}");
    let cli_token = printed.trim();
    let (status, issued) = with_header(
        &format!("{}/api/sales/1/order-token", orders.base_url),
        Method::POST,
        Some(&format!("Bearer {cli_token}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let response = reqwest::Client::new()
        .post(format!("{}/api/orders", orders.base_url))
        .bearer_auth(cli_token)
        .header("Order-Token", issued["order_token"].as_str().unwrap())
        .json(&json!({"product_id": 1, "count": 1}))
        .send()
        .await
        .expect("order");
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the CLI's buyer token orders: {answer}"
    );
    assert_eq!(answer["user_id"], 42);
    let (code, _) = order_service_command(&app.env, &app.stock, &["token", "--user", "x"]);
    assert_ne!(code, 0, "a bad user id is refused");

    // With dev tokens off (the default outside deploy/up.sh), the endpoint does not exist.
    let closed = app
        .spawn_another_order_service(|s| s.auth.dev_tokens = false)
        .await;
    let (status, _) = closed
        .call_as(
            Caller::Anonymous,
            Method::POST,
            "/api/auth/dev-token",
            Some(&json!({"user_id": 42})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    closed.stop().await;
    app.stop().await;
}
