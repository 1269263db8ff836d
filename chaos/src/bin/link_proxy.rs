//! `seckill-link-proxy`: the slow or lossy link of the chaos suite's
//! scenario 8, a TCP proxy in front of the broker whose faults are switched
//! at runtime (see `seckill_chaos::link`). Started by `deploy/chaos-test.sh`
//! before the broker, which advertises the proxy's address.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where the clients connect (the broker's advertised address).
    #[arg(long)]
    listen: String,
    /// The broker's own listening address.
    #[arg(long)]
    upstream: String,
    /// Where `get` and `set delay_ms=N cut_per_mille=M` lines are answered.
    #[arg(long)]
    control: String,
    /// Seed of the cuts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listen = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let control = TcpListener::bind(&args.control)
        .await
        .with_context(|| format!("listening for control lines on {}", args.control))?;
    println!(
        "[link] {} -> {} (control {}), no fault",
        args.listen, args.upstream, args.control
    );
    let link = Arc::new(seckill_chaos::link::Link::new(args.seed));
    tokio::select! {
        () = seckill_chaos::link::serve(link, listen, args.upstream, control) => {}
        _ = tokio::signal::ctrl_c() => {}
        () = terminated() => {}
    }
    println!("[link] stopped");
    Ok(())
}

async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
