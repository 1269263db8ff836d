//! Flash-sale admission in Redis: the gate in front of the order transaction.
//!
//! Per product on sale, Redis holds (under `redis.key_prefix`):
//! - `<p>:sale:<id>`       hash `stock` (still admissible), `limit` (orders per user),
//!   `starts_at` / `ends_at` (ms since the epoch, when set: the sale's window);
//! - `<p>:sale:<id>:users` hash user_id → orders held;
//! - `<p>:sale:<id>:resv`  hash tx_no → `user:count:reserved_at_ms`, one entry per
//!   admitted order, so giving it back happens at most once (and the sweeper
//!   can tell an old one whose process died before its half message);
//! - `<p>:otok:<token>`    a one-time order token: `user:product`, expiring
//!   (`orders.order_token_ttl_ms`); issued by [`AdmissionGate::issue_token`],
//!   used up by the admission script when it admits (a refusal leaves it good);
//! - `<p>:ready`           set once the state was seeded from the databases. A Redis
//!   restart or flush removes it, and orders are refused (`SALE_NOT_READY`) until
//!   [`rebuild`] has marked every sale `rebuilding`; each sale then reopens on
//!   its own once rebuilt (`rebuilding` removed from its hash), so lost state can
//!   never admit too many and one sale that cannot be rebuilt blocks only itself
//!   (its hash says why under `blocked`).
//!
//! Admission and release are Lua scripts (one round trip, atomic, called by SHA).
//! A product found sold out is remembered in memory ([`SoldOutFlags`]) so the
//! flood is answered without Redis; a restock or release publishes on
//! `<p>:restock` and every instance forgets the flag.

pub mod rebuild;
pub mod reconcile;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use common::domain::{ProductId, TxNo, UserId};
use common::messages::OrderCreated;
use common::redis_link::RedisLink;
use redis::{RedisError, Script};

use crate::domain::{OrderToken, SaleWindow};
use crate::rate_limit::Bucket;

/// The admission script as Redis runs it (the load tool loads it too).
pub fn admit_script_source() -> String {
    gated(include_str!("admit.lua"))
}

/// A script that decides on a sale, with the shared rate limits
/// (`rate_gate.lua`) and the check of the sale's state and window
/// (`sale_gate.lua`) in front.
fn gated(script: &str) -> String {
    [
        include_str!("rate_gate.lua"),
        include_str!("sale_gate.lua"),
        script,
    ]
    .concat()
}

/// What an order token's key holds: whose it is, for which product.
fn token_value(user: UserId, product: ProductId) -> String {
    format!("{}:{}", user.get(), product.get())
}

/// The key names of one deployment (one prefix).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn ready(&self) -> String {
        format!("{}:ready", self.prefix)
    }

    pub fn sale(&self, product: ProductId) -> String {
        format!("{}:sale:{product}", self.prefix)
    }

    pub fn users(&self, product: ProductId) -> String {
        format!("{}:sale:{product}:users", self.prefix)
    }

    pub fn reservations(&self, product: ProductId) -> String {
        format!("{}:sale:{product}:resv", self.prefix)
    }

    pub fn order_token(&self, token: &OrderToken) -> String {
        format!("{}:otok:{}", self.prefix, token.as_str())
    }

    pub fn restock_channel(&self) -> String {
        format!("{}:restock", self.prefix)
    }

    pub fn rebuild_lock(&self) -> String {
        format!("{}:rebuild-lock", self.prefix)
    }

    pub fn sale_rebuild_lock(&self, product: ProductId) -> String {
        format!("{}:rebuild-lock:{product}", self.prefix)
    }

    /// Adds to `pipe` what writes a sale's window into its hash.
    pub fn set_window(&self, pipe: &mut redis::Pipeline, product: ProductId, window: SaleWindow) {
        for (field, ms) in [
            ("starts_at", window.starts_at_ms()),
            ("ends_at", window.ends_at_ms()),
        ] {
            match ms {
                Some(ms) => pipe.hset(self.sale(product), field, ms).ignore(),
                None => pipe.hdel(self.sale(product), field).ignore(),
            };
        }
    }
}

/// One admitted order's hold on a sale, as the reservations hash stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub user_id: i64,
    pub count: i64,
    /// When it was admitted (ms since the epoch); `None` in entries written
    /// before reservations carried their time.
    pub reserved_at_ms: Option<i64>,
}

impl Reservation {
    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.split(':');
        let user_id = parts.next()?.parse().ok()?;
        let count = parts.next()?.parse().ok()?;
        let reserved_at_ms = match parts.next() {
            Some(ms) => Some(ms.parse().ok()?),
            None => None,
        };
        Some(Self {
            user_id,
            count,
            reserved_at_ms,
        })
    }

    pub fn encode(&self) -> String {
        match self.reserved_at_ms {
            Some(ms) => format!("{}:{}:{ms}", self.user_id, self.count),
            None => format!("{}:{}", self.user_id, self.count),
        }
    }
}

/// Where one sale's admission stands while or after it is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaleState {
    Open,
    /// Closed until its rebuild finishes.
    Rebuilding,
    /// Its rebuild failed (the reason); retried, orders refused meanwhile.
    Blocked(String),
}

/// The answer of the admission script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Reserved; `remaining` is what is left for others.
    Admitted {
        remaining: i64,
    },
    SoldOut,
    LimitExceeded,
    NotOnSale,
    /// Redis lost the admission state; it must be rebuilt first.
    NotReady,
    /// The sale starts in this many milliseconds.
    NotStarted {
        starts_in_ms: i64,
    },
    Ended,
    /// The order token is missing, expired, used or another's.
    TokenInvalid,
    /// Over a shared rate limit: retry after this long.
    RateLimited(Duration),
}

/// What asking for an order token came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    Token(OrderToken),
    /// Why none was issued (never `Admitted` nor `TokenInvalid`).
    Refused(Admission),
}

impl Admission {
    fn from_script(code: i64, n: i64) -> Self {
        match code {
            1 | 0 => Self::Admitted { remaining: n },
            -1 => Self::SoldOut,
            -2 => Self::LimitExceeded,
            -3 => Self::NotReady,
            -5 => Self::NotStarted { starts_in_ms: n },
            -6 => Self::Ended,
            -7 => Self::TokenInvalid,
            -8 => Self::RateLimited(Duration::from_micros(n.max(1) as u64)),
            _ => Self::NotOnSale,
        }
    }
}

/// Products this instance saw sold out, and since when.
#[derive(Debug, Default)]
pub struct SoldOutFlags {
    since: RwLock<HashMap<ProductId, Instant>>,
}

impl SoldOutFlags {
    /// Whether `product` was seen sold out less than `ttl` ago.
    pub fn is_sold_out(&self, product: ProductId, ttl: Duration) -> bool {
        self.since
            .read()
            .map(|flags| flags.get(&product).is_some_and(|t| t.elapsed() < ttl))
            .unwrap_or(false)
    }

    pub fn mark(&self, product: ProductId) {
        if let Ok(mut flags) = self.since.write() {
            flags.insert(product, Instant::now());
        }
    }

    pub fn clear(&self, product: ProductId) {
        if let Ok(mut flags) = self.since.write() {
            flags.remove(&product);
        }
    }
}

/// Admission, release and sale set-up against Redis.
pub struct AdmissionGate {
    redis: RedisLink,
    keys: Keys,
    admit_script: Script,
    release_script: Script,
    hold_script: Script,
    issue_script: Script,
    restore_token_script: Script,
    pub sold_out: SoldOutFlags,
    sold_out_ttl: Duration,
}

impl AdmissionGate {
    pub fn new(redis: RedisLink, keys: Keys, sold_out_ttl: Duration) -> Self {
        Self {
            redis,
            keys,
            admit_script: Script::new(&admit_script_source()),
            release_script: Script::new(include_str!("release.lua")),
            hold_script: Script::new(include_str!("hold.lua")),
            issue_script: Script::new(&gated(include_str!("issue_token.lua"))),
            restore_token_script: Script::new(include_str!("restore_token.lua")),
            sold_out: SoldOutFlags::default(),
            sold_out_ttl,
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn redis(&self) -> RedisLink {
        self.redis.clone()
    }

    /// Whether this instance saw `product` sold out within the sold-out TTL.
    pub fn sold_out_locally(&self, product: ProductId) -> bool {
        self.sold_out.is_sold_out(product, self.sold_out_ttl)
    }

    /// Reserves `order.count` for `order.user_id` under `order.tx_no`, or says
    /// why not; with a `token`, only if it is this buyer's for this product
    /// (used up by the admission; a refused order leaves it good). A product
    /// this instance saw sold out is refused from memory.
    #[tracing::instrument(skip_all, fields(tx_no = %order.tx_no, product_id = %order.product_id))]
    pub async fn admit(
        &self,
        order: &OrderCreated,
        token: Option<&OrderToken>,
    ) -> Result<Admission, RedisError> {
        self.admit_replacing(order, token, None, &[]).await
    }

    /// [`admit`](Self::admit) for the keyed retry of an attempt whose
    /// transaction `replaced` is settled rolled back. That attempt may not
    /// have cleaned up yet (found by the chaos suite's slow link: its retry
    /// was told ORDER_TOKEN_INVALID, or LIMIT_EXCEEDED by its own
    /// reservation): its reservation goes back first (at most once, as that
    /// attempt would give it back), and the token it used up is good for this
    /// order too. The order is first counted against `buckets` (the shared
    /// rate limits), in the same round trip as its admission.
    pub async fn admit_replacing(
        &self,
        order: &OrderCreated,
        token: Option<&OrderToken>,
        replaced: Option<&TxNo>,
        buckets: &[Bucket],
    ) -> Result<Admission, RedisError> {
        if let Some(replaced) = replaced {
            self.release(order.product_id, replaced).await?;
        }
        if self.sold_out_locally(order.product_id) {
            return Ok(Admission::SoldOut);
        }
        let (token_key, expected) = match token {
            Some(token) => (
                self.keys.order_token(token),
                token_value(order.user_id, order.product_id),
            ),
            None => (self.keys.ready(), String::new()),
        };
        let mut invocation = self.admit_script.prepare_invoke();
        invocation
            .key(self.keys.ready())
            .key(self.keys.sale(order.product_id))
            .key(self.keys.users(order.product_id))
            .key(self.keys.reservations(order.product_id))
            .key(token_key)
            .arg(order.user_id.get())
            .arg(order.count.get())
            .arg(order.tx_no.as_str())
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(expected)
            .arg(replaced.map(TxNo::as_str).unwrap_or_default());
        Bucket::add_to(buckets, &mut invocation);
        let (code, stock): (i64, i64) = invocation.invoke_async(&mut self.redis.clone()).await?;
        let admission = Admission::from_script(code, stock);
        if admission == Admission::SoldOut && stock == 0 {
            self.sold_out.mark(order.product_id);
        }
        Ok(admission)
    }

    /// A one-time order token for `user` and `product`, valid for `ttl` —
    /// only while the sale is open, started, not sold out and the buyer under
    /// its limit. A product this instance saw sold out is refused from memory.
    /// The request is first counted against `buckets` (the shared rate
    /// limits), in the same round trip.
    // DEBUG: this runs for every request of a sold-out flood (an INFO span per
    // request cost that path before).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn issue_token(
        &self,
        user: UserId,
        product: ProductId,
        ttl: Duration,
        buckets: &[Bucket],
    ) -> Result<Issued, RedisError> {
        if self.sold_out_locally(product) {
            return Ok(Issued::Refused(Admission::SoldOut));
        }
        let token = OrderToken::generate();
        let mut invocation = self.issue_script.prepare_invoke();
        invocation
            .key(self.keys.ready())
            .key(self.keys.sale(product))
            .key(self.keys.users(product))
            .key(self.keys.order_token(&token))
            .arg(user.get())
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(ttl.as_millis().max(1) as u64)
            .arg(token_value(user, product));
        Bucket::add_to(buckets, &mut invocation);
        let (code, n): (i64, i64) = invocation.invoke_async(&mut self.redis.clone()).await?;
        if code == 1 {
            return Ok(Issued::Token(token));
        }
        let refused = Admission::from_script(code, n);
        if refused == Admission::SoldOut {
            self.sold_out.mark(product);
        }
        Ok(Issued::Refused(refused))
    }

    /// Makes `token` good again for `user` and `product`, for `ttl`, after
    /// the order it was used up by placed nothing (the broker failed and the
    /// reservation went back): the client's retry, which the `503` invites,
    /// carries the same token. Only a token still used up by `tx_no` (or gone
    /// with Redis) is restored: one a retry has taken since stays used.
    #[tracing::instrument(skip(self, token))]
    pub async fn restore_token(
        &self,
        token: &OrderToken,
        user: UserId,
        product: ProductId,
        tx_no: &TxNo,
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let value = token_value(user, product);
        self.restore_token_script
            .key(self.keys.order_token(token))
            .arg(format!("used:{value}:{tx_no}"))
            .arg(value)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async::<()>(&mut self.redis.clone())
            .await
    }

    /// Gives back the reservation of `tx_no` (at most once, however often called).
    /// Call only once the transaction is known to be rolled back.
    #[tracing::instrument(skip(self))]
    pub async fn release(&self, product: ProductId, tx_no: &TxNo) -> Result<u32, RedisError> {
        let returned: u32 = self
            .release_script
            .key(self.keys.sale(product))
            .key(self.keys.users(product))
            .key(self.keys.reservations(product))
            .key(self.keys.restock_channel())
            .arg(tx_no.as_str())
            .arg(product.get())
            .invoke_async(&mut self.redis.clone())
            .await?;
        if returned > 0 {
            tracing::info!(returned, "reservation returned");
        }
        Ok(returned)
    }

    /// Puts `product` on sale with `stock` admissible, `limit` orders per
    /// user, within `window`.
    pub async fn open_sale(
        &self,
        product: ProductId,
        stock: u32,
        limit: u32,
        window: SaleWindow,
    ) -> Result<(), RedisError> {
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                self.keys.sale(product),
                &[("stock", i64::from(stock)), ("limit", i64::from(limit))],
            )
            .ignore()
            .hdel(self.keys.sale(product), &["rebuilding", "blocked"])
            .ignore();
        self.keys.set_window(&mut pipe, product, window);
        pipe.publish(self.keys.restock_channel(), product.get())
            .ignore()
            .query_async::<()>(&mut redis)
            .await?;
        self.sold_out.clear(product);
        Ok(())
    }

    /// Adds the reservation of an order that committed while its sale was
    /// rebuilt; `true` when added (stock taken), `false` when it was there.
    pub async fn hold(
        &self,
        product: ProductId,
        tx_no: &str,
        held: Reservation,
    ) -> Result<bool, RedisError> {
        let added: i64 = self
            .hold_script
            .key(self.keys.sale(product))
            .key(self.keys.users(product))
            .key(self.keys.reservations(product))
            .arg(tx_no)
            .arg(held.user_id)
            .arg(held.count)
            .arg(
                held.reserved_at_ms
                    .unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
            )
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(added == 1)
    }

    /// Every reservation of a sale, by tx_no (unparseable entries left out).
    pub async fn reservations(
        &self,
        product: ProductId,
    ) -> Result<Vec<(String, Reservation)>, RedisError> {
        let all: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.reservations(product))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|(tx_no, raw)| Reservation::parse(&raw).map(|r| (tx_no, r)))
            .collect())
    }

    /// Writes a sale's window (when it admits orders) into its hash.
    pub async fn set_window(
        &self,
        product: ProductId,
        window: SaleWindow,
    ) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.keys.set_window(&mut pipe, product, window);
        pipe.query_async::<()>(&mut self.redis.clone()).await
    }

    /// Closes one sale's admission (`SALE_NOT_READY`) while it is rebuilt.
    pub async fn close_for_rebuild(&self, product: ProductId) -> Result<(), RedisError> {
        redis::cmd("HSET")
            .arg(self.keys.sale(product))
            .arg("rebuilding")
            .arg(1)
            .query_async::<()>(&mut self.redis.clone())
            .await
    }

    /// Records why a sale's rebuild failed; it stays closed.
    pub async fn mark_blocked(&self, product: ProductId, reason: &str) -> Result<(), RedisError> {
        redis::cmd("HSET")
            .arg(self.keys.sale(product))
            .arg("rebuilding")
            .arg(1)
            .arg("blocked")
            .arg(reason)
            .query_async::<()>(&mut self.redis.clone())
            .await
    }

    /// Opens a rebuilt sale again (and tells every instance to forget sold out).
    pub async fn reopen(&self, product: ProductId) -> Result<(), RedisError> {
        redis::pipe()
            .atomic()
            .hdel(self.keys.sale(product), &["rebuilding", "blocked"])
            .ignore()
            .publish(self.keys.restock_channel(), product.get())
            .ignore()
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        self.sold_out.clear(product);
        Ok(())
    }

    /// Which of `products` are closed (rebuilding or blocked), in one round trip.
    pub async fn closed_among(&self, products: &[ProductId]) -> Result<Vec<bool>, RedisError> {
        if products.is_empty() {
            return Ok(Vec::new()); // Redis refuses an empty pipeline
        }
        let mut pipe = redis::pipe();
        for product in products {
            pipe.hexists(self.keys.sale(*product), "rebuilding");
        }
        pipe.query_async(&mut self.redis.clone()).await
    }

    /// Whether a sale is open, closed for its rebuild, or blocked.
    pub async fn sale_state(&self, product: ProductId) -> Result<SaleState, RedisError> {
        let (rebuilding, blocked): (bool, Option<String>) = redis::pipe()
            .hexists(self.keys.sale(product), "rebuilding")
            .hget(self.keys.sale(product), "blocked")
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(match (rebuilding, blocked) {
            (_, Some(reason)) => SaleState::Blocked(reason),
            (true, None) => SaleState::Rebuilding,
            (false, None) => SaleState::Open,
        })
    }

    /// Whether the admission state is present (built and not lost).
    pub async fn is_ready(&self) -> Result<bool, RedisError> {
        redis::cmd("EXISTS")
            .arg(self.keys.ready())
            .query_async(&mut self.redis.clone())
            .await
    }

    /// Redis's view of one product: (stock, limit, reserved orders), `None` if not on sale.
    pub async fn sale_view(
        &self,
        product: ProductId,
    ) -> Result<Option<(i64, i64, i64)>, RedisError> {
        let mut redis = self.redis.clone();
        let (stock, limit, reserved): (Option<i64>, Option<i64>, i64) = redis::pipe()
            .hget(self.keys.sale(product), "stock")
            .hget(self.keys.sale(product), "limit")
            .hlen(self.keys.reservations(product))
            .query_async(&mut redis)
            .await?;
        Ok(stock.map(|stock| (stock, limit.unwrap_or(1), reserved)))
    }
}

/// Clears sold-out flags when any instance publishes a restock or release.
pub async fn follow_restocks(
    redis: RedisLink,
    channel: String,
    gate: std::sync::Arc<AdmissionGate>,
    mut shutdown: common::shutdown::Shutdown,
) {
    use futures::StreamExt;
    while !shutdown.is_shutdown() {
        // The master in use now: after a failover the next subscription
        // goes to the new one (the old one's connection breaks).
        match redis.client().get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    let mut messages = pubsub.on_message();
                    loop {
                        let message = tokio::select! {
                            message = messages.next() => message,
                            () = shutdown.recv() => return,
                        };
                        let Some(message) = message else { break };
                        if let Some(product) = message
                            .get_payload::<i64>()
                            .ok()
                            .and_then(|id| ProductId::parse(id).ok())
                        {
                            gate.sold_out.clear(product);
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(%err, "restock subscription failed; retrying"),
        }
        if !shutdown.sleep(Duration::from_secs(1)).await {
            return;
        }
    }
}
