//! Where a model goes: the VRAM budget's arithmetic, free of processes and clocks, so
//! every decision of the scheduler can be tested against a simulated GPU.
//!
//! The budget is measured, not assumed: what the driver reports free, minus a reserve
//! for other processes and fragmentation, minus what loads in progress will take before
//! the next measurement sees them; and, when an administrator set one, the cap on what
//! the daemon's models may hold together. A load that does not fit evicts idle models
//! (least recently used first; pinned ones never); if it still does not fit, a model set
//! to offload as much as possible takes the layers that fit (down to none: the CPU), and
//! one set to a fixed number of layers waits in the queue for busy models to finish.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::KeepAlive;
use super::footprint::Footprint;
use crate::gpu::GpuSnapshot;

/// How many layers a model should offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuLayers {
    /// As many as fit (all when they do).
    Auto,
    /// This many (0: CPU only); waits for room rather than taking fewer.
    Exactly(u32),
}

impl GpuLayers {
    /// From the configuration's number: negative is `Auto`.
    pub fn from_setting(n: i64) -> GpuLayers {
        match u32::try_from(n) {
            Ok(n) => GpuLayers::Exactly(n),
            Err(_) => GpuLayers::Auto,
        }
    }
}

/// One model's settings, from `[engine]` with its `[models."name"]` overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    /// Layers to offload.
    pub gpu_layers: GpuLayers,
    /// Context tokens per request.
    pub ctx_per_slot: u32,
    /// Parallel sequences.
    pub slots: u32,
    /// Residency after the last request.
    pub keep_alive: KeepAlive,
    /// Never unloaded for room or by time; only an administrator's unload ends it.
    pub pinned: bool,
    /// Loaded when the daemon starts.
    pub preload: bool,
}

/// Per-model overrides (each `None`/`false` keeps the engine's default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelOverrides {
    /// `gpu_layers` (negative: auto).
    pub gpu_layers: Option<i64>,
    /// `ctx_per_slot`.
    pub ctx_per_slot: Option<u32>,
    /// `slots`.
    pub slots: Option<u32>,
    /// `keep_alive`.
    pub keep_alive: Option<KeepAlive>,
    /// `pinned`.
    pub pinned: bool,
    /// `preload`.
    pub preload: bool,
}

/// The GPU budget's settings (from `[gpu]`).
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// Bytes kept free for others.
    pub reserve: u64,
    /// The most the daemon's models may hold together (`None`: all free memory).
    pub limit: Option<u64>,
    /// Loads that may wait for VRAM at once.
    pub max_queued_loads: u32,
    /// Whether this build can offload at all (compiled with CUDA).
    pub offload: bool,
    /// Per-model overrides by name.
    pub models: HashMap<String, ModelOverrides>,
}

/// A model on the GPU, as the decision sees it.
#[derive(Debug, Clone)]
pub struct Resident {
    /// Its name.
    pub name: String,
    /// GPU bytes it holds (measured when known, else estimated).
    pub bytes: u64,
    /// Whether the latest snapshot already counts these bytes as used.
    pub measured: bool,
    /// Idle, loaded, not pinned: may be unloaded for room.
    pub evictable: bool,
    /// Pinned by configuration: its memory never comes back.
    pub pinned: bool,
    /// Being unloaded now: its bytes come back soon.
    pub freeing: bool,
    /// Ordering for eviction (smaller = used longer ago).
    pub last_used: Duration,
}

/// What to do with a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Load now with this many layers on the GPU.
    Load {
        /// Layers offloaded.
        layers: u32,
        /// Estimated GPU bytes.
        bytes: u64,
    },
    /// Unload these idle models, then decide again.
    Evict(Vec<String>),
    /// Wait for busy models to become idle or for unloads to finish.
    Wait {
        /// GPU bytes the load needs.
        needs: u64,
    },
    /// It cannot fit even on an empty budget.
    Never {
        /// GPU bytes the load needs.
        needs: u64,
        /// The most the daemon could ever place.
        capacity: u64,
    },
}

/// What may be placed now: measured free minus the reserve and unmeasured loads, and
/// the administrator's cap minus what is committed. `None` without a usable GPU.
pub fn available(
    snapshot: &GpuSnapshot,
    budget: &BudgetConfig,
    residents: &[Resident],
) -> Option<u64> {
    if !budget.offload {
        return None;
    }
    let free = snapshot.free_bytes()?;
    let unmeasured = residents
        .iter()
        .filter(|r| !r.measured)
        .fold(0u64, |a, r| a.saturating_add(r.bytes));
    let by_driver = free.saturating_sub(budget.reserve.saturating_add(unmeasured));
    let committed = residents
        .iter()
        .fold(0u64, |a, r| a.saturating_add(r.bytes));
    Some(match budget.limit {
        Some(limit) => by_driver.min(limit.saturating_sub(committed)),
        None => by_driver,
    })
}

/// The most the daemon could place with none of its models loaded.
pub fn capacity(snapshot: &GpuSnapshot, budget: &BudgetConfig, residents: &[Resident]) -> u64 {
    // Our models the snapshot counts could all go, except pinned ones; those it does
    // not count yet are not in its used memory at all.
    let reclaimable = residents
        .iter()
        .filter(|r| r.measured && !r.pinned)
        .fold(0u64, |a, r| a.saturating_add(r.bytes));
    let pinned_unmeasured = residents
        .iter()
        .filter(|r| !r.measured && r.pinned)
        .fold(0u64, |a, r| a.saturating_add(r.bytes));
    let free = snapshot
        .free_bytes()
        .unwrap_or(0)
        .saturating_add(reclaimable);
    let by_driver = free.saturating_sub(budget.reserve.saturating_add(pinned_unmeasured));
    let pinned = residents
        .iter()
        .filter(|r| r.pinned)
        .fold(0u64, |a, r| a.saturating_add(r.bytes));
    budget
        .limit
        .map_or(by_driver, |l| l.saturating_sub(pinned).min(by_driver))
}

/// The layers a load asks for: all (auto) or the configured number, within the
/// model's layers and an out-of-memory cap.
pub fn desired_layers(footprint: &Footprint, wanted: GpuLayers, cap: Option<u32>) -> u32 {
    let total = footprint.total_layers();
    match wanted {
        GpuLayers::Auto => total,
        GpuLayers::Exactly(n) => n.min(total),
    }
    .min(cap.unwrap_or(u32::MAX))
}

/// Decides a load of `footprint` asked to offload `wanted` layers, at most `cap` (a
/// limit learned from an out-of-memory failure).
pub fn decide(
    snapshot: &GpuSnapshot,
    budget: &BudgetConfig,
    residents: &[Resident],
    footprint: &Footprint,
    wanted: GpuLayers,
    cap: Option<u32>,
) -> Decision {
    let Some(available) = available(snapshot, budget, residents) else {
        return Decision::Load {
            layers: 0,
            bytes: 0,
        };
    };
    let desired = desired_layers(footprint, wanted, cap);
    let needs = footprint.gpu_bytes(desired);
    if needs <= available {
        return Decision::Load {
            layers: desired,
            bytes: needs,
        };
    }
    // Idle models, least recently used first, until the load fits.
    let mut idle: Vec<&Resident> = residents
        .iter()
        .filter(|r| r.evictable && !r.freeing)
        .collect();
    idle.sort_by_key(|r| r.last_used);
    let freeing = residents
        .iter()
        .filter(|r| r.freeing)
        .fold(0u64, |a, r| a.saturating_add(r.bytes));
    let mut room = available.saturating_add(freeing);
    let mut victims = Vec::new();
    for resident in idle {
        if room >= needs {
            break;
        }
        room = room.saturating_add(resident.bytes);
        victims.push(resident.name.clone());
    }
    if room >= needs {
        return if victims.is_empty() {
            Decision::Wait { needs }
        } else {
            Decision::Evict(victims)
        };
    }
    // Not everything fits even with every idle model gone (`victims` holds them all).
    let capacity = capacity(snapshot, budget, residents);
    match wanted {
        GpuLayers::Exactly(_) if needs > capacity => Decision::Never { needs, capacity },
        // Make what room there is first (idle models go, unloads finish)…
        _ if !victims.is_empty() => Decision::Evict(victims),
        GpuLayers::Auto if freeing > 0 => Decision::Wait { needs },
        // …then an automatic load takes the layers that fit rather than wait.
        GpuLayers::Auto => {
            let layers = footprint.layers_within(available).min(desired);
            Decision::Load {
                layers,
                bytes: footprint.gpu_bytes(layers),
            }
        }
        GpuLayers::Exactly(_) => Decision::Wait { needs },
    }
}

/// How a model would be placed, in words for the plan and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Every layer on the GPU.
    Gpu,
    /// Some layers on the GPU, the rest on the CPU.
    Partial,
    /// On the CPU.
    Cpu,
}

impl Placement {
    /// The placement of `layers` of `total`.
    pub fn of(layers: u32, total: u32) -> Placement {
        match layers {
            0 => Placement::Cpu,
            n if n >= total => Placement::Gpu,
            _ => Placement::Partial,
        }
    }
}

#[cfg(test)]
mod tests;
