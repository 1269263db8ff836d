//! The OpenAPI documents both services serve at `GET /api-docs/openapi.json`:
//! public, JSON, OpenAPI 3.1, with the bearer scheme, and listing exactly the
//! routes `routes::configure` registers — adding a route without documenting
//! it (in `routes/openapi.rs`) fails here.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use seckill_tests::app::TestApp;
use seckill_tests::services::RunningService;
use serde_json::Value;

/// What order-service's `routes::configure` registers.
const ORDER_ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/api-docs/openapi.json"),
    ("post", "/api/orders"),
    ("get", "/api/orders"),
    ("post", "/api/orders/{order_no}/pay"),
    ("post", "/api/orders/{order_no}/cancel"),
    ("get", "/api/orders/{order_no}"),
    ("get", "/metrics"),
    ("get", "/api/admin/metrics"),
    ("post", "/api/auth/dev-token"),
    ("get", "/api/admin/dashboard"),
    ("post", "/api/admin/batch"),
    ("get", "/api/admin/batch/{id}"),
    ("get", "/api/sales"),
    ("put", "/api/sales/{product_id}"),
    ("get", "/api/sales/{product_id}"),
    ("post", "/api/sales/{product_id}/order-token"),
    ("post", "/api/admin/admission/rebuild"),
    ("get", "/api/admin/reconcile"),
    ("post", "/api/admin/reconcile/repair"),
    ("post", "/api/admin/dead-letters/{msg_id}/resolve"),
    ("get", "/api/admin/audit"),
    ("get", "/api/admin/broker"),
];

/// What stock-service's `routes::configure` registers.
const STOCK_ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/api-docs/openapi.json"),
    ("get", "/metrics"),
    ("get", "/api/admin/metrics"),
    ("get", "/api/stock/stats"),
    ("post", "/api/stock/applied"),
    ("get", "/api/stock/tx-log"),
    ("get", "/api/stock/{product_id}"),
    ("put", "/api/stock/{product_id}"),
];

const ORDER_ROUTES_SOURCE: &str = include_str!("../../order-service/src/routes/mod.rs");
const STOCK_ROUTES_SOURCE: &str = include_str!("../../stock-service/src/routes/mod.rs");

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

/// Every `"/…"` string literal of a routes module: the paths it registers.
fn paths_in_source(source: &str) -> BTreeSet<String> {
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| literal.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

async fn document(service: &RunningService) -> Value {
    // No token: the documents are public.
    let response = service
        .http
        .get(format!("{}/api-docs/openapi.json", service.base_url))
        .send()
        .await
        .expect("HTTP request");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).expect("the document is JSON")
}

/// Checks `doc` against the routes and returns nothing; panics naming what differs.
fn check(service: &str, doc: &Value, routes: &[(&str, &str)], source: &str) {
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "{service}: openapi {version}");
    let scheme = &doc["components"]["securitySchemes"][common::openapi::BEARER];
    assert_eq!(scheme["type"], "http", "{service}: {scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{service}: {scheme}");
    assert!(
        doc["components"]["schemas"]["Error"].is_object(),
        "{service}"
    );

    let registered: BTreeSet<(String, String)> = routes
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        registered.len(),
        routes.len(),
        "{service}: a route is listed twice"
    );
    // The list above is complete: every path routes/mod.rs names is in it.
    let listed: BTreeSet<String> = routes.iter().map(|(_, p)| (*p).to_owned()).collect();
    assert_eq!(
        paths_in_source(source),
        listed,
        "{service}: routes/mod.rs registers other paths than this test lists; update the list and routes/openapi.rs"
    );

    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.clone(), path.clone()));
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                !responses.is_empty(),
                "{service}: {method} {path} has no responses"
            );
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if secured {
                for status in ["401", "403"] {
                    // GET /api/orders/{order_no} answers another buyer's order with 404, not 403.
                    if status == "403" && method == "get" && path == "/api/orders/{order_no}" {
                        continue;
                    }
                    assert!(
                        responses.contains_key(status),
                        "{service}: {method} {path} needs a token but documents no {status}"
                    );
                }
            }
            if let Some(body) = operation.get("requestBody") {
                assert!(
                    body["content"]["application/json"].is_object(),
                    "{service}: {method} {path}: {body}"
                );
            }
        }
    }
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "{service}: routes not in the document: {undocumented:?}; documented but not routed: {unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_documents_list_every_route() {
    let app = TestApp::spawn().await;
    let orders = document(&app.orders).await;
    let stock = document(&app.stock).await;
    check("order-service", &orders, ORDER_ROUTES, ORDER_ROUTES_SOURCE);
    check("stock-service", &stock, STOCK_ROUTES, STOCK_ROUTES_SOURCE);

    // Public operations need no token; the ones of the README's table do.
    let public = |doc: &Value, method: &str, path: &str| {
        doc["paths"][path][method]["security"]
            .as_array()
            .is_none_or(Vec::is_empty)
    };
    assert!(public(&orders, "get", "/api/sales/{product_id}"));
    assert!(public(&orders, "post", "/api/auth/dev-token"));
    assert!(!public(&orders, "post", "/api/orders"));
    assert!(!public(&orders, "put", "/api/sales/{product_id}"));
    assert!(public(&stock, "get", "/api/stock/{product_id}"));
    assert!(!public(&stock, "put", "/api/stock/{product_id}"));
    // POST /api/orders: Order-Token required, Idempotency-Key optional.
    let headers: Vec<(String, bool)> = orders["paths"]["/api/orders"]["post"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == "header")
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["required"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert!(
        headers.contains(&("Order-Token".into(), true)),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("Idempotency-Key".into(), false)),
        "{headers:?}"
    );
    app.stop().await;
}
