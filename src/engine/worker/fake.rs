//! `appliance worker fake`: a scripted worker that speaks the real protocol without
//! llama.cpp or weights, so the daemon's supervision, admission, deadlines, crash
//! handling and residency can be tested fast and deterministically.
//!
//! How it starts is chosen by `--start`; what each request does is read from the
//! prompt (a raw prompt, or the last chat message) as `key=value` words:
//! `tokens=N` (default 3) tokens `t0 t1 …`, `delay_ms=D` between tokens,
//! `crash_at=K` aborts the whole process after K tokens, `stderr=TEXT` writes TEXT to
//! stderr first, `fail=overflow|invalid|decode` fails the request, `count_ms=D` delays
//! a token count, `freeze_ms=D` stops the whole worker for D ms. The prompt's length in
//! tokens is its number of words.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{emit, read_commands};
use crate::engine::protocol::{
    Command, Event, FinishReason, PROTOCOL_VERSION, Prompt, Usage, WorkerError,
};

/// How the daemon (or a test) starts a fake worker.
#[derive(Debug, Clone, clap::Args)]
pub struct FakeArgs {
    /// Parallel sequences.
    #[arg(long, default_value_t = 2)]
    pub slots: u32,
    /// Context tokens per slot.
    #[arg(long, default_value_t = 256)]
    pub ctx_per_slot: u32,
    /// `ready`, `exit` (dies before Ready, writing to stderr), `oom` (dies as a load
    /// that ran out of GPU memory does), `hang` (never answers),
    /// `garbage` (answers something that is not the protocol), `old` (another
    /// protocol version).
    #[arg(long, default_value = "ready")]
    pub start: String,
    /// Time to "load", ms.
    #[arg(long, default_value_t = 0)]
    pub load_ms: u64,
    /// A simulated GPU's ledger directory to record `--vram-bytes` in (tests of the
    /// GPU scheduler; see `gpu::SimulatedGpu`).
    #[arg(long)]
    pub vram_ledger: Option<std::path::PathBuf>,
    /// Bytes of simulated GPU memory this worker holds while it lives.
    #[arg(long, default_value_t = 0)]
    pub vram_bytes: u64,
}

/// One request's script.
#[derive(Debug, Clone, Default)]
struct Script {
    tokens: u32,
    delay: Duration,
    crash_at: Option<u32>,
    stderr: Option<String>,
    fail: Option<String>,
    count_delay: Duration,
    freeze: Duration,
    words: u32,
    /// `tokens` was cut to the request's `max_tokens`.
    capped: bool,
}

impl Script {
    fn parse(prompt: &Prompt) -> Script {
        let text = match prompt {
            Prompt::Text(t) => t.as_str(),
            Prompt::Chat(m) | Prompt::ChatWithTools { messages: m, .. } => {
                m.last().map_or("", |m| m.content.as_str())
            }
        };
        let mut script = Script {
            tokens: 3,
            words: prompt_words(prompt),
            ..Script::default()
        };
        for word in text.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let number = value.parse::<u64>().unwrap_or(0);
            match key {
                "tokens" => script.tokens = number as u32,
                "delay_ms" => script.delay = Duration::from_millis(number),
                "crash_at" => script.crash_at = Some(number as u32),
                "stderr" => script.stderr = Some(value.to_string()),
                "fail" => script.fail = Some(value.to_string()),
                "count_ms" => script.count_delay = Duration::from_millis(number),
                "freeze_ms" => script.freeze = Duration::from_millis(number),
                _ => {}
            }
        }
        script
    }
}

fn prompt_words(prompt: &Prompt) -> u32 {
    let n = match prompt {
        Prompt::Text(t) => t.split_whitespace().count(),
        Prompt::Chat(m) | Prompt::ChatWithTools { messages: m, .. } => {
            m.iter().map(|m| m.content.split_whitespace().count()).sum()
        }
    };
    n.max(1) as u32
}

struct Running {
    id: u64,
    script: Script,
    emitted: u32,
    next_at: Instant,
    started: Instant,
}

/// Entry point of `appliance worker fake`.
pub fn run(args: FakeArgs) -> anyhow::Result<()> {
    if let (Some(dir), true) = (&args.vram_ledger, args.vram_bytes > 0) {
        fs_err::write(
            dir.join(std::process::id().to_string()),
            args.vram_bytes.to_string(),
        )?;
    }
    std::thread::sleep(Duration::from_millis(args.load_ms));
    match args.start.as_str() {
        "oom" => {
            // What llama.cpp's CUDA backend logs when a buffer does not fit.
            eprintln!(
                "llama.cpp: ggml_backend_cuda_buffer_type_alloc_buffer: allocating 812.00 MiB on device 0: cudaMalloc failed: out of memory"
            );
            std::process::exit(1);
        }
        "exit" => {
            eprintln!("fake worker: refusing to start (stderr=private-detail)");
            std::process::exit(3);
        }
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "garbage" => {
            println!("this is not the protocol");
            std::io::stdout().flush()?;
            std::thread::sleep(Duration::from_secs(3600));
            return Ok(());
        }
        _ => {}
    }
    emit(&Event::Ready {
        protocol: if args.start == "old" {
            PROTOCOL_VERSION - 1
        } else {
            PROTOCOL_VERSION
        },
        n_ctx_slot: args.ctx_per_slot,
        slots: args.slots,
        n_ctx_train: args.ctx_per_slot,
        load_ms: args.load_ms as f64,
        model_bytes: 1024,
        chat_template: true,
    })?;
    let rx = read_commands()?;
    serve(&args, &rx)
}

fn serve(args: &FakeArgs, commands: &mpsc::Receiver<Command>) -> anyhow::Result<()> {
    let mut queue: VecDeque<(u64, Script)> = VecDeque::new();
    let mut running: Vec<Running> = Vec::new();
    loop {
        let wait = running
            .iter()
            .map(|r| r.next_at.saturating_duration_since(Instant::now()))
            .min();
        let command = match wait {
            None if queue.is_empty() => commands.recv().ok(),
            None => commands.try_recv().ok(),
            Some(d) => commands.recv_timeout(d).ok(),
        };
        match command {
            Some(Command::Shutdown) => return Ok(()),
            Some(Command::Generate { id, prompt, params }) => {
                let mut script = Script::parse(&prompt);
                if let Some(max) = params.max_tokens.filter(|max| *max < script.tokens) {
                    script.tokens = max;
                    script.capped = true;
                }
                if let Some(text) = &script.stderr {
                    eprintln!("fake worker: {text}");
                }
                if !script.freeze.is_zero() {
                    std::thread::sleep(script.freeze);
                }
                match script.fail.as_deref() {
                    Some("overflow") => emit(&Event::Failed {
                        id,
                        error: WorkerError::ContextOverflow {
                            prompt_tokens: script.words,
                            n_ctx: args.ctx_per_slot,
                        },
                    })?,
                    Some("invalid") => emit(&Event::Failed {
                        id,
                        error: WorkerError::InvalidConstraint {
                            message: "scripted invalid request".into(),
                        },
                    })?,
                    Some(_) => emit(&Event::Failed {
                        id,
                        error: WorkerError::Decode {
                            message: "scripted decode failure".into(),
                        },
                    })?,
                    None => queue.push_back((id, script)),
                }
            }
            Some(Command::Count { id, prompt }) => {
                let script = Script::parse(&prompt);
                std::thread::spawn(move || {
                    std::thread::sleep(script.count_delay);
                    let _ = emit(&Event::Counted {
                        id,
                        prompt_tokens: script.words,
                    });
                });
            }
            Some(Command::Embed { id, inputs, .. }) => {
                // A 2-d unit vector from each text's length: distinct texts, distinct
                // vectors, and nothing a test could mistake for a real model's.
                let embeddings = inputs
                    .iter()
                    .map(|text| {
                        let angle = text.chars().count() as f32 / 10.0;
                        vec![angle.cos(), angle.sin()]
                    })
                    .collect();
                let prompt_tokens = inputs
                    .iter()
                    .map(|t| t.split_whitespace().count() as u32)
                    .sum();
                emit(&Event::Embedded {
                    id,
                    embeddings,
                    prompt_tokens,
                })?;
            }
            Some(Command::Cancel { id }) => {
                if let Some(at) = queue.iter().position(|(q, _)| *q == id) {
                    let (_, script) = queue.remove(at).expect("found");
                    done(id, FinishReason::Cancelled, &script, 0, None)?;
                } else if let Some(at) = running.iter().position(|r| r.id == id) {
                    let r = running.remove(at);
                    done(
                        id,
                        FinishReason::Cancelled,
                        &r.script,
                        r.emitted,
                        Some(r.started),
                    )?;
                }
            }
            Some(Command::Transcribe { id, .. }) => emit(&Event::Failed {
                id,
                error: WorkerError::Invalid {
                    message: "the fake worker does not transcribe".into(),
                },
            })?,
            None => {}
        }
        while running.len() < args.slots as usize {
            let Some((id, script)) = queue.pop_front() else {
                break;
            };
            emit(&Event::Started {
                id,
                prompt_tokens: script.words,
            })?;
            running.push(Running {
                id,
                next_at: Instant::now() + script.delay,
                script,
                emitted: 0,
                started: Instant::now(),
            });
        }
        let now = Instant::now();
        let mut finished = Vec::new();
        for (i, r) in running.iter_mut().enumerate() {
            if r.next_at > now {
                continue;
            }
            if r.script.crash_at == Some(r.emitted) {
                eprintln!("fake worker: crashing as scripted");
                std::process::abort();
            }
            if r.emitted >= r.script.tokens {
                finished.push(i);
                continue;
            }
            emit(&Event::Token {
                id: r.id,
                text: format!("t{} ", r.emitted),
                logprobs: Vec::new(),
            })?;
            r.emitted += 1;
            r.next_at = now + r.script.delay;
        }
        for i in finished.into_iter().rev() {
            let r = running.remove(i);
            let reason = if r.script.capped {
                FinishReason::Length
            } else {
                FinishReason::Stop
            };
            done(r.id, reason, &r.script, r.emitted, Some(r.started))?;
        }
    }
}

fn done(
    id: u64,
    reason: FinishReason,
    script: &Script,
    generated: u32,
    started: Option<Instant>,
) -> anyhow::Result<()> {
    emit(&Event::Done {
        id,
        finish_reason: reason,
        usage: Usage {
            prompt_tokens: script.words,
            completion_tokens: generated,
            generation_ms: started.map_or(0.0, |s| s.elapsed().as_secs_f64() * 1000.0),
            ..Usage::default()
        },
    })
}
