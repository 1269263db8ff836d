//! Builds order-service from its settings and runs it until told to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use common::auth::{Signer, Verifier};
use common::deps::Dependencies;
use common::mq::MqRuntime;
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;

use crate::admission::{AdmissionGate, Keys, follow_restocks, rebuild};
use crate::audit::Auditor;
use crate::batch::Batches;
use crate::checkout::Checkout;
use crate::dead_letters::DeadLetterWatch;
use crate::events::EventConsumer;
use crate::idempotency::IdempotencyClaims;
use crate::lifecycle::{Lifecycle, keep_sweeping};
use crate::metrics::OrderMetrics;
use crate::order_tx::{GroupCommit, OrderPublisher, OrderTxListener, keep_connected};
use crate::rate_limit::RateLimits;
use crate::redelivery::{Redelivery, keep_redelivering};
use crate::sales::Sales;
use crate::settings::Settings;
use crate::state::AppState;
use crate::stock_client::StockClient;
use crate::timeouts::{TimeoutScheduler, keep_flushing};

/// How long a background task may take to reach a safe point at shutdown
/// (a sale rebuild waits up to its quiet timeout).
const BACKGROUND_GRACE: Duration = Duration::from_secs(40);

/// Forgets idle per-user and per-address rate-limit state once a minute.
async fn forget_idle_limits(limits: Arc<RateLimits>, mut stop: common::shutdown::Shutdown) {
    while stop.sleep(Duration::from_secs(60)).await {
        limits.forget_idle();
    }
}

/// The keys that check callers' tokens and mint this service's own.
fn auth_keys(settings: &Settings) -> anyhow::Result<(Arc<Verifier>, Arc<Signer>)> {
    Ok((
        Arc::new(Verifier::from_settings(&settings.auth)?),
        Arc::new(Signer::from_settings(&settings.auth)?),
    ))
}

pub struct Application {
    port: u16,
    server: Server,
    publisher: Arc<OrderPublisher>,
    timeouts: Arc<TimeoutScheduler>,
    events: EventConsumer,
    dead_letters: DeadLetterWatch,
    redelivery: Arc<Redelivery>,
    background: Vec<JoinHandle<()>>,
    stop_background: common::shutdown::ShutdownTrigger,
    mq: MqRuntime,
    db: DatabaseConnection,
}

/// Everything order-service runs, built once from the settings.
struct Services {
    db: DatabaseConnection,
    redis: common::redis_link::RedisLink,
    admission: Arc<AdmissionGate>,
    metrics: Arc<OrderMetrics>,
    publisher: Arc<OrderPublisher>,
    group_commit: Arc<GroupCommit>,
    timeouts: Arc<TimeoutScheduler>,
    lifecycle: Arc<Lifecycle>,
    events: EventConsumer,
    dead_letters: DeadLetterWatch,
    stock: Arc<StockClient>,
    redelivery: Arc<Redelivery>,
    rate_limits: Arc<RateLimits>,
    verifier: Arc<Verifier>,
    signer: Arc<Signer>,
}

impl Services {
    async fn start(
        settings: &Settings,
        deps: &Dependencies,
        mq: &MqRuntime,
    ) -> anyhow::Result<Self> {
        let (verifier, signer) = auth_keys(settings)?;
        let db = deps.db.clone();
        let redis = deps
            .redis
            .clone()
            .ok_or_else(|| anyhow::anyhow!("order-service needs Redis"))?;
        let rate_limits = Arc::new(RateLimits::new(
            &settings.rate_limit,
            Some((redis.clone(), &settings.redis.key_prefix)),
        ));
        let admission = Arc::new(AdmissionGate::new(
            redis.clone(),
            Keys::new(&settings.redis.key_prefix),
            Duration::from_millis(settings.admission.sold_out_ttl_ms),
        ));
        let metrics = Arc::new(OrderMetrics::default());
        let listener = OrderTxListener::new(
            db.clone(),
            Arc::clone(&admission),
            Arc::clone(&metrics),
            tokio::runtime::Handle::current(),
        );
        let publisher = Arc::new(
            OrderPublisher::start(mq, settings, listener, db.clone(), Arc::clone(&metrics))
                .await
                .map_err(|e| anyhow::anyhow!("starting the transactional producer: {e}"))?,
        );
        let group_commit = Arc::new(GroupCommit::start(
            Arc::clone(&publisher),
            &settings.group_commit,
            Arc::clone(&metrics),
        ));
        let timeouts = Arc::new(
            TimeoutScheduler::start(mq, settings)
                .await
                .map_err(|e| anyhow::anyhow!("starting the timeout producer: {e}"))?,
        );
        let lifecycle = Arc::new(Lifecycle::new(
            db.clone(),
            Arc::clone(&publisher),
            Arc::clone(&admission),
            Arc::clone(&metrics),
            settings.lifecycle.payment_timeout(),
            Duration::from_secs(settings.lifecycle.orphan_reservation_secs),
        ));
        let events =
            EventConsumer::start(mq, settings, Arc::clone(&lifecycle), Arc::clone(&timeouts))
                .await
                .map_err(|e| anyhow::anyhow!("starting the event consumer: {e}"))?;
        let dead_letters = DeadLetterWatch::start(mq, settings, db.clone(), Arc::clone(&metrics))
            .await
            .map_err(|e| anyhow::anyhow!("starting the dead-letter watch: {e}"))?;
        let stock = Arc::new(StockClient::new(
            &settings.admission.stock_service_url,
            Arc::clone(&signer),
        ));
        let redelivery = Arc::new(
            Redelivery::start(
                mq,
                settings,
                db.clone(),
                Arc::clone(&stock),
                Arc::clone(&admission),
                Arc::clone(&metrics),
            )
            .await
            .map_err(|e| anyhow::anyhow!("starting the redelivery producer: {e}"))?,
        );
        Ok(Self {
            db,
            redis,
            admission,
            metrics,
            publisher,
            group_commit,
            timeouts,
            lifecycle,
            events,
            dead_letters,
            stock,
            redelivery,
            rate_limits,
            verifier,
            signer,
        })
    }

    /// The periodic jobs, each with only what it uses and a shutdown signal.
    fn spawn_background(
        &self,
        settings: &Settings,
    ) -> anyhow::Result<(common::shutdown::ShutdownTrigger, Vec<JoinHandle<()>>)> {
        let (trigger, stop) = common::shutdown::channel();
        let every = |ms| Duration::from_millis(ms);
        let jobs = vec![
            tokio::spawn(keep_connected(Arc::clone(&self.publisher), stop.clone())),
            tokio::spawn(keep_redelivering(
                Arc::clone(&self.redelivery),
                every(settings.redelivery.interval_ms),
                stop.clone(),
            )),
            tokio::spawn(keep_flushing(Arc::clone(&self.timeouts), stop.clone())),
            tokio::spawn(keep_sweeping(
                Arc::clone(&self.lifecycle),
                every(settings.lifecycle.sweep_interval_ms),
                stop.clone(),
            )),
            tokio::spawn(rebuild::keep_ready(
                Arc::clone(&self.admission),
                self.db.clone(),
                Arc::clone(&self.stock),
                every(settings.admission.ready_check_ms),
                Duration::from_secs(settings.admission.rebuild_quiet_timeout_secs),
                stop.clone(),
            )),
            tokio::spawn(follow_restocks(
                self.redis.clone(),
                self.admission.keys().restock_channel(),
                Arc::clone(&self.admission),
                stop.clone(),
            )),
            tokio::spawn(forget_idle_limits(Arc::clone(&self.rate_limits), stop)),
        ];
        Ok((trigger, jobs))
    }

    /// What the HTTP handlers share; `port` is the one bound (for the batch
    /// runner, which orders through this instance); the auditor reads the
    /// broker with clients on `mq`.
    fn app_state(&self, settings: &Settings, port: u16, mq: &MqRuntime) -> AppState {
        let sales = Arc::new(Sales::new(
            Arc::clone(&self.admission),
            self.db.clone(),
            Arc::clone(&self.stock),
            Duration::from_secs(settings.admission.rebuild_quiet_timeout_secs),
            settings.redelivery.after(),
        ));
        let host = match settings.http.host.as_str() {
            "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
            host => host,
        };
        AppState {
            db: self.db.clone(),
            checkout: Checkout {
                idempotency: IdempotencyClaims::new(
                    self.redis.clone(),
                    &settings.redis.key_prefix,
                    Duration::from_secs(10),
                ),
                admission: Arc::clone(&self.admission),
                group_commit: Arc::clone(&self.group_commit),
                timeouts: Arc::clone(&self.timeouts),
                db: self.db.clone(),
                order_token_ttl: Duration::from_millis(settings.orders.order_token_ttl_ms),
            },
            lifecycle: Arc::clone(&self.lifecycle),
            metrics: Arc::clone(&self.metrics),
            batches: Batches::new(
                Arc::clone(&sales),
                self.db.clone(),
                format!("http://{host}:{port}"),
                Arc::clone(&self.signer),
            ),
            auditor: Arc::new(Auditor::new(
                settings,
                self.db.clone(),
                Arc::clone(&self.stock),
                Arc::clone(&sales),
                mq.client(),
            )),
            sales,
            rules: settings.orders.clone(),
            admission_settings: settings.admission.clone(),
            rate_limits: Arc::clone(&self.rate_limits),
            signer: Arc::clone(&self.signer),
            dev_tokens: settings.auth.dev_tokens,
        }
    }
}

impl Application {
    /// Connects to MariaDB (creating and migrating the database), Redis and the
    /// broker, starts the services and their background jobs, and binds the
    /// HTTP port: connect → services → background → HTTP.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // A bad key setting is refused before anything is connected.
        auth_keys(&settings)?;
        let (deps, mq) = Dependencies::connect(
            "order-service",
            &settings.database,
            crate::SCHEMA,
            Some(&settings.redis),
            &settings.mq,
        )
        .await?;
        let services = Services::start(&settings, &deps, &mq).await?;
        let (stop_background, background) = services.spawn_background(&settings)?;
        let (tcp, port) = common::http::bind(&settings.http.host, settings.http.port)?;
        let state = web::Data::new(services.app_state(&settings, port, &mq));
        let verifier = web::Data::from(Arc::clone(&services.verifier));
        let deps = web::Data::new(deps);
        let server = common::http::start_server(
            tcp,
            move |cfg| {
                cfg.app_data(state.clone())
                    .app_data(deps.clone())
                    .app_data(verifier.clone());
                crate::routes::configure(cfg);
            },
            settings.http.shutdown_timeout_secs,
        )?;
        Ok(Self {
            port,
            server,
            publisher: services.publisher,
            timeouts: services.timeouts,
            events: services.events,
            dead_letters: services.dead_letters,
            redelivery: services.redelivery,
            background,
            stop_background,
            mq,
            db: services.db,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` completes, then stops in order: HTTP (finishing
    /// in-flight requests), background tasks (each at a safe point: awaited,
    /// not aborted, unless one overruns the grace period), the producer, the
    /// client runtime, the DB pool.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let served = common::http::serve_until(self.server, shutdown).await;
        self.stop_background.trigger();
        for mut task in self.background {
            if tokio::time::timeout(BACKGROUND_GRACE, &mut task)
                .await
                .is_err()
            {
                tracing::warn!("a background task overran the shutdown grace period; aborted");
                task.abort();
            }
        }
        self.dead_letters.shutdown().await;
        self.redelivery.shutdown().await;
        self.events.shutdown().await;
        self.timeouts.shutdown().await;
        self.publisher.shutdown().await;
        self.mq.shutdown().await;
        let _ = self.db.close().await;
        tracing::info!("order-service stopped");
        served
    }
}
