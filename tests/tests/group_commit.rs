//! Group commit: orders admitted together are recorded by one local
//! transaction tied to one transactional `OrderBatch` message. Each order
//! still gets its own answer, the batch's check-back agrees with its local
//! transaction, an order refused in a batch does not fail its batch-mates,
//! and a batch in flight when its process dies is decided by the check-back.

use std::time::Duration;

use common::domain::TxNo;
use common::messages::{OrderBatch, OrderCreated};
use order_service::store::{self, BatchRecordError, RecordError, TxOutcome};
use reqwest::StatusCode;
use sea_orm::DatabaseConnection;
use seckill_tests::app::TestApp;
use seckill_tests::invariants::assert_every_unit_accounted;
use seckill_tests::{TestEnv, db, eventually, order_message};

/// A migrated order database of a fresh test environment.
async fn order_db() -> (TestEnv, DatabaseConnection) {
    let env = TestEnv::new();
    let db = db::migrated_order_db(&env).await;
    (env, db)
}

fn batch_of(orders: &[OrderCreated]) -> OrderBatch {
    OrderBatch::new(TxNo::generate_batch(), orders.to_vec())
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db::scalar(db, sql, []).await
}

async fn outcome(db: &DatabaseConnection, tx_no: &str) -> Option<String> {
    db::text(
        db,
        "SELECT outcome FROM tx_log WHERE tx_no = ?",
        [tx_no.into()],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_is_recorded_whole_and_every_claim_on_it_agrees() {
    // Arrange
    let (_env, db) = order_db().await;
    let orders: Vec<_> = (1..=5).map(|user| order_message(user, 1, 1)).collect();
    let batch = batch_of(&orders);

    // Act
    store::record_batch(&db, &batch, &[None, Some("k2".into()), None, None, None])
        .await
        .expect("recorded");

    // Assert: five NEW orders, six COMMITTED rows (the batch's and each order's).
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM orders WHERE status = 'NEW'").await,
        5
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM tx_log WHERE outcome = 'COMMITTED'"
        )
        .await,
        6
    );
    assert_eq!(
        db::text(
            &db,
            "SELECT idempotency_key FROM orders WHERE user_id = 2",
            []
        )
        .await
        .as_deref(),
        Some("k2")
    );
    // The check-back on the batch and each order's own claim see it committed.
    assert_eq!(
        store::resolve_tx(&db, batch.batch_tx_no.as_str())
            .await
            .unwrap(),
        TxOutcome::Committed
    );
    for order in &orders {
        assert_eq!(
            store::resolve_tx(&db, order.tx_no.as_str()).await.unwrap(),
            TxOutcome::Committed
        );
    }
    // Sent again (a second delivery of the same local work), it is already decided.
    assert!(matches!(
        store::record_batch(&db, &batch, &[]).await,
        Err(BatchRecordError::Whole(RecordError::AlreadyDecided(
            TxOutcome::Committed
        )))
    ));
}

/// Every value of each order as `order` and its key say, written the way
/// the one-order path writes it (its time to the millisecond, its sale's
/// price): `(order_no, user, product, count, status, key, price, time)`.
async fn stored_row(db: &DatabaseConnection, tx_no: &str) -> Option<String> {
    db::text(
        db,
        "SELECT CONCAT_WS('|', order_no, user_id, product_id, pay_count, status, \
         COALESCE(idempotency_key, '-'), COALESCE(unit_price_cents, '-'), \
         DATE_FORMAT(create_time, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f')) \
         FROM orders WHERE tx_no = ?",
        [tx_no.into()],
    )
    .await
}

fn expected_row(order: &OrderCreated, key: Option<&str>, price: Option<i64>) -> String {
    let at = order
        .created_at
        .format("%Y-%m-%d %H:%M:%S%.3f000")
        .to_string();
    format!(
        "{}|{}|{}|{}|NEW|{}|{}|{at}|{at}",
        order.order_no,
        order.user_id,
        order.product_id,
        order.count,
        key.unwrap_or("-"),
        price.map_or_else(|| "-".to_owned(), |p| p.to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_written_at_once_keeps_every_value_of_each_order_as_one_order_alone_would() {
    // Arrange: two products, one with a sale price; orders with and without
    // an Idempotency-Key, of different counts; one order recorded alone.
    let (_env, db) = order_db().await;
    db::exec(
        &db,
        "INSERT INTO sales (product_id, per_user_limit, opened_stock, sale_price_cents) \
         VALUES (71, 5, 100, 1999), (72, 5, 100, NULL)",
    )
    .await;
    let orders = vec![
        order_message(11, 71, 1),
        order_message(12, 72, 3),
        order_message(13, 71, 2),
        order_message(14, 72, 1),
    ];
    let keys = vec![
        Some("key-11".to_owned()),
        None,
        Some("key-13".to_owned()),
        None,
    ];
    let alone = order_message(15, 71, 2);

    // Act
    store::record_batch(&db, &batch_of(&orders), &keys)
        .await
        .expect("recorded");
    store::record_order(&db, &alone, Some("key-15"))
        .await
        .expect("recorded alone");

    // Assert: each batch row holds exactly its order's values, as the
    // one-order path stores them.
    for (order, key) in orders.iter().zip(&keys) {
        let price = (order.product_id.get() == 71).then_some(1999);
        assert_eq!(
            stored_row(&db, order.tx_no.as_str()).await,
            Some(expected_row(order, key.as_deref(), price)),
            "order of user {}",
            order.user_id
        );
    }
    assert_eq!(
        stored_row(&db, alone.tx_no.as_str()).await,
        Some(expected_row(&alone, Some("key-15"), Some(1999)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_a_batch_refuses_are_named_and_the_rest_commit_without_them() {
    // Arrange: user 3 already has an order for Idempotency-Key "k"; the tx_no
    // of the fourth order was claimed rolled back (a sweeper, a check-back).
    let (_env, db) = order_db().await;
    let earlier = order_message(3, 1, 1);
    store::record_order(&db, &earlier, Some("k"))
        .await
        .expect("earlier order");
    let mut orders: Vec<_> = (1..=5).map(|user| order_message(user, 1, 1)).collect();
    orders[3] = order_message(3, 1, 1);
    store::resolve_tx(&db, orders[4].tx_no.as_str())
        .await
        .unwrap();
    let keys = vec![None, None, None, Some("k".to_owned()), None];
    let batch = batch_of(&orders);

    // Act
    let refused = store::record_batch(&db, &batch, &keys).await;

    // Assert: both refused orders named, with why; nothing of the batch written.
    let Err(BatchRecordError::Some(refused)) = refused else {
        panic!("expected refused orders, got {refused:?}");
    };
    let named: Vec<_> = refused
        .iter()
        .map(|(i, why)| (*i, format!("{why:?}")))
        .collect();
    assert_eq!(named.len(), 2, "{named:?}");
    assert_eq!(named[0].0, 3);
    assert!(named[0].1.contains("DuplicateRequest"), "{named:?}");
    assert_eq!(named[1].0, 4);
    assert!(
        named[1].1.contains("AlreadyDecided(RolledBack)"),
        "{named:?}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(outcome(&db, batch.batch_tx_no.as_str()).await, None);
    assert_eq!(outcome(&db, orders[0].tx_no.as_str()).await, None);

    // Act: the rest, again, as a batch of their own.
    let rest = batch_of(&orders[..3]);
    store::record_batch(&db, &rest, &[])
        .await
        .expect("the rest");

    // Assert
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders").await, 4);
    assert_eq!(
        outcome(&db, rest.batch_tx_no.as_str()).await.as_deref(),
        Some("COMMITTED")
    );
    assert_eq!(
        outcome(&db, orders[4].tx_no.as_str()).await.as_deref(),
        Some("ROLLED_BACK")
    );
}

/// Found by the chaos suite (failing-commit after the slow link: 22 orders
/// answered 201 and never recorded): when the orders' claims in `tx_log` go
/// through and the orders insert is then refused (a used Idempotency-Key, a
/// trigger), the claims must be undone before each order is tried alone —
/// else every order finds its own claim, reads COMMITTED and is named
/// "decided: committed" while the whole transaction is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_the_orders_insert_refuses_is_named_alone_and_nothing_of_the_batch_is_written() {
    // Arrange: user 3 already has an order for Idempotency-Key "k"; nothing
    // of the batch is claimed, so its tx_log claims all go through.
    let (_env, db) = order_db().await;
    store::record_order(&db, &order_message(3, 1, 1), Some("k"))
        .await
        .expect("earlier order");
    let orders: Vec<_> = (1..=4).map(|user| order_message(user, 1, 1)).collect();
    let keys = vec![None, None, Some("k".to_owned()), None];
    let batch = batch_of(&orders);

    // Act
    let refused = store::record_batch(&db, &batch, &keys).await;

    // Assert: only the third order named, as a duplicate request; no claim
    // and no order of the batch written.
    let Err(BatchRecordError::Some(refused)) = refused else {
        panic!("expected a refused order, got {refused:?}");
    };
    let named: Vec<_> = refused
        .iter()
        .map(|(i, why)| (*i, format!("{why:?}")))
        .collect();
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0].0, 2);
    assert!(named[0].1.contains("DuplicateRequest"), "{named:?}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders").await, 1);
    for order in &orders {
        assert_eq!(outcome(&db, order.tx_no.as_str()).await, None);
    }
    assert_eq!(outcome(&db, batch.batch_tx_no.as_str()).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_its_check_back_and_its_orders_claims_never_disagree() {
    // Arrange: the real functions racing on a real database: the batch's
    // local transaction, the broker's check-back on the batch, and a claim
    // on one of its orders (a sweeper or checkout settling it).
    let (_env, db) = order_db().await;

    // Act: 60 races with the three started in turn ahead of each other.
    let mut races = Vec::new();
    for i in 0..60u64 {
        let delays = [(i % 3) * 2, ((i + 1) % 3) * 2, ((i + 2) % 3) * 2];
        let orders: Vec<_> = (1..=3).map(|user| order_message(user, 1, 1)).collect();
        let batch = batch_of(&orders);
        let (db1, db2, db3) = (db.clone(), db.clone(), db.clone());
        races.push(tokio::spawn(async move {
            let b = batch.clone();
            let record = async move {
                tokio::time::sleep(Duration::from_millis(delays[0])).await;
                store::record_batch(&db1, &b, &[]).await
            };
            let batch_tx = batch.batch_tx_no.to_string();
            let check_back = async move {
                tokio::time::sleep(Duration::from_millis(delays[1])).await;
                store::resolve_tx(&db2, &batch_tx)
                    .await
                    .expect("check-back")
            };
            let order_tx = batch.orders[1].tx_no.to_string();
            let claim = async move {
                tokio::time::sleep(Duration::from_millis(delays[2])).await;
                store::resolve_tx(&db3, &order_tx).await.expect("claim")
            };
            let (recorded, checked, claimed) = tokio::join!(record, check_back, claim);
            (batch, recorded, checked, claimed)
        }));
    }

    // Assert: committed ⇔ every side says committed and all three orders
    // exist; otherwise none of them exists and nobody says committed.
    let mut seen = [0u32; 2];
    for race in races {
        let (batch, recorded, checked, claimed) = race.await.expect("race");
        let tx_nos: Vec<String> = batch
            .orders
            .iter()
            .map(|o| format!("'{}'", o.tx_no))
            .collect();
        let exist = count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM orders WHERE tx_no IN ({})",
                tx_nos.join(",")
            ),
        )
        .await;
        match recorded {
            Ok(()) => {
                assert_eq!(checked, TxOutcome::Committed, "{}", batch.batch_tx_no);
                assert_eq!(claimed, TxOutcome::Committed, "{}", batch.batch_tx_no);
                assert_eq!(exist, 3);
                seen[0] += 1;
            }
            Err(err) => {
                assert_eq!(exist, 0, "{err:?}");
                assert_ne!(
                    outcome(&db, batch.batch_tx_no.as_str()).await.as_deref(),
                    Some("COMMITTED"),
                    "{err:?}"
                );
                assert_eq!(claimed, TxOutcome::RolledBack, "{err:?}");
                seen[1] += 1;
            }
        }
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both endings happened: {seen:?}"
    );
}

/// `seckill_group_commit_total{sent="…"}` from order-service's metrics text.
fn group_commit(metrics: &str, sent: &str) -> u64 {
    let prefix = format!("seckill_group_commit_total{{sent=\"{sent}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_buyers_are_committed_in_batches_and_each_deducted_once() {
    // Arrange: 80 items, 240 buyers at once.
    let app = TestApp::spawn_with(|s| s.rate_limit.per_user_per_sec = 0).await;
    app.open_sale(1, 80).await;

    // Act
    let answers = futures::future::join_all(
        (1..=240).map(|user| seckill_tests::services::place_order(&app.orders, user, 1, 1)),
    )
    .await;

    // Assert: exactly 80 placed, the rest sold out; batches were sent; every
    // placed order exists, and every unit is accounted for once quiet.
    let placed: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .collect();
    assert_eq!(placed.len(), 80, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, body)| *status == StatusCode::CREATED || body["code"] == "SOLD_OUT"),
        "{answers:?}"
    );
    let metrics = app.metrics().await;
    assert!(
        group_commit(&metrics, "batch") > 0,
        "no batch was sent:\n{metrics}"
    );
    assert!(group_commit(&metrics, "batched_orders") >= 2);
    let order_db = db::connect(&app.env.order_db).await;
    for (_, body) in &placed {
        assert_eq!(
            db::scalar(
                &order_db,
                "SELECT COUNT(*) FROM orders WHERE order_no = ? AND status = 'NEW'",
                [body["order_no"].as_str().unwrap().into()]
            )
            .await,
            1,
            "{body}"
        );
    }
    assert_every_unit_accounted(&app.env, &app.orders, 1, 80).await;
    assert_eq!(app.stock_of(1).await, 0);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_in_flight_when_order_service_is_killed_is_rolled_back_by_check_back() {
    // Arrange: a real order-service process sending one transaction at a
    // time. Two uncommitted rows of another session hold the
    // Idempotency-Keys of users 100 and 101: the first order (user 100)
    // waits on it alone; meanwhile orders of users 101–105 queue; when the
    // first is let go, they go as one batch and wait on user 101's key.
    let stock_only = TestApp::builder().spawn_stock().await;
    let env = &stock_only.env;
    let process = stock_only
        .start_order_process_with(&[("APP_GROUP_COMMIT__IN_FLIGHT", "1")])
        .await;
    let orders = seckill_tests::services::RunningService::remote(&process.base_url);
    seckill_tests::services::open_sale(&orders, 1, 10).await;
    let holder = |user: i64, key: &str| {
        format!(
            "INSERT INTO orders (order_no, tx_no, user_id, product_id, pay_count, status, idempotency_key) \
             VALUES ('hold{user}', 'txhold{user}', {user}, 9, 1, 'NEW', '{key}')"
        )
    };
    let first_lock = db::connect_session(&env.order_db).await;
    db::exec(&first_lock, "BEGIN").await;
    db::exec(&first_lock, &holder(100, "k100")).await;
    let batch_lock = db::connect_session(&env.order_db).await;
    db::exec(&batch_lock, "BEGIN").await;
    db::exec(&batch_lock, &holder(101, "k101")).await;
    let place = |user: i64| {
        let orders = seckill_tests::services::RunningService::remote(&process.base_url);
        tokio::spawn(async move {
            seckill_tests::services::place_order_with_key(&orders, user, 1, 1, &format!("k{user}"))
                .await
        })
    };
    let first = place(100);
    db::wait_for_statement(&env.order_db, "INSERT INTO orders (order_no, tx_no, user_id, product_id, pay_count, status, create_time, updated_at, idempotency_key, unit_price_cents) SELECT").await;
    let batched: Vec<_> = (101..=105).map(place).collect();
    // All five admitted (each holds a reservation), then queued right after.
    eventually(
        "the five to be admitted",
        Duration::from_secs(30),
        || async { (seckill_tests::services::sale_view(&orders, 1).await == (4, 6)).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    db::exec(&first_lock, "ROLLBACK").await;
    let (status, body, _) = first.await.expect("first order");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The batch's orders insert (its rows from one JSON array) waits on user 101's key.
    db::wait_for_statement(&env.order_db, "INSERT INTO orders (order_no, tx_no, user_id, product_id, pay_count, status, create_time, updated_at, idempotency_key, unit_price_cents) SELECT j.o").await;

    // Act: kill it with the batch between its half message and its end,
    // let the dead transaction go, start a fresh instance.
    process.kill();
    for request in batched {
        // The helper panics on a dropped connection: that is "no answer".
        if let Ok((status, body, _)) = request.await {
            assert!(!status.is_success(), "the killed process placed {body}");
        }
    }
    db::exec(&batch_lock, "ROLLBACK").await;
    let app = stock_only.spawn_orders().await;

    // Assert: the check-back rolled the batch back and claimed each of its
    // orders; their reservations went back; only the first order holds stock.
    let order_db = db::connect(&app.env.order_db).await;
    // The check-back claims the batch, then each of its orders in turn.
    eventually(
        "the check-back to roll back the batch and its five orders",
        Duration::from_secs(90),
        || {
            let order_db = order_db.clone();
            async move {
                (count(
                    &order_db,
                    "SELECT COUNT(*) FROM tx_log WHERE outcome = 'ROLLED_BACK'",
                )
                .await
                    == 6)
                    .then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        count(
            &order_db,
            "SELECT COUNT(*) FROM tx_log WHERE outcome = 'ROLLED_BACK' AND tx_no LIKE 'txg%'"
        )
        .await,
        1,
        "one of the six is the batch's own"
    );
    assert_eq!(
        count(
            &order_db,
            "SELECT COUNT(*) FROM orders WHERE product_id = 1"
        )
        .await,
        1
    );
    assert_every_unit_accounted(&app.env, &app.orders, 1, 10).await;
    assert_eq!(app.sale_view(1).await, (9, 1));

    app.stop().await;
}
