//! Directory layouts: where a user instance and the system service keep their files.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Environment;

/// Which set of default directories applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// XDG directories of the current user (a developer or desktop install).
    User,
    /// FHS directories of the packaged system service.
    System,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::User => "user",
            Layout::System => "system",
        })
    }
}

impl Layout {
    /// Parses `user` or `system`.
    pub fn parse(s: &str) -> Option<Layout> {
        match s {
            "user" => Some(Layout::User),
            "system" => Some(Layout::System),
            _ => None,
        }
    }

    /// Without an explicit choice: the system layout when the package's configuration
    /// exists and this user has none of their own (so `appliance status` run by anyone
    /// on an installed machine finds the service), else the user layout.
    pub fn detect() -> Layout {
        let system_file = default_config_file(Layout::System);
        let user_file = default_config_file(Layout::User);
        let exists = |p: &Option<PathBuf>| p.as_deref().is_some_and(Path::exists);
        if exists(&system_file) && !exists(&user_file) {
            Layout::System
        } else {
            Layout::User
        }
    }
}

/// The configuration file read when no `--config` or `APPLIANCE_CONFIG` is given.
pub fn default_config_file(layout: Layout) -> Option<PathBuf> {
    match layout {
        Layout::System => Some(PathBuf::from("/etc/appliance/config.toml")),
        Layout::User => project_dirs().map(|d| d.config_dir().join("config.toml")),
    }
}

/// Default directories for a layout, keyed like the `[paths]` section.
pub(super) struct DefaultDirs {
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    pub runtime_dir: PathBuf,
}

pub(super) fn default_dirs(layout: Layout, env: &Environment) -> DefaultDirs {
    match layout {
        Layout::System => DefaultDirs {
            data_dir: "/var/lib/appliance".into(),
            log_dir: "/var/log/appliance".into(),
            runtime_dir: "/run/appliance".into(),
        },
        Layout::User => {
            // Without a home directory (a bare container) fall back to the working dir.
            let dirs = project_dirs();
            let data_dir = dirs
                .as_ref()
                .map(|d| d.data_dir().to_path_buf())
                .unwrap_or_else(|| PathBuf::from("appliance-data"));
            let log_dir = dirs
                .as_ref()
                .and_then(|d| d.state_dir().map(|s| s.join("logs")))
                .unwrap_or_else(|| data_dir.join("logs"));
            let runtime_dir = env
                .xdg_runtime_dir()
                .map(|r| r.join("appliance"))
                .unwrap_or_else(|| data_dir.join("run"));
            DefaultDirs {
                data_dir,
                log_dir,
                runtime_dir,
            }
        }
    }
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "appliance")
}
