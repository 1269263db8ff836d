//! Test harness for the end-to-end tests: every test gets its own databases,
//! topic and groups (so tests run in parallel), starts the real services
//! in-process on port 0 — or as real processes, to kill them — and talks to
//! them over HTTP, the broker and the databases. Nothing is mocked.

pub mod app;
pub mod auth;
pub mod broker;
pub mod cluster;
pub mod db;
pub mod invariants;
pub mod services;

use std::future::Future;
use std::time::{Duration, Instant};

/// Names no other test uses.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub id: String,
    pub order_db: String,
    pub stock_db: String,
    pub topic: String,
    pub stock_topic: String,
    pub producer_group: String,
    pub consumer_group: String,
    pub redis_prefix: String,
    pub namesrv_addr: String,
    pub broker_addr: String,
}

impl TestEnv {
    pub fn new() -> Self {
        init_logs();
        let id = uuid::Uuid::now_v7().simple().to_string()[20..].to_string();
        Self {
            order_db: format!("seckill_t_{id}_order"),
            stock_db: format!("seckill_t_{id}_stock"),
            topic: format!("seckill_t_{id}"),
            stock_topic: format!("seckill_t_{id}_stock_events"),
            producer_group: format!("seckill_t_{id}_tx"),
            consumer_group: format!("seckill_t_{id}_stock"),
            redis_prefix: format!("seckill_t_{id}"),
            namesrv_addr: std::env::var("SECKILL_NAMESRV_ADDR")
                .unwrap_or_else(|_| "127.0.0.1:9876".into()),
            broker_addr: std::env::var("SECKILL_BROKER_ADDR")
                .unwrap_or_else(|_| "127.0.0.1:10911".into()),
            id,
        }
    }

    pub fn mq_settings(&self) -> common::settings::MqSettings {
        common::settings::MqSettings {
            namesrv_addr: self.namesrv_addr.clone(),
            broker_addr: self.broker_addr.clone(),
            order_topic: self.topic.clone(),
            stock_topic: self.stock_topic.clone(),
            ..Default::default()
        }
    }
}

impl TestEnv {
    /// Deletes this test's Redis keys, as a Redis restart or FLUSHALL would
    /// (without touching other tests' keys).
    pub async fn flush_redis(&self) {
        let client = redis::Client::open("redis://127.0.0.1:6379").expect("redis url");
        let mut redis = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.redis_prefix))
            .query_async(&mut redis)
            .await
            .expect("KEYS");
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut redis)
                .await
                .expect("DEL");
        }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// Logs go nowhere unless `TEST_LOG` is set (then to stdout, pretty).
pub fn init_logs() {
    let settings = common::settings::LogSettings {
        format: common::settings::LogFormat::Pretty,
        level: "info,rocketmq=warn,rocketmq_client_rust=warn".into(),
    };
    if std::env::var_os("TEST_LOG").is_some() {
        common::telemetry::init_subscriber(&settings, std::io::stdout);
    } else {
        common::telemetry::init_subscriber(&settings, std::io::sink);
    }
}

/// An `OrderCreated` with fresh ids, as order-service would send it.
pub fn order_message(user: i64, product: i64, count: i64) -> common::messages::OrderCreated {
    use common::domain::{ProductId, Quantity, UserId};
    order_service::domain::NewOrder {
        user_id: UserId::parse(user).expect("user id"),
        product_id: ProductId::parse(product).expect("product id"),
        count: Quantity::parse(count, Quantity::HARD_MAX).expect("count"),
    }
    .into_message()
}

/// Polls `check` until it yields `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
