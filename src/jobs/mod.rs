//! Durable jobs: work that outlives a request (indexing a document now; long
//! transcriptions, images and backups later) and survives a restart.
//!
//! Jobs live in the `jobs` table ([`crate::store::jobs`]). [`Jobs`] runs a fixed number
//! of runner tasks that claim queued jobs, call the handler registered for the job's
//! kind, and record the outcome: done, failed (with the handler's reason), or retried
//! with exponential backoff until `max_attempts`, then failed with the last reason.
//! Handlers do their heavy work off the async runtime (child processes, the engine's
//! workers, the store's threads).
//!
//! A daemon that dies (even by `kill -9`) leaves its jobs `running`; the next start
//! queues them again ([`Jobs::start`]), so a handler must be idempotent: the document
//! handler replaces a document's chunks in one transaction, so a rerun never duplicates
//! them. Cancelling a queued job is immediate; a running one is told through its
//! [`JobContext`] and stops at its next check.
//!
//! Every change of a job is broadcast ([`Jobs::subscribe`]) for live progress streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::store::jobs::{Job, Outcome};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// How a handler's attempt failed.
#[derive(Debug, Clone)]
pub enum JobError {
    /// For good; the message is shown to the job's owner.
    Fatal(String),
    /// Worth another attempt (a busy or crashed engine, a database hiccup).
    Retry(String),
    /// The job was cancelled.
    Cancelled,
}

/// Runs one attempt of a job of some kind.
pub type Handler =
    Arc<dyn Fn(Job, JobContext) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

/// What a handler gets besides its job: progress reporting and cancellation.
#[derive(Clone)]
pub struct JobContext {
    job: Job,
    store: Store,
    events: broadcast::Sender<Job>,
    cancel: CancellationToken,
    stop: CancellationToken,
    last_write: Arc<Mutex<Option<Instant>>>,
}

impl JobContext {
    /// Reports progress (0..1) and what is being done. Broadcast at once; written to
    /// the database at most twice a second.
    pub async fn progress(&self, progress: f64, note: impl Into<String>) {
        let note = note.into();
        let mut job = self.job.clone();
        job.progress = progress.clamp(0.0, 1.0);
        job.note = note.clone();
        let _ = self.events.send(job);
        let due = {
            let mut last = self.last_write.lock();
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_millis(500));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due && let Err(e) = self.store.job_progress(self.job.id, progress, note).await {
            tracing::debug!(job = self.job.id, error = %e, "could not record job progress");
        }
    }

    /// Whether the daemon is stopping (the job will resume at the next start).
    pub fn is_shutdown(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Fails with [`JobError::Cancelled`] when the job was cancelled.
    pub fn check(&self) -> Result<(), JobError> {
        if self.is_cancelled() {
            Err(JobError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Resolves when the job is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

/// Settings (from `[jobs]`).
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Jobs run at once.
    pub concurrency: u32,
    /// First retry delay; each further retry waits four times longer.
    pub retry_base: Duration,
}

struct Inner {
    store: Store,
    metrics: Metrics,
    config: JobsConfig,
    handlers: HashMap<&'static str, Handler>,
    running: Mutex<HashMap<i64, CancellationToken>>,
    events: broadcast::Sender<Job>,
    wake: Notify,
    stop: CancellationToken,
}

/// The job runner. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl Jobs {
    /// A runner with `handlers` by kind (not started).
    pub fn new(
        store: Store,
        metrics: Metrics,
        config: JobsConfig,
        handlers: HashMap<&'static str, Handler>,
    ) -> Jobs {
        let (events, _) = broadcast::channel(1024);
        Jobs {
            inner: Arc::new(Inner {
                store,
                metrics,
                config,
                handlers,
                running: Mutex::default(),
                events,
                wake: Notify::new(),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// Queues again the jobs a dead daemon left running, then starts the runners.
    pub async fn start(&self) -> Result<(), StoreError> {
        let resumed = self.inner.store.requeue_orphaned_jobs().await?;
        if resumed > 0 {
            tracing::info!(jobs = resumed, "resuming jobs interrupted by the last stop");
        }
        for n in 0..self.inner.config.concurrency.max(1) {
            let jobs = self.clone();
            tokio::spawn(async move { jobs.run_loop(n).await });
        }
        Ok(())
    }

    /// Tells the runners there may be new work.
    pub fn wake(&self) {
        self.inner.wake.notify_waiters();
        self.inner.wake.notify_one();
    }

    /// Every job change, as it happens.
    pub fn subscribe(&self) -> broadcast::Receiver<Job> {
        self.inner.events.subscribe()
    }

    /// Publishes a job's current state (after a change made outside the runner).
    pub fn publish(&self, job: Job) {
        let _ = self.inner.events.send(job);
    }

    /// Cancels a job the owner (when given) owns: a queued one at once, a running one
    /// at its handler's next check.
    pub async fn cancel(&self, id: i64, owner: Option<i64>) -> Result<Job, StoreError> {
        let job = self.inner.store.cancel_job(id, owner).await?;
        if job.state == "running"
            && let Some(token) = self.inner.running.lock().get(&id)
        {
            token.cancel();
        }
        self.publish(job.clone());
        Ok(job)
    }

    /// Stops claiming new jobs. Running attempts are abandoned with the process and
    /// resumed at the next start.
    pub fn shutdown(&self) {
        self.inner.stop.cancel();
        for token in self.inner.running.lock().values() {
            token.cancel();
        }
    }

    async fn run_loop(&self, n: u32) {
        let kinds: Vec<String> = self.inner.handlers.keys().map(|k| k.to_string()).collect();
        loop {
            if self.inner.stop.is_cancelled() {
                return;
            }
            let job = match self.inner.store.claim_job(kinds.clone()).await {
                Ok(job) => job,
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!(runner = n, error = %e, "cannot claim a job");
                    None
                }
            };
            match job {
                Some(job) => self.run_one(job).await,
                None => {
                    // Sleep until woken, or until the next retry may be due.
                    tokio::select! {
                        _ = self.inner.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.inner.stop.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn run_one(&self, job: Job) {
        let started = Instant::now();
        let Some(handler) = self.inner.handlers.get(job.kind.as_str()).cloned() else {
            return;
        };
        let token = self.inner.stop.child_token();
        self.inner.running.lock().insert(job.id, token.clone());
        tracing::info!(job = job.id, kind = %job.kind, attempt = job.attempts, "job started");
        let _ = self.inner.events.send(job.clone());
        let context = JobContext {
            job: job.clone(),
            store: self.inner.store.clone(),
            events: self.inner.events.clone(),
            cancel: token.clone(),
            stop: self.inner.stop.clone(),
            last_write: Arc::default(),
        };
        // A panicking handler fails its job, not the runner.
        let result = match tokio::spawn(handler(job.clone(), context)).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(job = job.id, error = %e, "a job handler panicked");
                Err(JobError::Fatal(
                    "the job failed unexpectedly; the daemon log has details".into(),
                ))
            }
        };
        self.inner.running.lock().remove(&job.id);
        if self.inner.stop.is_cancelled() && matches!(result, Err(JobError::Cancelled)) {
            return; // daemon stopping: left running, resumed at the next start
        }
        let outcome = match &result {
            Ok(()) => Outcome::Done,
            Err(JobError::Fatal(message)) => Outcome::Failed(message.clone()),
            Err(JobError::Cancelled) => Outcome::Cancelled,
            Err(JobError::Retry(message)) => {
                let factor = 4u32.saturating_pow(job.attempts.clamp(1, 8) as u32 - 1);
                let delay = self.inner.config.retry_base.saturating_mul(factor);
                Outcome::Retry {
                    error: message.clone(),
                    run_after: crate::store::conversations::timestamp_after(delay),
                }
            }
        };
        match self.inner.store.finish_job(job.id, outcome).await {
            Ok(done) => {
                let label = match done.state.as_str() {
                    "done" => "done",
                    "failed" => "failed",
                    "cancelled" => "cancelled",
                    _ => "retried",
                };
                tracing::info!(job = job.id, kind = %job.kind, outcome = label, secs = started.elapsed().as_secs_f64(), error = ?done.error, "job attempt ended");
                self.inner
                    .metrics
                    .job_finished(&job.kind, label, started.elapsed());
                let _ = self.inner.events.send(done);
            }
            Err(e) => tracing::error!(job = job.id, error = %e, "cannot record a job's outcome"),
        }
    }
}

/// The `document_id` a job's payload names, if any.
pub fn payload_id(job: &Job, key: &str) -> Option<i64> {
    job.payload.get(key).and_then(Value::as_i64)
}
