//! Request limits on placing orders, by user and by client address (GCRA: a
//! steady rate plus a burst), held cluster-wide: N replicas admit the limit,
//! not N times it. A refused request gets `429 RATE_LIMITED` with `Retry-After`.
//!
//! Two steps: [`RateLimits::check_user`] and [`RateLimits::check_address`] in memory (a request over this
//! instance's own bucket is over the shared one too), then the shared buckets
//! in Redis (`admission/rate_gate.lua`: one script, one clock) — only for a
//! request that will reach Redis anyway, so a sold-out flood answered from
//! memory stays as cheap as before. The token and admission scripts count a
//! request against its [`Bucket`]s themselves, in the same round trip;
//! [`RateLimits::check_shared`] runs the gate alone, for a request that
//! must pass it before anything else reaches Redis (a keyed order, before its
//! Idempotency-Key is claimed). Redis unreachable: the lone check lets the
//! request through (admission will refuse it if Redis is really gone).

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
    /// `rate_gate.lua` alone.
    script: Script,
    prefix: String,
    per_user: Option<SharedQuota>,
    per_address: Option<SharedQuota>,
}

/// A quota as the gate script takes it: µs between requests, burst.
#[derive(Debug, Clone, Copy)]
struct SharedQuota {
    interval_us: u64,
    burst: u32,
}

/// `None` when off.
fn quota(per_sec: u32, burst: u32) -> Option<SharedQuota> {
    (per_sec > 0).then(|| SharedQuota {
        interval_us: 1_000_000 / u64::from(per_sec),
        burst: burst.max(per_sec),
    })
}

/// One shared bucket a request is counted against: its Redis key and quota.
/// Handed to a script whose `rate_gate.lua` counts it (see
/// [`Bucket::add_to`]).
#[derive(Debug, Clone)]
pub struct Bucket {
    key: String,
    quota: SharedQuota,
}

impl Bucket {
    /// Appends `buckets` to a script's keys and arguments, after its own
    /// (the script's `rate_gate(first_key, first_arg)` reads them there).
    pub fn add_to(buckets: &[Bucket], invocation: &mut redis::ScriptInvocation<'_>) {
        for bucket in buckets {
            invocation
                .key(&bucket.key)
                .arg(bucket.quota.interval_us)
                .arg(bucket.quota.burst);
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
                script: Script::new(
                    &[
                        include_str!("admission/rate_gate.lua"),
                        "return rate_gate(1, 1)",
                    ]
                    .concat(),
                ),
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

    /// The cluster-wide buckets a request of `user_id` from `address` is
    /// counted against (none when shared limits are off).
    pub fn shared_buckets(&self, user_id: i64, address: Option<IpAddr>) -> Vec<Bucket> {
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        let address = address.and_then(|a| Some((format!("a:{a}"), shared.per_address?)));
        let user = shared.per_user.map(|q| (format!("u:{user_id}"), q));
        address
            .into_iter()
            .chain(user)
            .map(|(key, quota)| Bucket {
                key: format!("{}:rl:{key}", shared.prefix),
                quota,
            })
            .collect()
    }

    /// `Err(wait)` when `user_id` or `address` is over the cluster-wide
    /// limit: the gate alone, a round trip of its own.
    pub async fn check_shared(
        &self,
        user_id: i64,
        address: Option<IpAddr>,
    ) -> Result<(), Duration> {
        let (Some(shared), buckets) = (&self.shared, self.shared_buckets(user_id, address)) else {
            return Ok(());
        };
        if buckets.is_empty() {
            return Ok(());
        }
        let mut invocation = shared.script.prepare_invoke();
        Bucket::add_to(&buckets, &mut invocation);
        match invocation
            .invoke_async::<u64>(&mut shared.redis.clone())
            .await
        {
            Ok(0) => Ok(()),
            Ok(micros) => Err(Duration::from_micros(micros)),
            Err(err) => {
                tracing::warn!(%err, "shared rate limit not checked (Redis); letting the request through");
                Ok(())
            }
        }
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
