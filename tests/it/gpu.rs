//! The GPU scheduler through the library API: real fake-worker processes, a simulated
//! GPU behind the `GpuProbe` seam. Each worker "allocates" its memory in the simulated
//! GPU's ledger while it lives, so what the scheduler measures after a load, and what
//! comes back after an unload, behave as on a real device.

use std::sync::Arc;
use std::time::Duration;

use appliance::engine::footprint::Footprint;
use appliance::engine::{
    Engine, EngineConfig, EngineError, GpuLayers, KeepAlive, Launch, ModelKind, ModelOverrides,
    ModelSpec,
};
use appliance::gpu::{Gpu, GpuProbe, SimulatedGpu};
use appliance::telemetry::Metrics;

use crate::engine::{config, eventually, finish, request, started};
use crate::support::bin;

const GIB: u64 = 1 << 30;

/// A simulated GPU and an engine whose fake workers hold `scale` × their estimate.
struct Lab {
    engine: Engine,
    sim: SimulatedGpu,
    _ledger: tempfile::TempDir,
}

/// Every test model: 10 layers of 1 GiB plus 1 GiB fixed (11 GiB in full).
fn footprint() -> Footprint {
    Footprint::uniform(ModelKind::Chat, 10, GIB, GIB)
}

fn gpu_config(
    reserve: u64,
    layers: GpuLayers,
    overrides: &[(&str, ModelOverrides)],
) -> EngineConfig {
    let mut config = config();
    config.max_loaded_models = 8;
    config.gpu_layers = layers;
    config.budget.offload = true;
    config.budget.reserve = reserve;
    config.budget.max_queued_loads = 1;
    config.budget.models = overrides
        .iter()
        .map(|(name, o)| (name.to_string(), o.clone()))
        .collect();
    config
}

/// Models named `oom…` fail to load with more than 6 layers on the GPU; `slow…` take
/// 300 ms to load.
fn lab(config: EngineConfig, device: u64, scale: f64, models: &[&str]) -> Lab {
    let ledger = tempfile::tempdir().unwrap();
    let sim = SimulatedGpu::new(&[device]).with_ledger(ledger.path());
    let dir = ledger.path().to_path_buf();
    let spawner = move |model: &ModelSpec, config: &EngineConfig, launch: &Launch| {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args(["worker", "fake"])
            .args(["--slots", &config.slots.to_string()])
            .args(["--ctx-per-slot", &config.ctx_per_slot.to_string()]);
        if model.name.starts_with("oom") && launch.gpu_layers > 6 {
            cmd.args(["--start", "oom"]);
        }
        if model.name.starts_with("slow") {
            cmd.args(["--load-ms", "300"]);
        }
        let bytes = footprint().gpu_bytes(launch.gpu_layers) as f64 * scale;
        cmd.arg("--vram-ledger")
            .arg(&dir)
            .args(["--vram-bytes", &(bytes as u64).to_string()]);
        cmd
    };
    let engine = Engine::new(
        config,
        Arc::new(spawner),
        Metrics::new("test"),
        Gpu::new(Arc::new(sim.clone())),
    );
    for name in models {
        engine.assume_footprint(name, footprint());
    }
    Lab {
        engine,
        sim,
        _ledger: ledger,
    }
}

impl Lab {
    /// Runs one short generation on `name`.
    async fn run(&self, name: &str) -> Result<(), EngineError> {
        let generation = self.engine.generate(request(name, 1, "tokens=1")).await?;
        finish(generation).await.map(|_| ())
    }

    async fn layers(&self) -> Vec<(String, u32)> {
        self.engine
            .loaded()
            .await
            .into_iter()
            .map(|m| (m.name, m.gpu_layers))
            .collect()
    }
}

#[tokio::test]
async fn a_load_that_does_not_fit_unloads_the_least_recently_used_idle_model() {
    let lab = lab(
        gpu_config(GIB, GpuLayers::Auto, &[]),
        24 * GIB,
        1.0,
        &["a", "b", "c"],
    );
    lab.run("a").await.unwrap();
    lab.run("b").await.unwrap();
    assert_eq!(lab.layers().await, [("a".into(), 10), ("b".into(), 10)]);
    // 22 of 24 GiB held, 1 reserved: c needs 11, so a (used longest ago) goes.
    lab.run("c").await.unwrap();
    assert_eq!(lab.layers().await, [("b".into(), 10), ("c".into(), 10)]);
    // What the driver reports agrees: two workers' memory, a's came back.
    let snapshot = lab.sim.snapshot();
    assert_eq!(snapshot.free_bytes(), Some(2 * GIB));
}

#[tokio::test]
async fn pinned_models_stay_and_the_newcomer_takes_what_fits() {
    let pinned = ModelOverrides {
        pinned: true,
        ..ModelOverrides::default()
    };
    let lab = lab(
        gpu_config(GIB, GpuLayers::Auto, &[("a", pinned)]),
        24 * GIB,
        1.0,
        &["a", "b", "c"],
    );
    lab.run("a").await.unwrap();
    lab.run("b").await.unwrap();
    // a is the least recently used but pinned: b is unloaded for c.
    lab.run("c").await.unwrap();
    assert_eq!(lab.layers().await, [("a".into(), 10), ("c".into(), 10)]);
    let view = lab.engine.gpu_view().await.unwrap();
    assert!(view.resident.iter().any(|r| r.name == "a" && r.pinned));
}

#[tokio::test]
async fn a_fixed_load_waits_in_a_visible_bounded_queue_for_a_busy_model() {
    let lab = lab(
        gpu_config(GIB, GpuLayers::Exactly(10), &[]),
        24 * GIB,
        1.0,
        &["a", "b", "c", "d"],
    );
    // a and b busy for a few seconds each.
    let mut busy_a = lab
        .engine
        .generate(request("a", 1, "tokens=100 delay_ms=40"))
        .await
        .unwrap();
    started(&mut busy_a).await;
    let mut busy_b = lab
        .engine
        .generate(request("b", 2, "tokens=100 delay_ms=40"))
        .await
        .unwrap();
    started(&mut busy_b).await;
    // Two requests for c: one load waits, holding both.
    let waiting: Vec<_> = (3..5)
        .map(|user| {
            let engine = lab.engine.clone();
            tokio::spawn(async move {
                let generation = engine.generate(request("c", user, "tokens=1")).await?;
                finish(generation).await.map(|_| ())
            })
        })
        .collect();
    eventually("c to be queued", async || {
        let view = lab.engine.gpu_view().await.unwrap();
        view.queue.len() == 1
            && view.queue[0].model == "c"
            && view.queue[0].position == 1
            && view.queue[0].requests == 2
    })
    .await;
    let view = lab.engine.gpu_view().await.unwrap();
    assert_eq!(view.queue[0].needs_bytes, 11 * GIB);
    // The queue holds one: the next load is refused with a retry hint.
    match lab.run("d").await {
        Err(EngineError::GpuQueueFull { queued: 1, .. }) => {}
        other => panic!("expected a full queue, got {other:?}"),
    }
    // When a finishes, c takes its place.
    finish(busy_a).await.unwrap();
    for request in waiting {
        request.await.unwrap().unwrap();
    }
    finish(busy_b).await.unwrap();
    let names: Vec<String> = lab.layers().await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["b", "c"]);
    assert!(lab.engine.gpu_view().await.unwrap().queue.is_empty());
}

#[tokio::test]
async fn an_expired_keep_alive_gives_the_memory_back() {
    let short = ModelOverrides {
        keep_alive: Some(KeepAlive::For(Duration::from_millis(300))),
        ..ModelOverrides::default()
    };
    let lab = lab(
        gpu_config(GIB, GpuLayers::Auto, &[("a", short)]),
        24 * GIB,
        1.0,
        &["a"],
    );
    lab.run("a").await.unwrap();
    assert_eq!(lab.sim.snapshot().free_bytes(), Some(13 * GIB));
    eventually("a to unload and its memory to return", async || {
        let view = lab.engine.gpu_view().await.unwrap();
        view.resident.is_empty()
            && view.budget.committed_bytes == 0
            && view.budget.available_bytes == Some(23 * GIB)
    })
    .await;
    assert_eq!(lab.sim.snapshot().free_bytes(), Some(24 * GIB));
}

#[tokio::test]
async fn the_measured_use_replaces_the_estimate_and_corrects_the_next_one() {
    // The workers really hold 1.5 × the estimate.
    let lab = lab(gpu_config(GIB, GpuLayers::Auto, &[]), 40 * GIB, 1.5, &["a"]);
    lab.run("a").await.unwrap();
    eventually("the load to be measured", async || {
        let view = lab.engine.gpu_view().await.unwrap();
        view.resident.first().and_then(|r| r.measured_bytes) == Some(11 * GIB * 3 / 2)
    })
    .await;
    let view = lab.engine.gpu_view().await.unwrap();
    assert_eq!(view.resident[0].estimate_bytes, 11 * GIB);
    assert_eq!(view.budget.committed_bytes, 11 * GIB * 3 / 2);
    assert!(lab.engine.unload("a", false).await.unwrap());
    lab.run("a").await.unwrap();
    let view = lab.engine.gpu_view().await.unwrap();
    assert_eq!(view.resident[0].estimate_bytes, 11 * GIB * 3 / 2);
}

#[tokio::test]
async fn out_of_memory_fails_the_request_cleanly_and_the_next_load_offloads_fewer_layers() {
    let lab = lab(
        gpu_config(GIB, GpuLayers::Auto, &[]),
        24 * GIB,
        1.0,
        &["oom-model"],
    );
    match lab.run("oom-model").await {
        Err(e @ EngineError::OutOfMemory { .. }) => {
            assert!(e.to_string().contains("fewer GPU layers"), "{e}");
        }
        other => panic!("expected out of memory, got {other:?}"),
    }
    lab.run("oom-model").await.unwrap();
    assert_eq!(lab.layers().await, [("oom-model".into(), 5)]);
}

#[tokio::test]
async fn two_loads_racing_for_the_last_memory_never_share_the_same_bytes() {
    let lab = lab(
        gpu_config(GIB, GpuLayers::Auto, &[]),
        20 * GIB,
        1.0,
        &["slow-a", "slow-b"],
    );
    let (a, b) = tokio::join!(lab.run("slow-a"), lab.run("slow-b"));
    a.unwrap();
    b.unwrap();
    let mut layers: Vec<u32> = lab.layers().await.into_iter().map(|(_, l)| l).collect();
    layers.sort_unstable();
    // 19 GiB usable: one gets all 10 layers (11 GiB), the other what is left (8 GiB:
    // 7 layers), decided before either worker had allocated anything.
    assert_eq!(layers, [7, 10]);
    assert_eq!(lab.sim.snapshot().free_bytes(), Some(GIB));
}

#[tokio::test]
async fn fixed_layers_that_can_never_fit_are_refused_with_the_numbers() {
    let lab = lab(
        gpu_config(GIB, GpuLayers::Exactly(10), &[]),
        8 * GIB,
        1.0,
        &["big"],
    );
    match lab.run("big").await {
        Err(e @ EngineError::TooLargeForGpu { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("11264 MiB") && text.contains("7168 MiB"),
                "{text}"
            );
        }
        other => panic!("expected too large, got {other:?}"),
    }
}
