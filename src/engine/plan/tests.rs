//! The planner against the real GGUF header of the default chat model (fetched by
//! `scripts/fetch-models`) on simulated GPUs of several sizes.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::engine::footprint::{self, Shape};
use crate::engine::{BudgetConfig, EngineConfig, KeepAlive, ModelOverrides, SpeechEngineConfig};
use crate::gpu::{GpuProbe, SimulatedGpu};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct-Q4_1";

fn config(reserve: u64, offload: bool, models: HashMap<String, ModelOverrides>) -> EngineConfig {
    EngineConfig {
        slots: 4,
        queue: 8,
        ctx_per_slot: 4096,
        threads: 2,
        gpu_layers: GpuLayers::Auto,
        request_timeout: Duration::from_secs(60),
        keep_alive: KeepAlive::For(Duration::from_secs(300)),
        load_timeout: Duration::from_secs(60),
        max_loaded_models: 3,
        max_requests_per_user: 0,
        speech: SpeechEngineConfig {
            parallel: 1,
            threads: 1,
            beam_size: 1,
            realtime_factor: 2.0,
        },
        budget: BudgetConfig {
            reserve,
            limit: None,
            max_queued_loads: 4,
            offload,
            models,
        },
    }
}

fn default_model() -> Candidate {
    let path = crate::models::test_models_dir().join(format!("{DEFAULT_MODEL}.gguf"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models (or set TEST_MODELS_DIR)",
        path.display()
    );
    let shape = Shape {
        ctx_per_slot: 4096,
        slots: 4,
    };
    Candidate {
        spec: ModelSpec {
            name: DEFAULT_MODEL.into(),
            path: path.clone(),
            kind: ModelKind::Chat,
        },
        footprint: footprint::estimate(ModelKind::Chat, &path, shape).map_err(|e| e.to_string()),
    }
}

fn plan_on(free: u64, reserve: u64) -> PlannedModel {
    let sim = SimulatedGpu::new(&[free]);
    let plan = plan(
        &sim.snapshot(),
        &config(reserve, true, HashMap::new()),
        &[default_model()],
    );
    plan.models.into_iter().next().expect("one model")
}

#[test]
fn the_default_models_header_gives_its_layers_kv_cache_and_head() {
    let candidate = default_model();
    let f = candidate.footprint.expect("an estimate");
    // SmolLM2-135M: 30 repeating layers, plus the output head as the last unit.
    assert_eq!(f.total_layers(), 31);
    // 4 slots × 4096 tokens × (64 + 64) dims × 3 KV heads × 2 bytes per layer.
    let kv = 4 * 4096 * 128 * 3 * 2;
    assert!(
        f.units[..30].iter().all(|u| *u > kv && *u < kv + 8 * MIB),
        "{:?}",
        f.units
    );
    // The head holds the (tied) embeddings and the logits of one micro-batch.
    assert!(f.units[30] > 4 * 512 * 49_152, "{}", f.units[30]);
    let full = f.gpu_bytes(31);
    assert!((700 * MIB..1500 * MIB).contains(&full), "{}", full >> 20);
    // With nothing offloaded, everything is host memory.
    assert!(f.host_bytes(0) > f.host_bytes(31));
}

#[test]
fn a_large_gpu_takes_every_layer() {
    let m = plan_on(80 * GIB, 512 * MIB);
    assert_eq!(
        (m.gpu_layers, m.total_layers, m.placement),
        (31, 31, Placement::Gpu)
    );
    assert!(m.reason.starts_with("all 31 layers fit"), "{}", m.reason);
}

#[test]
fn a_small_gpu_takes_some_layers_and_a_tiny_one_none() {
    let partial = plan_on(700 * MIB, 0);
    assert_eq!(partial.placement, Placement::Partial, "{partial:?}");
    assert!(partial.gpu_layers > 0 && partial.gpu_layers < 31);
    assert!(partial.vram_bytes <= 700 * MIB);
    assert!(
        partial.reason.contains("of 31 layers fit"),
        "{}",
        partial.reason
    );
    let more = plan_on(900 * MIB, 0);
    assert!(more.gpu_layers > partial.gpu_layers);
    let none = plan_on(300 * MIB, 0);
    assert_eq!((none.gpu_layers, none.placement), (0, Placement::Cpu));
    assert!(
        none.reason.contains("not even one layer"),
        "{}",
        none.reason
    );
}

#[test]
fn another_process_holding_vram_is_named_and_the_plan_adapts() {
    let sim = SimulatedGpu::new(&[2 * GIB]);
    sim.set_process(0, 4242, 1400 * MIB);
    let plan = plan(
        &sim.snapshot(),
        &config(0, true, HashMap::new()),
        &[default_model()],
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("pid 4242") && n.contains("1.4 GiB")),
        "{:?}",
        plan.notes
    );
    let m = &plan.models[0];
    assert_eq!(m.placement, Placement::Partial, "{m:?}");
    assert_eq!(plan.gpu_free_bytes, Some(2 * GIB - 1400 * MIB));
}

#[test]
fn no_gpu_or_no_cuda_means_the_cpu_said_plainly() {
    let sim = SimulatedGpu::new(&[]);
    sim.set_unavailable(Some("no NVIDIA driver found"));
    let plan_none = plan(
        &sim.snapshot(),
        &config(0, true, HashMap::new()),
        &[default_model()],
    );
    assert_eq!(plan_none.models[0].placement, Placement::Cpu);
    assert!(plan_none.notes[0].contains("no NVIDIA driver found"));
    let gpu = SimulatedGpu::new(&[80 * GIB]);
    let cpu_build = plan(
        &gpu.snapshot(),
        &config(0, false, HashMap::new()),
        &[default_model()],
    );
    assert_eq!(cpu_build.models[0].gpu_layers, 0);
    assert!(
        cpu_build.notes[0].contains("no CUDA support"),
        "{:?}",
        cpu_build.notes
    );
}

#[test]
fn preloaded_models_are_placed_first_and_leave_less_for_the_others() {
    let mut second = default_model();
    second.spec.name = "second".into();
    let overrides = HashMap::from([(
        "second".to_string(),
        ModelOverrides {
            preload: true,
            ..ModelOverrides::default()
        },
    )]);
    let f = default_model().footprint.unwrap();
    // Room for one full copy and a little more.
    let sim = SimulatedGpu::new(&[f.gpu_bytes(31) + f.gpu_bytes(3)]);
    let plan = plan(
        &sim.snapshot(),
        &config(0, true, overrides),
        &[default_model(), second],
    );
    assert_eq!(plan.models[0].name, "second");
    assert!(plan.models[0].preload);
    assert_eq!(plan.models[0].placement, Placement::Gpu);
    assert_eq!(
        plan.models[1].placement,
        Placement::Partial,
        "{:?}",
        plan.models[1]
    );
}

#[test]
fn fixed_layers_that_can_never_fit_are_explained() {
    let overrides = HashMap::from([(
        DEFAULT_MODEL.to_string(),
        ModelOverrides {
            gpu_layers: Some(31),
            ..ModelOverrides::default()
        },
    )]);
    let sim = SimulatedGpu::new(&[600 * MIB]);
    let plan = plan(
        &sim.snapshot(),
        &config(0, true, overrides),
        &[default_model()],
    );
    assert!(
        plan.models[0].reason.starts_with("never fits"),
        "{}",
        plan.models[0].reason
    );
}
