//! order-service entry point: telemetry, settings, then either an admin
//! subcommand (`reconcile [--repair]`) or the application until a stop signal.

use order_service::settings::Settings;
use order_service::startup::Application;

/// mimalloc: cheaper than the system allocator on the order path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = common::settings::load("order-service")?;
    common::telemetry::init_subscriber(&settings.log, std::io::stderr);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(outcome) = order_service::cli::run(&settings, &args).await {
        std::process::exit(outcome?);
    }
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "order-service listening");
    app.run_until_stopped(common::shutdown::signal()).await
}
