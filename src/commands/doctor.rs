//! `appliance doctor`: offline checks of everything the daemon needs, one line each
//! with ok/warn/fail and a hint. Exits non-zero when any check fails.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::cli::exit;
use crate::config::Loaded;
use crate::health::{self, Check, Status};
use crate::lock::{InstanceLock, LockError};
use crate::models::{self, FileState, Manifest};
use crate::store::{self, SCHEMA_VERSION};

/// Runs every check, prints them, and returns 0 or [`exit::CHECKS_FAILED`].
pub fn run(loaded: &Loaded) -> anyhow::Result<u8> {
    let config = &loaded.config;
    let mut checks = vec![Check::ok("config", super::describe_sources(loaded))];
    for (name, dir) in [
        ("data_dir", &config.paths.data_dir),
        ("models_dir", &config.paths.models_dir),
        ("log_dir", &config.paths.log_dir),
        ("runtime_dir", &config.paths.runtime_dir),
    ] {
        checks.push(health::dir_writable(name, dir));
    }
    checks.push(health::disk_space(
        &config.paths.data_dir,
        config.health.min_free_disk_mb,
    ));
    let running = running_pid(loaded);
    checks.push(match running {
        Some(pid) => Check::ok(
            "instance",
            format!("a daemon is serving this data dir (pid {pid})"),
        ),
        None => Check::ok("instance", "no daemon is serving this data dir"),
    });
    checks.push(database(loaded, running.is_some()));
    checks.push(port(loaded, running));
    checks.extend(model_files(loaded));
    checks.push(speech(loaded));
    checks.push(gpu());
    checks.push(backup(&loaded.config));
    checks.push(crate::health::data_dir_permissions(
        &loaded.config.paths.data_dir,
    ));
    if loaded.config.tls_enabled()
        && let Some(check) = crate::health::certificate(&loaded.config.tls.cert)
    {
        checks.push(check);
    }
    if let Some(check) = service() {
        checks.push(check);
    }

    let mut failed = false;
    for check in &checks {
        let label = match check.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        };
        failed |= check.status == Status::Fail;
        println!("{label:<5} {:<30} {}", check.name, check.detail);
        if let Some(hint) = &check.hint {
            println!("{:<36} hint: {hint}", "");
        }
    }
    Ok(if failed {
        exit::CHECKS_FAILED
    } else {
        exit::OK
    })
}

/// Speech needs its worker executable and the default speech model.
fn speech(loaded: &Loaded) -> Check {
    let config = &loaded.config;
    let worker = match std::env::current_exe() {
        Ok(exe) => super::serve::speech_worker(config, &exe),
        Err(e) => {
            return Check::warn(
                "speech",
                format!("cannot locate this binary: {e}"),
                "set speech.worker_path",
            );
        }
    };
    if !worker.is_file() {
        return Check::warn(
            "speech",
            format!("the speech worker {} is missing", worker.display()),
            "install appliance-stt-worker beside appliance, or set speech.worker_path",
        );
    }
    let registry = crate::models::registry::Registry::new(config.paths.models_dir.clone());
    match registry.find_transcriber(&config.speech.default_model) {
        Ok(model) => Check::ok(
            "speech",
            format!(
                "{} ({} MiB) with {}",
                model.name,
                model.size / (1024 * 1024),
                worker.display()
            ),
        ),
        Err(_) => Check::warn(
            "speech",
            format!(
                "the default speech model `{}` is not installed",
                config.speech.default_model
            ),
            "`appliance models import MODELS_DIR/faster-whisper-tiny.en` converts the fetched one",
        ),
    }
}

/// The PID of a daemon holding the instance lock, if one does.
fn running_pid(loaded: &Loaded) -> Option<u32> {
    match InstanceLock::acquire(&loaded.config.lock_path()) {
        Ok(_released_on_drop) => None,
        Err(LockError::Held { pid, .. }) => Some(pid.unwrap_or(0)),
        Err(LockError::Io { .. }) => None,
    }
}

fn database(loaded: &Loaded, daemon_running: bool) -> Check {
    let path = loaded.config.database_path();
    if !path.exists() {
        return Check::warn(
            "database",
            format!("{} does not exist yet", path.display()),
            "`appliance serve` or `appliance db migrate` creates it",
        );
    }
    let busy = Duration::from_millis(loaded.config.store.busy_timeout_ms);
    match store::inspect(&path, busy) {
        Ok(found) if found.integrity != ["ok"] => Check::fail(
            "database",
            format!(
                "{}: integrity_check reports: {}",
                path.display(),
                found
                    .integrity
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            "stop the daemon and restore the latest backup of the database",
        ),
        Ok(found) if found.schema_version > SCHEMA_VERSION => Check::fail(
            "database",
            format!(
                "{}: schema version {} is newer than this build's {SCHEMA_VERSION}",
                path.display(),
                found.schema_version
            ),
            "upgrade the appliance package",
        ),
        Ok(found) if found.schema_version < SCHEMA_VERSION => Check::warn(
            "database",
            format!(
                "{}: integrity_check ok, schema version {} (this build: {SCHEMA_VERSION})",
                path.display(),
                found.schema_version
            ),
            "the next `appliance serve` migrates it, or run `appliance db migrate`",
        ),
        Ok(found) => match found.unclean_run.filter(|_| !daemon_running) {
            Some(run) => Check::warn(
                "database",
                format!(
                    "{}: integrity_check ok, schema v{}, sqlite-vec {}; the run started {} (pid {}) did not stop cleanly",
                    path.display(),
                    found.schema_version,
                    found.vec_version,
                    run.started_at,
                    run.pid
                ),
                "look at the end of that run's log for the cause",
            ),
            None => Check::ok(
                "database",
                format!(
                    "{}: integrity_check ok, schema v{}, sqlite-vec {}",
                    path.display(),
                    found.schema_version,
                    found.vec_version
                ),
            ),
        },
        Err(e) => Check::fail(
            "database",
            format!("{}: {e}", path.display()),
            "the file is damaged or not a database; restore the latest backup",
        ),
    }
}

fn port(loaded: &Loaded, running: Option<u32>) -> Check {
    let addr = SocketAddr::new(loaded.config.server.bind, loaded.config.server.port);
    if let Some(pid) = running {
        return Check::ok(
            "port",
            format!("{addr} belongs to the running daemon (pid {pid})"),
        );
    }
    match TcpListener::bind(addr) {
        Ok(_) => Check::ok("port", format!("{addr} is free")),
        Err(e) => Check::fail(
            "port",
            format!("cannot listen on {addr}: {e}"),
            "another program uses this port; choose another with --port or server.port",
        ),
    }
}

fn model_files(loaded: &Loaded) -> Vec<Check> {
    let dir = &loaded.config.paths.models_dir;
    Manifest::embedded()
        .model
        .iter()
        .map(|model| {
            let name = format!("model {}", model.name);
            let problems: Vec<String> = model
                .files
                .iter()
                .filter_map(|file| match models::check_file(dir, file) {
                    FileState::Verified => None,
                    FileState::Missing => Some(format!("{} missing", file.dest)),
                    FileState::WrongSize { found } => Some(format!(
                        "{} has {found} bytes, expected {}",
                        file.dest, file.size
                    )),
                    FileState::WrongHash { found } => Some(format!(
                        "{} has sha256 {found}, expected {}",
                        file.dest, file.sha256
                    )),
                    FileState::Unreadable(e) => Some(format!("{} unreadable: {e}", file.dest)),
                })
                .collect();
            if problems.is_empty() {
                Check::ok(
                    name,
                    format!(
                        "{} file(s) verified by sha256 in {}",
                        model.files.len(),
                        dir.display()
                    ),
                )
            } else {
                Check::fail(
                    name,
                    problems.join("; "),
                    format!("run `scripts/fetch-models {}`", dir.display()),
                )
            }
        })
        .collect()
}

/// The installed systemd service, when systemd runs this host and knows the unit:
/// enabled and active (a daemon started by hand is fine, but said).
fn service() -> Option<Check> {
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let ask = |verb: &str| {
        std::process::Command::new("systemctl")
            .args([verb, "appliance.service"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let enabled = ask("is-enabled")?;
    if enabled.is_empty() || enabled == "not-found" {
        return None;
    }
    let active = ask("is-active").unwrap_or_default();
    Some(match (enabled.as_str(), active.as_str()) {
        ("enabled", "active") => Check::ok("service", "appliance.service is enabled and active"),
        (_, "active") => Check::warn(
            "service",
            format!("appliance.service is active but {enabled}: it will not start at boot"),
            "systemctl enable appliance",
        ),
        _ => Check::warn(
            "service",
            format!("appliance.service is {enabled} and {active}"),
            "systemctl enable --now appliance; see `journalctl -u appliance` if it fails",
        ),
    })
}

/// The newest archive in the backup dir against the schedule (offline: an
/// installation without any backup is reported as such).
fn backup(config: &crate::config::Config) -> Check {
    let newest = crate::backup::list(&config.backup_dir()).into_iter().next();
    if newest.is_none() && config.backup.schedule_hours > 0 {
        return Check::warn(
            "backup",
            format!("no backup in {}", config.backup_dir().display()),
            "make one now: `appliance backup create`",
        );
    }
    let schedule = crate::backup::Schedule::new(config.backup.schedule_hours);
    crate::health::backup(&schedule, newest.as_ref())
}

fn gpu() -> Check {
    crate::health::gpu(
        &crate::gpu::Gpu::system().latest(),
        cfg!(any(feature = "cuda", feature = "llama-shared")),
    )
}
