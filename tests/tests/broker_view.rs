//! `GET /api/admin/broker`, the dashboard's broker panel: the broker's own
//! figures read with its admin API — the order topic's queues with their
//! offsets, each watched group's lag, the undecided half messages with the
//! oldest one's age — for admins only; a broker that cannot be read is a 503
//! with a code, not a 500.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::auth::Caller;
use seckill_tests::broker::{PrivateBroker, UndecidedProducer};
use seckill_tests::{eventually, order_message};
use serde_json::Value;

/// `GET /api/admin/broker` as an admin (asserted 200).
async fn broker_view(app: &TestApp) -> Value {
    let (status, view) = app
        .orders
        .call(Method::GET, "/api/admin/broker", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view
}

/// A sale of product 1 and one order: the order topic exists on the broker.
async fn placed_one_order(app: &TestApp) {
    app.open_sale(1, 10).await;
    let answer = app.place_order(1, 1, 1).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

/// The lag the view reports for `group` on `topic`, if any.
fn lag_of(view: &Value, group: &str, topic: &str) -> Option<i64> {
    view["lags"]
        .as_array()?
        .iter()
        .find(|l| l["group"] == group && l["topic"] == topic)
        .and_then(|l| l["waiting"].as_i64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_few_orders_the_view_lists_the_topic_queues_and_the_stock_groups_lag() {
    // Arrange: three orders, committed and sent to the test's order topic.
    let app = TestApp::spawn().await;
    app.open_sale(1, 10).await;
    for user in 1..=3 {
        let answer = app.place_order(user, 1, 1).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }

    // Act: read until stock-service's group has consumed all three.
    let (topic, group) = (app.env.topic.clone(), app.env.consumer_group.clone());
    let view = eventually(
        "the stock group's lag on the order topic reported, and 0",
        Duration::from_secs(30),
        || async {
            let view = broker_view(&app).await;
            (lag_of(&view, &group, &topic) == Some(0)).then_some(view)
        },
    )
    .await;

    // Assert: the topic, its queues on the broker holding the three messages,
    // no half message left undecided.
    assert_eq!(view["order_topic"], topic.as_str(), "{view}");
    let queues = view["queues"].as_array().expect("queues");
    assert!(!queues.is_empty(), "{view}");
    for queue in queues {
        assert!(
            !queue["broker"].as_str().unwrap_or("").is_empty(),
            "{queue}"
        );
        assert!(
            queue["min_offset"].as_i64() <= queue["max_offset"].as_i64(),
            "{queue}"
        );
    }
    let stored: i64 = queues.iter().filter_map(|q| q["max_offset"].as_i64()).sum();
    assert!(stored >= 3, "three creations stored: {view}");
    assert_eq!(view["undecided_halves"]["count"], 0, "{view}");
    assert!(view["took_ms"].as_u64().is_some(), "{view}");

    // And: a buyer and an anonymous caller are refused.
    let (status, body) = app
        .orders
        .call_as(Caller::Buyer(1), Method::GET, "/api/admin/broker", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "FORBIDDEN", "{body}");
    let (status, _) = app
        .orders
        .call_as(Caller::Anonymous, Method::GET, "/api/admin/broker", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_undecided_half_message_is_counted_with_its_age() {
    // Arrange: a producer of another group sends a half message on the order
    // topic and answers UNKNOWN to every check-back.
    let app = TestApp::spawn().await;
    placed_one_order(&app).await;
    let undecided = UndecidedProducer::start(&app.env).await;
    undecided.send_half(&order_message(5, 1, 1)).await;

    // Act
    let halves = eventually(
        "the half message counted, at least 2 s old",
        Duration::from_secs(25),
        || async {
            let view = broker_view(&app).await;
            let halves = view["undecided_halves"].clone();
            (halves["count"] == 1 && halves["oldest_age_secs"].as_i64() >= Some(2))
                .then_some(halves)
        },
    )
    .await;

    // Assert
    assert!(halves["oldest_born_at"].is_string(), "{halves}");
    assert_eq!(halves["truncated"], false, "{halves}");
    undecided.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_broker_is_a_503_with_a_code() {
    // Arrange: the services on a broker of this test's own, then the broker killed.
    let mut broker = PrivateBroker::start().await;
    let app = TestApp::builder().broker(&broker).spawn().await;
    placed_one_order(&app).await;
    assert_eq!(
        broker_view(&app).await["order_topic"],
        app.env.topic.as_str()
    );
    broker.kill_broker();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the shared glance

    // Act
    let (status, body) = app
        .orders
        .call(Method::GET, "/api/admin/broker", None)
        .await;

    // Assert
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "BROKER_UNAVAILABLE", "{body}");
    broker.restart_broker().await;
    app.stop().await;
}
