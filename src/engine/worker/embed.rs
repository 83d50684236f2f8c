//! The embedding worker process (`appliance worker embed`): one sentence-embedding
//! model (a BERT encoder such as all-MiniLM-L6-v2, through candle) that turns texts
//! into unit-length vectors.
//!
//! Texts are tokenised one by one (no tokenizer-side padding or truncation: the
//! published tokenizer of MiniLM pads everything to 128 tokens, which would swamp the
//! mean), sorted by length and run in batches padded only to the longest text in the
//! batch. The vector of a text is the mean of its token states under the attention
//! mask, L2-normalised, as sentence-transformers computes it.
//!
//! A text longer than the model's positions is cut to fit only when the request asks
//! for it (Ollama's `truncate`); otherwise the request fails naming the text. The same
//! [`Embedder`] runs in-process for tests and benchmarks.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

use super::bert::{Config, Encoder};
use super::bert_cpu::CpuEncoder;
use super::{emit, read_commands};
use crate::engine::protocol::{Command, Event, PROTOCOL_VERSION, WorkerError};

/// Texts per forward pass.
const BATCH: usize = 32;
/// Largest model this worker accepts (a config is input too).
const MAX_HIDDEN: usize = 4096;
const MAX_LAYERS: usize = 48;
const MAX_POSITIONS: usize = 8192;

/// How the daemon starts an embedding worker.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedArgs {
    /// The model directory (`config.json`, `tokenizer.json`, `model.safetensors`).
    #[arg(long)]
    pub model: PathBuf,
    /// Run on the first GPU (the scheduler placed it there; CUDA builds only).
    #[arg(long)]
    pub gpu: bool,
}

/// A loaded sentence-embedding model.
pub struct Embedder {
    model: Model,
    tokenizer: Tokenizer,
    device: Device,
    /// Tokens per text, special tokens included.
    max_tokens: usize,
    dimensions: usize,
    /// Bytes of weights.
    model_bytes: u64,
}

/// The network, on the device it runs on.
enum Model {
    /// On the CPU: plain buffers and fused kernels.
    Cpu(CpuEncoder),
    /// On a GPU: candle's tensors.
    Candle(Encoder),
}

/// The vectors of one request.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// One unit vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens in all inputs (after any truncation).
    pub tokens: u32,
}

impl Embedder {
    /// Loads the model in `dir` on the CPU, or in a build with CUDA embeddings on the
    /// first GPU when there is one (see `device`).
    pub fn load(dir: &Path, gpu: bool) -> anyhow::Result<Embedder> {
        let device = if gpu { device() } else { Device::Cpu };
        Embedder::load_on(dir, device, false)
    }

    /// Loads the model on `device`, through candle even on the CPU when `candle`.
    fn load_on(dir: &Path, device: Device, candle: bool) -> anyhow::Result<Embedder> {
        let config_text = fs_err::read_to_string(dir.join("config.json"))?;
        let config: Config =
            serde_json::from_str(&config_text).context("config.json is not a BERT config")?;
        if config.hidden_size == 0
            || config.hidden_size > MAX_HIDDEN
            || config.num_hidden_layers == 0
            || config.num_hidden_layers > MAX_LAYERS
            || config.max_position_embeddings < 8
            || config.max_position_embeddings > MAX_POSITIONS
        {
            bail!("config.json describes a model outside this worker's limits");
        }
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| anyhow!("tokenizer.json: {e}"))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow!("tokenizer.json: {e}"))?;
        let weights = fs_err::read(dir.join("model.safetensors"))?;
        let model_bytes = weights.len() as u64;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
        let encoder = Encoder::load(vb, &config).context("loading the BERT weights")?;
        let model = if device.is_cpu() && !candle {
            Model::Cpu(CpuEncoder::new(&encoder).context("loading the BERT weights")?)
        } else {
            Model::Candle(encoder)
        };
        Ok(Embedder {
            model,
            tokenizer,
            device,
            max_tokens: config.max_position_embeddings,
            dimensions: config.hidden_size,
            model_bytes,
        })
    }

    /// Tokens one text may have, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Length of every vector.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Tokens of `text` as the model sees them (special tokens included), for chunking.
    pub fn count_tokens(&self, text: &str) -> anyhow::Result<usize> {
        Ok(self.encode(text)?.len())
    }

    /// Byte offsets (start, end) in `text` of each token, special tokens excluded: what
    /// a chunker needs to cut text at token boundaries.
    pub fn token_offsets(&self, text: &str) -> anyhow::Result<Vec<(usize, usize)>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(encoding.get_offsets().to_vec())
    }

    fn encode(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Embeds `texts`. A text over [`Embedder::max_tokens`] is cut (keeping its final
    /// separator token) when `truncate`, else the call fails with `InputTooLong`.
    pub fn embed(&self, texts: &[String], truncate: bool) -> Result<Embeddings, WorkerError> {
        let mut encoded = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let mut ids = self.encode(text).map_err(|e| WorkerError::Invalid {
                message: format!("input {index} could not be tokenized: {e}"),
            })?;
            if ids.len() > self.max_tokens {
                if !truncate {
                    return Err(WorkerError::InputTooLong {
                        index: index as u32,
                        tokens: ids.len() as u32,
                        limit: self.max_tokens as u32,
                    });
                }
                let last = ids[ids.len() - 1];
                ids.truncate(self.max_tokens - 1);
                ids.push(last);
            }
            encoded.push(ids);
        }
        let tokens = encoded.iter().map(Vec::len).sum::<usize>() as u32;
        // Similar lengths together: less padding per batch.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut vectors = vec![Vec::new(); encoded.len()];
        for group in order.chunks(BATCH) {
            let batch: Vec<&[u32]> = group.iter().map(|&i| encoded[i].as_slice()).collect();
            let out = match &self.model {
                Model::Cpu(model) => model.embed(&batch),
                Model::Candle(model) => self.forward(model, &batch).map_err(anyhow::Error::from),
            }
            .map_err(|e| WorkerError::Decode {
                message: format!("the embedding model failed: {e}"),
            })?;
            for (&i, vector) in group.iter().zip(out) {
                vectors[i] = vector;
            }
        }
        Ok(Embeddings { vectors, tokens })
    }

    /// One padded batch → mean-pooled, normalised vectors, through candle.
    fn forward(&self, model: &Encoder, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let longest = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(batch.len() * longest);
        let mut mask = Vec::with_capacity(batch.len() * longest);
        for row in batch {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(0u32, longest - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - row.len()));
        }
        let shape = (batch.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let states = model.forward(&ids, &mask)?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = states.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}

/// The GPU device when the scheduler placed the model there (`--gpu`). In a build with
/// CUDA embeddings (the `cuda` or `embed-cuda` feature) that is the first GPU when its
/// driver answers, else the CPU; in the default build always the CPU.
fn device() -> Device {
    #[cfg(feature = "embed-cuda")]
    match Device::new_cuda(0) {
        Ok(gpu) => return gpu,
        Err(e) => eprintln!("embedding worker: no CUDA device ({e}); running on the CPU"),
    }
    Device::Cpu
}

/// Keeps freed tensor buffers in the heap for the next batch. glibc returns every
/// allocation over its mmap threshold (at most 32 MiB) to the kernel when freed, so each
/// of a batch's activations (tens of MiB) was mapped afresh and page-faulted in: about a
/// tenth of the worker's time in a profile. The process exits when the model unloads,
/// which is when its memory goes back.
fn reuse_large_buffers() {
    // SAFETY: mallopt only changes allocator thresholds; it is called before any other
    // thread of this process starts.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Entry point of `appliance worker embed`.
pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    reuse_large_buffers();
    let started = Instant::now();
    let embedder = Embedder::load(&args.model, args.gpu)
        .with_context(|| format!("loading the embedding model in {}", args.model.display()))?;
    emit(&Event::Ready {
        protocol: PROTOCOL_VERSION,
        n_ctx_slot: embedder.max_tokens as u32,
        slots: 1,
        n_ctx_train: embedder.max_tokens as u32,
        load_ms: started.elapsed().as_secs_f64() * 1000.0,
        model_bytes: embedder.model_bytes,
        chat_template: false,
    })?;

    let rx = read_commands()?;

    let mut pending: VecDeque<(u64, Vec<String>, bool)> = VecDeque::new();
    let mut cancelled: HashSet<u64> = HashSet::new();
    loop {
        // Take everything that has arrived (cancels included) before the next request,
        // blocking only when there is nothing to do.
        let mut next = if pending.is_empty() {
            match rx.recv() {
                Ok(command) => Some(command),
                Err(_) => return Ok(()),
            }
        } else {
            rx.try_recv().ok()
        };
        while let Some(command) = next.take() {
            match command {
                Command::Embed {
                    id,
                    inputs,
                    truncate,
                } => pending.push_back((id, inputs, truncate)),
                Command::Cancel { id } => {
                    cancelled.insert(id);
                }
                Command::Shutdown => return Ok(()),
                Command::Generate { id, .. }
                | Command::Count { id, .. }
                | Command::Transcribe { id, .. } => {
                    emit(&Event::Failed {
                        id,
                        error: WorkerError::Invalid {
                            message: "this model makes embeddings; it cannot generate text or transcribe audio".into(),
                        },
                    })?;
                }
            }
            next = rx.try_recv().ok();
        }
        // A cancel for a request already answered is forgotten here.
        cancelled.retain(|id| pending.iter().any(|(p, _, _)| p == id));
        let Some((id, inputs, truncate)) = pending.pop_front() else {
            continue;
        };
        if cancelled.remove(&id) {
            continue;
        }
        let event = match embedder.embed(&inputs, truncate) {
            Ok(out) => Event::Embedded {
                id,
                embeddings: out.vectors,
                prompt_tokens: out.tokens,
            },
            Err(error) => Event::Failed { id, error },
        };
        emit(&event)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir() -> PathBuf {
        let dir = crate::models::test_models_dir().join("all-MiniLM-L6-v2");
        assert!(
            dir.join("model.safetensors").is_file(),
            "{} is missing: run scripts/fetch-models (or set TEST_MODELS_DIR)",
            dir.display()
        );
        dir
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn the_cpu_kernels_and_candle_give_the_same_vectors() {
        let dir = model_dir();
        let fused = Embedder::load(&dir, false).expect("the CPU model loads");
        assert!(matches!(fused.model, Model::Cpu(_)));
        let candle = Embedder::load_on(&dir, Device::Cpu, true).expect("the candle model loads");
        // Lengths from 3 tokens to past the model's 512 positions (truncated), in one
        // call, so that batches mix lengths and the packing is exercised; 40 texts make
        // two batches.
        let mut texts: Vec<String> = (0..40)
            .map(|i| "The quarterly report was reviewed again. ".repeat(1 + i % 7 * (i % 5)))
            .collect();
        texts.push("ok".into());
        texts.push("word ".repeat(700));
        texts.push("The cat sits on the mat.".into());
        let a = fused.embed(&texts, true).expect("fused");
        let b = candle.embed(&texts, true).expect("candle");
        assert_eq!(a.tokens, b.tokens);
        for (i, (x, y)) in a.vectors.iter().zip(&b.vectors).enumerate() {
            assert_eq!(x.len(), 384);
            let largest = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(
                largest < 1e-4,
                "text {i}: vectors differ by up to {largest}"
            );
        }
        // The reference values of ../shared/models.md.
        let cat = &a.vectors[texts.len() - 1];
        for (got, want) in cat
            .iter()
            .zip([0.13418, -0.03290, -0.02480, 0.04144, -0.03635])
        {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
        let more = fused
            .embed(
                &[
                    "A kitten is resting on a rug.".into(),
                    "Quarterly revenue grew by ten percent.".into(),
                ],
                false,
            )
            .expect("embeds");
        assert!((cosine(cat, &more.vectors[0]) - 0.6411).abs() < 1e-3);
        assert!((cosine(cat, &more.vectors[1]) + 0.0272).abs() < 1e-3);
    }
}
