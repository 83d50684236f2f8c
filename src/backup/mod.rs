//! Backups: one compressed archive holding a consistent copy of everything the
//! appliance would lose with its disk, made while the daemon serves.
//!
//! An archive (`appliance-<UTC time>.tar.zst`) holds the database as one read
//! transaction saw it (`store::snapshot`, taken while others write), the uploaded files
//! and pending recordings, the TLS directory and the configuration file, and last a
//! `manifest.json` with the sha256 and size of every member and the row count of every
//! table. Model files are listed by path, size and sha256 (they can be fetched again)
//! unless `with_models` copies them too. Archives are written under a temporary name and
//! renamed when complete, so a file with the final name is always whole; a copy of the
//! manifest beside it (`<name>.manifest.json`) makes listing cheap.
//!
//! [`restore()`] verifies an archive completely before it touches anything, restores
//! beside the data dir and swaps directories at the end, so a failed restore leaves
//! the data dir as it was. The daemon makes scheduled backups as `backup.create` jobs
//! ([`Backups`]); the CLI makes them directly (the snapshot is safe beside a running
//! daemon).

mod daemon;
pub mod restore;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::hashing::Hashing;

pub use daemon::{BACKUP_JOB, Backups, Schedule};
pub use restore::{RestoreReport, Verified, restore, verify};

/// The archive format this build writes and reads.
pub const FORMAT: u32 = 1;
/// Archive file names end so.
pub const EXTENSION: &str = ".tar.zst";
/// Members of the data dir an archive holds (besides the database).
pub const DATA_DIRS: &[&str] = &["files", "recordings", "tls"];
/// The database's file name inside the data dir and the archive.
pub const DB_NAME: &str = "appliance.db";
/// The manifest's member name (always last).
pub const MANIFEST: &str = "manifest.json";

/// What went wrong, in words for an administrator (paths included: this goes to the
/// CLI and the admin's log, never to API clients as is).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// The database could not be copied or checked.
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The archive is damaged, incomplete or not ours.
    #[error("{0}")]
    Invalid(String),
    /// The daemon holds the data dir.
    #[error("{0}")]
    Busy(String),
}

impl From<std::io::Error> for BackupError {
    fn from(e: std::io::Error) -> Self {
        BackupError::Io(e.to_string())
    }
}

/// Why the archive was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Asked for (CLI, API, admin page).
    Manual,
    /// By the daemon's schedule (the only kind retention deletes).
    Scheduled,
    /// By the package's upgrade scripts, before a new version migrates the data.
    PreUpgrade,
}

/// One member of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its path in the archive (`appliance.db`, `files/…`, `config/config.toml`,
    /// `models/…`).
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex sha256.
    pub sha256: String,
}

/// A model file, listed (and copied only when asked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Path relative to the models dir.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex sha256.
    pub sha256: String,
}

/// The archive's table of contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Archive format.
    pub format: u32,
    /// The appliance version that wrote it.
    pub app_version: String,
    /// When the database copy was taken (RFC 3339).
    pub created_at: String,
    /// Why.
    pub kind: Kind,
    /// The installation's id (from the database).
    pub instance_id: Option<String>,
    /// The database's schema version.
    pub schema_version: u32,
    /// Whether model files are inside.
    pub with_models: bool,
    /// Every member but this manifest.
    pub members: Vec<Member>,
    /// Every model file of the models dir.
    pub models: Vec<ModelFile>,
    /// Rows per table in the database copy.
    pub rows: BTreeMap<String, i64>,
    /// The configuration file's original path, when one is inside.
    pub config_file: Option<String>,
    /// How long making the archive took, ms.
    pub duration_ms: u64,
}

/// An archive on disk.
#[derive(Debug, Clone, Serialize)]
pub struct BackupInfo {
    /// File name.
    pub name: String,
    /// Full path.
    #[serde(skip)]
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Its manifest.
    #[serde(flatten)]
    pub manifest: Manifest,
}

/// Where a backup reads from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The data dir.
    pub data_dir: PathBuf,
    /// The database file.
    pub db: PathBuf,
    /// The models dir.
    pub models_dir: PathBuf,
    /// The configuration file in effect, if any.
    pub config_file: Option<PathBuf>,
    /// SQLite busy timeout.
    pub busy: Duration,
}

impl Sources {
    /// From a loaded configuration.
    pub fn of(loaded: &crate::config::Loaded) -> Sources {
        let config = &loaded.config;
        Sources {
            data_dir: config.paths.data_dir.clone(),
            db: config.database_path(),
            models_dir: config.paths.models_dir.clone(),
            config_file: loaded.file.clone(),
            busy: Duration::from_millis(config.store.busy_timeout_ms),
        }
    }
}

/// Options of one backup.
#[derive(Debug, Clone)]
pub struct Options {
    /// Why.
    pub kind: Kind,
    /// Copy model files too.
    pub with_models: bool,
}

/// Makes an archive in `dir` (or exactly at `to`), reporting progress (0..1, what).
/// Blocking: run it on a blocking thread.
pub fn create(
    sources: &Sources,
    dir: &Path,
    to: Option<&Path>,
    options: &Options,
    progress: &(dyn Fn(f64, &str) + Sync),
) -> Result<BackupInfo, BackupError> {
    let started = Instant::now();
    let now = jiff::Timestamp::now();
    let final_path = match to {
        Some(path) => path.to_path_buf(),
        None => {
            fs_err::create_dir_all(dir)?;
            restrict(dir, 0o700);
            unused_name(dir, &now)
        }
    };
    let name = final_path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BackupError::Invalid("the archive needs a file name".into()))?
        .to_string();
    let parent = final_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let partial = parent.join(format!(".{name}.partial"));
    let db_copy = parent.join(format!(".{name}.db"));
    let result = (|| {
        progress(0.0, "copying the database");
        let _ = fs_err::remove_file(&db_copy);
        crate::store::snapshot::snapshot(&sources.db, &db_copy, sources.busy)?;
        let census = crate::store::snapshot::census(&db_copy, sources.busy)?;
        if census.integrity != ["ok"] {
            return Err(BackupError::Invalid(format!(
                "the database copy fails its integrity check ({}); run `appliance doctor`",
                census.integrity.join("; ")
            )));
        }
        let instance_id = instance_id(&db_copy, sources.busy);
        let mut members: Vec<(String, PathBuf)> = vec![(DB_NAME.to_string(), db_copy.clone())];
        for sub in DATA_DIRS {
            for file in walk(&sources.data_dir.join(sub))? {
                let rel = file
                    .strip_prefix(&sources.data_dir)
                    .map_err(|_| BackupError::Invalid("a file outside the data dir".into()))?;
                members.push((unix_path(rel), file));
            }
        }
        let config_file = sources.config_file.as_ref().filter(|p| p.is_file());
        if let Some(config) = config_file {
            members.push(("config/config.toml".into(), config.clone()));
        }
        progress(0.05, "listing the model files");
        let mut models = Vec::new();
        for file in walk(&sources.models_dir)? {
            let rel = file
                .strip_prefix(&sources.models_dir)
                .map_err(|_| BackupError::Invalid("a model outside the models dir".into()))?;
            let rel = unix_path(rel);
            if rel.starts_with(".partial/") || rel.ends_with(".part") {
                continue;
            }
            let (bytes, sha256) = hash_file(&file)?;
            if options.with_models {
                members.push((format!("models/{rel}"), file.clone()));
            }
            models.push(ModelFile {
                path: rel,
                bytes,
                sha256,
            });
        }
        let total: u64 = members
            .iter()
            .map(|(_, p)| fs_err::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
            .max(1);
        let out = fs_err::File::create(&partial)?;
        restrict(&partial, 0o600);
        let encoder = zstd::Encoder::new(std::io::BufWriter::new(out), 3)?;
        let mut tar = tar::Builder::new(encoder);
        let mut written = Vec::new();
        let mut done = 0u64;
        for (path, file) in &members {
            // A file deleted meanwhile (a document removed) is simply not backed up.
            let Ok(source) = fs_err::File::open(file) else {
                continue;
            };
            let bytes = source.metadata()?.len();
            let mut reader = Hashing::new(source.take(bytes));
            append(&mut tar, path, bytes, &mut reader)?;
            written.push(Member {
                path: path.clone(),
                bytes,
                sha256: reader.hex(),
            });
            done += bytes;
            progress(
                0.1 + 0.85 * done as f64 / total as f64,
                &format!("archived {path}"),
            );
        }
        let manifest = Manifest {
            format: FORMAT,
            app_version: crate::app::VERSION.to_string(),
            created_at: now.to_string(),
            kind: options.kind,
            instance_id,
            schema_version: census.schema_version,
            with_models: options.with_models,
            members: written,
            models,
            rows: census.rows,
            config_file: config_file.map(|p| p.display().to_string()),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BackupError::Invalid(e.to_string()))?;
        append(&mut tar, MANIFEST, json.len() as u64, &mut json.as_slice())?;
        let encoder = tar.into_inner()?;
        let mut out = encoder.finish()?;
        out.flush()?;
        let file = out
            .into_inner()
            .map_err(|e| BackupError::Io(e.to_string()))?;
        file.sync_all()?;
        fs_err::rename(&partial, &final_path)?;
        sync_dir(&parent);
        write_sidecar(&final_path, &manifest)?;
        progress(1.0, "done");
        let bytes = fs_err::metadata(&final_path)?.len();
        Ok(BackupInfo {
            name: name.clone(),
            path: final_path.clone(),
            bytes,
            manifest,
        })
    })();
    let _ = fs_err::remove_file(&db_copy);
    if result.is_err() {
        let _ = fs_err::remove_file(&partial);
    }
    result
}

/// Every archive in `dir`, newest first (a damaged one is left out and logged).
pub fn list(dir: &Path) -> Vec<BackupInfo> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<BackupInfo> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            if !name.ends_with(EXTENSION) || name.starts_with('.') {
                return None;
            }
            match info(&entry.path()) {
                Ok(info) => Some(info),
                Err(e) => {
                    tracing::warn!(archive = %name, error = %e, "an unreadable backup archive");
                    None
                }
            }
        })
        .collect();
    out.sort_by(|a, b| b.manifest.created_at.cmp(&a.manifest.created_at));
    out
}

/// One archive's manifest: from its sidecar, else read from the archive itself.
pub fn info(path: &Path) -> Result<BackupInfo, BackupError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let bytes = fs_err::metadata(path)?.len();
    let sidecar = sidecar_path(path);
    let manifest = match fs_err::read(&sidecar)
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
    {
        Some(m) => m,
        None => restore::read_manifest(path)?,
    };
    Ok(BackupInfo {
        name,
        path: path.to_path_buf(),
        bytes,
        manifest,
    })
}

/// Deletes scheduled archives beyond the newest `keep` (manual and pre-upgrade ones
/// stay). Returns the names deleted.
pub fn prune(dir: &Path, keep: usize) -> Vec<String> {
    let mut deleted = Vec::new();
    for old in list(dir)
        .into_iter()
        .filter(|b| b.manifest.kind == Kind::Scheduled)
        .skip(keep)
    {
        if fs_err::remove_file(&old.path).is_ok() {
            let _ = fs_err::remove_file(sidecar_path(&old.path));
            deleted.push(old.name);
        }
    }
    deleted
}

/// Deletes one archive (and its sidecar) by file name, refusing any other path.
pub fn delete(dir: &Path, name: &str) -> Result<bool, BackupError> {
    let path = archive_path(dir, name)?;
    if !path.is_file() {
        return Ok(false);
    }
    fs_err::remove_file(&path)?;
    let _ = fs_err::remove_file(sidecar_path(&path));
    Ok(true)
}

/// The path of archive `name` in `dir`, for names that are plain archive file names.
pub fn archive_path(dir: &Path, name: &str) -> Result<PathBuf, BackupError> {
    let plain = !name.is_empty()
        && name.len() <= 200
        && name.ends_with(EXTENSION)
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain {
        return Err(BackupError::Invalid(format!(
            "`{name}` is not a backup archive name"
        )));
    }
    Ok(dir.join(name))
}

fn sidecar_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

fn write_sidecar(archive: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let path = sidecar_path(archive);
    let tmp = path.with_extension("json.partial");
    let json =
        serde_json::to_vec_pretty(manifest).map_err(|e| BackupError::Invalid(e.to_string()))?;
    fs_err::write(&tmp, json)?;
    fs_err::rename(&tmp, &path)?;
    Ok(())
}

/// `appliance-20261202T161500Z.tar.zst`, or with `-2`, `-3`… when taken.
fn unused_name(dir: &Path, now: &jiff::Timestamp) -> PathBuf {
    let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut n = 1;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let path = dir.join(format!("appliance-{stamp}{suffix}{EXTENSION}"));
        if !path.exists() {
            return path;
        }
        n += 1;
    }
}

fn instance_id(db: &Path, busy: Duration) -> Option<String> {
    crate::store::inspect_meta(db, busy, "instance_id")
        .ok()
        .flatten()
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: u64,
    data: &mut dyn Read,
) -> Result<(), BackupError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)?;
    Ok(())
}

/// Regular files under `dir`, recursively, sorted (none when it does not exist).
fn walk(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs_err::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn unix_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut reader = Hashing::new(fs_err::File::open(path)?);
    let bytes = std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok((bytes, reader.hex()))
}

fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs_err::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests;
