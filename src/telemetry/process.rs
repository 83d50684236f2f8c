//! This process's CPU time and memory, read through sysinfo.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// A snapshot of this process.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProcessStats {
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// User + system CPU time in seconds.
    pub cpu_seconds: f64,
    /// Process start, seconds since the Unix epoch.
    pub start_time_seconds: u64,
}

/// Reads this process's statistics. Blocking (reads `/proc`): call it from a blocking
/// thread, not an async task.
pub fn process_stats() -> ProcessStats {
    let Ok(mut system) = System::new() else {
        return ProcessStats::default();
    };
    let pid = Pid::from_u32(std::process::id());
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_cpu().with_memory(),
    );
    match system.process(pid) {
        Some(process) => ProcessStats {
            rss_bytes: process.memory(),
            cpu_seconds: process.accumulated_cpu_time() as f64 / 1000.0,
            start_time_seconds: process.start_time(),
        },
        None => ProcessStats::default(),
    }
}
