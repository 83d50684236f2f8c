//! The real probe: NVML through `nvml-wrapper`. The only code in the appliance that
//! talks to the NVIDIA driver.
//!
//! One NVML session stays open for repeated snapshots (opening costs milliseconds). If
//! it could not be opened, every snapshot says why, and a later snapshot tries again
//! (the driver may have been installed or reloaded meanwhile).

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use parking_lot::Mutex;

use super::{GpuDevice, GpuProbe, GpuProcess, GpuSnapshot, GpuState};

/// NVML, opened once.
pub struct NvmlProbe {
    nvml: Mutex<Result<Nvml, String>>,
}

impl NvmlProbe {
    /// Opens NVML if a driver is present (blocking: loads a library).
    pub fn open() -> NvmlProbe {
        NvmlProbe {
            nvml: Mutex::new(init()),
        }
    }
}

fn init() -> Result<Nvml, String> {
    #[allow(
        clippy::disallowed_methods,
        reason = "gpu is the module that talks to the driver"
    )]
    Nvml::init().map_err(|e| describe(&e))
}

/// Why NVML is not usable, in an administrator's words.
fn describe(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            "no NVIDIA driver found (libnvidia-ml.so.1 could not be loaded)".into()
        }
        NvmlError::DriverNotLoaded => "the NVIDIA kernel driver is not loaded".into(),
        NvmlError::LibRmVersionMismatch => {
            "the NVIDIA driver and its library do not match (a driver update without a reboot?)"
                .into()
        }
        NvmlError::NoPermission => "no permission to open the NVIDIA devices".into(),
        NvmlError::GpuLost => "a GPU fell off the bus".into(),
        other => format!("NVML failed: {other}"),
    }
}

impl GpuProbe for NvmlProbe {
    fn snapshot(&self) -> GpuSnapshot {
        let mut guard = self.nvml.lock();
        if guard.is_err() {
            *guard = init();
        }
        let nvml = match &*guard {
            Ok(nvml) => nvml,
            Err(reason) => return GpuSnapshot::unavailable(reason.clone()),
        };
        let driver_version = nvml.sys_driver_version().ok();
        let cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
            format!(
                "{}.{}",
                nvml_wrapper::cuda_driver_version_major(v),
                nvml_wrapper::cuda_driver_version_minor(v)
            )
        });
        let count = match nvml.device_count() {
            Ok(n) => n,
            Err(e) => return GpuSnapshot::unavailable(describe(&e)),
        };
        let devices = (0..count)
            .filter_map(|index| {
                let device = nvml.device_by_index(index).ok()?;
                read_device(nvml, &device, index)
            })
            .collect();
        GpuSnapshot {
            state: GpuState::Available,
            reason: None,
            driver_version,
            cuda_version,
            devices,
        }
    }
}

fn read_device(nvml: &Nvml, device: &Device<'_>, index: u32) -> Option<GpuDevice> {
    let memory = device.memory_info().ok()?;
    let utilization = device.utilization_rates().ok();
    let mut processes: Vec<GpuProcess> = Vec::new();
    let lists = [
        device.running_compute_processes(),
        device.running_graphics_processes(),
    ];
    for info in lists.into_iter().flatten().flatten() {
        let used = match info.used_gpu_memory {
            UsedGpuMemory::Used(bytes) => Some(bytes),
            UsedGpuMemory::Unavailable => None,
        };
        // A process using compute and graphics appears in both lists.
        if let Some(seen) = processes.iter_mut().find(|p| p.pid == info.pid) {
            seen.used_bytes = seen.used_bytes.max(used);
            continue;
        }
        processes.push(GpuProcess {
            pid: info.pid,
            used_bytes: used,
            name: nvml.sys_process_name(info.pid, 64).ok(),
            ours: false,
            model: None,
        });
    }
    Some(GpuDevice {
        index,
        name: device.name().unwrap_or_else(|_| "unknown".into()),
        uuid: device.uuid().unwrap_or_default(),
        memory_total_bytes: memory.total,
        memory_used_bytes: memory.used,
        memory_free_bytes: memory.free,
        utilization_percent: utilization.as_ref().map(|u| u.gpu),
        memory_utilization_percent: utilization.as_ref().map(|u| u.memory),
        temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
        power_w: device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
        power_limit_w: device
            .enforced_power_limit()
            .ok()
            .map(|mw| f64::from(mw) / 1000.0),
        ecc_corrected: device
            .total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
            .ok(),
        ecc_uncorrected: device
            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
            .ok(),
        throttle_reasons: device
            .current_throttle_reasons()
            .map(throttle_names)
            .unwrap_or_default(),
        processes,
    })
}

/// The active throttle reasons, by the names of [`super::THROTTLE_REASONS`]. An idle
/// GPU's low clocks are not throttling and are left out.
fn throttle_names(reasons: ThrottleReasons) -> Vec<&'static str> {
    [
        (
            ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
            "applications_clocks_setting",
        ),
        (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
        (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
        (ThrottleReasons::SYNC_BOOST, "sync_boost"),
        (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
        (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
        (
            ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN,
            "hw_power_brake_slowdown",
        ),
        (
            ThrottleReasons::DISPLAY_CLOCK_SETTING,
            "display_clock_setting",
        ),
    ]
    .into_iter()
    .filter(|(flag, _)| reasons.contains(*flag))
    .map(|(_, name)| name)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_reasons_are_named_from_the_bounded_list() {
        let names = throttle_names(ThrottleReasons::SW_POWER_CAP | ThrottleReasons::GPU_IDLE);
        assert_eq!(names, vec!["sw_power_cap"]);
        for name in throttle_names(ThrottleReasons::all()) {
            assert!(super::super::THROTTLE_REASONS.contains(&name));
        }
    }

    #[test]
    fn without_a_driver_the_probe_reports_why() {
        // This machine has no NVIDIA driver; where one exists the snapshot is
        // available instead, and both are valid outcomes of the same call.
        let snapshot = NvmlProbe::open().snapshot();
        match snapshot.state {
            GpuState::Unavailable => assert!(!snapshot.reason.unwrap_or_default().is_empty()),
            GpuState::Available => assert!(snapshot.reason.is_none()),
        }
    }
}
