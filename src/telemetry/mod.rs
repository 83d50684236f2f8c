//! Telemetry: logging set-up, the Prometheus metrics registry, and process statistics.
//!
//! Owns every metric name and the text exposition format. Other modules report
//! observations through [`Metrics`] methods; they never format metrics themselves.

mod logging;
mod metrics;
mod process;

pub use logging::{LogGuard, LogInitError, LogLevel, init_cli_logging, init_daemon_logging};
pub use metrics::{Gauge, Metrics};
pub use process::{ProcessStats, process_stats};
