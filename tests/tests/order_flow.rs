//! The happy path and the refused path of an order, through both services.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::services::{open_sale, place_order, sale_view, stock_of};
use seckill_tests::{db, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_order_is_deducted_exactly_once() {
    // Arrange
    let app = TestApp::spawn().await;
    let (env, stock, orders) = (&app.env, &app.stock, &app.orders);
    open_sale(orders, 1, 10).await;

    // Act
    let (status, placed) = place_order(orders, 7, 1, 3).await;

    // Assert
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["status"], "NEW");
    let tx_no = placed["tx_no"].as_str().expect("tx_no").to_owned();
    let order_no = placed["order_no"].as_str().expect("order_no").to_owned();
    let stock_db = db::connect(&env.stock_db).await;
    let outcome = eventually("the stock deduction", Duration::from_secs(30), || {
        let stock_db = stock_db.clone();
        let tx_no = tx_no.clone();
        async move {
            db::text(
                &stock_db,
                "SELECT outcome FROM tx_log WHERE tx_no = ?",
                [tx_no.into()],
            )
            .await
        }
    })
    .await;
    assert_eq!(outcome, "DEDUCTED");
    assert_eq!(stock_of(stock, 1).await, 7);

    let (status, order) = orders
        .call(Method::GET, &format!("/api/orders/{order_no}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["status"], "NEW");
    assert_eq!(order["tx_no"], tx_no.as_str());
    assert_eq!(order["user_id"], 7);
    assert_eq!(order["product_id"], 1);
    assert_eq!(order["count"], 3);
    let order_db = db::connect(&env.order_db).await;
    let order_outcome = db::text(
        &order_db,
        "SELECT outcome FROM tx_log WHERE tx_no = ?",
        [tx_no.clone().into()],
    )
    .await;
    assert_eq!(order_outcome.as_deref(), Some("COMMITTED"));
    assert_eq!(
        sale_view(orders, 1).await,
        (7, 1),
        "Redis: 7 admissible, one reservation held"
    );

    // Check-backs and redeliveries have had time to happen: still one deduction.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        1
    );
    assert_eq!(stock_of(stock, 1).await, 7);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_local_transaction_rolls_back_without_deduction() {
    // Arrange: the order database refuses orders for product 13.
    let app = TestApp::spawn().await;
    let (env, stock, orders) = (&app.env, &app.stock, &app.orders);
    open_sale(orders, 13, 10).await;
    let order_db = db::connect(&env.order_db).await;
    db::exec(
        &order_db,
        "CREATE TRIGGER refuse_product_13 BEFORE INSERT ON orders FOR EACH ROW \
         BEGIN IF NEW.product_id = 13 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'product 13 is blocked'; END IF; END",
    )
    .await;

    // Act
    let (status, body) = place_order(orders, 7, 13, 1).await;

    // Assert: the buyer is told, and nothing exists anywhere.
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "ORDER_REJECTED");
    assert!(body["message"].is_string());
    tokio::time::sleep(Duration::from_secs(3)).await; // past any check-back
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        0
    );
    assert_eq!(
        db::scalar(
            &order_db,
            "SELECT COUNT(*) FROM tx_log WHERE outcome = 'COMMITTED'",
            []
        )
        .await,
        0
    );
    let stock_db = db::connect(&env.stock_db).await;
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        0
    );
    assert_eq!(stock_of(stock, 13).await, 10);
    assert_eq!(
        sale_view(orders, 13).await,
        (10, 0),
        "the reservation went back to Redis"
    );

    // The same service still takes orders for other products.
    open_sale(orders, 14, 1).await;
    let (status, body) = place_order(orders, 7, 14, 1).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_names_each_dependency_and_fails_when_one_is_down() {
    let app = TestApp::spawn().await;
    let (env, ready) = (&app.env, &app.orders);
    let (status, body) = ready.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<_> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["database", "redis", "broker"]);
    let (status, _) = ready.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);

    // The same service, told the broker lives on a closed port.
    let blind = app
        .spawn_another_order_service(|settings| {
            settings.admission.stock_service_url = "http://127.0.0.1:1".into();
            settings.mq.broker_addr = "127.0.0.1:1".into();
        })
        .await;
    let (status, body) = blind.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false);
    let broker = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "broker")
        .unwrap();
    assert_eq!(broker["ok"], false);
    assert!(
        broker["error"].as_str().unwrap().contains("127.0.0.1:1"),
        "{broker}"
    );
    assert_eq!(
        broker["detail"]["brokers"]["127.0.0.1:1"], false,
        "{broker}"
    );

    // Two masters, one of them down (a cluster losing broker-a): still ready,
    // and the check says which one answers.
    let half = app
        .spawn_another_order_service(|settings| {
            settings.mq.broker_addr = format!("{};127.0.0.1:1", env.broker_addr);
        })
        .await;
    let (status, body) = half.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let brokers = &body["checks"][2]["detail"]["brokers"];
    assert_eq!(brokers[env.broker_addr.as_str()], true, "{body}");
    assert_eq!(brokers["127.0.0.1:1"], false, "{body}");

    half.stop().await;
    blind.stop().await;
    app.stop().await;
}
