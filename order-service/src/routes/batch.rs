//! `POST /api/admin/batch` starts a batch purchase (see [`crate::batch`]);
//! `GET /api/admin/batch/{id}` follows it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use common::auth::Admin;
use common::http::{JsonFields, error_response, invalid_field};

use crate::batch::BatchPlan;
use crate::state::AppState;

/// `{"buyers": 1..=20000, "concurrency": 1..=256, "stock": 0..=1000000}` →
/// 202 with the batch's first status; 422 naming a bad field.
pub async fn start_batch(
    _admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> HttpResponse {
    let plan = JsonFields::of(&body).and_then(|fields| {
        BatchPlan::parse(
            fields.int("buyers")?,
            fields.int("concurrency")?,
            fields.int("stock")?,
        )
    });
    match plan {
        Ok(plan) => {
            let status = state.batches.start(plan);
            HttpResponse::Accepted()
                .insert_header(("Location", format!("/api/admin/batch/{}", status.id)))
                .json(status)
        }
        Err(err) => invalid_field(&err),
    }
}

pub async fn get_batch(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    match state.batches.get(&path) {
        Some(status) => HttpResponse::Ok().json(status),
        None => error_response(
            StatusCode::NOT_FOUND,
            "BATCH_NOT_FOUND",
            format!("no batch {} on this instance", path.as_str()),
        ),
    }
}
