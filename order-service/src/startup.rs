//! Builds order-service from its settings and runs it until told to stop.

use std::future::Future;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::web;
use anyhow::Context;
use common::deps::Dependencies;
use common::mq::MqRuntime;
use sea_orm::DatabaseConnection;

use crate::listener::OrderTxListener;
use crate::publisher::OrderPublisher;
use crate::settings::{OrderRules, Settings};

/// What the order handlers share; built once at start-up.
pub struct AppState {
    pub db: DatabaseConnection,
    pub publisher: Arc<OrderPublisher>,
    pub rules: OrderRules,
}

pub struct Application {
    port: u16,
    server: Server,
    publisher: Arc<OrderPublisher>,
    mq: MqRuntime,
    db: DatabaseConnection,
}

impl Application {
    /// Connects to MariaDB (creating and migrating the database), Redis and the
    /// broker, starts the transactional producer and binds the HTTP port.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let (deps, mq) = Dependencies::connect(
            "order-service",
            &settings.database,
            crate::SCHEMA,
            &settings.redis,
            &settings.mq,
        )
        .await?;
        let db = deps.db.clone();
        let listener = OrderTxListener::new(db.clone(), tokio::runtime::Handle::current());
        let publisher = Arc::new(
            OrderPublisher::start(&mq, &settings, listener, db.clone())
                .await
                .context("starting the transactional producer")?,
        );

        let (tcp, port) = common::http::bind(&settings.http.host, settings.http.port)?;
        let state = web::Data::new(AppState {
            db: db.clone(),
            publisher: Arc::clone(&publisher),
            rules: settings.orders.clone(),
        });
        let deps = web::Data::new(deps);
        let server = common::http::start_server(
            tcp,
            move |cfg| {
                cfg.app_data(state.clone()).app_data(deps.clone());
                crate::routes::configure(cfg);
            },
            settings.http.shutdown_timeout_secs,
        )?;
        Ok(Self {
            port,
            server,
            publisher,
            mq,
            db,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` completes, then stops in order: HTTP (finishing
    /// in-flight requests), the producer, the client runtime, the DB pool.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let served = common::http::serve_until(self.server, shutdown).await;
        self.publisher.shutdown().await;
        self.mq.shutdown().await;
        let _ = self.db.close().await;
        tracing::info!("order-service stopped");
        served
    }
}
