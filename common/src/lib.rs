//! Shared building blocks of the seckill services.
//!
//! - [`messages`]: the versioned message schemas and the topic/tag/group names
//!   that order-service and stock-service exchange over RocketMQ.
//! - [`domain`]: typed ids and quantities parsed at the edge (`UserId`, `ProductId`,
//!   `Quantity`, `TxNo`, `OrderNo`).
//! - [`auth`]: signed bearer tokens (JWT): checking them, the caller extractors
//!   (`Caller`, `Buyer`, `Admin`), minting them with the service's own key.
//! - [`settings`]: the settings blocks both services use and the layered loader
//!   (defaults → file → `APP_...` environment variables).
//! - [`telemetry`]: tracing subscriber set-up (JSON or pretty).
//! - [`db`]: connecting to MariaDB, creating a service's database and applying its schema.
//! - [`deps`]: the connections a service opens at start-up (DB, Redis, MQ) and `/readyz` over them.
//! - [`mq`]: the RocketMQ client runtime, sized for synchronous listeners, and topic set-up.
//! - [`redis_link`]: the shared Redis connection, following the master through Sentinel.
//! - [`http`]: the JSON error body, JSON extractor errors and the health/readiness probes.
//! - [`openapi`]: what both services' OpenAPI documents share (error body, probes, bearer scheme).
//! - [`ledger`]: the stock invariant (opened = DB stock + sold, nothing oversold).
//! - [`stock_log`]: stock-service's `tx_log` outcomes and rows, as the auditor reads them.
//! - [`shutdown`]: the stop signal both services wait on.

pub mod auth;
pub mod db;
pub mod deps;
pub mod domain;
pub mod http;
pub mod ledger;
pub mod messages;
pub mod metrics;
pub mod mq;
pub mod openapi;
pub mod redis_link;
pub mod settings;
pub mod shutdown;
pub mod stock_log;
pub mod telemetry;
