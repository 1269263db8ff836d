//! Drives `POST /api/orders` on a running order-service and checks the
//! invariants afterwards in both databases.

use std::time::{Duration, Instant};

use clap::Args;
use common::settings::MqSettings;
use futures::StreamExt;
use sea_orm::{Database, DatabaseConnection};
use serde_json::json;

#[derive(Debug, Args)]
pub struct OrderPathArgs {
    #[arg(long, default_value = "http://127.0.0.1:8091")]
    pub order_url: String,
    /// Orders to place (and sends per broker baseline).
    #[arg(long, default_value_t = 5000)]
    pub orders: usize,
    /// Requests (and sends) in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Product used for the run (default: a fresh one); a sale of `orders` items is opened first.
    #[arg(long, default_value_t = fresh_product_id())]
    pub product_id: i64,
    #[arg(long, default_value = "127.0.0.1:9876")]
    pub namesrv_addr: String,
    #[command(flatten)]
    pub databases: DatabaseArgs,
    #[command(flatten)]
    pub auth: crate::tokens::AuthArgs,
}

/// Where the invariant checks read the two databases.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    pub mysql_url: String,
    #[arg(long, default_value = "seckill_order")]
    pub order_db: String,
    #[arg(long, default_value = "seckill_stock")]
    pub stock_db: String,
}

impl DatabaseArgs {
    /// (order DB, stock DB).
    pub async fn connect(&self) -> anyhow::Result<(DatabaseConnection, DatabaseConnection)> {
        let order_db = Database::connect(format!("{}/{}", self.mysql_url, self.order_db)).await?;
        let stock_db = Database::connect(format!("{}/{}", self.mysql_url, self.stock_db)).await?;
        Ok((order_db, stock_db))
    }
}

/// A product id no earlier run used, so the invariants see this run only.
pub fn fresh_product_id() -> i64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    1_000_000 + (nanos % 1_000_000_000_000) as i64
}

impl OrderPathArgs {
    pub fn mq(&self) -> MqSettings {
        MqSettings {
            namesrv_addr: self.namesrv_addr.clone(),
            ..MqSettings::default()
        }
    }
}

/// Latencies sorted once, for percentiles.
#[derive(Debug, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        Self(latencies)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let index = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[index]
    }

    /// p50/p95/p99 as the reports print and store them.
    pub fn percentiles(&self) -> Percentiles {
        let ms = |p| self.percentile(p).as_secs_f64() * 1e3;
        Percentiles {
            count: self.len(),
            p50_ms: ms(50.0),
            p95_ms: ms(95.0),
            p99_ms: ms(99.0),
        }
    }
}

/// The latency percentiles of `count` operations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} / p95 {:.1} / p99 {:.1} ms (n = {})",
            self.p50_ms, self.p95_ms, self.p99_ms, self.count
        )
    }
}

/// Latencies of the successful operations and the wall time of the run.
pub struct Stats {
    latencies: Latencies,
    elapsed: Duration,
}

impl Stats {
    pub fn new(latencies: Vec<Duration>, elapsed: Duration) -> Self {
        Self {
            latencies: Latencies::new(latencies),
            elapsed,
        }
    }

    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        self.latencies.percentile(p)
    }

    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    pub fn latencies(&self) -> &Latencies {
        &self.latencies
    }
}

pub struct OrderPathRun {
    pub stats: Stats,
    pub initial_stock: i64,
    pub created: Vec<String>,
    pub pending: usize,
    pub rejected: usize,
}

pub async fn run_order_path(args: &OrderPathArgs) -> anyhow::Result<OrderPathRun> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let initial_stock = args.orders as i64;
    let tokens = args.auth.tokens()?;
    let buyers = tokens.buyers(1, args.orders);
    let set = http
        .put(format!("{}/api/sales/{}", args.order_url, args.product_id))
        .bearer_auth(tokens.admin())
        .json(&json!({"stock": initial_stock, "per_user_limit": 1}))
        .send()
        .await?;
    anyhow::ensure!(
        set.status().is_success(),
        "opening the sale: {}",
        set.status()
    );

    eprintln!(
        "[bench] order path: {} orders, concurrency {}",
        args.orders, args.concurrency
    );
    let started = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(u16, Duration, Option<String>)> = futures::stream::iter(0..args.orders)
        .map(|i| {
            let bearer = &buyers[i];
            let request = http
                .post(format!("{}/api/orders", args.order_url))
                .bearer_auth(bearer)
                .json(&json!({"user_id": i + 1, "product_id": args.product_id, "count": 1}));
            let done = &done;
            let http = &http;
            async move {
                let t = Instant::now();
                let token =
                    crate::tokens::order_token(http, &args.order_url, bearer, args.product_id)
                        .await;
                let sent = match token {
                    Ok(token) => Some(request.header("Order-Token", token).send().await),
                    Err(_) => None,
                };
                let (status, order_no) = match sent {
                    None => (0, None),
                    Some(sent) => match sent {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body: serde_json::Value = response.json().await.unwrap_or_default();
                            (status, body["order_no"].as_str().map(str::to_owned))
                        }
                        Err(_) => (0, None),
                    },
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_multiple_of(1000) {
                    eprintln!("[bench]   {n} requests done");
                }
                (status, t.elapsed(), order_no)
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latencies = Vec::new();
    let mut created = Vec::new();
    let (mut pending, mut rejected) = (0, 0);
    for (status, latency, order_no) in results {
        match status {
            201 => {
                latencies.push(latency);
                created.extend(order_no);
            }
            202 => pending += 1,
            _ => rejected += 1,
        }
    }
    eprintln!(
        "[bench] order path: {} created, {pending} pending, {rejected} rejected",
        created.len()
    );
    Ok(OrderPathRun {
        stats: Stats::new(latencies, elapsed),
        initial_stock,
        created,
        pending,
        rejected,
    })
}

/// The first column of the first row of `sql` (bound to `product`) as a BIGINT; NULL reads 0.
pub async fn scalar(
    db: &sea_orm::DatabaseConnection,
    sql: &str,
    product: i64,
) -> anyhow::Result<i64> {
    Ok(common::db::scalar(db, sql, [product.into()]).await?)
}

/// Waits for the pipeline to go quiet, then checks: no oversell, every
/// committed order deducted exactly once, stock == initial − deducted.
pub async fn check_invariants(args: &OrderPathArgs, run: &OrderPathRun) -> anyhow::Result<()> {
    let (order_db, stock_db) = args.databases.connect().await?;
    let ordered_sql = "SELECT CAST(COALESCE(SUM(pay_count), 0) AS SIGNED) FROM orders WHERE product_id = ? AND status = 'NEW'";
    let applied_sql = "SELECT COUNT(*) FROM tx_log WHERE product_id = ?";
    let deadline = Instant::now() + Duration::from_secs(120);
    let committed = scalar(
        &order_db,
        "SELECT COUNT(*) FROM orders WHERE product_id = ?",
        args.product_id,
    )
    .await?;
    loop {
        let applied = scalar(&stock_db, applied_sql, args.product_id).await?;
        if applied >= committed || Instant::now() > deadline {
            break;
        }
        eprintln!("[bench] waiting for stock-service: {applied}/{committed} applied");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let ordered = scalar(&order_db, ordered_sql, args.product_id).await?;
    let applied = scalar(&stock_db, applied_sql, args.product_id).await?;
    let deducted = scalar(
        &stock_db,
        "SELECT CAST(COALESCE(SUM(count), 0) AS SIGNED) FROM tx_log WHERE product_id = ? AND outcome = 'DEDUCTED'",
        args.product_id,
    )
    .await?;
    let stock = scalar(
        &stock_db,
        "SELECT total_count FROM stock WHERE product_id = ?",
        args.product_id,
    )
    .await?;
    let checks = [
        ("every committed order applied once", applied == committed),
        ("stock never negative", stock >= 0),
        (
            "no oversell (deducted <= initial)",
            deducted <= run.initial_stock,
        ),
        (
            "stock == initial - deducted",
            stock == run.initial_stock - deducted,
        ),
        (
            "created orders are committed",
            run.created.len() as i64 <= committed,
        ),
        ("every NEW order deducted", ordered == deducted),
    ];
    println!();
    println!(
        "initial {} | created {} | pending {} | rejected {} | committed {committed} | applied {applied} | deducted {deducted} | stock {stock}",
        run.initial_stock,
        run.created.len(),
        run.pending,
        run.rejected
    );
    let mut failed = false;
    for (name, ok) in checks {
        println!("  [{}] {name}", if ok { "ok" } else { "FAIL" });
        failed |= !ok;
    }
    anyhow::ensure!(!failed, "an invariant failed");
    Ok(())
}
