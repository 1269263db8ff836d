//! `TestApp`: what most end-to-end tests need — a fresh [`TestEnv`], a
//! stock-service and an order-service on it — with typed helpers for the
//! calls they make (zero-to-production's `spawn_app`). `stop` shuts both
//! down gracefully and checks they stopped cleanly.
//!
//! [`TestApp::builder`] starts anything else a test needs: custom
//! stock-service settings, a broker of the test's own, stock-service alone
//! ([`StockApp`]), order-service later, or as a real process to kill.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::TestEnv;
use crate::broker::PrivateBroker;
use crate::services::{
    self, OrderServiceProcess, RunningService, order_settings, spawn_order_service_with,
    spawn_stock_service_with, stock_settings,
};

type StockSettings = stock_service::settings::Settings;
type OrderSettings = order_service::settings::Settings;

pub struct TestApp {
    pub env: TestEnv,
    pub stock: RunningService,
    pub orders: RunningService,
}

/// An answer of `POST /api/orders`.
#[derive(Debug)]
pub struct OrderAnswer {
    pub status: StatusCode,
    pub body: Value,
}

impl OrderAnswer {
    /// The error code (`SOLD_OUT`, …), if it is an error.
    pub fn code(&self) -> Option<&str> {
        self.body["code"].as_str()
    }

    pub fn order_no(&self) -> &str {
        self.body["order_no"].as_str().unwrap_or_default()
    }

    pub fn tx_no(&self) -> &str {
        self.body["tx_no"].as_str().unwrap_or_default()
    }
}

impl TestApp {
    /// Both services with the test defaults.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Both services; `configure` adjusts order-service's settings first.
    pub async fn spawn_with(configure: impl FnOnce(&mut OrderSettings)) -> Self {
        Self::builder().spawn_with(configure).await
    }

    /// A fresh [`TestEnv`] to start services on, when the defaults will not do.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            env: TestEnv::new(),
            configure_stock: Box::new(|_| {}),
        }
    }

    /// Another order-service instance on the same databases, Redis and topics.
    pub async fn spawn_another_order_service(
        &self,
        configure: impl FnOnce(&mut OrderSettings),
    ) -> RunningService {
        spawn_order_service_on(&self.env, &self.stock, configure).await
    }

    /// Stops order-service gracefully (checks it stopped cleanly); stock-service runs on.
    pub async fn stop_orders(self) -> StockApp {
        let Self { env, stock, orders } = self;
        orders.stop().await;
        StockApp { env, stock }
    }

    pub async fn open_sale(&self, product: i64, stock: i64) {
        services::open_sale(&self.orders, product, stock).await;
    }

    pub async fn place_order(&self, user: i64, product: i64, count: i64) -> OrderAnswer {
        let (status, body) = services::place_order(&self.orders, user, product, count).await;
        OrderAnswer { status, body }
    }

    pub async fn cancel_order(&self, order_no: &str, user: i64) -> OrderAnswer {
        let (status, body) = services::cancel_order(&self.orders, order_no, user).await;
        OrderAnswer { status, body }
    }

    /// The stock DB's count, through stock-service.
    pub async fn stock_of(&self, product: i64) -> i64 {
        services::stock_of(&self.stock, product).await
    }

    /// Redis's (stock, reserved orders) for a sale.
    pub async fn sale_view(&self, product: i64) -> (i64, i64) {
        services::sale_view(&self.orders, product).await
    }

    /// `GET /api/admin/reconcile` (asserted 200).
    pub async fn reconcile(&self) -> Value {
        reconcile_on(&self.orders).await
    }

    /// order-service's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics_of(&self.orders).await
    }

    pub async fn stop(self) {
        self.stop_orders().await.stop().await;
    }
}

/// How a test's services start: `TestApp::builder()`, then what differs from
/// the defaults, then `spawn`, `spawn_with` or `spawn_stock`.
pub struct TestAppBuilder {
    env: TestEnv,
    configure_stock: Box<dyn FnOnce(&mut StockSettings) + Send>,
}

impl TestAppBuilder {
    /// The services talk to this name server and broker (the test's own).
    pub fn broker(mut self, broker: &PrivateBroker) -> Self {
        self.env.namesrv_addr = broker.namesrv_addr.clone();
        self.env.broker_addr = broker.broker_addr.clone();
        self
    }

    /// `configure` adjusts stock-service's settings before it starts.
    pub fn stock_settings(
        mut self,
        configure: impl FnOnce(&mut StockSettings) + Send + 'static,
    ) -> Self {
        self.configure_stock = Box::new(configure);
        self
    }

    /// Both services, order-service with the test defaults.
    pub async fn spawn(self) -> TestApp {
        self.spawn_with(|_| {}).await
    }

    /// Both services; `configure` adjusts order-service's settings first.
    pub async fn spawn_with(self, configure: impl FnOnce(&mut OrderSettings)) -> TestApp {
        self.spawn_stock().await.spawn_orders_with(configure).await
    }

    /// stock-service alone; order-service, if any, starts later from the [`StockApp`].
    pub async fn spawn_stock(self) -> StockApp {
        let Self {
            env,
            configure_stock,
        } = self;
        let mut settings = stock_settings(&env);
        configure_stock(&mut settings);
        let stock = spawn_stock_service_with(settings).await;
        StockApp { env, stock }
    }
}

/// A fresh [`TestEnv`] with only stock-service running: for tests of
/// stock-service alone, and for those that start order-service later (after
/// a process of it was killed, say). `stop` shuts it down gracefully.
pub struct StockApp {
    pub env: TestEnv,
    pub stock: RunningService,
}

impl StockApp {
    /// order-service in-process with the test defaults, on this stock-service.
    pub async fn spawn_orders(self) -> TestApp {
        self.spawn_orders_with(|_| {}).await
    }

    /// order-service in-process; `configure` adjusts its settings first.
    pub async fn spawn_orders_with(self, configure: impl FnOnce(&mut OrderSettings)) -> TestApp {
        let orders = spawn_order_service_on(&self.env, &self.stock, configure).await;
        // The instance marks its admission state ready in the background right
        // after start; a test begins once it has (a test that started earlier
        // was told 503 SALE_NOT_READY now and then).
        crate::eventually(
            "the admission state ready",
            std::time::Duration::from_secs(30),
            || async {
                let (status, report) = orders.call(Method::GET, "/api/admin/reconcile", None).await;
                (status == StatusCode::OK && report["ready"] == true).then_some(())
            },
        )
        .await;
        let Self { env, stock } = self;
        TestApp { env, stock, orders }
    }

    /// The real `order-service` executable on this stock-service, answering
    /// `/healthz`; killed with [`OrderServiceProcess::kill`] or when dropped.
    pub async fn start_order_process(&self) -> OrderServiceProcess {
        OrderServiceProcess::start(&self.env, &self.stock).await
    }

    /// [`Self::start_order_process`] with `extra` `APP_...` variables.
    pub async fn start_order_process_with(&self, extra: &[(&str, &str)]) -> OrderServiceProcess {
        OrderServiceProcess::start_with(&self.env, &self.stock, extra).await
    }

    pub async fn stop(self) {
        self.stock.stop().await;
    }
}

/// An order-service instance on `env` and `stock`; `configure` adjusts its settings first.
async fn spawn_order_service_on(
    env: &TestEnv,
    stock: &RunningService,
    configure: impl FnOnce(&mut OrderSettings),
) -> RunningService {
    let mut settings = order_settings(env, &stock.base_url);
    configure(&mut settings);
    spawn_order_service_with(settings).await
}

/// `GET /api/admin/reconcile` of one order-service instance (asserted 200).
pub async fn reconcile_on(orders: &RunningService) -> Value {
    let (status, report) = orders.call(Method::GET, "/api/admin/reconcile", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report
}

/// One product's entry of a reconciliation report.
pub fn product_report(report: &Value, product: i64) -> Value {
    report["products"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["product_id"] == product))
        .cloned()
        .unwrap_or_else(|| panic!("product {product} in {report}"))
}

/// The `/metrics` text of a service.
pub async fn metrics_of(service: &RunningService) -> String {
    service
        .http
        .get(format!("{}/metrics", service.base_url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}
