//! `appliance-stt-worker`: one whisper.cpp model in a process of its own, supervised by
//! the daemon exactly like its chat and embedding workers (the same wire,
//! `appliance-protocol`). It is a separate executable because whisper.cpp and
//! llama.cpp each link their own ggml, which cannot share one binary.
//!
//! The model is loaded once; each request gets its own whisper state (its own KV
//! caches and buffers) on its own thread, so up to `--parallel` requests run at once
//! instead of queueing behind one lock. States are kept for reuse once a request ends.
//! Requests beyond `--parallel` wait here in arrival order (the daemon bounds how many
//! it sends).

mod audio;
mod transcribe;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use appliance_protocol::stdio::{emit, read_commands};
use appliance_protocol::{Command, Event, PROTOCOL_VERSION, SpeechOptions};
use clap::Parser;

use transcribe::{Engine, Job};

/// How the daemon starts a speech worker.
#[derive(Debug, Parser)]
#[command(name = "appliance-stt-worker", version)]
struct Args {
    /// The whisper.cpp ggml model file.
    #[arg(long)]
    model: PathBuf,
    /// CPU threads each request uses.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
    /// Requests transcribed at once (each with its own whisper state).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    parallel: u32,
    /// Beam width (1 = greedy decoding).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=16))]
    beam_size: u32,
    /// Use the GPU when this build has one.
    #[arg(long)]
    gpu: bool,
}

/// What the main loop hears: a command from the daemon, or a request's thread ending.
enum Msg {
    Command(Box<Command>),
    Finished(u64),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stt-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let engine = Arc::new(Engine::load(
        &args.model,
        args.threads,
        args.beam_size,
        args.gpu,
    )?);
    let (tx, rx) = mpsc::channel::<Msg>();
    let commands = read_commands()?;
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("commands".into())
            .spawn(move || {
                for command in commands {
                    if tx.send(Msg::Command(Box::new(command))).is_err() {
                        break;
                    }
                }
            })?;
    }
    emit(&Event::Ready {
        protocol: PROTOCOL_VERSION,
        n_ctx_slot: 0,
        slots: args.parallel,
        n_ctx_train: 0,
        load_ms: started.elapsed().as_secs_f64() * 1000.0,
        model_bytes: engine.model_bytes(),
        chat_template: false,
    })?;

    let parallel = args.parallel as usize;
    let mut waiting: VecDeque<(u64, Job)> = VecDeque::new();
    let mut running: HashMap<u64, Arc<AtomicBool>> = HashMap::new();
    let mut threads = Vec::new();
    let mut shutting_down = false;
    while let Ok(msg) = rx.recv() {
        let msg = match msg {
            Msg::Command(command) => Ok(*command),
            Msg::Finished(id) => Err(id),
        };
        match msg {
            Ok(Command::Transcribe {
                id,
                audio,
                name,
                options,
            }) if !shutting_down => {
                waiting.push_back((id, job(audio, name, options)));
            }
            Ok(Command::Cancel { id }) => {
                if let Some(flag) = running.get(&id) {
                    flag.store(true, Ordering::Release);
                }
                waiting.retain(|(waiting_id, _)| *waiting_id != id);
            }
            Ok(Command::Shutdown) => {
                shutting_down = true;
                waiting.clear();
                for flag in running.values() {
                    flag.store(true, Ordering::Release);
                }
            }
            Ok(other) => {
                let id = match other {
                    Command::Generate { id, .. }
                    | Command::Count { id, .. }
                    | Command::Embed { id, .. }
                    | Command::Transcribe { id, .. } => id,
                    Command::Cancel { .. } | Command::Shutdown => continue,
                };
                emit(&Event::Failed {
                    id,
                    error: appliance_protocol::WorkerError::Invalid {
                        message: "this is a speech-to-text model; it only transcribes audio".into(),
                    },
                })?;
            }
            Err(id) => {
                running.remove(&id);
            }
        }
        while running.len() < parallel
            && let Some((id, job)) = waiting.pop_front()
        {
            let cancel = job.cancel.clone();
            let engine = engine.clone();
            let tx = tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("stt-{id}"))
                .spawn(move || {
                    engine.run(id, job);
                    let _ = tx.send(Msg::Finished(id));
                })?;
            running.insert(id, cancel);
            threads.push(handle);
        }
        threads.retain(|t| !t.is_finished());
        if shutting_down && running.is_empty() {
            break;
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

fn job(audio: PathBuf, name: Option<String>, options: SpeechOptions) -> Job {
    Job {
        audio,
        name,
        options,
        cancel: Arc::new(AtomicBool::new(false)),
    }
}
