//! The system monitor: one thread (`sys-poll`) samples CPU, memory, the data dir's disk
//! and every GPU (refreshing [`Gpu`]'s snapshot) every few seconds into a ring buffer covering the last minutes, which
//! the admin pages graph (`GET /api/v1/system`). Readers copy the buffer; sampling never
//! runs on the async runtime.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use serde::Serialize;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use crate::gpu::{Gpu, GpuSnapshot};

/// Seconds between samples.
pub const INTERVAL_SECS: u64 = 2;
/// Samples kept (10 minutes).
const KEEP: usize = 300;

/// One sample of the machine.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Unix seconds.
    pub t: i64,
    /// All CPUs, percent.
    pub cpu_percent: f32,
    /// Memory in use, bytes.
    pub memory_used_bytes: u64,
    /// Memory installed, bytes.
    pub memory_total_bytes: u64,
    /// Free space on the data dir's disk, bytes.
    pub disk_free_bytes: u64,
    /// Size of the data dir's disk, bytes.
    pub disk_total_bytes: u64,
    /// Every GPU (empty without a driver).
    pub gpus: Vec<GpuSample>,
}

/// One GPU's live readings, as the admin graphs plot them.
#[derive(Debug, Clone, Serialize)]
pub struct GpuSample {
    /// NVML device index.
    pub index: u32,
    /// Marketing name.
    pub name: String,
    /// GPU utilisation over the last sample period, percent.
    pub utilization_percent: Option<u32>,
    /// Memory in use, bytes.
    pub memory_used_bytes: Option<u64>,
    /// Total memory, bytes.
    pub memory_total_bytes: Option<u64>,
    /// Die temperature, °C.
    pub temperature_c: Option<u32>,
    /// Power draw, watts.
    pub power_w: Option<f64>,
}

fn gpu_samples(snapshot: &GpuSnapshot) -> Vec<GpuSample> {
    snapshot
        .devices
        .iter()
        .map(|d| GpuSample {
            index: d.index,
            name: d.name.clone(),
            utilization_percent: d.utilization_percent,
            memory_used_bytes: Some(d.memory_used_bytes),
            memory_total_bytes: Some(d.memory_total_bytes),
            temperature_c: d.temperature_c,
            power_w: d.power_w,
        })
        .collect()
}

/// Handle to the samples. Cheap to clone.
#[derive(Clone, Default)]
pub struct Monitor {
    samples: Arc<Mutex<VecDeque<Sample>>>,
}

impl Monitor {
    /// Starts the sampling thread for a data dir on `disk_of`; each sample also
    /// refreshes `gpu`'s snapshot (which `/metrics` and the scheduler read).
    pub fn start(disk_of: PathBuf, gpu: Gpu) -> Monitor {
        let monitor = Monitor::default();
        let samples = Arc::downgrade(&monitor.samples);
        std::thread::Builder::new()
            .name("sys-poll".into())
            .spawn(move || {
                let Ok(mut system) = System::new_with_specifics(
                    RefreshKind::nothing()
                        .with_cpu(CpuRefreshKind::nothing().with_usage())
                        .with_memory(MemoryRefreshKind::nothing().with_ram()),
                ) else {
                    tracing::warn!("system statistics are unavailable");
                    return;
                };
                loop {
                    std::thread::sleep(Duration::from_secs(INTERVAL_SECS));
                    // Stop when the daemon has dropped every handle.
                    let Some(samples) = samples.upgrade() else {
                        return;
                    };
                    system.refresh_cpu_usage();
                    system.refresh_memory();
                    let (free, total) = rustix::fs::statvfs(&disk_of)
                        .map(|s| (s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize))
                        .unwrap_or((0, 0));
                    let sample = Sample {
                        t: jiff::Timestamp::now().as_second(),
                        cpu_percent: system.global_cpu_usage(),
                        memory_used_bytes: system.used_memory(),
                        memory_total_bytes: system.total_memory(),
                        disk_free_bytes: free,
                        disk_total_bytes: total,
                        gpus: gpu_samples(&gpu.refresh()),
                    };
                    let mut buffer = samples.lock();
                    if buffer.len() == KEEP {
                        buffer.pop_front();
                    }
                    buffer.push_back(sample);
                }
            })
            .expect("spawning the system monitor thread");
        monitor
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().iter().cloned().collect()
    }
}
