//! Offline model bundles: one chat model as a plain tar file (`models export`) that
//! another appliance installs with `models import` — with no network on either side.
//!
//! A bundle holds `manifest.json` first (format, version, the model's name, and every
//! other member's size and sha256), then `<name>.gguf` and, when the model has
//! settings, `<name>.modelfile.json`. Import reads the manifest, streams each member
//! into a private staging directory under `<models_dir>/.partial/` while hashing it,
//! refuses the whole bundle when any member is missing, unexpected, of another size or
//! another hash, validates the GGUF header and the settings, and only then links the
//! model into the models dir. Member names never become paths: they are only compared
//! with the names the manifest is allowed to use.
//!
//! The file is not compressed: quantised weights barely compress, and a plain tar can be
//! inspected with `tar tvf` anywhere.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::hashing::Hashing;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::gguf;
use super::modelfile::Overrides;
use super::pull::hub::is_sha256;
use super::pull::part::PARTIAL_DIR;
use super::registry::{ModelInfo, Registry, RegistryError, validate_name};

/// `manifest.json`'s `format`.
pub const FORMAT: &str = "appliance-model-bundle";

/// The manifest version this build writes and reads.
pub const VERSION: u32 = 1;

/// The manifest's member name.
pub const MANIFEST: &str = "manifest.json";

/// Largest manifest read, in bytes.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// Largest settings member read, in bytes.
const MAX_SETTINGS_BYTES: u64 = 1 << 20;

/// Why a bundle could not be written or installed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle this build reads, or a damaged one.
    #[error("{0}")]
    Invalid(String),
    /// A member's content is not what the manifest says.
    #[error(
        "{member} does not match the bundle's manifest (expected sha256 {expected}, got {got}); nothing was installed"
    )]
    Checksum {
        /// The member.
        member: String,
        /// From the manifest.
        expected: String,
        /// Computed.
        got: String,
    },
    /// A registry failure (the model is missing, the name is taken, …).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A file-system failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> BundleError {
    move |source| BundleError::Io { context, source }
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The model's name.
    pub name: String,
    /// When the bundle was made (RFC 3339).
    pub created_at: String,
    /// The appliance version that made it.
    pub appliance_version: String,
    /// Every other member.
    pub files: Vec<Member>,
}

/// One member of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Member name (`<name>.gguf` or `<name>.modelfile.json`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::hashing::hex(&Sha256::digest(bytes))
}

fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
    header
}

/// Writes the model `name` as a bundle at `to` (which must not exist). Blocking: reads
/// the model twice (hash, then copy) and checks the copy's hash too.
pub fn export(registry: &Registry, name: &str, to: &Path) -> Result<Manifest, BundleError> {
    let info = registry.find(name)?;
    let sha256 = registry.digest(&info)?;
    let settings = Overrides::load(registry.dir(), &info.name)?
        .map(|o| serde_json::to_vec_pretty(&o).unwrap_or_default());
    let model_member = format!("{}.gguf", info.name);
    let mut files = vec![Member {
        path: model_member.clone(),
        size: info.size,
        sha256: sha256.clone(),
    }];
    if let Some(bytes) = &settings {
        files.push(Member {
            path: format!("{}.modelfile.json", info.name),
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        name: info.name.clone(),
        created_at: jiff::Timestamp::now().to_string(),
        appliance_version: env!("CARGO_PKG_VERSION").into(),
        files,
    };
    if to.exists() {
        return Err(BundleError::Invalid(format!(
            "{} exists already; choose another file",
            to.display()
        )));
    }
    let temp = temp_beside(to);
    let result = (|| {
        let out =
            fs_err::File::create(&temp).map_err(io(format!("creating {}", temp.display())))?;
        let mut builder = tar::Builder::new(BufWriter::new(out));
        let context = || format!("writing {}", temp.display());
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        builder
            .append_data(
                &mut header(manifest_bytes.len() as u64),
                MANIFEST,
                manifest_bytes.as_slice(),
            )
            .map_err(io(context()))?;
        let model = fs_err::File::open(&info.path)
            .map_err(io(format!("reading {}", info.path.display())))?;
        let mut hashing = Hashing::new(BufReader::new(model).take(info.size));
        builder
            .append_data(&mut header(info.size), &model_member, &mut hashing)
            .map_err(io(context()))?;
        if hashing.count() != info.size || hashing.hex() != sha256 {
            return Err(BundleError::Invalid(format!(
                "{} changed while it was being exported; try again",
                info.name
            )));
        }
        if let Some(bytes) = &settings {
            let path = &manifest.files[1].path;
            builder
                .append_data(&mut header(bytes.len() as u64), path, bytes.as_slice())
                .map_err(io(context()))?;
        }
        let mut out = builder.into_inner().map_err(io(context()))?;
        out.flush().map_err(io(context()))?;
        out.get_ref().sync_all().map_err(io(context()))?;
        fs_err::rename(&temp, to).map_err(io(format!("creating {}", to.display())))
    })();
    if result.is_err() {
        let _ = fs_err::remove_file(&temp);
    }
    result.map(|()| manifest)
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()))
}

/// Whether `path` is a file in tar format (a bundle, rather than a GGUF file).
pub fn looks_like_bundle(path: &Path) -> bool {
    let mut head = [0u8; 512];
    path.is_file()
        && fs_err::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
        && &head[257..262] == b"ustar"
}

/// What an import did.
#[derive(Debug)]
pub struct Imported {
    /// The installed model.
    pub info: Arc<ModelInfo>,
    /// The bundle's manifest.
    pub manifest: Manifest,
    /// The same model was installed already under that name (nothing changed).
    pub already_installed: bool,
}

/// Checks a manifest's shape: format, version, names, sizes, hashes.
fn check_manifest(manifest: &Manifest) -> Result<(), BundleError> {
    let bad = |m: &str| {
        Err(BundleError::Invalid(format!(
            "the bundle's manifest is invalid: {m}"
        )))
    };
    if manifest.format != FORMAT {
        return bad("this is not an appliance model bundle");
    }
    if manifest.version != VERSION {
        return Err(BundleError::Invalid(format!(
            "the bundle has format version {}; this appliance reads version {VERSION}",
            manifest.version
        )));
    }
    validate_name(&manifest.name)?;
    let model = format!("{}.gguf", manifest.name);
    let settings = format!("{}.modelfile.json", manifest.name);
    if !manifest.files.iter().any(|f| f.path == model) {
        return bad("it lists no model file");
    }
    let mut seen = Vec::new();
    for file in &manifest.files {
        if file.path != model && file.path != settings {
            return bad("it lists an unexpected member");
        }
        if seen.contains(&&file.path) {
            return bad("it lists a member twice");
        }
        seen.push(&file.path);
        if !is_sha256(&file.sha256) {
            return bad("a checksum is not a sha256");
        }
        if file.path == settings && file.size > MAX_SETTINGS_BYTES {
            return bad("the settings member is too large");
        }
    }
    Ok(())
}

/// Installs the bundle at `path` into `registry` (as `name`, default the bundle's).
/// Blocking. Every checksum is verified before anything is installed.
pub fn import(
    registry: &Registry,
    path: &Path,
    name: Option<&str>,
    free_margin: u64,
) -> Result<Imported, BundleError> {
    let file = fs_err::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let not_a_bundle = || {
        BundleError::Invalid(format!(
            "{} is not a model bundle (made by `appliance models export`)",
            path.display()
        ))
    };
    let mut entries = archive.entries().map_err(|_| not_a_bundle())?;
    // The manifest comes first.
    let mut first = entries
        .next()
        .ok_or_else(not_a_bundle)?
        .map_err(|_| not_a_bundle())?;
    let first_name = first
        .path()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if first_name != MANIFEST || first.size() > MAX_MANIFEST_BYTES {
        return Err(not_a_bundle());
    }
    let mut text = Vec::new();
    (&mut first)
        .take(MAX_MANIFEST_BYTES)
        .read_to_end(&mut text)
        .map_err(|_| not_a_bundle())?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|_| not_a_bundle())?;
    check_manifest(&manifest)?;
    let target = name.unwrap_or(&manifest.name).to_string();
    validate_name(&target)?;
    let model_member = format!("{}.gguf", manifest.name);
    let model_sha = manifest
        .files
        .iter()
        .find(|f| f.path == model_member)
        .map(|f| f.sha256.clone())
        .unwrap_or_default();
    if let Ok(existing) = registry.find(&target) {
        if registry.digest(&existing)? == model_sha {
            return Ok(Imported {
                info: existing,
                manifest,
                already_installed: true,
            });
        }
        return Err(RegistryError::Exists(target).into());
    }
    let needed = manifest
        .files
        .iter()
        .map(|f| f.size)
        .fold(free_margin, u64::saturating_add);
    fs_err::create_dir_all(registry.dir())
        .map_err(io(format!("creating {}", registry.dir().display())))?;
    let free = super::pull::free_bytes(registry.dir());
    if free < needed {
        return Err(BundleError::Invalid(format!(
            "not enough disk space: the bundle needs {needed} bytes (with a margin) but {free} are free on the models dir's disk"
        )));
    }
    let staging = registry
        .dir()
        .join(PARTIAL_DIR)
        .join(format!("import-{}", uuid::Uuid::new_v4().simple()));
    fs_err::create_dir_all(&staging).map_err(io(format!("creating {}", staging.display())))?;
    let result = (|| {
        let mut staged: Vec<(Member, PathBuf)> = Vec::new();
        for entry in entries {
            let mut entry = entry.map_err(|_| not_a_bundle())?;
            let member_name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(member) = manifest.files.iter().find(|f| f.path == member_name) else {
                return Err(BundleError::Invalid(
                    "the bundle holds a member its manifest does not list".into(),
                ));
            };
            if staged.iter().any(|(m, _)| m.path == member.path)
                || !entry.header().entry_type().is_file()
                || entry.size() != member.size
            {
                return Err(BundleError::Invalid(format!(
                    "the bundle's {} is not what its manifest describes",
                    member.path
                )));
            }
            let is_model = member.path == model_member;
            let dest = staging.join(if is_model {
                "model.gguf"
            } else {
                "settings.json"
            });
            let mut out =
                fs_err::File::create(&dest).map_err(io(format!("creating {}", dest.display())))?;
            let mut hashing = Hashing::new((&mut entry).take(member.size));
            std::io::copy(&mut hashing, &mut out)
                .map_err(io(format!("extracting {}", member.path)))?;
            out.sync_all()
                .map_err(io(format!("writing {}", dest.display())))?;
            let count = hashing.count();
            let got = hashing.hex();
            if count != member.size || got != member.sha256 {
                return Err(BundleError::Checksum {
                    member: member.path.clone(),
                    expected: member.sha256.clone(),
                    got,
                });
            }
            staged.push((member.clone(), dest));
        }
        if staged.len() != manifest.files.len() {
            return Err(BundleError::Invalid(
                "the bundle is missing a member its manifest lists; nothing was installed".into(),
            ));
        }
        let staged_model = staging.join("model.gguf");
        gguf::read_header(&staged_model).map_err(|reason| RegistryError::Invalid {
            path: model_member.clone(),
            reason,
        })?;
        let settings = staging.join("settings.json");
        let overrides = if settings.exists() {
            let text =
                fs_err::read(&settings).map_err(io(format!("reading {}", settings.display())))?;
            let overrides: Overrides = serde_json::from_slice(&text)
                .map_err(|_| BundleError::Invalid("the bundle's settings are not valid".into()))?;
            overrides
                .check()
                .map_err(|e| BundleError::Invalid(format!("the bundle's settings: {e}")))?;
            Some(overrides)
        } else {
            None
        };
        if let Some(o) = &overrides {
            o.save(registry.dir(), &target)?;
        }
        let info = registry
            .import(&staged_model, Some(&target))
            .inspect_err(|_| {
                if overrides.is_some() {
                    let _ = super::modelfile::remove(registry.dir(), &target);
                }
            })?;
        Ok(info)
    })();
    let _ = fs_err::remove_dir_all(&staging);
    Ok(Imported {
        info: result?,
        manifest,
        already_installed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("b.tar");
        let mut builder = tar::Builder::new(fs_err::File::create(&path).unwrap());
        for (name, bytes) in members {
            builder
                .append_data(&mut header(bytes.len() as u64), name, *bytes)
                .unwrap();
        }
        builder.into_inner().unwrap();
        path
    }

    fn manifest(files: Vec<Member>) -> Vec<u8> {
        serde_json::to_vec(&Manifest {
            format: FORMAT.into(),
            version: VERSION,
            name: "m".into(),
            created_at: String::new(),
            appliance_version: String::new(),
            files,
        })
        .unwrap()
    }

    #[test]
    fn damaged_or_foreign_bundles_install_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        let registry = Registry::new(models.clone());
        let content: &[u8] = b"GGUF not really";
        let good = Member {
            path: "m.gguf".into(),
            size: content.len() as u64,
            sha256: sha256_hex(content),
        };
        // A checksum that does not match.
        let wrong = manifest(vec![Member {
            sha256: "0".repeat(64),
            ..good.clone()
        }]);
        let path = bundle_with(dir.path(), &[(MANIFEST, &wrong), ("m.gguf", content)]);
        let error = import(&registry, &path, None, 0).unwrap_err();
        assert!(matches!(error, BundleError::Checksum { .. }), "{error}");
        // A member the manifest does not list.
        let listed = manifest(vec![good.clone()]);
        let path = bundle_with(dir.path(), &[(MANIFEST, &listed), ("other.gguf", content)]);
        assert!(import(&registry, &path, None, 0).is_err());
        // A listed member that never comes.
        let path = bundle_with(dir.path(), &[(MANIFEST, &listed)]);
        assert!(matches!(
            import(&registry, &path, None, 0),
            Err(BundleError::Invalid(_))
        ));
        // Right checksum, but not a GGUF model.
        let path = bundle_with(dir.path(), &[(MANIFEST, &listed), ("m.gguf", content)]);
        assert!(matches!(
            import(&registry, &path, None, 0),
            Err(BundleError::Registry(RegistryError::Invalid { .. }))
        ));
        // Not a tar at all.
        let junk = dir.path().join("junk.tar");
        fs_err::write(&junk, b"hello").unwrap();
        assert!(import(&registry, &junk, None, 0).is_err());
        assert!(registry.list().is_empty());
        let leftovers: Vec<_> = fs_err::read_dir(models.join(PARTIAL_DIR))
            .unwrap()
            .flatten()
            .collect();
        assert!(leftovers.is_empty(), "staging dirs are removed");
    }

    #[test]
    fn manifests_list_only_the_models_own_members() {
        let m = |path: &str| Manifest {
            format: FORMAT.into(),
            version: VERSION,
            name: "m".into(),
            created_at: String::new(),
            appliance_version: String::new(),
            files: vec![Member {
                path: path.into(),
                size: 1,
                sha256: "a".repeat(64),
            }],
        };
        assert!(check_manifest(&m("m.gguf")).is_ok());
        for bad in ["../m.gguf", "x.gguf", "m.modelfile.json", "/etc/passwd"] {
            assert!(check_manifest(&m(bad)).is_err(), "{bad}");
        }
        let mut other_version = m("m.gguf");
        other_version.version = 2;
        assert!(check_manifest(&other_version).is_err());
    }
}
