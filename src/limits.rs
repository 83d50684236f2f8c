//! Per-user rate limits and daily quotas, and the usage accounting behind them.
//!
//! Request rates use `governor` (GCRA) limiters, one per user, built from the user's
//! effective limits (global `[limits]` merged with their overrides, re-read every 30 s so
//! CLI changes apply without a restart). Usage is counted in memory and written to the
//! store in batches every two seconds (and at shutdown), so counting never adds a disk
//! write to a request; quota checks add what is not flushed yet.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::store::usage::{LimitOverrides, UsageDelta};
use crate::store::{Store, StoreError};

/// How long a user's effective limits are cached.
const LIMITS_TTL: Duration = Duration::from_secs(30);

/// A limit was hit: wait this long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// What was exceeded, for the error message.
    pub what: String,
    /// Seconds until it resets.
    pub retry_after_secs: u64,
}

struct UserState {
    limits: Limits,
    loaded: Instant,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

/// The shared limiter. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    global: Limits,
    store: Store,
    users: Arc<Mutex<HashMap<i64, UserState>>>,
    pending: Arc<Mutex<HashMap<(i64, String), UsageDelta>>>,
    keys: Option<Arc<governor::DefaultKeyedRateLimiter<String>>>,
}

/// Today's date (UTC) as stored.
pub fn today() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%d").to_string()
}

/// Seconds until the next UTC midnight, when daily quotas reset.
pub fn secs_to_midnight() -> u64 {
    let now = jiff::Timestamp::now().as_second();
    (86_400 - now.rem_euclid(86_400)).max(1) as u64
}

fn merge(global: Limits, o: LimitOverrides) -> Limits {
    Limits {
        requests_per_minute: o.requests_per_minute.unwrap_or(global.requests_per_minute),
        key_requests_per_minute: global.key_requests_per_minute,
        daily_generated_tokens: o
            .daily_generated_tokens
            .unwrap_or(global.daily_generated_tokens),
        daily_audio_minutes: o.daily_audio_minutes.unwrap_or(global.daily_audio_minutes),
        daily_images: o.daily_images.unwrap_or(global.daily_images),
    }
}

impl Limiter {
    /// A limiter with the global limits; spawns the flusher on the current runtime.
    pub fn new(global: Limits, store: Store) -> Limiter {
        let limiter = Limiter {
            global,
            store,
            users: Arc::default(),
            pending: Arc::default(),
            keys: NonZeroU32::new(global.key_requests_per_minute)
                .map(|rpm| Arc::new(RateLimiter::keyed(Quota::per_minute(rpm)))),
        };
        let flusher = limiter.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                if let Err(e) = flusher.flush().await {
                    tracing::error!(error = %e, "could not record usage");
                }
            }
        });
        limiter
    }

    /// A user's effective limits (cached).
    pub async fn effective(&self, user_id: i64) -> Result<Limits, StoreError> {
        if let Some(limits) = self.users.lock().ok().and_then(|u| {
            u.get(&user_id)
                .filter(|s| s.loaded.elapsed() < LIMITS_TTL)
                .map(|s| s.limits)
        }) {
            return Ok(limits);
        }
        let overrides = self.store.user_limits(user_id).await?;
        let limits = merge(self.global, overrides);
        if let Ok(mut users) = self.users.lock() {
            let previous = users.remove(&user_id);
            // Keep the limiter (and its state) when the rate did not change.
            let limiter = match previous {
                Some(s) if s.limits.requests_per_minute == limits.requests_per_minute => s.limiter,
                _ => NonZeroU32::new(limits.requests_per_minute)
                    .map(|rpm| Arc::new(RateLimiter::direct(Quota::per_minute(rpm)))),
            };
            users.insert(
                user_id,
                UserState {
                    limits,
                    loaded: Instant::now(),
                    limiter,
                },
            );
        }
        Ok(limits)
    }

    /// Forgets cached limits (after an override changes in this process).
    pub fn invalidate(&self, user_id: i64) {
        if let Ok(mut users) = self.users.lock() {
            users.remove(&user_id);
        }
    }

    /// Counts one request and checks the user's request rate.
    pub async fn request(&self, user_id: i64) -> Result<Result<(), Exceeded>, StoreError> {
        let limits = self.effective(user_id).await?;
        let limiter = self
            .users
            .lock()
            .ok()
            .and_then(|u| u.get(&user_id).and_then(|s| s.limiter.clone()));
        if let Some(limiter) = limiter
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Ok(Err(Exceeded {
                what: format!(
                    "the limit of {} requests per minute",
                    limits.requests_per_minute
                ),
                retry_after_secs: wait.as_secs().max(1),
            }));
        }
        self.add(
            user_id,
            UsageDelta {
                requests: 1,
                ..UsageDelta::default()
            },
        );
        Ok(Ok(()))
    }

    /// Checks the request rate of one API key.
    pub fn key_request(&self, key_id: &str) -> Result<(), Exceeded> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        keys.check_key(&key_id.to_string())
            .map_err(|not_until| Exceeded {
                what: format!(
                    "the limit of {} requests per minute for API key {key_id}",
                    self.global.key_requests_per_minute
                ),
                retry_after_secs: not_until
                    .wait_time_from(DefaultClock::default().now())
                    .as_secs()
                    .max(1),
            })
    }

    /// Checks the daily generated-token quota before a generation starts.
    pub async fn check_tokens(&self, user_id: i64) -> Result<Result<(), Exceeded>, StoreError> {
        let limits = self.effective(user_id).await?;
        if limits.daily_generated_tokens == 0 {
            return Ok(Ok(()));
        }
        let day = today();
        let stored = self
            .store
            .usage(Some(user_id), day.clone())
            .await?
            .iter()
            .map(|r| r.generated_tokens)
            .sum::<i64>();
        let pending = self
            .pending
            .lock()
            .ok()
            .and_then(|p| p.get(&(user_id, day)).map(|d| d.generated_tokens))
            .unwrap_or(0);
        if (stored + pending) as u64 >= limits.daily_generated_tokens {
            return Ok(Err(Exceeded {
                what: format!(
                    "the daily quota of {} generated tokens",
                    limits.daily_generated_tokens
                ),
                retry_after_secs: secs_to_midnight(),
            }));
        }
        Ok(Ok(()))
    }

    /// Records the tokens of a finished (or stopped) generation.
    pub fn record_tokens(&self, user_id: i64, prompt: u32, generated: u32) {
        self.add(
            user_id,
            UsageDelta {
                prompt_tokens: prompt.into(),
                generated_tokens: generated.into(),
                ..UsageDelta::default()
            },
        );
    }

    fn add(&self, user_id: i64, delta: UsageDelta) {
        if user_id <= 0 {
            return; // the anonymous principal of an auth-less daemon has no account
        }
        if let Ok(mut pending) = self.pending.lock() {
            let entry = pending.entry((user_id, today())).or_default();
            entry.requests += delta.requests;
            entry.prompt_tokens += delta.prompt_tokens;
            entry.generated_tokens += delta.generated_tokens;
        }
    }

    /// Writes pending usage to the store.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let batch: Vec<(i64, String, UsageDelta)> = match self.pending.lock() {
            Ok(mut pending) => pending
                .drain()
                .map(|((u, d), delta)| (u, d, delta))
                .collect(),
            Err(_) => return Ok(()),
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.store.add_usage(batch).await
    }
}
