//! Residency: which models are loaded, as one actor that owns the answer.
//!
//! Every request asks the scheduler for a loaded worker ([`Msg::Acquire`]); the actor
//! never waits on anything itself. Loads and stops run as tasks that report back, so
//! a model that takes two minutes to load blocks only the requests for that model:
//! `/metrics`, `/api/ps` and other models keep answering. Concurrent first requests
//! for a model share one load.
//!
//! Capacity is `engine.max_loaded_models` and the GPU budget. Every load carries an
//! estimate of its GPU memory ([`Footprint`]); [`placement::decide`] says whether it
//! fits the memory the driver reports free (minus the reserve and loads not yet
//! measured), which idle models to unload for it (least recently used first, pinned
//! ones never), how many layers to offload when not all fit, or that it must wait.
//! Waiting loads form one bounded FIFO queue (`gpu.max_queued_loads`; beyond it, 503),
//! visible in [`GpuView`]. After each load the GPU is measured again: the worker's own
//! use (NVML, per process) replaces the estimate and corrects later estimates of that
//! model. A load that runs out of GPU memory fails its requests cleanly and caps the
//! model's layers at half for the next load.
//!
//! Unloading is graceful by default: the worker admits nobody new and stops once its
//! requests in flight have finished (each has a deadline). Only a forced unload (an
//! administrator's) ends them at once. Requests that arrive during an unload wait for
//! it and then load the model afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use serde::Serialize;

use super::footprint::Footprint;
use super::placement::{self, Decision, Resident};
use super::supervisor::{Launch, Spawner, Worker};
use super::{EngineConfig, EngineError, LoadedModel, ModelKind, ModelSpec};
use crate::gpu::{Gpu, GpuSnapshot};
use crate::telemetry::Metrics;

type Waiter = oneshot::Sender<Result<Arc<Worker>, EngineError>>;
type UnloadReply = oneshot::Sender<bool>;

/// Messages to the scheduler.
pub(super) enum Msg {
    /// A loaded worker for this model, please (with its memory estimate, when the GPU
    /// is in play).
    Acquire {
        spec: ModelSpec,
        footprint: Option<Arc<Footprint>>,
        reply: Waiter,
    },
    /// A load task finished.
    Loaded {
        name: String,
        epoch: u64,
        result: Result<Box<Worker>, EngineError>,
    },
    /// A worker became idle or died.
    Idle { name: String },
    /// A stop task finished: the process is gone.
    Stopped { name: String, epoch: u64 },
    /// Unload a model (gracefully unless `force`); the reply says whether it was loaded.
    Unload {
        name: String,
        force: bool,
        reply: UnloadReply,
    },
    /// What is loaded now.
    List {
        reply: oneshot::Sender<Vec<LoadedModel>>,
    },
    /// The GPU budget, residents and queue.
    Gpu { reply: oneshot::Sender<GpuView> },
    /// A GPU measurement finished; `epochs` are the loads it includes.
    Measured {
        snapshot: Arc<GpuSnapshot>,
        epochs: Vec<u64>,
    },
    /// Periodic housekeeping: keep-alive expiry, dead workers, abandoned waiters.
    Tick,
    /// Stop everything (daemon shutdown).
    Shutdown { reply: oneshot::Sender<()> },
}

/// Where a load went on the GPU.
#[derive(Debug, Clone, Copy)]
struct Placed {
    /// Layers offloaded.
    layers: u32,
    /// Units the model has.
    total_layers: u32,
    /// Estimated GPU bytes (corrected by earlier measurements).
    estimate: u64,
    /// The uncorrected estimate, to learn the next correction from.
    base_estimate: u64,
    /// GPU bytes the driver reports for the worker.
    measured: Option<u64>,
    /// The latest snapshot already counts this load's memory.
    counted: bool,
}

impl Placed {
    fn bytes(&self) -> u64 {
        self.measured.unwrap_or(self.estimate)
    }
}

/// One model's load waiting for room, with every request that waits for it.
struct Pending {
    spec: ModelSpec,
    footprint: Option<Arc<Footprint>>,
    waiters: Vec<Waiter>,
    since: Instant,
}

/// One request for a loaded worker.
struct Request {
    spec: ModelSpec,
    footprint: Option<Arc<Footprint>>,
    reply: Waiter,
}

enum Entry {
    Loading {
        epoch: u64,
        placed: Placed,
        waiters: Vec<Waiter>,
        unloads: Vec<(bool, UnloadReply)>,
    },
    Ready {
        epoch: u64,
        placed: Placed,
        worker: Arc<Worker>,
        last_used: Instant,
    },
    /// Unloading: new acquires wait here and load the model again once it is gone.
    Stopping {
        epoch: u64,
        placed: Placed,
        worker: Arc<Worker>,
        /// Whether the stop task has been started (after the drain).
        stopping: bool,
        force: bool,
        spec: Option<(ModelSpec, Option<Arc<Footprint>>)>,
        waiters: Vec<Waiter>,
        unloads: Vec<UnloadReply>,
    },
}

impl Entry {
    fn placed(&self) -> &Placed {
        match self {
            Entry::Loading { placed, .. }
            | Entry::Ready { placed, .. }
            | Entry::Stopping { placed, .. } => placed,
        }
    }
}

/// The GPU budget as the scheduler sees it (for `/api/v1/gpu`, `/api/ps`, metrics).
#[derive(Debug, Clone, Serialize)]
pub struct GpuView {
    /// The budget's figures.
    pub budget: BudgetView,
    /// Models holding (or about to hold) GPU memory.
    pub resident: Vec<Residency>,
    /// Loads waiting for room, first first.
    pub queue: Vec<QueuedLoad>,
}

/// The budget's figures, bytes.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetView {
    /// Kept free for others.
    pub reserve_bytes: u64,
    /// The administrator's cap (`None`: all free memory).
    pub limit_bytes: Option<u64>,
    /// What may be placed now (`None`: no usable GPU).
    pub available_bytes: Option<u64>,
    /// What the daemon's models hold (measured where known).
    pub committed_bytes: u64,
}

/// One loaded (or loading) model's place.
#[derive(Debug, Clone, Serialize)]
pub struct Residency {
    /// Model name.
    pub name: String,
    /// What it does.
    pub kind: ModelKind,
    /// Layers on the GPU.
    pub gpu_layers: u32,
    /// Layers it has.
    pub total_layers: u32,
    /// Estimated GPU bytes.
    pub estimate_bytes: u64,
    /// GPU bytes the driver reports for its worker.
    pub measured_bytes: Option<u64>,
    /// Never unloaded for room.
    pub pinned: bool,
    /// When it unloads if still idle (RFC 3339).
    pub expires_at: Option<String>,
    /// Requests running or waiting on it.
    pub in_use: bool,
    /// Still loading.
    pub loading: bool,
}

/// A load waiting for room.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedLoad {
    /// 1 = next.
    pub position: usize,
    /// The model.
    pub model: String,
    /// What it does.
    pub kind: ModelKind,
    /// GPU bytes it waits for.
    pub needs_bytes: u64,
    /// Seconds it has waited.
    pub waiting_secs: u64,
    /// Requests waiting for it.
    pub requests: usize,
}

/// The actor's state.
pub(super) struct Scheduler {
    config: EngineConfig,
    spawner: Arc<dyn Spawner>,
    metrics: Metrics,
    gpu: Gpu,
    mailbox: mpsc::Sender<Msg>,
    entries: HashMap<String, Entry>,
    /// Acquires waiting for room to load their model.
    pending: VecDeque<Pending>,
    next_epoch: u64,
    /// Measured minus estimated GPU bytes, per model (added to later estimates).
    corrections: HashMap<String, i64>,
    /// Most layers a model may offload after it ran out of memory.
    caps: HashMap<String, u32>,
    /// A measurement is running; another was asked for meanwhile.
    measuring: bool,
    measure_again: bool,
    /// A model that held GPU memory has gone and the driver has not been asked since:
    /// placing anything now would see its memory as still taken.
    settling: bool,
    /// The driver's view the scheduler places from: only its own measurements update
    /// it, so it knows which loads each one includes (`Placed::counted`).
    snapshot: Arc<GpuSnapshot>,
    last_measured: Instant,
    started: Instant,
}

/// How long a measurement may take before it is given up (a hung driver).
const MEASURE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle scheduler measures again, to see other processes come and go.
const REMEASURE_EVERY: Duration = Duration::from_secs(10);

/// Capacity of the scheduler's mailbox. Senders wait when it is full (requests) or
/// drop the message (idle notifications: the next tick catches up).
pub(super) const MAILBOX: usize = 1024;

impl Scheduler {
    /// Starts the actor; returns its mailbox.
    pub(super) fn start(
        config: EngineConfig,
        spawner: Arc<dyn Spawner>,
        metrics: Metrics,
        gpu: Gpu,
    ) -> mpsc::Sender<Msg> {
        let (tx, rx) = mpsc::channel(MAILBOX);
        let initial = gpu.latest();
        let scheduler = Scheduler {
            config,
            spawner,
            metrics,
            gpu,
            mailbox: tx.clone(),
            entries: HashMap::new(),
            pending: VecDeque::new(),
            next_epoch: 1,
            corrections: HashMap::new(),
            caps: HashMap::new(),
            measuring: false,
            measure_again: false,
            settling: false,
            snapshot: Arc::clone(&initial),
            last_measured: Instant::now(),
            started: Instant::now(),
        };
        tokio::spawn(scheduler.run(rx));
        let ticker = tx.downgrade();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(tx) = ticker.upgrade() else { return };
                let _ = tx.try_send(Msg::Tick);
            }
        });
        tx
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Acquire {
                    spec,
                    footprint,
                    reply,
                } => self.acquire(Request {
                    spec,
                    footprint,
                    reply,
                }),
                Msg::Loaded {
                    name,
                    epoch,
                    result,
                } => self.loaded(name, epoch, result),
                Msg::Idle { name } => self.idle(&name),
                Msg::Stopped { name, epoch } => self.stopped(name, epoch),
                Msg::Unload { name, force, reply } => self.unload(&name, force, reply),
                Msg::List { reply } => {
                    let _ = reply.send(self.list());
                }
                Msg::Gpu { reply } => {
                    let _ = reply.send(self.view());
                }
                Msg::Measured { snapshot, epochs } => self.measured(snapshot, &epochs),
                Msg::Tick => self.tick(),
                Msg::Shutdown { reply } => {
                    self.shutdown().await;
                    let _ = reply.send(());
                    return;
                }
            }
        }
    }

    fn acquire(&mut self, r: Request) {
        let name = r.spec.name.clone();
        match self.entries.get_mut(&name) {
            Some(Entry::Ready {
                worker, last_used, ..
            }) if worker.is_alive() => {
                *last_used = Instant::now();
                let _ = r.reply.send(Ok(worker.clone()));
                return;
            }
            Some(Entry::Ready { placed, .. }) => {
                tracing::warn!(model = %name, "restarting a dead inference worker");
                let held_gpu = placed.layers > 0;
                self.entries.remove(&name);
                if held_gpu {
                    self.settle();
                }
            }
            Some(Entry::Loading { waiters, .. }) => {
                waiters.push(r.reply);
                return;
            }
            Some(Entry::Stopping {
                waiters, spec: s, ..
            }) => {
                waiters.push(r.reply);
                *s = Some((r.spec, r.footprint));
                return;
            }
            None => {}
        }
        self.prune_pending();
        // A load of this model already waits: this request waits with it.
        if let Some(p) = self.pending.iter_mut().find(|p| p.spec.name == name) {
            p.waiters.push(r.reply);
            return;
        }
        // The bound is on loads waiting for GPU memory; CPU-only builds queue as before
        // (each request bounded by its own deadline).
        let limit = self.config.budget.max_queued_loads.max(1) as usize;
        if self.config.budget.offload && self.pending.len() >= limit {
            let _ = r.reply.send(Err(EngineError::GpuQueueFull {
                model: name,
                queued: self.pending.len(),
                retry_after_secs: 5,
            }));
            return;
        }
        self.pending.push_back(Pending {
            spec: r.spec,
            footprint: r.footprint,
            waiters: vec![r.reply],
            since: Instant::now(),
        });
        self.serve_pending();
    }

    /// Drops requests whose callers went away, and loads nobody waits for any more.
    fn prune_pending(&mut self) {
        for p in &mut self.pending {
            p.waiters.retain(|w| !w.is_closed());
        }
        self.pending.retain(|p| !p.waiters.is_empty());
    }

    /// The models holding (or about to hold) GPU memory, for [`placement::decide`].
    fn residents(&self) -> Vec<Resident> {
        self.entries
            .iter()
            .filter(|(_, e)| e.placed().layers > 0)
            .map(|(name, e)| {
                let placed = e.placed();
                let (evictable, freeing, last_used) = match e {
                    Entry::Loading { .. } => (false, false, Instant::now()),
                    Entry::Ready {
                        worker, last_used, ..
                    } => (worker.is_evictable(), false, *last_used),
                    Entry::Stopping { .. } => (false, true, Instant::now()),
                };
                Resident {
                    name: name.clone(),
                    bytes: placed.bytes(),
                    measured: placed.counted,
                    evictable,
                    pinned: self.config.settings(name).pinned,
                    freeing,
                    last_used: last_used.saturating_duration_since(self.started),
                }
            })
            .collect()
    }

    /// The estimate for a load, corrected by what earlier loads of it measured.
    fn footprint_of(&self, p: &Pending) -> Option<Footprint> {
        let footprint = p.footprint.as_deref()?;
        Some(match self.corrections.get(&p.spec.name) {
            Some(delta) => footprint.adjusted(*delta),
            None => footprint.clone(),
        })
    }

    fn decide(&self, p: &Pending) -> (Decision, Option<Footprint>) {
        let Some(footprint) = self.footprint_of(p) else {
            return (
                Decision::Load {
                    layers: 0,
                    bytes: 0,
                },
                None,
            );
        };
        let settings = self.config.settings(&p.spec.name);
        let decision = placement::decide(
            &self.snapshot,
            &self.config.budget,
            &self.residents(),
            &footprint,
            settings.gpu_layers,
            self.caps.get(&p.spec.name).copied(),
        );
        (decision, Some(footprint))
    }

    /// Places that unloads in progress will free (an unload with requests waiting for
    /// the same model reloads it instead).
    fn freeing(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e, Entry::Stopping { waiters, .. } if waiters.is_empty()))
            .count()
    }

    /// Starts unloading the least recently used idle model that is not pinned, if
    /// there is one. The room appears when it has stopped.
    fn make_room(&mut self) {
        let victim = self
            .entries
            .iter()
            .filter_map(|(name, e)| match e {
                Entry::Ready {
                    worker, last_used, ..
                } if worker.is_evictable() => Some((*last_used, name.clone())),
                _ => None,
            })
            .min();
        if let Some((_, name)) = victim {
            tracing::info!(model = %name, "unloading the least recently used idle model to make room");
            self.metrics.scheduler_eviction("max_loaded_models");
            self.begin_stop(&name, false, None);
        }
    }

    fn start_load(&mut self, p: Pending, placed: Placed) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let spec = p.spec;
        self.entries.insert(
            spec.name.clone(),
            Entry::Loading {
                epoch,
                placed,
                waiters: p.waiters,
                unloads: Vec::new(),
            },
        );
        let launch = Launch {
            settings: self.config.settings(&spec.name),
            gpu_layers: placed.layers,
        };
        if placed.layers > 0 {
            tracing::info!(
                model = %spec.name,
                gpu_layers = placed.layers,
                of = placed.total_layers,
                estimate_mib = placed.estimate >> 20,
                "loading onto the GPU"
            );
        }
        let (spawner, config, metrics) = (
            self.spawner.clone(),
            self.config.clone(),
            self.metrics.clone(),
        );
        let mailbox = self.mailbox.clone();
        let notify = self.mailbox.downgrade();
        tokio::spawn(async move {
            let on_idle = Box::new(move |name: &str| {
                if let Some(tx) = notify.upgrade() {
                    let _ = tx.try_send(Msg::Idle {
                        name: name.to_string(),
                    });
                }
            });
            let result = Worker::spawn(&*spawner, &spec, &config, &launch, metrics, on_idle)
                .await
                .map(Box::new);
            let _ = mailbox
                .send(Msg::Loaded {
                    name: spec.name,
                    epoch,
                    result,
                })
                .await;
        });
    }

    fn loaded(&mut self, name: String, epoch: u64, result: Result<Box<Worker>, EngineError>) {
        let Some(Entry::Loading {
            epoch: expected, ..
        }) = self.entries.get(&name)
        else {
            return;
        };
        if *expected != epoch {
            return;
        }
        let Some(Entry::Loading {
            waiters,
            unloads,
            placed,
            ..
        }) = self.entries.remove(&name)
        else {
            return;
        };
        match result {
            Ok(worker) => {
                let worker: Arc<Worker> = Arc::from(worker);
                self.entries.insert(
                    name.clone(),
                    Entry::Ready {
                        epoch,
                        placed,
                        worker: worker.clone(),
                        last_used: Instant::now(),
                    },
                );
                for waiter in waiters {
                    let _ = waiter.send(Ok(worker.clone()));
                }
                for (force, reply) in unloads {
                    self.unload(&name, force, reply);
                }
                if placed.layers > 0 {
                    self.measure();
                }
            }
            Err(e) => {
                if matches!(e, EngineError::OutOfMemory { .. }) && placed.layers > 0 {
                    let cap = placed.layers / 2;
                    tracing::warn!(
                        model = %name,
                        gpu_layers = placed.layers,
                        next = cap,
                        "the model ran out of GPU memory while loading; the next load offloads fewer layers"
                    );
                    self.caps.insert(name.clone(), cap);
                    self.metrics.scheduler_load_retry();
                }
                for waiter in waiters {
                    let _ = waiter.send(Err(e.clone()));
                }
                for (_, reply) in unloads {
                    let _ = reply.send(false);
                }
                self.serve_pending();
            }
        }
    }

    /// Measures the GPU on a blocking thread; the answer corrects the estimates of the
    /// models loaded before it started.
    fn measure(&mut self) {
        if self.measuring {
            self.measure_again = true;
            return;
        }
        self.measuring = true;
        let epochs: Vec<u64> = self
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::Ready { epoch, .. } => Some(*epoch),
                _ => None,
            })
            .collect();
        let (gpu, mailbox) = (self.gpu.clone(), self.mailbox.clone());
        tokio::spawn(async move {
            let (snapshot, epochs) =
                match tokio::time::timeout(MEASURE_TIMEOUT, gpu.refresh_async()).await {
                    Ok(snapshot) => (snapshot, epochs),
                    Err(_) => {
                        tracing::error!(
                            secs = MEASURE_TIMEOUT.as_secs(),
                            "the GPU driver did not answer; placing from its last answer"
                        );
                        (gpu.latest(), Vec::new())
                    }
                };
            let _ = mailbox.send(Msg::Measured { snapshot, epochs }).await;
        });
    }

    /// Holds placements until the driver has been asked again (see `settling`).
    fn settle(&mut self) {
        self.settling = true;
        if self.measuring {
            // The measurement in flight may predate the exit: ask once more.
            self.measure_again = true;
        } else {
            self.measure();
        }
    }

    fn measured(&mut self, snapshot: Arc<GpuSnapshot>, epochs: &[u64]) {
        self.measuring = false;
        self.last_measured = Instant::now();
        if !self.measure_again {
            self.settling = false;
        }
        self.snapshot = snapshot.clone();
        for (name, entry) in &mut self.entries {
            let Entry::Ready {
                epoch,
                placed,
                worker,
                ..
            } = entry
            else {
                continue;
            };
            if !epochs.contains(epoch) {
                continue;
            }
            placed.counted = true;
            let Some(bytes) = snapshot.process_bytes(worker.pid()) else {
                continue;
            };
            if placed.measured.is_none() && placed.base_estimate > 0 && placed.layers > 0 {
                // The difference is what the estimate missed whatever the layers (the
                // CUDA context, buffers): later estimates add it.
                let delta = bytes as i64 - placed.base_estimate as i64;
                tracing::info!(
                    model = %name,
                    estimate_mib = placed.estimate >> 20,
                    measured_mib = bytes >> 20,
                    "measured a model's GPU memory"
                );
                self.corrections.insert(name.clone(), delta);
            }
            placed.measured = Some(bytes);
        }
        if std::mem::take(&mut self.measure_again) {
            self.measure();
        }
        self.serve_pending();
    }

    /// Moves a model to `Stopping`: drains (or, forced, kills) its worker.
    fn begin_stop(&mut self, name: &str, force: bool, reply: Option<UnloadReply>) {
        let Some(entry) = self.entries.remove(name) else {
            if let Some(reply) = reply {
                let _ = reply.send(false);
            }
            return;
        };
        let entry = match entry {
            Entry::Ready {
                epoch,
                worker,
                placed,
                ..
            } => {
                worker.drain();
                Entry::Stopping {
                    epoch,
                    placed,
                    worker,
                    stopping: false,
                    force,
                    spec: None,
                    waiters: Vec::new(),
                    unloads: reply.into_iter().collect(),
                }
            }
            Entry::Stopping {
                epoch,
                placed,
                worker,
                stopping,
                force: was_forced,
                spec,
                waiters,
                mut unloads,
            } => {
                unloads.extend(reply);
                Entry::Stopping {
                    epoch,
                    placed,
                    worker,
                    // A forced unload overtakes a drain in progress.
                    stopping: stopping && (was_forced || !force),
                    force: force || was_forced,
                    spec,
                    waiters,
                    unloads,
                }
            }
            loading @ Entry::Loading { .. } => loading,
        };
        self.entries.insert(name.to_string(), entry);
        self.advance_stop(name);
    }

    /// Starts the stop task of a `Stopping` model once it is drained (or forced).
    fn advance_stop(&mut self, name: &str) {
        let Some(Entry::Stopping {
            epoch,
            worker,
            stopping,
            force,
            ..
        }) = self.entries.get_mut(name)
        else {
            return;
        };
        if *stopping || !(*force || worker.in_flight() == 0 || !worker.is_alive()) {
            return;
        }
        *stopping = true;
        let (worker, epoch, graceful) = (worker.clone(), *epoch, !*force);
        let mailbox = self.mailbox.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            worker.shutdown(graceful).await;
            let _ = mailbox.send(Msg::Stopped { name, epoch }).await;
        });
    }

    fn stopped(&mut self, name: String, epoch: u64) {
        match self.entries.get(&name) {
            Some(Entry::Stopping { epoch: e, .. }) if *e == epoch => {}
            _ => return,
        }
        let Some(Entry::Stopping {
            spec,
            waiters,
            unloads,
            placed,
            ..
        }) = self.entries.remove(&name)
        else {
            return;
        };
        tracing::info!(model = %name, "model unloaded");
        for reply in unloads {
            let _ = reply.send(true);
        }
        let waiters: Vec<Waiter> = waiters.into_iter().filter(|w| !w.is_closed()).collect();
        if let (Some((spec, footprint)), false) = (spec, waiters.is_empty()) {
            // Requests arrived during the unload: load it again for them (they were
            // first in line, so they go to the front of the queue).
            self.pending.push_front(Pending {
                spec,
                footprint,
                waiters,
                since: Instant::now(),
            });
        }
        if placed.layers > 0 {
            // Its memory shows as free once measured; serving waits for that.
            self.settle();
        }
        self.serve_pending();
    }

    fn idle(&mut self, name: &str) {
        if matches!(self.entries.get(name), Some(Entry::Stopping { .. })) {
            self.advance_stop(name);
        }
        if !self.pending.is_empty() {
            self.serve_pending();
        }
    }

    /// Gives room to waiting loads in order, unloading idle models as needed. GPU
    /// memory goes first come, first served: once a load must wait for it, later loads
    /// may start only if they need none (CPU); they never take memory ahead of it.
    fn serve_pending(&mut self) {
        self.prune_pending();
        if self.settling {
            return;
        }
        let mut i = 0;
        let mut gpu_blocked = false;
        while i < self.pending.len() {
            let name = self.pending[i].spec.name.clone();
            // The model may have been loaded for someone else meanwhile.
            if self.entries.contains_key(&name) {
                let p = self.pending.remove(i).expect("index in range");
                for reply in p.waiters {
                    self.acquire(Request {
                        spec: p.spec.clone(),
                        footprint: p.footprint.clone(),
                        reply,
                    });
                }
                continue;
            }
            if self.entries.len() >= self.config.max_loaded_models.max(1) as usize {
                let wanted = self.pending.len();
                if self.freeing() < wanted {
                    self.make_room();
                }
                return;
            }
            let (decision, footprint) = self.decide(&self.pending[i]);
            match decision {
                Decision::Load { layers, bytes } if !gpu_blocked || layers == 0 => {
                    let p = self.pending.remove(i).expect("index in range");
                    let base = p.footprint.as_deref().map_or(0, |f| f.gpu_bytes(layers));
                    let placed = Placed {
                        layers,
                        total_layers: footprint.as_ref().map_or(0, Footprint::total_layers),
                        estimate: bytes,
                        base_estimate: base,
                        measured: None,
                        counted: false,
                    };
                    self.start_load(p, placed);
                }
                Decision::Load { .. } => i += 1,
                Decision::Evict(victims) => {
                    if !gpu_blocked {
                        for victim in victims {
                            tracing::info!(model = %victim, for_model = %name, "unloading an idle model to free GPU memory");
                            self.metrics.scheduler_eviction("vram");
                            self.begin_stop(&victim, false, None);
                        }
                    }
                    gpu_blocked = true;
                    i += 1;
                }
                Decision::Wait { needs } => {
                    tracing::debug!(model = %name, needs_mib = needs >> 20, "waiting for GPU memory");
                    gpu_blocked = true;
                    i += 1;
                }
                Decision::Never { needs, capacity } => {
                    let p = self.pending.remove(i).expect("index in range");
                    for reply in p.waiters {
                        let _ = reply.send(Err(EngineError::TooLargeForGpu {
                            model: name.clone(),
                            needs_mib: needs >> 20,
                            capacity_mib: capacity >> 20,
                        }));
                    }
                }
            }
        }
    }

    fn unload(&mut self, name: &str, force: bool, reply: UnloadReply) {
        match self.entries.get_mut(name) {
            None => {
                let _ = reply.send(false);
            }
            Some(Entry::Loading { unloads, .. }) => unloads.push((force, reply)),
            Some(_) => self.begin_stop(name, force, Some(reply)),
        }
    }

    fn list(&self) -> Vec<LoadedModel> {
        let mut list: Vec<LoadedModel> =
            self.entries
                .values()
                .filter_map(|e| match e {
                    Entry::Ready { worker, placed, .. }
                    | Entry::Stopping { worker, placed, .. } => worker.is_alive().then(|| {
                        let mut model = worker.describe();
                        model.gpu_layers = placed.layers;
                        model.vram_bytes = placed.bytes();
                        model
                    }),
                    Entry::Loading { .. } => None,
                })
                .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn view(&self) -> GpuView {
        let residents = self.residents();
        let snapshot = self.snapshot.clone();
        let mut resident: Vec<Residency> = self
            .entries
            .iter()
            .filter(|(_, e)| e.placed().layers > 0)
            .map(|(name, e)| {
                let placed = e.placed();
                let described = match e {
                    Entry::Ready { worker, .. } | Entry::Stopping { worker, .. } => {
                        Some(worker.describe())
                    }
                    Entry::Loading { .. } => None,
                };
                Residency {
                    name: name.clone(),
                    kind: described.as_ref().map_or(ModelKind::Chat, |d| d.kind),
                    gpu_layers: placed.layers,
                    total_layers: placed.total_layers,
                    estimate_bytes: placed.estimate,
                    measured_bytes: placed.measured,
                    pinned: described.as_ref().is_some_and(|d| d.pinned),
                    expires_at: described.as_ref().and_then(|d| d.expires_at.clone()),
                    in_use: described
                        .as_ref()
                        .is_some_and(|d| d.running + d.waiting > 0),
                    loading: described.is_none(),
                }
            })
            .collect();
        resident.sort_by(|a, b| a.name.cmp(&b.name));
        let queue = self
            .pending
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let settings = self.config.settings(&p.spec.name);
                let needs = self.footprint_of(p).map_or(0, |f| {
                    let layers = match settings.gpu_layers {
                        placement::GpuLayers::Auto => f.total_layers(),
                        placement::GpuLayers::Exactly(n) => n,
                    };
                    f.gpu_bytes(
                        layers.min(self.caps.get(&p.spec.name).copied().unwrap_or(u32::MAX)),
                    )
                });
                QueuedLoad {
                    position: i + 1,
                    model: p.spec.name.clone(),
                    kind: p.spec.kind,
                    needs_bytes: needs,
                    waiting_secs: p.since.elapsed().as_secs(),
                    requests: p.waiters.len(),
                }
            })
            .collect();
        let budget = &self.config.budget;
        GpuView {
            budget: BudgetView {
                reserve_bytes: budget.reserve,
                limit_bytes: budget.limit,
                available_bytes: placement::available(&snapshot, budget, &residents),
                committed_bytes: residents.iter().map(|r| r.bytes).sum(),
            },
            resident,
            queue,
        }
    }

    fn tick(&mut self) {
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            match self.entries.get(&name) {
                Some(Entry::Ready { worker, placed, .. }) if !worker.is_alive() => {
                    if placed.layers > 0 {
                        self.settle();
                    }
                    self.entries.remove(&name);
                }
                Some(Entry::Ready { worker, .. }) if worker.is_expired() => {
                    tracing::info!(model = %name, "unloading an idle model (keep-alive ran out)");
                    self.begin_stop(&name, false, None);
                }
                Some(Entry::Stopping { .. }) => self.advance_stop(&name),
                _ => {}
            }
        }
        let loading = self
            .entries
            .values()
            .any(|e| matches!(e, Entry::Loading { .. }));
        if self.config.budget.offload && !loading && self.last_measured.elapsed() >= REMEASURE_EVERY
        {
            // Other processes come and go; measuring while nothing of ours is loading
            // keeps the view exact.
            self.last_measured = Instant::now();
            self.measure();
        }
        self.serve_pending();
    }

    async fn shutdown(&mut self) {
        for p in self.pending.drain(..) {
            for reply in p.waiters {
                let _ = reply.send(Err(EngineError::ShuttingDown));
            }
        }
        let workers: Vec<Arc<Worker>> = self
            .entries
            .drain()
            .filter_map(|(_, e)| match e {
                Entry::Ready { worker, .. } | Entry::Stopping { worker, .. } => Some(worker),
                Entry::Loading { waiters, .. } => {
                    for waiter in waiters {
                        let _ = waiter.send(Err(EngineError::ShuttingDown));
                    }
                    None
                }
            })
            .collect();
        futures_util::future::join_all(workers.iter().map(|w| w.shutdown(true))).await;
    }
}
