//! The load tool. `seckill-bench sale` runs a flash sale through the HTTP API,
//! checks the invariants and writes the run's figures (JSON) and timeline
//! plot (SVG) to `--out`; `seckill-bench sold-out-flood` compares the
//! sold-out answer with a trivial actix-web handler.
//!
//! `seckill-bench order-path`: places N orders through the running services'
//! HTTP API with concurrency C, then measures the broker's plain and
//! transactional send rates with the same concurrency and message size, and
//! prints the order path as a ratio of both. It ends by checking the
//! invariants (every order deducted exactly once, stock == initial − ordered)
//! and exits non-zero when one fails.
//!
//! `seckill-bench stock-apply`: stock-service's store alone on one product,
//! one transaction per order vs. one per batch (group commit), on a scratch
//! database; exits non-zero when the stock or `tx_log` is not exact.

mod admission;
mod baseline;
mod flood;
mod load;
mod plot;
mod probe;
mod report;
mod sale;
mod stock_apply;
mod timeline;
mod tokens;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(version, about)]
enum Command {
    /// The reliable-message order path vs. the broker's send rates.
    OrderPath(load::OrderPathArgs),
    /// A flash sale: S items, N requests from U buyers, concurrency C; summary, invariants, JSON + SVG timeline in --out.
    Sale(sale::SaleArgs),
    /// The admission step alone vs. redis-benchmark running the same Lua script.
    Admission(admission::AdmissionArgs),
    /// Requests for a sold-out product vs. a trivial actix-web handler.
    SoldOutFlood(flood::FloodArgs),
    /// stock-service's store alone on one product: one transaction per order vs. per batch.
    StockApply(stock_apply::StockApplyArgs),
    /// (internal) the trivial actix-web handler, for sold-out-flood's baseline.
    #[command(hide = true)]
    TrivialServer {
        #[arg(long)]
        port: u16,
    },
}

/// mimalloc, as in the services: the load tool shares the machine's two
/// cores with what it measures, so its own CPU per request counts.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Command::parse() {
        Command::Sale(args) => sale::run(&args).await,
        Command::Admission(args) => admission::run(&args).await,
        Command::SoldOutFlood(args) => flood::run(&args).await,
        Command::StockApply(args) => stock_apply::run(&args).await,
        Command::TrivialServer { port } => flood::serve_trivial(port).await,
        Command::OrderPath(args) => {
            let order_path = load::run_order_path(&args).await?;
            let plain = baseline::plain_sends(&args.mq(), args.orders, args.concurrency).await?;
            let transactional =
                baseline::transactional_sends(&args.mq(), args.orders, args.concurrency).await?;
            println!();
            println!(
                "{:<34} {:>10} {:>9} {:>9} {:>9}",
                "path", "ops/s", "p50 ms", "p95 ms", "p99 ms"
            );
            sale::print_stats("order path (HTTP→tx msg→DB)", &order_path.stats);
            sale::print_stats("broker transactional send", &transactional);
            sale::print_stats("broker plain sync send", &plain);
            println!();
            println!(
                "ratio order path / transactional send: {:.2}",
                order_path.stats.rate() / transactional.rate()
            );
            println!(
                "ratio order path / plain send:         {:.2}",
                order_path.stats.rate() / plain.rate()
            );
            load::check_invariants(&args, &order_path).await
        }
    }
}
