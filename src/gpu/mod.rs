//! The GPU: what the driver reports, behind one seam.
//!
//! [`GpuProbe`] is the seam: [`nvml::NvmlProbe`] is the only code that talks to the
//! NVIDIA driver (NVML, loaded at run time from `libnvidia-ml.so.1`, so the same binary
//! runs where there is none), and [`SimulatedGpu`] stands in for it in tests of the
//! scheduler. No driver, no device, or a driver/library mismatch is a normal state
//! ([`GpuSnapshot::unavailable`]), reported in words.
//!
//! [`Gpu`] is the daemon's handle: the probe plus the latest snapshot, refreshed by the
//! system monitor every few seconds and by the scheduler after each load and unload.
//! Every probe blocks (it talks to the driver): call it from a blocking thread.

pub mod nvml;
mod sim;

use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

pub use sim::SimulatedGpu;

/// Reads the GPUs. Implementations block; call them from a blocking thread.
pub trait GpuProbe: Send + Sync + 'static {
    /// Everything the driver says now.
    fn snapshot(&self) -> GpuSnapshot;
}

/// Whether the driver answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuState {
    /// NVML answered (there may still be zero devices).
    Available,
    /// No driver, no library, or they failed: models run on the CPU.
    Unavailable,
}

/// What the probe found at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct GpuSnapshot {
    /// Whether the driver answered.
    pub state: GpuState,
    /// Why there is no GPU, in words; `None` when available.
    pub reason: Option<String>,
    /// The driver's version, e.g. "550.54.15".
    pub driver_version: Option<String>,
    /// The CUDA version the driver supports, e.g. "12.4".
    pub cuda_version: Option<String>,
    /// Every device, by index.
    pub devices: Vec<GpuDevice>,
}

/// One device.
#[derive(Debug, Clone, Serialize)]
pub struct GpuDevice {
    /// NVML index.
    pub index: u32,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// The device's UUID ("GPU-…").
    pub uuid: String,
    /// Installed memory, bytes.
    pub memory_total_bytes: u64,
    /// Memory in use by anyone, bytes.
    pub memory_used_bytes: u64,
    /// Memory free, bytes.
    pub memory_free_bytes: u64,
    /// Compute utilisation over the last sample period, percent.
    pub utilization_percent: Option<u32>,
    /// Memory-controller utilisation, percent.
    pub memory_utilization_percent: Option<u32>,
    /// Die temperature, °C.
    pub temperature_c: Option<u32>,
    /// Power draw, watts.
    pub power_w: Option<f64>,
    /// Enforced power limit, watts.
    pub power_limit_w: Option<f64>,
    /// Corrected (single-bit) ECC errors since the driver loaded.
    pub ecc_corrected: Option<u64>,
    /// Uncorrected (double-bit) ECC errors since the driver loaded.
    pub ecc_uncorrected: Option<u64>,
    /// Why clocks are held down now ([`THROTTLE_REASONS`]); empty: not throttled.
    pub throttle_reasons: Vec<&'static str>,
    /// Processes holding memory on this device.
    pub processes: Vec<GpuProcess>,
}

/// A process using a device.
#[derive(Debug, Clone, Serialize)]
pub struct GpuProcess {
    /// Process id (in the driver's namespace).
    pub pid: u32,
    /// Its memory on this device, when the driver tells (not in every VM).
    pub used_bytes: Option<u64>,
    /// Its executable's name.
    pub name: Option<String>,
    /// One of the appliance's own processes (the daemon or one of its workers).
    pub ours: bool,
    /// The model it holds, when it is one of our workers.
    pub model: Option<String>,
}

/// Every throttle reason a snapshot may name (bounded: these are metric labels).
pub const THROTTLE_REASONS: &[&str] = &[
    "applications_clocks_setting",
    "sw_power_cap",
    "hw_slowdown",
    "sync_boost",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "display_clock_setting",
];

impl GpuSnapshot {
    /// No GPU, for `reason`.
    pub fn unavailable(reason: impl Into<String>) -> GpuSnapshot {
        GpuSnapshot {
            state: GpuState::Unavailable,
            reason: Some(reason.into()),
            driver_version: None,
            cuda_version: None,
            devices: Vec::new(),
        }
    }

    /// Whether there is at least one device to place models on.
    pub fn has_devices(&self) -> bool {
        self.state == GpuState::Available && !self.devices.is_empty()
    }

    /// Free memory over all devices, bytes (`None` without devices).
    pub fn free_bytes(&self) -> Option<u64> {
        self.has_devices()
            .then(|| self.devices.iter().map(|d| d.memory_free_bytes).sum())
    }

    /// Installed memory over all devices, bytes (`None` without devices).
    pub fn total_bytes(&self) -> Option<u64> {
        self.has_devices()
            .then(|| self.devices.iter().map(|d| d.memory_total_bytes).sum())
    }

    /// Memory a process holds over all devices, when the driver reports it.
    pub fn process_bytes(&self, pid: u32) -> Option<u64> {
        let mut found = None;
        for process in self
            .devices
            .iter()
            .flat_map(|d| &d.processes)
            .filter(|p| p.pid == pid)
        {
            if let Some(bytes) = process.used_bytes {
                *found.get_or_insert(0) += bytes;
            }
        }
        found
    }

    /// Marks the daemon's own processes: `workers` maps a worker's pid to its model.
    pub fn mark_ours(&mut self, daemon_pid: u32, workers: &[(u32, String)]) {
        for process in self.devices.iter_mut().flat_map(|d| &mut d.processes) {
            if let Some((_, model)) = workers.iter().find(|(pid, _)| *pid == process.pid) {
                process.ours = true;
                process.model = Some(model.clone());
            } else if process.pid == daemon_pid {
                process.ours = true;
            }
        }
    }

    /// Memory held by processes that are not ours (known per process), bytes.
    pub fn foreign_bytes(&self) -> u64 {
        self.devices
            .iter()
            .flat_map(|d| &d.processes)
            .filter(|p| !p.ours)
            .filter_map(|p| p.used_bytes)
            .sum()
    }
}

/// The daemon's GPU handle: the probe and its latest snapshot. Cheap to clone.
#[derive(Clone)]
pub struct Gpu {
    probe: Arc<dyn GpuProbe>,
    latest: Arc<RwLock<Arc<GpuSnapshot>>>,
}

impl Gpu {
    /// A handle over `probe`, with a first snapshot taken now (blocking).
    pub fn new(probe: Arc<dyn GpuProbe>) -> Gpu {
        let first = Arc::new(probe.snapshot());
        Gpu {
            probe,
            latest: Arc::new(RwLock::new(first)),
        }
    }

    /// A handle that never sees a GPU (tests of CPU-only behaviour).
    pub fn none() -> Gpu {
        let sim = SimulatedGpu::new(&[]);
        sim.set_unavailable(Some("no GPU probe"));
        Gpu::new(Arc::new(sim))
    }

    /// The system's GPUs through NVML (blocking: loads the library).
    pub fn system() -> Gpu {
        Gpu::new(Arc::new(nvml::NvmlProbe::open()))
    }

    /// The latest snapshot (no driver call).
    pub fn latest(&self) -> Arc<GpuSnapshot> {
        self.latest.read().clone()
    }

    /// Probes again and keeps the result (blocking).
    pub fn refresh(&self) -> Arc<GpuSnapshot> {
        let snapshot = Arc::new(self.probe.snapshot());
        *self.latest.write() = snapshot.clone();
        snapshot
    }

    /// [`Gpu::refresh`] on a blocking thread.
    pub async fn refresh_async(&self) -> Arc<GpuSnapshot> {
        let gpu = self.clone();
        match tokio::task::spawn_blocking(move || gpu.refresh()).await {
            Ok(snapshot) => snapshot,
            Err(_) => self.latest(),
        }
    }
}

/// Bytes as a short human text ("1.5 GiB").
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_sum_devices_and_attribute_processes() {
        let sim = SimulatedGpu::new(&[16 << 30, 8 << 30]);
        sim.set_process(0, 42, 3 << 30);
        sim.set_process(1, 42, 1 << 30);
        sim.set_process(0, 7, 2 << 30);
        let mut snapshot = sim.snapshot();
        assert!(snapshot.has_devices());
        assert_eq!(snapshot.total_bytes(), Some(24 << 30));
        assert_eq!(snapshot.free_bytes(), Some((24 - 6) << 30));
        assert_eq!(snapshot.process_bytes(42), Some(4 << 30));
        assert_eq!(snapshot.process_bytes(99), None);
        snapshot.mark_ours(1, &[(42, "m".into())]);
        assert_eq!(snapshot.foreign_bytes(), 2 << 30);
        let ours = &snapshot.devices[0].processes;
        assert!(
            ours.iter()
                .any(|p| p.pid == 42 && p.ours && p.model.as_deref() == Some("m"))
        );
        assert!(ours.iter().any(|p| p.pid == 7 && !p.ours));
    }

    #[test]
    fn no_gpu_is_a_plain_state() {
        let snapshot = GpuSnapshot::unavailable("no NVIDIA driver");
        assert!(!snapshot.has_devices());
        assert_eq!(snapshot.free_bytes(), None);
        assert_eq!(human_bytes(1536 << 20), "1.5 GiB");
        assert_eq!(human_bytes(512), "512 B");
    }
}
