//! The start-up plan: which configured models go where, decided once the daemon holds
//! its lock and has probed the GPUs, with the same arithmetic the scheduler uses for
//! every later load ([`placement::decide`]). Models marked `preload` are placed first
//! (they load right after start); the others are shown as they would load on their
//! first request next to them. The plan is logged, shown by `status`, `appliance gpu`
//! and `/api/v1/gpu`; the scheduler re-decides every load from fresh measurements, so
//! a plan that the machine outgrows is never enforced.

use serde::Serialize;

use super::footprint::Footprint;
use super::placement::{self, Decision, GpuLayers, Placement, Resident};
use super::{EngineConfig, ModelKind, ModelSpec};
use crate::gpu::{GpuSnapshot, human_bytes};

/// The plan.
#[derive(Debug, Clone, Serialize)]
pub struct StartupPlan {
    /// When it was made (RFC 3339).
    pub planned_at: String,
    /// Free GPU memory when planning (`None`: no GPU).
    pub gpu_free_bytes: Option<u64>,
    /// Every configured model, preloaded ones first.
    pub models: Vec<PlannedModel>,
    /// What an administrator should know (other processes holding memory, no CUDA…).
    pub notes: Vec<String>,
}

/// One model's place.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedModel {
    /// Its name.
    pub name: String,
    /// What it does.
    pub kind: ModelKind,
    /// Loaded at start.
    pub preload: bool,
    /// Layers on the GPU.
    pub gpu_layers: u32,
    /// Layers it has.
    pub total_layers: u32,
    /// Estimated GPU bytes.
    pub vram_bytes: u64,
    /// Estimated host bytes.
    pub ram_bytes: u64,
    /// GPU, partial or CPU.
    pub placement: Placement,
    /// Why, in words.
    pub reason: String,
}

/// A configured model and its estimate (or why there is none).
pub struct Candidate {
    /// The model.
    pub spec: ModelSpec,
    /// Its footprint.
    pub footprint: Result<Footprint, String>,
}

/// Plans `candidates` on `snapshot` under `config`'s budget.
pub fn plan(
    snapshot: &GpuSnapshot,
    config: &EngineConfig,
    candidates: &[Candidate],
) -> StartupPlan {
    let budget = &config.budget;
    let mut notes = Vec::new();
    let usable = budget.offload && snapshot.has_devices();
    if !snapshot.has_devices() {
        let why = snapshot
            .reason
            .as_deref()
            .unwrap_or("the driver lists no device");
        notes.push(format!("no GPU ({why}): every model runs on the CPU"));
    } else if !budget.offload {
        notes.push(
            "a GPU is present but this build has no CUDA support: every model runs on the CPU (install the CUDA build, see scripts/build-cuda)"
                .into(),
        );
    }
    for device in &snapshot.devices {
        for process in device.processes.iter().filter(|p| !p.ours) {
            if let Some(bytes) = process.used_bytes.filter(|b| *b > 0) {
                notes.push(format!(
                    "another process ({}, pid {}) holds {} of GPU {} ({})",
                    process.name.as_deref().unwrap_or("unknown"),
                    process.pid,
                    human_bytes(bytes),
                    device.index,
                    device.name
                ));
            }
        }
    }
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    order.sort_by_key(|c| !config.settings(&c.spec.name).preload);
    let mut residents: Vec<Resident> = Vec::new();
    let mut models = Vec::new();
    for candidate in order {
        let settings = config.settings(&candidate.spec.name);
        let footprint = match &candidate.footprint {
            Ok(f) => f,
            Err(why) => {
                models.push(PlannedModel {
                    name: candidate.spec.name.clone(),
                    kind: candidate.spec.kind,
                    preload: settings.preload,
                    gpu_layers: 0,
                    total_layers: 0,
                    vram_bytes: 0,
                    ram_bytes: 0,
                    placement: Placement::Cpu,
                    reason: format!("no estimate ({why}); runs on the CPU"),
                });
                continue;
            }
        };
        let total = footprint.total_layers();
        let available = placement::available(snapshot, budget, &residents).unwrap_or(0);
        let decision = placement::decide(
            snapshot,
            budget,
            &residents,
            footprint,
            settings.gpu_layers,
            None,
        );
        let (layers, reason) = match decision {
            Decision::Load { layers, .. } if !usable => (layers, "CPU: no usable GPU".to_string()),
            Decision::Load { layers: 0, .. } if settings.gpu_layers == GpuLayers::Exactly(0) => {
                (0, "CPU by configuration (gpu_layers = 0)".to_string())
            }
            Decision::Load { layers, .. } if layers == total => (
                layers,
                format!(
                    "all {total} layers fit ({} of {} available)",
                    human_bytes(footprint.gpu_bytes(layers)),
                    human_bytes(available)
                ),
            ),
            Decision::Load { layers: 0, .. } => (
                0,
                format!(
                    "CPU: not even one layer fits in the {} available",
                    human_bytes(available)
                ),
            ),
            Decision::Load { layers, .. } => (
                layers,
                format!(
                    "{layers} of {total} layers fit in the {} available; the rest run on the CPU",
                    human_bytes(available)
                ),
            ),
            Decision::Evict(_) | Decision::Wait { .. } => (
                0,
                "waits for GPU memory when requested (other models hold it)".to_string(),
            ),
            Decision::Never { needs, capacity } => (
                0,
                format!(
                    "never fits: needs {} with its gpu_layers, the budget holds {}; requests are refused until gpu_layers is lowered",
                    human_bytes(needs),
                    human_bytes(capacity)
                ),
            ),
        };
        let vram = footprint.gpu_bytes(layers);
        if settings.preload && layers > 0 {
            residents.push(Resident {
                name: candidate.spec.name.clone(),
                bytes: vram,
                measured: false,
                evictable: false,
                pinned: settings.pinned,
                freeing: false,
                last_used: std::time::Duration::ZERO,
            });
        }
        models.push(PlannedModel {
            name: candidate.spec.name.clone(),
            kind: candidate.spec.kind,
            preload: settings.preload,
            gpu_layers: layers,
            total_layers: total,
            vram_bytes: vram,
            ram_bytes: footprint.host_bytes(layers),
            placement: Placement::of(layers, total),
            reason,
        });
    }
    StartupPlan {
        planned_at: jiff::Timestamp::now().to_string(),
        gpu_free_bytes: snapshot.free_bytes(),
        models,
        notes,
    }
}

#[cfg(test)]
mod tests;
