//! stock-service: applies each committed order to stock exactly once.
//!
//! The path of an order message:
//! 1. [`consumer::OrderConsumer`] receives `OrderCreated` from the order topic;
//! 2. [`store::apply_order`] runs one DB transaction: insert the tx_no into
//!    `tx_log` (a duplicate means already applied), then deduct the stock only
//!    if enough is left, recording DEDUCTED or INSUFFICIENT;
//! 3. a database failure makes the consumer ask for redelivery, never drop it.
//!
//! [`routes`] serves stock reads and the admin write; [`startup`] wires it together.

pub mod consumer;
pub mod metrics;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;

/// The schema this service applies to its database at start-up.
pub const SCHEMA: &str = include_str!("../../sql/stock_service.sql");
