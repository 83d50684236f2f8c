//! The GPU, through NVML: the only module that talks to the NVIDIA driver.
//!
//! NVML is loaded at run time (`libnvidia-ml.so.1`), so the same binary runs on
//! machines without a GPU; there, [`probe`] reports "no GPU" instead of failing.
//! The live poller and VRAM budget arrive with the GPU scheduler; today this answers
//! `doctor` and `status`.

use serde::Serialize;

/// One GPU as NVML describes it.
#[derive(Debug, Clone, Serialize)]
pub struct GpuInfo {
    /// NVML device index.
    pub index: u32,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Total memory in bytes.
    pub memory_total_bytes: u64,
    /// Used memory in bytes at probe time.
    pub memory_used_bytes: u64,
}

/// What the probe found.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GpuProbe {
    /// The driver answered.
    Available {
        /// Driver version string.
        driver_version: String,
        /// Every device.
        devices: Vec<GpuInfo>,
    },
    /// No driver/library, or it failed: models run on the CPU.
    Unavailable {
        /// Why (the NVML error).
        reason: String,
    },
}

/// Asks NVML for the driver and devices. Blocking (loads a library, talks to the
/// driver): call it from a blocking thread.
pub fn probe() -> GpuProbe {
    #[allow(
        clippy::disallowed_methods,
        reason = "gpu is the module that talks to the driver"
    )]
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => {
            return GpuProbe::Unavailable {
                reason: e.to_string(),
            };
        }
    };
    let driver_version = nvml
        .sys_driver_version()
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            return GpuProbe::Unavailable {
                reason: format!("driver {driver_version} found but listing devices failed: {e}"),
            };
        }
    };
    let devices = (0..count)
        .filter_map(|index| {
            let device = nvml.device_by_index(index).ok()?;
            let memory = device.memory_info().ok()?;
            Some(GpuInfo {
                index,
                name: device.name().unwrap_or_else(|_| "unknown".to_string()),
                memory_total_bytes: memory.total,
                memory_used_bytes: memory.used,
            })
        })
        .collect();
    GpuProbe::Available {
        driver_version,
        devices,
    }
}

/// One GPU's live readings.
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

/// Keeps one NVML session open for repeated sampling (opening it costs milliseconds).
/// Lives on the monitor's thread; without a driver it samples nothing.
pub struct GpuPoller {
    nvml: Option<nvml_wrapper::Nvml>,
}

impl GpuPoller {
    /// Opens NVML if a driver is present.
    pub fn new() -> GpuPoller {
        GpuPoller {
            #[allow(
                clippy::disallowed_methods,
                reason = "gpu is the module that talks to the driver"
            )]
            nvml: nvml_wrapper::Nvml::init().ok(),
        }
    }

    /// Reads every device (blocking).
    pub fn sample(&self) -> Vec<GpuSample> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let count = nvml.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|index| {
                let device = nvml.device_by_index(index).ok()?;
                let memory = device.memory_info().ok();
                Some(GpuSample {
                    index,
                    name: device.name().unwrap_or_else(|_| "unknown".into()),
                    utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
                    memory_used_bytes: memory.as_ref().map(|m| m.used),
                    memory_total_bytes: memory.as_ref().map(|m| m.total),
                    temperature_c: device
                        .temperature(nvml_wrapper::enum_wrappers::device::TemperatureSensor::Gpu)
                        .ok(),
                    power_w: device.power_usage().ok().map(|mw| mw as f64 / 1000.0),
                })
            })
            .collect()
    }
}

impl Default for GpuPoller {
    fn default() -> Self {
        Self::new()
    }
}
