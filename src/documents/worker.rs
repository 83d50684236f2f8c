//! `appliance worker extract`: reads one stored file and cuts it into chunks, in a
//! process of its own with a memory limit (`RLIMIT_AS`) and a CPU-time limit
//! (`RLIMIT_CPU`), and the daemon adds a wall-clock deadline. A zip bomb, a parser
//! stuck in a loop or a crash ends this process only; the job fails with a reason and
//! the daemon serves on.
//!
//! The answer is one JSON object on stdout: `{"ok": {...}}` or `{"error": "…"}`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::chunk::{TextChunk, chunk};
use super::extract::extract;
use super::{DocumentsConfig, MediaType};

/// Arguments of `appliance worker extract`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExtractArgs {
    /// The stored file.
    #[arg(long)]
    pub file: PathBuf,
    /// Its format.
    #[arg(long, value_enum)]
    pub format: MediaType,
    /// The embedding model's tokenizer.json (chunks are measured in its tokens).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Tokens per chunk.
    #[arg(long, default_value_t = 200)]
    pub chunk_tokens: u32,
    /// Overlap in tokens.
    #[arg(long, default_value_t = 32)]
    pub overlap: u32,
    /// Address-space limit in bytes (0: none).
    #[arg(long, default_value_t = 0)]
    pub memory_bytes: u64,
    /// CPU-time limit in seconds (0: none).
    #[arg(long, default_value_t = 0)]
    pub cpu_secs: u64,
}

/// What extraction produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extracted {
    /// Pages (PDF).
    pub pages: Option<u32>,
    /// The chunks, in order.
    pub chunks: Vec<TextChunk>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Ok(Extracted),
    Error(String),
}

fn limit(resource: rustix::process::Resource, value: u64) {
    if value > 0 {
        let limit = rustix::process::Rlimit {
            current: Some(value),
            maximum: Some(value),
        };
        if let Err(e) = rustix::process::setrlimit(resource, limit) {
            eprintln!("worker: cannot set a resource limit: {e}");
        }
    }
}

/// Entry point of `appliance worker extract`.
pub fn run(args: ExtractArgs) -> anyhow::Result<()> {
    limit(rustix::process::Resource::As, args.memory_bytes);
    limit(rustix::process::Resource::Cpu, args.cpu_secs);
    let answer = match work(&args) {
        Ok(extracted) => Answer::Ok(extracted),
        Err(message) => Answer::Error(message),
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &answer)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn work(args: &ExtractArgs) -> Result<Extracted, String> {
    let bytes =
        fs_err::read(&args.file).map_err(|_| "the stored file could not be read".to_string())?;
    let sections = extract(args.format, &bytes).map_err(|e| e.0)?;
    drop(bytes);
    let pages = (args.format == MediaType::Pdf).then_some(sections.len() as u32);
    let mut tokenizer = tokenizers::Tokenizer::from_file(&args.tokenizer)
        .map_err(|_| "the embedding model's tokenizer could not be loaded".to_string())?;
    // MiniLM's tokenizer.json pads and truncates every input to 128 tokens.
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|_| "the embedding model's tokenizer could not be configured".to_string())?;
    let chunks = chunk(
        &sections,
        &tokenizer,
        args.chunk_tokens as usize,
        args.overlap as usize,
    );
    Ok(Extracted { pages, chunks })
}

/// Runs the extraction process for one file and returns its chunks, or a reason the
/// document's owner can read.
pub async fn extract_file(
    config: &DocumentsConfig,
    file: &std::path::Path,
    format: MediaType,
    tokenizer: &std::path::Path,
) -> Result<Extracted, String> {
    let mut child = tokio::process::Command::new(&config.exe)
        .args(["worker", "extract", "--file"])
        .arg(file)
        .args(["--format", format.as_str(), "--tokenizer"])
        .arg(tokenizer)
        .args(["--chunk-tokens", &config.chunk_tokens.to_string()])
        .args(["--overlap", &config.chunk_overlap.to_string()])
        .args(["--memory-bytes", &config.extract_memory_bytes.to_string()])
        .args([
            "--cpu-secs",
            &config.extract_timeout.as_secs().max(1).to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start the extraction process");
            "the extraction process could not be started".to_string()
        })?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("the extraction process could not be started".into());
    };
    // The answer is about as large as the text: bound it by the file size limit.
    let cap = config
        .max_file_bytes
        .saturating_mul(4)
        .saturating_add(1 << 20);
    let read = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = (&mut stdout).take(cap + 1);
        let mut stderr = (&mut stderr).take(64 * 1024);
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        a.and(b).map(|_| (out, err))
    };
    let deadline = config.extract_timeout + Duration::from_secs(5);
    let (out, err) = match tokio::time::timeout(deadline, read).await {
        Ok(Ok(read)) => read,
        Ok(Err(_)) => return Err("the extraction process failed".into()),
        Err(_) => {
            let _ = child.start_kill();
            return Err(format!(
                "reading the file took longer than {} s (documents.extract_timeout_secs); it may be damaged or hostile",
                config.extract_timeout.as_secs()
            ));
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    if out.len() as u64 > cap {
        return Err("the file produced more text than the limit allows".into());
    }
    match serde_json::from_slice::<Answer>(&out) {
        Ok(Answer::Ok(extracted)) => Ok(extracted),
        Ok(Answer::Error(message)) => Err(message),
        Err(_) => {
            tracing::warn!(
                status = ?status.ok().and_then(Result::ok),
                stderr = %String::from_utf8_lossy(&err).chars().take(1000).collect::<String>(),
                "the extraction process ended without an answer"
            );
            Err(format!(
                "reading the file exceeded the memory limit ({} MiB) or CPU limit, or crashed; the file may be damaged or hostile",
                config.extract_memory_bytes >> 20
            ))
        }
    }
}
