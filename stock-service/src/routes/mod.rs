//! HTTP routes of stock-service.

pub mod stock;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(common::http::healthz))
        .route("/readyz", web::get().to(common::deps::readyz))
        .route("/metrics", web::get().to(stock::metrics))
        .route("/api/stock/stats", web::get().to(stock::stats))
        .service(
            web::resource("/api/stock/applied")
                .app_data(common::http::json_config(stock::APPLIED_BODY_MAX))
                .route(web::post().to(stock::applied)),
        )
        .route("/api/stock/{product_id}", web::get().to(stock::get_stock))
        .route("/api/stock/{product_id}", web::put().to(stock::set_stock));
}
