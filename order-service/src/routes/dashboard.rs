//! `GET /api/admin/dashboard` (JSON for the dashboard page) and `GET /metrics`
//! (the same figures for Prometheus).

use actix_web::{HttpResponse, web};
use common::http::error_response;
use common::metrics::Exposition;

use crate::dashboard::collect;
use crate::state::AppState;

pub async fn dashboard(state: web::Data<AppState>) -> HttpResponse {
    match collect(&state.sales, &state.db, &state.metrics).await {
        Ok(figures) => HttpResponse::Ok().json(figures.with_stock_service(&state.sales).await),
        Err(err) => unavailable(err),
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match collect(&state.sales, &state.db, &state.metrics).await {
        Ok(figures) => {
            let mut out = Exposition::default();
            state.metrics.render(&mut out);
            figures.render(&mut out);
            out.into_response()
        }
        Err(err) => unavailable(err),
    }
}

fn unavailable(err: crate::dashboard::DashboardError) -> HttpResponse {
    tracing::warn!(%err, "dashboard figures unavailable");
    error_response(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "FIGURES_UNAVAILABLE",
        format!("the figures could not be read: {err}"),
    )
}
