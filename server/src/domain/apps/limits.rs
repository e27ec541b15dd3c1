//! Requests per app: a token bucket per API client (governor's GCRA), with each client's
//! own rate, so one runaway integration cannot crowd out the people using the region.
//! Per node, like the sign-in throttle: a cluster multiplies the allowance by its node
//! count but never disables it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// One bucket per client, rebuilt when the client's rate changes.
pub struct AppLimits {
    default_per_minute: u32,
    buckets: Mutex<HashMap<String, (u32, DefaultDirectRateLimiter)>>,
    clock: DefaultClock,
}

impl AppLimits {
    pub fn new(default_per_minute: u32) -> Self {
        AppLimits {
            default_per_minute: default_per_minute.max(1),
            buckets: Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    /// Spends one request of `client`'s allowance (`per_minute`, or the default).
    /// `Err(seconds)` says how long to wait.
    pub fn check(&self, client: &str, per_minute: Option<u32>) -> Result<(), u64> {
        let rate = per_minute.unwrap_or(self.default_per_minute).max(1);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let entry = buckets
            .entry(client.to_owned())
            .or_insert_with(|| (rate, limiter(rate)));
        if entry.0 != rate {
            *entry = (rate, limiter(rate));
        }
        entry
            .1
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()).as_secs().max(1))
    }
}

/// A bucket of a minute's requests that refills evenly over the minute.
fn limiter(per_minute: u32) -> DefaultDirectRateLimiter {
    let burst = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_minute(burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_app_has_its_own_allowance_at_its_own_rate() {
        let limits = AppLimits::new(2);
        assert!(limits.check("a", None).is_ok());
        assert!(limits.check("a", None).is_ok());
        assert!(limits.check("a", None).unwrap_err() >= 1);
        assert!(limits.check("b", Some(3)).is_ok());
        assert!(limits.check("b", Some(3)).is_ok());
        assert!(limits.check("b", Some(3)).is_ok());
        assert!(limits.check("b", Some(3)).is_err());
    }
}
