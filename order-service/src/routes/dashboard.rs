//! `GET /api/admin/dashboard` (JSON for the dashboard page) and `GET /metrics`
//! (the same figures for Prometheus, which scrapes the service directly;
//! through the gateway they are `/api/admin/metrics`, for admins only).

use actix_web::{HttpResponse, web};
use common::auth::Admin;
use common::http::error_response;
use common::metrics::Exposition;

use crate::dashboard::collect;
use crate::state::AppState;

pub async fn dashboard(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    match collect(&state.sales, &state.db, &state.metrics).await {
        Ok(figures) => HttpResponse::Ok().json(figures.with_stock_service(&state.sales).await),
        Err(err) => unavailable(err),
    }
}

/// The counters always; the per-product gauges (read from Redis, both
/// databases and stock-service at scrape time) when they can be read —
/// `seckill_figures_available` says whether they were, so a stock-service or
/// database that is away does not take this instance's counters with it.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut out = Exposition::default();
    state.metrics.render(&mut out);
    let available = match collect(&state.sales, &state.db, &state.metrics).await {
        Ok(figures) => {
            figures.render(&mut out);
            true
        }
        Err(err) => {
            tracing::warn!(%err, "per-product figures left out of /metrics");
            false
        }
    };
    out.gauge(
        "seckill_figures_available",
        "1 when the per-product gauges could be read at this scrape, else 0.",
        [(vec![], f64::from(u8::from(available)))],
    );
    out.into_response()
}

/// `GET /api/admin/metrics`: `/metrics` for an admin (what the gateway exposes).
pub async fn admin_metrics(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    metrics(state).await
}

fn unavailable(err: crate::dashboard::DashboardError) -> HttpResponse {
    tracing::warn!(%err, "dashboard figures unavailable");
    error_response(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "FIGURES_UNAVAILABLE",
        format!("the figures could not be read: {err}"),
    )
}
