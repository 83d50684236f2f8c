//! The model registry: the GGUF chat models in the models dir, with their metadata.
//!
//! A model's name is its file stem (`SmolLM2-135M-Instruct-Q4_1.gguf` →
//! `SmolLM2-135M-Instruct-Q4_1`). Every file is validated with [`super::gguf`] before
//! it is listed, so an engine only ever receives files whose header is sound. Client
//! supplied names are only compared against this list; they never become paths.
//! Headers and sha256 digests are cached by (path, size, mtime).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use super::gguf::{self, GgufError};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No model by that name.
    #[error("model `{0}` not found; `GET /v1/models` lists the installed models")]
    NotFound(String),
    /// The file is not a usable GGUF model.
    #[error("{path} is not a usable GGUF model: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: GgufError,
    },
    /// A model directory or file that is not a usable model.
    #[error("{path} is not a usable model: {reason}")]
    BadModel {
        /// The file or directory.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A name that cannot be a model name.
    #[error(
        "invalid model name `{0}`: use 1-128 letters, digits, '.', '_' or '-', not starting with '.'"
    )]
    BadName(String),
    /// The name is taken.
    #[error("a model named `{0}` already exists")]
    Exists(String),
    /// A file-system failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// One installed chat model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The name clients use.
    pub name: String,
    /// The GGUF file.
    pub path: PathBuf,
    /// File size in bytes.
    pub size: u64,
    /// Modification time (RFC 3339).
    pub modified_at: String,
    /// `general.architecture`.
    pub architecture: String,
    /// Number of weights.
    pub parameters: u64,
    /// Quantisation label (e.g. `Q4_1`).
    pub quantization: String,
    /// Training context length, if the file says.
    pub context_length: Option<u64>,
    /// Whether the file carries a chat template.
    pub chat_template: bool,
    /// `general.license`, if present.
    pub license: Option<String>,
    /// The chat template text, if any.
    #[serde(skip)]
    pub template_text: Option<String>,
    /// The file's mtime, for cache keys.
    #[serde(skip)]
    mtime: SystemTime,
}

impl ModelInfo {
    /// "135M", "1.5B": the parameter count as Ollama shows it.
    pub fn parameter_size(&self) -> String {
        let p = self.parameters as f64;
        if p >= 1e9 {
            format!("{:.1}B", p / 1e9)
        } else {
            format!("{:.0}M", p / 1e6)
        }
    }
}

/// A file's identity for caching: path, size and mtime.
type FileKey = (PathBuf, u64, SystemTime);

/// The registry over one models dir. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    dir: PathBuf,
    headers: Arc<Mutex<HashMap<PathBuf, Arc<ModelInfo>>>>,
    digests: Arc<Mutex<HashMap<FileKey, String>>>,
}

impl Registry {
    /// A registry of `dir`.
    pub fn new(dir: PathBuf) -> Registry {
        Registry {
            dir,
            headers: Arc::default(),
            digests: Arc::default(),
        }
    }

    /// The models dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every valid model, sorted by name; invalid files are logged and skipped.
    /// Blocking (reads headers of new or changed files).
    pub fn list(&self) -> Vec<Arc<ModelInfo>> {
        let Ok(entries) = fs_err::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut models = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("gguf") || !path.is_file() {
                continue;
            }
            match self.info(&path) {
                Ok(info) => models.push(info),
                Err(e) => tracing::warn!(error = %e, "skipping a model file"),
            }
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models
    }

    /// Finds a model by the name a client sent: exact, then case-insensitive, and an
    /// Ollama-style `:latest` tag is ignored.
    pub fn find(&self, name: &str) -> Result<Arc<ModelInfo>, RegistryError> {
        let wanted = name.strip_suffix(":latest").unwrap_or(name);
        let models = self.list();
        models
            .iter()
            .find(|m| m.name == wanted)
            .or_else(|| models.iter().find(|m| m.name.eq_ignore_ascii_case(wanted)))
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// Reads (or recalls) one file's header.
    pub fn info(&self, path: &Path) -> Result<Arc<ModelInfo>, RegistryError> {
        let meta = fs_err::metadata(path).map_err(|source| RegistryError::Io {
            context: format!("reading {}", path.display()),
            source,
        })?;
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some(info) = self.headers.lock().get(path).cloned()
            && info.size == meta.len()
            && info.mtime == mtime
        {
            return Ok(info);
        }
        let header = gguf::read_header(path).map_err(|reason| RegistryError::Invalid {
            path: path.display().to_string(),
            reason,
        })?;
        let text = |key: &str| {
            header
                .metadata
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let info = Arc::new(ModelInfo {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            size: meta.len(),
            modified_at: jiff::Timestamp::try_from(mtime)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            architecture: header.architecture().unwrap_or("unknown").to_string(),
            parameters: header.parameter_count(),
            quantization: header.quantization(),
            context_length: header.arch_int("context_length").map(|n| n.max(0) as u64),
            chat_template: header.has_chat_template(),
            license: text("general.license"),
            template_text: text("tokenizer.chat_template"),
            mtime,
        });
        self.headers.lock().insert(path.to_path_buf(), info.clone());
        Ok(info)
    }

    /// The sha256 of a model file (cached; the first call reads the whole file).
    pub fn digest(&self, info: &ModelInfo) -> Result<String, RegistryError> {
        let key = (info.path.clone(), info.size, info.mtime);
        if let Some(d) = self.digests.lock().get(&key).cloned() {
            return Ok(d);
        }
        let digest = super::sha256_file(&info.path).map_err(|source| RegistryError::Io {
            context: format!("hashing {}", info.path.display()),
            source,
        })?;
        self.digests.lock().insert(key, digest.clone());
        Ok(digest)
    }

    /// Imports a local GGUF file: validates it, then hard-links it into the models dir
    /// (or copies it when it is on another file system) under `name` (default: the
    /// file's stem). The file appears atomically, complete or not at all.
    pub fn import(
        &self,
        source: &Path,
        name: Option<&str>,
    ) -> Result<Arc<ModelInfo>, RegistryError> {
        let io = |context: String| move |source| RegistryError::Io { context, source };
        gguf::read_header(source).map_err(|reason| RegistryError::Invalid {
            path: source.display().to_string(),
            reason,
        })?;
        let name = match name {
            Some(n) => n.to_string(),
            None => source
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        validate_name(&name)?;
        if self.find(&name).is_ok() {
            return Err(RegistryError::Exists(name));
        }
        fs_err::create_dir_all(&self.dir)
            .map_err(io(format!("creating {}", self.dir.display())))?;
        let target = self.dir.join(format!("{name}.gguf"));
        let temp = self.dir.join(format!(".{name}.gguf.importing"));
        let _ = fs_err::remove_file(&temp);
        if fs_err::hard_link(source, &temp).is_err() {
            fs_err::copy(source, &temp).map_err(io(format!(
                "copying {} into {}",
                source.display(),
                self.dir.display()
            )))?;
        }
        // Re-validate the copy (the source could have changed underneath us).
        if let Err(reason) = gguf::read_header(&temp) {
            let _ = fs_err::remove_file(&temp);
            return Err(RegistryError::Invalid {
                path: source.display().to_string(),
                reason,
            });
        }
        // A link never replaces a model that appeared meanwhile (rename would).
        match fs_err::hard_link(&temp, &target) {
            Ok(()) => {
                let _ = fs_err::remove_file(&temp);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = fs_err::remove_file(&temp);
                return Err(RegistryError::Exists(name));
            }
            Err(_) => fs_err::rename(&temp, &target)
                .map_err(io(format!("installing {}", target.display())))?,
        }
        self.info(&target)
    }

    /// Deletes a model's file and its settings sidecar.
    pub fn remove(&self, name: &str) -> Result<Arc<ModelInfo>, RegistryError> {
        let info = self.find(name)?;
        fs_err::remove_file(&info.path).map_err(|source| RegistryError::Io {
            context: format!("deleting {}", info.path.display()),
            source,
        })?;
        self.headers.lock().remove(&info.path);
        super::modelfile::remove(&self.dir, &info.name)?;
        Ok(info)
    }

    /// Installs the model `source` again as `target` (a hard link, or a copy across
    /// file systems) with `overrides` as its settings. Blocking.
    pub fn copy(
        &self,
        source: &str,
        target: &str,
        overrides: &super::modelfile::Overrides,
    ) -> Result<Arc<ModelInfo>, RegistryError> {
        let info = self.find(source)?;
        validate_name(target)?;
        if self.find(target).is_ok() {
            return Err(RegistryError::Exists(target.to_string()));
        }
        // The settings land first, so the model never appears without them.
        overrides.save(&self.dir, target)?;
        self.import(&info.path, Some(target)).inspect_err(|_| {
            let _ = super::modelfile::remove(&self.dir, target);
        })
    }
}

/// Model names become file names: allow only a safe alphabet.
pub fn validate_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::BadName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_the_models_dir_are_refused() {
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            "x\0y",
            &"a".repeat(129),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["SmolLM2-135M-Instruct-Q4_1", "qwen2.5-coder_0.5b"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn invalid_files_are_skipped_and_imports_refused() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        fs_err::create_dir_all(&models).unwrap();
        fs_err::write(models.join("broken.gguf"), b"GGUF\x03\0\0\0").unwrap();
        let registry = Registry::new(models.clone());
        assert!(registry.list().is_empty());
        assert!(matches!(
            registry.find("broken"),
            Err(RegistryError::NotFound(_))
        ));

        let outside = dir.path().join("junk.gguf");
        fs_err::write(&outside, vec![0u8; 1000]).unwrap();
        assert!(matches!(
            registry.import(&outside, None),
            Err(RegistryError::Invalid { .. })
        ));
        assert!(!models.join("junk.gguf").exists());
    }
}
