//! Builds stock-service from its settings and runs it until told to stop.

use std::future::Future;

use actix_web::dev::Server;
use actix_web::web;
use anyhow::Context;
use common::deps::Dependencies;
use common::mq::MqRuntime;
use sea_orm::DatabaseConnection;

use crate::consumer::OrderConsumer;
use crate::metrics::StockMetrics;
use crate::settings::Settings;

pub struct Application {
    port: u16,
    server: Server,
    consumer: OrderConsumer,
    mq: MqRuntime,
    db: DatabaseConnection,
}

impl Application {
    /// Connects to MariaDB (creating and migrating the database) and the
    /// broker, starts the order consumer and binds the HTTP port.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let verifier = web::Data::new(
            common::auth::Verifier::from_settings(&settings.auth).context("auth settings")?,
        );
        let (deps, mq) = Dependencies::connect(
            "stock-service",
            &settings.database,
            crate::SCHEMA,
            None, // stock-service keeps nothing in Redis
            &settings.mq,
        )
        .await?;
        let db = deps.db.clone();
        let metrics = web::Data::new(StockMetrics::default());
        let consumer =
            OrderConsumer::start(&mq, &settings, db.clone(), metrics.clone().into_inner())
                .await
                .context("starting the order consumer")?;

        let (tcp, port) = common::http::bind(&settings.http.host, settings.http.port)?;
        let deps = web::Data::new(deps);
        let server = common::http::start_server(
            tcp,
            move |cfg| {
                cfg.app_data(deps.clone())
                    .app_data(metrics.clone())
                    .app_data(verifier.clone());
                crate::routes::configure(cfg);
            },
            settings.http.shutdown_timeout_secs,
        )?;
        Ok(Self {
            port,
            server,
            consumer,
            mq,
            db,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` completes, then stops in order: HTTP, the
    /// consumer (finishing the messages in hand), the client runtime, the DB pool.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let served = common::http::serve_until(self.server, shutdown).await;
        self.consumer.shutdown().await;
        self.mq.shutdown().await;
        let _ = self.db.close().await;
        tracing::info!("stock-service stopped");
        served
    }
}
