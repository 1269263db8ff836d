//! `TestApp`: what most end-to-end tests need — a fresh [`TestEnv`], a
//! stock-service and an order-service on it — with typed helpers for the
//! calls they make (zero-to-production's `spawn_app`). `stop` shuts both
//! down gracefully and checks they stopped cleanly.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::TestEnv;
use crate::services::{
    self, RunningService, order_settings, spawn_order_service_with, spawn_stock_service,
};

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
    pub async fn spawn_with(
        configure: impl FnOnce(&mut order_service::settings::Settings),
    ) -> Self {
        let env = TestEnv::new();
        let stock = spawn_stock_service(&env).await;
        let mut settings = order_settings(&env, &stock.base_url);
        configure(&mut settings);
        let orders = spawn_order_service_with(settings).await;
        Self { env, stock, orders }
    }

    /// Another order-service instance on the same databases, Redis and topics.
    pub async fn spawn_another_order_service(
        &self,
        configure: impl FnOnce(&mut order_service::settings::Settings),
    ) -> RunningService {
        let mut settings = order_settings(&self.env, &self.stock.base_url);
        configure(&mut settings);
        spawn_order_service_with(settings).await
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
        self.orders.stop().await;
        self.stock.stop().await;
    }
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
