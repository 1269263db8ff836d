//! `Idempotency-Key`: a retried `POST /api/orders` returns the order of the
//! first attempt instead of placing a second one, even when the retries race.
//!
//! The first attempt claims `<prefix>:idem:<user>:<key>` in Redis (SET NX,
//! 24 h) with its order_no, tx_no and what it orders. A retry that finds the
//! claim waits for that order and replays it; if the first attempt's
//! transaction rolled back, the claim is dropped and the retry places anew.
//! The order DB's unique (user_id, idempotency_key) index is the backstop for
//! a claim Redis lost.

use std::time::{Duration, Instant};

use common::domain::{TxNo, UserId};
use common::messages::OrderCreated;
use common::redis_link::RedisLink;
use redis::{RedisError, Script};
use sea_orm::{DatabaseConnection, DbErr};

use crate::domain::{IdempotencyKey, Order};
use crate::store;

const CLAIM_TTL_SECS: u64 = 24 * 60 * 60;

/// What a retry found.
pub enum Earlier {
    /// No earlier attempt holds the key: this request owns it now. `replaced`:
    /// the tx_no of the earlier attempt whose claim it took over because that
    /// attempt's transaction is settled rolled back (its token may be reused).
    None { replaced: Option<TxNo> },
    /// The earlier attempt's order.
    Order(Order),
    /// The earlier attempt is still undecided after waiting.
    Pending { order_no: String, tx_no: String },
    /// The key was used for a different order (product or count).
    Mismatch,
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("order database: {0}")]
    Database(#[from] DbErr),
}

pub struct IdempotencyClaims {
    redis: RedisLink,
    prefix: String,
    release: Script,
    wait: Duration,
}

impl IdempotencyClaims {
    pub fn new(redis: RedisLink, prefix: &str, wait: Duration) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            release: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            ),
            wait,
        }
    }

    fn key(&self, order: &OrderCreated, key: &IdempotencyKey) -> String {
        self.key_of(order.user_id, key)
    }

    fn key_of(&self, user: UserId, key: &IdempotencyKey) -> String {
        format!("{}:idem:{user}:{}", self.prefix, key.as_str())
    }

    /// Whether `user` has an attempt (in flight, or an order) under `key`:
    /// the claim in Redis, or the order DB's backstop for a claim Redis lost.
    /// Asked before answering a keyed request from the sold-out memory, so a
    /// retry of a winning order is replayed, never told SOLD_OUT.
    pub async fn has_attempt(
        &self,
        db: &DatabaseConnection,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<bool, IdempotencyError> {
        let claimed: bool = redis::cmd("EXISTS")
            .arg(self.key_of(user, key))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(claimed
            || store::find_order_by_idempotency_key(db, user.get(), key.as_str())
                .await?
                .is_some())
    }

    fn value(order: &OrderCreated) -> String {
        format!(
            "{}|{}|{}|{}",
            order.order_no, order.tx_no, order.product_id, order.count
        )
    }

    /// Claims `key` for `order`, or finds (and waits for) the attempt that holds it.
    #[tracing::instrument(skip_all, fields(tx_no = %order.tx_no, idempotency_key = key.as_str()))]
    pub async fn claim_or_find(
        &self,
        db: &DatabaseConnection,
        order: &OrderCreated,
        key: &IdempotencyKey,
    ) -> Result<Earlier, IdempotencyError> {
        let redis_key = self.key(order, key);
        let started = Instant::now();
        let mut replaced = None;
        loop {
            let mut redis = self.redis.clone();
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&redis_key)
                .arg(Self::value(order))
                .arg("NX")
                .arg("EX")
                .arg(CLAIM_TTL_SECS)
                .query_async(&mut redis)
                .await?;
            if claimed.is_some() {
                return Ok(Earlier::None { replaced });
            }
            let Some(held) = redis::cmd("GET")
                .arg(&redis_key)
                .query_async::<Option<String>>(&mut redis)
                .await?
            else {
                continue; // released in between: claim again
            };
            let parts: Vec<&str> = held.split('|').collect();
            let [order_no, tx_no, product, count] = parts[..] else {
                return Ok(Earlier::Mismatch);
            };
            if product != order.product_id.to_string() || count != order.count.to_string() {
                return Ok(Earlier::Mismatch);
            }
            if let Some(found) = store::find_order(db, order_no).await? {
                return Ok(Earlier::Order(found));
            }
            if store::tx_outcome(db, tx_no).await? == Some(store::TxOutcome::RolledBack) {
                self.release
                    .key(&redis_key)
                    .arg(&held)
                    .invoke_async::<i64>(&mut redis)
                    .await?;
                replaced = TxNo::parse(tx_no).ok();
                continue;
            }
            if started.elapsed() > self.wait {
                return Ok(Earlier::Pending {
                    order_no: order_no.to_owned(),
                    tx_no: tx_no.to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Drops this attempt's claim (it placed nothing), so a retry can place anew.
    pub async fn release(
        &self,
        order: &OrderCreated,
        key: &IdempotencyKey,
    ) -> Result<(), RedisError> {
        self.release
            .key(self.key(order, key))
            .arg(Self::value(order))
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map(drop)
    }
}
