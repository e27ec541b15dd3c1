//! Login throttling per account and per client address (governor's keyed GCRA
//! limiters). State is per node: in a cluster each node throttles independently, which
//! multiplies the allowance by the node count but never disables it.
//!
//! An account spends its allowance on every attempt. An address spends it on
//! **failures** only: a ward or a nursing station signs in thirty people through one
//! NAT address at the start of a shift, and those successes must not lock the next
//! nurse out, while password guessing from that address is still stopped.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct Throttle {
    accounts: DefaultKeyedRateLimiter<String>,
    /// Failures per address: a leaky bucket of `ip_burst` that drains one failure per
    /// `ip_refill_secs` (what governor's GCRA does for attempts, counted here for
    /// failures only, which governor cannot do without spending on every check).
    failures: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
    ip_burst: f64,
    ip_refill: std::time::Duration,
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
            failures: Default::default(),
            ip_burst: f64::from(ip_burst.max(1)),
            ip_refill: Duration::from_secs(ip_refill_secs.max(1)),
        }
    }

    /// Spends one attempt for this account, and checks that the address has failures
    /// left. `Err(seconds)` says how long to wait when either is exhausted.
    pub fn check(&self, account_key: &str, ip: Option<&str>) -> Result<(), u64> {
        if let Some(ip) = ip {
            let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(&(level, at)) = failures.get(ip) {
                let level = self.drained(level, at);
                if level + 1.0 > self.ip_burst {
                    let wait = (level + 1.0 - self.ip_burst) * self.ip_refill.as_secs_f64();
                    return Err((wait.ceil() as u64).max(1));
                }
            }
        }
        // Each limiter's own clock: making a new one per call reads CPUID every time.
        if let Err(not_until) = self.accounts.check_key(&account_key.to_owned()) {
            let now = self.accounts.clock().now();
            return Err(not_until.wait_time_from(now).as_secs().max(1));
        }
        Ok(())
    }

    /// Counts a failed attempt (wrong password, unknown login, wrong TOTP) against the
    /// address; when its failures run out, the address waits.
    pub fn failed(&self, ip: Option<&str>) {
        let Some(ip) = ip else { return };
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let entry = failures.entry(ip.to_owned()).or_insert((0.0, now));
        *entry = (self.drained(entry.0, entry.1) + 1.0, now);
    }

    /// The failure count `level`, recorded at `at`, as it stands now.
    fn drained(&self, level: f64, at: std::time::Instant) -> f64 {
        (level - at.elapsed().as_secs_f64() / self.ip_refill.as_secs_f64()).max(0.0)
    }

    /// Forgets keys whose allowance is full again, so memory does not grow with the
    /// number of distinct logins tried.
    pub fn prune(&self) {
        self.accounts.retain_recent();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let refill = self.ip_refill.as_secs_f64();
        failures.retain(|_, (level, at)| *level - at.elapsed().as_secs_f64() / refill > 0.0);
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
    fn an_address_is_throttled_after_its_failures_across_accounts() {
        let t = Throttle::new(100, 1, 2, 60);
        for account in ["a", "b"] {
            assert!(t.check(account, Some("10.0.0.1")).is_ok());
            t.failed(Some("10.0.0.1"));
        }
        assert!(t.check("c", Some("10.0.0.1")).unwrap_err() >= 1);
        assert!(t.check("d", Some("10.0.0.2")).is_ok());
    }

    #[test]
    fn successes_from_one_address_do_not_spend_its_allowance() {
        let t = Throttle::new(100, 1, 2, 60);
        // A ward of forty behind one NAT address signs in.
        for nurse in 0..40 {
            assert!(t.check(&format!("nurse{nurse}"), Some("10.0.0.1")).is_ok());
        }
    }
}
