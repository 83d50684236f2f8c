//! The LLM worker process (`appliance worker llm`): owns one llama.cpp model and one
//! context, and serves several generations at once as parallel sequences.
//!
//! Three threads, so that no request can stall the others' streams:
//! - `stdin` reads commands and routes them (never blocks on anything else);
//! - `prep` renders chat templates, tokenizes and checks constraints: an
//!   8 MB prompt costs its own request time, not everyone's decode steps;
//! - the main thread runs the decode loop (`batch`): continuous batching over the
//!   slots, prefix reuse, sampling.
//!
//! This process may still crash (a bad model, a GGML_ASSERT): that is why it is a
//! process. Protocol on stdin/stdout ([`super::protocol`]); logs on stderr, which the
//! daemon logs but never shows a client. [`fake`] is a scripted stand-in speaking the
//! same protocol, for tests of the daemon side that need no weights.

mod batch;
mod bert;
mod bert_cpu;
pub mod embed;
pub mod fake;
mod jinja;
mod kernels;
mod prep;
mod sampler;
mod text;

use std::io::{BufRead, Write};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;

use super::protocol::{Command, Event, PROTOCOL_VERSION, Prompt, SamplingParams};
pub use prep::{ChatTokenizer, TokenizedChat};
pub use sampler::JSON_OBJECT_GBNF;

/// How the daemon starts a worker.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The GGUF file (already validated by the daemon).
    #[arg(long)]
    pub model: PathBuf,
    /// Parallel sequences.
    #[arg(long, default_value_t = 4)]
    pub slots: u32,
    /// Context tokens per slot.
    #[arg(long, default_value_t = 4096)]
    pub ctx_per_slot: u32,
    /// CPU threads for decoding.
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
    /// Layers to offload to the GPU.
    #[arg(long, default_value_t = 0)]
    pub gpu_layers: u32,
    /// Tokens per decode call.
    #[arg(long, default_value_t = 512)]
    pub batch: u32,
}

/// What the decode loop receives: commands that concern it, and the preparation
/// thread's results. Every generate/count id passes through here exactly once
/// (`Prepared` or `Settled`), so an early cancel can be remembered and forgotten.
enum Input {
    /// A request ready for a slot.
    Prepared(Box<batch::Pending>),
    /// A request the preparation thread answered itself (counted or failed).
    Settled(u64),
    /// Stop a request.
    Cancel(u64),
    /// Exit.
    Shutdown,
}

/// Work for the preparation thread.
enum PrepJob {
    Generate {
        id: u64,
        prompt: Prompt,
        params: Box<SamplingParams>,
        received: Instant,
    },
    Count {
        id: u64,
        prompt: Prompt,
    },
    Stop,
}

/// For single-threaded workers (embed, fake): see [`protocol::stdio::read_commands`].
fn read_commands() -> anyhow::Result<mpsc::Receiver<Command>> {
    super::protocol::stdio::read_commands().context("spawning the stdin thread")
}

/// Writes one event line to stdout (see [`protocol::stdio::emit`]).
fn emit(event: &Event) -> anyhow::Result<()> {
    Ok(super::protocol::stdio::emit(event)?)
}

/// llama.cpp's and ggml's errors go to stderr, where the daemon's supervisor logs them
/// and recognises running out of (GPU) memory; everything chattier is dropped.
fn errors_to_stderr() {
    #[allow(unsafe_code, reason = "a C callback for llama.cpp's log")]
    unsafe extern "C" fn log(
        level: llama_cpp_sys_2::ggml_log_level,
        text: *const std::os::raw::c_char,
        _: *mut std::os::raw::c_void,
    ) {
        if level != llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR || text.is_null() {
            return;
        }
        // SAFETY: llama.cpp passes a NUL-terminated string valid for this call.
        let text = unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy();
        let line: String = text.trim_end().chars().take(400).collect();
        // Never panic here: unwinding into C aborts the process.
        let _ = writeln!(std::io::stderr(), "llama.cpp: {line}");
    }
    // SAFETY: the callback is a plain function that lives as long as the process.
    #[allow(unsafe_code, reason = "registering the log callback with llama.cpp")]
    unsafe {
        llama_cpp_sys_2::llama_log_set(Some(log), std::ptr::null_mut());
    }
}

/// Entry point of `appliance worker llm`.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let backend = LlamaBackend::init().context("initialising llama.cpp")?;
    errors_to_stderr();
    let model_params = LlamaModelParams::default().with_n_gpu_layers(args.gpu_layers);
    let model = LlamaModel::load_from_file(&backend, &args.model, &model_params)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let slots = args.slots.max(1);
    let n_ctx_slot = args.ctx_per_slot.min(model.n_ctx_train().max(256));
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx_slot * slots))
        .with_n_batch(args.batch)
        .with_n_ubatch(args.batch)
        .with_n_seq_max(slots)
        .with_kv_unified(false)
        .with_n_threads(args.threads)
        .with_n_threads_batch(args.threads);
    let ctx = model
        .new_context(&backend, ctx_params)
        .context("creating the llama.cpp context")?;
    let tokenizer = ChatTokenizer::new(&model);
    emit(&Event::Ready {
        protocol: PROTOCOL_VERSION,
        n_ctx_slot,
        slots,
        n_ctx_train: model.n_ctx_train(),
        load_ms: started.elapsed().as_secs_f64() * 1000.0,
        model_bytes: model.size(),
        chat_template: tokenizer.has_template(),
    })?;

    let (input_tx, input_rx) = mpsc::channel::<Input>();
    let (prep_tx, prep_rx) = mpsc::channel::<PrepJob>();
    spawn_stdin_reader(prep_tx.clone(), input_tx.clone());
    std::thread::scope(|scope| {
        let preparer = prep::Preparer::new(tokenizer, n_ctx_slot);
        std::thread::Builder::new()
            .name("prep".into())
            .spawn_scoped(scope, move || preparer.run(prep_rx, input_tx))
            .context("spawning the preparation thread")?;
        let result =
            batch::Worker::new(&model, ctx, slots, n_ctx_slot, args.batch as usize).serve(input_rx);
        let _ = prep_tx.send(PrepJob::Stop);
        result
    })
}

/// Reads commands on a thread so neither the decode loop nor the preparation thread
/// ever blocks on stdin.
fn spawn_stdin_reader(prep: mpsc::Sender<PrepJob>, decode: mpsc::Sender<Input>) {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                let sent = match serde_json::from_str::<Command>(&line) {
                    Ok(Command::Generate { id, prompt, params }) => prep
                        .send(PrepJob::Generate {
                            id,
                            prompt,
                            params: Box::new(params),
                            received: Instant::now(),
                        })
                        .is_ok(),
                    Ok(Command::Count { id, prompt }) => {
                        prep.send(PrepJob::Count { id, prompt }).is_ok()
                    }
                    Ok(Command::Embed { id, .. } | Command::Transcribe { id, .. }) => {
                        let _ = emit(&Event::Failed {
                            id,
                            error: super::protocol::WorkerError::Invalid {
                                message: "this model generates text; it cannot make embeddings or transcribe audio"
                                    .into(),
                            },
                        });
                        true
                    }
                    Ok(Command::Cancel { id }) => decode.send(Input::Cancel(id)).is_ok(),
                    Ok(Command::Shutdown) => {
                        let _ = decode.send(Input::Shutdown);
                        false
                    }
                    Err(e) => {
                        eprintln!("worker: ignoring a malformed command: {e}");
                        true
                    }
                };
                if !sent {
                    break;
                }
            }
            // stdin closed: the daemon is gone; finish.
            let _ = decode.send(Input::Shutdown);
        })
        .expect("spawning the stdin thread");
}
