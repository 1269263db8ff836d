//! Undecided transactions: the broker checks back and the answer comes from
//! order-service's tx_log, final and consistent with the local transaction.

use std::any::Any;
use std::time::Duration;

use common::messages::{Envelope, OrderCreated, TAG_ORDER_CREATED};
use common::mq::MqRuntime;
use reqwest::{Method, StatusCode};
use rocketmq_client_rust::{LocalTransactionState, TransactionListener, TransactionMQProducer};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use sea_orm::DatabaseConnection;
use seckill_tests::app::{StockApp, TestApp};
use seckill_tests::services::{OrderServiceProcess, open_sale, sale_view, set_stock, stock_of};
use seckill_tests::{TestEnv, db, eventually, order_message};

const CHECK_BACK_WAIT: Duration = Duration::from_secs(60);

/// Waits until `count` rows of the stock tx_log exist, then returns the stock of `product`.
async fn deducted(env: &TestEnv, count: i64) {
    let stock_db = db::connect(&env.stock_db).await;
    eventually("the stock deduction", CHECK_BACK_WAIT, || {
        let stock_db = stock_db.clone();
        async move {
            (db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await >= count).then_some(())
        }
    })
    .await;
}

/// A real order-service process with a sale of 5 items of product 1 open.
async fn process_with_sale(app: &StockApp) -> OrderServiceProcess {
    let process = app.start_order_process().await;
    let opened = reqwest::Client::new()
        .put(format!("{}/api/sales/1", process.base_url))
        .bearer_auth(seckill_tests::auth::admin_token())
        .json(&serde_json::json!({"stock": 5}))
        .send()
        .await
        .expect("open sale");
    assert_eq!(opened.status(), StatusCode::OK);
    process
}

/// Waits until order-service's tx_log holds `count` ROLLED_BACK rows (check-backs).
async fn wait_for_rollbacks(order_db: &DatabaseConnection, count: i64) {
    eventually(
        "the check-back to roll back",
        CHECK_BACK_WAIT,
        || async move {
            (db::scalar(
                order_db,
                "SELECT COUNT(*) FROM tx_log WHERE outcome = 'ROLLED_BACK'",
                [],
            )
            .await
                == count)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_committed_order_of_a_killed_process_is_rolled_back_by_check_back() {
    // Arrange: a real order-service process whose local transaction is stuck
    // on a table lock after writing its tx_log row.
    let stock_only = TestApp::builder().spawn_stock().await;
    let env = &stock_only.env;
    let process = process_with_sale(&stock_only).await;
    let locker = db::connect_session(&env.order_db).await;
    db::exec(&locker, "LOCK TABLES orders WRITE").await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/orders", process.base_url);
    let token = seckill_tests::auth::order_token(&process.base_url, 1, 1).await;
    let stuck = tokio::spawn(async move {
        http.post(url)
            .bearer_auth(seckill_tests::auth::buyer_token(1))
            .header("Order-Token", token)
            .json(&serde_json::json!({"user_id": 1, "product_id": 1, "count": 2}))
            .send()
            .await
    });
    db::wait_for_statement(&env.order_db, "INSERT INTO orders").await;

    // Act: kill it between the half message and end-transaction, then start a fresh instance.
    process.kill();
    assert!(
        stuck.await.expect("request task").is_err(),
        "the killed process answered"
    );
    db::exec(&locker, "UNLOCK TABLES").await;
    let app = stock_only.spawn_orders().await;
    let (env, stock) = (&app.env, &app.stock);

    // Assert: the check-back claimed the tx_no as rolled back; nothing committed or deducted.
    let order_db = db::connect(&env.order_db).await;
    wait_for_rollbacks(&order_db, 1).await;
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        0
    );
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM tx_log", []).await,
        1
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stock_db = db::connect(&env.stock_db).await;
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        0
    );
    assert_eq!(stock_of(stock, 1).await, 5);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancellation_of_a_killed_process_is_rolled_back_and_the_order_stays_new() {
    // Arrange: an order, deducted; then its cancellation's local transaction
    // is stuck on the order's row lock in a real process.
    let stock_only = TestApp::builder().spawn_stock().await;
    let env = &stock_only.env;
    let process = process_with_sale(&stock_only).await;
    let http = reqwest::Client::new();
    let token = seckill_tests::auth::order_token(&process.base_url, 1, 1).await;
    let placed: serde_json::Value = http
        .post(format!("{}/api/orders", process.base_url))
        .bearer_auth(seckill_tests::auth::buyer_token(1))
        .header("Order-Token", token)
        .json(&serde_json::json!({"user_id": 1, "product_id": 1, "count": 2}))
        .send()
        .await
        .expect("order")
        .json()
        .await
        .expect("order body");
    let order_no = placed["order_no"].as_str().expect("order_no").to_owned();
    deducted(env, 1).await;
    let locker = db::connect_session(&env.order_db).await;
    db::exec(&locker, "START TRANSACTION").await;
    db::exec(
        &locker,
        &format!("SELECT * FROM orders WHERE order_no = '{order_no}' FOR UPDATE"),
    )
    .await;
    let url = format!("{}/api/orders/{order_no}/cancel", process.base_url);
    let stuck = tokio::spawn(async move {
        http.post(url)
            .bearer_auth(seckill_tests::auth::buyer_token(1))
            .json(&serde_json::json!({"user_id": 1}))
            .send()
            .await
    });
    db::wait_for_statement(&env.order_db, "UPDATE orders SET status = 'CANCELLED'").await;

    // Act: kill it between the half message and end-transaction.
    process.kill();
    assert!(
        stuck.await.expect("request task").is_err(),
        "the killed process answered"
    );
    db::exec(&locker, "ROLLBACK").await;
    let app = stock_only.spawn_orders().await;
    let (env, stock, fresh) = (&app.env, &app.stock, &app.orders);

    // Assert: the check-back rolled the cancellation back; the order is NEW,
    // its stock and reservation untouched; it can still be cancelled for real.
    let order_db = db::connect(&env.order_db).await;
    wait_for_rollbacks(&order_db, 1).await;
    let (_, order) = fresh
        .call(Method::GET, &format!("/api/orders/{order_no}"), None)
        .await;
    assert_eq!(order["status"], "NEW", "{order}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stock_of(stock, 1).await, 3);
    assert_eq!(sale_view(fresh, 1).await, (3, 1));
    let (status, body) = fresh
        .call(
            Method::POST,
            &format!("/api/orders/{order_no}/cancel"),
            Some(&serde_json::json!({"user_id": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    seckill_tests::invariants::assert_every_unit_accounted(env, fresh, 1, 5).await;
    app.stop().await;
}

/// Records the order for real, then "crashes": it never tells the broker.
struct CommitThenVanish {
    db: DatabaseConnection,
    runtime: tokio::runtime::Handle,
}

impl TransactionListener for CommitThenVanish {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let order = OrderCreated::decode(msg.get_body().expect("body")).expect("order");
        self.runtime
            .block_on(order_service::store::record_order(&self.db, &order, None))
            .expect("local transaction commits");
        LocalTransactionState::Unknown
    }

    fn check_local_transaction(&self, _msg: &MessageExt) -> LocalTransactionState {
        LocalTransactionState::Unknown
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_order_whose_end_was_lost_is_committed_by_check_back() {
    // Arrange
    let stock_only = TestApp::builder().spawn_stock().await;
    let env = &stock_only.env;
    set_stock(&stock_only.stock, 1, 5).await;
    let order_db = common::db::connect_and_migrate(
        &seckill_tests::services::order_settings(env, "http://127.0.0.1:1").database,
        order_service::SCHEMA,
    )
    .await
    .expect("order database");

    // Act: a producer of the order group commits locally, then goes away
    // without ending the transaction (the send is abandoned).
    let settings = env.mq_settings();
    let runtime = MqRuntime::start("test-abandoned", &settings).expect("runtime");
    let mut producer = TransactionMQProducer::builder(runtime.client())
        .producer_group(env.producer_group.clone())
        .name_server_addr(env.namesrv_addr.clone())
        .transaction_listener(CommitThenVanish {
            db: order_db.clone(),
            runtime: tokio::runtime::Handle::current(),
        })
        .build();
    producer.start().await.expect("producer");
    let order = order_message(3, 1, 2);
    let message = Message::builder()
        .topic(env.topic.as_str())
        .tags(TAG_ORDER_CREATED)
        .key(order.tx_no.to_string())
        .body(order.encode())
        .build()
        .unwrap();
    let sent = producer
        .send_message_in_transaction::<(), _>(message, None)
        .await
        .expect("half message");
    assert_eq!(
        sent.local_transaction_state,
        Some(LocalTransactionState::Unknown)
    );
    producer.shutdown().await;
    runtime.shutdown().await;
    assert_eq!(
        db::scalar(&order_db, "SELECT COUNT(*) FROM orders", []).await,
        1
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stock_db = db::connect(&env.stock_db).await;
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        0,
        "delivered before commit"
    );

    let app = stock_only.spawn_orders().await;
    let (env, stock, fresh) = (&app.env, &app.stock, &app.orders);

    // Assert: the fresh instance answers COMMIT from tx_log; deducted exactly once.
    deducted(env, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        1
    );
    assert_eq!(
        db::text(
            &stock_db,
            "SELECT outcome FROM tx_log WHERE tx_no = ?",
            [order.tx_no.to_string().into()]
        )
        .await
        .as_deref(),
        Some("DEDUCTED")
    );
    assert_eq!(stock_of(stock, 1).await, 3);
    let (status, body) = fresh
        .call(
            Method::GET,
            &format!("/api/orders/{}", order.order_no),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "NEW");

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_back_racing_a_slow_local_transaction_agrees_with_it() {
    // Arrange: the local transaction will stall on the orders table after
    // writing its tx_log row, long enough for the broker to check back.
    let app = TestApp::spawn().await;
    let (env, stock, orders) = (&app.env, &app.stock, &app.orders);
    open_sale(orders, 1, 5).await;
    let locker = db::connect_session(&env.order_db).await;
    db::exec(&locker, "LOCK TABLES orders WRITE").await;
    let base = orders.base_url.clone();
    let token = seckill_tests::auth::order_token(&base, 9, 1).await;
    let placing = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(format!("{base}/api/orders"))
            .bearer_auth(seckill_tests::auth::buyer_token(9))
            .header("Order-Token", token)
            .json(&serde_json::json!({"user_id": 9, "product_id": 1, "count": 1}))
            .send()
            .await
            .expect("response");
        (
            response.status(),
            response.json::<serde_json::Value>().await.expect("json"),
        )
    });

    // Act: wait until the check-back is blocked behind the local transaction, then let both go.
    let observer = db::connect("information_schema").await;
    eventually(
        "the check-back to wait on the local transaction",
        CHECK_BACK_WAIT,
        || {
            let observer = observer.clone();
            let db_name = env.order_db.clone();
            async move {
                (db::running_statements(&observer, &db_name, "INSERT IGNORE INTO tx_log").await > 0)
                    .then_some(())
            }
        },
    )
    .await;
    db::exec(&locker, "UNLOCK TABLES").await;

    // Assert: the order committed, the check-back said so too, one deduction.
    let (status, placed) = placing.await.expect("request task");
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    deducted(env, 1).await;
    let order_db = db::connect(&env.order_db).await;
    assert_eq!(
        db::text(
            &order_db,
            "SELECT outcome FROM tx_log WHERE tx_no = ?",
            [placed["tx_no"].as_str().unwrap().into()]
        )
        .await
        .as_deref(),
        Some("COMMITTED")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stock_db = db::connect(&env.stock_db).await;
    assert_eq!(
        db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await,
        1
    );
    assert_eq!(stock_of(stock, 1).await, 4);
    assert_eq!(sale_view(orders, 1).await, (4, 1));

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_transaction_and_check_back_never_disagree() {
    // Arrange: the two real functions, racing on a real database.
    let env = TestEnv::new();
    let db = db::migrated_order_db(&env).await;

    // Act: 90 races; a third start with the check-back ahead, a third with the
    // local transaction ahead, a third together.
    let mut races = Vec::new();
    for i in 0..90u64 {
        let (record_delay, resolve_delay) = match i % 3 {
            0 => (3, 0),
            1 => (0, 3),
            _ => (0, 0),
        };
        let order = order_message(1, 1, 1);
        let (db1, db2) = (db.clone(), db.clone());
        let order1 = order.clone();
        races.push(tokio::spawn(async move {
            let record = async move {
                tokio::time::sleep(Duration::from_millis(record_delay)).await;
                order_service::store::record_order(&db1, &order1, None).await
            };
            let tx_no = order.tx_no.to_string();
            let resolve = async move {
                tokio::time::sleep(Duration::from_millis(resolve_delay)).await;
                order_service::store::resolve_tx(&db2, &tx_no)
                    .await
                    .expect("resolve")
            };
            let (recorded, resolved) = tokio::join!(record, resolve);
            (order, recorded, resolved)
        }));
    }

    // Assert: per tx_no, both sides saw the same outcome, and the order exists iff committed.
    let (mut committed, mut rolled_back) = (0, 0);
    for race in races {
        let (order, recorded, resolved) = race.await.expect("race");
        let exists = db::scalar(
            &db,
            "SELECT COUNT(*) FROM orders WHERE tx_no = ?",
            [order.tx_no.to_string().into()],
        )
        .await;
        match (recorded, resolved) {
            (Ok(()), order_service::store::TxOutcome::Committed) => {
                assert_eq!(exists, 1);
                committed += 1;
            }
            (
                Err(order_service::store::RecordError::AlreadyDecided(
                    order_service::store::TxOutcome::RolledBack,
                )),
                order_service::store::TxOutcome::RolledBack,
            ) => {
                assert_eq!(exists, 0);
                rolled_back += 1;
            }
            (recorded, resolved) => panic!(
                "disagreement on {}: local {recorded:?}, check-back {resolved:?}",
                order.tx_no
            ),
        }
    }
    assert!(
        committed > 0 && rolled_back > 0,
        "both orders of the race happened: {committed} committed, {rolled_back} rolled back"
    );
}
