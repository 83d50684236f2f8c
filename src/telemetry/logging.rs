//! Logging: `tracing` to the console (text on a terminal, JSON lines otherwise) and,
//! for the daemon, JSON lines in daily-rotated files with a retention count.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, reload};

use crate::config::{LogConfig, LogFormat};

/// Keeps the file writer alive; dropping it flushes buffered lines to disk.
#[must_use = "dropping the guard stops file logging"]
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

/// Changes the daemon's log filter while it runs (`PUT /api/v1/log-level`).
#[derive(Clone)]
pub struct LogLevel {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    current: Arc<Mutex<String>>,
}

impl LogLevel {
    /// A control that only remembers the value (for processes without a reloadable
    /// subscriber, such as tests that build an `AppState` directly).
    pub fn detached(level: &str) -> LogLevel {
        LogLevel {
            handle: None,
            current: Arc::new(Mutex::new(level.to_string())),
        }
    }

    /// The filter in effect.
    pub fn current(&self) -> String {
        self.current.lock().clone()
    }

    /// Replaces the filter; the text is validated first and nothing changes on error.
    pub fn set(&self, level: &str) -> Result<(), LogInitError> {
        let filter = parse_filter(level)?;
        if let Some(handle) = &self.handle {
            handle.reload(filter).map_err(|e| LogInitError::Filter {
                filter: level.to_string(),
                reason: e.to_string(),
            })?;
        }
        *self.current.lock() = level.to_string();
        Ok(())
    }
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    /// `log.level` is not a valid filter.
    #[error("invalid log filter `{filter}`: {reason}")]
    Filter {
        /// The filter text.
        filter: String,
        /// The parser's reason.
        reason: String,
    },
    /// The log directory could not be used.
    #[error("cannot write log files in {dir}: {reason}")]
    Dir {
        /// The log dir.
        dir: String,
        /// Why.
        reason: String,
    },
}

/// Console + rotating file logging for `appliance serve`.
pub fn init_daemon_logging(
    config: &LogConfig,
    log_dir: &Path,
) -> Result<(LogGuard, LogLevel), LogInitError> {
    let (filter, handle) = reload::Layer::new(parse_filter(&config.level)?);
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let console = if json {
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    };

    let (file_layer, guard) = if config.file {
        fs_err::create_dir_all(log_dir).map_err(|e| dir_error(log_dir, e))?;
        let appender = Builder::new()
            .rotation(Rotation::DAILY)
            .filename_prefix("appliance")
            .filename_suffix("log")
            .max_log_files(config.retention_days)
            .build(log_dir)
            .map_err(|e| dir_error(log_dir, e))?;
        let (writer, guard) = tracing_appender::non_blocking(appender);
        let layer = fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_ansi(false)
            .with_writer(writer)
            .boxed();
        (Some(layer), Some(guard))
    } else {
        (None, None)
    };

    // A second initialisation in one process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(file_layer)
        .try_init();
    let level = LogLevel {
        handle: Some(handle),
        current: Arc::new(Mutex::new(config.level.clone())),
    };
    Ok((LogGuard { _file: guard }, level))
}

/// Console-only logging for short CLI commands: warnings and errors unless `verbose`.
pub fn init_cli_logging(verbose: bool) {
    let filter = EnvFilter::new(if verbose { "info" } else { "warn" });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
        .try_init();
}

/// Parses a filter directive such as `info` or `warn,appliance=debug`.
pub fn parse_filter(level: &str) -> Result<EnvFilter, LogInitError> {
    EnvFilter::builder()
        .parse(level)
        .map_err(|e| LogInitError::Filter {
            filter: level.to_string(),
            reason: e.to_string(),
        })
}

fn dir_error(dir: &Path, e: impl std::fmt::Display) -> LogInitError {
    LogInitError::Dir {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    }
}
