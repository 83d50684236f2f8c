//! `appliance serve`: assembles the daemon and runs it until SIGTERM/SIGINT.
//!
//! Order matters: logging, directories, the instance lock (before touching the
//! database), the store, the listener; then READY=1 to systemd. Shutdown runs the
//! reverse: STOPPING=1, drain requests within the grace period, record a clean stop,
//! close the store, release the lock, flush logs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use sd_notify::NotifyState;

use crate::app::{AppState, VERSION};
use crate::auth::throttle::LoginThrottle;
use crate::cli::exit;
use crate::config::{Config, Loaded};
use crate::engine::{Engine, EngineConfig, KeepAlive};
use crate::limits::Limiter;
use crate::lock::InstanceLock;
use crate::models::registry::Registry;
use crate::monitor::Monitor;
use crate::store::{Store, StoreOptions};
use crate::telemetry::{self, Metrics};

/// Runs the daemon in the foreground.
pub fn run(loaded: Loaded) -> anyhow::Result<u8> {
    let started = Instant::now();
    let config = Arc::new(loaded.config);
    let (_log_guard, log_level) =
        telemetry::init_daemon_logging(&config.log, &config.paths.log_dir)?;

    for dir in [
        &config.paths.data_dir,
        &config.paths.models_dir,
        &config.paths.runtime_dir,
    ] {
        fs_err::create_dir_all(dir).context("creating the appliance's directories")?;
    }
    let lock = InstanceLock::acquire(&config.lock_path())?;

    let metrics = Metrics::new(VERSION);
    let observer_metrics = metrics.clone();
    let store = Store::open(
        &config.database_path(),
        StoreOptions {
            busy_timeout: Duration::from_millis(config.store.busy_timeout_ms),
            readers: config.store.readers,
            observer: Some(Arc::new(move |op, elapsed| {
                observer_metrics.db_call(op, elapsed)
            })),
        },
    )
    .with_context(|| format!("opening the database {}", config.database_path().display()))?;

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
        let tls = match config.tls_enabled() {
            true => Some(load_tls(&config).await?),
            false => None,
        };
        let (run_id, unclean) = store.begin_run(std::process::id(), VERSION).await?;
        if let Some(run) = &unclean {
            tracing::warn!(pid = run.pid, started_at = %run.started_at, "the previous run did not stop cleanly");
        }
        let setup_token = Arc::new(std::sync::Mutex::new(None));
        let limits = Limiter::new(config.limits, store.clone());
        let exe = std::env::current_exe().context("locating the appliance binary for workers")?;
        let engine = Engine::new(engine_config(&config)?, exe, metrics.clone());
        let state = AppState {
            config: config.clone(),
            store: store.clone(),
            engine: engine.clone(),
            registry: Registry::new(config.paths.models_dir.clone()),
            metrics,
            log_level,
            started_at: SystemTime::now(),
            unclean_previous_run: unclean,
            setup_token: setup_token.clone(),
            login_throttle: LoginThrottle::new(config.auth.login_free_failures),
            limits: limits.clone(),
            monitor: Monitor::start(config.paths.data_dir.clone()),
        };
        let router = crate::http::router(state);

        let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
        let url = format!("{}://{local}", if tls.is_some() { "https" } else { "http" });
        tracing::info!(%url, version = VERSION, ready_ms, data_dir = %config.paths.data_dir.display(), "appliance ready");
        println!("appliance {VERSION} listening on {url} (ready in {ready_ms:.0} ms)");
        if config.auth.enabled && store.count_users().await? == 0 {
            let token = crate::auth::random_hex(16);
            println!(
                "first run: no users yet. Create the administrator with the one-time token {token}:\n  \
                 open {url}/#/setup/{token}\n  \
                 or POST {url}/api/v1/setup {{\"token\": \"{token}\", \"name\": …, \"password\": …}}\n  \
                 or on this host: appliance users add --admin NAME"
            );
            tracing::warn!("no users exist: first-run setup is open with the printed one-time token");
            if let Ok(mut slot) = setup_token.lock() {
                *slot = Some(token);
            }
        }

        notify(&[NotifyState::Ready]);

        let grace = Duration::from_secs(config.server.shutdown_grace_secs);
        if let Some(tls) = &tls {
            spawn_tls_reloader(tls.clone(), config.clone());
        }
        let drained = crate::http::serve(listener, router, shutdown_signal(), grace, tls).await?;
        engine.shutdown().await;
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

/// Loads the configured certificate and key.
async fn load_tls(config: &Config) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&config.tls.cert, &config.tls.key)
        .await
        .with_context(|| {
            format!(
                "loading the TLS certificate {} and key {}",
                config.tls.cert.display(),
                config.tls.key.display()
            )
        })
}

/// Reloads the certificate and key on SIGHUP (keeping the old pair if the new one is bad).
fn spawn_tls_reloader(tls: axum_server::tls_rustls::RustlsConfig, config: Arc<Config>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::error!("cannot listen for SIGHUP: TLS certificates will not be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match tls
                .reload_from_pem_file(&config.tls.cert, &config.tls.key)
                .await
            {
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

/// The engine's settings from `[engine]` (validated by `config` already).
fn engine_config(config: &Config) -> anyhow::Result<EngineConfig> {
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
    Ok(EngineConfig {
        slots: e.slots,
        queue: e.queue,
        ctx_per_slot: e.ctx_per_slot,
        threads,
        gpu_layers: e.gpu_layers,
        request_timeout: Duration::from_secs(e.request_timeout_secs),
        keep_alive,
        load_timeout: Duration::from_secs(e.load_timeout_secs),
    })
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

/// `sd_notify` when run by systemd (Type=notify); a no-op otherwise.
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "sd_notify failed (not running under systemd?)");
    }
}
