//! `appliance serve`: assembles the daemon and runs it until SIGTERM/SIGINT.
//!
//! Order matters: private file modes, logging, directories, the instance lock (before
//! touching the database), the store, the listeners (TCP, and the Unix socket for this
//! host's CLI); then READY=1 to systemd. Shutdown
//! runs the reverse: STOPPING=1, drain requests within the grace period, stop the
//! workers, wait for the writes requests left behind (cut-off replies, audit entries),
//! write pending usage, record a clean stop, close the store, release the lock, flush
//! logs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use sd_notify::NotifyState;

use crate::app::{AppState, VERSION};
use crate::auth::throttle::LoginThrottle;
use crate::cli::exit;
use crate::config::{Config, Loaded};
use crate::engine::{Engine, EngineConfig, KeepAlive, SpeechEngineConfig, WorkerExe};
use crate::limits::Limiter;
use crate::lock::InstanceLock;
use crate::models::registry::Registry;
use crate::monitor::Monitor;
use crate::store::{Store, StoreOptions};
use crate::telemetry::{self, Metrics};

/// Runs the daemon in the foreground.
pub fn run(loaded: Loaded) -> anyhow::Result<u8> {
    let started = Instant::now();
    let config_file = loaded.file.clone();
    let config = Arc::new(loaded.config);
    // Everything the daemon creates (database, logs, imported models, keys) is for its
    // own user only, whatever umask it was started with.
    super::private_files();
    for dir in [&config.paths.data_dir, &config.paths.log_dir] {
        fs_err::create_dir_all(dir).context("creating the appliance's directories")?;
        super::restrict(dir, 0o700);
    }
    let (_log_guard, log_level) =
        telemetry::init_daemon_logging(&config.log, &config.paths.log_dir)?;
    for dir in [&config.paths.models_dir, &config.paths.runtime_dir] {
        fs_err::create_dir_all(dir).context("creating the appliance's directories")?;
    }
    let lock = InstanceLock::acquire(&config.lock_path())?;
    // The GPUs, probed once we hold the lock (the plan is made once the daemon is up).
    let gpu = crate::gpu::Gpu::system();

    let metrics = Metrics::new(VERSION);
    let observer_metrics = metrics.clone();
    let store = Store::open(
        &config.database_path(),
        StoreOptions {
            observer: Some(Arc::new(move |op, elapsed| {
                observer_metrics.db_call(op, elapsed)
            })),
            ..StoreOptions::new(
                Duration::from_millis(config.store.busy_timeout_ms),
                config.store.readers,
            )
        },
    )
    .with_context(|| format!("opening the database {}", config.database_path().display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = config.database_path().into_os_string();
        path.push(suffix);
        super::restrict(std::path::Path::new(&path), 0o600);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .context("starting the async runtime")?;
    let clean = runtime.block_on(async move {
        let addr = SocketAddr::new(config.server.bind, config.server.port);
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!("cannot listen on {addr} (is another program using the port? choose one with --port)")
        })?;
        let local = listener.local_addr()?;
        let mut unix_socket = match config.unix_socket_path() {
            Some(path) => Some(bind_unix_socket(&config, &path)?),
            None => None,
        };
        let tls = match config.tls_enabled() {
            true => Some(load_tls(&config)?),
            false => None,
        };
        let (run_id, unclean) = store.begin_run(std::process::id(), VERSION).await?;
        if let Some(run) = &unclean {
            tracing::warn!(pid = run.pid, started_at = %run.started_at, "the previous run did not stop cleanly");
        }
        let setup_token = Arc::new(parking_lot::Mutex::new(None));
        let limits = Limiter::new(config.limits, store.clone());
        let exe = std::env::current_exe().context("locating the appliance binary for workers")?;
        let engine = Engine::new(engine_config(&config)?, Arc::new(WorkerExe { exe: exe.clone(), speech_exe: speech_worker(&config, &exe) }), metrics.clone(), gpu.clone());
        let documents = crate::documents::Documents::new(
            store.clone(),
            engine.clone(),
            documents_config(&config, exe),
            config.paths.models_dir.clone(),
            config.engine.default_embedding_model.clone(),
        );
        crate::documents::files::clean_temp(&documents.config().files_dir);
        // Uploads left by a previous run that stopped mid-transcription.
        let _ = fs_err::remove_dir_all(crate::http::audio_upload_dir(&config.paths.data_dir));
        let speech = crate::speech::Speech::new(
            store.clone(),
            engine.clone(),
            Registry::new(config.paths.models_dir.clone()),
            limits.clone(),
            crate::speech::SpeechConfig {
                recordings_dir: config.paths.data_dir.join("recordings"),
                max_audio_secs: config.speech.max_audio_secs as f64,
            },
        );
        let backups = crate::backup::Backups::new(
            crate::backup::Sources {
                data_dir: config.paths.data_dir.clone(),
                db: config.database_path(),
                models_dir: config.paths.models_dir.clone(),
                config_file,
                busy: Duration::from_millis(config.store.busy_timeout_ms),
            },
            config.backup_dir(),
            config.backup.schedule_hours,
            config.backup.keep,
            store.clone(),
        );
        let jobs = crate::jobs::Jobs::new(
            store.clone(),
            metrics.clone(),
            crate::jobs::JobsConfig {
                concurrency: config.jobs.concurrency,
                retry_base: Duration::from_secs(config.jobs.retry_base_secs),
            },
            [
                (crate::store::documents::INGEST_JOB, documents.ingest_handler()),
                (crate::store::transcripts::TRANSCRIBE_JOB, speech.transcribe_handler()),
                (crate::backup::BACKUP_JOB, backups.handler()),
            ]
            .into(),
        );
        jobs.start().await?;
        backups.spawn_schedule(jobs.clone());
        let mailer = crate::notify::Mailer::from_config(&config.notify)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let notifier = crate::notify::Notifier::new(
            &config.notify.webhooks,
            mailer,
            Duration::from_secs(config.notify.min_interval_minutes * 60),
            store.clone(),
        );
        crate::notify::spawn_watchers(
            notifier.clone(),
            crate::notify::Watched {
                jobs: jobs.clone(),
                backups: backups.clone(),
                gpu: gpu.clone(),
                metrics: metrics.clone(),
                data_dir: config.paths.data_dir.clone(),
                min_free_mb: config.health.min_free_disk_mb,
                gpu_hot_c: config.notify.gpu_temperature_c,
                certificate: config.tls_enabled().then(|| config.tls.cert.clone()),
            },
        );
        let tasks = tokio_util::task::TaskTracker::new();
        let registry = Registry::new(config.paths.models_dir.clone());
        let plan = Arc::new(parking_lot::RwLock::new(None));
        let state = AppState {
            config: config.clone(),
            store: store.clone(),
            engine: engine.clone(),
            puller: crate::models::pull::Puller::new(config.pull.clone(), registry.clone()),
            registry,
            documents,
            speech,
            jobs: jobs.clone(),
            metrics,
            log_level,
            started_at: SystemTime::now(),
            unclean_previous_run: unclean,
            setup_token: setup_token.clone(),
            login_throttle: LoginThrottle::new(config.auth.login_free_failures),
            limits: limits.clone(),
            monitor: Monitor::start(config.paths.data_dir.clone(), gpu.clone()),
            gpu: gpu.clone(),
            plan: plan.clone(),
            backups,
            notifier,
            hasher: crate::auth::hasher::Hasher::new(config.auth.max_concurrent_hashes),
            tasks: tasks.clone(),
            readiness_cache: Arc::default(),
        };
        spawn_maintenance(store.clone(), config.auth.audit_retention_days);
        let router = crate::http::router(state);

        let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
        let url = format!("{}://{local}", if tls.is_some() { "https" } else { "http" });
        let socket = unix_socket.as_ref().map(|s| s.path().display().to_string());
        tracing::info!(%url, unix_socket = socket.as_deref().unwrap_or("none"), version = VERSION, ready_ms, data_dir = %config.paths.data_dir.display(), "appliance ready");
        let also = socket.map(|s| format!(" and {s}")).unwrap_or_default();
        println!("appliance {VERSION} listening on {url}{also} (ready in {ready_ms:.0} ms)");
        if config.auth.enabled && store.count_users().await? == 0 {
            let token = crate::auth::random_hex(16);
            println!(
                "first run: no users yet. Create the administrator with the one-time token {token}:\n  \
                 open {url}/#/setup/{token}\n  \
                 or POST {url}/api/v1/setup {{\"token\": \"{token}\", \"name\": …, \"password\": …}}\n  \
                 or on this host: appliance users add --admin NAME"
            );
            if unix_socket.is_some() {
                println!(
                    "on this host, `appliance chat` and `appliance status` work already, without an account or key (over the Unix socket, as local-admin)"
                );
            }
            tracing::warn!("no users exist: first-run setup is open with the printed one-time token");
            *setup_token.lock() = Some(token);
        }

        notify(&[NotifyState::Ready]);
        if let Some(interval) = sd_notify::watchdog_enabled() {
            spawn_watchdog(store.clone(), engine.clone(), interval);
        }
        super::gpu::plan_and_preload(config.clone(), engine.clone(), gpu.clone(), plan);

        if let Some(tls) = &tls {
            spawn_tls_reloader(tls.clone(), config.clone());
        }
        let options = crate::http::ServerOptions {
            header_timeout: Duration::from_secs(config.server.header_timeout_secs),
            body_timeout: Duration::from_secs(config.server.body_timeout_secs),
            max_connections: config.server.max_connections,
            max_connections_per_address: config.server.max_connections_per_address,
            grace: Duration::from_secs(config.server.shutdown_grace_secs),
        };
        let drained = crate::http::serve(listener, unix_socket.as_mut(), router, shutdown_signal(), options, tls).await?;
        // The socket file goes as soon as nothing listens on it.
        drop(unix_socket);
        jobs.shutdown();
        engine.shutdown().await;
        // Requests that ended (or were cut off) may have left writes behind.
        tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), tasks.wait()).await.is_err() {
            tracing::error!("writes left by requests did not finish within 10 s");
        }
        limits.flush().await?;
        store.end_run(run_id).await?;
        tracing::info!(drained, "appliance stopped");
        anyhow::Ok(drained)
    })?;
    // In-flight tasks that outlived the grace period are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(lock);
    Ok(if clean { exit::OK } else { exit::FAILURE })
}

/// Binds the Unix socket for local clients (mode 0660, `server.unix_socket_group`).
fn bind_unix_socket(
    config: &Config,
    path: &std::path::Path,
) -> anyhow::Result<crate::http::UnixSocket> {
    let group = match config.server.unix_socket_group.as_str() {
        "" => None,
        name => Some(
            crate::auth::peer::group_id(name)
                .with_context(|| format!("looking up server.unix_socket_group `{name}`"))?
                .with_context(|| format!("server.unix_socket_group: there is no group `{name}`"))?,
        ),
    };
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir).context("creating the Unix socket's directory")?;
        use std::os::unix::fs::PermissionsExt;
        if group.is_some()
            && fs_err::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o010 == 0)
        {
            tracing::warn!(dir = %dir.display(), "server.unix_socket_group is set, but the group cannot enter the socket's directory");
        }
    }
    crate::http::UnixSocket::bind(path, group).map_err(anyhow::Error::msg)
}

/// The documents subsystem's settings.
fn documents_config(config: &Config, exe: std::path::PathBuf) -> crate::documents::DocumentsConfig {
    let d = &config.documents;
    crate::documents::DocumentsConfig {
        files_dir: config.paths.data_dir.join("files"),
        max_file_bytes: d.max_file_bytes,
        chunk_tokens: d.chunk_tokens,
        chunk_overlap: d.chunk_overlap,
        extract_memory_bytes: d.extract_memory_mb << 20,
        extract_timeout: Duration::from_secs(d.extract_timeout_secs),
        allow_private_urls: d.allow_private_urls,
        max_url_bytes: d.max_url_bytes,
        url_timeout: Duration::from_secs(d.url_timeout_secs),
        exe,
    }
}

/// Loads the configured certificate and key.
fn load_tls(config: &Config) -> anyhow::Result<crate::http::Tls> {
    crate::http::Tls::load(&config.tls.cert, &config.tls.key)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("loading the TLS certificate and key")
}

/// Reloads the certificate and key on SIGHUP (keeping the old pair if the new one is bad).
fn spawn_tls_reloader(tls: crate::http::Tls, config: Arc<Config>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::error!("cannot listen for SIGHUP: TLS certificates will not be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload(&config.tls.cert, &config.tls.key) {
                Ok(()) => {
                    tracing::info!(cert = %config.tls.cert.display(), "reloaded the TLS certificate")
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; still serving the previous certificate")
                }
            }
        }
    });
}

/// Hourly housekeeping: expired and revoked sessions, and audit entries past their
/// retention, are deleted (the audit in small batches, so the writer stays free).
fn spawn_maintenance(store: Store, audit_retention_days: u32) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match store.prune_sessions().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "deleted expired and revoked sessions"),
                Err(e) => tracing::warn!(error = %e, "could not prune sessions"),
            }
            let before = (jiff::Timestamp::now()
                - jiff::SignedDuration::from_hours(24 * i64::from(audit_retention_days)))
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
            let mut deleted = 0;
            loop {
                match store.prune_audit(before.clone(), 1000).await {
                    Ok(n) => {
                        deleted += n;
                        if n < 1000 {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not prune the audit log");
                        break;
                    }
                }
            }
            if deleted > 0 {
                tracing::info!(
                    entries = deleted,
                    audit_retention_days,
                    "deleted old audit entries"
                );
            }
        }
    });
}

/// The engine's settings from `[engine]`, `[gpu]` and `[models.*]` (validated by
/// `config` already).
pub(super) fn engine_config(config: &Config) -> anyhow::Result<EngineConfig> {
    let e = &config.engine;
    let keep_alive = match crate::config::parse_keep_alive(&e.keep_alive) {
        Some(Some(d)) => KeepAlive::For(d),
        Some(None) => KeepAlive::Forever,
        None => anyhow::bail!("engine.keep_alive `{}` is not a duration", e.keep_alive),
    };
    let threads = if e.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
    } else {
        e.threads
    };
    let mut models = std::collections::HashMap::new();
    for (name, m) in &config.models {
        let keep_alive = match m.keep_alive.as_deref().map(crate::config::parse_keep_alive) {
            None => None,
            Some(Some(Some(d))) => Some(KeepAlive::For(d)),
            Some(Some(None)) => Some(KeepAlive::Forever),
            Some(None) => anyhow::bail!("models.\"{name}\".keep_alive is not a duration"),
        };
        let overrides = crate::engine::ModelOverrides {
            gpu_layers: m.gpu_layers,
            ctx_per_slot: m.ctx_per_slot,
            slots: m.slots,
            keep_alive,
            pinned: m.pinned,
            preload: m.preload,
        };
        models.insert(name.clone(), overrides);
    }
    let mib = |n: u64| n.saturating_mul(1 << 20);
    Ok(EngineConfig {
        slots: e.slots,
        queue: e.queue,
        ctx_per_slot: e.ctx_per_slot,
        threads,
        gpu_layers: crate::engine::GpuLayers::from_setting(e.gpu_layers),
        budget: crate::engine::BudgetConfig {
            reserve: mib(config.gpu.reserve_mb),
            limit: (config.gpu.budget_mb > 0).then(|| mib(config.gpu.budget_mb)),
            max_queued_loads: config.gpu.max_queued_loads,
            // A CUDA build, or llama.cpp loaded at run time (the GPU check builds it with
            // CUDA on the GPU machine).
            offload: cfg!(any(feature = "cuda", feature = "llama-shared")),
            models,
        },
        request_timeout: Duration::from_secs(e.request_timeout_secs),
        keep_alive,
        load_timeout: Duration::from_secs(e.load_timeout_secs),
        max_loaded_models: e.max_loaded_models,
        max_requests_per_user: e.max_requests_per_user,
        speech: speech_config(config, threads),
    })
}

fn speech_config(config: &Config, engine_threads: u32) -> SpeechEngineConfig {
    let s = &config.speech;
    let threads = if s.threads == 0 {
        engine_threads
    } else {
        s.threads
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    SpeechEngineConfig {
        parallel: if s.parallel == 0 {
            (cores / threads.max(1)).max(1)
        } else {
            s.parallel
        },
        threads,
        beam_size: s.beam_size,
        realtime_factor: s.max_realtime_factor,
    }
}

/// The speech worker executable: configured, or beside the daemon's own binary.
pub(super) fn speech_worker(config: &Config, exe: &std::path::Path) -> std::path::PathBuf {
    if config.speech.worker_path.as_os_str().is_empty() {
        exe.with_file_name("appliance-stt-worker")
    } else {
        config.speech.worker_path.clone()
    }
}

/// Resolves on SIGTERM or SIGINT, and tells systemd the daemon is stopping.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    let signal = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    tracing::info!(
        signal,
        "shutting down: no new connections, finishing in-flight requests"
    );
    notify(&[NotifyState::Stopping]);
}

/// Feeds systemd's watchdog (`WatchdogSec=`) at half its interval, but only while the
/// daemon works: the database answers and the engine's scheduler answers, each within
/// a quarter of the interval. A daemon that hangs stops feeding it and is restarted.
fn spawn_watchdog(store: Store, engine: Engine, interval: Duration) {
    let period = (interval / 2).max(Duration::from_millis(50));
    let limit = (interval / 4).max(Duration::from_millis(25));
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "feeding the systemd watchdog"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let database = tokio::time::timeout(limit, store.ping()).await;
            let scheduler = tokio::time::timeout(limit, engine.gpu_view()).await;
            match (database, scheduler) {
                (Ok(Ok(_)), Ok(Some(_))) => notify(&[NotifyState::Watchdog]),
                (database, scheduler) => tracing::error!(
                    database_ok = matches!(database, Ok(Ok(_))),
                    scheduler_ok = matches!(scheduler, Ok(Some(_))),
                    "not feeding the watchdog: the daemon is not answering"
                ),
            }
        }
    });
}

/// `sd_notify` when run by systemd (Type=notify); a no-op otherwise.
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "sd_notify failed (not running under systemd?)");
    }
}
