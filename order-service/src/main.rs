//! order-service entry point: telemetry, settings, then the application until a stop signal.

use order_service::settings::Settings;
use order_service::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = common::settings::load("order-service")?;
    common::telemetry::init_subscriber(&settings.log, std::io::stdout);
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "order-service listening");
    app.run_until_stopped(common::shutdown::signal()).await
}
