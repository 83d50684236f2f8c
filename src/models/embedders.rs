//! Sentence-embedding models in the models dir: each is a directory holding a BERT
//! `config.json`, its `tokenizer.json` and `model.safetensors` (the layout the
//! default all-MiniLM-L6-v2 is fetched in). The directory's name is the model's name.
//!
//! Only the config is read here (bounded, checked to be a BERT encoder of sane size);
//! the weights are read by the worker process, where a bad file costs only that
//! process.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::registry::{Registry, RegistryError, validate_name};

/// The files an embedding model directory must hold.
pub const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// A config larger than this is not a config.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// One installed embedding model.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedderInfo {
    /// The name clients use (the directory's name).
    pub name: String,
    /// The directory.
    pub path: PathBuf,
    /// Bytes of weights.
    pub size: u64,
    /// Modification time of the weights (RFC 3339).
    pub modified_at: String,
    /// Length of every vector.
    pub dimensions: u32,
    /// Tokens one input may have.
    pub max_tokens: u32,
    /// Encoder layers.
    pub layers: u32,
}

#[derive(Deserialize)]
struct BertConfig {
    model_type: Option<String>,
    hidden_size: u32,
    num_hidden_layers: u32,
    max_position_embeddings: u32,
}

impl Registry {
    /// Every usable embedding model, sorted by name. Blocking (reads small configs).
    pub fn embedders(&self) -> Vec<EmbedderInfo> {
        let Ok(entries) = fs_err::read_dir(self.dir()) else {
            return Vec::new();
        };
        let mut found: Vec<EmbedderInfo> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter(|e| FILES.iter().all(|f| e.path().join(f).is_file()))
            .filter_map(|e| match read_embedder(&e.path()) {
                Ok(info) => Some(info),
                Err(error) => {
                    tracing::warn!(%error, "skipping an embedding model directory");
                    None
                }
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    /// Finds an embedding model by the name a client sent (exact, then
    /// case-insensitive; an Ollama `:latest` tag is ignored).
    pub fn find_embedder(&self, name: &str) -> Result<EmbedderInfo, RegistryError> {
        let wanted = name.strip_suffix(":latest").unwrap_or(name);
        let all = self.embedders();
        all.iter()
            .find(|m| m.name == wanted)
            .or_else(|| all.iter().find(|m| m.name.eq_ignore_ascii_case(wanted)))
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }
}

fn read_embedder(dir: &Path) -> Result<EmbedderInfo, RegistryError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    validate_name(&name)?;
    let invalid = |reason: &str| RegistryError::BadModel {
        path: dir.display().to_string(),
        reason: reason.to_string(),
    };
    let io = |source| RegistryError::Io {
        context: format!("reading {}", dir.display()),
        source,
    };
    let config_path = dir.join("config.json");
    if fs_err::metadata(&config_path).map_err(io)?.len() > MAX_CONFIG_BYTES {
        return Err(invalid("config.json is too large to be a model config"));
    }
    let config: BertConfig =
        serde_json::from_str(&fs_err::read_to_string(&config_path).map_err(io)?)
            .map_err(|_| invalid("config.json is not a BERT model config"))?;
    if config.model_type.as_deref().is_some_and(|t| t != "bert") {
        return Err(invalid(
            "only BERT encoders are supported as embedding models",
        ));
    }
    if !(1..=4096).contains(&config.hidden_size)
        || !(1..=48).contains(&config.num_hidden_layers)
        || !(8..=8192).contains(&config.max_position_embeddings)
    {
        return Err(invalid(
            "config.json describes a model outside the supported sizes",
        ));
    }
    let weights = fs_err::metadata(dir.join("model.safetensors")).map_err(io)?;
    let modified_at = weights
        .modified()
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok(EmbedderInfo {
        name,
        path: dir.to_path_buf(),
        size: weights.len(),
        modified_at,
        dimensions: config.hidden_size,
        max_tokens: config.max_position_embeddings,
        layers: config.num_hidden_layers,
    })
}
