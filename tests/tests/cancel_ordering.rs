//! stock-service applies a cancellation exactly once whatever the order of
//! arrival: before its creation (the creation is voided), after it (the stock
//! goes back), redelivered (no second effect), or racing it.

use std::time::Duration;

use common::messages::{CancelReason, OrderCancelled};
use seckill_tests::app::TestApp;
use seckill_tests::broker::TopicWriter;
use seckill_tests::services::{set_stock, stock_of};
use seckill_tests::{db, eventually, order_message};
use stock_service::store::{self, Applied, Restored};

async fn outcome(stock_db: &sea_orm::DatabaseConnection, tx_no: &str) -> Option<String> {
    db::text(
        stock_db,
        "SELECT outcome FROM tx_log WHERE tx_no = ?",
        [tx_no.into()],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_consumed_before_its_creation_voids_it_and_nothing_is_deducted() {
    let app = TestApp::builder().spawn_stock().await;
    let (env, stock) = (&app.env, &app.stock);
    set_stock(stock, 1, 5).await;
    let writer = TopicWriter::start(env).await;
    let stock_db = db::connect(&env.stock_db).await;

    let early = order_message(7, 1, 2);
    let early_cancel = OrderCancelled::of(&early, CancelReason::Buyer);
    writer.send_cancel(&early_cancel).await;
    eventually("creation voided", Duration::from_secs(30), || async {
        (outcome(&stock_db, early.tx_no.as_str()).await.as_deref() == Some("VOIDED")).then_some(())
    })
    .await;
    writer.send(&early).await;
    writer.send(&early).await; // and redelivered

    // In the usual order for comparison: deducted, then given back.
    let usual = order_message(8, 1, 3);
    writer.send(&usual).await;
    eventually("deducted", Duration::from_secs(30), || async {
        (stock_of(stock, 1).await == 2).then_some(())
    })
    .await;
    let usual_cancel = OrderCancelled::of(&usual, CancelReason::Timeout);
    for _ in 0..3 {
        writer.send_cancel(&usual_cancel).await;
    }
    eventually("restored once", Duration::from_secs(30), || async {
        (outcome(&stock_db, usual_cancel.tx_no.as_str())
            .await
            .as_deref()
            == Some("RESTORED"))
        .then_some(())
    })
    .await;
    // Let the redeliveries and the late creation land, then check nothing moved.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stock_of(stock, 1).await, 5);
    assert_eq!(
        outcome(&stock_db, early_cancel.tx_no.as_str())
            .await
            .as_deref(),
        Some("NOTHING_TO_RESTORE")
    );
    assert_eq!(
        outcome(&stock_db, early.tx_no.as_str()).await.as_deref(),
        Some("VOIDED")
    );
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        4
    );
    writer.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creations_and_cancellations_racing_each_other_never_lose_or_invent_stock() {
    const PAIRS: i64 = 40;
    let app = TestApp::builder().spawn_stock().await;
    let (env, stock) = (&app.env, &app.stock);
    set_stock(stock, 1, 1_000).await;
    let stock_db = db::connect(&env.stock_db).await;
    let races = (0..PAIRS).map(|i| {
        let stock_db = stock_db.clone();
        async move {
            let created = order_message(i + 1, 1, 1 + i % 3);
            let cancel = OrderCancelled::of(&created, CancelReason::Buyer);
            let (applied, restored) = if i % 2 == 0 {
                tokio::join!(
                    store::apply_order(&stock_db, &created),
                    store::apply_cancel(&stock_db, &cancel)
                )
            } else {
                let (r, a) = tokio::join!(
                    store::apply_cancel(&stock_db, &cancel),
                    store::apply_order(&stock_db, &created)
                );
                (a, r)
            };
            // A deadlock victim is retried, as a redelivery would be.
            let applied = match applied {
                Ok(a) => a,
                Err(_) => store::apply_order(&stock_db, &created)
                    .await
                    .expect("retry"),
            };
            let restored = match restored {
                Ok(r) => r,
                Err(_) => store::apply_cancel(&stock_db, &cancel)
                    .await
                    .expect("retry"),
            };
            match (applied, restored) {
                (Applied::Deducted, Restored::Restored)
                | (
                    Applied::Duplicate {
                        insufficient: false,
                    },
                    Restored::NothingToRestore,
                ) => {}
                other => panic!("pair {i} ended as {other:?}"),
            }
        }
    });
    futures::future::join_all(races).await;
    assert_eq!(
        stock_of(stock, 1).await,
        1_000,
        "every unit back, none invented"
    );
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        2 * PAIRS
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_short_of_stock_waits_for_a_cancellation_in_flight_instead_of_failing() {
    // Redis gave A's cancelled item to B at once; B's creation reaches
    // stock-service before A's cancellation restored the DB stock.
    let app = TestApp::builder()
        .stock_settings(|settings| settings.consumer.insufficient_retries = 1)
        .spawn_stock()
        .await;
    let (env, stock) = (&app.env, &app.stock);
    set_stock(stock, 1, 1).await;
    let writer = TopicWriter::start(env).await;
    let stock_db = db::connect(&env.stock_db).await;
    let a = order_message(1, 1, 1);
    writer.send(&a).await;
    eventually("A deducted", Duration::from_secs(30), || async {
        (stock_of(stock, 1).await == 0).then_some(())
    })
    .await;

    let b = order_message(2, 1, 1);
    writer.send(&b).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        outcome(&stock_db, b.tx_no.as_str()).await,
        None,
        "B waits, nothing written"
    );
    writer
        .send_cancel(&OrderCancelled::of(&a, CancelReason::Buyer))
        .await;
    eventually(
        "B deducted on its redelivery",
        Duration::from_secs(60),
        || async {
            (outcome(&stock_db, b.tx_no.as_str()).await.as_deref() == Some("DEDUCTED"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(stock_of(stock, 1).await, 0);
    assert_eq!(
        db::scalar(
            &stock_db,
            "SELECT COUNT(*) FROM tx_log WHERE outcome = 'INSUFFICIENT'",
            []
        )
        .await,
        0
    );
    writer.stop().await;
    app.stop().await;
}
