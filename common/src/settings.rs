//! Settings blocks both services embed, and the layered loader:
//! built-in defaults → an optional YAML file → `APP_...` environment variables
//! (`APP_HTTP__PORT=9000` sets `http.port`).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Loads `T` for `service`. The file is `$APP_CONFIG_FILE` when set (and then it
/// must exist), otherwise `config/<service>.yaml` when present.
pub fn load<T>(service: &str) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    match std::env::var_os("APP_CONFIG_FILE") {
        Some(path) => load_with(Some(&PathBuf::from(path)), true),
        None => load_with(
            Some(&PathBuf::from("config").join(format!("{service}.yaml"))),
            false,
        ),
    }
    .with_context(|| format!("loading settings of {service}"))
}

/// Defaults of `T`, then `file` (if given; an error if `required` and absent),
/// then `APP_...` environment variables.
pub fn load_with<T>(file: Option<&Path>, required: bool) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    load_with_env(file, required, None)
}

/// [`load_with`], reading the `APP_...` variables from `env` instead of the
/// process environment when given (for tests).
pub fn load_with_env<T>(
    file: Option<&Path>,
    required: bool,
    env: Option<std::collections::HashMap<String, String>>,
) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    let defaults = config::Config::try_from(&T::default()).context("encoding default settings")?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(file) = file {
        builder = builder.add_source(config::File::from(file).required(required));
    }
    Ok(builder
        .add_source(
            config::Environment::with_prefix("APP")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                // The one list setting: APP_DEAD_LETTERS__WATCHED_GROUPS=a,b
                .list_separator(",")
                .with_list_parse_key("dead_letters.watched_groups")
                .source(env),
        )
        .build()
        .and_then(config::Config::try_deserialize)?)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// How long in-flight requests get to finish on shutdown.
    pub shutdown_timeout_secs: u64,
}

impl HttpSettings {
    pub fn on_port(port: u16) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            shutdown_timeout_secs: 10,
        }
    }
}

/// Where a service's own database lives. The server URL carries no database
/// name: the service creates `name` when it is missing.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `mysql://user:password@host:port`, without a database name.
    pub server_url: String,
    pub name: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

impl DatabaseSettings {
    pub fn local(name: &str) -> Self {
        Self {
            server_url: "mysql://root@127.0.0.1:3306".into(),
            name: name.into(),
            max_connections: 32,
            acquire_timeout_ms: 5_000,
        }
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", self.server_url.trim_end_matches('/'), self.name)
    }

    /// The server URL with any password replaced, for logs.
    pub fn redacted_server_url(&self) -> String {
        redact_password(&self.server_url)
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("server_url", &self.redacted_server_url())
            .field("name", &self.name)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// The master (or, with `sentinels`, only its credentials and database).
    pub url: String,
    /// Prefix of every key this deployment writes (tests use their own).
    pub key_prefix: String,
    /// Redis Sentinel addresses, `host:port;host:port`; empty: no Sentinel,
    /// `url` is the master. With them the master is asked for and followed.
    pub sentinels: String,
    /// The master's name under Sentinel.
    pub master_name: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "seckill".into(),
            sentinels: String::new(),
            master_name: "seckill".into(),
        }
    }
}

impl RedisSettings {
    pub fn sentinel_addrs(&self) -> Vec<String> {
        split_addrs(&self.sentinels)
    }
}

/// `a:1;b:2` (also `,`-separated, spaces ignored) as a list; empty parts dropped.
pub fn split_addrs(raw: &str) -> Vec<String> {
    raw.split([';', ','])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_password(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .finish()
    }
}

/// RocketMQ client settings shared by producers and consumers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqSettings {
    /// One name server or several, `a:9876;b:9876`.
    pub namesrv_addr: String,
    /// The master broker(s), `a:10911;b:10911`: topics are created on each,
    /// `/readyz` reports each (clients learn routes from the name server).
    pub broker_addr: String,
    pub order_topic: String,
    /// stock-service's events for order-service (insufficient stock).
    pub stock_topic: String,
    /// Queues created for a topic this service sets up.
    pub topic_queues: u32,
    /// Listener calls (local transactions, check-backs, consumption) that may
    /// run at once on the client's blocking lane. The client's default (4 on
    /// two cores) silently turns sends into UNKNOWN under load.
    pub listener_concurrency: usize,
    /// Listener calls that may wait for a slot before being refused.
    pub listener_queue_depth: usize,
    pub send_timeout_ms: u32,
}

impl MqSettings {
    pub fn broker_addrs(&self) -> Vec<String> {
        split_addrs(&self.broker_addr)
    }
}

impl Default for MqSettings {
    fn default() -> Self {
        Self {
            namesrv_addr: "127.0.0.1:9876".into(),
            broker_addr: "127.0.0.1:10911".into(),
            order_topic: crate::messages::ORDER_TOPIC.into(),
            stock_topic: crate::messages::STOCK_TOPIC.into(),
            topic_queues: 4,
            listener_concurrency: 64,
            listener_queue_depth: 1024,
            send_timeout_ms: 3_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_debug_output() {
        let mut db = DatabaseSettings::local("x");
        db.server_url = "mysql://app:s3cret@db:3306".into();
        let shown = format!("{db:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app:***@db:3306"), "{shown}");
        assert_eq!(db.database_url(), "mysql://app:s3cret@db:3306/x");
    }
}
