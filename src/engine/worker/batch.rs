//! The decode loop: continuous batching over the slots of one llama.cpp context.
//!
//! Every iteration builds one batch holding, for each busy slot, either its next chunk
//! of prompt or its last sampled token, decodes it once, then samples one token for
//! every slot that produced logits. New requests join at the next iteration, finished
//! ones leave, without waiting for each other.
//!
//! Prefix reuse: each slot remembers the tokens whose keys/values are in its part of
//! the cache. A new request goes to the free slot sharing the longest prefix with its
//! prompt, and only the rest of the prompt is evaluated.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;

use super::sampler::Chain;
use super::text::{Piece, TextAssembler};
use super::{Input, emit};
use crate::engine::protocol::{
    Event, FinishReason, MAX_TOP_LOGPROBS, SamplingParams, TokenLogprob, TokenProb, Usage,
    WorkerError,
};

/// Early cancels remembered at most.
const MAX_EARLY_CANCELS: usize = 1024;

/// A request ready for a slot, already tokenized and checked.
pub(super) struct Pending {
    pub(super) id: u64,
    pub(super) tokens: Vec<LlamaToken>,
    pub(super) params: SamplingParams,
    pub(super) received: Instant,
}

/// One generation in progress.
struct Job {
    id: u64,
    prompt: Vec<LlamaToken>,
    chain: Chain,
    text: TextAssembler,
    max_tokens: Option<u32>,
    /// Prompt + generated tokens this request may occupy.
    limit: usize,
    generated: u32,
    /// The token sampled last, not yet in the cache.
    last: Option<LlamaToken>,
    /// Index of this job's logits in the current batch.
    logits_at: Option<i32>,
    cached: u32,
    received: Instant,
    started: Instant,
    prompt_done: Option<Instant>,
    /// Alternatives to report per token, when log probabilities were asked for.
    logprobs: Option<u32>,
    /// Log probabilities of tokens whose text has not been sent yet.
    pending_logprobs: Vec<TokenLogprob>,
}

struct Slot {
    seq: i32,
    /// Tokens whose KV entries are in this slot's sequence, positions 0..len.
    cache: Vec<LlamaToken>,
    job: Option<Job>,
}

pub(super) struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    /// Control tokens that open or close a tool call (`[TOOL_CALLS]`,
    /// `<|python_tag|>`): written out as text, since the daemon reads calls by them.
    call_markers: Vec<LlamaToken>,
    slots: Vec<Slot>,
    queue: VecDeque<Pending>,
    /// Cancels that arrived while their request was still being prepared (bounded:
    /// one for a request that already finished is never claimed).
    cancelled_early: VecDeque<u64>,
    n_ctx_slot: u32,
    batch_size: usize,
    /// Candidate buffer reused by every sampling step.
    scratch: LlamaTokenDataArray,
    /// The decode batch, reused by every step.
    batch: LlamaBatch<'static>,
}

impl<'m> Worker<'m> {
    pub(super) fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        slots: u32,
        n_ctx_slot: u32,
        batch_size: usize,
    ) -> Worker<'m> {
        let vocab = model.vocab();
        let call_markers = vocab
            .tokens()
            .filter(|t| vocab.is_control(*t))
            .filter(|t| {
                vocab
                    .text(*t)
                    .and_then(|c| c.to_str().ok())
                    .is_some_and(|text| {
                        matches!(
                            text,
                            "[TOOL_CALLS]" | "<|python_tag|>" | "<tool_call>" | "</tool_call>"
                        )
                    })
            })
            .collect();
        Worker {
            model,
            ctx,
            call_markers,
            slots: (0..slots as i32)
                .map(|seq| Slot {
                    seq,
                    cache: Vec::new(),
                    job: None,
                })
                .collect(),
            queue: VecDeque::new(),
            cancelled_early: VecDeque::new(),
            n_ctx_slot,
            batch_size,
            scratch: LlamaTokenDataArray::new(Vec::new(), false),
            batch: LlamaBatch::new(batch_size, slots as i32),
        }
    }

    pub(super) fn serve(&mut self, inputs: mpsc::Receiver<Input>) -> anyhow::Result<()> {
        loop {
            let idle = self.queue.is_empty() && self.slots.iter().all(|s| s.job.is_none());
            let mut incoming = Vec::new();
            if idle {
                match inputs.recv() {
                    Ok(input) => incoming.push(input),
                    Err(_) => return Ok(()),
                }
            }
            incoming.extend(inputs.try_iter());
            for input in incoming {
                match input {
                    Input::Shutdown => return Ok(()),
                    Input::Prepared(pending) => {
                        if self.claim_early_cancel(pending.id) {
                            emit(&cancelled(pending.id, pending.tokens.len()))?;
                        } else {
                            self.queue.push_back(*pending);
                        }
                    }
                    Input::Settled(id) => {
                        self.claim_early_cancel(id);
                    }
                    Input::Cancel(id) => self.cancel(id)?,
                }
            }
            self.assign()?;
            self.step()?;
        }
    }

    fn cancel(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(at) = self.queue.iter().position(|p| p.id == id) {
            let pending = self.queue.remove(at).expect("index from position");
            return emit(&cancelled(id, pending.tokens.len()));
        }
        if let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.job.as_ref().is_some_and(|j| j.id == id))
        {
            let job = slot.job.take().expect("found above");
            return finish(job, FinishReason::Cancelled, String::new());
        }
        // Still being prepared (or already finished): remembered until it passes by.
        if self.cancelled_early.len() >= MAX_EARLY_CANCELS {
            self.cancelled_early.pop_front();
        }
        self.cancelled_early.push_back(id);
        Ok(())
    }

    fn claim_early_cancel(&mut self, id: u64) -> bool {
        match self.cancelled_early.iter().position(|c| *c == id) {
            Some(at) => {
                self.cancelled_early.remove(at);
                true
            }
            None => false,
        }
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
            let chain = match Chain::build(self.model, &pending.params, self.n_ctx_slot) {
                Ok(chain) => chain,
                Err(error) => {
                    emit(&Event::Failed {
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
            let limit = pending
                .params
                .max_context
                .map_or(self.n_ctx_slot, |n| n.min(self.n_ctx_slot))
                as usize;
            slot.job = Some(Job {
                id: pending.id,
                prompt: pending.tokens,
                chain,
                text: TextAssembler::new(&pending.params.stop),
                max_tokens: pending.params.max_tokens,
                limit,
                generated: 0,
                last: None,
                logits_at: None,
                cached: common as u32,
                received: pending.received,
                started: Instant::now(),
                prompt_done: None,
                logprobs: pending.params.logprobs,
                pending_logprobs: Vec::new(),
            });
            emit(&Event::Started {
                id: pending.id,
                prompt_tokens,
            })?;
        }
        Ok(())
    }

    /// One decode over every busy slot, then one sampled token per slot with logits.
    fn step(&mut self) -> anyhow::Result<()> {
        let batch = &mut self.batch;
        batch.clear();
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
        if let Err(e) = self.ctx.decode(batch) {
            // Fail every job in this batch; their slots' caches are no longer known.
            eprintln!("worker: decode failed: {e}");
            for index in 0..self.slots.len() {
                if let Some(job) = self.slots[index].job.take() {
                    let seq = self.slots[index].seq as u32;
                    self.slots[index].cache.clear();
                    let _ = self.ctx.clear_kv_cache_seq(Some(seq), None, None);
                    emit(&Event::Failed {
                        id: job.id,
                        error: WorkerError::Decode {
                            message: "llama.cpp could not decode the batch".into(),
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
        let token = match job.chain.sample(&self.ctx, at, &mut self.scratch) {
            Ok(token) => token,
            Err(error) => {
                // This request's constraint is at a dead end; only it ends.
                let job = slot.job.take().expect("checked above");
                return emit(&Event::Failed { id: job.id, error });
            }
        };
        let vocab = self.model.vocab();
        if vocab.is_eog(token) {
            let job = slot.job.take().expect("checked above");
            return finish(job, FinishReason::Stop, String::new());
        }
        job.generated += 1;
        if let Some(top) = job.logprobs {
            let entry = logprob(self.model, self.ctx.get_logits_ith(at), token, top);
            job.pending_logprobs.push(entry);
        }
        let marker = self.call_markers.contains(&token);
        let bytes = vocab.token_to_piece(token, marker, None);
        let piece = job.text.push(&bytes);
        let id = job.id;
        let text = match piece {
            Piece::Stopped(before) => {
                let job = slot.job.take().expect("checked above");
                return finish(job, FinishReason::Stop, before);
            }
            Piece::Text(text) => text,
        };
        let at_limit = job.max_tokens.is_some_and(|max| job.generated >= max)
            || slot.cache.len() + 1 >= job.limit;
        if at_limit {
            let job = slot.job.take().expect("checked above");
            return finish(job, FinishReason::Length, text);
        }
        job.last = Some(token);
        if !text.is_empty() {
            let logprobs = std::mem::take(&mut job.pending_logprobs);
            emit(&Event::Token { id, text, logprobs })?;
        }
        Ok(())
    }
}

/// The log probability of `token` under `logits` (a log-softmax over the whole
/// vocabulary, before any sampling setting), with the `top` most likely tokens.
fn logprob(model: &LlamaModel, logits: &[f32], token: LlamaToken, top: u32) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|l| f64::from(l - max).exp()).sum();
    let log_total = f64::from(max) + sum.ln();
    let prob = |t: LlamaToken| {
        let bytes = model.vocab().token_to_piece(t, false, None);
        let logit = logits
            .get(t.0 as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY);
        TokenProb {
            token: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            // Finite always (JSON has no infinities); OpenAI's floor for "impossible".
            logprob: ((f64::from(logit) - log_total) as f32).max(-9999.0),
        }
    };
    // The `top` largest logits, by a bounded insertion (top ≤ 20).
    let k = top.min(MAX_TOP_LOGPROBS) as usize;
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < k || l > best[best.len() - 1].0 {
                let at = best.partition_point(|(b, _)| *b >= l);
                best.insert(at, (l, i));
                best.truncate(k);
            }
        }
    }
    TokenLogprob {
        chosen: prob(token),
        top: best
            .into_iter()
            .map(|(_, i)| prob(LlamaToken(i as i32)))
            .collect(),
    }
}

fn cancelled(id: u64, prompt_tokens: usize) -> Event {
    Event::Done {
        id,
        finish_reason: FinishReason::Cancelled,
        usage: Usage {
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
            ..Usage::default()
        },
    }
}

fn finish(mut job: Job, reason: FinishReason, text: String) -> anyhow::Result<()> {
    let mut text = text;
    if reason != FinishReason::Cancelled {
        text.push_str(&job.text.finish());
    }
    if !text.is_empty() {
        let logprobs = std::mem::take(&mut job.pending_logprobs);
        emit(&Event::Token {
            id: job.id,
            text,
            logprobs,
        })?;
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
    emit(&Event::Done {
        id: job.id,
        finish_reason: reason,
        usage,
    })
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
