//! stock-service: applies each committed order to stock exactly once.
//!
//! The path of an order message:
//! 1. [`consumer::OrderConsumer`] receives `OrderCreated` / `OrderBatch` /
//!    `OrderCancelled` from the order topic;
//! 2. [`store::apply_order`] runs one DB transaction: insert the tx_no into
//!    `tx_log` (a duplicate means already applied, or voided by an earlier
//!    cancellation), then deduct the stock only if enough is left, recording
//!    DEDUCTED or INSUFFICIENT (after one retry, for a cancellation in flight);
//!    INSUFFICIENT is reported to order-service (`StockInsufficient`).
//!    [`store::apply_batch`] does the same for a group commit's orders in one
//!    DB transaction, with one stock UPDATE per product;
//! 3. [`store::apply_cancel`] gives a cancelled order's stock back exactly
//!    once, whether its creation was applied already or not;
//! 4. a database failure makes the consumer ask for redelivery, never drop it.
//!
//! [`routes`] serves stock reads, the admin write, stats and `/metrics`
//! ([`metrics`]); [`startup`] wires it together.

pub mod consumer;
pub mod metrics;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;

/// The schema this service applies to its database at start-up.
pub const SCHEMA: &str = include_str!("../../sql/stock_service.sql");
