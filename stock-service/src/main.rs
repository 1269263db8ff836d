//! stock-service entry point: telemetry, settings, then the application until a stop signal.

use stock_service::settings::Settings;
use stock_service::startup::Application;

/// mimalloc: cheaper than the system allocator on the order path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = common::settings::load("stock-service")?;
    common::telemetry::init_subscriber(&settings.log, std::io::stdout);
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "stock-service listening");
    app.run_until_stopped(common::shutdown::signal()).await
}
