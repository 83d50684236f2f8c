//! Reading archives back: their manifest, a full verification (every checksum, the
//! database's integrity and row counts), and the restore that swaps a verified copy in
//! place of the data dir.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::{BackupError, DATA_DIRS, DB_NAME, FORMAT, MANIFEST, Manifest, Member};
use crate::hashing::Hashing;

/// Where a restore leaves the backed-up configuration file, in the data dir.
pub const CONFIG_COPY: &str = "config-from-backup.toml";

/// What a verification found.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Members checked against their sha256.
    pub members: usize,
    /// Bytes checked.
    pub bytes: u64,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Where the data dir that was replaced now is (delete it when satisfied).
    pub previous: Option<PathBuf>,
    /// Model files the manifest lists that are missing or differ in the models dir.
    pub missing_models: Vec<String>,
    /// The configuration file that was backed up, now in the data dir (it is not put in
    /// place of the current one unless asked).
    pub config: Option<PathBuf>,
}

/// Reads the manifest (the archive's last member) without checking anything else.
pub fn read_manifest(path: &Path) -> Result<Manifest, BackupError> {
    let mut found = None;
    each_member(path, |name, entry| {
        if name == MANIFEST {
            let mut text = Vec::new();
            entry.take(16 << 20).read_to_end(&mut text)?;
            found = Some(parse_manifest(&text)?);
        }
        Ok(())
    })?;
    found.ok_or_else(|| incomplete(path))
}

/// Checks every member against the manifest and the database copy's integrity and
/// row counts, extracting only the database (to a temporary file).
pub fn verify(path: &Path, busy: Duration) -> Result<Verified, BackupError> {
    let scratch = tempfile::tempdir()?;
    let (manifest, members, bytes) = unpack(path, scratch.path(), false)?;
    check_database(&scratch.path().join(DB_NAME), &manifest, busy)?;
    Ok(Verified {
        manifest,
        members,
        bytes,
    })
}

/// Restores the archive at `path` into `data_dir`: verifies and extracts everything
/// into a new directory beside it, checks the database, carries over what the archive
/// does not hold (models, other backups, logs), then swaps the directories. The data
/// dir is untouched unless every step before the swap succeeded. The caller holds the
/// data dir's instance lock (no daemon may run).
pub fn restore(
    path: &Path,
    data_dir: &Path,
    models_dir: &Path,
    busy: Duration,
) -> Result<RestoreReport, BackupError> {
    let parent = data_dir
        .parent()
        .ok_or_else(|| BackupError::Invalid("the data dir has no parent directory".into()))?;
    let base = data_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BackupError::Invalid("the data dir has no name".into()))?;
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let staging = parent.join(format!(".{base}.restore-{stamp}"));
    if staging.exists() {
        fs_err::remove_dir_all(&staging)?;
    }
    fs_err::create_dir_all(&staging)?;
    let outcome = (|| {
        let (manifest, _, _) = unpack(path, &staging, true)?;
        check_database(&staging.join(DB_NAME), &manifest, busy)?;
        let config = staging.join("config").join("config.toml");
        if config.is_file() {
            fs_err::rename(&config, staging.join(CONFIG_COPY))?;
            let _ = fs_err::remove_dir(staging.join("config"));
        }
        // Model files inside the archive go to the models dir's place in the new tree
        // (when it lives in the data dir) or beside the old ones (when it does not).
        let models_inside = models_dir.starts_with(data_dir);
        if manifest.with_models && !models_inside {
            move_tree(&staging.join("models"), models_dir, false)?;
        }
        // Everything of the old data dir the archive does not replace comes along.
        if data_dir.exists() {
            for entry in fs_err::read_dir(data_dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let replaced = DATA_DIRS.contains(&name.as_ref())
                    || name.starts_with(DB_NAME)
                    || name == CONFIG_COPY
                    || name == "appliance.lock"
                    || (name == "models" && manifest.with_models && models_inside);
                if !replaced {
                    move_tree(&entry.path(), &staging.join(name.as_ref()), true)?;
                }
            }
            copy_owner(data_dir, &staging);
        }
        Ok::<_, BackupError>(manifest)
    })();
    let manifest = match outcome {
        Ok(manifest) => manifest,
        Err(e) => {
            // Put back anything already carried over, then drop the staging copy.
            if data_dir.exists() {
                restore_carried(&staging, data_dir);
            }
            let _ = fs_err::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let previous = if data_dir.exists() {
        let previous = parent.join(format!("{base}.before-restore-{stamp}"));
        fs_err::rename(data_dir, &previous)?;
        Some(previous)
    } else {
        None
    };
    fs_err::rename(&staging, data_dir)?;
    if let Ok(d) = fs_err::File::open(parent) {
        let _ = d.sync_all();
    }
    let missing_models = manifest
        .models
        .iter()
        .filter(|m| {
            fs_err::metadata(models_dir.join(&m.path)).map_or(true, |meta| meta.len() != m.bytes)
        })
        .map(|m| m.path.clone())
        .collect();
    let config = Some(data_dir.join(CONFIG_COPY)).filter(|p| p.is_file());
    Ok(RestoreReport {
        manifest,
        previous,
        missing_models,
        config,
    })
}

/// Streams the archive; with `extract`, writes every member under `dir` (else only the
/// database); checks each against the manifest. Returns the manifest, members and
/// bytes checked.
fn unpack(path: &Path, dir: &Path, extract: bool) -> Result<(Manifest, usize, u64), BackupError> {
    let mut seen: Vec<Member> = Vec::new();
    let mut manifest = None;
    each_member(path, |name, entry| {
        if manifest.is_some() {
            return Err(BackupError::Invalid(format!(
                "`{name}` follows the manifest; the archive was altered"
            )));
        }
        if name == MANIFEST {
            let mut text = Vec::new();
            entry.take(16 << 20).read_to_end(&mut text)?;
            manifest = Some(parse_manifest(&text)?);
            return Ok(());
        }
        let rel = safe_path(name)?;
        let mut reader = Hashing::new(entry);
        if extract || name == DB_NAME {
            let target = dir.join(&rel);
            if let Some(parent) = target.parent() {
                fs_err::create_dir_all(parent)?;
            }
            let mut out = fs_err::File::create(&target)?;
            std::io::copy(&mut reader, &mut out)?;
            out.sync_all()?;
        } else {
            std::io::copy(&mut reader, &mut std::io::sink())?;
        }
        seen.push(Member {
            path: name.to_string(),
            bytes: reader.count(),
            sha256: reader.hex(),
        });
        Ok(())
    })?;
    let manifest = manifest.ok_or_else(|| incomplete(path))?;
    let listed: BTreeSet<(&str, u64, &str)> = manifest
        .members
        .iter()
        .map(|m| (m.path.as_str(), m.bytes, m.sha256.as_str()))
        .collect();
    let found: BTreeSet<(&str, u64, &str)> = seen
        .iter()
        .map(|m| (m.path.as_str(), m.bytes, m.sha256.as_str()))
        .collect();
    if let Some(bad) = listed.symmetric_difference(&found).next() {
        return Err(BackupError::Invalid(format!(
            "`{}` does not match the manifest (missing, extra or damaged); the archive cannot be trusted",
            bad.0
        )));
    }
    if !found.iter().any(|m| m.0 == DB_NAME) {
        return Err(BackupError::Invalid("the archive holds no database".into()));
    }
    let bytes = seen.iter().map(|m| m.bytes).sum();
    Ok((manifest, seen.len(), bytes))
}

/// The database copy must be whole and hold what the manifest counted.
fn check_database(db: &Path, manifest: &Manifest, busy: Duration) -> Result<(), BackupError> {
    let census = crate::store::snapshot::census(db, busy)?;
    if census.integrity != ["ok"] {
        return Err(BackupError::Invalid(format!(
            "the database in the archive fails its integrity check: {}",
            census.integrity.join("; ")
        )));
    }
    if census.schema_version != manifest.schema_version || census.rows != manifest.rows {
        return Err(BackupError::Invalid(
            "the database in the archive does not hold the rows its manifest counted".into(),
        ));
    }
    if census.schema_version > crate::store::SCHEMA_VERSION {
        return Err(BackupError::Invalid(format!(
            "the backup has schema version {}, newer than this build supports ({}); restore it with the version that made it ({})",
            census.schema_version,
            crate::store::SCHEMA_VERSION,
            manifest.app_version
        )));
    }
    Ok(())
}

fn each_member(
    path: &Path,
    mut visit: impl FnMut(&str, &mut dyn Read) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let file = fs_err::File::open(path)?;
    let decoder = zstd::Decoder::new(file).map_err(|e| {
        BackupError::Invalid(format!("{} is not a zstd archive: {e}", path.display()))
    })?;
    let mut archive = tar::Archive::new(decoder);
    let entries = archive.entries().map_err(|e| {
        BackupError::Invalid(format!("{} is not a backup archive: {e}", path.display()))
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            BackupError::Invalid(format!("{} is damaged or incomplete: {e}", path.display()))
        })?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BackupError::Invalid(
                "the archive holds something other than plain files".into(),
            ));
        }
        let name = entry
            .path()
            .map_err(|e| BackupError::Invalid(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        visit(&name, &mut entry)?;
    }
    Ok(())
}

fn parse_manifest(text: &[u8]) -> Result<Manifest, BackupError> {
    let manifest: Manifest = serde_json::from_slice(text)
        .map_err(|e| BackupError::Invalid(format!("the manifest is not readable: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Invalid(format!(
            "archive format {} is not one this build reads ({FORMAT})",
            manifest.format
        )));
    }
    Ok(manifest)
}

fn incomplete(path: &Path) -> BackupError {
    BackupError::Invalid(format!(
        "{} has no manifest: it is incomplete (interrupted while written?) or not an appliance backup",
        path.display()
    ))
}

/// A member's path, only if it is relative, stays inside, and is one the appliance
/// writes.
fn safe_path(name: &str) -> Result<PathBuf, BackupError> {
    let path = Path::new(name);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    let first = path
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    let known = name == DB_NAME
        || DATA_DIRS.contains(&first)
        || first == "models"
        || name == "config/config.toml";
    if !plain || !known {
        return Err(BackupError::Invalid(format!(
            "the archive holds `{name}`, which no appliance backup contains"
        )));
    }
    Ok(path.to_path_buf())
}

/// Moves `from` to `to` (a rename; same file system), merging into an existing
/// directory when `merge`.
fn move_tree(from: &Path, to: &Path, merge: bool) -> Result<(), BackupError> {
    if !from.exists() {
        return Ok(());
    }
    if !to.exists() {
        if let Some(parent) = to.parent() {
            fs_err::create_dir_all(parent)?;
        }
        fs_err::rename(from, to)?;
        return Ok(());
    }
    if from.is_dir() && to.is_dir() {
        for entry in fs_err::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if merge || !target.exists() {
                move_tree(&entry.path(), &target, merge)?;
            }
        }
    }
    Ok(())
}

/// Undoes the carrying-over of a failed restore.
fn restore_carried(staging: &Path, data_dir: &Path) {
    let Ok(entries) = fs_err::read_dir(staging) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let back = data_dir.join(&name);
        if !back.exists() {
            let _ = fs_err::rename(entry.path(), back);
        }
    }
}

/// Gives the new tree the old data dir's owner (a restore run as root for the
/// service's user).
fn copy_owner(from: &Path, tree: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs_err::metadata(from) else {
        return;
    };
    let (uid, gid) = (meta.uid(), meta.gid());
    let mut stack = vec![tree.to_path_buf()];
    while let Some(path) = stack.pop() {
        let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
        if path.is_dir()
            && let Ok(entries) = fs_err::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
}
