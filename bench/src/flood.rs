//! `seckill-bench sold-out-flood`: requests for a sold-out product against
//! order-service — the first step of a buyer's order, `POST
//! /api/sales/{id}/order-token`, answered SOLD_OUT from memory — vs. the same
//! client and concurrency against a trivial actix-web handler run as a
//! separate process (the ceiling of one HTTP round trip).

use clap::Args;
use serde_json::json;

use crate::sale::{burst, print_stats};

#[derive(Debug, Args)]
pub struct FloodArgs {
    #[arg(long, default_value = "http://127.0.0.1:8091")]
    pub order_url: String,
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Who sends the flood: this tool's own HTTP client (`reqwest`, shares
    /// the cores and can saturate first) or `wrk` (2 threads,
    /// `bench/wrk/flood.lua`; install it with `apt-get install wrk`).
    #[arg(long, value_enum, default_value = "reqwest")]
    pub client: Client,
    /// With `--client wrk`: seconds per run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    #[command(flatten)]
    pub auth: crate::tokens::AuthArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    Reqwest,
    Wrk,
}

/// Serves the trivial handler on `port` until killed (the baseline process).
pub async fn serve_trivial(port: u16) -> anyhow::Result<()> {
    actix_web::HttpServer::new(|| {
        actix_web::App::new().route("/api/orders", actix_web::web::post().to(trivial))
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}

/// Answers at once, with the sold-out answer's status and body.
async fn trivial() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Conflict()
        .json(json!({"code": "SOLD_OUT", "message": "this product is sold out"}))
}

pub async fn run(args: &FloodArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let product = crate::load::fresh_product_id();
    let tokens = args.auth.tokens()?;
    crate::sale::open_sale(&http, &tokens.admin(), &args.order_url, product, 1).await?;
    let first = &tokens.buyers(1, 1)[0];
    let order_token = crate::tokens::order_token(&http, &args.order_url, first, product)
        .await
        .map_err(|code| anyhow::anyhow!("an order token for the only item: {code}"))?;
    let sold = http
        .post(format!("{}/api/orders", args.order_url))
        .bearer_auth(first)
        .header("Order-Token", order_token)
        .json(&json!({"user_id": 1, "product_id": product, "count": 1}))
        .send()
        .await?;
    anyhow::ensure!(
        sold.status().as_u16() == 201,
        "buying the only item: {}",
        sold.status()
    );

    // The baseline runs in a process of its own, like order-service, so it
    // does not share this process's threads with the load generator.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut trivial_server = std::process::Command::new(std::env::current_exe()?)
        .args(["trivial-server", "--port", &port.to_string()])
        .spawn()?;
    let trivial_url = format!("http://127.0.0.1:{port}/api/orders");
    while http
        .post(&trivial_url)
        .json(&json!({}))
        .send()
        .await
        .is_err()
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    if args.client == Client::Wrk {
        let result = wrk_runs(args, &tokens, product, &trivial_url);
        trivial_server.kill()?;
        trivial_server.wait()?;
        return result;
    }
    eprintln!(
        "[bench] sold-out flood: {} requests, concurrency {}",
        args.requests, args.concurrency
    );
    // A different buyer each request, each with its own token (minted now,
    // not while measuring); the trivial handler gets the same requests. No
    // body, as a client asks for an order token (an unread body would also
    // cost actix-web the connection's keep-alive: a new TCP connection per
    // request — what made this 0.23 before).
    let buyers = tokens.buyers(2, args.requests);
    let body = |_: usize| serde_json::Value::Null;
    // Baseline first, order-service second, then the baseline again: the
    // better baseline run counts, so warm-up favours the baseline, not us.
    let mut baseline = burst(
        &http,
        &trivial_url,
        args.requests,
        args.concurrency,
        &buyers,
        None,
        body,
    )
    .await;
    let order_service = burst(
        &http,
        &format!("{}/api/sales/{product}/order-token", args.order_url),
        args.requests,
        args.concurrency,
        &buyers,
        None,
        body,
    )
    .await;
    eprintln!("[bench] trivial actix-web handler again");
    let again = burst(
        &http,
        &trivial_url,
        args.requests,
        args.concurrency,
        &buyers,
        None,
        body,
    )
    .await;
    if again.stats.rate() > baseline.stats.rate() {
        baseline = again;
    }
    trivial_server.kill()?;
    trivial_server.wait()?;

    println!();
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>9}",
        "", "req/s", "p50 ms", "p95 ms", "p99 ms"
    );
    print_stats("order-service, sold-out product", &order_service.stats);
    print_stats("trivial actix-web handler", &baseline.stats);
    println!();
    println!("answers from order-service: {:?}", order_service.counts());
    println!(
        "ratio sold-out flood / trivial handler: {:.2}",
        order_service.stats.rate() / baseline.stats.rate()
    );
    anyhow::ensure!(
        order_service.count("SOLD_OUT") == args.requests,
        "every request should have been answered SOLD_OUT"
    );
    Ok(())
}

/// The flood driven by `wrk` (two threads, `args.concurrency` connections,
/// `args.seconds` each): the trivial handler, order-service, the trivial
/// handler again (the better baseline counts). Every answer must be a 409:
/// wrk counts them as "Non-2xx" responses.
fn wrk_runs(
    args: &FloodArgs,
    tokens: &crate::tokens::Tokens,
    product: i64,
    trivial_url: &str,
) -> anyhow::Result<()> {
    let file = std::env::temp_dir().join(format!("seckill-wrk-tokens-{}", std::process::id()));
    std::fs::write(&file, tokens.buyers(2, args.requests).join("\n"))?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/wrk/flood.lua");
    let run = |url: &str| -> anyhow::Result<(f64, u64, u64)> {
        eprintln!(
            "[bench] wrk -t2 -c{} -d{}s {url}",
            args.concurrency, args.seconds
        );
        let output = std::process::Command::new("wrk")
            .args(["-t2", &format!("-c{}", args.concurrency)])
            .args([
                &format!("-d{}s", args.seconds),
                "--latency",
                "-s",
                script,
                url,
            ])
            .env("SECKILL_WRK_TOKENS", &file)
            .output()
            .map_err(|e| anyhow::anyhow!("running wrk ({e}): apt-get install wrk"))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        anyhow::ensure!(output.status.success(), "wrk failed: {text}");
        let number = |prefix: &str| {
            text.lines()
                .find_map(|line| line.trim().strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        };
        let rate = number("Requests/sec:").ok_or_else(|| anyhow::anyhow!("wrk said: {text}"))?;
        let total = text
            .lines()
            .find_map(|line| {
                line.trim()
                    .split_once(" requests in ")
                    .map(|(n, _)| n.to_owned())
            })
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let refused = number("Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
        eprintln!("{text}");
        Ok((rate, total, refused))
    };
    let order_url = format!("{}/api/sales/{product}/order-token", args.order_url);
    let (first, ..) = run(trivial_url)?;
    let (ours, total, refused) = run(&order_url)?;
    let (again, ..) = run(trivial_url)?;
    let _ = std::fs::remove_file(&file);
    let baseline = first.max(again);
    println!();
    println!(
        "order-service, sold-out product (wrk): {ours:.0} req/s ({total} requests, {refused} answered 409)"
    );
    println!(
        "trivial actix-web handler (wrk):       {baseline:.0} req/s (runs: {first:.0}, {again:.0})"
    );
    println!(
        "ratio sold-out flood / trivial handler: {:.2}",
        ours / baseline
    );
    anyhow::ensure!(
        total > 0 && refused == total,
        "every request should have been answered 409 SOLD_OUT ({refused} of {total})"
    );
    Ok(())
}
