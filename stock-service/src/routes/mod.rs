//! HTTP routes of stock-service. A product's stock, `/healthz`, `/readyz`,
//! `/metrics` (scraped directly) and the OpenAPI document
//! (`/api-docs/openapi.json`, see [`openapi`]) are public; setting stock, the applied
//! query, the tx-log pages and the stats are for admins (order-service calls them with its
//! own service token).

pub mod openapi;
pub mod stock;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(common::http::healthz))
        .route("/readyz", web::get().to(common::deps::readyz))
        .route("/api-docs/openapi.json", web::get().to(openapi::serve))
        .route("/metrics", web::get().to(stock::metrics))
        .route("/api/admin/metrics", web::get().to(stock::admin_metrics))
        .route("/api/stock/stats", web::get().to(stock::stats))
        .route("/api/stock/tx-log", web::get().to(stock::tx_log))
        .service(
            web::resource("/api/stock/applied")
                .app_data(common::http::json_config(stock::APPLIED_BODY_MAX))
                .route(web::post().to(stock::applied)),
        )
        .route("/api/stock/{product_id}", web::get().to(stock::get_stock))
        .route("/api/stock/{product_id}", web::put().to(stock::set_stock));
}
