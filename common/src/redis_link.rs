//! The one Redis connection a service shares, following the master through
//! Redis Sentinel when `redis.sentinels` is set (else a plain connection to
//! `redis.url`).
//!
//! [`RedisLink`] is a `ConnectionLike`, so commands, pipelines and scripts run
//! on it as on a connection. With Sentinel, [`RedisLink::master_moved`] asks
//! the sentinels where the master is; the owner (order-service's admission
//! keeper) connects to a new master, closes what must be closed there, and
//! only then [`RedisLink::switch_to`] it — so no request is served from a
//! promoted replica that may have missed the last writes before the owner
//! said so.
//!
//! A thread that runs a single-threaded runtime (each actix worker) opens a
//! connection of its own to the master in use, so its Redis calls are written
//! and answered on that thread instead of being handed to the connection's
//! driver on another thread and back: see [`RedisLink::connection`].

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::settings::RedisSettings;

/// Where the Redis master is (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAddr(pub String);

impl std::fmt::Display for MasterAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Current {
    connection: ConnectionManager,
    client: redis::Client,
    master: MasterAddr,
    /// The master's `run_id` when last seen: a new one means it restarted.
    run_id: Option<String>,
}

struct Shared {
    settings: RedisSettings,
    /// `settings.sentinels`, parsed once.
    sentinels: Vec<String>,
    current: RwLock<Current>,
    /// Bumped (under `current`'s write lock) by every [`RedisLink::switch_to`]:
    /// a thread's own connection opened before is not used after.
    generation: AtomicU64,
}

/// A thread's own connection to one link's master.
struct Own {
    link: Weak<Shared>,
    generation: u64,
    state: OwnState,
}

enum OwnState {
    Opening,
    Open(ConnectionManager),
    /// Opening failed: the shared connection serves until then.
    FailedUntil(Instant),
}

thread_local! {
    /// This thread's own connections, one per link (see [`RedisLink::connection`]).
    static OWN: RefCell<Vec<Own>> = const { RefCell::new(Vec::new()) };
}

/// What a thread's table says for a call: use its own connection, use the
/// shared one (its own is opening, or failed a moment ago), or start opening.
enum Lookup {
    Use(ConnectionManager),
    Shared,
    Open,
}

/// How long a thread uses the shared connection after failing to open its own.
const OWN_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct RedisLink {
    shared: Arc<Shared>,
}

impl RedisLink {
    /// Connects to the master (asking the sentinels first when configured).
    pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Self> {
        let sentinels = settings.sentinel_addrs();
        let (master, client, mut connection) = if sentinels.is_empty() {
            let master = MasterAddr(host_of(&settings.url));
            let (client, connection) = open(settings, &master).await?;
            (master, client, connection)
        } else {
            // The sentinels may name a node that is not (yet, or any more) a
            // master, e.g. right after the whole cluster restarted: wait for one.
            let started = std::time::Instant::now();
            loop {
                let master = ask_sentinels(&sentinels, &settings.master_name)
                    .await
                    .context("asking the Redis sentinels for the master")?;
                let (client, mut connection) = open(settings, &master).await?;
                if is_master(&mut connection).await {
                    break (master, client, connection);
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "the sentinels name {master} as the master, but it is a replica"
                );
                tracing::warn!(%master, "the sentinels' master is a replica; asking again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let run_id = run_id_of(&mut connection).await;
        Ok(Self {
            shared: Arc::new(Shared {
                settings: settings.clone(),
                sentinels,
                current: RwLock::new(Current {
                    connection,
                    client,
                    master,
                    run_id,
                }),
                generation: AtomicU64::new(0),
            }),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Current) -> T) -> T {
        f(&self
            .shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner()))
    }

    /// The master in use.
    pub fn master(&self) -> MasterAddr {
        self.read(|c| c.master.clone())
    }

    /// A client for the master in use (pub/sub opens its own connections).
    pub fn client(&self) -> redis::Client {
        self.read(|c| c.client.clone())
    }

    /// The master the sentinels name now, when it is not the one in use;
    /// `None` without Sentinel, or when no sentinel answered.
    pub async fn master_moved(&self) -> Option<MasterAddr> {
        let sentinels = &self.shared.sentinels;
        if sentinels.is_empty() {
            return None;
        }
        match ask_sentinels(sentinels, &self.shared.settings.master_name).await {
            Ok(master) if master != self.master() => Some(master),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(%err, "no Redis sentinel answered; keeping the current master");
                None
            }
        }
    }

    /// A connection to `master` that is not in use yet (see [`Self::switch_to`]).
    pub async fn connect_to(
        &self,
        master: &MasterAddr,
    ) -> anyhow::Result<(redis::Client, ConnectionManager)> {
        let (client, mut connection) = open(&self.shared.settings, master).await?;
        anyhow::ensure!(
            is_master(&mut connection).await,
            "{master} does not say it is a master (yet)"
        );
        Ok((client, connection))
    }

    /// From now on every command goes to `master`.
    pub fn switch_to(
        &self,
        master: MasterAddr,
        (client, connection): (redis::Client, ConnectionManager),
    ) {
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        tracing::warn!(from = %current.master, to = %master, "Redis master changed: now using the new one");
        *current = Current {
            connection,
            client,
            master,
            run_id: None,
        };
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the master restarted since last asked (its `run_id` changed),
    /// e.g. a Redis that came back with a stale snapshot (an RDB file left by
    /// a replication sync, or persistence turned on): what it holds cannot be
    /// trusted. The first answer after a switch only records the run id.
    pub async fn restarted(&self) -> bool {
        let mut connection = self.connection();
        let Some(now) = run_id_of(&mut connection).await else {
            return false;
        };
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match current.run_id.replace(now.clone()) {
            Some(before) if before != now => {
                tracing::warn!(%before, %now, master = %current.master, "the Redis master restarted");
                true
            }
            _ => false,
        }
    }

    /// The connection a command goes out on: this thread's own when it runs a
    /// single-threaded runtime (whose tasks never move to another thread, so
    /// the connection's driver runs here too) and has one open to the master
    /// in use; else the shared one. The first call on such a thread starts
    /// opening its own in the background and is served by the shared one.
    fn connection(&self) -> ConnectionManager {
        self.own_connection()
            .unwrap_or_else(|| self.read(|c| c.connection.clone()))
    }

    fn own_connection(&self) -> Option<ConnectionManager> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        let generation = self.shared.generation.load(Ordering::Acquire);
        // Found by address: no reference count is touched on the hot path.
        let this = Arc::as_ptr(&self.shared);
        let lookup = OWN.with_borrow_mut(|own| {
            match own.iter_mut().find(|o| o.link.as_ptr() == this) {
                Some(o) if o.generation == generation => match &o.state {
                    OwnState::Open(connection) => return Lookup::Use(connection.clone()),
                    OwnState::FailedUntil(until) if Instant::now() >= *until => {
                        o.state = OwnState::Opening;
                    }
                    OwnState::Opening | OwnState::FailedUntil(_) => return Lookup::Shared,
                },
                // Opened before a switch: dropped, and one to the new master opened.
                Some(o) => {
                    o.generation = generation;
                    o.state = OwnState::Opening;
                }
                None => {
                    own.retain(|o| o.link.strong_count() > 0);
                    own.push(Own {
                        link: Arc::downgrade(&self.shared),
                        generation,
                        state: OwnState::Opening,
                    });
                }
            }
            Lookup::Open
        });
        match lookup {
            Lookup::Use(connection) => Some(connection),
            Lookup::Open => {
                self.open_own(generation, &runtime);
                None
            }
            Lookup::Shared => None,
        }
    }

    /// Opens this thread's own connection to the master of `generation`, on
    /// this thread's runtime (so its task, and the connection's driver, run
    /// here), and records it — or when it failed.
    fn open_own(&self, generation: u64, runtime: &tokio::runtime::Handle) {
        let link = Arc::downgrade(&self.shared);
        // Read under the lock: the client of the generation marked, or none
        // when a switch came between (the next call marks the new one).
        let client = self.read(|c| {
            (self.shared.generation.load(Ordering::Acquire) == generation).then(|| c.client.clone())
        });
        let record = move |state: OwnState| {
            OWN.with_borrow_mut(|own| {
                if let Some(o) = own
                    .iter_mut()
                    .find(|o| o.link.ptr_eq(&link) && o.generation == generation)
                {
                    o.state = state;
                }
            })
        };
        let Some(client) = client else {
            record(OwnState::FailedUntil(Instant::now()));
            return;
        };
        runtime.spawn(async move {
            let opened =
                tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager()).await;
            record(match opened {
                Ok(Ok(connection)) => OwnState::Open(connection),
                Ok(Err(err)) => {
                    tracing::warn!(%err, "opening this thread's own Redis connection; the shared one serves meanwhile");
                    OwnState::FailedUntil(Instant::now() + OWN_RETRY)
                }
                Err(_) => OwnState::FailedUntil(Instant::now() + OWN_RETRY),
            });
        });
    }
}

impl ConnectionLike for RedisLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut connection = self.connection();
        Box::pin(async move { connection.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut connection = self.connection();
        Box::pin(async move { connection.req_packed_commands(cmd, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        self.read(|c| c.connection.get_db())
    }
}

/// `host:port` of a `redis://[user:pass@]host:port[/db]` URL.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// `settings.url` with its host replaced by `master` (credentials and db kept).
fn url_for(url: &str, master: &MasterAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), rest),
    };
    let path = rest
        .split_once('/')
        .map_or(String::new(), |(_, p)| format!("/{p}"));
    format!("{scheme}://{credentials}{master}{path}")
}

async fn open(
    settings: &RedisSettings,
    master: &MasterAddr,
) -> anyhow::Result<(redis::Client, ConnectionManager)> {
    let client =
        redis::Client::open(url_for(&settings.url, master)).context("parsing the Redis URL")?;
    let connection = client
        .get_connection_manager()
        .await
        .with_context(|| format!("connecting to Redis at {master}"))?;
    Ok((client, connection))
}

/// The node's `run_id` (new on every start); `None` when it cannot be read.
async fn run_id_of(connection: &mut ConnectionManager) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(connection)
        .await
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
}

/// Whether the node says it is a master (`ROLE`), not a replica.
async fn is_master(connection: &mut ConnectionManager) -> bool {
    match redis::cmd("ROLE")
        .query_async::<Vec<redis::Value>>(connection)
        .await
    {
        Ok(role) => match role.first() {
            Some(redis::Value::BulkString(r)) => r == b"master",
            Some(redis::Value::SimpleString(r)) => r == "master",
            _ => false,
        },
        Err(err) => {
            tracing::warn!(%err, "ROLE failed");
            false
        }
    }
}

/// The master's address from the first sentinel that knows it.
async fn ask_sentinels(sentinels: &[String], name: &str) -> anyhow::Result<MasterAddr> {
    let mut last_error = None;
    for sentinel in sentinels {
        let asked = async {
            let client = redis::Client::open(format!("redis://{sentinel}"))?;
            let mut connection = tokio::time::timeout(
                Duration::from_secs(1),
                client.get_multiplexed_async_connection(),
            )
            .await
            .map_err(|_| anyhow::anyhow!("no answer within 1 s"))??;
            let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(name)
                .query_async(&mut connection)
                .await?;
            answer
                .map(|(host, port)| MasterAddr(format!("{host}:{port}")))
                .ok_or_else(|| anyhow::anyhow!("sentinel {sentinel} does not know master {name}"))
        };
        match asked.await {
            Ok(master) => return Ok(master),
            Err(err) => last_error = Some(err.context(format!("sentinel {sentinel}"))),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no sentinel configured")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_master_keeps_the_urls_credentials_and_database() {
        let master = MasterAddr("redis-replica:6379".into());
        assert_eq!(
            url_for("redis://:pw@redis-master:6379/2", &master),
            "redis://:pw@redis-replica:6379/2"
        );
        assert_eq!(
            url_for("redis://127.0.0.1:6379", &master),
            "redis://redis-replica:6379"
        );
        assert_eq!(host_of("redis://u:p@h:1/0"), "h:1");
        assert_eq!(host_of("redis://h:1"), "h:1");
    }
}
