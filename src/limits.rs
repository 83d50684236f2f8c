//! Per-user rate limits and daily quotas, and the usage accounting behind them.
//!
//! Request rates use `governor` (GCRA) limiters, one per user, built from the user's
//! effective limits (global `[limits]` merged with their overrides, re-read every 30 s so
//! CLI changes apply without a restart), one per API key, and one per client address for
//! the routes that need no credentials. Usage is counted in memory and written to the
//! store in batches every two seconds (and at shutdown), so counting never adds a disk
//! write to a request.
//!
//! The daily token quota is enforced by reservation: a generation reserves what it may
//! generate (its `max_tokens`, capped to what is left today) before it starts and
//! settles the real count when it ends, so concurrent requests can never overshoot the
//! quota together, and a request that would cross it is cut to the remainder.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::store::usage::{LimitOverrides, UsageDelta, UsageRow};
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

/// Generated tokens of one user on one day: used (stored and not yet stored) and
/// reserved by generations in progress.
#[derive(Debug, Clone, Copy, Default)]
struct TokenDay {
    used: u64,
    reserved: u64,
}

/// Seconds of audio of one user on one day: used, and reserved by transcriptions in
/// progress.
#[derive(Debug, Clone, Copy, Default)]
struct AudioDay {
    used: f64,
    reserved: f64,
}

/// Audio seconds reserved for one transcription; settle it when the transcript is
/// done, or drop it to give the seconds back.
pub struct AudioReservation {
    limiter: Limiter,
    user_id: i64,
    day: String,
    seconds: f64,
    settled: bool,
}

impl AudioReservation {
    /// Counts the seconds as used.
    pub fn settle(mut self) {
        self.settled = true;
        self.limiter
            .release_audio(self.user_id, &self.day, self.seconds);
        self.limiter.add(
            self.user_id,
            UsageDelta {
                audio_seconds: self.seconds,
                ..UsageDelta::default()
            },
        );
    }
}

impl Drop for AudioReservation {
    fn drop(&mut self) {
        if !self.settled {
            self.limiter
                .release_audio(self.user_id, &self.day, self.seconds);
        }
    }
}

struct UserState {
    limits: Limits,
    loaded: Instant,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

/// Whom a per-client limit counts against: a network address, or a Unix user on the
/// daemon's Unix socket (every local user would otherwise share one loopback address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// A TCP client's address.
    Address(IpAddr),
    /// A process of this Unix user on the Unix socket.
    LocalUser(u32),
}

/// The shared limiter. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    global: Limits,
    store: Store,
    users: Arc<Mutex<HashMap<i64, UserState>>>,
    pending: Arc<Mutex<HashMap<(i64, String), UsageDelta>>>,
    keys: Option<Arc<governor::DefaultKeyedRateLimiter<String>>>,
    public: Option<Arc<governor::DefaultKeyedRateLimiter<Client>>>,
    tokens: Arc<Mutex<HashMap<(i64, String), TokenDay>>>,
    audio: Arc<Mutex<HashMap<(i64, String), AudioDay>>>,
    /// Held while a flush moves pending usage into the store, and while a user's day
    /// of tokens is first read from it, so that read sees every token exactly once.
    flushing: Arc<tokio::sync::Mutex<()>>,
}

/// Tokens reserved for one generation. Settle it with the real count when the
/// generation ends; dropping it unsettled releases the reservation unused.
pub struct Reservation {
    limiter: Limiter,
    user_id: i64,
    day: String,
    granted: u64,
    settled: bool,
}

impl Reservation {
    /// Tokens the generation may produce.
    pub fn granted(&self) -> u64 {
        self.granted
    }

    /// Records what the generation really used and releases the reservation.
    pub fn settle(mut self, prompt: u32, generated: u32) {
        self.settled = true;
        self.limiter.release(self.user_id, &self.day, self.granted);
        self.limiter.record_tokens(self.user_id, prompt, generated);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.limiter.release(self.user_id, &self.day, self.granted);
        }
    }
}

fn audio_exceeded(quota_secs: f64) -> Exceeded {
    Exceeded {
        what: format!("the daily quota of {} audio minutes", quota_secs / 60.0),
        retry_after_secs: secs_to_midnight(),
    }
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
        public_requests_per_minute: global.public_requests_per_minute,
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
            public: NonZeroU32::new(global.public_requests_per_minute)
                .map(|rpm| Arc::new(RateLimiter::keyed(Quota::per_minute(rpm)))),
            tokens: Arc::default(),
            audio: Arc::default(),
            flushing: Arc::default(),
        };
        let flusher = limiter.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                if let Err(e) = flusher.flush().await {
                    tracing::error!(error = %e, "could not record usage");
                }
                // Forget the governor state of idle keys and addresses (bounded memory
                // under a spray of addresses).
                if let Some(keys) = &flusher.keys {
                    keys.retain_recent();
                }
                if let Some(public) = &flusher.public {
                    public.retain_recent();
                }
            }
        });
        limiter
    }

    /// A user's effective limits (cached).
    pub async fn effective(&self, user_id: i64) -> Result<Limits, StoreError> {
        if let Some(limits) = self
            .users
            .lock()
            .get(&user_id)
            .filter(|s| s.loaded.elapsed() < LIMITS_TTL)
            .map(|s| s.limits)
        {
            return Ok(limits);
        }
        let overrides = self.store.user_limits(user_id).await?;
        let limits = merge(self.global, overrides);
        let mut users = self.users.lock();
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
        Ok(limits)
    }

    /// Forgets cached limits (after an override changes in this process).
    pub fn invalidate(&self, user_id: i64) {
        self.users.lock().remove(&user_id);
    }

    /// Counts one request and checks the user's request rate.
    pub async fn request(&self, user_id: i64) -> Result<Result<(), Exceeded>, StoreError> {
        let limits = self.effective(user_id).await?;
        let limiter = self
            .users
            .lock()
            .get(&user_id)
            .and_then(|s| s.limiter.clone());
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

    /// Checks the request rate of one client on routes without credentials.
    pub fn public_request(&self, client: Client) -> Result<(), Exceeded> {
        let Some(public) = &self.public else {
            return Ok(());
        };
        public.check_key(&client).map_err(|not_until| Exceeded {
            what: format!(
                "the limit of {} requests per minute from one address to routes that need no credentials",
                self.global.public_requests_per_minute
            ),
            retry_after_secs: not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1),
        })
    }

    /// Reserves up to `wanted` generated tokens of the user's daily quota. `Ok(None)`:
    /// no quota applies. The grant may be less than `wanted` (what is left today); it
    /// is never zero.
    pub async fn reserve_tokens(
        &self,
        user_id: i64,
        wanted: u64,
    ) -> Result<Result<Option<Reservation>, Exceeded>, StoreError> {
        if user_id <= 0 {
            return Ok(Ok(None));
        }
        let quota = self.effective(user_id).await?.daily_generated_tokens;
        if quota == 0 {
            return Ok(Ok(None));
        }
        let day = today();
        self.load_token_day(user_id, &day).await?;
        let mut tokens = self.tokens.lock();
        let entry = tokens.entry((user_id, day.clone())).or_default();
        let left = quota.saturating_sub(entry.used + entry.reserved);
        if left == 0 {
            return Ok(Err(Exceeded {
                what: format!("the daily quota of {quota} generated tokens"),
                retry_after_secs: secs_to_midnight(),
            }));
        }
        let granted = wanted.clamp(1, left);
        entry.reserved += granted;
        Ok(Ok(Some(Reservation {
            limiter: self.clone(),
            user_id,
            day,
            granted,
            settled: false,
        })))
    }

    /// Whether the user has any audio left today (`Ok` also when no quota applies):
    /// checked before a transcription starts, so an exhausted user is refused before
    /// the upload is even decoded.
    pub async fn audio_left(&self, user_id: i64) -> Result<Result<(), Exceeded>, StoreError> {
        match self.audio_quota(user_id).await? {
            None => Ok(Ok(())),
            Some((quota_secs, day)) => {
                let audio = self.audio.lock();
                let entry = audio.get(&(user_id, day)).copied().unwrap_or_default();
                if entry.used + entry.reserved >= quota_secs {
                    Ok(Err(audio_exceeded(quota_secs)))
                } else {
                    Ok(Ok(()))
                }
            }
        }
    }

    /// Reserves `seconds` of the user's daily audio quota for a transcription whose
    /// length is now known. `Ok(None)`: no quota applies. Refused whole when less is
    /// left (a transcript is not cut short).
    pub async fn reserve_audio(
        &self,
        user_id: i64,
        seconds: f64,
    ) -> Result<Result<Option<AudioReservation>, Exceeded>, StoreError> {
        let Some((quota_secs, day)) = self.audio_quota(user_id).await? else {
            return Ok(Ok(None));
        };
        let mut audio = self.audio.lock();
        let entry = audio.entry((user_id, day.clone())).or_default();
        let left = quota_secs - entry.used - entry.reserved;
        if seconds > left {
            let mut refused = audio_exceeded(quota_secs);
            refused.what = format!(
                "the daily quota of {} audio minutes ({:.1} minutes are left today; this audio is {:.1})",
                quota_secs / 60.0,
                (left / 60.0).max(0.0),
                seconds / 60.0
            );
            return Ok(Err(refused));
        }
        entry.reserved += seconds;
        Ok(Ok(Some(AudioReservation {
            limiter: self.clone(),
            user_id,
            day,
            seconds,
            settled: false,
        })))
    }

    /// The user's audio quota in seconds and today's date, with today's use loaded;
    /// `None` when no quota applies.
    async fn audio_quota(&self, user_id: i64) -> Result<Option<(f64, String)>, StoreError> {
        if user_id <= 0 {
            return Ok(None);
        }
        let minutes = self.effective(user_id).await?.daily_audio_minutes;
        if minutes == 0 {
            return Ok(None);
        }
        let day = today();
        let key = (user_id, day.clone());
        if !self.audio.lock().contains_key(&key) {
            let _no_flush = self.flushing.lock().await;
            let stored: f64 = self
                .store
                .usage(Some(user_id), day.clone())
                .await?
                .iter()
                .filter(|r| r.day == day)
                .map(|r| r.audio_seconds)
                .sum();
            let pending = self
                .pending
                .lock()
                .get(&key)
                .map_or(0.0, |d| d.audio_seconds);
            let mut audio = self.audio.lock();
            audio.retain(|(_, d), _| *d == day);
            audio.entry(key).or_insert(AudioDay {
                used: stored + pending,
                reserved: 0.0,
            });
        }
        Ok(Some((minutes as f64 * 60.0, day)))
    }

    fn release_audio(&self, user_id: i64, day: &str, seconds: f64) {
        if let Some(entry) = self.audio.lock().get_mut(&(user_id, day.to_string())) {
            entry.reserved = (entry.reserved - seconds).max(0.0);
        }
    }

    /// Makes sure the user's tokens of `day` are known in memory (read once a day).
    async fn load_token_day(&self, user_id: i64, day: &str) -> Result<(), StoreError> {
        let key = (user_id, day.to_string());
        if self.tokens.lock().contains_key(&key) {
            return Ok(());
        }
        let _no_flush = self.flushing.lock().await;
        if self.tokens.lock().contains_key(&key) {
            return Ok(());
        }
        let stored: i64 = self
            .store
            .usage(Some(user_id), day.to_string())
            .await?
            .iter()
            .filter(|r| r.day == day)
            .map(|r| r.generated_tokens)
            .sum();
        let pending = self
            .pending
            .lock()
            .get(&key)
            .map_or(0, |d| d.generated_tokens);
        let mut tokens = self.tokens.lock();
        // Yesterday's entries are done with.
        tokens.retain(|(_, d), _| d == day);
        tokens.insert(
            key,
            TokenDay {
                used: (stored + pending).max(0) as u64,
                reserved: 0,
            },
        );
        Ok(())
    }

    fn release(&self, user_id: i64, day: &str, granted: u64) {
        if let Some(entry) = self.tokens.lock().get_mut(&(user_id, day.to_string())) {
            entry.reserved = entry.reserved.saturating_sub(granted);
        }
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
        let key = (user_id, today());
        if delta.generated_tokens > 0
            && let Some(day) = self.tokens.lock().get_mut(&key)
        {
            day.used += delta.generated_tokens as u64;
        }
        if delta.audio_seconds > 0.0
            && let Some(day) = self.audio.lock().get_mut(&key)
        {
            day.used += delta.audio_seconds;
        }
        let mut pending = self.pending.lock();
        let entry = pending.entry(key).or_default();
        entry.requests += delta.requests;
        entry.prompt_tokens += delta.prompt_tokens;
        entry.generated_tokens += delta.generated_tokens;
        entry.audio_seconds += delta.audio_seconds;
    }

    /// Usage rows from `since_day` on (as [`Store::usage`]), including what is counted
    /// but not written yet: reading usage never writes to disk.
    pub async fn usage(
        &self,
        user: Option<i64>,
        since_day: String,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let mut rows = self.store.usage(user, since_day.clone()).await?;
        let unwritten: Vec<((i64, String), UsageDelta)> = self
            .pending
            .lock()
            .iter()
            .filter(|((u, d), _)| user.is_none_or(|want| want == *u) && *d >= since_day)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for ((user_id, day), delta) in unwritten {
            let at = rows
                .iter()
                .position(|r| r.user_id == user_id && r.day == day);
            let row = match at {
                Some(at) => &mut rows[at],
                None => {
                    let Ok(owner) = self.store.user(user_id).await else {
                        continue;
                    };
                    rows.push(UsageRow {
                        user_id,
                        user_name: owner.name,
                        day,
                        ..UsageRow::default()
                    });
                    rows.last_mut().expect("pushed")
                }
            };
            row.requests += delta.requests;
            row.prompt_tokens += delta.prompt_tokens;
            row.generated_tokens += delta.generated_tokens;
            row.audio_seconds += delta.audio_seconds;
        }
        rows.sort_by(|a, b| {
            b.day
                .cmp(&a.day)
                .then_with(|| a.user_name.cmp(&b.user_name))
        });
        Ok(rows)
    }

    /// Writes pending usage to the store.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _flushing = self.flushing.lock().await;
        let batch: Vec<(i64, String, UsageDelta)> = self
            .pending
            .lock()
            .drain()
            .map(|((u, d), delta)| (u, d, delta))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.add_usage(batch.clone()).await {
            // Keep the counts for the next attempt rather than lose them.
            let mut pending = self.pending.lock();
            for (u, d, delta) in batch {
                let entry = pending.entry((u, d)).or_default();
                entry.requests += delta.requests;
                entry.prompt_tokens += delta.prompt_tokens;
                entry.generated_tokens += delta.generated_tokens;
                entry.audio_seconds += delta.audio_seconds;
            }
            return Err(e);
        }
        Ok(())
    }
}
