//! Health checks shared by `appliance doctor` (offline) and `GET /readyz` (live).
//!
//! Each check is a plain blocking function returning a [`Check`]; callers on the async
//! runtime run them on a blocking thread.

use std::path::Path;

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but someone should look.
    Warn,
    /// Broken: the daemon is not ready / doctor exits non-zero.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name (`database`, `disk_space`, …).
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    /// A passing check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    /// A warning with a hint.
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    /// A failure with a hint.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

/// Creates `dir` if needed and proves a file can be written and removed in it.
pub fn dir_writable(name: &str, dir: &Path) -> Check {
    let probe = dir.join(format!(".appliance-write-probe-{}", std::process::id()));
    let result = fs_err::create_dir_all(dir)
        .and_then(|()| fs_err::write(&probe, b"probe"))
        .and_then(|()| fs_err::remove_file(&probe));
    match result {
        Ok(()) => Check::ok(name, format!("{} is writable", dir.display())),
        Err(e) => Check::fail(
            name,
            format!("{} is not writable: {e}", dir.display()),
            "fix the directory's owner/permissions, or point the setting elsewhere",
        ),
    }
}

/// When the first certificate of the PEM chain at `path` expires (Unix seconds).
pub fn certificate_expiry(path: &Path) -> Result<i64, String> {
    let pem = fs_err::read(path).map_err(|e| e.to_string())?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|_| format!("{} holds no PEM certificate", path.display()))?;
    let cert = pem
        .parse_x509()
        .map_err(|_| format!("{} holds a certificate that does not parse", path.display()))?;
    Ok(cert.validity().not_after.timestamp())
}

/// Days a certificate has left below which it is reported.
pub const CERTIFICATE_WARN_DAYS: i64 = 21;

/// The TLS certificate's remaining validity (`None` without TLS).
pub fn certificate(path: &Path) -> Option<Check> {
    if path.as_os_str().is_empty() {
        return None;
    }
    let renew = "renew it (or `appliance tls self-signed` for a new self-signed one), then reload the daemon (SIGHUP)";
    Some(match certificate_expiry(path) {
        Err(e) => Check::fail(
            "certificate",
            e,
            "point tls.cert at a PEM certificate chain",
        ),
        Ok(at) => {
            let days = (at - jiff::Timestamp::now().as_second()).div_euclid(86_400);
            let when =
                jiff::Timestamp::from_second(at).map_or_else(|_| at.to_string(), |t| t.to_string());
            if days < 0 {
                Check::fail(
                    "certificate",
                    format!("{} expired on {when}", path.display()),
                    renew,
                )
            } else if days < CERTIFICATE_WARN_DAYS {
                Check::warn(
                    "certificate",
                    format!("{} expires in {days} days ({when})", path.display()),
                    renew,
                )
            } else {
                Check::ok("certificate", format!("valid until {when} ({days} days)"))
            }
        }
    })
}

/// The data dir's permissions: nobody but its owner (and group, reading) may look in.
pub fn data_dir_permissions(dir: &Path) -> Check {
    use std::os::unix::fs::PermissionsExt;
    match fs_err::metadata(dir) {
        Err(e) => Check::warn(
            "permissions",
            e.to_string(),
            "start the daemon once to create it",
        ),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o027 != 0 {
                Check::warn(
                    "permissions",
                    format!(
                        "{} is mode {mode:o}: others can read it or its group can write",
                        dir.display()
                    ),
                    format!(
                        "chmod 750 {} (it holds the database, keys' hashes and uploads)",
                        dir.display()
                    ),
                )
            } else {
                Check::ok("permissions", format!("{} is mode {mode:o}", dir.display()))
            }
        }
    }
}

/// The newest backup against the schedule, as `doctor` and `/readyz` report it: too old
/// (or none after the first interval) is a warning with the command that makes one.
pub fn backup(
    schedule: &crate::backup::Schedule,
    newest: Option<&crate::backup::BackupInfo>,
) -> Check {
    let last = newest.and_then(|b| b.manifest.created_at.parse::<jiff::Timestamp>().ok());
    let hint = "make one now: `appliance backup create` (or the admin page's Backups)";
    match (newest, schedule.hours()) {
        (None, 0) => Check::warn(
            "backup",
            "no backup exists and none is scheduled (backup.schedule_hours = 0)",
            hint,
        ),
        (None, _) if schedule.overdue(None) => Check::warn("backup", "no backup exists yet", hint),
        (None, _) => Check::ok(
            "backup",
            "no backup yet; the schedule makes the first within an hour of start",
        ),
        (Some(b), _) if schedule.overdue(last) => Check::warn(
            "backup",
            format!(
                "the newest backup ({}) is older than the schedule allows (every {} h)",
                b.manifest.created_at,
                schedule.hours()
            ),
            hint,
        ),
        (Some(b), _) => Check::ok(
            "backup",
            format!("newest backup {} ({})", b.manifest.created_at, b.name),
        ),
    }
}

/// The GPUs as `doctor` and `/readyz` report them: no GPU is a warning with advice,
/// never a failure (the appliance runs on the CPU then).
pub fn gpu(snapshot: &crate::gpu::GpuSnapshot, offload: bool) -> Check {
    use crate::gpu::human_bytes;
    if !snapshot.has_devices() {
        let why = snapshot
            .reason
            .clone()
            .unwrap_or_else(|| "the NVIDIA driver reports no device".into());
        return Check::warn(
            "gpu",
            format!("no NVIDIA GPU ({why}): models run on the CPU"),
            "install the NVIDIA driver to use a GPU; check with `nvidia-smi`",
        );
    }
    let devices = snapshot
        .devices
        .iter()
        .map(|d| {
            format!(
                "#{} {} ({} free of {})",
                d.index,
                d.name,
                human_bytes(d.memory_free_bytes),
                human_bytes(d.memory_total_bytes)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let detail = format!(
        "NVIDIA driver {}, CUDA {}: {devices}",
        snapshot.driver_version.as_deref().unwrap_or("?"),
        snapshot.cuda_version.as_deref().unwrap_or("?")
    );
    if offload {
        Check::ok("gpu", detail)
    } else {
        Check::warn(
            "gpu",
            format!("{detail}; this build has no CUDA support, so models run on the CPU"),
            "install the CUDA build of the appliance (see scripts/build-cuda)",
        )
    }
}

/// Free space on the file system holding `dir` (or its nearest existing parent).
pub fn disk_space(dir: &Path, min_free_mb: u64) -> Check {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    match rustix::fs::statvfs(existing) {
        Ok(stat) => {
            let free_mb = stat.f_bavail.saturating_mul(stat.f_frsize) / (1024 * 1024);
            let detail = format!("{free_mb} MiB free on the disk holding {}", dir.display());
            if free_mb < min_free_mb {
                Check::fail(
                    "disk_space",
                    detail,
                    format!(
                        "free space or move the data dir; at least {min_free_mb} MiB is required (health.min_free_disk_mb)"
                    ),
                )
            } else if free_mb < min_free_mb.saturating_mul(4) {
                Check::warn("disk_space", detail, "the disk is getting full")
            } else {
                Check::ok("disk_space", detail)
            }
        }
        Err(e) => Check::fail(
            "disk_space",
            format!("cannot read free space of {}: {e}", existing.display()),
            "check that the data dir is on a mounted file system",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_dir_passes_and_file_in_its_place_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            dir_writable("data_dir", &dir.path().join("new/sub")).status,
            Status::Ok
        );
        let file = dir.path().join("file");
        fs_err::write(&file, "x").unwrap();
        let check = dir_writable("data_dir", &file.join("sub"));
        assert_eq!(check.status, Status::Fail);
        assert!(check.hint.is_some());
    }

    #[test]
    fn disk_space_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        assert_ne!(disk_space(dir.path(), 1).status, Status::Fail);
        assert_eq!(
            disk_space(dir.path(), u64::MAX / (1 << 21)).status,
            Status::Fail
        );
    }
}
