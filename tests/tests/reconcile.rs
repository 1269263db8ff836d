//! Reconciliation of Redis against both databases: finds drift, repairs it —
//! through the admin endpoint and the `order-service reconcile` subcommand.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use seckill_tests::app::TestApp;
use seckill_tests::services::{open_sale, order_service_command, place_order, sale_view};
use seckill_tests::{db, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciliation_finds_redis_drift_and_repairs_it() {
    // Arrange: a sale with two orders, pipeline quiet.
    let app = TestApp::spawn().await;
    let (env, stock, orders) = (&app.env, &app.stock, &app.orders);
    open_sale(orders, 1, 10).await;
    for user in [1, 2] {
        assert_eq!(place_order(orders, user, 1, 1).await.0, StatusCode::CREATED);
    }
    let stock_db = db::connect(&env.stock_db).await;
    eventually("both orders applied", Duration::from_secs(30), || {
        let stock_db = stock_db.clone();
        async move {
            (db::scalar(&stock_db, "SELECT COUNT(*) FROM tx_log", []).await == 2).then_some(())
        }
    })
    .await;
    let (status, report) = orders.call(Method::GET, "/api/admin/reconcile", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["consistent"], true, "{report}");
    assert_eq!(report["products"][0]["redis_stock"], 8);
    assert_eq!(report["products"][0]["db_stock"], 8);
    assert_eq!(order_service_command(env, stock, &["reconcile"]).0, 0);

    // Act: Redis drifts (stock inflated, one reservation lost).
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let sale_key = format!("{}:sale:1", env.redis_prefix);
    redis::cmd("HSET")
        .arg(&sale_key)
        .arg("stock")
        .arg(50)
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    let reservations: Vec<String> = redis::cmd("HKEYS")
        .arg(format!("{sale_key}:resv"))
        .query_async(&mut redis)
        .await
        .unwrap();
    redis::cmd("HDEL")
        .arg(format!("{sale_key}:resv"))
        .arg(&reservations[0])
        .query_async::<()>(&mut redis)
        .await
        .unwrap();

    // Assert: both the endpoint and the CLI see it; repair fixes it.
    let (_, report) = orders.call(Method::GET, "/api/admin/reconcile", None).await;
    assert_eq!(report["consistent"], false, "{report}");
    let differences = report["products"][0]["differences"].to_string();
    assert!(
        differences.contains("Redis stock Some(50) != DB stock Some(8)"),
        "{differences}"
    );
    assert!(differences.contains("1 reservations"), "{differences}");
    let (code, printed) = order_service_command(env, stock, &["reconcile"]);
    assert_eq!(code, 1, "{printed}");
    assert!(printed.contains("DIFFERENCES FOUND"), "{printed}");

    let (code, printed) = order_service_command(env, stock, &["reconcile", "--repair"]);
    assert_eq!(code, 0, "{printed}");
    assert!(printed.contains("consistent"), "{printed}");
    assert_eq!(sale_view(orders, 1).await, (8, 2));

    // The endpoint repairs too.
    redis::cmd("HSET")
        .arg(&sale_key)
        .arg("stock")
        .arg(3)
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    let (status, report) = orders
        .call(Method::POST, "/api/admin/reconcile/repair", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["consistent"], true, "{report}");
    assert_eq!(sale_view(orders, 1).await, (8, 2));

    app.stop().await;
}
