//! `/readyz`: ready only when the database, Redis and the broker answer.

use actix_web::{HttpResponse, web};
use common::http::{probe, readiness_response};

use crate::startup::AppState;

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut redis = state.redis.clone();
    let checks = vec![
        probe("database", state.db.ping()).await,
        probe("redis", async move {
            redis::cmd("PING")
                .query_async::<String>(&mut redis)
                .await
                .map(drop)
        })
        .await,
        probe("broker", common::mq::probe_broker(&state.mq)).await,
    ];
    readiness_response(checks)
}
