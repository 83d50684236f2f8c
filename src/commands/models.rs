//! `appliance models list|show|rm|import|export|pull`: the model files in the models
//! dir.
//!
//! All but `pull` work on the files directly (no daemon needed; `export` and `import`
//! of bundles included, so they work on an appliance with no network); a running daemon
//! sees the change on its next listing, because the registry reads the directory each
//! time. `pull` asks the daemon (`POST /api/pull`), which does the download, so the
//! daemon's proxy, token and disk checks apply and a second pull resumes the first.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::cli::{ModelsCommand, exit};
use crate::config::Loaded;
use crate::models::bundle;
use crate::models::registry::Registry;

/// A chat model's effective settings (`[engine]` with its `[models."name"]`
/// overrides) and its memory estimate.
fn settings(loaded: &Loaded, name: &str, path: &std::path::Path) -> anyhow::Result<()> {
    use crate::engine::{GpuLayers, KeepAlive, ModelKind, ModelSpec, footprint};
    use crate::gpu::human_bytes;
    let engine = super::serve::engine_config(&loaded.config)?;
    let s = engine.settings(name);
    let configured = if loaded.config.models.contains_key(name) {
        format!(" (from [models.\"{name}\"] and [engine])")
    } else {
        " (from [engine])".to_string()
    };
    println!("settings{configured}");
    println!(
        "  gpu layers   {}",
        match s.gpu_layers {
            GpuLayers::Auto => "as many as fit (-1)".to_string(),
            GpuLayers::Exactly(n) => n.to_string(),
        }
    );
    println!("  context      {} tokens per request", s.ctx_per_slot);
    println!("  slots        {}", s.slots);
    println!(
        "  keep alive   {}",
        match s.keep_alive {
            KeepAlive::Forever => "until unloaded".to_string(),
            KeepAlive::For(d) => format!("{} s", d.as_secs()),
        }
    );
    println!("  pinned       {}", if s.pinned { "yes" } else { "no" });
    println!("  preload      {}", if s.preload { "yes" } else { "no" });
    let spec = ModelSpec {
        name: name.to_string(),
        path: path.to_path_buf(),
        kind: ModelKind::Chat,
    };
    if let Ok(f) = footprint::estimate(ModelKind::Chat, path, engine.shape(&spec)) {
        let all = f.total_layers();
        println!(
            "memory         {} of GPU memory with all {all} layers offloaded, else {} of RAM on the CPU (estimates for these settings)",
            human_bytes(f.gpu_bytes(all)),
            human_bytes(f.host_bytes(0))
        );
    }
    Ok(())
}

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
            settings(loaded, &info.name, &info.path)?;
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
        ModelsCommand::Pull { reference } => return pull(loaded, reference),
        ModelsCommand::Export { name, to } => {
            let manifest =
                bundle::export(&registry, name, to).with_context(|| format!("exporting {name}"))?;
            let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
            super::accounts::record(
                loaded,
                "model.export",
                &manifest.name,
                json!({"to": to, "bytes": bytes}),
            )?;
            println!(
                "exported {} ({bytes} bytes, {} files, sha256 {}) to {}",
                manifest.name,
                manifest.files.len(),
                manifest.files[0].sha256,
                to.display()
            );
        }
        ModelsCommand::Import { path, name, .. } if bundle::looks_like_bundle(path) => {
            let margin = loaded
                .config
                .pull
                .free_space_margin_mb
                .saturating_mul(1 << 20);
            let imported = bundle::import(&registry, path, name.as_deref(), margin)
                .with_context(|| format!("importing the bundle {}", path.display()))?;
            if imported.already_installed {
                println!(
                    "{} is already installed with the same sha256; nothing to do",
                    imported.info.name
                );
                return Ok(exit::OK);
            }
            super::accounts::record(
                loaded,
                "model.import",
                &imported.info.name,
                json!({"source": path, "bytes": imported.info.size, "kind": "bundle"}),
            )?;
            println!(
                "imported {} ({}, {} parameters, {}; every checksum verified) into {}",
                imported.info.name,
                imported.info.architecture,
                imported.info.parameter_size(),
                imported.info.quantization,
                imported.info.path.display()
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

/// `models pull`: asks the daemon to pull, showing its progress.
fn pull(loaded: &Loaded, reference: &str) -> anyhow::Result<u8> {
    let client = super::docs::client(loaded);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:24!} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta:>4}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let plain = bar.is_hidden();
    let mut last_status = String::new();
    let result = super::block_on(async {
        client
            .post_ndjson(
                "/api/pull",
                &json!({"model": reference, "stream": true}),
                |line: Value| {
                    let status = line["status"].as_str().unwrap_or_default().to_string();
                    if let (Some(total), Some(done)) =
                        (line["total"].as_u64(), line["completed"].as_u64())
                    {
                        bar.set_length(total);
                        bar.set_position(done);
                    }
                    if status != last_status {
                        if plain {
                            eprintln!("{}", super::output::line(&status));
                        }
                        bar.set_message(super::output::line(&status).into_owned());
                        last_status = status;
                    }
                },
            )
            .await
    })?;
    match result {
        Ok(()) => {
            bar.finish_with_message("success");
            println!("pulled {}", super::output::line(reference));
            Ok(exit::OK)
        }
        Err(e) => {
            bar.abandon();
            Err(e.into())
        }
    }
}
