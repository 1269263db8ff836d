//! `Idempotency-Key`: retries return the first attempt's order, never a second one.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::db;
use seckill_tests::services::{open_sale_with_limit, place_order_with_key, sale_view};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_with_the_same_key_returns_the_same_order() {
    let app = TestApp::spawn().await;
    let (env, orders) = (&app.env, &app.orders);
    // A limit of 3 so that only the key, not the per-user limit, stops a second order.
    open_sale_with_limit(orders, 1, 10, 3).await;

    let (status, first, replayed) = place_order_with_key(orders, 5, 1, 1, "retry-1").await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false), "{first}");
    let (status, again, replayed) = place_order_with_key(orders, 5, 1, 1, "retry-1").await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(again["order_no"], first["order_no"]);
    assert_eq!(again["status"], "NEW");

    // A different key is a different order; the same key for another count is refused.
    let (status, other, _) = place_order_with_key(orders, 5, 1, 1, "retry-2").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(other["order_no"], first["order_no"]);
    let (status, body, _) = place_order_with_key(orders, 5, 1, 2, "retry-1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "IDEMPOTENCY_KEY_REUSED");
    let (status, body, _) = place_order_with_key(orders, 5, 1, 1, "no spaces allowed").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "Idempotency-Key");

    let order_db = db::connect(&env.order_db).await;
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        2
    );
    assert_eq!(sale_view(orders, 1).await, (8, 2));

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_with_one_key_create_one_order() {
    let app = TestApp::spawn().await;
    let (env, orders) = (&app.env, &app.orders);
    open_sale_with_limit(orders, 1, 10, 10).await;

    let answers: Vec<_> = futures::stream::iter(0..10)
        .map(|_| place_order_with_key(orders, 7, 1, 1, "double-click"))
        .buffer_unordered(10)
        .collect()
        .await;

    let order_nos: std::collections::HashSet<_> = answers
        .iter()
        .map(|(status, body, _)| {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            body["order_no"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(order_nos.len(), 1, "{answers:?}");
    assert_eq!(
        answers.iter().filter(|(_, _, replayed)| !replayed).count(),
        1
    );
    let order_db = db::connect(&env.order_db).await;
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        1
    );
    assert_eq!(
        sale_view(orders, 1).await,
        (9, 1),
        "one reservation, none leaked"
    );

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_stops_a_second_order_when_redis_lost_the_key() {
    let app = TestApp::spawn().await;
    let (env, orders) = (&app.env, &app.orders);
    open_sale_with_limit(orders, 1, 10, 3).await;
    let (status, first, _) = place_order_with_key(orders, 9, 1, 1, "k").await;
    assert_eq!(status, StatusCode::CREATED);

    // Redis forgets everything, including the claim; the sale state is rebuilt.
    env.flush_redis().await;
    let (status, body) = orders
        .call(Method::POST, "/api/admin/admission/rebuild", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, again, replayed) = place_order_with_key(orders, 9, 1, 1, "k").await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(again["order_no"], first["order_no"]);
    let order_db = db::connect(&env.order_db).await;
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        1
    );
    assert_eq!(
        sale_view(orders, 1).await,
        (9, 1),
        "the second attempt's reservation went back"
    );

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_while_the_first_attempt_is_undecided_points_at_that_attempt() {
    // Arrange: the first attempt's local transaction stalls on a gap lock that
    // blocks inserts into orders but not reads (the retry reads orders).
    let app = TestApp::spawn().await;
    let (env, orders) = (&app.env, &app.orders);
    open_sale_with_limit(orders, 1, 10, 3).await;
    let locker = db::connect_session(&env.order_db).await;
    db::exec(&locker, "BEGIN").await;
    db::exec(&locker, "SELECT * FROM orders FOR UPDATE").await;
    let base = orders.base_url.clone();
    let token = seckill_tests::auth::order_token(&base, 4, 1).await;
    let first = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(format!("{base}/api/orders"))
            .bearer_auth(seckill_tests::auth::buyer_token(4))
            .header("Order-Token", token)
            .header("Idempotency-Key", "slow")
            .json(&serde_json::json!({"user_id": 4, "product_id": 1, "count": 1}))
            .send()
            .await
            .expect("response");
        (
            response.status(),
            response.json::<serde_json::Value>().await.expect("json"),
        )
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // Act: the retry waits for it (10 s), then gives up waiting.
    let (status, retry, replayed) = place_order_with_key(orders, 4, 1, 1, "slow").await;
    db::exec(&locker, "COMMIT").await;
    let (first_status, first_body) = first.await.expect("first attempt");

    // Assert: the retry named the first attempt's order, which then committed.
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true), "{retry}");
    assert_eq!(retry["status"], "PENDING");
    assert_eq!(first_status, StatusCode::CREATED, "{first_body}");
    assert_eq!(retry["order_no"], first_body["order_no"]);
    let order_db = db::connect(&env.order_db).await;
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        1
    );

    app.stop().await;
}

/// Found by the chaos suite's slow-broker-link scenario (2 of 400 buyers
/// refused `403 ORDER_TOKEN_INVALID`, in the next run 2 `409
/// LIMIT_EXCEEDED`): a client times out, and its keyed retry arrives while
/// the first attempt is failing. The retry sees the first attempt's
/// transaction settled rolled back and takes the key over — but the first
/// attempt had not yet given back its reservation (the buyer's one item) nor
/// its one-time token, so the retry was refused. The first attempt is held at
/// that moment here, made by the service's own parts: its claim on the key,
/// its admission (which reserved the item and used the token up), its tx_no
/// settled rolled back; nothing given back yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyed_retry_of_a_rolled_back_attempt_not_yet_cleaned_up_is_placed_with_its_token() {
    use order_service::admission::{Admission, AdmissionGate, Keys};
    use order_service::domain::{IdempotencyKey, OrderToken};
    use order_service::idempotency::{Earlier, IdempotencyClaims};

    // Arrange: a sale, and buyer 7's order token for it.
    let app = TestApp::spawn().await;
    let (env, orders) = (&app.env, &app.orders);
    open_sale_with_limit(orders, 1, 10, 1).await;
    let token = orders.order_token(7, 1).await.expect("an order token");
    let redis = common::redis_link::RedisLink::connect(&common::settings::RedisSettings::default())
        .await
        .expect("redis");
    let gate = AdmissionGate::new(
        redis.clone(),
        Keys::new(&env.redis_prefix),
        Duration::from_millis(50),
    );
    let claims = IdempotencyClaims::new(redis, &env.redis_prefix, Duration::from_secs(2));
    let order_db = db::connect(&env.order_db).await;
    let key = IdempotencyKey::parse("slow-link-retry").unwrap();
    let first = seckill_tests::order_message(7, 1, 1);
    assert!(matches!(
        claims.claim_or_find(&order_db, &first, &key).await.unwrap(),
        Earlier::None { replaced: None }
    ));
    let admitted = gate
        .admit(&first, Some(&OrderToken::parse(&token).unwrap()))
        .await
        .unwrap();
    assert!(
        matches!(admitted, Admission::Admitted { .. }),
        "{admitted:?}"
    );
    let settled = order_service::order_tx::settle(&order_db, first.tx_no.as_str())
        .await
        .unwrap();
    assert_eq!(settled, order_service::store::TxOutcome::RolledBack);
    assert_eq!(
        sale_view(orders, 1).await,
        (9, 1),
        "the first attempt's reservation"
    );

    let order_with = |key: &'static str| {
        let request = orders
            .http
            .post(format!("{}/api/orders", orders.base_url))
            .bearer_auth(seckill_tests::auth::buyer_token(7))
            .header("Order-Token", token.as_str())
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"user_id": 7, "product_id": 1, "count": 1}));
        async move {
            let response = request.send().await.expect("HTTP request");
            let status = response.status();
            let body: serde_json::Value = response.json().await.expect("JSON body");
            (status, body)
        }
    };

    // Act: the retry, with the same key and the same token.
    let (status, body) = order_with("slow-link-retry").await;

    // Assert: placed as a new order (it was 403 ORDER_TOKEN_INVALID); the
    // token is used up by it.
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_ne!(body["order_no"], first.order_no.as_str());
    assert_eq!(sale_view(orders, 1).await, (9, 1), "one item, the retry's");
    // The first attempt then gives its reservation back: already done.
    assert_eq!(
        gate.release(first.product_id, &first.tx_no).await.unwrap(),
        0
    );
    assert_eq!(sale_view(orders, 1).await, (9, 1));
    let used: Option<String> = redis::cmd("GET")
        .arg(gate.keys().order_token(&OrderToken::parse(&token).unwrap()))
        .query_async(&mut gate.redis())
        .await
        .unwrap();
    assert_eq!(
        used.as_deref(),
        Some(format!("used:7:1:{}", body["tx_no"].as_str().unwrap()).as_str()),
        "the token, used up by the retry's order"
    );

    app.stop().await;
}

/// Sends a keyed order on a raw connection and resets it `after` the
/// request is written (a client or a load balancer giving up; a reset, not a
/// close: actix lets the handler of a half-closed connection run on).
async fn order_and_reset(base_url: &str, user: i64, token: &str, key: &str, after: Duration) {
    use tokio::io::AsyncWriteExt;
    let address = base_url.trim_start_matches("http://");
    let body = r#"{"product_id": 1, "count": 1}"#;
    let request = format!(
        "POST /api/orders HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Order-Token: {token}\r\nIdempotency-Key: {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        seckill_tests::auth::buyer_token(user),
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.set_zero_linger().expect("SO_LINGER 0");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request written");
    let written = Instant::now();
    while written.elapsed() < after {
        std::hint::spin_loop();
    }
    drop(stream);
}

/// actix drops the handler of a connection reset by its client, and a
/// checkout stopped between two steps (its key claimed but nothing admitted,
/// or its reservation made but nothing sent) left the key answering 202
/// PENDING to every retry for a day. Buyers here reset their connection at
/// every moment of the checkout (0–10 ms after the request, 50 µs apart);
/// each one's retry, with the same key and token, must get its one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkout_whose_client_went_away_runs_to_its_end() {
    let app = TestApp::spawn().await;
    let orders = &app.orders;
    open_sale_with_limit(orders, 1, 400, 1).await;
    let buyers: Vec<(i64, String)> = futures::stream::iter(0..200_i64)
        .then(|i| async move {
            let token = orders.order_token(100 + i, 1).await.expect("a token");
            (100 + i, token)
        })
        .collect()
        .await;

    for (i, (user, token)) in buyers.iter().enumerate() {
        let after = Duration::from_micros(50 * i as u64);
        order_and_reset(
            &orders.base_url,
            *user,
            token,
            &format!("gone-{user}"),
            after,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let retries = buyers.iter().map(|(user, token)| async move {
        let response = orders
            .http
            .post(format!("{}/api/orders", orders.base_url))
            .bearer_auth(seckill_tests::auth::buyer_token(*user))
            .header("Order-Token", token.as_str())
            .header("Idempotency-Key", format!("gone-{user}"))
            .json(&serde_json::json!({"product_id": 1, "count": 1}))
            .send()
            .await
            .expect("HTTP request");
        let status = response.status();
        (*user, status, response.text().await.unwrap_or_default())
    });
    let answers = futures::future::join_all(retries).await;
    let not_placed: Vec<_> = answers
        .iter()
        .filter(|(_, status, _)| *status != StatusCode::CREATED)
        .collect();
    assert!(
        not_placed.is_empty(),
        "{} of 200 retries not given their order: {not_placed:?}",
        not_placed.len()
    );
    assert_eq!(sale_view(orders, 1).await, (200, 200), "one item each");
    app.stop().await;
}
