//! Throttling of failed sign-ins: growing waits per account and client address, and per
//! address alone, answered `429 rate_limited` with `Retry-After`.
//!
//! Two keys are charged for each attempt at the token endpoint:
//!
//! - **(account, address)**: password guesses at one account from one place. After
//!   `free_failures` failures in a row, each further attempt waits `first_delay`, doubling per
//!   failure up to `max_delay`. A success clears it. Someone guessing from elsewhere therefore
//!   never locks the real person out; from the same address (a shared NAT) the wait is at most
//!   `max_delay`, since the waits are bounded and refused attempts do not count.
//! - **address**: one place trying many accounts or tokens. The same rule with the higher
//!   `address_free_failures`; a success does not clear it (an attacker with an account of their
//!   own must not reset it), only `forget_after` without failures does. IPv6 addresses count by
//!   their /64, which one host usually holds whole.
//!
//! Grants without an account name (refresh tokens, enrollment secrets, ID tokens) charge the
//! address only.
//!
//! Each attempt is charged as a failure before the secret is checked, and given back on
//! success, so a burst of parallel guesses cannot all pass the check before the first one
//! fails: at most one attempt per key runs once the free failures are spent.
//!
//! This is a small purpose-built table rather than `governor`: governor's GCRA allows a steady
//! rate with bursts, not waits that grow with consecutive failures and end on a success, and it
//! would bring `dashmap` and `quanta` into the tree. Entries live in memory: a restart forgets
//! them (the waits are minutes, not days), and several service instances each keep their own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ThrottleConfig;

/// Most keys remembered; past it, forgotten and idle keys go first, then the oldest.
const MAX_KEYS: usize = 100_000;

/// How long an attempt past the free failures holds its keys while its secret is checked. A
/// request cut off during the check (its outcome never reported) leaves them waiting this long.
const CHECK_ALLOWANCE: Duration = Duration::from_secs(30);

/// What is being throttled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// One account from one address.
    Account { user: String, addr: String },
    /// One address, whatever it tries.
    Addr(String),
}

impl Key {
    fn scope(&self) -> Scope {
        match self {
            Key::Account { .. } => Scope::Account,
            Key::Addr(_) => Scope::Address,
        }
    }
}

/// Which of the two keys made an attempt wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This account from this address.
    Account,
    /// This address, whatever account.
    Address,
}

impl Scope {
    /// The name in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account_and_address",
            Scope::Address => "address",
        }
    }
}

/// An attempt refused because its key is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// How long until the next attempt is taken.
    pub retry_after: Duration,
    /// Which key waits.
    pub scope: Scope,
}

/// A key that must now wait, after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Which key.
    pub scope: Scope,
    /// Failures in a row so far.
    pub failures: u32,
    /// The wait before the next attempt.
    pub wait: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    last_attempt: Instant,
    until: Option<Instant>,
}

/// The throttle table. One per service, shared by the token endpoint's requests.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    keys: Mutex<HashMap<Key, Strikes>>,
}

/// An attempt taken: report its outcome with [`Throttle::succeeded`], [`Throttle::failed`] or
/// [`Throttle::undecided`]. Dropped without a report (the request was cut off), it stays
/// charged as a failure.
#[derive(Debug)]
#[must_use]
pub struct Attempt {
    keys: Vec<Key>,
}

impl Throttle {
    /// An empty table with these limits.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Charges an attempt for `user` (when the grant names one) from `addr`, or says how long
    /// to wait. Unknown addresses (no connection info) share one key.
    pub fn begin(
        &self,
        user: Option<&str>,
        addr: Option<&str>,
        now: Instant,
    ) -> Result<Attempt, Wait> {
        let addr = address_key(addr);
        let mut keys = vec![Key::Addr(addr.clone())];
        if let Some(user) = user {
            // Longer names are no account (at most 64 characters); they need not be kept whole.
            let user = user.chars().take(65).collect();
            keys.insert(0, Key::Account { user, addr });
        }
        if !self.config.enabled {
            return Ok(Attempt { keys: Vec::new() });
        }
        let mut table = self.table();
        for key in &keys {
            if let Some(strikes) = self.current(&mut table, key, now)
                && let Some(until) = strikes.until.filter(|until| *until > now)
            {
                return Err(Wait {
                    retry_after: until - now,
                    scope: key.scope(),
                });
            }
        }
        if table.len() + keys.len() > MAX_KEYS {
            self.make_room(&mut table, now);
        }
        for key in &keys {
            let free = self.free_failures(key);
            let strikes = table.entry(key.clone()).or_insert(Strikes {
                failures: 0,
                last_attempt: now,
                until: None,
            });
            strikes.failures = strikes.failures.saturating_add(1);
            strikes.last_attempt = now;
            // Past the free failures, others wait while this one is checked; its outcome then
            // sets the real wait, counted from the failure.
            strikes.until = self
                .wait_after(strikes.failures, free)
                .map(|wait| now + wait.max(CHECK_ALLOWANCE));
        }
        Ok(Attempt { keys })
    }

    /// The attempt signed in: its account key is cleared, and its address key given back the
    /// failure charged for it.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut table = self.table();
        for key in attempt.keys {
            match key {
                Key::Account { .. } => {
                    table.remove(&key);
                }
                Key::Addr(_) => self.give_back(&mut table, &key),
            }
        }
    }

    /// The attempt ended without a verdict on its secret (the service failed): every key gets
    /// back the failure charged for it.
    pub fn undecided(&self, attempt: Attempt) {
        let mut table = self.table();
        for key in attempt.keys {
            self.give_back(&mut table, &key);
        }
    }

    fn give_back(&self, table: &mut HashMap<Key, Strikes>, key: &Key) {
        let free = self.free_failures(key);
        if let Some(strikes) = table.get_mut(key) {
            strikes.failures = strikes.failures.saturating_sub(1);
            strikes.until = self
                .wait_after(strikes.failures, free)
                .map(|wait| strikes.last_attempt + wait);
        }
    }

    /// The attempt failed at `now` (it stays charged); the keys that must now wait, from `now`,
    /// for the audit log.
    pub fn failed(&self, attempt: Attempt, now: Instant) -> Vec<Locked> {
        let mut table = self.table();
        attempt
            .keys
            .iter()
            .filter_map(|key| {
                let free = self.free_failures(key);
                let strikes = table.get_mut(key)?;
                let wait = self.wait_after(strikes.failures, free)?;
                strikes.until = Some(now + wait);
                Some(Locked {
                    scope: key.scope(),
                    failures: strikes.failures,
                    wait,
                })
            })
            .collect()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Strikes>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn free_failures(&self, key: &Key) -> u32 {
        match key {
            Key::Account { .. } => self.config.free_failures,
            Key::Addr(_) => self.config.address_free_failures,
        }
    }

    /// The wait after `failures` in a row: none within the free ones, then `first_delay`
    /// doubling per failure, at most `max_delay`.
    fn wait_after(&self, failures: u32, free: u32) -> Option<Duration> {
        let over = failures.checked_sub(free).filter(|n| *n > 0)?;
        let factor = 2u32.saturating_pow(over - 1);
        Some(
            self.config
                .first_delay
                .saturating_mul(factor)
                .min(self.config.max_delay),
        )
    }

    /// The key's strikes, forgotten (removed) once idle for `forget_after` past any wait.
    fn current(
        &self,
        table: &mut HashMap<Key, Strikes>,
        key: &Key,
        now: Instant,
    ) -> Option<Strikes> {
        let strikes = *table.get(key)?;
        if self.is_forgotten(&strikes, now) {
            table.remove(key);
            return None;
        }
        Some(strikes)
    }

    fn is_forgotten(&self, strikes: &Strikes, now: Instant) -> bool {
        let quiet_since = strikes
            .until
            .unwrap_or(strikes.last_attempt)
            .max(strikes.last_attempt);
        now.saturating_duration_since(quiet_since) >= self.config.forget_after
    }

    /// Drops forgotten keys, then keys not waiting, then the oldest, until there is room.
    fn make_room(&self, table: &mut HashMap<Key, Strikes>, now: Instant) {
        table.retain(|_, s| !self.is_forgotten(s, now));
        if table.len() < MAX_KEYS {
            return;
        }
        table.retain(|_, s| s.until.is_some_and(|until| until > now));
        while table.len() >= MAX_KEYS {
            let Some(oldest) = table
                .iter()
                .min_by_key(|(_, s)| s.last_attempt)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            table.remove(&oldest);
        }
        tracing::warn!(
            keys = table.len(),
            "sign-in throttle table was full; old entries dropped"
        );
    }
}

/// The address part of a key: the IP without the port; IPv6 by its /64.
fn address_key(addr: Option<&str>) -> String {
    let Some(addr) = addr else {
        return "unknown".to_owned();
    };
    match addr
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| addr.parse::<IpAddr>())
    {
        Ok(IpAddr::V4(ip)) => ip.to_string(),
        Ok(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = ip.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => addr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            enabled: true,
            free_failures: 3,
            address_free_failures: 10,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            forget_after: Duration::from_secs(3600),
        }
    }

    fn fail(t: &Throttle, user: &str, addr: &str, now: Instant) -> Result<Vec<Locked>, Wait> {
        t.begin(Some(user), Some(addr), now)
            .map(|a| t.failed(a, now))
    }

    #[test]
    fn waits_grow_per_failure_up_to_the_bound_and_end_on_success() {
        let t = Throttle::new(ThrottleConfig {
            address_free_failures: 100,
            ..config()
        });
        let start = Instant::now();
        let mut now = start;
        for _ in 0..3 {
            assert_eq!(
                fail(&t, "ann", "10.0.0.1:5000", now),
                Ok(vec![]),
                "free failures"
            );
        }
        let mut waits = Vec::new();
        for _ in 0..6 {
            let locked = fail(&t, "ann", "10.0.0.1:5001", now).expect("not waiting yet");
            let wait = locked[0].wait;
            assert_eq!(locked[0].scope, Scope::Account);
            waits.push(wait.as_secs());
            // Asking again during the wait is refused and does not lengthen it.
            let refused = t
                .begin(Some("ann"), Some("10.0.0.1:5002"), now + wait / 2)
                .unwrap_err();
            assert_eq!(refused.retry_after, wait - wait / 2);
            now += wait;
        }
        assert_eq!(waits, [1, 2, 4, 8, 8, 8], "doubling, bounded by max_delay");
        // Another account from the same address, and the same account from elsewhere, go on.
        assert!(
            t.begin(
                Some("bob"),
                Some("10.0.0.1:1"),
                now - Duration::from_millis(1)
            )
            .is_ok()
        );
        let attempt = t.begin(Some("ann"), Some("10.0.0.2:1"), start).unwrap();
        t.succeeded(attempt);
        // The right password after the wait clears the account key.
        let attempt = t.begin(Some("ann"), Some("10.0.0.1:1"), now).unwrap();
        t.succeeded(attempt);
        assert_eq!(
            fail(&t, "ann", "10.0.0.1:1", now),
            Ok(vec![]),
            "counting starts again"
        );
    }

    #[test]
    fn one_address_trying_many_accounts_waits() {
        let t = Throttle::new(config());
        let now = Instant::now();
        for i in 0..10 {
            assert_eq!(
                fail(&t, &format!("user{i}"), "192.0.2.7:1", now),
                Ok(vec![])
            );
        }
        let locked = fail(&t, "user10", "192.0.2.7:1", now).unwrap();
        assert_eq!(
            locked,
            [Locked {
                scope: Scope::Address,
                failures: 11,
                wait: Duration::from_secs(1)
            }]
        );
        let refused = t
            .begin(Some("user11"), Some("192.0.2.7:2"), now)
            .unwrap_err();
        assert_eq!(refused.scope, Scope::Address);
        assert!(
            t.begin(None, Some("192.0.2.8:1"), now).is_ok(),
            "other addresses go on"
        );
    }

    #[test]
    fn parallel_guesses_cannot_all_pass_before_the_first_fails() {
        let t = Throttle::new(config());
        let now = Instant::now();
        let taken: Vec<_> = (0..20)
            .filter_map(|_| t.begin(Some("ann"), Some("10.0.0.1:1"), now).ok())
            .collect();
        assert_eq!(taken.len(), 4, "the free failures and one more");
        // The one past the free failures fails late (a slow check): its wait counts from then.
        let mut taken = taken;
        let last = taken.pop().unwrap();
        let late = now + Duration::from_secs(40);
        assert_eq!(t.failed(last, late)[0].wait, Duration::from_secs(1));
        let refused = t
            .begin(
                Some("ann"),
                Some("10.0.0.1:1"),
                late + Duration::from_millis(400),
            )
            .unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(600));
    }

    #[test]
    fn keys_are_forgotten_after_a_quiet_while_and_ipv6_counts_by_its_64() {
        let t = Throttle::new(config());
        let now = Instant::now();
        for _ in 0..4 {
            let _ = fail(&t, "ann", "[2001:db8:1:2:aaaa::1]:443", now);
        }
        assert!(
            t.begin(Some("ann"), Some("[2001:db8:1:2:bbbb::9]:1"), now)
                .is_err(),
            "same /64"
        );
        assert!(
            t.begin(Some("ann"), Some("[2001:db8:1:3::1]:1"), now)
                .is_ok(),
            "other /64"
        );
        assert!(
            t.begin(
                Some("ann"),
                Some("[2001:db8:1:2::1]:1"),
                now + Duration::from_secs(3602)
            )
            .is_ok()
        );
        assert_eq!(address_key(Some("[::ffff:10.1.2.3]:80")), "10.1.2.3");
    }

    #[test]
    fn disabled_throttles_nothing() {
        let t = Throttle::new(ThrottleConfig {
            enabled: false,
            ..config()
        });
        let now = Instant::now();
        for _ in 0..50 {
            assert_eq!(fail(&t, "ann", "10.0.0.1:1", now), Ok(vec![]));
        }
    }
}
