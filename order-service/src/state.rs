//! What the HTTP handlers share, built once at start-up: the services they
//! call and the rules they check. Services never see it: a background job or
//! a service gets only the services it uses.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::audit::Auditor;
use crate::batch::Batches;
use crate::checkout::Checkout;
use crate::domain::Order;
use crate::lifecycle::Lifecycle;
use crate::metrics::OrderMetrics;
use crate::rate_limit::RateLimits;
use crate::sales::Sales;
use crate::settings::{AdmissionSettings, OrderRules};

pub struct AppState {
    /// For the order look-ups of the order routes (through `store`).
    pub db: DatabaseConnection,
    pub checkout: Checkout,
    pub sales: Arc<Sales>,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<OrderMetrics>,
    pub batches: Batches,
    pub auditor: Arc<Auditor>,
    pub rules: OrderRules,
    pub admission_settings: AdmissionSettings,
    pub rate_limits: Arc<RateLimits>,
    /// Mints dev tokens (when `dev_tokens` is on).
    pub signer: Arc<common::auth::Signer>,
    /// `POST /api/auth/dev-token` answers (local use only).
    pub dev_tokens: bool,
}

impl AppState {
    /// An order as the API shows it (with its payment deadline when NEW).
    pub fn shown(&self, order: Order) -> Order {
        order.with_pay_deadline(self.lifecycle.payment_timeout())
    }
}
