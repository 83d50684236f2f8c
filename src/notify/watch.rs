//! What raises notifications inside the daemon: a watcher of jobs (a failed job; a
//! failed backup), and a minute-by-minute look at the disk, the GPUs, worker crashes
//! and the backup schedule. Login throttling notifies from the login handler.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Notifier, Severity};
use crate::backup::{BACKUP_JOB, Backups};
use crate::gpu::Gpu;
use crate::jobs::Jobs;
use crate::telemetry::Metrics;

/// What the watchers look at.
pub struct Watched {
    /// The jobs runner (its event feed).
    pub jobs: Jobs,
    /// Backups (the schedule and the newest archive).
    pub backups: Backups,
    /// The GPUs' latest snapshot.
    pub gpu: Gpu,
    /// Worker crash counts.
    pub metrics: Metrics,
    /// The data dir, and the free space below which it fails readiness.
    pub data_dir: PathBuf,
    /// `health.min_free_disk_mb`.
    pub min_free_mb: u64,
    /// `notify.gpu_temperature_c`.
    pub gpu_hot_c: u32,
    /// The TLS certificate, when TLS is on.
    pub certificate: Option<PathBuf>,
}

/// Crashes of one model within this window that make a crash loop.
const CRASH_WINDOW: Duration = Duration::from_secs(600);
const CRASH_LOOP: usize = 3;
const LOOK_EVERY: Duration = Duration::from_secs(60);

/// Starts the watchers; they end with the runtime.
pub fn spawn_watchers(notifier: Notifier, watched: Watched) {
    let mut events = watched.jobs.subscribe();
    let feed = notifier.clone();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(job) if job.state == "failed" => {
                    let reason = job
                        .error
                        .clone()
                        .unwrap_or_else(|| "no reason given".into());
                    if job.kind == BACKUP_JOB {
                        feed.notify(
                            "backup_failed",
                            "backup",
                            Severity::Critical,
                            "Backup failed",
                            format!("{reason}. Make one by hand: `appliance backup create`; see `journalctl -u appliance`."),
                        );
                    } else {
                        feed.notify(
                            "job_failed",
                            &job.kind,
                            Severity::Warning,
                            format!("A {} job failed", job.kind),
                            format!("job {}: {reason}", job.id),
                        );
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    tokio::spawn(async move {
        let mut crashes: HashMap<String, (u64, VecDeque<Instant>)> = HashMap::new();
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            look(&notifier, &watched, &mut crashes).await;
        }
    });
}

async fn look(
    notifier: &Notifier,
    watched: &Watched,
    crashes: &mut HashMap<String, (u64, VecDeque<Instant>)>,
) {
    // The disk.
    let dir = watched.data_dir.clone();
    let free = tokio::task::spawn_blocking(move || {
        rustix::fs::statvfs(&dir)
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize) >> 20)
    })
    .await
    .ok()
    .flatten();
    if let Some(free_mb) = free {
        let min = watched.min_free_mb;
        if free_mb < min.saturating_mul(4) {
            let severity = if free_mb < min {
                Severity::Critical
            } else {
                Severity::Warning
            };
            notifier.notify(
                "disk_low",
                "data",
                severity,
                "Disk space low",
                format!(
                    "{free_mb} MiB free on the data dir's disk (writes fail below {min} MiB). Free space or move old backups."
                ),
            );
        }
    }
    // The GPUs.
    for device in &watched.gpu.latest().devices {
        if let Some(t) = device.temperature_c.filter(|t| *t >= watched.gpu_hot_c) {
            notifier.notify(
                "gpu_hot",
                &device.index.to_string(),
                Severity::Warning,
                format!("GPU {} is hot", device.index),
                format!(
                    "{} at {t} °C (threshold {} °C); check cooling and `nvidia-smi -q -d TEMPERATURE,PERFORMANCE`.",
                    device.name, watched.gpu_hot_c
                ),
            );
        }
    }
    // Worker crash loops.
    for (model, count) in watched.metrics.worker_crashes() {
        let (seen, times) = crashes.entry(model.clone()).or_default();
        for _ in *seen..count {
            times.push_back(Instant::now());
        }
        *seen = count;
        while times.front().is_some_and(|t| t.elapsed() > CRASH_WINDOW) {
            times.pop_front();
        }
        if times.len() >= CRASH_LOOP {
            notifier.notify(
                "worker_crash_loop",
                &model,
                Severity::Critical,
                format!("Model `{model}` keeps crashing"),
                format!(
                    "its worker crashed {} times in 10 minutes; see `journalctl -u appliance` for its last words",
                    times.len()
                ),
            );
        }
    }
    // The TLS certificate.
    if let Some(cert) = watched.certificate.clone() {
        let expiry = tokio::task::spawn_blocking(move || crate::health::certificate_expiry(&cert))
            .await
            .ok()
            .and_then(Result::ok);
        if let Some(at) = expiry {
            let days = (at - jiff::Timestamp::now().as_second()).div_euclid(86_400);
            if days < crate::health::CERTIFICATE_WARN_DAYS {
                notifier.notify(
                    "certificate_expiring",
                    "tls",
                    if days < 3 { Severity::Critical } else { Severity::Warning },
                    "TLS certificate expiring",
                    format!("the daemon's certificate expires in {days} days; renew it and reload the daemon (SIGHUP)"),
                );
            }
        }
    }
    // The backup schedule.
    let newest = watched.backups.newest().await;
    let last = newest
        .as_ref()
        .and_then(|b| b.manifest.created_at.parse::<jiff::Timestamp>().ok());
    if watched.backups.schedule().overdue(last) {
        notifier.notify(
            "backup_stale",
            "backup",
            Severity::Warning,
            "Backups are overdue",
            match &newest {
                Some(b) => format!(
                    "the newest backup is from {}; the schedule is every {} h. Check `appliance backup list` and the daemon log.",
                    b.manifest.created_at,
                    watched.backups.schedule().hours()
                ),
                None => "no backup has been made yet; run `appliance backup create`.".into(),
            },
        );
    }
}
