//! Login throttling: per account and per client address, failures beyond a free
//! allowance lock further attempts for a doubling delay (1 s, 2 s, 4 s … 15 min).
//!
//! An attempt is counted when it begins, before the password is hashed, and forgiven
//! when it succeeds: a hundred attempts in parallel cannot all slip through while the
//! first hash is still running. Accounts and addresses are separate key spaces (the
//! account named `127.0.0.4` is not the address 127.0.0.4). Throttled attempts are
//! summarised for the audit log, at most one entry per address a minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const MAX_DELAY: Duration = Duration::from_secs(900);
/// Entries idle this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Entries kept at most (bounds memory under a spray of names and addresses); past it,
/// the ones not locked are forgotten first.
const MAX_ENTRIES: usize = 100_000;
/// How often one address's throttled attempts are written to the audit log.
const AUDIT_EVERY: Duration = Duration::from_secs(60);

/// What is being throttled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// An account name (lower-cased).
    Account(String),
    /// A client address.
    Address(String),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    locked_until: Instant,
    last: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Throttled {
    count: u64,
    last_audit: Option<Instant>,
}

/// Shared throttle state. Cheap to clone.
#[derive(Clone)]
pub struct LoginThrottle {
    free: u32,
    entries: Arc<Mutex<HashMap<ThrottleKey, Entry>>>,
    throttled: Arc<Mutex<HashMap<String, Throttled>>>,
}

/// An attempt in progress: counted as a failure until [`LoginThrottle::succeeded`].
#[derive(Debug)]
pub struct Attempt {
    keys: Vec<ThrottleKey>,
}

/// Throttled attempts from one address since its last audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottledSummary {
    /// How many.
    pub attempts: u64,
}

impl LoginThrottle {
    /// A throttle allowing `free` failures per key before delays start.
    pub fn new(free: u32) -> Self {
        Self {
            free,
            entries: Arc::default(),
            throttled: Arc::default(),
        }
    }

    /// Begins an attempt: `Err(seconds to wait)` when any key is locked, otherwise the
    /// attempt is counted as a failure for every key right away.
    pub fn begin(&self, keys: Vec<ThrottleKey>) -> Result<Attempt, u64> {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        let wait = keys
            .iter()
            .filter_map(|k| entries.get(k))
            .filter(|e| e.locked_until > now)
            // Rounded up: a client that waits the advertised time is let in.
            .map(|e| (e.locked_until - now).as_millis().div_ceil(1000).max(1) as u64)
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        entries.retain(|_, e| now.duration_since(e.last) < FORGET_AFTER);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.locked_until > now);
        }
        for key in &keys {
            let e = entries.entry(key.clone()).or_insert(Entry {
                failures: 0,
                locked_until: now,
                last: now,
            });
            e.failures += 1;
            e.last = now;
            if e.failures > self.free {
                let exponent = (e.failures - self.free - 1).min(10);
                e.locked_until = now + Duration::from_secs(1 << exponent).min(MAX_DELAY);
            }
        }
        Ok(Attempt { keys })
    }

    /// The attempt succeeded: its account is cleared; for its address, only this
    /// attempt is forgiven (a valid account must not wipe an address's other failures).
    pub fn succeeded(&self, attempt: Attempt) {
        let mut entries = self.entries.lock();
        for key in attempt.keys {
            match key {
                ThrottleKey::Account(_) => {
                    entries.remove(&key);
                }
                ThrottleKey::Address(_) => {
                    if let Some(e) = entries.get_mut(&key) {
                        e.failures = e.failures.saturating_sub(1);
                        if e.failures <= self.free {
                            e.locked_until = Instant::now();
                        }
                    }
                }
            }
        }
    }

    /// Notes a throttled attempt from `address`; returns a summary when it is time to
    /// write one to the audit log (the first, then at most once a minute).
    pub fn note_throttled(&self, address: &str) -> Option<ThrottledSummary> {
        let now = Instant::now();
        let mut throttled = self.throttled.lock();
        if throttled.len() >= MAX_ENTRIES {
            throttled.retain(|_, t| t.last_audit.is_some_and(|at| now - at < AUDIT_EVERY));
        }
        let t = throttled.entry(address.to_string()).or_insert(Throttled {
            count: 0,
            last_audit: None,
        });
        t.count += 1;
        let due = t.last_audit.is_none_or(|at| now - at >= AUDIT_EVERY);
        if !due {
            return None;
        }
        let summary = ThrottledSummary { attempts: t.count };
        t.count = 0;
        t.last_audit = Some(now);
        Some(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(account: &str, address: &str) -> Vec<ThrottleKey> {
        vec![
            ThrottleKey::Account(account.into()),
            ThrottleKey::Address(address.into()),
        ]
    }

    #[test]
    fn delays_start_after_the_free_failures_and_double() {
        let t = LoginThrottle::new(2);
        t.begin(keys("alice", "1.2.3.4")).unwrap();
        t.begin(keys("alice", "1.2.3.4")).unwrap();
        t.begin(keys("alice", "1.2.3.4")).unwrap();
        assert_eq!(t.begin(keys("alice", "9.9.9.9")).unwrap_err(), 1);
        // The address is locked too, whichever account it tries next.
        assert!(t.begin(keys("bob", "1.2.3.4")).is_err());
        assert!(t.begin(keys("bob", "5.5.5.5")).is_ok());
    }

    #[test]
    fn attempts_count_before_they_finish() {
        let t = LoginThrottle::new(5);
        // Parallel attempts: none has finished, yet the seventh is refused.
        let started: Vec<_> = (0..6).map(|_| t.begin(keys("admin", "10.0.0.1"))).collect();
        assert!(started.iter().all(Result::is_ok));
        assert!(t.begin(keys("admin", "10.0.0.1")).is_err());
    }

    #[test]
    fn accounts_and_addresses_are_separate_key_spaces() {
        let t = LoginThrottle::new(1);
        t.begin(keys("127.0.0.4", "10.0.0.9")).unwrap();
        t.begin(keys("127.0.0.4", "10.0.0.8")).unwrap();
        // The *name* 127.0.0.4 is locked; logins *from* 127.0.0.4 are not.
        assert!(t.begin(keys("127.0.0.4", "10.0.0.7")).is_err());
        assert!(t.begin(keys("carol", "127.0.0.4")).is_ok());
    }

    #[test]
    fn success_clears_the_account_but_only_forgives_itself_for_the_address() {
        let t = LoginThrottle::new(2);
        t.begin(keys("eve", "1.1.1.1")).unwrap();
        t.begin(keys("mallory", "1.1.1.1")).unwrap();
        let ok = t.begin(keys("own", "1.1.1.1")).unwrap();
        t.succeeded(ok);
        // Two failures remain for the address: one more is free, the next locks.
        t.begin(keys("x", "1.1.1.1")).unwrap();
        assert!(t.begin(keys("y", "1.1.1.1")).is_err());
        assert!(t.begin(keys("own", "2.2.2.2")).is_ok());
    }

    #[test]
    fn throttled_attempts_are_summarised_once_a_minute() {
        let t = LoginThrottle::new(0);
        assert_eq!(
            t.note_throttled("1.1.1.1"),
            Some(ThrottledSummary { attempts: 1 })
        );
        for _ in 0..1000 {
            assert_eq!(t.note_throttled("1.1.1.1"), None);
        }
        assert!(t.note_throttled("2.2.2.2").is_some());
    }
}
