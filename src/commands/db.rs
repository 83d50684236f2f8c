//! `appliance db migrate`: bring a database file to the current schema.

use std::time::Duration;

use anyhow::Context;

use crate::cli::exit;
use crate::config::Loaded;
use crate::store;

/// Applies pending migrations and prints the versions.
pub fn migrate(loaded: &Loaded) -> anyhow::Result<u8> {
    let config = &loaded.config;
    let path = config.database_path();
    fs_err::create_dir_all(&config.paths.data_dir).context("preparing the data dir")?;
    let report = store::migrate_file(&path, Duration::from_millis(config.store.busy_timeout_ms))
        .with_context(|| format!("migrating {}", path.display()))?;
    if report.from == report.to {
        println!(
            "{}: schema version {} is current; nothing to do",
            path.display(),
            report.to
        );
    } else {
        println!(
            "{}: migrated schema version {} -> {}",
            path.display(),
            report.from,
            report.to
        );
    }
    Ok(exit::OK)
}
