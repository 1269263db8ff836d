//! `seckill-bench sale`: a flash sale through the real HTTP API — open a sale
//! of S items, fire N orders from U users with concurrency C while the
//! timeline samples the sale — then a summary, the invariants (exit non-zero
//! when one fails) and the run written to `--out` as JSON and SVG. Also the
//! request burst the sold-out flood uses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use futures::StreamExt;
use serde_json::json;

use crate::load::{DatabaseArgs, Latencies, Stats, fresh_product_id};
use crate::probe::SaleProbe;
use crate::report::{self, Check, Parameters, SaleRun, Summary};
use crate::timeline::{self, AnswerCounts};

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
    /// Where the run's figures (`sale-<unix time>.json`) and plot (`.svg`) go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    #[command(flatten)]
    pub databases: DatabaseArgs,
    #[command(flatten)]
    pub auth: crate::tokens::AuthArgs,
}

/// The answer a 201 gets in a burst's tally (the rest are named by their
/// error code, else their HTTP status).
pub const CREATED: &str = "CREATED";

/// The requests of a burst that got one answer.
#[derive(Debug)]
pub struct Answered {
    pub latencies: Latencies,
    /// When the last of them was answered, since the burst began.
    pub last_at: Duration,
}

/// What one burst of order requests gave.
pub struct Burst {
    pub stats: Stats,
    pub answers: BTreeMap<String, Answered>,
}

impl Burst {
    /// How many requests got `answer`.
    pub fn count(&self, answer: &str) -> usize {
        self.answers
            .get(answer)
            .map_or(0, |answered| answered.latencies.len())
    }

    pub fn counts(&self) -> BTreeMap<&str, usize> {
        self.answers
            .iter()
            .map(|(answer, answered)| (answer.as_str(), answered.latencies.len()))
            .collect()
    }
}

/// Where and how hard a burst fires: `requests` POSTs at `url`,
/// `concurrency` at a time, request i with the bearer token
/// `tokens[i % tokens.len()]`. With `order_tokens` (order-service's URL and
/// the product), each POST is an order that first asks for its one-time
/// order token, as a buyer's client does (both count in its latency; a
/// refused token request is the answer).
pub struct Plan<'a> {
    pub url: &'a str,
    pub requests: usize,
    pub concurrency: usize,
    pub tokens: &'a [String],
    pub order_tokens: Option<(&'a str, i64)>,
}

/// [`fire`] with nobody watching the answers as they come.
pub async fn burst(
    http: &reqwest::Client,
    url: &str,
    requests: usize,
    concurrency: usize,
    tokens: &[String],
    order_tokens: Option<(&str, i64)>,
    body: impl Fn(usize) -> serde_json::Value,
) -> Burst {
    let plan = Plan {
        url,
        requests,
        concurrency,
        tokens,
        order_tokens,
    };
    fire(http, &plan, body, &AnswerCounts::default()).await
}

/// Fires `plan`'s requests (bodies built by `body(i)`), counting each answer
/// in `live` as it arrives and printing progress every 10 %.
pub async fn fire(
    http: &reqwest::Client,
    plan: &Plan<'_>,
    body: impl Fn(usize) -> serde_json::Value,
    live: &AnswerCounts,
) -> Burst {
    let started = Instant::now();
    let step = (plan.requests / 10).max(1);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(String, Duration, Duration)> = futures::stream::iter(0..plan.requests)
        .map(|i| {
            let bearer = &plan.tokens[i % plan.tokens.len()];
            // A null body sends none (as clients ask for an order token).
            let request = match body(i) {
                serde_json::Value::Null => http.post(plan.url).bearer_auth(bearer),
                body => http.post(plan.url).bearer_auth(bearer).json(&body),
            };
            let done = &done;
            async move {
                let t = Instant::now();
                let answer = answer(http, request, bearer, plan.order_tokens).await;
                live.add(&answer);
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_multiple_of(step) {
                    eprintln!("[bench]   {n}/{} requests", plan.requests);
                }
                (answer, t.elapsed(), started.elapsed())
            }
        })
        .buffer_unordered(plan.concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    Burst {
        stats: Stats::new(
            results.iter().map(|(_, latency, _)| *latency).collect(),
            elapsed,
        ),
        answers: by_answer(results),
    }
}

/// Sends one request (after its order token, with `order_tokens`) and names
/// its answer.
async fn answer(
    http: &reqwest::Client,
    request: reqwest::RequestBuilder,
    bearer: &str,
    order_tokens: Option<(&str, i64)>,
) -> String {
    let request = match order_tokens {
        Some((order_url, product)) => {
            match crate::tokens::order_token(http, order_url, bearer, product).await {
                Ok(token) => request.header("Order-Token", token),
                Err(refused) => return refused,
            }
        }
        None => request,
    };
    match request.send().await {
        Ok(response) if response.status() == reqwest::StatusCode::CREATED => CREATED.to_owned(),
        Ok(response) => {
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            body["code"]
                .as_str()
                .map_or_else(|| status.to_string(), str::to_owned)
        }
        Err(err) => format!("transport: {err}"),
    }
}

/// (answer, latency, answered at) of each request, grouped by answer.
fn by_answer(results: Vec<(String, Duration, Duration)>) -> BTreeMap<String, Answered> {
    let mut grouped: BTreeMap<String, (Vec<Duration>, Duration)> = BTreeMap::new();
    for (answer, latency, at) in results {
        let (latencies, last_at) = grouped.entry(answer).or_default();
        latencies.push(latency);
        *last_at = (*last_at).max(at);
    }
    grouped
        .into_iter()
        .map(|(answer, (latencies, last_at))| {
            let latencies = Latencies::new(latencies);
            (answer, Answered { latencies, last_at })
        })
        .collect()
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

/// One row of the `req/s  p50 ms  p95 ms  p99 ms` tables.
pub fn print_stats(name: &str, stats: &Stats) {
    let p = stats.latencies().percentiles();
    println!(
        "{name:<34} {:>10.0} {:>9.1} {:>9.1} {:>9.1}",
        stats.rate(),
        p.p50_ms,
        p.p95_ms,
        p.p99_ms
    );
}

pub async fn run(args: &SaleArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let product = args.product_id.unwrap_or_else(fresh_product_id);
    let tokens = args.auth.tokens()?;
    let probe = SaleProbe::connect(&http, &args.order_url, product, &args.databases).await?;
    open_sale(&http, &tokens.admin(), &args.order_url, product, args.stock).await?;
    eprintln!(
        "[bench] sale of {} items (product {product}): {} requests from {} users, concurrency {}",
        args.stock, args.requests, args.users, args.concurrency
    );
    let began = SystemTime::now();
    let users = args.users.max(1);
    let buyers = tokens.buyers(1, users);
    let url = format!("{}/api/orders", args.order_url);
    let plan = Plan {
        url: &url,
        requests: args.requests,
        concurrency: args.concurrency,
        tokens: &buyers,
        order_tokens: Some((&args.order_url, product)),
    };
    let live = AnswerCounts::default();
    let burst_over = AtomicBool::new(false);
    let (sale, samples) = tokio::join!(
        async {
            let body = |i| json!({"user_id": 1 + (i % users), "product_id": product, "count": 1});
            let sale = fire(&http, &plan, body, &live).await;
            burst_over.store(true, Ordering::Release);
            sale
        },
        timeline::sample(&probe, &live, &burst_over)
    );

    println!();
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>9}",
        "", "req/s", "p50 ms", "p95 ms", "p99 ms"
    );
    print_stats("flash sale, all requests", &sale.stats);
    println!();
    for (answer, n) in sale.counts() {
        println!("  {answer:<30} {n:>8}");
    }
    let checks = check(args, &probe, &sale).await?;
    let summary = Summary::of(
        args.stock,
        &sale,
        &samples,
        probe.commit_to_deduction().await?,
    );
    summary.print();
    let run = SaleRun {
        parameters: Parameters::of(args, product, began),
        summary,
        checks,
        samples,
    };
    let (json, svg) = report::write(&args.out, &run)?;
    println!();
    println!("figures: {}", json.display());
    println!("plot:    {}", svg.display());
    anyhow::ensure!(
        run.checks.iter().all(|check| check.ok),
        "an invariant failed"
    );
    Ok(())
}

/// Waits for stock-service to catch up, then checks and prints the invariants.
async fn check(args: &SaleArgs, probe: &SaleProbe, sale: &Burst) -> anyhow::Result<Vec<Check>> {
    probe
        .wait_until_applied(Instant::now() + Duration::from_secs(120))
        .await?;
    let committed = probe.committed().await?;
    let created = sale.count(CREATED) as i64;
    let winners_possible = (args.stock as i64).min(args.users.min(args.requests) as i64);
    let deducted = probe.deducted().await?;
    let deducted_orders = probe.deducted_orders().await?;
    let db_stock = probe.db_stock().await?;
    let double_holders = probe.double_holders().await?;
    let redis_stock = probe.redis_stock().await?.unwrap_or(-1);
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
    let checks = vec![
        Check::new(
            format!("orders == min(stock, buyers) = {winners_possible}"),
            committed == winners_possible && created == committed,
        ),
        Check::new("oversold = 0", oversold == 0),
        Check::new("each winner holds one order", double_holders == 0),
        Check::new(
            "every committed order deducted exactly once",
            deducted_orders == committed,
        ),
        Check::new("Redis stock == DB stock", redis_stock == db_stock),
        Check::new("DB stock == stock - deducted", ledger.accounted()),
    ];
    for check in &checks {
        println!(
            "  [{}] {}",
            if check.ok { "ok" } else { "FAIL" },
            check.name
        );
    }
    Ok(checks)
}
