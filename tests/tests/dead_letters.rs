//! Stuck messages are visible: a message stock-service gives up on (its DLQ)
//! and a half message the broker discards after too many check-backs are
//! recorded by order-service, listed by reconciliation (endpoint and CLI exit
//! code) until an operator resolves them.

use std::time::Duration;

use common::messages::TAG_ORDER_CREATED;
use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::broker::{TopicWriter, UndecidedProducer};
use seckill_tests::services::{RunningService, order_service_command};
use seckill_tests::{eventually, order_message};
use serde_json::Value;

async fn dead_letters(orders: &RunningService) -> Vec<Value> {
    let (status, report) = orders.call(Method::GET, "/api/admin/reconcile", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["dead_letter_count"].as_u64(),
        report["dead_letters"].as_array().map(|a| a.len() as u64)
    );
    report["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_stock_service_gives_up_on_is_listed_until_resolved() {
    let app = TestApp::builder()
        .stock_settings(|settings| {
            settings.consumer.max_reconsume_times = 0; // straight to the DLQ
        })
        .spawn()
        .await;
    let (env, stock, orders) = (&app.env, &app.stock, &app.orders);
    assert!(dead_letters(orders).await.is_empty());

    let writer = TopicWriter::start(env).await;
    writer
        .send_tagged(TAG_ORDER_CREATED, "garbage-1", b"not an order".to_vec())
        .await;
    let letters = eventually("the DLQ copy recorded", Duration::from_secs(60), || async {
        let letters = dead_letters(orders).await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["source"], format!("%DLQ%{}", env.consumer_group));
    assert_eq!(letters[0]["body"], "not an order");
    assert_eq!(letters[0]["keys"], "garbage-1");
    assert_eq!(order_service_command(env, stock, &["reconcile"]).0, 1);

    let msg_id = letters[0]["msg_id"].as_str().unwrap().to_owned();
    let path = format!("/api/admin/dead-letters/{msg_id}/resolve");
    let (status, body) = orders.call(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(dead_letters(orders).await.is_empty());
    let (status, body) = orders.call(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "DEAD_LETTER_NOT_FOUND");
    assert_eq!(order_service_command(env, stock, &["reconcile"]).0, 0);
    writer.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_message_discarded_after_too_many_check_backs_is_listed() {
    let app = TestApp::spawn().await;
    let (env, orders) = (&app.env, &app.orders);
    let producer = UndecidedProducer::start(env).await;
    let order = order_message(3, 1, 1);
    producer.send_half(&order).await;

    // The test broker checks back every second, at most 30 times.
    let letters = eventually(
        "the discarded transaction recorded",
        Duration::from_secs(120),
        || async {
            let letters = dead_letters(orders).await;
            (!letters.is_empty()).then_some(letters)
        },
    )
    .await;
    assert_eq!(letters[0]["source"], "TRANS_CHECK_MAX_TIME_TOPIC");
    assert_eq!(letters[0]["original_topic"], env.topic.as_str());
    assert!(
        letters[0]["body"]
            .as_str()
            .unwrap()
            .contains(order.tx_no.as_str()),
        "{letters:?}"
    );
    producer.stop().await;
    app.stop().await;
}
