//! HTTP routes of order-service. Who may call what: the order endpoints are
//! for the signed-in buyer (`Buyer`/`Caller` extractors), opening sales and
//! everything under `/api/admin` for admins (`Admin`); `/healthz`,
//! `/readyz`, `/metrics` (scraped directly, not through the gateway), the
//! sales list, a sale's view and the OpenAPI document
//! (`/api-docs/openapi.json`, see [`openapi`]) are public.

pub mod audit;
pub mod auth;
pub mod batch;
pub mod dashboard;
pub mod openapi;
pub mod orders;
pub mod sales;
pub mod sold_out_gate;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // In one scope (no prefix: nothing changes for the paths) so that the
    // sold-out gate answers the flood before routing. The two requests of a
    // flash sale first: routes are tried in this order, each dynamic one with
    // a regex (~8% of a sold-out flood's CPU when the order token came seventh).
    let routes = web::scope("")
        .wrap(actix_web::middleware::from_fn(sold_out_gate::sold_out_gate))
        .route(
            "/api/sales/{product_id}/order-token",
            web::post().to(orders::order_token),
        )
        .route("/api/orders", web::post().to(orders::place_order))
        .route("/healthz", web::get().to(common::http::healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/api-docs/openapi.json", web::get().to(openapi::serve))
        .route("/api/orders", web::get().to(orders::list_orders))
        .route(
            "/api/orders/{order_no}/pay",
            web::post().to(orders::pay_order),
        )
        .route(
            "/api/orders/{order_no}/cancel",
            web::post().to(orders::cancel_order),
        )
        .route("/api/orders/{order_no}", web::get().to(orders::get_order))
        .route("/metrics", web::get().to(dashboard::metrics))
        .route(
            "/api/admin/metrics",
            web::get().to(dashboard::admin_metrics),
        )
        .route("/api/auth/dev-token", web::post().to(auth::dev_token))
        .route("/api/admin/dashboard", web::get().to(dashboard::dashboard))
        .route("/api/admin/batch", web::post().to(batch::start_batch))
        .route("/api/admin/batch/{id}", web::get().to(batch::get_batch))
        .route("/api/sales", web::get().to(sales::list_sales))
        .route("/api/sales/{product_id}", web::put().to(sales::open_sale))
        .route("/api/sales/{product_id}", web::get().to(sales::get_sale))
        .route(
            "/api/admin/admission/rebuild",
            web::post().to(sales::rebuild),
        )
        .route("/api/admin/reconcile", web::get().to(sales::reconcile))
        .route("/api/admin/reconcile/repair", web::post().to(sales::repair))
        .route(
            "/api/admin/dead-letters/{msg_id}/resolve",
            web::post().to(sales::resolve_dead_letter),
        )
        .route("/api/admin/audit", web::get().to(audit::audit))
        .route("/api/admin/broker", web::get().to(audit::broker));
    cfg.service(routes);
}

/// `GET /readyz`: the database, Redis and broker probes; the broker check
/// also fails while the order producer cannot reach it (after a broker
/// restart, until a fresh producer connected), so 200 means orders can be placed.
async fn readyz(
    deps: web::Data<common::deps::Dependencies>,
    state: web::Data<crate::state::AppState>,
) -> actix_web::HttpResponse {
    let mut checks = common::deps::dependency_checks(&deps).await;
    if !state.checkout.group_commit.broker_ready() {
        for check in checks.iter_mut().filter(|c| c.name == "broker" && c.ok) {
            *check = common::http::Check::from_result(
                "broker",
                Err(
                    "the broker's port answers, but the order producer cannot reach it yet; reconnecting",
                ),
            );
        }
    }
    common::http::readiness_response(checks)
}
