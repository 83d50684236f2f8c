//! Backups inside the daemon: the `backup.create` job (asked for through the API or
//! due by the schedule), the schedule itself, retention, and what `/metrics`,
//! `/readyz` and the admin page learn about the newest good archive.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::json;

use super::{BackupInfo, Kind, Options, Sources};
use crate::jobs::{Handler, JobContext, JobError, Jobs};
use crate::store::Store;
use crate::store::accounts::AuditEntry;
use crate::store::jobs::Job;

/// The job kind.
pub const BACKUP_JOB: &str = "backup.create";

/// How often the schedule looks whether a backup is due.
const SCHEDULE_TICK: Duration = Duration::from_secs(60);

/// The daemon's backups. Cheap to clone.
#[derive(Clone)]
pub struct Backups {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Sources,
    dir: PathBuf,
    schedule: Schedule,
    keep: usize,
    store: Store,
}

/// How long after start the first scheduled backup of an installation without one is
/// due (at most the schedule's interval).
const FIRST_AFTER: Duration = Duration::from_secs(3600);

/// When backups are due, and when the newest one is too old.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    every: Option<Duration>,
    /// When the daemon started (the first backup is due an hour later).
    started_at: jiff::Timestamp,
}

impl Schedule {
    /// Every `hours` (0: none), counting from now for an installation without backups.
    pub fn new(hours: u64) -> Schedule {
        Schedule {
            every: (hours > 0).then(|| Duration::from_secs(hours * 3600)),
            started_at: jiff::Timestamp::now(),
        }
    }

    /// Hours between scheduled backups (0: none).
    pub fn hours(&self) -> u64 {
        self.every.map_or(0, |d| d.as_secs() / 3600)
    }

    /// When the next backup is due after one made at `last` (`None`: no schedule;
    /// `last` `None`: an hour after start, or the interval if shorter).
    pub fn next_due(&self, last: Option<jiff::Timestamp>) -> Option<jiff::Timestamp> {
        let every = self.every?;
        let (from, after) = match last {
            Some(last) => (last, every),
            None => (self.started_at, every.min(FIRST_AFTER)),
        };
        from.checked_add(jiff::SignedDuration::try_from(after).ok()?)
            .ok()
    }

    /// Whether the newest good archive is older than the schedule allows (a grace of
    /// half the interval, at least an hour, for a slow backup).
    pub fn overdue(&self, last: Option<jiff::Timestamp>) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        let grace = (every / 2).max(Duration::from_secs(3600));
        let Some(last) = last else {
            // None yet: overdue once the first one should have been made.
            let up = jiff::Timestamp::now().duration_since(self.started_at);
            return up.as_secs() > (every.min(FIRST_AFTER) + grace).as_secs() as i64;
        };
        let age = jiff::Timestamp::now().duration_since(last);
        age.as_secs() > (every + grace).as_secs() as i64
    }
}

impl Backups {
    /// Backups of `sources` into `dir`, every `schedule_hours` (0: none), keeping
    /// `keep` scheduled archives.
    pub fn new(
        sources: Sources,
        dir: PathBuf,
        schedule_hours: u64,
        keep: u32,
        store: Store,
    ) -> Backups {
        Backups {
            inner: Arc::new(Inner {
                sources,
                dir,
                schedule: Schedule::new(schedule_hours),
                keep: keep.max(1) as usize,
                store,
            }),
        }
    }

    /// Where archives go.
    pub fn dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.inner.schedule
    }

    /// Scheduled archives kept.
    pub fn keep(&self) -> usize {
        self.inner.keep
    }

    /// Every archive, newest first (blocking: reads the directory).
    pub fn list(&self) -> Vec<BackupInfo> {
        super::list(&self.inner.dir)
    }

    /// The newest archive, on a blocking thread.
    pub async fn newest(&self) -> Option<BackupInfo> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.list().into_iter().next())
            .await
            .ok()
            .flatten()
    }

    /// The job handler for `backup.create` (payload: `kind`, `with_models`,
    /// `actor`).
    pub fn handler(&self) -> Handler {
        let this = self.clone();
        Arc::new(move |job: Job, ctx: JobContext| {
            let this = this.clone();
            async move { this.run(job, ctx).await }.boxed()
        })
    }

    async fn run(&self, job: Job, ctx: JobContext) -> Result<(), JobError> {
        let kind = match job.payload["kind"].as_str() {
            Some("scheduled") => Kind::Scheduled,
            _ => Kind::Manual,
        };
        let options = Options {
            kind,
            with_models: job.payload["with_models"].as_bool().unwrap_or(false),
        };
        let (progress_tx, mut progress_rx) = tokio::sync::mpsc::channel::<(f64, String)>(64);
        let inner = self.inner.clone();
        let work = tokio::task::spawn_blocking(move || {
            let report = |fraction: f64, what: &str| {
                let _ = progress_tx.try_send((fraction, what.to_string()));
            };
            let made = super::create(&inner.sources, &inner.dir, None, &options, &report);
            let pruned = match (&made, kind) {
                (Ok(_), Kind::Scheduled) => super::prune(&inner.dir, inner.keep),
                _ => Vec::new(),
            };
            (made, pruned)
        });
        let forward = async {
            while let Some((fraction, what)) = progress_rx.recv().await {
                ctx.progress(fraction, what).await;
            }
        };
        let (result, ()) = tokio::join!(work, forward);
        let (made, pruned) =
            result.map_err(|_| JobError::Fatal("the backup thread failed".into()))?;
        let actor = job.payload["actor"].as_str().map(str::to_string);
        match made {
            Ok(info) => {
                tracing::info!(
                    archive = %info.path.display(),
                    bytes = info.bytes,
                    ms = info.manifest.duration_ms,
                    pruned = pruned.len(),
                    "backup made"
                );
                self.audit(actor, true, json!({"archive": info.name, "bytes": info.bytes, "kind": kind, "pruned": pruned}))
                    .await;
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "backup failed");
                self.audit(actor, false, json!({"kind": kind})).await;
                // The message goes to administrators only (the admin page, the jobs API
                // for the job's owner), but stays free of paths all the same.
                let message = match e {
                    super::BackupError::Io(_) => {
                        "writing the archive failed (disk full? see the daemon log)".to_string()
                    }
                    other => format!("{other}"),
                };
                if job.attempts >= job.max_attempts {
                    Err(JobError::Fatal(message))
                } else {
                    Err(JobError::Retry(message))
                }
            }
        }
    }

    async fn audit(&self, actor: Option<String>, success: bool, detail: serde_json::Value) {
        let entry = AuditEntry {
            id: 0,
            at: jiff::Timestamp::now().to_string(),
            actor: actor.or(Some("schedule".into())),
            action: "backup.create".into(),
            target: None,
            ip: None,
            success,
            detail,
        };
        if let Err(e) = self.inner.store.audit(entry).await {
            tracing::warn!(error = %e, "could not audit a backup");
        }
    }

    /// Queues scheduled backups when due, until the daemon stops.
    pub fn spawn_schedule(&self, jobs: Jobs) {
        if self.inner.schedule.hours() == 0 {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            // Let start-up settle first.
            tokio::time::sleep(Duration::from_secs(5)).await;
            loop {
                this.queue_if_due(&jobs).await;
                tokio::time::sleep(SCHEDULE_TICK).await;
            }
        });
    }

    async fn queue_if_due(&self, jobs: &Jobs) {
        let last = self
            .newest()
            .await
            .and_then(|b| b.manifest.created_at.parse::<jiff::Timestamp>().ok());
        let due = self
            .inner
            .schedule
            .next_due(last)
            .is_some_and(|at| at <= jiff::Timestamp::now());
        if !due || self.running_job().await.is_some() {
            return;
        }
        match self
            .inner
            .store
            .create_job(BACKUP_JOB, None, json!({"kind": "scheduled"}), 3)
            .await
        {
            Ok(job) => {
                tracing::info!(job = job.id, "a scheduled backup is due");
                jobs.wake();
            }
            Err(e) => tracing::warn!(error = %e, "could not queue a scheduled backup"),
        }
    }

    /// The id of a backup job queued or running, if any.
    pub async fn running_job(&self) -> Option<i64> {
        self.inner
            .store
            .active_job_of_kind(BACKUP_JOB)
            .await
            .ok()
            .flatten()
    }
}
