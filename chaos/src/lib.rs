//! The chaos suite. Each scenario runs a flash sale of its own product with
//! buyers who also pay and cancel (seeded, so a failure can be replayed with
//! `--seed`), injects one fault mid-sale, heals it, waits for the system to
//! be quiet and checks every invariant, printing a PASS/FAIL line for each
//! and a summary line. It talks to the stack only as a client would (HTTP
//! with signed tokens) and reads its two databases; faults go through
//! `deploy/part.sh` (processes), SQL (the failing commit) or the link proxy
//! in front of the broker (`link`, the slow link).
//!
//! `client` makes the calls, `workload` runs the buyers, `scenarios` injects
//! and heals the faults, `checks` judges the result, `stack` knows the parts, `link` is the proxy.

pub mod checks;
pub mod client;
pub mod link;
pub mod scenarios;
pub mod stack;
pub mod workload;

use std::time::{Duration, Instant};

use clap::Parser;

use crate::scenarios::Scenario;
use crate::stack::Stack;

#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Scenarios to run, by name (see --list); several may be given.
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Every scenario (the README's test command runs them all); with
    /// `--cluster`, every one the cluster can have.
    #[arg(long)]
    pub all: bool,
    /// Run against the containerized cluster (`deploy/up.sh --cluster`;
    /// faults through `deploy/cluster/part.sh`) instead of a local stack.
    #[arg(long)]
    pub cluster: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Seed of the buyers' choices and timings (printed; default: the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The repository whose `deploy/part.sh` controls the stack (the stack is
    /// the one its environment names: SECKILL_RUN_DIR, SECKILL_*_PORT, …).
    #[arg(long, default_value = ".")]
    pub repo: std::path::PathBuf,
    /// Buyers per scenario.
    #[arg(long, default_value_t = 400)]
    pub buyers: u64,
    /// Items per sale (fewer than buyers: the sale sells out).
    #[arg(long, default_value_t = 250)]
    pub stock: i64,
    /// How long the buyers keep arriving, in seconds.
    #[arg(long, default_value_t = 12)]
    pub sale_secs: u64,
    /// Buyers served at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Longest wait for the system to be quiet after the fault healed, in seconds.
    #[arg(long, default_value_t = 120)]
    pub quiet_secs: u64,
}

/// Runs the chosen scenarios; `Ok(false)` when any invariant failed.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    if args.list {
        for scenario in Scenario::ALL {
            println!("{:<20} {}", scenario.name(), scenario.describe());
        }
        return Ok(true);
    }
    let chosen = choose(&args)?;
    if args.cluster && args.all {
        for scenario in Scenario::ALL {
            if let Err(why) = scenario.on_cluster() {
                println!("[chaos] NOT RUN on the cluster: {}: {why}", scenario.name());
            }
        }
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let stack = Stack::describe(&args.repo, args.cluster).await?;
    println!(
        "[chaos] seed {seed} (replay: --seed {seed}); {} scenario(s) against {}",
        chosen.len(),
        stack.order_url
    );
    let started = Instant::now();
    let mut results = Vec::new();
    for (index, scenario) in chosen.iter().enumerate() {
        let plan = workload::Plan {
            product: fresh_product(index),
            stock: args.stock,
            buyers: args.buyers,
            sale: Duration::from_secs(args.sale_secs),
            concurrency: args.concurrency,
            seed: seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            quiet_limit: Duration::from_secs(args.quiet_secs),
            opened_at_ms: chrono::Utc::now().timestamp_millis() as u64,
        };
        let outcome = scenarios::run(&stack, *scenario, &plan).await?;
        results.push((*scenario, outcome));
    }
    println!();
    let mut all_passed = true;
    for (scenario, outcome) in &results {
        all_passed &= outcome.passed();
        println!(
            "[chaos] {:<4} {:<20} {} of {} checks passed, quiet {:.1} s after healing, {:.0} s in all",
            if outcome.passed() { "PASS" } else { "FAIL" },
            scenario.name(),
            outcome.checks.iter().filter(|c| c.pass).count(),
            outcome.checks.len(),
            outcome.quiet_after.as_secs_f64(),
            outcome.took.as_secs_f64()
        );
    }
    println!(
        "[chaos] summary: {} of {} scenarios passed in {:.0} s (seed {seed})",
        results.iter().filter(|(_, o)| o.passed()).count(),
        results.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(all_passed)
}

fn choose(args: &Args) -> anyhow::Result<Vec<Scenario>> {
    if args.all {
        return Ok(Scenario::ALL
            .into_iter()
            .filter(|s| !args.cluster || s.on_cluster().is_ok())
            .collect());
    }
    anyhow::ensure!(
        !args.scenarios.is_empty(),
        "name scenarios with --scenario, or use --all (--list shows them)"
    );
    args.scenarios
        .iter()
        .map(|name| {
            Scenario::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| anyhow::anyhow!("no scenario named {name:?} (see --list)"))
                .and_then(|s| match s.on_cluster() {
                    Err(why) if args.cluster => {
                        anyhow::bail!("{name} cannot run on the cluster: {why}")
                    }
                    _ => Ok(s),
                })
        })
        .collect()
}

/// A product id no earlier run used: the sale's stock and orders are its own.
fn fresh_product(index: usize) -> i64 {
    let secs = chrono::Utc::now().timestamp() % 10_000_000;
    8_000_000_000 + secs * 100 + index as i64
}
