//! The LLM worker process (`appliance worker llm`): owns one llama.cpp model and one
//! context, and serves several generations at once as parallel sequences.
//!
//! Continuous batching: every loop iteration builds one batch holding, for each busy
//! slot, either its next chunk of prompt or its last sampled token, decodes it once,
//! then samples one token for every slot that produced logits. New requests join at
//! the next iteration, finished ones leave, without waiting for each other.
//!
//! Prefix reuse: each slot remembers the tokens whose keys/values are in its part of
//! the cache. A new request goes to the free slot sharing the longest prefix with its
//! prompt, and only the rest of the prompt is evaluated.
//!
//! This process may crash (a bad model, a GGML_ASSERT): that is why it is a process.
//! Protocol on stdin/stdout ([`super::protocol`]); logs on stderr.

mod sampler;
mod text;

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::protocol::{Command, Event, FinishReason, Prompt, SamplingParams, Usage, WorkerError};
use text::{Piece, TextAssembler};

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

/// One generation in progress.
struct Job {
    id: u64,
    prompt: Vec<LlamaToken>,
    sampler: LlamaSampler,
    text: TextAssembler,
    max_tokens: Option<u32>,
    generated: u32,
    /// The token sampled last, not yet in the cache.
    last: Option<LlamaToken>,
    /// Index of this job's logits in the current batch.
    logits_at: Option<i32>,
    cached: u32,
    received: Instant,
    started: Instant,
    prompt_done: Option<Instant>,
}

struct Slot {
    seq: i32,
    /// Tokens whose KV entries are in this slot's sequence, positions 0..len.
    cache: Vec<LlamaToken>,
    job: Option<Job>,
}

/// A request waiting for a slot, already tokenised.
struct Pending {
    id: u64,
    tokens: Vec<LlamaToken>,
    params: SamplingParams,
    received: Instant,
}

struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: Option<LlamaChatTemplate>,
    slots: Vec<Slot>,
    queue: VecDeque<Pending>,
    n_ctx_slot: u32,
    batch_size: usize,
    out: std::io::Stdout,
}

/// Entry point of `appliance worker llm`.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut backend = LlamaBackend::init().context("initialising llama.cpp")?;
    backend.void_logs();
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
    let template = model.chat_template(None).ok();

    let mut worker = Worker {
        model: &model,
        ctx,
        slots: (0..slots as i32)
            .map(|seq| Slot {
                seq,
                cache: Vec::new(),
                job: None,
            })
            .collect(),
        template,
        queue: VecDeque::new(),
        n_ctx_slot,
        batch_size: args.batch as usize,
        out: std::io::stdout(),
    };
    worker.emit(&Event::Ready {
        n_ctx_slot,
        slots,
        n_ctx_train: model.n_ctx_train(),
        load_ms: started.elapsed().as_secs_f64() * 1000.0,
        model_bytes: model.size(),
        chat_template: worker.template.is_some(),
    })?;

    let commands = spawn_stdin_reader();
    worker.serve(commands)
}

/// Reads commands on a thread so the decode loop never blocks on stdin.
fn spawn_stdin_reader() -> mpsc::Receiver<Command> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Command>(&line) {
                    Ok(cmd) => {
                        if tx.send(cmd).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("worker: ignoring malformed command: {e}"),
                }
            }
            // stdin closed: the daemon is gone; finish.
            let _ = tx.send(Command::Shutdown);
        })
        .expect("spawning the stdin thread");
    rx
}

impl<'m> Worker<'m> {
    fn serve(&mut self, commands: mpsc::Receiver<Command>) -> anyhow::Result<()> {
        loop {
            let idle = self.queue.is_empty() && self.slots.iter().all(|s| s.job.is_none());
            let mut incoming = Vec::new();
            if idle {
                match commands.recv() {
                    Ok(cmd) => incoming.push(cmd),
                    Err(_) => return Ok(()),
                }
            }
            incoming.extend(commands.try_iter());
            for cmd in incoming {
                match cmd {
                    Command::Shutdown => return Ok(()),
                    Command::Generate { id, prompt, params } => self.accept(id, prompt, params)?,
                    Command::Count { id, prompt } => match self.tokenize(&prompt) {
                        Ok(tokens) => self.emit(&Event::Counted {
                            id,
                            prompt_tokens: tokens.len() as u32,
                        })?,
                        Err(error) => self.emit(&Event::Failed { id, error })?,
                    },
                    Command::Cancel { id } => self.cancel(id)?,
                }
            }
            self.assign()?;
            self.step()?;
        }
    }

    fn emit(&mut self, event: &Event) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()?;
        Ok(())
    }

    fn tokenize(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, WorkerError> {
        let text = match prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => {
                let template = self.template.as_ref().ok_or(WorkerError::NoChatTemplate)?;
                let chat = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| WorkerError::Invalid {
                        message: format!("a message contains a NUL byte: {e}"),
                    })?;
                self.model
                    .apply_chat_template(template, &chat, true)
                    .map_err(|e| WorkerError::Invalid {
                        message: format!("the chat template failed: {e}"),
                    })?
            }
        };
        // The template already contains any BOS it wants; raw text gets the model's.
        // Special-token text (e.g. `<|im_start|>`) is parsed in both, as llama-server does.
        let add_special = matches!(prompt, Prompt::Text(_));
        let tokens = self
            .model
            .vocab()
            .tokenize(text.as_bytes(), add_special, true);
        if tokens.is_empty() {
            return Err(WorkerError::Invalid {
                message: "the prompt is empty".into(),
            });
        }
        Ok(tokens)
    }

    fn accept(&mut self, id: u64, prompt: Prompt, params: SamplingParams) -> anyhow::Result<()> {
        let received = Instant::now();
        let tokens = match self.tokenize(&prompt) {
            Ok(tokens) => tokens,
            Err(error) => return self.emit(&Event::Failed { id, error }),
        };
        // The prompt must leave room for at least one generated token.
        if tokens.len() as u32 >= self.n_ctx_slot {
            return self.emit(&Event::Failed {
                id,
                error: WorkerError::ContextOverflow {
                    prompt_tokens: tokens.len() as u32,
                    n_ctx: self.n_ctx_slot,
                },
            });
        }
        // Build the sampler now so a bad grammar fails before queueing.
        if let Err(error) = sampler::build(self.model, &params) {
            return self.emit(&Event::Failed { id, error });
        }
        self.queue.push_back(Pending {
            id,
            tokens,
            params,
            received,
        });
        Ok(())
    }

    fn cancel(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(at) = self.queue.iter().position(|p| p.id == id) {
            let pending = self.queue.remove(at).expect("index from position");
            return self.emit(&Event::Done {
                id,
                finish_reason: FinishReason::Cancelled,
                usage: Usage {
                    prompt_tokens: pending.tokens.len() as u32,
                    ..Usage::default()
                },
            });
        }
        if let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.job.as_ref().is_some_and(|j| j.id == id))
        {
            let job = slot.job.take().expect("found above");
            return self.finish(job, FinishReason::Cancelled, String::new());
        }
        Ok(())
    }

    /// Moves queued requests into free slots, choosing the slot whose cache shares the
    /// longest prefix with the prompt, and drops the rest of that slot's cache.
    fn assign(&mut self) -> anyhow::Result<()> {
        while let Some(pending) = self.queue.front() {
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.job.is_none())
                .map(|(i, s)| (common_prefix(&s.cache, &pending.tokens), i))
                .max();
            let Some((mut common, index)) = best else {
                break;
            };
            let pending = self.queue.pop_front().expect("front exists");
            // At least one prompt token must be evaluated to get logits.
            if common == pending.tokens.len() {
                common -= 1;
            }
            let sampler = match sampler::build(self.model, &pending.params) {
                Ok(s) => s,
                Err(error) => {
                    self.emit(&Event::Failed {
                        id: pending.id,
                        error,
                    })?;
                    continue;
                }
            };
            let slot = &mut self.slots[index];
            if self
                .ctx
                .clear_kv_cache_seq(Some(slot.seq as u32), Some(common as u32), None)
                .is_err()
            {
                common = 0;
                let _ = self
                    .ctx
                    .clear_kv_cache_seq(Some(slot.seq as u32), None, None);
            }
            slot.cache.truncate(common);
            let prompt_tokens = pending.tokens.len() as u32;
            slot.job = Some(Job {
                id: pending.id,
                prompt: pending.tokens,
                sampler,
                text: TextAssembler::new(&pending.params.stop),
                max_tokens: pending.params.max_tokens,
                generated: 0,
                last: None,
                logits_at: None,
                cached: common as u32,
                received: pending.received,
                started: Instant::now(),
                prompt_done: None,
            });
            let id = pending.id;
            self.emit(&Event::Started { id, prompt_tokens })?;
        }
        Ok(())
    }

    /// One decode over every busy slot, then one sampled token per slot with logits.
    fn step(&mut self) -> anyhow::Result<()> {
        let mut batch = LlamaBatch::new(self.batch_size, self.slots.len() as i32);
        let mut budget = self.batch_size;
        // Generating slots first: one token each keeps every stream moving.
        for slot in &mut self.slots {
            let Some(job) = slot.job.as_mut() else {
                continue;
            };
            job.logits_at = None;
            if let Some(token) = job.last.take() {
                let pos = slot.cache.len() as i32;
                batch.add(token, pos, &[slot.seq], true)?;
                slot.cache.push(token);
                job.logits_at = Some(batch.n_tokens() - 1);
                budget -= 1;
            }
        }
        // Then prompt chunks with what is left of the batch.
        for slot in &mut self.slots {
            let Some(job) = slot.job.as_mut() else {
                continue;
            };
            if job.prompt_done.is_some() || budget == 0 {
                continue;
            }
            let start = slot.cache.len();
            let end = job.prompt.len().min(start + budget);
            for (i, token) in job.prompt[start..end].iter().enumerate() {
                let last = start + i + 1 == job.prompt.len();
                batch.add(*token, (start + i) as i32, &[slot.seq], last)?;
                slot.cache.push(*token);
            }
            budget -= end - start;
            if end == job.prompt.len() {
                job.logits_at = Some(batch.n_tokens() - 1);
            }
        }
        if batch.n_tokens() == 0 {
            return Ok(());
        }
        if let Err(e) = self.ctx.decode(&mut batch) {
            // Fail every job in this batch; their slots' caches are no longer known.
            for index in 0..self.slots.len() {
                if let Some(job) = self.slots[index].job.take() {
                    let seq = self.slots[index].seq as u32;
                    self.slots[index].cache.clear();
                    let _ = self.ctx.clear_kv_cache_seq(Some(seq), None, None);
                    self.emit(&Event::Failed {
                        id: job.id,
                        error: WorkerError::Decode {
                            message: e.to_string(),
                        },
                    })?;
                }
            }
            return Ok(());
        }
        for index in 0..self.slots.len() {
            self.sample_slot(index)?;
        }
        Ok(())
    }

    fn sample_slot(&mut self, index: usize) -> anyhow::Result<()> {
        let n_ctx_slot = self.n_ctx_slot as usize;
        let slot = &mut self.slots[index];
        let Some(job) = slot.job.as_mut() else {
            return Ok(());
        };
        let Some(at) = job.logits_at else {
            return Ok(());
        };
        if job.prompt_done.is_none() {
            job.prompt_done = Some(Instant::now());
        }
        let token = job.sampler.sample(&self.ctx, at);
        let vocab = self.model.vocab();
        if vocab.is_eog(token) {
            let job = slot.job.take().expect("checked above");
            return self.finish(job, FinishReason::Stop, String::new());
        }
        job.generated += 1;
        let bytes = vocab.token_to_piece(token, false, None);
        let piece = job.text.push(&bytes);
        let id = job.id;
        let text = match piece {
            Piece::Stopped(before) => {
                let job = slot.job.take().expect("checked above");
                return self.finish(job, FinishReason::Stop, before);
            }
            Piece::Text(text) => text,
        };
        let at_limit = job.max_tokens.is_some_and(|max| job.generated >= max)
            || slot.cache.len() + 1 >= n_ctx_slot;
        if at_limit {
            let job = slot.job.take().expect("checked above");
            return self.finish(job, FinishReason::Length, text);
        }
        job.last = Some(token);
        if !text.is_empty() {
            self.emit(&Event::Token { id, text })?;
        }
        Ok(())
    }

    fn finish(&mut self, mut job: Job, reason: FinishReason, text: String) -> anyhow::Result<()> {
        let mut text = text;
        if reason != FinishReason::Cancelled {
            text.push_str(&job.text.finish());
        }
        if !text.is_empty() {
            self.emit(&Event::Token { id: job.id, text })?;
        }
        let now = Instant::now();
        let prompt_done = job.prompt_done.unwrap_or(now);
        let usage = Usage {
            prompt_tokens: job.prompt.len() as u32,
            cached_tokens: job.cached,
            completion_tokens: job.generated,
            prompt_ms: ms(prompt_done - job.started),
            generation_ms: ms(now - prompt_done),
            queue_ms: ms(job.started - job.received),
        };
        self.emit(&Event::Done {
            id: job.id,
            finish_reason: reason,
            usage,
        })
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
