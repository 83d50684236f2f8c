//! `appliance models list|show|rm|import`: the model files in the models dir.
//!
//! These work on the files directly (no daemon needed); a running daemon sees the
//! change on its next listing, because the registry reads the directory each time.

use anyhow::Context;

use crate::cli::{ModelsCommand, exit};
use crate::config::Loaded;
use crate::models::registry::Registry;

/// Runs one `models` subcommand.
pub fn run(loaded: &Loaded, command: &ModelsCommand) -> anyhow::Result<u8> {
    let registry = Registry::new(loaded.config.paths.models_dir.clone());
    match command {
        ModelsCommand::List => {
            let models = registry.list();
            let embedders = registry.embedders();
            let transcribers = registry.transcribers();
            if models.is_empty() && embedders.is_empty() && transcribers.is_empty() {
                println!(
                    "no models in {} (run `scripts/fetch-models {}` or `appliance models import FILE`)",
                    registry.dir().display(),
                    registry.dir().display()
                );
                return Ok(exit::OK);
            }
            println!(
                "{:<40} {:<8} {:>7} {:<8} {:>8} {:>9}",
                "NAME", "ARCH", "PARAMS", "QUANT", "CONTEXT", "SIZE"
            );
            for m in models {
                println!(
                    "{:<40} {:<8} {:>7} {:<8} {:>8} {:>8}M",
                    super::output::line(&m.name),
                    super::output::line(&m.architecture),
                    m.parameter_size(),
                    m.quantization,
                    m.context_length.map(|c| c.to_string()).unwrap_or_default(),
                    m.size / (1024 * 1024)
                );
            }
            if !embedders.is_empty() {
                println!(
                    "\n{:<40} {:>10} {:>10} {:>8} {:>9}",
                    "EMBEDDING MODEL", "DIMENSIONS", "MAX TOKENS", "LAYERS", "SIZE"
                );
                for m in &embedders {
                    println!(
                        "{:<40} {:>10} {:>10} {:>8} {:>8}M",
                        super::output::line(&m.name),
                        m.dimensions,
                        m.max_tokens,
                        m.layers,
                        m.size / (1024 * 1024)
                    );
                }
            }
            if !transcribers.is_empty() {
                println!(
                    "\n{:<40} {:<8} {:<13} {:>9}",
                    "SPEECH MODEL", "SIZE", "LANGUAGES", "FILE"
                );
                for m in &transcribers {
                    println!(
                        "{:<40} {:<8} {:<13} {:>8}M",
                        super::output::line(&m.name),
                        m.size_class,
                        if m.multilingual {
                            "multilingual"
                        } else {
                            "English"
                        },
                        m.size / (1024 * 1024)
                    );
                }
            }
        }
        ModelsCommand::Show { name } => {
            let info = registry.find(name)?;
            let digest = registry.digest(&info)?;
            println!("name           {}", super::output::line(&info.name));
            println!("file           {}", info.path.display());
            println!("architecture   {}", super::output::line(&info.architecture));
            println!(
                "parameters     {} ({})",
                info.parameters,
                info.parameter_size()
            );
            println!("quantization   {}", info.quantization);
            println!(
                "context        {}",
                info.context_length
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "unknown".into())
            );
            println!("size           {} bytes", info.size);
            println!("sha256         {digest}");
            println!(
                "chat template  {}",
                if info.chat_template { "yes" } else { "no" }
            );
            if let Some(license) = &info.license {
                println!("license        {}", super::output::line(license));
            }
        }
        ModelsCommand::Rm { name } => {
            let info = registry.remove(name)?;
            super::accounts::record(
                loaded,
                "model.delete",
                &info.name,
                serde_json::json!({"file": info.path}),
            )?;
            println!("removed {} ({})", info.name, info.path.display());
        }
        ModelsCommand::Import { path, name, assets } if path.is_dir() => {
            if !crate::models::whisper_import::is_ct2_whisper(path) {
                anyhow::bail!(
                    "{} is a directory but not a faster-whisper (CTranslate2) Whisper model (no model.bin with a WhisperSpec); pass a .gguf file or such a folder",
                    path.display()
                );
            }
            let assets = assets
                .clone()
                .unwrap_or_else(|| registry.dir().join("whisper-assets"));
            let started = std::time::Instant::now();
            let info = registry
                .import_whisper(path, &assets, name.as_deref())
                .with_context(|| format!("converting {}", path.display()))?;
            super::accounts::record(
                loaded,
                "model.import",
                &info.name,
                serde_json::json!({"source": path, "bytes": info.size, "kind": "speech"}),
            )?;
            println!(
                "converted {} (whisper {}, {}) into {} in {:.1} s",
                info.name,
                info.size_class,
                if info.multilingual {
                    "multilingual"
                } else {
                    "English-only"
                },
                info.path.display(),
                started.elapsed().as_secs_f64()
            );
        }
        ModelsCommand::Import { path, name, .. } => {
            let info = registry
                .import(path, name.as_deref())
                .with_context(|| format!("importing {}", path.display()))?;
            super::accounts::record(
                loaded,
                "model.import",
                &info.name,
                serde_json::json!({"source": path, "bytes": info.size}),
            )?;
            println!(
                "imported {} ({}, {} parameters, {}) into {}",
                info.name,
                info.architecture,
                info.parameter_size(),
                info.quantization,
                info.path.display()
            );
        }
    }
    Ok(exit::OK)
}
