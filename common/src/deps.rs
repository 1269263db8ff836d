//! The connections each service opens once at start-up and shares: its DB pool
//! (database created and migrated), Redis (order-service only), the RocketMQ
//! client runtime with the order topic in place. `/readyz` probes the same.

use actix_web::{HttpResponse, web};
use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::http::{probe, readiness_response};
use crate::mq::MqRuntime;
use crate::settings::{DatabaseSettings, MqSettings, RedisSettings};

/// Shared by the handlers (as `web::Data<Dependencies>`).
#[derive(Clone)]
pub struct Dependencies {
    pub db: DatabaseConnection,
    /// `None` for a service that does not use Redis (stock-service).
    pub redis: Option<crate::redis_link::RedisLink>,
    pub mq: MqSettings,
}

impl Dependencies {
    /// Opens everything; the returned runtime owns the service's producers/consumers.
    pub async fn connect(
        service: &str,
        database: &DatabaseSettings,
        schema: &str,
        redis: Option<&RedisSettings>,
        mq: &MqSettings,
    ) -> anyhow::Result<(Self, MqRuntime)> {
        let db = crate::db::connect_and_migrate(database, schema)
            .await
            .with_context(|| format!("preparing the database {}", database.name))?;
        let redis = match redis {
            Some(settings) => Some(crate::redis_link::RedisLink::connect(settings).await?),
            None => None,
        };
        let runtime = MqRuntime::start(service, mq)?;
        for topic in [&mq.order_topic, &mq.stock_topic] {
            crate::mq::ensure_topic(&runtime, mq, topic)
                .await
                .with_context(|| format!("creating the topic {topic} (is the broker up?)"))?;
        }
        Ok((
            Self {
                db,
                redis,
                mq: mq.clone(),
            },
            runtime,
        ))
    }
}

/// `GET /readyz`: 200 only when the database, Redis and the broker answer.
pub async fn readyz(deps: web::Data<Dependencies>) -> HttpResponse {
    readiness_response(dependency_checks(&deps).await)
}

/// The checks of `/readyz`: database, Redis, broker; a service adds its own.
pub async fn dependency_checks(deps: &Dependencies) -> Vec<crate::http::Check> {
    let mut checks = vec![probe("database", deps.db.ping()).await];
    if let Some(redis) = &deps.redis {
        let mut redis = redis.clone();
        checks.push(
            probe("redis", async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut redis)
                    .await
                    .map(drop)
            })
            .await,
        );
    }
    checks.push(
        tokio::time::timeout(
            crate::http::PROBE_TIMEOUT,
            crate::mq::probe_broker(&deps.mq),
        )
        .await
        .unwrap_or_else(|_| crate::http::Check::from_result("broker", Err("timed out"))),
    );
    checks
}
