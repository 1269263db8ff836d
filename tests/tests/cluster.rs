//! The containerized cluster, broken on purpose (`deploy/cluster-test.sh`
//! brings it up and runs these with `--features cluster`). A driver outside
//! the containers talks only to the gateway and reads the two databases;
//! every scenario ends with the project's invariants.
//!
//! They run one after another (one cluster): `--test-threads 1`.
#![cfg(feature = "cluster")]

use std::time::Duration;

use seckill_tests::cluster::{Cluster, Tally};

const QUIET: Duration = Duration::from_secs(120);

/// A sale of 300 items on a fresh product for 900 buyers, 16 at a time, with
/// `service` SIGKILLed once 100 were answered.
async fn sale_with_a_kill(scenario: i64, service: &'static str) -> (Cluster, i64, Tally) {
    let cluster = Cluster::connect().await;
    let product = Cluster::fresh_product(scenario);
    cluster.open_sale(product, 300, 1).await;
    let killer = Cluster::connect().await;
    let first_user = scenario * 1_000_000;
    let tally = cluster
        .sell(product, first_user, 900, 16, 100, move || {
            killer.kill(service)
        })
        .await;
    (cluster, product, tally)
}

/// 1. A flash sale through the gateway, spread over both order-service
/// replicas and both broker masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sale_through_the_gateway_uses_both_replicas_and_both_brokers() {
    let cluster = Cluster::connect().await;
    let product = Cluster::fresh_product(1);
    let before = cluster.transactions_by_broker();
    let answered_before = [
        cluster.requests_answered_by("order-service-1"),
        cluster.requests_answered_by("order-service-2"),
    ];
    cluster.open_sale(product, 200, 1).await;

    let tally = cluster.sell(product, 1_000_000, 600, 32, -1, || {}).await;

    cluster.assert_invariants(product, 200, &tally, QUIET).await;
    assert_eq!(tally.created + tally.pending, 200, "{tally:?}");
    let after = cluster.transactions_by_broker();
    let carried: Vec<(String, i64)> = after
        .iter()
        .map(|(broker, n)| (broker.clone(), n - before.get(broker).copied().unwrap_or(0)))
        .collect();
    println!("[cluster] half messages per broker during the sale: {carried:?}");
    assert!(
        carried.iter().filter(|(_, n)| *n > 0).count() >= 2,
        "both broker masters should carry orders: {carried:?}"
    );
    for (i, replica) in ["order-service-1", "order-service-2"].iter().enumerate() {
        let answered = cluster.requests_answered_by(replica) - answered_before[i];
        println!("[cluster] {replica} answered {answered} order requests");
        assert!(
            answered > 0,
            "{replica} answered none: the gateway did not spread"
        );
    }
}

/// 2. broker-a's master killed mid-sale: orders go on through broker-b; once
/// broker-a is back its undecided half messages are settled by check-back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_master_killed_mid_sale_loses_nothing() {
    let (cluster, product, tally) = sale_with_a_kill(2, "broker-a").await;
    cluster.restart("broker-a", Duration::from_secs(90)).await;

    cluster.assert_invariants(product, 300, &tally, QUIET).await;
    assert!(
        tally.created > 100,
        "orders should go on through broker-b: {tally:?}"
    );
}

/// 3. One order-service replica killed mid-sale: the other answers the
/// check-backs of its in-flight transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_service_replica_killed_mid_sale_loses_nothing() {
    let (cluster, product, tally) = sale_with_a_kill(3, "order-service-1").await;
    cluster
        .restart("order-service-1", Duration::from_secs(90))
        .await;

    cluster.assert_invariants(product, 300, &tally, QUIET).await;
}

/// 4. One stock-service replica killed mid-sale: the other consumes its queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stock_service_replica_killed_mid_sale_loses_nothing() {
    let (cluster, product, tally) = sale_with_a_kill(4, "stock-service-1").await;
    // Quiet with one stock-service: the survivor took over the queues.
    cluster.assert_invariants(product, 300, &tally, QUIET).await;
    cluster
        .restart("stock-service-1", Duration::from_secs(90))
        .await;
}

/// 8. The Redis master killed mid-sale: Sentinel promotes the replica, the
/// services close every sale on it and rebuild from the databases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_redis_master_killed_mid_sale_fails_over_without_oversell() {
    let sentinels_master = |cluster: &Cluster| {
        let answer = cluster.exec(
            "redis-sentinel-1",
            &[
                "redis-cli",
                "-p",
                "26379",
                "sentinel",
                "get-master-addr-by-name",
                "seckill",
            ],
        );
        if answer.starts_with("redis-replica") {
            ("redis-replica", "redis-master")
        } else {
            ("redis-master", "redis-replica")
        }
    };
    // After an earlier run the replica may be the master: kill whichever is.
    let (master, replica) = sentinels_master(&Cluster::connect().await);
    let cluster = Cluster::connect().await;
    let product = Cluster::fresh_product(8);
    cluster.open_sale(product, 600, 1).await;
    let killer = Cluster::connect().await;
    let first = cluster
        .sell(product, 8_000_000, 300, 16, 100, move || {
            killer.kill(master)
        })
        .await;
    // The sale may sell out before Sentinel promotes the replica (3 s down-
    // after): wait for the promotion, then check on the new master.
    let started = std::time::Instant::now();
    while sentinels_master(&cluster).0 != replica {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Sentinel did not promote {replica}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "[cluster] Sentinel promoted {replica} after {:?}",
        started.elapsed()
    );
    cluster.wait_sale_open(product, QUIET).await;
    // Buyers keep coming on the new master, rebuilt from the databases.
    let second = cluster.sell(product, 8_100_000, 900, 16, -1, || {}).await;
    let mut tally = first.clone();
    tally.created += second.created;
    tally.pending += second.pending;
    for (answer, n) in second.answers {
        *tally.answers.entry(answer).or_default() += n;
    }

    cluster.assert_invariants(product, 600, &tally, QUIET).await;
    assert_eq!(
        tally.created + tally.pending,
        600,
        "sold out exactly: {tally:?}"
    );
    // The old master comes back as a replica of the promoted one.
    cluster.restart(master, Duration::from_secs(60)).await;
}

/// 5. An order-service replica cut off the network mid-sale (from the
/// brokers, and from everything else: the cluster has one network), then
/// joined again: the gateway sends buyers to the other; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_cut_off_the_network_and_joined_again_loses_nothing() {
    let cluster = Cluster::connect().await;
    let product = Cluster::fresh_product(5);
    cluster.open_sale(product, 300, 1).await;
    let cutter = Cluster::connect().await;

    let tally = cluster
        .sell(product, 5_000_000, 900, 16, 100, move || {
            cutter.network("order-service-2", false)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.network("order-service-2", true);
    cluster
        .wait_healthy("order-service-2", Duration::from_secs(90))
        .await;

    cluster.assert_invariants(product, 300, &tally, QUIET).await;
}

/// 6. The stock DB restarted mid-sale: deliveries fail, are redelivered and
/// applied once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stock_db_restarted_mid_sale_loses_nothing() {
    let (cluster, product, tally) = sale_with_a_kill(6, "stock-db").await;
    cluster.restart("stock-db", Duration::from_secs(90)).await;
    // The stock DB's pool reconnects; the driver's own connection is new too.
    let cluster = Cluster::connect().await;

    cluster.assert_invariants(product, 300, &tally, QUIET).await;
}

/// 7. Reads from a slave while its master is down: orders stored on broker-a
/// while no stock-service consumed, then broker-a's master killed and the
/// consumers started. What 1.0.0 does is printed (consumed from the slave or
/// only after the master is back); either way nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_on_a_dead_master_are_read_from_its_slave_or_after_it_returns() {
    let cluster = Cluster::connect().await;
    let product = Cluster::fresh_product(7);
    cluster.open_sale(product, 200, 1).await;
    let before = cluster.transactions_by_broker();
    cluster.compose(&["stop", "-t", "20", "stock-service-1", "stock-service-2"]);

    let tally = cluster.sell(product, 7_000_000, 200, 8, -1, || {}).await;
    let on_a = cluster
        .transactions_by_broker()
        .get("seckill-broker-a")
        .copied()
        .unwrap_or(0)
        - before.get("seckill-broker-a").copied().unwrap_or(0);
    println!("[cluster] {on_a} of the sale's half messages were stored on broker-a");
    cluster.kill("broker-a");
    cluster.compose(&["start", "stock-service-1", "stock-service-2"]);
    cluster
        .wait_healthy("stock-service-1", Duration::from_secs(90))
        .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let while_down =
        seckill_tests::invariants::accounts_in(&cluster.order_db, &cluster.stock_db, product).await;
    println!(
        "[cluster] with broker-a's master down for 30 s: {} of {} committed messages applied \
         (the rest were stored on broker-a)",
        while_down.applied_messages, while_down.committed_messages
    );
    cluster.restart("broker-a", Duration::from_secs(90)).await;

    cluster.assert_invariants(product, 200, &tally, QUIET).await;
}

/// 9. The whole cluster stopped and started again (named volumes): every
/// committed order and all stock survive, and it sells again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_cluster_stopped_and_started_keeps_every_order_and_all_stock() {
    let cluster = Cluster::connect().await;
    let product = Cluster::fresh_product(9);
    cluster.open_sale(product, 100, 1).await;
    let tally = cluster.sell(product, 9_000_000, 60, 8, -1, || {}).await;
    cluster.assert_invariants(product, 100, &tally, QUIET).await;
    let before =
        seckill_tests::invariants::accounts_in(&cluster.order_db, &cluster.stock_db, product).await;

    cluster
        .stop_and_start_everything(Duration::from_secs(180))
        .await;
    let cluster = Cluster::connect().await;
    let after =
        seckill_tests::invariants::accounts_in(&cluster.order_db, &cluster.stock_db, product).await;
    assert_eq!(before, after, "orders or stock changed across the restart");
    cluster
        .wait_sale_open(product, Duration::from_secs(120))
        .await;

    let more = cluster.sell(product, 9_100_000, 80, 8, -1, || {}).await;
    let mut all = tally.clone();
    all.created += more.created;
    all.pending += more.pending;
    cluster.assert_invariants(product, 100, &all, QUIET).await;
    assert_eq!(all.created + all.pending, 100, "{all:?}");
}
