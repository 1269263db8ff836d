//! Per-instance request limits on placing orders, by user and by client
//! address (GCRA: a steady rate plus a burst). A refused request gets
//! `429 RATE_LIMITED` with `Retry-After`.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::settings::RateLimitSettings;

pub struct RateLimits {
    per_user: Option<DefaultKeyedRateLimiter<i64>>,
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    pub trust_forwarded_for: bool,
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
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            per_user: limiter(settings.per_user_per_sec, settings.per_user_burst),
            per_address: limiter(settings.per_address_per_sec, settings.per_address_burst),
            trust_forwarded_for: settings.trust_forwarded_for,
        }
    }

    /// `Err(wait)` when `address` is over its limit.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Duration> {
        check(self.per_address.as_ref(), &address)
    }

    /// `Err(wait)` when `user_id` is over its limit.
    pub fn check_user(&self, user_id: i64) -> Result<(), Duration> {
        check(self.per_user.as_ref(), &user_id)
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
