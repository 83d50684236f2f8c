//! The running daemon's shared state and the readiness checks over it.
//!
//! [`AppState`] is what every HTTP handler receives: cheap handles to the store,
//! metrics and configuration. It is built once by `serve` and cloned per request.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio_util::task::TaskTracker;

use crate::auth::hasher::Hasher;
use crate::auth::throttle::LoginThrottle;
use crate::config::Config;
use crate::documents::Documents;
use crate::engine::Engine;
use crate::health::{self, Check, Status};
use crate::jobs::Jobs;
use crate::limits::Limiter;
use crate::models::registry::Registry;
use crate::monitor::Monitor;
use crate::store::{DaemonRun, Store};
use crate::telemetry::{LogLevel, Metrics};

/// The crate version, reported by `version`, `/api/v1/status` and `/api/version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Shared state of the daemon.
#[derive(Clone)]
pub struct AppState {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// The inference workers.
    pub engine: Engine,
    /// The installed models.
    pub registry: Registry,
    /// Downloads of models from Hugging Face (or a mirror).
    pub puller: crate::models::pull::Puller,
    /// Documents, collections and retrieval.
    pub documents: Documents,
    /// Transcription jobs.
    pub speech: crate::speech::Speech,
    /// Background jobs.
    pub jobs: Jobs,
    /// The metrics registry.
    pub metrics: Metrics,
    /// Live control of the log filter.
    pub log_level: LogLevel,
    /// Wall-clock start time.
    pub started_at: SystemTime,
    /// The previous run, when it did not stop cleanly.
    pub unclean_previous_run: Option<DaemonRun>,
    /// The one-time first-run setup token, while no user exists.
    pub setup_token: Arc<Mutex<Option<String>>>,
    /// Failed-login bookkeeping.
    pub login_throttle: LoginThrottle,
    /// Rate limits, quotas and usage.
    pub limits: Limiter,
    /// CPU, memory, disk and GPU samples of the last minutes.
    pub monitor: Monitor,
    /// Notifications (webhooks and the live event stream).
    pub notifier: crate::notify::Notifier,
    /// Backups: the archive dir, the schedule, the `backup.create` job.
    pub backups: crate::backup::Backups,
    /// The GPUs: the driver's latest snapshot.
    pub gpu: crate::gpu::Gpu,
    /// The start-up plan, once made.
    pub plan: Arc<parking_lot::RwLock<Option<crate::engine::plan::StartupPlan>>>,
    /// Password hashing, a bounded number at a time.
    pub hasher: Hasher,
    /// Writes that outlive their request (cut-off replies, audit entries); shutdown
    /// waits for them before the store closes.
    pub tasks: TaskTracker,
    /// The last readiness answer, reused for a moment so a flood of `/readyz` cannot
    /// turn into a flood of disk checks.
    pub readiness_cache: ReadinessCache,
}

/// The last readiness answer and when it was computed.
pub type ReadinessCache = Arc<tokio::sync::Mutex<Option<(Instant, Vec<Check>)>>>;

/// How long a readiness answer is reused.
const READINESS_TTL: Duration = Duration::from_secs(2);

impl AppState {
    /// Every readiness check, as `/readyz` reports them: computed at most every two
    /// seconds, however many callers ask.
    pub async fn readiness(&self) -> Vec<Check> {
        let mut cache = self.readiness_cache.lock().await;
        if let Some((at, checks)) = cache.as_ref()
            && at.elapsed() < READINESS_TTL
        {
            return checks.clone();
        }
        let checks = self.check_readiness().await;
        *cache = Some((Instant::now(), checks.clone()));
        checks
    }

    async fn check_readiness(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        checks.push(match self.store.ping().await {
            Ok(vec_version) => Check::ok(
                "database",
                format!(
                    "{} answers (sqlite-vec {vec_version})",
                    self.store.path().display()
                ),
            ),
            Err(e) => Check::fail(
                "database",
                e.to_string(),
                "run `appliance doctor` for details",
            ),
        });
        let config = self.config.clone();
        let registry = self.registry.clone();
        let blocking = tokio::task::spawn_blocking(move || {
            let default_model = &config.engine.default_model;
            let model = match registry.find(default_model) {
                Ok(info) => Check::ok(
                    "default_model",
                    format!(
                        "{} ({} {}, {}) is installed and its header is valid",
                        info.name,
                        info.architecture,
                        info.parameter_size(),
                        info.quantization
                    ),
                ),
                Err(e) => Check::fail(
                    "default_model",
                    e.to_string(),
                    format!(
                        "run `scripts/fetch-models {}` or set engine.default_model to an installed model",
                        registry.dir().display()
                    ),
                ),
            };
            let mut checks = vec![
                health::disk_space(&config.paths.data_dir, config.health.min_free_disk_mb),
                health::dir_writable("data_dir", &config.paths.data_dir),
                model,
            ];
            if config.tls_enabled() {
                checks.extend(health::certificate(&config.tls.cert));
            }
            checks
        })
        .await;
        let newest = self.backups.newest().await;
        checks.push(health::backup(self.backups.schedule(), newest.as_ref()));
        checks.push(health::gpu(
            &self.gpu.latest(),
            self.engine.config().budget.offload,
        ));
        match blocking {
            Ok(found) => checks.extend(found),
            Err(e) => checks.push(Check::fail(
                "filesystem",
                format!("filesystem checks did not complete: {e}"),
                "see the daemon log",
            )),
        }
        checks
    }
}

/// Whether a set of checks means "ready" (warnings do not block readiness).
pub fn is_ready(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Fail)
}
