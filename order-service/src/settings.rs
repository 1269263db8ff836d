//! order-service settings (see `common::settings::load` for the layering).

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
    pub orders: OrderRules,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRules {
    /// Most items one order may take.
    pub max_count_per_order: u32,
    /// Producer group of the transactional producer; every instance must share it,
    /// because the broker sends check-backs to any live member of the group.
    pub producer_group: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8091),
            database: DatabaseSettings::local("seckill_order"),
            redis: RedisSettings::default(),
            mq: MqSettings::default(),
            log: LogSettings::default(),
            orders: OrderRules {
                max_count_per_order: 5,
                producer_group: common::messages::ORDER_TX_PRODUCER_GROUP.into(),
            },
        }
    }
}
