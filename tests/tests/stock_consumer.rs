//! Order messages straight at the stock consumer: each applied exactly once,
//! stock never negative, failures retried rather than lost.

use std::time::Duration;

use futures::StreamExt;
use seckill_tests::app::TestApp;
use seckill_tests::broker::TopicWriter;
use seckill_tests::services::{set_stock, stock_of};
use seckill_tests::{db, eventually, order_message};

async fn wait_for_applied(stock_db: &sea_orm::DatabaseConnection, count: i64, limit: Duration) {
    eventually(&format!("{count} applied messages"), limit, || async move {
        (db::scalar(stock_db, "SELECT COUNT(*) FROM tx_log", []).await >= count).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_delivery_deducts_stock_once() {
    // Arrange
    let app = TestApp::builder().spawn_stock().await;
    let (env, stock) = (&app.env, &app.stock);
    set_stock(stock, 1, 10).await;
    set_stock(stock, 2, 10).await;
    let writer = TopicWriter::start(env).await;
    let twice = order_message(1, 1, 2);

    // Act: the same message three times, then a marker behind it.
    writer.send(&twice).await;
    writer.send(&twice).await;
    writer.send(&twice).await;
    writer.send(&order_message(2, 2, 1)).await;

    // Assert
    let stock_db = db::connect(&env.stock_db).await;
    wait_for_applied(&stock_db, 2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db::scalar(
            &stock_db,
            "SELECT COUNT(*) FROM tx_log WHERE tx_no = ?",
            [twice.tx_no.to_string().into()]
        )
        .await,
        1
    );
    assert_eq!(stock_of(stock, 1).await, 8);
    assert_eq!(stock_of(stock, 2).await, 9);
    // And at the store level, a direct re-apply is recognised as a duplicate.
    let applied = stock_service::store::apply_order(&stock_db, &twice)
        .await
        .unwrap();
    assert_eq!(
        applied,
        stock_service::store::Applied::Duplicate {
            insufficient: false
        }
    );
    assert_eq!(stock_of(stock, 1).await, 8);

    writer.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_orders_for_fifty_items_never_oversell() {
    // Arrange
    let app = TestApp::builder().spawn_stock().await;
    let (env, stock) = (&app.env, &app.stock);
    set_stock(stock, 1, 50).await;
    let writer = TopicWriter::start(env).await;

    // Act: 200 one-item orders from 200 buyers, 32 sends in flight.
    let orders: Vec<_> = (1..=200).map(|user| order_message(user, 1, 1)).collect();
    futures::stream::iter(&orders)
        .for_each_concurrent(32, |o| writer.send(o))
        .await;

    // Assert
    let stock_db = db::connect(&env.stock_db).await;
    wait_for_applied(&stock_db, 200, Duration::from_secs(90)).await;
    assert_eq!(stock_of(stock, 1).await, 0);
    assert_eq!(
        db::scalar(
            &stock_db,
            "SELECT COUNT(*) FROM tx_log WHERE outcome = 'DEDUCTED'",
            []
        )
        .await,
        50
    );
    assert_eq!(
        db::scalar(
            &stock_db,
            "SELECT COUNT(*) FROM tx_log WHERE outcome = 'INSUFFICIENT'",
            []
        )
        .await,
        150
    );
    assert_eq!(
        db::scalar(
            &stock_db,
            "SELECT CAST(SUM(count) AS SIGNED) FROM tx_log WHERE outcome = 'DEDUCTED'",
            []
        )
        .await,
        50
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        200
    );

    writer.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_that_fails_on_a_database_fault_is_redelivered_not_lost() {
    // Arrange: the stock table is unreachable.
    let app = TestApp::builder().spawn_stock().await;
    let (env, stock) = (&app.env, &app.stock);
    set_stock(stock, 1, 5).await;
    let stock_db = db::connect(&env.stock_db).await;
    db::exec(&stock_db, "RENAME TABLE stock TO stock_away").await;
    let writer = TopicWriter::start(env).await;

    // Act: the message arrives during the fault; the fault then clears.
    writer.send(&order_message(1, 1, 2)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        0
    );
    db::exec(&stock_db, "RENAME TABLE stock_away TO stock").await;

    // Assert: the redelivery (10 s later) applies it, once.
    wait_for_applied(&stock_db, 1, Duration::from_secs(60)).await;
    assert_eq!(stock_of(stock, 1).await, 3);

    writer.stop().await;
    app.stop().await;
}
