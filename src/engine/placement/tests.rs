//! The placement arithmetic against a simulated GPU.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::engine::ModelKind;
use crate::gpu::{GpuProbe, SimulatedGpu};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn budget(reserve: u64, limit: Option<u64>) -> BudgetConfig {
    BudgetConfig {
        reserve,
        limit,
        max_queued_loads: 4,
        offload: true,
        models: HashMap::new(),
    }
}

/// 10 layers of 1 GiB plus 1 GiB fixed: 11 GiB on the GPU in full.
fn model() -> Footprint {
    Footprint::uniform(ModelKind::Chat, 10, GIB, GIB)
}

fn resident(name: &str, gib: u64, evictable: bool, last_used: u64) -> Resident {
    Resident {
        name: name.into(),
        bytes: gib * GIB,
        measured: true,
        evictable,
        pinned: false,
        freeing: false,
        last_used: Duration::from_secs(last_used),
    }
}

/// A 24 GiB GPU on which `residents` already hold their bytes.
fn gpu_with(residents: &[Resident]) -> SimulatedGpu {
    let sim = SimulatedGpu::new(&[24 * GIB]);
    for (i, r) in residents.iter().enumerate() {
        if r.measured {
            sim.set_process(0, 1000 + i as u32, r.bytes);
        }
    }
    sim
}

#[test]
fn a_model_that_fits_loads_every_layer() {
    let sim = gpu_with(&[]);
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &[],
        &model(),
        GpuLayers::Auto,
        None,
    );
    assert_eq!(
        d,
        Decision::Load {
            layers: 10,
            bytes: 11 * GIB
        }
    );
}

#[test]
fn without_a_gpu_or_offload_everything_runs_on_the_cpu() {
    let sim = gpu_with(&[]);
    sim.set_unavailable(Some("no driver"));
    let d = decide(
        &sim.snapshot(),
        &budget(0, None),
        &[],
        &model(),
        GpuLayers::Auto,
        None,
    );
    assert_eq!(
        d,
        Decision::Load {
            layers: 0,
            bytes: 0
        }
    );
    let sim = gpu_with(&[]);
    let mut cpu_build = budget(0, None);
    cpu_build.offload = false;
    let d = decide(
        &sim.snapshot(),
        &cpu_build,
        &[],
        &model(),
        GpuLayers::Exactly(5),
        None,
    );
    assert_eq!(
        d,
        Decision::Load {
            layers: 0,
            bytes: 0
        }
    );
}

#[test]
fn idle_models_are_evicted_least_recently_used_first_and_only_as_many_as_needed() {
    // 24 GiB: a (6, used at t=1), b (6, t=3), c (6, t=2) hold 18; 6 free minus 1 reserve.
    let residents = [
        resident("a", 6, true, 1),
        resident("b", 6, true, 3),
        resident("c", 6, true, 2),
    ];
    let sim = gpu_with(&residents);
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &residents,
        &model(),
        GpuLayers::Auto,
        None,
    );
    // Needs 11: 5 available, +6 (a) = 11.
    assert_eq!(d, Decision::Evict(vec!["a".into()]));
    let more = Footprint::uniform(ModelKind::Chat, 10, GIB + GIB / 2, GIB);
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &residents,
        &more,
        GpuLayers::Auto,
        None,
    );
    assert_eq!(d, Decision::Evict(vec!["a".into(), "c".into()]));
}

#[test]
fn pinned_and_busy_models_are_never_evicted() {
    let mut pinned = resident("pinned", 9, false, 0);
    pinned.pinned = true;
    let residents = [pinned, resident("busy", 9, false, 1)];
    let sim = gpu_with(&residents);
    // 6 free - 1 reserve = 5: auto takes the layers that fit (4 of 1 GiB + 1 fixed).
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &residents,
        &model(),
        GpuLayers::Auto,
        None,
    );
    assert_eq!(
        d,
        Decision::Load {
            layers: 4,
            bytes: 5 * GIB
        }
    );
    // A fixed layer count waits for the busy model instead (the pinned one stays).
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &residents,
        &model(),
        GpuLayers::Exactly(10),
        None,
    );
    assert_eq!(d, Decision::Wait { needs: 11 * GIB });
    // With a cap that only the pinned model's memory could make room under, the
    // fixed load is refused at once instead of waiting for what never comes back.
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, Some(14 * GIB)),
        &residents,
        &model(),
        GpuLayers::Exactly(10),
        None,
    );
    assert_eq!(
        d,
        Decision::Never {
            needs: 11 * GIB,
            capacity: 5 * GIB
        }
    );
}

#[test]
fn an_automatic_load_that_cannot_fit_whole_first_evicts_the_idle_models() {
    // 24 GiB: an idle 8 and a busy 12; the model needs 21 in full.
    let residents = [resident("idle", 8, true, 0), resident("busy", 12, false, 1)];
    let sim = gpu_with(&residents);
    let big = Footprint::uniform(ModelKind::Chat, 20, GIB, GIB);
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &residents,
        &big,
        GpuLayers::Auto,
        None,
    );
    assert_eq!(d, Decision::Evict(vec!["idle".into()]));
    // Once it is gone: 12 free - 1 = 11 → 10 layers.
    let residents = [resident("busy", 12, false, 1)];
    let sim = gpu_with(&residents);
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &residents,
        &big,
        GpuLayers::Auto,
        None,
    );
    assert_eq!(
        d,
        Decision::Load {
            layers: 10,
            bytes: 11 * GIB
        }
    );
}

#[test]
fn unloads_in_progress_are_waited_for_rather_than_evicting_more() {
    let mut leaving = resident("leaving", 8, false, 0);
    leaving.freeing = true;
    let residents = [leaving, resident("idle", 8, true, 1)];
    let sim = gpu_with(&residents);
    // 8 free - 1 reserve = 7, + 8 coming back = 15 ≥ 11.
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &residents,
        &model(),
        GpuLayers::Auto,
        None,
    );
    assert_eq!(d, Decision::Wait { needs: 11 * GIB });
}

#[test]
fn a_load_bigger_than_the_whole_budget_is_refused_or_partially_offloaded() {
    let sim = gpu_with(&[]);
    let small = budget(GIB, Some(6 * GIB));
    let d = decide(
        &sim.snapshot(),
        &small,
        &[],
        &model(),
        GpuLayers::Exactly(10),
        None,
    );
    assert_eq!(
        d,
        Decision::Never {
            needs: 11 * GIB,
            capacity: 6 * GIB
        }
    );
    let d = decide(
        &sim.snapshot(),
        &small,
        &[],
        &model(),
        GpuLayers::Auto,
        None,
    );
    assert_eq!(
        d,
        Decision::Load {
            layers: 5,
            bytes: 6 * GIB
        }
    );
}

#[test]
fn the_administrators_cap_counts_what_is_committed() {
    let residents = [resident("a", 4, false, 0)];
    let sim = gpu_with(&residents);
    // Plenty free on the device, but the cap is 8 GiB and 4 are committed.
    let d = decide(
        &sim.snapshot(),
        &budget(0, Some(8 * GIB)),
        &residents,
        &model(),
        GpuLayers::Auto,
        None,
    );
    assert_eq!(
        d,
        Decision::Load {
            layers: 3,
            bytes: 4 * GIB
        }
    );
}

#[test]
fn loads_not_yet_measured_count_against_free_memory_so_two_loads_cannot_take_the_same_bytes() {
    // The first load's bytes are not in the snapshot yet (its worker is starting).
    let mut first = resident("first", 11, false, 0);
    first.measured = false;
    let residents = [first];
    let sim = gpu_with(&residents);
    // 24 free by the driver, minus 1 reserve, minus 11 in flight = 12 ≥ 11: fits.
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &residents,
        &model(),
        GpuLayers::Auto,
        None,
    );
    assert_eq!(
        d,
        Decision::Load {
            layers: 10,
            bytes: 11 * GIB
        }
    );
    // A third, racing for what is left (1 GiB), gets the CPU: never the same bytes.
    let mut second = resident("second", 11, false, 1);
    second.measured = false;
    let residents = [residents[0].clone(), second];
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &residents,
        &model(),
        GpuLayers::Auto,
        None,
    );
    assert_eq!(
        d,
        Decision::Load {
            layers: 0,
            bytes: 0
        }
    );
}

#[test]
fn an_out_of_memory_cap_limits_the_layers() {
    let sim = gpu_with(&[]);
    let d = decide(
        &sim.snapshot(),
        &budget(GIB, None),
        &[],
        &model(),
        GpuLayers::Auto,
        Some(5),
    );
    assert_eq!(
        d,
        Decision::Load {
            layers: 5,
            bytes: 6 * GIB
        }
    );
}

#[test]
fn another_process_holding_vram_shrinks_the_budget() {
    let sim = gpu_with(&[]);
    sim.set_process(0, 4242, 20 * GIB);
    let d = decide(
        &sim.snapshot(),
        &budget(512 * MIB, None),
        &[],
        &model(),
        GpuLayers::Auto,
        None,
    );
    // 4 free - 0.5 reserve = 3.5: 2 layers (3 GiB).
    assert_eq!(
        d,
        Decision::Load {
            layers: 2,
            bytes: 3 * GIB
        }
    );
}

#[test]
fn placement_words() {
    assert_eq!(Placement::of(0, 10), Placement::Cpu);
    assert_eq!(Placement::of(4, 10), Placement::Partial);
    assert_eq!(Placement::of(10, 10), Placement::Gpu);
    assert_eq!(GpuLayers::from_setting(-1), GpuLayers::Auto);
    assert_eq!(GpuLayers::from_setting(7), GpuLayers::Exactly(7));
}
