//! Residency: which models are loaded, as one actor that owns the answer.
//!
//! Every request asks the scheduler for a loaded worker ([`Msg::Acquire`]); the actor
//! never waits on anything itself. Loads and stops run as tasks that report back, so
//! a model that takes two minutes to load blocks only the requests for that model:
//! `/metrics`, `/api/ps` and other models keep answering. Concurrent first requests
//! for a model share one load.
//!
//! Capacity is `engine.max_loaded_models` (the GPU scheduler will add a VRAM budget
//! in [`Scheduler::has_room`]). When it is reached, the least recently used idle model
//! is unloaded to make room; when every loaded model is busy, the request waits (its
//! caller bounds the wait) until one becomes idle.
//!
//! Unloading is graceful by default: the worker admits nobody new and stops once its
//! requests in flight have finished (each has a deadline). Only a forced unload (an
//! administrator's) ends them at once. Requests that arrive during an unload wait for
//! it and then load the model afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::supervisor::{Spawner, Worker};
use super::{EngineConfig, EngineError, LoadedModel, ModelSpec};
use crate::telemetry::Metrics;

type Waiter = oneshot::Sender<Result<Arc<Worker>, EngineError>>;
type UnloadReply = oneshot::Sender<bool>;

/// Messages to the scheduler.
pub(super) enum Msg {
    /// A loaded worker for this model, please.
    Acquire { spec: ModelSpec, reply: Waiter },
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
    /// Periodic housekeeping: keep-alive expiry, dead workers, abandoned waiters.
    Tick,
    /// Stop everything (daemon shutdown).
    Shutdown { reply: oneshot::Sender<()> },
}

enum Entry {
    Loading {
        epoch: u64,
        waiters: Vec<Waiter>,
        unloads: Vec<(bool, UnloadReply)>,
    },
    Ready {
        epoch: u64,
        worker: Arc<Worker>,
        last_used: Instant,
    },
    /// Unloading: new acquires wait here and load the model again once it is gone.
    Stopping {
        epoch: u64,
        worker: Arc<Worker>,
        /// Whether the stop task has been started (after the drain).
        stopping: bool,
        force: bool,
        spec: Option<ModelSpec>,
        waiters: Vec<Waiter>,
        unloads: Vec<UnloadReply>,
    },
}

/// The actor's state.
pub(super) struct Scheduler {
    config: EngineConfig,
    spawner: Arc<dyn Spawner>,
    metrics: Metrics,
    mailbox: mpsc::Sender<Msg>,
    entries: HashMap<String, Entry>,
    /// Acquires waiting for room to load their model.
    pending: VecDeque<(ModelSpec, Waiter)>,
    next_epoch: u64,
}

/// Capacity of the scheduler's mailbox. Senders wait when it is full (requests) or
/// drop the message (idle notifications: the next tick catches up).
pub(super) const MAILBOX: usize = 1024;

impl Scheduler {
    /// Starts the actor; returns its mailbox.
    pub(super) fn start(
        config: EngineConfig,
        spawner: Arc<dyn Spawner>,
        metrics: Metrics,
    ) -> mpsc::Sender<Msg> {
        let (tx, rx) = mpsc::channel(MAILBOX);
        let scheduler = Scheduler {
            config,
            spawner,
            metrics,
            mailbox: tx.clone(),
            entries: HashMap::new(),
            pending: VecDeque::new(),
            next_epoch: 1,
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
                Msg::Acquire { spec, reply } => self.acquire(spec, reply),
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
                Msg::Tick => self.tick(),
                Msg::Shutdown { reply } => {
                    self.shutdown().await;
                    let _ = reply.send(());
                    return;
                }
            }
        }
    }

    fn acquire(&mut self, spec: ModelSpec, reply: Waiter) {
        match self.entries.get_mut(&spec.name) {
            Some(Entry::Ready {
                worker, last_used, ..
            }) if worker.is_alive() => {
                *last_used = Instant::now();
                let _ = reply.send(Ok(worker.clone()));
                return;
            }
            Some(Entry::Ready { .. }) => {
                tracing::warn!(model = %spec.name, "restarting a dead inference worker");
                self.entries.remove(&spec.name);
            }
            Some(Entry::Loading { waiters, .. }) => {
                waiters.push(reply);
                return;
            }
            Some(Entry::Stopping {
                waiters, spec: s, ..
            }) => {
                waiters.push(reply);
                *s = Some(spec);
                return;
            }
            None => {}
        }
        if self.has_room() {
            self.start_load(spec, vec![reply]);
        } else {
            self.pending.push_back((spec, reply));
            self.serve_pending();
        }
    }

    /// Whether another model may be loaded now. (The GPU scheduler adds its VRAM
    /// budget here.)
    fn has_room(&self) -> bool {
        self.entries.len() < self.config.max_loaded_models.max(1) as usize
    }

    /// Places that unloads in progress will free (an unload with requests waiting for
    /// the same model reloads it instead).
    fn freeing(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e, Entry::Stopping { waiters, .. } if waiters.is_empty()))
            .count()
    }

    /// Starts unloading the least recently used idle model, if there is one. The room
    /// appears when it has stopped.
    fn make_room(&mut self) {
        let victim = self
            .entries
            .iter()
            .filter_map(|(name, e)| match e {
                Entry::Ready {
                    worker, last_used, ..
                } if worker.in_flight() == 0 => Some((*last_used, name.clone())),
                _ => None,
            })
            .min();
        if let Some((_, name)) = victim {
            tracing::info!(model = %name, "unloading the least recently used idle model to make room");
            self.begin_stop(&name, false, None);
        }
    }

    fn start_load(&mut self, spec: ModelSpec, waiters: Vec<Waiter>) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.entries.insert(
            spec.name.clone(),
            Entry::Loading {
                epoch,
                waiters,
                unloads: Vec::new(),
            },
        );
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
            let result = Worker::spawn(&*spawner, &spec, &config, metrics, on_idle)
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
            waiters, unloads, ..
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
            }
            Err(e) => {
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

    /// Moves a model to `Stopping`: drains (or, forced, kills) its worker.
    fn begin_stop(&mut self, name: &str, force: bool, reply: Option<UnloadReply>) {
        let Some(entry) = self.entries.remove(name) else {
            if let Some(reply) = reply {
                let _ = reply.send(false);
            }
            return;
        };
        let entry = match entry {
            Entry::Ready { epoch, worker, .. } => {
                worker.drain();
                Entry::Stopping {
                    epoch,
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
        if let (Some(spec), false) = (spec, waiters.is_empty()) {
            // Requests arrived during the unload: load it again for them (they were
            // first in line, so they do not queue behind other models).
            self.start_load(spec, waiters);
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

    /// Gives room to waiting acquires, unloading idle models as needed.
    fn serve_pending(&mut self) {
        self.pending.retain(|(_, w)| !w.is_closed());
        while let Some((spec, _)) = self.pending.front() {
            // The model may have been loaded for someone else meanwhile.
            if self.entries.contains_key(&spec.name) {
                let (spec, reply) = self.pending.pop_front().expect("front exists");
                self.acquire(spec, reply);
                continue;
            }
            if !self.has_room() {
                let wanted: std::collections::HashSet<&str> =
                    self.pending.iter().map(|(s, _)| s.name.as_str()).collect();
                if self.freeing() < wanted.len() {
                    self.make_room();
                }
                return;
            }
            let (spec, reply) = self.pending.pop_front().expect("front exists");
            self.start_load(spec, vec![reply]);
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
        let mut list: Vec<LoadedModel> = self
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::Ready { worker, .. } | Entry::Stopping { worker, .. } => {
                    worker.is_alive().then(|| worker.describe())
                }
                Entry::Loading { .. } => None,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn tick(&mut self) {
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            match self.entries.get(&name) {
                Some(Entry::Ready { worker, .. }) if !worker.is_alive() => {
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
        self.serve_pending();
    }

    async fn shutdown(&mut self) {
        for (_, waiter) in self.pending.drain(..) {
            let _ = waiter.send(Err(EngineError::ShuttingDown));
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
