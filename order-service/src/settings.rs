//! order-service settings (see `common::settings::load` for the layering).

use common::auth::AuthSettings;
use common::settings::{DatabaseSettings, HttpSettings, LogSettings, MqSettings, RedisSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub mq: MqSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub orders: OrderRules,
    pub group_commit: GroupCommitSettings,
    pub admission: AdmissionSettings,
    pub rate_limit: RateLimitSettings,
    pub lifecycle: LifecycleSettings,
    pub dead_letters: DeadLetterSettings,
    pub redelivery: RedeliverySettings,
    pub audit: AuditSettings,
}

/// The consistency auditor (see `audit`). It judges a committed fact only
/// once it is older than `redelivery.after_secs` (younger ones are in
/// flight), and reports the lag of the consumer groups in
/// `dead_letters.watched_groups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Consumer group the auditor reads the broker with (never a service's
    /// own group: it would join that group).
    pub group: String,
    /// Most messages one audit reads from the broker, and most rows it reads
    /// from each database; past it the audit says it is incomplete.
    pub max_messages: u64,
    /// How long one audit may take before it gives up.
    pub timeout_secs: u64,
}

/// The safety net for committed messages that never reached stock-service
/// (see `redelivery`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeliverySettings {
    /// A committed message stock-service has not applied this long after it
    /// committed is sent again (and named by reconciliation).
    pub after_secs: u64,
    /// How often the pass runs.
    pub interval_ms: u64,
    /// Producer group of the resent (plain) messages.
    pub producer_group: String,
}

impl RedeliverySettings {
    pub fn after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.after_secs)
    }
}

/// Which stuck messages order-service watches (see `dead_letters`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSettings {
    /// Consumer group of the watcher itself.
    pub group: String,
    /// Consumer groups whose DLQ (`%DLQ%<group>`) is watched.
    pub watched_groups: Vec<String>,
    /// Also watch half messages the broker discarded after too many check-backs.
    pub watch_discarded_transactions: bool,
}

/// After an order is created: its payment time, the timeout messages and the
/// sweeper that backs them up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSettings {
    /// A NEW order not paid within this is cancelled.
    pub payment_timeout_secs: u64,
    /// How often the sweeper cancels overdue orders (a lost or early timeout
    /// message) and returns reservations a stop left behind.
    pub sweep_interval_ms: u64,
    /// Consumer group of order-service on its timeouts and stock-service's events.
    pub events_group: String,
    /// Producer group of the delayed timeout messages.
    pub timeout_producer_group: String,
    /// A Redis reservation this old with no order behind it (its process died
    /// before the half message) is claimed as rolled back and returned by the sweeper.
    pub orphan_reservation_secs: u64,
}

impl LifecycleSettings {
    pub fn payment_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.payment_timeout_secs)
    }
}

/// Per-instance request limits on `POST /api/orders`; 0 turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub per_user_per_sec: u32,
    pub per_user_burst: u32,
    /// Off by default: behind a gateway or NAT many buyers share an address.
    pub per_address_per_sec: u32,
    pub per_address_burst: u32,
    /// Take the client address from `X-Forwarded-For`/`Forwarded` (only behind
    /// a gateway that sets them), else from the TCP peer.
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionSettings {
    /// stock-service, which holds the stock of each sale.
    pub stock_service_url: String,
    /// Orders one user may hold per product when a sale does not say.
    pub default_per_user_limit: u32,
    /// How long a product seen sold out is refused from memory before Redis is
    /// asked again (a restock clears it at once).
    pub sold_out_ttl_ms: u64,
    /// How often each instance checks that the admission state is present.
    pub ready_check_ms: u64,
    /// How long a rebuild waits for stock-service to apply the committed orders.
    pub rebuild_quiet_timeout_secs: u64,
}

/// Group commit (see `order_tx::group`): orders admitted together are
/// recorded by one local transaction and one transactional message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCommitSettings {
    /// Most orders in one batch; 1 sends every order alone.
    pub max_batch: usize,
    /// Transactional sends (batches or single orders) in flight at once.
    pub in_flight: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRules {
    /// Most items one order may take.
    pub max_count_per_order: u32,
    /// Producer group of the transactional producer; every instance must share it,
    /// because the broker sends check-backs to any live member of the group.
    pub producer_group: String,
    /// `POST /api/orders` needs a one-time `Order-Token` from
    /// `POST /api/sales/{id}/order-token` (the hidden order path).
    pub require_order_token: bool,
    /// How long an order token stays valid.
    pub order_token_ttl_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8091),
            database: DatabaseSettings::local("seckill_order"),
            redis: RedisSettings::default(),
            mq: MqSettings::default(),
            log: LogSettings::default(),
            auth: AuthSettings::default(),
            orders: OrderRules {
                max_count_per_order: 5,
                producer_group: common::messages::ORDER_TX_PRODUCER_GROUP.into(),
                require_order_token: true,
                order_token_ttl_ms: 60_000,
            },
            group_commit: GroupCommitSettings {
                max_batch: 64,
                in_flight: 4,
            },
            admission: AdmissionSettings {
                stock_service_url: "http://127.0.0.1:8092".into(),
                default_per_user_limit: 1,
                sold_out_ttl_ms: 1_000,
                ready_check_ms: 1_000,
                rebuild_quiet_timeout_secs: 30,
            },
            rate_limit: RateLimitSettings {
                per_user_per_sec: 20,
                per_user_burst: 40,
                per_address_per_sec: 0,
                per_address_burst: 0,
                trust_forwarded_for: false,
            },
            lifecycle: LifecycleSettings {
                payment_timeout_secs: 15 * 60,
                sweep_interval_ms: 30_000,
                events_group: common::messages::ORDER_EVENTS_CONSUMER_GROUP.into(),
                timeout_producer_group: common::messages::ORDER_TIMEOUT_PRODUCER_GROUP.into(),
                orphan_reservation_secs: 60,
            },
            dead_letters: DeadLetterSettings {
                group: common::messages::DEAD_LETTER_WATCH_GROUP.into(),
                watched_groups: vec![
                    common::messages::STOCK_CONSUMER_GROUP.into(),
                    common::messages::ORDER_EVENTS_CONSUMER_GROUP.into(),
                ],
                watch_discarded_transactions: true,
            },
            redelivery: RedeliverySettings {
                after_secs: 30,
                interval_ms: 5_000,
                producer_group: "seckill_order_redelivery_producer".into(),
            },
            audit: AuditSettings {
                group: "seckill_auditor".into(),
                max_messages: 200_000,
                timeout_secs: 120,
            },
        }
    }
}
