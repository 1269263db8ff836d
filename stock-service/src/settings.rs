//! stock-service settings (see `common::settings::load` for the layering).

use common::auth::AuthSettings;
use common::settings::{DatabaseSettings, HttpSettings, LogSettings, MqSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub mq: MqSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub consumer: ConsumerSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    pub group: String,
    /// Messages consumed at once.
    pub threads: u32,
    /// Redeliveries before a message goes to the group's DLQ (`%DLQ%<group>`).
    pub max_reconsume_times: i32,
    /// Times an order short of stock is redelivered (10 s, then 30 s apart)
    /// before it is recorded INSUFFICIENT: gives a cancellation of another
    /// order, already handed back in Redis, time to restore the DB stock.
    pub insufficient_retries: i32,
    /// Producer group of the StockInsufficient messages sent to order-service.
    pub events_producer_group: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8092),
            database: DatabaseSettings::local("seckill_stock"),
            mq: MqSettings::default(),
            log: LogSettings::default(),
            auth: AuthSettings::default(),
            consumer: ConsumerSettings {
                group: common::messages::STOCK_CONSUMER_GROUP.into(),
                threads: 16,
                max_reconsume_times: 16,
                insufficient_retries: 1,
                events_producer_group: common::messages::STOCK_EVENTS_PRODUCER_GROUP.into(),
            },
        }
    }
}
