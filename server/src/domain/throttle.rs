//! Login throttling per account and per client address (governor's keyed GCRA
//! limiters). State is per node: in a cluster each node throttles independently, which
//! multiplies the allowance by the node count but never disables it.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct Throttle {
    accounts: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<String>,
}

fn quota(burst: u32, refill_secs: u64) -> Quota {
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(Duration::from_secs(refill_secs.max(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Throttle {
    pub fn new(
        account_burst: u32,
        account_refill_secs: u64,
        ip_burst: u32,
        ip_refill_secs: u64,
    ) -> Self {
        Throttle {
            accounts: RateLimiter::keyed(quota(account_burst, account_refill_secs)),
            addresses: RateLimiter::keyed(quota(ip_burst, ip_refill_secs)),
        }
    }

    /// Spends one attempt for this account and this address. `Err(seconds)` says how long
    /// to wait when either is exhausted.
    pub fn check(&self, account_key: &str, ip: Option<&str>) -> Result<(), u64> {
        // Each limiter's own clock: making a new one per call reads CPUID every time.
        if let Some(ip) = ip {
            if let Err(not_until) = self.addresses.check_key(&ip.to_owned()) {
                let now = self.addresses.clock().now();
                return Err(not_until.wait_time_from(now).as_secs().max(1));
            }
        }
        if let Err(not_until) = self.accounts.check_key(&account_key.to_owned()) {
            let now = self.accounts.clock().now();
            return Err(not_until.wait_time_from(now).as_secs().max(1));
        }
        Ok(())
    }

    /// Forgets keys whose allowance is full again, so memory does not grow with the
    /// number of distinct logins tried.
    pub fn prune(&self) {
        self.accounts.retain_recent();
        self.addresses.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_throttled_after_its_burst_whatever_the_address() {
        let t = Throttle::new(3, 60, 100, 1);
        for i in 0..3 {
            assert!(t.check("nurse", Some(&format!("10.0.0.{i}"))).is_ok());
        }
        let wait = t.check("nurse", Some("10.0.0.9")).unwrap_err();
        assert!(wait >= 1);
        assert!(t.check("doctor", Some("10.0.0.9")).is_ok());
    }

    #[test]
    fn an_address_is_throttled_across_accounts() {
        let t = Throttle::new(100, 1, 2, 60);
        assert!(t.check("a", Some("10.0.0.1")).is_ok());
        assert!(t.check("b", Some("10.0.0.1")).is_ok());
        assert!(t.check("c", Some("10.0.0.1")).is_err());
        assert!(t.check("c", Some("10.0.0.2")).is_ok());
    }
}
