//! Request limits on placing orders, by user and by client address (GCRA: a
//! steady rate plus a burst), held cluster-wide: N replicas admit the limit,
//! not N times it. A refused request gets `429 RATE_LIMITED` with `Retry-After`.
//!
//! Two steps: [`RateLimits::check_local`] in memory (a request over this
//! instance's own bucket is over the shared one too), then
//! [`RateLimits::check_shared`] in Redis (one script, one clock) — only for a
//! request that will reach Redis anyway, so a sold-out flood answered from
//! memory stays as cheap as before. Redis unreachable: the shared check lets
//! the request through (admission will refuse it if Redis is really gone).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use common::redis_link::RedisLink;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use redis::Script;

use crate::settings::RateLimitSettings;

pub struct RateLimits {
    per_user: Option<DefaultKeyedRateLimiter<i64>>,
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    shared: Option<Shared>,
    pub trust_forwarded_for: bool,
}

/// The same quotas, kept in Redis for every replica.
struct Shared {
    redis: RedisLink,
    script: Script,
    prefix: String,
    per_user: Option<(u64, u32)>,
    per_address: Option<(u64, u32)>,
}

/// (µs between requests, burst) of a quota; `None` when off.
fn quota(per_sec: u32, burst: u32) -> Option<(u64, u32)> {
    (per_sec > 0).then(|| (1_000_000 / u64::from(per_sec), burst.max(per_sec)))
}

impl Shared {
    async fn check(&self, key: String, quota: Option<(u64, u32)>) -> Result<(), Duration> {
        let Some((interval, burst)) = quota else {
            return Ok(());
        };
        let wait = self
            .script
            .key(format!("{}:rl:{key}", self.prefix))
            .arg(interval)
            .arg(burst)
            .invoke_async::<u64>(&mut self.redis.clone())
            .await;
        match wait {
            Ok(0) => Ok(()),
            Ok(micros) => Err(Duration::from_micros(micros)),
            Err(err) => {
                tracing::warn!(%err, "shared rate limit not checked (Redis); letting the request through");
                Ok(())
            }
        }
    }
}

fn limiter<K: Hash + Eq + Clone>(per_sec: u32, burst: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(per_sec)).unwrap_or(rate);
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

fn check<K: Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), Duration> {
    match limiter.map(|l| l.check_key(key)) {
        None | Some(Ok(())) => Ok(()),
        Some(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
    }
}

impl RateLimits {
    /// `redis`: where the shared buckets live (`None`: this instance only).
    pub fn new(settings: &RateLimitSettings, redis: Option<(RedisLink, &str)>) -> Self {
        Self {
            per_user: limiter(settings.per_user_per_sec, settings.per_user_burst),
            per_address: limiter(settings.per_address_per_sec, settings.per_address_burst),
            shared: redis.map(|(redis, prefix)| Shared {
                redis,
                script: Script::new(include_str!("admission/rate_limit.lua")),
                prefix: prefix.to_owned(),
                per_user: quota(settings.per_user_per_sec, settings.per_user_burst),
                per_address: quota(settings.per_address_per_sec, settings.per_address_burst),
            }),
            trust_forwarded_for: settings.trust_forwarded_for,
        }
    }

    /// `Err(wait)` when `address` is over this instance's own limit.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Duration> {
        check(self.per_address.as_ref(), &address)
    }

    /// `Err(wait)` when `user_id` is over this instance's own limit.
    pub fn check_user(&self, user_id: i64) -> Result<(), Duration> {
        check(self.per_user.as_ref(), &user_id)
    }

    /// `Err(wait)` when `user_id` or `address` is over the cluster-wide limit.
    pub async fn check_shared(
        &self,
        user_id: i64,
        address: Option<IpAddr>,
    ) -> Result<(), Duration> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        if let Some(address) = address {
            shared
                .check(format!("a:{address}"), shared.per_address)
                .await?;
        }
        shared.check(format!("u:{user_id}"), shared.per_user).await
    }

    /// Drops the state of keys that are back to a full bucket (call periodically).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_user {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_address {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}
