//! `appliance backup create|list|verify` and `appliance restore`, on the host.
//!
//! Backups are made directly from the data dir (a consistent database copy is safe
//! beside a running daemon). A restore needs the data dir to itself: it takes the
//! instance lock (stopping the daemon first with `--stop`), so no daemon can start
//! until the restored tree is in place.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::backup::{self, Kind, Options, Sources};
use crate::cli::{BackupCommand, exit};
use crate::config::Loaded;
use crate::gpu::human_bytes;
use crate::lock::{InstanceLock, LockError};

/// Runs one `backup` subcommand.
pub fn run(loaded: &Loaded, command: &BackupCommand) -> anyhow::Result<u8> {
    let dir = loaded.config.backup_dir();
    match command {
        BackupCommand::Create {
            to,
            with_models,
            pre_upgrade,
        } => {
            let options = Options {
                kind: if *pre_upgrade {
                    Kind::PreUpgrade
                } else {
                    Kind::Manual
                },
                with_models: *with_models,
            };
            let sources = Sources::of(loaded);
            if !sources.db.is_file() {
                anyhow::bail!(
                    "there is no database at {} to back up (wrong --data-dir, or never started?)",
                    sources.db.display()
                );
            }
            let started = Instant::now();
            let last = parking_lot::Mutex::new(Instant::now());
            let report = |fraction: f64, what: &str| {
                let mut last = last.lock();
                if last.elapsed() >= Duration::from_secs(2) || fraction >= 1.0 {
                    *last = Instant::now();
                    eprintln!("{:>5.1}% {what}", fraction * 100.0);
                }
            };
            let info = backup::create(&sources, &dir, to.as_deref(), &options, &report)?;
            println!(
                "backup {} ({}, {} files, {} rows, schema {}) in {:.1} s",
                info.path.display(),
                human_bytes(info.bytes),
                info.manifest.members.len() - 1,
                info.manifest.rows.values().sum::<i64>(),
                info.manifest.schema_version,
                started.elapsed().as_secs_f64()
            );
            let detail = serde_json::json!({"archive": info.name, "bytes": info.bytes, "kind": options.kind});
            if let Err(e) = super::accounts::record(loaded, "backup.create", &info.name, detail) {
                eprintln!("warning: the backup was made but could not be audited: {e:#}");
            }
        }
        BackupCommand::List => {
            let backups = backup::list(&dir);
            if backups.is_empty() {
                println!("no backups in {}", dir.display());
                return Ok(exit::OK);
            }
            println!(
                "{:<40} {:<12} {:>10} {:>7} {:>6} {:>9}",
                "ARCHIVE", "KIND", "SIZE", "SCHEMA", "FILES", "VERSION"
            );
            for b in backups {
                println!(
                    "{:<40} {:<12} {:>10} {:>7} {:>6} {:>9}",
                    b.name,
                    format!("{:?}", b.manifest.kind).to_lowercase(),
                    human_bytes(b.bytes),
                    b.manifest.schema_version,
                    b.manifest.members.len().saturating_sub(1),
                    b.manifest.app_version
                );
            }
        }
        BackupCommand::Verify { file } => {
            let busy = Duration::from_millis(loaded.config.store.busy_timeout_ms);
            match backup::verify(file, busy) {
                Ok(v) => println!(
                    "ok: {} members ({}) match their sha256; the database passes integrity_check and holds the {} rows its manifest counted (made {} by {})",
                    v.members,
                    human_bytes(v.bytes),
                    v.manifest.rows.values().sum::<i64>(),
                    v.manifest.created_at,
                    v.manifest.app_version
                ),
                Err(e) => {
                    eprintln!("error: {} failed verification: {e}", file.display());
                    return Ok(exit::CHECKS_FAILED);
                }
            }
        }
    }
    Ok(exit::OK)
}

/// `appliance restore FILE`.
pub fn restore(loaded: &Loaded, file: &Path, stop: bool, with_config: bool) -> anyhow::Result<u8> {
    let config = &loaded.config;
    if !file.is_file() {
        anyhow::bail!("{} is not a file", file.display());
    }
    let lock = match take_lock(&config.lock_path(), stop)? {
        Some(lock) => lock,
        None => return Ok(exit::ALREADY_RUNNING),
    };
    let busy = Duration::from_millis(config.store.busy_timeout_ms);
    let started = Instant::now();
    let report = backup::restore(file, &config.paths.data_dir, &config.paths.models_dir, busy)
        .with_context(|| {
            format!(
                "restoring {} (the data dir was not changed)",
                file.display()
            )
        })?;
    drop(lock);
    let m = &report.manifest;
    println!(
        "restored {} (made {} by appliance {}, schema {}, {} rows) into {} in {:.1} s",
        file.display(),
        m.created_at,
        m.app_version,
        m.schema_version,
        m.rows.values().sum::<i64>(),
        config.paths.data_dir.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(previous) = &report.previous {
        println!(
            "the data dir as it was is now {} (delete it once satisfied)",
            previous.display()
        );
    }
    if !report.missing_models.is_empty() {
        println!(
            "{} model file(s) the backup lists are not in {} (fetch them again, e.g. `scripts/fetch-models` or `appliance models pull`): {}",
            report.missing_models.len(),
            config.paths.models_dir.display(),
            report.missing_models.join(", ")
        );
    }
    match (&report.config, &loaded.file, with_config) {
        (Some(saved), Some(current), true) => {
            let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
            let aside = current.with_extension(format!("toml.before-restore-{stamp}"));
            fs_err::copy(current, &aside)?;
            fs_err::copy(saved, current)?;
            println!(
                "configuration restored to {} (the previous one is {})",
                current.display(),
                aside.display()
            );
        }
        (Some(saved), _, _) => println!(
            "the backed-up configuration is at {} (use --with-config to put it in place)",
            saved.display()
        ),
        _ => {}
    }
    let detail = serde_json::json!({
        "archive": file.file_name().map(|n| n.to_string_lossy().to_string()),
        "made_at": m.created_at,
        "app_version": m.app_version,
        "schema_version": m.schema_version,
    });
    let target = file
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().to_string());
    if let Err(e) = super::accounts::record(loaded, "backup.restore", &target, detail) {
        eprintln!("warning: restored, but the restore could not be audited: {e:#}");
    }
    if stop {
        println!("start the daemon again (e.g. `systemctl start appliance`)");
    }
    Ok(exit::OK)
}

/// The data dir's lock, stopping its daemon first when asked. `None`: a daemon runs
/// and may not be stopped (said on stderr).
fn take_lock(path: &Path, stop: bool) -> anyhow::Result<Option<InstanceLock>> {
    match InstanceLock::acquire(path) {
        Ok(lock) => return Ok(Some(lock)),
        Err(LockError::Held { pid, .. }) if !stop => {
            eprintln!(
                "error: the daemon{} is running on this data dir; stop it first (`systemctl stop appliance`) or pass --stop",
                pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
            );
            return Ok(None);
        }
        Err(LockError::Held { pid: Some(pid), .. }) => {
            eprintln!("stopping the daemon (PID {pid})…");
            let pid = rustix::process::Pid::from_raw(pid as i32)
                .context("the lock names an invalid PID")?;
            rustix::process::kill_process(pid, rustix::process::Signal::TERM)
                .context("sending SIGTERM to the daemon")?;
        }
        Err(e) => return Err(e.into()),
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        match InstanceLock::acquire(path) {
            Ok(lock) => return Ok(Some(lock)),
            Err(LockError::Held { .. }) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the daemon did not stop within 90 s; nothing was restored")
}
