//! Pulling GGUF models from Hugging Face (or a mirror): the reference is resolved to
//! one file of a repository ([`reference`](mod@reference)), everything that can be
//! refused is checked before a byte is downloaded ([`Puller::plan`]: the listing, the
//! size bound, free disk space, a different model under the same name, the same file
//! being pulled already), then the file is downloaded into
//! `<models_dir>/.partial/<sha256>.gguf.part` ([`part`]), resumed with `Range` after a
//! dropped connection (bounded retries with backoff) or after a restart, verified
//! against the listing's sha256, its GGUF header validated, and only then linked into
//! the models dir under its file name: a model appears complete and verified, or not
//! at all.
//!
//! Nothing here knows about HTTP status codes; progress goes out as [`PullEvent`]s.

pub mod hub;
pub mod part;
pub mod reference;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::gguf::{self, GgufError};
use super::registry::{ModelInfo, Registry, validate_name};
use crate::config::PullSection;
use hub::Hub;
use reference::{HubFile, HubRef, RefError};

/// Why a pull failed. Messages are for the administrator who asked for the pull; the
/// `Io` and `Internal` details go to the log only.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference cannot be pulled, or names no single file.
    #[error(transparent)]
    Reference(#[from] RefError),
    /// The repository or file does not exist on the hub.
    #[error("{0}")]
    NotFound(String),
    /// The hub refused access (gated or private repositories).
    #[error("{0}")]
    Denied(String),
    /// The file cannot be pulled by this appliance.
    #[error("{0}")]
    Unsupported(String),
    /// The file is larger than `pull.max_download_bytes`.
    #[error("the file is {size} bytes, more than pull.max_download_bytes ({limit} bytes) allows")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The configured bound.
        limit: u64,
    },
    /// Not enough free space on the models dir's disk.
    #[error(
        "not enough disk space: the download needs {needed} more bytes (including a margin of {margin} bytes, pull.free_space_margin_mb) but only {free} bytes are free on the models dir's disk"
    )]
    InsufficientStorage {
        /// Bytes still to download plus the margin.
        needed: u64,
        /// Bytes free.
        free: u64,
        /// The margin included in `needed`.
        margin: u64,
    },
    /// A different model is installed under the name this file would get.
    #[error(
        "a different model named `{0}` is installed; delete it first (DELETE /api/delete or `appliance models rm`)"
    )]
    Exists(String),
    /// The same file is being pulled already.
    #[error("{0} is being pulled already; wait for that pull to finish")]
    InProgress(String),
    /// The hub could not be reached or answered wrongly (after retries, for downloads).
    #[error("{0}")]
    Hub(String),
    /// A failure worth retrying (a dropped connection, a 5xx); becomes [`PullError::Hub`]
    /// once retries run out.
    #[error("{0}")]
    Transient(String),
    /// The download is not the file the listing described.
    #[error("{0}")]
    Corrupt(String),
    /// The downloaded file is not a usable GGUF model.
    #[error("the downloaded file is not a usable GGUF model: {0}")]
    Invalid(GgufError),
    /// The client went away; the partial file stays for the next pull.
    #[error("the pull was cancelled")]
    Cancelled,
    /// A file-system failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (may name paths: log only).
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Progress of a pull, in the order it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// A phase: "verifying sha256 digest", "writing manifest".
    Status(&'static str),
    /// Bytes of the file present so far.
    Progress {
        /// `sha256:<hex>`.
        digest: String,
        /// The file's size.
        total: u64,
        /// Bytes downloaded (including those from an earlier, resumed pull).
        completed: u64,
    },
}

/// Every pull is checked against the same models dir and settings. Cheap to clone.
#[derive(Clone)]
pub struct Puller {
    config: Arc<PullSection>,
    registry: Registry,
    active: Arc<Mutex<HashSet<String>>>,
}

/// What a pull will do, decided before anything is downloaded.
pub struct Plan {
    /// The reference as understood.
    pub reference: HubRef,
    /// The file chosen.
    pub file: HubFile,
    /// Its sha256.
    pub sha256: String,
    /// The model name it will be installed under.
    pub name: String,
    /// Bytes already downloaded by an earlier pull.
    pub resumed_from: u64,
    /// The same file is installed already under that name.
    pub installed: Option<Arc<ModelInfo>>,
    hub: Hub,
    part: PathBuf,
    _claim: Claim,
}

/// Marks a sha256 as being pulled until dropped.
struct Claim {
    active: Arc<Mutex<HashSet<String>>>,
    sha256: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.active.lock().remove(&self.sha256);
    }
}

/// Time between progress events at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Download attempts per pull at most, whatever progress each makes.
const MAX_ATTEMPTS: u32 = 1000;

/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Puller {
    /// A puller installing into `registry`'s models dir.
    pub fn new(config: PullSection, registry: Registry) -> Puller {
        Puller {
            config: Arc::new(config),
            registry,
            active: Arc::default(),
        }
    }

    /// Resolves `reference` and checks everything that can refuse the pull before a
    /// byte is downloaded.
    pub async fn plan(&self, reference: &str) -> Result<Plan, PullError> {
        let reference = reference::parse(reference)?;
        let hub = Hub::new(&self.config)?;
        let files = hub.list(&reference.org, &reference.repo).await?;
        let file = reference::choose(&reference, &files)?.clone();
        let sha256 = file.sha256.clone().ok_or_else(|| {
            PullError::Unsupported(format!(
                "{} is not stored in Git LFS on the hub, so it has no sha256 to verify against",
                file.path
            ))
        })?;
        if file.size > self.config.max_download_bytes {
            return Err(PullError::TooLarge {
                size: file.size,
                limit: self.config.max_download_bytes,
            });
        }
        let name = model_name(file.file_name())?;
        let claim = {
            let mut active = self.active.lock();
            if !active.insert(sha256.clone()) {
                return Err(PullError::InProgress(file.path.clone()));
            }
            Claim {
                active: self.active.clone(),
                sha256: sha256.clone(),
            }
        };
        let registry = self.registry.clone();
        let dir = registry.dir().to_path_buf();
        let part = part::part_path(&dir, &sha256);
        let margin = self.config.free_space_margin_mb.saturating_mul(1 << 20);
        let (checked_name, wanted, size) = (name.clone(), sha256.clone(), file.size);
        let part_for_check = part.clone();
        let (installed, resumed_from) = tokio::task::spawn_blocking(move || {
            let installed = installed_copy(&registry, &checked_name, &wanted)?;
            let resumed_from = part::existing_len(&part_for_check).min(size);
            if installed.is_none() {
                let needed = (size - resumed_from).saturating_add(margin);
                let free = free_bytes(&dir);
                if free < needed {
                    return Err(PullError::InsufficientStorage {
                        needed,
                        free,
                        margin,
                    });
                }
            }
            Ok((installed, resumed_from))
        })
        .await
        .map_err(|e| PullError::Internal(e.to_string()))??;
        Ok(Plan {
            reference,
            file,
            sha256,
            name,
            resumed_from,
            installed,
            hub,
            part,
            _claim: claim,
        })
    }

    /// Downloads, verifies and installs what `plan` chose, reporting progress on
    /// `events`. A closed `events` cancels the pull (the partial file stays).
    pub async fn run(
        &self,
        plan: Plan,
        events: &mpsc::Sender<PullEvent>,
    ) -> Result<Arc<ModelInfo>, PullError> {
        let digest = format!("sha256:{}", plan.sha256);
        let total = plan.file.size;
        let emit = |event: PullEvent| async move {
            events.send(event).await.map_err(|_| PullError::Cancelled)
        };
        if let Some(info) = plan.installed.clone() {
            emit(PullEvent::Progress {
                digest,
                total,
                completed: total,
            })
            .await?;
            emit(PullEvent::Status("verifying sha256 digest")).await?;
            emit(PullEvent::Status("writing manifest")).await?;
            return Ok(info);
        }
        let mut writer = part::PartWriter::open(plan.part.clone(), total).await?;
        emit(PullEvent::Progress {
            digest: digest.clone(),
            total,
            completed: writer.len,
        })
        .await?;
        self.download(&plan, &mut writer, &digest, events).await?;
        emit(PullEvent::Status("verifying sha256 digest")).await?;
        let (len, got) = writer.finish().await?;
        let part = plan.part.clone();
        if len != total || got != plan.sha256 {
            let _ = tokio::task::spawn_blocking(move || fs_err::remove_file(&part)).await;
            return Err(PullError::Corrupt(format!(
                "the download of {} does not match the hub's listing (expected sha256 {} and {total} bytes, got {got} and {len} bytes); it was deleted and nothing was installed",
                plan.file.path, plan.sha256
            )));
        }
        emit(PullEvent::Status("writing manifest")).await?;
        let registry = self.registry.clone();
        let name = plan.name.clone();
        tokio::task::spawn_blocking(move || install(&registry, &part, &name))
            .await
            .map_err(|e| PullError::Internal(e.to_string()))?
    }

    /// The download loop: resumes from what is on disk, retries dropped connections
    /// with backoff, reports progress at most every [`PROGRESS_EVERY`].
    async fn download(
        &self,
        plan: &Plan,
        writer: &mut part::PartWriter,
        digest: &str,
        events: &mpsc::Sender<PullEvent>,
    ) -> Result<(), PullError> {
        let total = plan.file.size;
        let (org, repo) = (&plan.reference.org, &plan.reference.repo);
        let mut stalled = 0u32;
        let mut attempts = 0u32;
        let mut last_report = Instant::now();
        while writer.len < total {
            attempts += 1;
            let started_at = writer.len;
            let attempt = async {
                let download = plan
                    .hub
                    .open(org, repo, &plan.file.path, writer.len)
                    .await?;
                if let Some(announced) = &download.announced_sha256
                    && *announced != plan.sha256
                {
                    return Err(PullError::Corrupt(format!(
                        "the hub now announces sha256 {announced} for {}, not the {} it listed; try the pull again",
                        plan.file.path, plan.sha256
                    )));
                }
                if download.announced_size.is_some_and(|size| size != total) {
                    return Err(PullError::Corrupt(format!(
                        "the hub now announces another size for {} than the {total} bytes it listed; try the pull again",
                        plan.file.path
                    )));
                }
                if !download.partial && writer.len > 0 {
                    writer.restart().await?;
                }
                let remaining = total - writer.len;
                if download
                    .response
                    .content_length()
                    .is_some_and(|n| n != remaining)
                {
                    return Err(PullError::Corrupt(format!(
                        "the hub sends {} with a length other than the {total} bytes it listed",
                        plan.file.path
                    )));
                }
                let mut body = download.response.bytes_stream();
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| {
                        PullError::Transient(format!("the download broke off: {}", hub::short(&e)))
                    })?;
                    if writer.len + chunk.len() as u64 > total {
                        return Err(PullError::Corrupt(format!(
                            "the hub sent more than the {total} bytes it listed for {}",
                            plan.file.path
                        )));
                    }
                    writer.append(chunk).await?;
                    if last_report.elapsed() >= PROGRESS_EVERY {
                        last_report = Instant::now();
                        events
                            .send(PullEvent::Progress {
                                digest: digest.to_string(),
                                total,
                                completed: writer.len,
                            })
                            .await
                            .map_err(|_| PullError::Cancelled)?;
                    }
                }
                if writer.len < total {
                    return Err(PullError::Transient(
                        "the download ended before the whole file arrived".into(),
                    ));
                }
                Ok(())
            };
            match attempt.await {
                Ok(()) => {}
                Err(PullError::Transient(why)) => {
                    if writer.len > started_at {
                        stalled = 0;
                    } else {
                        stalled += 1;
                    }
                    if stalled > self.config.retries || attempts >= MAX_ATTEMPTS {
                        return Err(PullError::Hub(format!(
                            "{why}; gave up after {attempts} attempts ({} of {total} bytes are kept for the next pull)",
                            writer.len
                        )));
                    }
                    let wait = Duration::from_secs(1u64 << stalled.min(5)).min(MAX_BACKOFF);
                    tracing::warn!(
                        file = %plan.file.path,
                        have = writer.len,
                        total,
                        attempt = attempts,
                        wait_secs = wait.as_secs(),
                        reason = %why,
                        "download interrupted; resuming"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(other) => return Err(other),
            }
        }
        events
            .send(PullEvent::Progress {
                digest: digest.to_string(),
                total,
                completed: writer.len,
            })
            .await
            .map_err(|_| PullError::Cancelled)
    }
}

/// The model name for a hub file name: its stem, with anything outside the registry's
/// alphabet replaced by `-`.
pub fn model_name(file_name: &str) -> Result<String, PullError> {
    let stem = file_name
        .get(..file_name.len().saturating_sub(5))
        .filter(|_| file_name.to_ascii_lowercase().ends_with(".gguf"))
        .unwrap_or(file_name);
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while name.starts_with('.') {
        name.remove(0);
    }
    name.truncate(128);
    validate_name(&name).map_err(|_| {
        PullError::Unsupported(format!("`{file_name}` does not give a usable model name"))
    })?;
    Ok(name)
}

/// The installed model called `name` when it is this very file; an error when a
/// different model has the name; `None` when the name is free. Blocking (may hash).
fn installed_copy(
    registry: &Registry,
    name: &str,
    sha256: &str,
) -> Result<Option<Arc<ModelInfo>>, PullError> {
    let path = registry.dir().join(format!("{name}.gguf"));
    if !path.exists() {
        return Ok(None);
    }
    let same = registry
        .info(&path)
        .ok()
        .and_then(|info| registry.digest(&info).ok().map(|d| (info, d)));
    match same {
        Some((info, digest)) if digest == sha256 => Ok(Some(info)),
        _ => Err(PullError::Exists(name.to_string())),
    }
}

/// Free bytes for an unprivileged writer on the disk holding `dir`.
pub fn free_bytes(dir: &Path) -> u64 {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    rustix::fs::statvfs(existing)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(0)
}

/// Validates the verified partial file's header, then links it into the models dir as
/// `<name>.gguf` (never replacing a file) and removes the partial file. Blocking.
fn install(registry: &Registry, part: &Path, name: &str) -> Result<Arc<ModelInfo>, PullError> {
    if let Err(reason) = gguf::read_header(part) {
        let _ = fs_err::remove_file(part);
        return Err(PullError::Invalid(reason));
    }
    let target = registry.dir().join(format!("{name}.gguf"));
    match fs_err::hard_link(part, &target) {
        Ok(()) => {
            let _ = fs_err::remove_file(part);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(PullError::Exists(name.to_string()));
        }
        // File systems without hard links: a rename is atomic too (after the check).
        Err(_) if !target.exists() => {
            fs_err::rename(part, &target).map_err(|source| PullError::Io {
                context: format!("installing {}", target.display()),
                source,
            })?;
        }
        Err(_) => return Err(PullError::Exists(name.to_string())),
    }
    sync_dir(registry.dir());
    registry
        .info(&target)
        .map_err(|e| PullError::Internal(format!("the installed model cannot be read back: {e}")))
}

/// Makes a directory's new entries durable (best effort).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs_err::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_come_from_file_names() {
        assert_eq!(
            model_name("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf").unwrap(),
            "Qwen2.5-0.5B-Instruct-Q4_K_M"
        );
        assert_eq!(model_name("a+b.GGUF").unwrap(), "a-b");
        assert_eq!(model_name("..x.gguf").unwrap(), "x");
        assert!(model_name(".gguf").is_err());
        assert_eq!(
            model_name(&format!("{}.gguf", "a".repeat(300)))
                .unwrap()
                .len(),
            128
        );
    }

    #[test]
    fn the_free_space_of_a_missing_dir_is_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(&dir.path().join("not/yet")) > 0);
    }
}
