//! A group commit's `OrderBatch` applied by stock-service: every order
//! exactly once, as if applied alone in admission order — duplicates
//! (within the batch, from earlier single messages, redeliveries, voided by
//! an early cancellation) change nothing, a short stock goes to the earliest
//! orders — with one stock write per product when the stock covers them.

use std::collections::BTreeMap;
use std::time::Duration;

use common::domain::{ProductId, TxNo};
use common::messages::{
    CancelReason, Envelope, OrderBatch, OrderCancelled, OrderCreated, TAG_ORDER_BATCH,
};
use reqwest::Method;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use seckill_tests::app::TestApp;
use seckill_tests::broker::{PrivateBroker, TopicWriter};
use seckill_tests::services::{set_stock, stock_of, stock_settings};
use seckill_tests::{TestEnv, db, eventually, order_message};
use stock_service::store::{self, Applied, Restored};

const DEDUCTED: Applied = Applied::Deducted;
const DUPLICATE: Applied = Applied::Duplicate {
    insufficient: false,
};

/// A stock database of the test's own, migrated as stock-service does it,
/// counting the writes to `stock` rows in `stock_writes`.
async fn stock_database() -> (TestEnv, DatabaseConnection) {
    let env = TestEnv::new();
    let stock_db =
        common::db::connect_and_migrate(&stock_settings(&env).database, stock_service::SCHEMA)
            .await
            .expect("stock database");
    db::exec(
        &stock_db,
        "CREATE TABLE stock_writes (product_id BIGINT NOT NULL)",
    )
    .await;
    db::exec(
        &stock_db,
        "CREATE TRIGGER count_stock_writes AFTER UPDATE ON stock FOR EACH ROW \
         INSERT INTO stock_writes (product_id) VALUES (NEW.product_id)",
    )
    .await;
    (env, stock_db)
}

fn product(id: i64) -> ProductId {
    ProductId::parse(id).expect("product id")
}

async fn set(stock_db: &DatabaseConnection, id: i64, total_count: u32) {
    store::set_stock(stock_db, product(id), total_count)
        .await
        .expect("set stock");
}

async fn stock(stock_db: &DatabaseConnection, id: i64) -> i64 {
    store::get_stock(stock_db, product(id))
        .await
        .expect("read stock")
        .expect("a stock row")
        .total_count
}

/// UPDATEs that changed the product's stock row since the test began.
async fn stock_writes(stock_db: &DatabaseConnection, id: i64) -> i64 {
    db::scalar(
        stock_db,
        "SELECT COUNT(*) FROM stock_writes WHERE product_id = ?",
        [id.into()],
    )
    .await
}

/// `tx_log` as tx_no → (product, count, outcome).
async fn tx_log(stock_db: &DatabaseConnection) -> BTreeMap<String, (i64, i64, String)> {
    stock_db
        .query_all_raw(common::db::stmt(
            "SELECT tx_no, product_id, CAST(count AS SIGNED) AS count, outcome FROM tx_log",
            [],
        ))
        .await
        .expect("read tx_log")
        .iter()
        .map(|row| {
            let get = |column| row.try_get::<String>("", column).expect(column);
            let number = |column| row.try_get::<i64>("", column).expect(column);
            (
                get("tx_no"),
                (number("product_id"), number("count"), get("outcome")),
            )
        })
        .collect()
}

/// The `tx_log` rows applying `orders` with `outcome` writes.
fn rows<'a>(
    orders: impl IntoIterator<Item = &'a OrderCreated>,
    outcome: &str,
) -> BTreeMap<String, (i64, i64, String)> {
    orders
        .into_iter()
        .map(|o| {
            (
                o.tx_no.to_string(),
                (o.product_id.get(), i64::from(o.count), outcome.to_owned()),
            )
        })
        .collect()
}

fn batch_of(orders: &[OrderCreated]) -> OrderBatch {
    OrderBatch::new(TxNo::generate(), orders.to_vec())
}

fn units(orders: &[OrderCreated]) -> i64 {
    orders.iter().map(|o| i64::from(o.count)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_for_one_product_deducts_all_its_orders_with_one_stock_write() {
    // Arrange
    let (_env, stock_db) = stock_database().await;
    set(&stock_db, 1, 100).await;
    let orders: Vec<_> = (1..=10).map(|u| order_message(u, 1, 1 + u % 3)).collect();

    // Act
    let applied = store::apply_batch(&stock_db, &batch_of(&orders), true)
        .await
        .unwrap();

    // Assert
    assert_eq!(applied, vec![DEDUCTED; 10]);
    assert_eq!(stock(&stock_db, 1).await, 100 - units(&orders));
    assert_eq!(tx_log(&stock_db).await, rows(&orders, "DEDUCTED"));
    assert_eq!(
        stock_writes(&stock_db, 1).await,
        1,
        "one UPDATE for the batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_batch_changes_nothing() {
    // Arrange
    let (_env, stock_db) = stock_database().await;
    set(&stock_db, 1, 100).await;
    let orders: Vec<_> = (1..=6).map(|u| order_message(u, 1, 2)).collect();
    let batch = batch_of(&orders);
    store::apply_batch(&stock_db, &batch, true).await.unwrap();

    // Act
    let again = store::apply_batch(&stock_db, &batch, true).await.unwrap();

    // Assert
    assert_eq!(again, vec![DUPLICATE; 6]);
    assert_eq!(stock(&stock_db, 1).await, 88);
    assert_eq!(tx_log(&stock_db).await, rows(&orders, "DEDUCTED"));
    assert_eq!(stock_writes(&stock_db, 1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_applied_alone_before_is_a_duplicate_in_a_batch() {
    // Arrange: the second order arrived earlier as a single OrderCreated.
    let (_env, stock_db) = stock_database().await;
    set(&stock_db, 1, 50).await;
    let orders = [
        order_message(1, 1, 1),
        order_message(2, 1, 3),
        order_message(3, 1, 2),
    ];
    assert_eq!(
        store::apply_order(&stock_db, &orders[1]).await.unwrap(),
        DEDUCTED
    );

    // Act
    let applied = store::apply_batch(&stock_db, &batch_of(&orders), true)
        .await
        .unwrap();

    // Assert
    assert_eq!(applied, vec![DEDUCTED, DUPLICATE, DEDUCTED]);
    assert_eq!(stock(&stock_db, 1).await, 50 - 6);
    assert_eq!(tx_log(&stock_db).await, rows(&orders, "DEDUCTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tx_no_listed_twice_in_a_batch_counts_once() {
    // Arrange
    let (_env, stock_db) = stock_database().await;
    set(&stock_db, 1, 10).await;
    let (a, b) = (order_message(1, 1, 2), order_message(2, 1, 3));

    // Act
    let applied = store::apply_batch(
        &stock_db,
        &batch_of(&[a.clone(), b.clone(), a.clone()]),
        true,
    )
    .await
    .unwrap();

    // Assert
    assert_eq!(applied, vec![DEDUCTED, DEDUCTED, DUPLICATE]);
    assert_eq!(stock(&stock_db, 1).await, 5);
    assert_eq!(tx_log(&stock_db).await, rows([&a, &b], "DEDUCTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_stock_goes_to_the_earliest_orders_and_the_rest_are_insufficient() {
    // Arrange: 5 in stock, 8 one-item orders.
    let (_env, stock_db) = stock_database().await;
    set(&stock_db, 1, 5).await;
    let orders: Vec<_> = (1..=8).map(|u| order_message(u, 1, 1)).collect();

    // Act
    let applied = store::apply_batch(&stock_db, &batch_of(&orders), true)
        .await
        .unwrap();

    // Assert
    assert_eq!(&applied[..5], &[DEDUCTED; 5]);
    assert_eq!(&applied[5..], &[Applied::Insufficient; 3]);
    assert_eq!(stock(&stock_db, 1).await, 0);
    let mut expected = rows(&orders[..5], "DEDUCTED");
    expected.extend(rows(&orders[5..], "INSUFFICIENT"));
    assert_eq!(tx_log(&stock_db).await, expected);
    // And a redelivery repeats the finding, to tell order-service again.
    let again = store::apply_batch(&stock_db, &batch_of(&orders), true)
        .await
        .unwrap();
    assert_eq!(&again[5..], &[Applied::Duplicate { insufficient: true }; 3]);
    assert_eq!(tx_log(&stock_db).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_stock_goes_in_admission_order_and_a_later_smaller_order_may_fit() {
    // Arrange: 5 in stock; 2 + 2 fit, the third 2 does not, the last 1 does.
    let (_env, stock_db) = stock_database().await;
    set(&stock_db, 1, 5).await;
    let orders = [
        order_message(1, 1, 2),
        order_message(2, 1, 2),
        order_message(3, 1, 2),
        order_message(4, 1, 1),
    ];

    // Act
    let applied = store::apply_batch(&stock_db, &batch_of(&orders), true)
        .await
        .unwrap();

    // Assert
    assert_eq!(
        applied,
        vec![DEDUCTED, DEDUCTED, Applied::Insufficient, DEDUCTED]
    );
    assert_eq!(stock(&stock_db, 1).await, 0);
    let mut expected = rows([&orders[0], &orders[1], &orders[3]], "DEDUCTED");
    expected.extend(rows([&orders[2]], "INSUFFICIENT"));
    assert_eq!(tx_log(&stock_db).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_short_for_now_leave_no_row_and_a_redelivery_after_a_restock_deducts_them() {
    // Arrange: 5 in stock, 8 one-item orders, and retries left.
    let (_env, stock_db) = stock_database().await;
    set(&stock_db, 1, 5).await;
    let orders: Vec<_> = (1..=8).map(|u| order_message(u, 1, 1)).collect();
    let batch = batch_of(&orders);

    // Act 1
    let applied = store::apply_batch(&stock_db, &batch, false).await.unwrap();

    // Assert 1: the first five deducted, nothing written for the others.
    assert_eq!(&applied[..5], &[DEDUCTED; 5]);
    assert_eq!(&applied[5..], &[Applied::ShortForNow; 3]);
    assert_eq!(stock(&stock_db, 1).await, 0);
    assert_eq!(tx_log(&stock_db).await, rows(&orders[..5], "DEDUCTED"));

    // Act 2: three come back (cancellations elsewhere), then the redelivery.
    set(&stock_db, 1, 3).await;
    let redelivered = store::apply_batch(&stock_db, &batch, false).await.unwrap();

    // Assert 2
    assert_eq!(&redelivered[..5], &[DUPLICATE; 5]);
    assert_eq!(&redelivered[5..], &[DEDUCTED; 3]);
    assert_eq!(stock(&stock_db, 1).await, 0);
    assert_eq!(tx_log(&stock_db).await, rows(&orders, "DEDUCTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_voided_by_an_earlier_cancellation_deducts_nothing_in_a_batch() {
    // Arrange: the second order's cancellation came first.
    let (_env, stock_db) = stock_database().await;
    set(&stock_db, 1, 10).await;
    let orders = [
        order_message(1, 1, 1),
        order_message(2, 1, 4),
        order_message(3, 1, 2),
    ];
    let cancel = OrderCancelled::of(&orders[1], CancelReason::Buyer);
    assert_eq!(
        store::apply_cancel(&stock_db, &cancel).await.unwrap(),
        Restored::NothingToRestore
    );

    // Act
    let applied = store::apply_batch(&stock_db, &batch_of(&orders), true)
        .await
        .unwrap();

    // Assert
    assert_eq!(applied, vec![DEDUCTED, DUPLICATE, DEDUCTED]);
    assert_eq!(stock(&stock_db, 1).await, 7);
    let mut expected = rows([&orders[0], &orders[2]], "DEDUCTED");
    expected.extend(rows([&orders[1]], "VOIDED"));
    expected.insert(
        cancel.tx_no.to_string(),
        (1, 4, "NOTHING_TO_RESTORE".to_owned()),
    );
    assert_eq!(tx_log(&stock_db).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_for_two_products_deducts_each_on_its_own() {
    // Arrange: product 1 covers its orders, product 2 covers two of its three.
    let (_env, stock_db) = stock_database().await;
    set(&stock_db, 1, 10).await;
    set(&stock_db, 2, 2).await;
    let orders = [
        order_message(1, 2, 1),
        order_message(2, 1, 3),
        order_message(3, 2, 1),
        order_message(4, 1, 4),
        order_message(5, 2, 1),
    ];

    // Act
    let applied = store::apply_batch(&stock_db, &batch_of(&orders), true)
        .await
        .unwrap();

    // Assert
    assert_eq!(
        applied,
        vec![
            DEDUCTED,
            DEDUCTED,
            DEDUCTED,
            DEDUCTED,
            Applied::Insufficient
        ]
    );
    assert_eq!(stock(&stock_db, 1).await, 3);
    assert_eq!(stock(&stock_db, 2).await, 0);
    let mut expected = rows(&orders[..4], "DEDUCTED");
    expected.extend(rows([&orders[4]], "INSUFFICIENT"));
    assert_eq!(tx_log(&stock_db).await, expected);
    assert_eq!(stock_writes(&stock_db, 1).await, 1);
    assert_eq!(
        stock_writes(&stock_db, 2).await,
        2,
        "order by order when short"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_claimed_by_another_delivery_meanwhile_makes_the_batch_apply_again() {
    // Arrange: another delivery has claimed and deducted the second order,
    // not committed yet; the batch reads tx_log before that commit.
    let (env, stock_db) = stock_database().await;
    set(&stock_db, 1, 10).await;
    let orders = [
        order_message(1, 1, 1),
        order_message(2, 1, 2),
        order_message(3, 1, 3),
    ];
    let other = stock_db.begin().await.unwrap();
    other
        .execute_unprepared(&format!(
            "INSERT INTO tx_log (tx_no, order_no, product_id, count, outcome) \
             VALUES ('{}', '{}', 1, 2, 'DEDUCTED')",
            orders[1].tx_no, orders[1].order_no
        ))
        .await
        .unwrap();
    other
        .execute_unprepared("UPDATE stock SET total_count = total_count - 2 WHERE product_id = 1")
        .await
        .unwrap();

    // Act: the batch's insert waits for that row; the other delivery commits.
    let batch = batch_of(&orders);
    let applying = tokio::spawn({
        let stock_db = stock_db.clone();
        async move { store::apply_batch(&stock_db, &batch, true).await }
    });
    eventually(
        "the batch waiting on its insert",
        Duration::from_secs(10),
        || async {
            (db::running_statements(&stock_db, &env.stock_db, "INSERT INTO tx_log").await == 1)
                .then_some(())
        },
    )
    .await;
    other.commit().await.unwrap();
    let applied = applying.await.unwrap().expect("applied on the second try");

    // Assert
    assert_eq!(applied, vec![DEDUCTED, DUPLICATE, DEDUCTED]);
    assert_eq!(stock(&stock_db, 1).await, 4);
    assert_eq!(tx_log(&stock_db).await, rows(&orders, "DEDUCTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_batches_and_redeliveries_on_one_product_deduct_each_order_once() {
    // Arrange: 8 batches of 16 one-item orders; each batch delivered twice
    // and each of its orders also alone, all at once, on 200 items.
    let (_env, stock_db) = stock_database().await;
    set(&stock_db, 1, 200).await;
    let batches: Vec<Vec<OrderCreated>> = (0..8)
        .map(|b| {
            (0..16)
                .map(|u| order_message(b * 16 + u + 1, 1, 1))
                .collect()
        })
        .collect();

    // Act
    let deliveries = batches.iter().flat_map(|orders| {
        let batch = batch_of(orders);
        let stock_db = &stock_db;
        let twice = (0..2).map(move |_| {
            let batch = batch.clone();
            async move {
                // A failed delivery (a deadlock victim, a second duplicate
                // key) is redelivered: retried here the same way.
                for _ in 0..5 {
                    if store::apply_batch(stock_db, &batch, true).await.is_ok() {
                        return;
                    }
                }
                panic!("batch {} never applied", batch.batch_tx_no);
            }
        });
        let alone = orders.iter().map(move |order| {
            let order = order.clone();
            async move {
                for _ in 0..5 {
                    if store::apply_order(stock_db, &order).await.is_ok() {
                        return;
                    }
                }
                panic!("order {} never applied", order.tx_no);
            }
        });
        twice
            .map(futures::FutureExt::boxed)
            .chain(alone.map(futures::FutureExt::boxed))
            .collect::<Vec<_>>()
    });
    futures::future::join_all(deliveries).await;

    // Assert
    let all: Vec<_> = batches.iter().flatten().collect();
    assert_eq!(stock(&stock_db, 1).await, 200 - 128);
    assert_eq!(tx_log(&stock_db).await, rows(all, "DEDUCTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_message_and_a_single_order_through_the_broker_are_each_applied_once() {
    // Arrange
    let broker = PrivateBroker::start().await;
    let app = TestApp::builder().broker(&broker).spawn_stock().await;
    let (env, stock) = (&app.env, &app.stock);
    set_stock(stock, 1, 20).await;
    let writer = TopicWriter::start(env).await;
    let stock_db = db::connect(&env.stock_db).await;
    // Five orders of 2 for product 1, and one for product 2, which has none.
    let mut orders: Vec<_> = (1..=5).map(|u| order_message(u, 1, 2)).collect();
    orders.push(order_message(6, 2, 1));
    set_stock(stock, 2, 0).await;
    let batch = batch_of(&orders);
    let single = order_message(7, 1, 1);

    // Act
    writer
        .send_tagged(TAG_ORDER_BATCH, batch.batch_tx_no.as_str(), batch.encode())
        .await;
    writer.send(&single).await;

    // Assert
    let mut expected = rows(orders[..5].iter().chain([&single]), "DEDUCTED");
    expected.extend(rows([&orders[5]], "INSUFFICIENT"));
    eventually("7 orders applied", Duration::from_secs(60), || async {
        (db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await >= 7).then_some(())
    })
    .await;
    assert_eq!(stock_of(stock, 1).await, 20 - 10 - 1);
    assert_eq!(tx_log(&stock_db).await, expected);

    // Act: a redelivered copy of the batch.
    let dedupe_hits = || async {
        let (_, stats) = stock.call(Method::GET, "/api/stock/stats", None).await;
        stats["dedupe_hits"].as_i64().expect("dedupe_hits")
    };
    let before = dedupe_hits().await;
    writer
        .send_tagged(TAG_ORDER_BATCH, batch.batch_tx_no.as_str(), batch.encode())
        .await;

    // Assert: consumed (six duplicates counted) and nothing changed.
    eventually("the copy deduplicated", Duration::from_secs(60), || async {
        (dedupe_hits().await == before + 6).then_some(())
    })
    .await;
    assert_eq!(stock_of(stock, 1).await, 9);
    assert_eq!(tx_log(&stock_db).await, expected);

    writer.stop().await;
    app.stop().await;
}
