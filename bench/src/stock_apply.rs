//! `seckill-bench stock-apply`: stock-service's store alone applying orders
//! for ONE product, on a scratch stock database of its own (dropped at the
//! end): the naive loop — one `store::apply_order` transaction per order —
//! vs. `store::apply_batch` with the orders of a group commit, both with the
//! same concurrency in the same run. Each way starts from the same stock and
//! an empty `tx_log`, and must end with the stock and `tx_log` exact, or the
//! run fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use common::db::scalar;
use common::domain::{OrderNo, ProductId, Quantity, TxNo, UserId};
use common::messages::{OrderBatch, OrderCreated};
use common::settings::DatabaseSettings;
use futures::{StreamExt, TryStreamExt};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use stock_service::store::{self, Applied};

#[derive(Debug, Args)]
pub struct StockApplyArgs {
    /// Orders each way applies.
    #[arg(long, default_value_t = 20_000)]
    pub orders: usize,
    /// Orders per batch (one group commit of order-service).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Transactions in flight at once (the consumer's threads).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The MariaDB server the scratch database is created on.
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    pub mysql_url: String,
}

/// Items left over after each way: a deduction too many or too few shows.
const SPARE: u32 = 1_000;

/// How the orders reach the store.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// One `apply_order` transaction per order (the message-per-order consumer).
    OneByOne,
    /// One `apply_batch` transaction per batch of `--batch` orders.
    Batched,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Self::OneByOne => "apply_order, one transaction per order",
            Self::Batched => "apply_batch, one transaction per batch",
        }
    }
}

pub async fn run(args: &StockApplyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.orders > 0 && args.batch > 0 && args.concurrency > 0,
        "--orders, --batch and --concurrency must be positive"
    );
    let settings = DatabaseSettings {
        server_url: args.mysql_url.clone(),
        max_connections: u32::try_from(args.concurrency)?,
        ..DatabaseSettings::local(&format!(
            "seckill_bench_stock_apply_{}",
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        ))
    };
    eprintln!("[bench] scratch stock database {}", settings.name);
    let db = common::db::connect_and_migrate(&settings, stock_service::SCHEMA)
        .await
        .context("creating the scratch stock database")?;
    let measured = measure(args, &db).await;
    let _ = db.close().await;
    drop_database(&settings).await?;
    let (one_by_one, batched) = measured?;

    let rate = |elapsed: Duration| args.orders as f64 / elapsed.as_secs_f64();
    println!();
    println!(
        "{} orders for one product, concurrency {}, batches of {}",
        args.orders, args.concurrency, args.batch
    );
    println!("{:<42} {:>10} {:>9}", "", "orders/s", "seconds");
    for (way, elapsed) in [(Way::OneByOne, one_by_one), (Way::Batched, batched)] {
        println!(
            "{:<42} {:>10.0} {:>9.2}",
            way.label(),
            rate(elapsed),
            elapsed.as_secs_f64()
        );
    }
    println!(
        "ratio batched / one by one: {:.2}",
        rate(batched) / rate(one_by_one)
    );
    Ok(())
}

/// The wall time of each way, one by one first.
async fn measure(
    args: &StockApplyArgs,
    db: &DatabaseConnection,
) -> anyhow::Result<(Duration, Duration)> {
    let one_by_one = apply_all(args, db, Way::OneByOne).await?;
    let batched = apply_all(args, db, Way::Batched).await?;
    Ok((one_by_one, batched))
}

/// Applies `--orders` fresh one-item orders `way`, timed, and checks the result.
async fn apply_all(
    args: &StockApplyArgs,
    db: &DatabaseConnection,
    way: Way,
) -> anyhow::Result<Duration> {
    let product = ProductId::parse(1)?;
    let initial = u32::try_from(args.orders)? + SPARE;
    store::set_stock(db, product, initial).await?;
    db.execute_unprepared("TRUNCATE TABLE tx_log").await?;
    let orders = (1..=args.orders)
        .map(|user| {
            Ok(OrderCreated::new(
                TxNo::generate(),
                OrderNo::generate(),
                UserId::parse(i64::try_from(user)?)?,
                product,
                Quantity::parse(1, 1)?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let progress = Progress::new(way, args.orders);
    eprintln!(
        "[bench] {}: {} orders, concurrency {}",
        way.label(),
        args.orders,
        args.concurrency
    );

    let started = Instant::now();
    match way {
        Way::OneByOne => {
            futures::stream::iter(&orders)
                .map(|order| async {
                    let applied = store::apply_order(db, order).await?;
                    anyhow::ensure!(applied == Applied::Deducted, "{} {applied:?}", order.tx_no);
                    progress.add(1);
                    Ok(())
                })
                .buffer_unordered(args.concurrency)
                .try_collect::<()>()
                .await?;
        }
        Way::Batched => {
            let batches: Vec<OrderBatch> = orders
                .chunks(args.batch)
                .map(|chunk| OrderBatch::new(TxNo::generate(), chunk.to_vec()))
                .collect();
            futures::stream::iter(&batches)
                .map(|batch| async {
                    let applied = store::apply_batch(db, batch, true).await?;
                    anyhow::ensure!(
                        applied.iter().all(|a| *a == Applied::Deducted),
                        "batch {}: {applied:?}",
                        batch.batch_tx_no
                    );
                    progress.add(batch.orders.len());
                    Ok(())
                })
                .buffer_unordered(args.concurrency)
                .try_collect::<()>()
                .await?;
        }
    }
    let elapsed = started.elapsed();
    check(db, product, initial, args.orders).await?;
    Ok(elapsed)
}

/// Each order deducted exactly once: stock, rows, outcomes and units all exact.
async fn check(
    db: &DatabaseConnection,
    product: ProductId,
    initial: u32,
    orders: usize,
) -> anyhow::Result<()> {
    let orders = i64::try_from(orders)?;
    let stock = store::get_stock(db, product)
        .await?
        .context("the product's stock row")?;
    let rows = scalar(db, "SELECT COUNT(*) FROM tx_log", []).await?;
    let deducted_rows = scalar(
        db,
        "SELECT COUNT(*) FROM tx_log WHERE outcome = 'DEDUCTED' AND product_id = ?",
        [product.get().into()],
    )
    .await?;
    let deducted_units = scalar(
        db,
        "SELECT CAST(SUM(count) AS SIGNED) FROM tx_log WHERE outcome = 'DEDUCTED'",
        [],
    )
    .await?;
    let expected_stock = i64::from(initial) - orders;
    anyhow::ensure!(
        stock.total_count == expected_stock
            && rows == orders
            && deducted_rows == orders
            && deducted_units == orders,
        "not exact: stock {} (expected {expected_stock}), tx_log rows {rows}, \
         DEDUCTED rows {deducted_rows}, units {deducted_units} (expected {orders} each)",
        stock.total_count
    );
    eprintln!("[bench]   checked: stock {expected_stock}, {orders} DEDUCTED rows");
    Ok(())
}

async fn drop_database(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let server = Database::connect(settings.server_url.as_str()).await?;
    server
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS `{}`", settings.name))
        .await
        .with_context(|| format!("dropping the scratch database {}", settings.name))?;
    let _ = server.close().await;
    Ok(())
}

/// Prints every 10 % of a way's orders as they are applied.
struct Progress {
    way: Way,
    total: usize,
    step: usize,
    done: AtomicUsize,
}

impl Progress {
    fn new(way: Way, total: usize) -> Self {
        Self {
            way,
            total,
            step: (total / 10).max(1),
            done: AtomicUsize::new(0),
        }
    }

    fn add(&self, orders: usize) {
        let before = self.done.fetch_add(orders, Ordering::Relaxed);
        let after = before + orders;
        if after / self.step != before / self.step {
            eprintln!(
                "[bench]   {}: {after}/{} orders",
                self.way.label(),
                self.total
            );
        }
    }
}
