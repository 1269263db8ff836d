//! `seckill-chaos`: runs the chaos scenarios against a running local stack
//! (see the library's docs and `--help`).

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = seckill_chaos::Args::parse();
    match seckill_chaos::run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(err) => {
            eprintln!("[chaos] error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
