//! `appliance transcribe FILE…`: speech to text through the running daemon's
//! transcripts API, as any client would: each file is uploaded (a progress bar), then
//! transcribed as a job (the bar follows it), then exported in the asked format — to
//! stdout, or as `NAME.EXT` files in `--output-dir`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use super::output;
use crate::cli::exit;
use crate::client::DaemonClient;
use crate::config::Loaded;

/// The format of the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TranscriptFormat {
    /// Plain text.
    Text,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
    /// `{"text": …}`.
    Json,
    /// Language, duration, segments (and words with `--words`).
    VerboseJson,
}

impl TranscriptFormat {
    fn api_name(self) -> &'static str {
        match self {
            TranscriptFormat::Text => "text",
            TranscriptFormat::Srt => "srt",
            TranscriptFormat::Vtt => "vtt",
            TranscriptFormat::Json => "json",
            TranscriptFormat::VerboseJson => "verbose_json",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            TranscriptFormat::Text => "txt",
            TranscriptFormat::Srt => "srt",
            TranscriptFormat::Vtt => "vtt",
            TranscriptFormat::Json | TranscriptFormat::VerboseJson => "json",
        }
    }
}

/// `appliance transcribe …`
#[derive(Debug, clap::Args)]
pub struct TranscribeArgs {
    /// Audio files (WAV, MP3, FLAC, Ogg, Opus, WebM, M4A).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "text")]
    pub format: TranscriptFormat,
    /// Spoken language as an ISO-639-1 code (default: detect).
    #[arg(long, short = 'l')]
    pub language: Option<String>,
    /// Translate to English instead of transcribing.
    #[arg(long)]
    pub translate: bool,
    /// Time every word (shown in verbose_json).
    #[arg(long)]
    pub words: bool,
    /// Speech model (default: the daemon's).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Text that conditions the decoder (names, spellings).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Write NAME.EXT files here instead of printing to stdout.
    #[arg(long, short = 'o')]
    pub output_dir: Option<PathBuf>,
}

/// Runs `transcribe`.
pub fn run(loaded: &Loaded, args: &TranscribeArgs) -> anyhow::Result<u8> {
    for file in &args.files {
        if !file.is_file() {
            anyhow::bail!("{} is not a readable file", file.display());
        }
    }
    if let Some(dir) = &args.output_dir
        && !dir.is_dir()
    {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    let client = super::docs::client(loaded);
    super::block_on(async move {
        let bars = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:30!} {bar:30} {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let mut failures = 0;
        for file in &args.files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bar = bars.add(ProgressBar::new(100));
            bar.set_style(style.clone());
            bar.set_prefix(output::text(&name).into_owned());
            match transcribe(&client, file, args, &bar).await {
                Ok(text) => {
                    bar.finish_and_clear();
                    deliver(args, file, &name, &text, args.files.len() > 1)?;
                }
                Err(message) => {
                    failures += 1;
                    let message = format!("failed: {}", output::text(&message));
                    if bars.is_hidden() {
                        eprintln!("{}: {message}", output::text(&name));
                    }
                    bar.abandon_with_message(message);
                }
            }
        }
        Ok(if failures == 0 {
            exit::OK
        } else {
            exit::FAILURE
        })
    })?
}

/// Uploads, waits for the job, exports. The error is a message for the person.
async fn transcribe(
    client: &DaemonClient,
    file: &Path,
    args: &TranscribeArgs,
    bar: &ProgressBar,
) -> Result<String, String> {
    let mut fields = Vec::new();
    if let Some(language) = &args.language {
        fields.push(("language", language.clone()));
    }
    if let Some(model) = &args.model {
        fields.push(("model", model.clone()));
    }
    if let Some(prompt) = &args.prompt {
        fields.push(("prompt", prompt.clone()));
    }
    if args.translate {
        fields.push(("task", "translate".to_string()));
    }
    if args.words {
        fields.push(("word_timestamps", "true".to_string()));
    }
    bar.set_message("uploading");
    let upload_bar = bar.clone();
    let created = client
        .upload_with("/api/v1/transcripts", file, &fields, move |sent, total| {
            upload_bar.set_position(sent * 100 / total.max(1));
        })
        .await
        .map_err(|e| e.to_string())?;
    let id = created["transcript"]["id"].as_i64().unwrap_or_default();
    let job = created["job"]["id"].as_i64().unwrap_or_default();
    bar.set_position(0);
    bar.set_message("queued");
    loop {
        let state = client
            .get_json(&format!("/api/v1/jobs/{job}"))
            .await
            .map_err(|e| e.to_string())?;
        bar.set_position((state["progress"].as_f64().unwrap_or(0.0) * 100.0) as u64);
        match state["state"].as_str().unwrap_or("") {
            "done" => break,
            "failed" | "cancelled" => {
                let transcript = client
                    .get_json(&format!("/api/v1/transcripts/{id}"))
                    .await
                    .unwrap_or(Value::Null);
                return Err(transcript["error"]
                    .as_str()
                    .or(state["error"].as_str())
                    .unwrap_or("the transcription failed")
                    .to_string());
            }
            _ => {
                let note = state["note"].as_str().unwrap_or("");
                bar.set_message(
                    output::text(if note.is_empty() { "waiting" } else { note }).into_owned(),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    client
        .get_text(&format!(
            "/api/v1/transcripts/{id}/export?format={}",
            args.format.api_name()
        ))
        .await
        .map_err(|e| e.to_string())
}

/// Prints the transcript, or writes it next to the others in the output dir.
fn deliver(
    args: &TranscribeArgs,
    file: &Path,
    name: &str,
    text: &str,
    several: bool,
) -> anyhow::Result<()> {
    match &args.output_dir {
        Some(dir) => {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "transcript".into());
            let target = dir.join(format!("{stem}.{}", args.format.extension()));
            fs_err::write(&target, text)?;
            eprintln!("{} -> {}", output::text(name), target.display());
        }
        None => {
            if several {
                println!("==> {} <==", output::text(name));
            }
            // Subtitles and JSON are data: printed as they are (escaping only what a
            // terminal would act on).
            print!("{}", output::text(text));
            if !text.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(())
}
