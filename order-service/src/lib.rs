//! order-service: takes orders and ties each one to a RocketMQ transactional message.
//!
//! The order path, from HTTP to the broker:
//! 1. [`routes::orders`] parses `POST /api/orders` into a [`domain::NewOrder`]
//!    and hands it to [`checkout::Checkout`];
//! 2. [`admission::AdmissionGate`] admits it in Redis (stock, per-user limit,
//!    a reservation under its tx_no) or refuses it (sold out, limit, not on sale);
//! 3. [`order_tx`] (the transactional-message protocol, in one module) sends
//!    the `OrderCreated` half message;
//! 4. the broker acknowledges it and the client runs the local transaction of
//!    [`store::record_order`] (order row + `tx_log` row, one DB transaction)
//!    and answers COMMIT or ROLLBACK; one [`order_tx::Outcome`] goes back to
//!    the caller;
//! 5. when the broker never heard the answer it checks back, and the answer
//!    comes from `tx_log` through [`order_tx::settle`], which claims the
//!    tx_no so the answer is final; a rolled-back order's reservation goes back.
//!
//! After creation ([`lifecycle`]): pay (`store::pay_order`), cancel by the
//! buyer or by the payment timeout ([`timeouts`] delayed messages, consumed by
//! [`events`], backed by a sweeper) as a transactional `OrderCancelled` of its
//! own, and compensation when stock-service reports insufficient stock
//! ([`events`] → `FAILED`); every closed order's reservation goes back once.
//!
//! [`dead_letters`] records stuck messages (DLQs, discarded transactions);
//! [`redelivery`] sends again any committed message stock-service has not
//! applied in time (lost or discarded by the broker) and settles dead letters;
//! [`audit`] checks that every committed creation and cancellation is in the
//! broker's order topic and applied once by stock-service, reading the broker
//! itself (half messages and consumer lag too), with reconciliation inside.
//!
//! [`sales`] opens sales (stock via [`stock_client`], the `sales` row, Redis)
//! and rebuilds the admission state ([`admission::rebuild`], per sale) when
//! Redis lost it; [`routes::sales`] is its HTTP face.
//! [`dashboard`] and [`metrics`] feed the dashboard page and `/metrics`;
//! [`batch`] runs the batch purchase of the `/batch` page.
//!
//! Layers, one way: [`routes`] (and [`state`], what the handlers share) →
//! services ([`checkout`], [`sales`], [`lifecycle`], [`batch`], [`dashboard`],
//! [`redelivery`], [`events`], [`audit`]) → [`store`] (the only SQL against `orders`,
//! `sales`, `tx_log`) / [`admission`] / [`order_tx`] /
//! [`stock_client`]. [`startup`] wires it together and stops it (background
//! jobs get a shutdown signal and are awaited); [`settings`] holds its
//! configuration.

pub mod admission;
pub mod audit;
pub mod batch;
pub mod checkout;
pub mod cli;
pub mod dashboard;
pub mod dead_letters;
pub mod domain;
pub mod events;
pub mod idempotency;
pub mod lifecycle;
pub mod metrics;
pub mod order_tx;
pub mod rate_limit;
pub mod redelivery;
pub mod routes;
pub mod sales;
pub mod settings;
pub mod startup;
pub mod state;
pub mod stock_client;
pub mod store;
pub mod timeouts;

/// The schema this service applies to its database at start-up.
pub const SCHEMA: &str = include_str!("../../sql/order_service.sql");
