//! Speech-to-text models in the models dir: whisper.cpp ggml files (`NAME.bin`). Only
//! the header is read here (bounded, checked to be a whisper model of sane size); the
//! weights are read by the speech worker, where a bad file costs only that process.
//!
//! `appliance models import` writes these from faster-whisper (CTranslate2) folders
//! (see [`super::whisper_import`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::registry::{Registry, RegistryError, validate_name};

/// The first four bytes of a whisper.cpp ggml file (`ggml` as a little-endian u32).
pub const GGML_MAGIC: u32 = 0x6767_6d6c;

/// One installed speech model.
#[derive(Debug, Clone, Serialize)]
pub struct TranscriberInfo {
    /// The name clients use (the file's stem).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// Modification time (RFC 3339).
    pub modified_at: String,
    /// Whether it knows languages other than English (and can translate).
    pub multilingual: bool,
    /// Encoder and decoder layers.
    pub layers: u32,
    /// Width of its states (384 tiny, 512 base, …).
    pub width: u32,
    /// The size class whisper names it by.
    pub size_class: &'static str,
}

impl Registry {
    /// Every usable speech model, sorted by name. Blocking (reads small headers).
    pub fn transcribers(&self) -> Vec<TranscriberInfo> {
        let Ok(entries) = fs_err::read_dir(self.dir()) else {
            return Vec::new();
        };
        let mut found: Vec<TranscriberInfo> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "bin"))
            .filter_map(|p| read_transcriber(&p).ok())
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    /// Finds a speech model by the name a client sent (exact, then case-insensitive;
    /// an Ollama `:latest` tag is ignored).
    pub fn find_transcriber(&self, name: &str) -> Result<TranscriberInfo, RegistryError> {
        let wanted = name.strip_suffix(":latest").unwrap_or(name);
        let all = self.transcribers();
        all.iter()
            .find(|m| m.name == wanted)
            .or_else(|| all.iter().find(|m| m.name.eq_ignore_ascii_case(wanted)))
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }
}

/// The hyper-parameters at the head of a whisper ggml file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Tokens in the vocabulary.
    pub n_vocab: u32,
    /// Audio positions (1500).
    pub n_audio_ctx: u32,
    /// Encoder width.
    pub n_audio_state: u32,
    /// Encoder heads.
    pub n_audio_head: u32,
    /// Encoder layers.
    pub n_audio_layer: u32,
    /// Text positions (448).
    pub n_text_ctx: u32,
    /// Decoder width.
    pub n_text_state: u32,
    /// Decoder heads.
    pub n_text_head: u32,
    /// Decoder layers.
    pub n_text_layer: u32,
    /// Mel bins (80 or 128).
    pub n_mels: u32,
}

/// Reads and checks the header of a whisper ggml file.
pub fn read_header(path: &Path) -> Result<Header, String> {
    let mut file = fs_err::File::open(path).map_err(|e| format!("cannot open it: {}", e.kind()))?;
    let mut raw = [0u8; 4 * 12];
    file.read_exact(&mut raw)
        .map_err(|_| "it is too short to be a whisper model".to_string())?;
    let field = |i: usize| {
        let v = i32::from_le_bytes(raw[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        u32::try_from(v).unwrap_or(0)
    };
    if field(0) != GGML_MAGIC {
        return Err("it is not a whisper.cpp ggml file (wrong magic)".into());
    }
    let header = Header {
        n_vocab: field(1),
        n_audio_ctx: field(2),
        n_audio_state: field(3),
        n_audio_head: field(4),
        n_audio_layer: field(5),
        n_text_ctx: field(6),
        n_text_state: field(7),
        n_text_head: field(8),
        n_text_layer: field(9),
        n_mels: field(10),
    };
    let sane = (50_000..=60_000).contains(&header.n_vocab)
        && (1..=4096).contains(&header.n_audio_ctx)
        && (64..=4096).contains(&header.n_audio_state)
        && (1..=64).contains(&header.n_audio_head)
        && (1..=64).contains(&header.n_audio_layer)
        && (1..=4096).contains(&header.n_text_ctx)
        && (64..=4096).contains(&header.n_text_state)
        && (1..=64).contains(&header.n_text_head)
        && (1..=64).contains(&header.n_text_layer)
        && matches!(header.n_mels, 80 | 128);
    if !sane {
        return Err("its header describes a model outside whisper's shapes".into());
    }
    Ok(header)
}

fn read_transcriber(path: &Path) -> Result<TranscriberInfo, RegistryError> {
    let name = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    validate_name(&name)?;
    let header = read_header(path).map_err(|reason| RegistryError::BadModel {
        path: path.display().to_string(),
        reason,
    })?;
    let meta = fs_err::metadata(path).map_err(|source| RegistryError::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    let modified_at = meta
        .modified()
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok(TranscriberInfo {
        name,
        path: path.to_path_buf(),
        size: meta.len(),
        modified_at,
        multilingual: header.n_vocab >= 51_865,
        layers: header.n_audio_layer,
        width: header.n_audio_state,
        size_class: match header.n_audio_state {
            384 => "tiny",
            512 => "base",
            768 => "small",
            1024 => "medium",
            1280 => "large",
            _ => "custom",
        },
    })
}

impl Registry {
    /// Converts a faster-whisper (CTranslate2) model folder into a whisper.cpp ggml file
    /// in the models dir, named `name` (default: the folder's name, as `whisper-…`),
    /// using the vocabularies and mel filters in `assets`. The file appears atomically,
    /// complete or not at all. Blocking (reads and writes the whole model).
    pub fn import_whisper(
        &self,
        folder: &Path,
        assets: &Path,
        name: Option<&str>,
    ) -> Result<TranscriberInfo, RegistryError> {
        let name = match name {
            Some(n) => n.to_string(),
            None => default_name(folder),
        };
        validate_name(&name)?;
        if self.find_transcriber(&name).is_ok() || self.find(&name).is_ok() {
            return Err(RegistryError::Exists(name));
        }
        let io = |context: String| move |source| RegistryError::Io { context, source };
        fs_err::create_dir_all(self.dir())
            .map_err(io(format!("creating {}", self.dir().display())))?;
        let target = self.dir().join(format!("{name}.bin"));
        let temp = self.dir().join(format!(".{name}.bin.importing"));
        let result = (|| {
            let file =
                fs_err::File::create(&temp).map_err(io(format!("creating {}", temp.display())))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            super::whisper_import::convert(folder, assets, &mut out).map_err(|e| {
                RegistryError::BadModel {
                    path: folder.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
            let file = out.into_inner().map_err(|e| RegistryError::Io {
                context: format!("writing {}", temp.display()),
                source: e.into_error(),
            })?;
            file.sync_all()
                .map_err(io(format!("writing {}", temp.display())))?;
            read_header(&temp).map_err(|reason| RegistryError::BadModel {
                path: folder.display().to_string(),
                reason,
            })?;
            fs_err::rename(&temp, &target).map_err(io(format!("installing {}", target.display())))
        })();
        if let Err(e) = result {
            let _ = fs_err::remove_file(&temp);
            return Err(e);
        }
        read_transcriber(&target)
    }
}

/// `faster-whisper-tiny.en` → `whisper-tiny.en`; `tiny` → `whisper-tiny`.
fn default_name(folder: &Path) -> String {
    let base = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = base.strip_prefix("faster-").unwrap_or(&base);
    if base.starts_with("whisper") {
        base.to_string()
    } else {
        format!("whisper-{base}")
    }
}
