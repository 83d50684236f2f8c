//! A simulated GPU behind the [`GpuProbe`] seam, for tests of placement and the
//! scheduler: devices of a given size, processes that hold memory, a driver that can
//! disappear. Nothing here touches hardware.
//!
//! Processes can also take memory themselves through a *ledger*: a directory where a
//! (fake) worker writes a file named by its pid holding the bytes it "allocated" on
//! device 0. Entries of processes that have exited are ignored, so memory returns
//! when a worker dies or is unloaded, as it does on a real GPU.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{GpuDevice, GpuProbe, GpuProcess, GpuSnapshot, GpuState};

/// A GPU whose state the test sets. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct SimulatedGpu {
    state: Arc<Mutex<State>>,
}

struct State {
    totals: Vec<u64>,
    /// Memory per (device, pid).
    processes: BTreeMap<(u32, u32), u64>,
    /// Memory held outside any listed process (driver, other VMs' reservations).
    hidden: Vec<u64>,
    /// `Some(reason)`: the driver is gone.
    unavailable: Option<String>,
    /// Where processes record their own use.
    ledger: Option<std::path::PathBuf>,
}

impl SimulatedGpu {
    /// Devices of these sizes, empty.
    pub fn new(totals: &[u64]) -> SimulatedGpu {
        SimulatedGpu {
            state: Arc::new(Mutex::new(State {
                totals: totals.to_vec(),
                processes: BTreeMap::new(),
                hidden: vec![0; totals.len()],
                unavailable: None,
                ledger: None,
            })),
        }
    }

    /// Processes may record their own use of device 0 in `dir` (see the module docs).
    pub fn with_ledger(self, dir: &std::path::Path) -> SimulatedGpu {
        self.state.lock().ledger = Some(dir.to_path_buf());
        self
    }

    /// Process `pid` holds `bytes` on `device` (0 removes it).
    pub fn set_process(&self, device: u32, pid: u32, bytes: u64) {
        let mut state = self.state.lock();
        if bytes == 0 {
            state.processes.remove(&(device, pid));
        } else {
            state.processes.insert((device, pid), bytes);
        }
    }

    /// Memory used on `device` by nobody the driver lists.
    pub fn set_hidden(&self, device: u32, bytes: u64) {
        if let Some(hidden) = self.state.lock().hidden.get_mut(device as usize) {
            *hidden = bytes;
        }
    }

    /// The driver stops answering (`Some`) or comes back (`None`).
    pub fn set_unavailable(&self, reason: Option<&str>) {
        self.state.lock().unavailable = reason.map(str::to_string);
    }
}

impl GpuProbe for SimulatedGpu {
    fn snapshot(&self) -> GpuSnapshot {
        let state = self.state.lock();
        if let Some(reason) = &state.unavailable {
            return GpuSnapshot::unavailable(reason.clone());
        }
        let mut processes = state.processes.clone();
        if let Some(dir) = &state.ledger {
            for (pid, bytes) in ledger(dir) {
                processes.insert((0, pid), bytes);
            }
        }
        let devices = state
            .totals
            .iter()
            .enumerate()
            .map(|(index, total)| {
                let index = index as u32;
                let processes: Vec<GpuProcess> = processes
                    .iter()
                    .filter(|((device, _), _)| *device == index)
                    .map(|((_, pid), bytes)| GpuProcess {
                        pid: *pid,
                        used_bytes: Some(*bytes),
                        name: Some("simulated".into()),
                        ours: false,
                        model: None,
                    })
                    .collect();
                let used = (processes.iter().filter_map(|p| p.used_bytes).sum::<u64>()
                    + state.hidden[index as usize])
                    .min(*total);
                GpuDevice {
                    index,
                    name: "Simulated GPU".into(),
                    uuid: format!("GPU-00000000-0000-0000-0000-{index:012}"),
                    memory_total_bytes: *total,
                    memory_used_bytes: used,
                    memory_free_bytes: total - used,
                    utilization_percent: Some(0),
                    memory_utilization_percent: Some(0),
                    temperature_c: Some(40),
                    power_w: Some(70.0),
                    power_limit_w: Some(700.0),
                    ecc_corrected: Some(0),
                    ecc_uncorrected: Some(0),
                    throttle_reasons: Vec::new(),
                    processes,
                }
            })
            .collect();
        GpuSnapshot {
            state: GpuState::Available,
            reason: None,
            driver_version: Some("simulated".into()),
            cuda_version: Some("12.4".into()),
            devices,
        }
    }
}

/// The live entries of a ledger directory: (pid, bytes).
fn ledger(dir: &std::path::Path) -> Vec<(u32, u64)> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            // A process that has exited (or is a zombie) holds nothing.
            let status = fs_err::read_to_string(format!("/proc/{pid}/status")).ok()?;
            if status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
            {
                return None;
            }
            let bytes = fs_err::read_to_string(entry.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((pid, bytes))
        })
        .collect()
}
