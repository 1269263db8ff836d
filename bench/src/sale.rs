//! `seckill-bench sale`: a flash sale through the real HTTP API — open a sale
//! of S items, fire N orders from U users with concurrency C — then a summary
//! and the invariants (exit non-zero when one fails). Also the sold-out flood
//! against a trivial actix-web handler measured in the same run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde_json::json;

use crate::load::{DatabaseArgs, Stats, fresh_product_id, scalar};

#[derive(Debug, Args)]
pub struct SaleArgs {
    #[arg(long, default_value = "http://127.0.0.1:8091")]
    pub order_url: String,
    /// Items on sale.
    #[arg(long, default_value_t = 100)]
    pub stock: u32,
    /// Order requests to fire.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Distinct buyers (request i comes from buyer i mod users).
    #[arg(long, default_value_t = 500)]
    pub users: usize,
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Product for the run (default: a fresh one).
    #[arg(long)]
    pub product_id: Option<i64>,
    #[command(flatten)]
    pub databases: DatabaseArgs,
    #[command(flatten)]
    pub auth: crate::tokens::AuthArgs,
}

/// What one burst of order requests gave.
pub struct Burst {
    pub stats: Stats,
    pub answers: BTreeMap<String, usize>,
}

/// Fires `requests` POSTs (built by `body(i)`, sent with the bearer token
/// `tokens[i % tokens.len()]`) at `url`, `concurrency` at a time, printing
/// progress every 10 %. With `order_tokens` (order-service's URL and the
/// product), each POST is an order that first asks for its one-time order
/// token, as a buyer's client does (both count in its latency; a refused
/// token request is the answer).
pub async fn burst(
    http: &reqwest::Client,
    url: &str,
    requests: usize,
    concurrency: usize,
    tokens: &[String],
    order_tokens: Option<(&str, i64)>,
    body: impl Fn(usize) -> serde_json::Value,
) -> Burst {
    let started = Instant::now();
    let step = (requests / 10).max(1);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(String, Duration)> = futures::stream::iter(0..requests)
        .map(|i| {
            let bearer = &tokens[i % tokens.len()];
            // A null body sends none (as clients ask for an order token).
            let request = match body(i) {
                serde_json::Value::Null => http.post(url).bearer_auth(bearer),
                body => http.post(url).bearer_auth(bearer).json(&body),
            };
            let done = &done;
            async move {
                let t = Instant::now();
                let request = match order_tokens {
                    Some((order_url, product)) => {
                        match crate::tokens::order_token(http, order_url, bearer, product).await {
                            Ok(token) => Ok(request.header("Order-Token", token)),
                            Err(refused) => Err(refused),
                        }
                    }
                    None => Ok(request),
                };
                let answer = match request {
                    Err(refused) => Err(refused),
                    Ok(request) => Ok(request.send().await),
                };
                let answer = match answer {
                    Err(refused) => refused,
                    Ok(answer) => match answer {
                        Ok(response) if response.status() == reqwest::StatusCode::CREATED => {
                            "CREATED".to_owned()
                        }
                        Ok(response) => {
                            let status = response.status();
                            let body: serde_json::Value = response.json().await.unwrap_or_default();
                            body["code"]
                                .as_str()
                                .map_or_else(|| status.to_string(), str::to_owned)
                        }
                        Err(err) => format!("transport: {err}"),
                    },
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_multiple_of(step) {
                    eprintln!("[bench]   {n}/{requests} requests");
                }
                (answer, t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut answers = BTreeMap::new();
    let mut latencies = Vec::with_capacity(results.len());
    for (answer, latency) in results {
        *answers.entry(answer).or_default() += 1;
        latencies.push(latency);
    }
    Burst {
        stats: Stats::new(latencies, elapsed),
        answers,
    }
}

pub async fn open_sale(
    http: &reqwest::Client,
    admin_token: &str,
    order_url: &str,
    product: i64,
    stock: u32,
) -> anyhow::Result<()> {
    let response = http
        .put(format!("{order_url}/api/sales/{product}"))
        .bearer_auth(admin_token)
        .json(&json!({"stock": stock, "per_user_limit": 1}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "opening the sale: {}",
        response.text().await?
    );
    Ok(())
}

pub fn print_stats(name: &str, stats: &Stats) {
    println!(
        "{name:<34} {:>10.0} {:>9.1} {:>9.1} {:>9.1}",
        stats.rate(),
        stats.percentile(50.0).as_secs_f64() * 1e3,
        stats.percentile(95.0).as_secs_f64() * 1e3,
        stats.percentile(99.0).as_secs_f64() * 1e3
    );
}

pub async fn run(args: &SaleArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let product = args.product_id.unwrap_or_else(fresh_product_id);
    let tokens = args.auth.tokens()?;
    open_sale(&http, &tokens.admin(), &args.order_url, product, args.stock).await?;
    eprintln!(
        "[bench] sale of {} items (product {product}): {} requests from {} users, concurrency {}",
        args.stock, args.requests, args.users, args.concurrency
    );
    let users = args.users.max(1);
    let buyers = tokens.buyers(1, users);
    let sale = burst(
        &http,
        &format!("{}/api/orders", args.order_url),
        args.requests,
        args.concurrency,
        &buyers,
        Some((&args.order_url, product)),
        |i| json!({"user_id": 1 + (i % users), "product_id": product, "count": 1}),
    )
    .await;

    println!();
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>9}",
        "", "req/s", "p50 ms", "p95 ms", "p99 ms"
    );
    print_stats("flash sale, all requests", &sale.stats);
    println!();
    for (answer, n) in &sale.answers {
        println!("  {answer:<30} {n:>8}");
    }
    check(args, &http, product, &sale).await
}

async fn check(
    args: &SaleArgs,
    http: &reqwest::Client,
    product: i64,
    sale: &Burst,
) -> anyhow::Result<()> {
    let (order_db, stock_db) = args.databases.connect().await?;
    let committed = scalar(
        &order_db,
        "SELECT COUNT(*) FROM orders WHERE product_id = ?",
        product,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let applied_sql = "SELECT COUNT(*) FROM tx_log WHERE product_id = ?";
    while scalar(&stock_db, applied_sql, product).await? < committed && Instant::now() < deadline {
        eprintln!("[bench] waiting for stock-service to apply {committed} orders");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let created = *sale.answers.get("CREATED").unwrap_or(&0) as i64;
    let winners_possible = (args.stock as i64).min(args.users.min(args.requests) as i64);
    let deducted = scalar(
        &stock_db,
        "SELECT CAST(COALESCE(SUM(count), 0) AS SIGNED) FROM tx_log WHERE product_id = ? AND outcome = 'DEDUCTED'",
        product,
    )
    .await?;
    let deducted_orders = scalar(
        &stock_db,
        "SELECT COUNT(*) FROM tx_log WHERE product_id = ? AND outcome = 'DEDUCTED'",
        product,
    )
    .await?;
    let db_stock = scalar(
        &stock_db,
        "SELECT total_count FROM stock WHERE product_id = ?",
        product,
    )
    .await?;
    let double_holders = scalar(
        &order_db,
        "SELECT COUNT(*) FROM (SELECT user_id FROM orders WHERE product_id = ? GROUP BY user_id HAVING COUNT(*) > 1) t",
        product,
    )
    .await?;
    let redis_stock = http
        .get(format!("{}/api/sales/{product}", args.order_url))
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?["stock"]
        .as_i64()
        .unwrap_or(-1);
    let ledger = common::ledger::StockLedger {
        opened: args.stock as i64,
        db_stock,
        sold: deducted,
    };
    let oversold = ledger.oversold();
    println!();
    println!(
        "stock {} | created {created} | committed {committed} | deducted {deducted} | DB stock {db_stock} | Redis stock {redis_stock} | oversold {oversold}",
        args.stock
    );
    let checks = [
        (
            format!("orders == min(stock, buyers) = {winners_possible}"),
            committed == winners_possible && created == committed,
        ),
        ("oversold = 0".to_owned(), oversold == 0),
        (
            "each winner holds one order".to_owned(),
            double_holders == 0,
        ),
        (
            "every committed order deducted exactly once".to_owned(),
            deducted_orders == committed,
        ),
        (
            "Redis stock == DB stock".to_owned(),
            redis_stock == db_stock,
        ),
        (
            "DB stock == stock - deducted".to_owned(),
            ledger.accounted(),
        ),
    ];
    let mut failed = false;
    for (name, ok) in &checks {
        println!("  [{}] {name}", if *ok { "ok" } else { "FAIL" });
        failed |= !ok;
    }
    anyhow::ensure!(!failed, "an invariant failed");
    Ok(())
}
