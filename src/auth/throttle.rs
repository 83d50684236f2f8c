//! Login throttling: per account and per client address, failures beyond a free
//! allowance lock further attempts for a doubling delay (1 s, 2 s, 4 s … 15 min).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_DELAY: Duration = Duration::from_secs(900);
/// Entries idle this long are forgotten (bounds memory under a spray of names).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    locked_until: Instant,
    last: Instant,
}

/// Shared throttle state. Cheap to clone.
#[derive(Clone)]
pub struct LoginThrottle {
    free: u32,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl LoginThrottle {
    /// A throttle allowing `free` failures per key before delays start.
    pub fn new(free: u32) -> Self {
        Self {
            free,
            entries: Arc::default(),
        }
    }

    /// Seconds to wait if any of `keys` is locked now.
    pub fn blocked(&self, keys: &[&str]) -> Option<u64> {
        let now = Instant::now();
        let entries = self.entries.lock().ok()?;
        keys.iter()
            .filter_map(|k| entries.get(*k))
            .filter(|e| e.locked_until > now)
            // Rounded up: a client that waits the advertised time is let in.
            .map(|e| (e.locked_until - now).as_millis().div_ceil(1000).max(1) as u64)
            .max()
    }

    /// Records a failure for every key.
    pub fn failed(&self, keys: &[&str]) {
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        entries.retain(|_, e| now.duration_since(e.last) < FORGET_AFTER);
        for key in keys {
            let e = entries.entry(key.to_string()).or_insert(Entry {
                failures: 0,
                locked_until: now,
                last: now,
            });
            e.failures += 1;
            e.last = now;
            if e.failures > self.free {
                let exponent = (e.failures - self.free - 1).min(10);
                let delay = Duration::from_secs(1 << exponent).min(MAX_DELAY);
                e.locked_until = now + delay;
            }
        }
    }

    /// Clears the keys after a success.
    pub fn succeeded(&self, keys: &[&str]) {
        if let Ok(mut entries) = self.entries.lock() {
            for key in keys {
                entries.remove(*key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_failures_and_double() {
        let t = LoginThrottle::new(2);
        t.failed(&["alice", "1.2.3.4"]);
        t.failed(&["alice", "1.2.3.4"]);
        assert_eq!(t.blocked(&["alice"]), None);
        t.failed(&["alice", "1.2.3.4"]);
        assert_eq!(t.blocked(&["alice"]), Some(1));
        t.failed(&["alice"]);
        assert_eq!(t.blocked(&["alice"]), Some(2));
        assert_eq!(t.blocked(&["bob"]), None);
        // The address is locked too, whichever account it tries next.
        assert!(t.blocked(&["bob", "1.2.3.4"]).is_some());
        t.succeeded(&["alice", "1.2.3.4"]);
        assert_eq!(t.blocked(&["alice", "1.2.3.4"]), None);
    }
}
