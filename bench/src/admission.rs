//! `seckill-bench admission`: the admission step alone, with stock always
//! available — order-service's own `AdmissionGate::admit` (same script, same
//! Redis client) driven with concurrency C — vs. `redis-benchmark` calling the
//! same Lua script by SHA with the same concurrency: the Redis ceiling.

use std::time::{Duration, Instant};

use clap::Args;
use common::domain::ProductId;
use futures::StreamExt;
use order_service::admission::{Admission, AdmissionGate, Keys};
use order_service::domain::NewOrder;

use crate::load::Stats;

#[derive(Debug, Args)]
pub struct AdmissionArgs {
    #[arg(long, default_value_t = 200_000)]
    pub requests: usize,
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
}

const PREFIX: &str = "seckill_bench_admission";

async fn fresh_sale(gate: &AdmissionGate, product: ProductId, stock: u32) -> anyhow::Result<()> {
    let keys = gate.keys();
    let mut redis = gate.redis();
    redis::pipe()
        .del(&[
            keys.sale(product),
            keys.users(product),
            keys.reservations(product),
        ])
        .set(keys.ready(), "bench")
        .query_async::<()>(&mut redis)
        .await?;
    gate.open_sale(product, stock, u32::MAX / 2, Default::default())
        .await?;
    Ok(())
}

pub async fn run(args: &AdmissionArgs) -> anyhow::Result<()> {
    let settings = common::settings::RedisSettings {
        url: args.redis_url.clone(),
        key_prefix: PREFIX.into(),
        ..Default::default()
    };
    let gate = AdmissionGate::new(
        common::redis_link::RedisLink::connect(&settings).await?,
        Keys::new(PREFIX),
        Duration::from_millis(1),
    );
    let product = ProductId::parse(1).expect("id");
    let stock = u32::try_from(args.requests * 2).unwrap_or(u32::MAX / 2);

    fresh_sale(&gate, product, stock).await?;
    eprintln!(
        "[bench] AdmissionGate::admit: {} admissions, concurrency {}",
        args.requests, args.concurrency
    );
    let started = Instant::now();
    let latencies: Vec<Option<Duration>> = futures::stream::iter(0..args.requests)
        .map(|i| {
            let order = NewOrder {
                user_id: common::domain::UserId::parse(i as i64 + 1).expect("id"),
                product_id: product,
                count: common::domain::Quantity::parse(1, 1).expect("count"),
            }
            .into_message();
            let gate = &gate;
            async move {
                let t = Instant::now();
                matches!(
                    gate.admit(&order, None).await,
                    Ok(Admission::Admitted { .. })
                )
                .then(|| t.elapsed())
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let admitted = latencies.iter().flatten().count();
    anyhow::ensure!(
        admitted == args.requests,
        "only {admitted} of {} admitted",
        args.requests
    );
    let ours = Stats::new(latencies.into_iter().flatten().collect(), started.elapsed());

    fresh_sale(&gate, product, stock).await?;
    let keys = gate.keys();
    let mut redis = gate.redis();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(order_service::admission::admit_script_source())
        .query_async(&mut redis)
        .await?;
    // The ceiling: the best of several ways to keep `concurrency` calls in
    // flight (connections x pipeline depth); our client multiplexes them over
    // one pipelined connection, so plain `-c C` alone would flatter us.
    let c = args.concurrency.max(1);
    let layouts = [(c, 1), ((c / 8).max(1), 8.min(c)), (1, c)];
    let mut ceiling = 0.0_f64;
    for (connections, pipeline) in layouts {
        fresh_sale(&gate, product, stock).await?;
        eprintln!(
            "[bench] redis-benchmark EVALSHA: {connections} connections x pipeline {pipeline}"
        );
        let output = tokio::process::Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", "6379", "--csv", "-r", "1000000000"])
            .args(["-c", &connections.to_string(), "-P", &pipeline.to_string()])
            .args(["-n", &args.requests.to_string()])
            .args([
                "EVALSHA",
                &sha,
                "5",
                &keys.ready(),
                &keys.sale(product),
                &keys.users(product),
            ])
            .args([
                &keys.reservations(product),
                // No order token to check (the fifth key is then not read).
                &keys.ready(),
                "__rand_int__",
                "1",
                "tx__rand_int__",
                "1700000000000",
                "",
            ])
            .output()
            .await?;
        anyhow::ensure!(
            output.status.success(),
            "redis-benchmark: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let csv = String::from_utf8_lossy(&output.stdout);
        let rate: f64 = csv
            .lines()
            .filter_map(|line| line.split(',').nth(1))
            .filter_map(|field| field.trim_matches('"').parse().ok())
            .next()
            .ok_or_else(|| anyhow::anyhow!("no rate in redis-benchmark's output: {csv}"))?;
        println!("  redis-benchmark -c {connections} -P {pipeline}: {rate:.0} calls/s");
        ceiling = ceiling.max(rate);
    }
    redis::pipe()
        .del(&[
            keys.sale(product),
            keys.users(product),
            keys.reservations(product),
            keys.ready(),
        ])
        .query_async::<()>(&mut redis)
        .await?;

    println!();
    println!("{:<40} {:>10}", "", "ops/s");
    println!(
        "{:<40} {:>10.0}   (p50 {:.2} ms, p99 {:.2} ms)",
        "AdmissionGate::admit (order-service)",
        ours.rate(),
        ours.percentile(50.0).as_secs_f64() * 1e3,
        ours.percentile(99.0).as_secs_f64() * 1e3
    );
    println!(
        "{:<40} {:>10.0}",
        "redis-benchmark EVALSHA, best layout", ceiling
    );
    println!(
        "ratio admission / Lua ceiling: {:.2}",
        ours.rate() / ceiling
    );
    Ok(())
}
