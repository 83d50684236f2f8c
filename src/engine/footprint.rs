//! How much memory a model needs where: the estimate every load carries.
//!
//! A chat model's estimate comes from its GGUF header: the bytes of each repeating
//! layer's tensors (`blk.N.*`), the output head, the KV cache for the configured context
//! and slots (f16 keys and values, per layer), the compute buffers llama.cpp reserves
//! for one micro-batch, and the CUDA context every GPU process pays. llama.cpp offloads
//! the *last* `n` repeating layers and, once all of them are on the GPU, the output
//! head; the token embeddings stay in host memory. Embedding and speech models move to
//! the GPU whole or not at all (one unit).
//!
//! Estimates are deliberately simple and a little pessimistic; the scheduler measures
//! the real use through NVML after each load and corrects them ([`Footprint::adjusted`]).

use std::path::Path;

use serde::Serialize;

use super::ModelKind;
use crate::models::gguf::{GgufHeader, MetaValue, read_header};

/// What every process that uses CUDA pays before its first tensor: the context, the
/// kernels it loads lazily, cuBLAS's workspace.
pub const CUDA_CONTEXT_BYTES: u64 = 384 << 20;
/// Tokens per micro-batch the chat worker decodes (its `--batch`).
pub const UBATCH: u64 = 512;

/// One model's memory needs, split into the units that can move to the GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Footprint {
    /// What runs it.
    pub kind: ModelKind,
    /// GPU bytes of each offloadable unit, in the order they are offloaded.
    pub units: Vec<u64>,
    /// GPU bytes needed as soon as anything is offloaded (compute buffers, context).
    pub fixed_gpu_bytes: u64,
    /// Host bytes with nothing offloaded (weights, KV cache, buffers).
    pub host_bytes: u64,
}

/// The settings an estimate depends on.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Context tokens per request.
    pub ctx_per_slot: u32,
    /// Parallel sequences.
    pub slots: u32,
}

impl Footprint {
    /// Units that can be offloaded (a chat model: its layers plus the output head).
    pub fn total_layers(&self) -> u32 {
        self.units.len() as u32
    }

    /// GPU bytes with the first `layers` units offloaded.
    pub fn gpu_bytes(&self, layers: u32) -> u64 {
        let layers = (layers as usize).min(self.units.len());
        if layers == 0 {
            return 0;
        }
        self.units[..layers]
            .iter()
            .fold(self.fixed_gpu_bytes, |a, b| a.saturating_add(*b))
    }

    /// Host bytes with `layers` units offloaded.
    pub fn host_bytes(&self, layers: u32) -> u64 {
        let layers = (layers as usize).min(self.units.len());
        let moved = self.units[..layers]
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b));
        self.host_bytes.saturating_sub(moved)
    }

    /// The most units whose GPU bytes fit in `budget` (0: none fit, run on the CPU).
    pub fn layers_within(&self, budget: u64) -> u32 {
        let mut used = self.fixed_gpu_bytes;
        let mut layers = 0;
        for unit in &self.units {
            used = used.saturating_add(*unit);
            if used > budget {
                break;
            }
            layers += 1;
        }
        layers
    }

    /// The same footprint with `delta` bytes added to what any offload needs (a
    /// correction learned from a measurement: the measured use minus the estimate),
    /// never below nothing.
    pub fn adjusted(&self, delta: i64) -> Footprint {
        let fixed = if delta >= 0 {
            self.fixed_gpu_bytes.saturating_add(delta as u64)
        } else {
            self.fixed_gpu_bytes.saturating_sub(delta.unsigned_abs())
        };
        Footprint {
            fixed_gpu_bytes: fixed,
            ..self.clone()
        }
    }

    /// A footprint for tests and hardware seams: `units` layers of `unit` bytes.
    pub fn uniform(kind: ModelKind, units: u32, unit: u64, fixed: u64) -> Footprint {
        Footprint {
            kind,
            units: vec![unit; units as usize],
            fixed_gpu_bytes: fixed,
            host_bytes: unit * u64::from(units) + fixed,
        }
    }
}

/// Why an estimate could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot estimate the memory of {path}: {reason}")]
pub struct EstimateError {
    path: String,
    reason: String,
}

/// Estimates a model from its files (blocking: reads headers and sizes).
pub fn estimate(kind: ModelKind, path: &Path, shape: Shape) -> Result<Footprint, EstimateError> {
    let fail = |reason: String| EstimateError {
        path: path.display().to_string(),
        reason,
    };
    match kind {
        ModelKind::Chat => {
            let header = read_header(path).map_err(|e| fail(e.to_string()))?;
            chat(&header, shape).ok_or_else(|| fail("the header lacks layer counts".into()))
        }
        ModelKind::Embedding => {
            let bytes = dir_bytes(path, "safetensors").map_err(fail)?;
            // Weights as stored (f32), plus activations of one batch.
            Ok(whole(kind, bytes, 96 << 20))
        }
        ModelKind::Speech => {
            let bytes = fs_err::metadata(path)
                .map_err(|e| fail(e.to_string()))?
                .len();
            // whisper.cpp's state per parallel decoder: KV caches and compute buffers,
            // roughly a quarter of the weights plus a constant.
            let state = bytes / 4 + (64 << 20);
            Ok(whole(kind, bytes, state * u64::from(shape.slots.max(1))))
        }
    }
}

/// A model that moves as one unit.
fn whole(kind: ModelKind, weights: u64, buffers: u64) -> Footprint {
    Footprint {
        kind,
        units: vec![weights + buffers],
        fixed_gpu_bytes: CUDA_CONTEXT_BYTES,
        host_bytes: weights + buffers,
    }
}

/// The largest value any dimension of a real model has; headers beyond it are refused
/// rather than trusted (a hostile file must not size an allocation).
const MAX_DIM: u64 = 1 << 24;
/// The most repeating layers a real model has.
const MAX_LAYERS: u64 = 4096;

/// A chat model's footprint from its GGUF header (`None` when the header lacks the
/// counts or carries impossible ones). All arithmetic saturates: a footprint is an
/// estimate, never a panic.
pub fn chat(header: &GgufHeader, shape: Shape) -> Option<Footprint> {
    let dim = |suffix: &str| {
        header
            .arch_int(suffix)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n <= MAX_DIM)
    };
    let layers =
        dim("block_count").filter(|n| *n <= MAX_LAYERS && *n as usize <= header.tensors.len())?;
    let n_embd = dim("embedding_length")?;
    let n_head = dim("attention.head_count")?.max(1);
    let n_head_kv = dim("attention.head_count_kv").unwrap_or(n_head);
    let key_len = dim("attention.key_length").unwrap_or(n_embd / n_head);
    let value_len = dim("attention.value_length").unwrap_or(n_embd / n_head);
    let n_ff = dim("feed_forward_length").unwrap_or(4 * n_embd);
    let tensor = |name: &str| header.tensors.iter().find(|t| t.name == name);
    let n_vocab = header
        .metadata
        .get("tokenizer.ggml.tokens")
        .and_then(|v| match v {
            MetaValue::Array { len, .. } => Some(*len),
            _ => None,
        })
        .or_else(|| tensor("token_embd.weight").and_then(|t| t.dims.get(1).copied()))
        .unwrap_or(32_000)
        .min(MAX_DIM);
    let mul = |factors: &[u64]| factors.iter().fold(1u64, |a, b| a.saturating_mul(*b));

    let context = mul(&[
        u64::from(shape.ctx_per_slot.max(1)),
        u64::from(shape.slots.max(1)),
    ]);
    let kv_per_layer = mul(&[context, key_len.saturating_add(value_len), n_head_kv, 2]);
    let mut per_layer = vec![0u64; layers as usize];
    for t in &header.tensors {
        let Some(rest) = t.name.strip_prefix("blk.") else {
            continue;
        };
        let index = rest.split('.').next().and_then(|n| n.parse::<usize>().ok());
        if let Some(slot) = index.and_then(|i| per_layer.get_mut(i)) {
            *slot = slot.saturating_add(t.size);
        }
    }
    let embeddings = tensor("token_embd.weight").map_or(0, |t| t.size);
    let logits = mul(&[4, UBATCH, n_vocab]);
    // Tied embeddings: llama.cpp gives the output head its own copy of them.
    let output = tensor("output.weight")
        .map_or(embeddings, |t| t.size)
        .saturating_add(tensor("output_norm.weight").map_or(0, |t| t.size))
        // The logits of one micro-batch live with the head.
        .saturating_add(logits);
    // Activations of one micro-batch through a layer (f32), with flash attention.
    let compute = mul(&[4, UBATCH, (3 * n_ff).saturating_add(8 * n_embd)]);
    // Offload order: the last layer first, the output head once every layer is there.
    let mut units: Vec<u64> = per_layer
        .iter()
        .rev()
        .map(|w| w.saturating_add(kv_per_layer))
        .collect();
    units.push(output);
    let weights = header
        .tensors
        .iter()
        .fold(0u64, |a, t| a.saturating_add(t.size));
    Some(Footprint {
        kind: ModelKind::Chat,
        host_bytes: weights
            .saturating_add(kv_per_layer.saturating_mul(layers))
            .saturating_add(compute)
            .saturating_add(logits),
        units,
        fixed_gpu_bytes: CUDA_CONTEXT_BYTES.saturating_add(compute),
    })
}

/// Bytes of the files with `extension` directly inside `dir`.
fn dir_bytes(dir: &Path, extension: &str) -> Result<u64, String> {
    let mut total = 0;
    for entry in fs_err::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == extension) {
            total += entry.metadata().map_err(|e| e.to_string())?.len();
        }
    }
    if total == 0 {
        return Err(format!("no .{extension} file"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_within_is_the_inverse_of_gpu_bytes() {
        let f = Footprint::uniform(ModelKind::Chat, 10, 100, 50);
        assert_eq!(f.gpu_bytes(0), 0);
        assert_eq!(f.gpu_bytes(1), 150);
        assert_eq!(f.gpu_bytes(10), 1050);
        assert_eq!(f.gpu_bytes(99), 1050);
        for budget in [0, 49, 149, 150, 151, 549, 550, 1049, 1050, 5000] {
            let n = f.layers_within(budget);
            assert!(f.gpu_bytes(n) <= budget || n == 0, "budget {budget}: {n}");
            assert!(
                n == 10 || f.gpu_bytes(n + 1) > budget,
                "budget {budget}: {n}"
            );
        }
        assert_eq!(f.host_bytes(4), f.host_bytes - 400);
    }

    #[test]
    fn a_correction_moves_what_any_offload_needs() {
        let f = Footprint::uniform(ModelKind::Chat, 2, 100, 50);
        assert_eq!(f.adjusted(75).gpu_bytes(2), 325);
        assert_eq!(f.adjusted(75).gpu_bytes(1), 225);
        assert_eq!(f.adjusted(-500).gpu_bytes(2), 200);
        assert_eq!(f.adjusted(75).gpu_bytes(0), 0);
        assert_eq!(f.adjusted(75).host_bytes, f.host_bytes);
    }

    #[test]
    fn impossible_headers_give_no_estimate_rather_than_a_huge_one() {
        use crate::models::gguf::{GgufHeader, MetaValue, TensorInfo};
        let mut header = GgufHeader {
            version: 3,
            metadata: [
                (
                    "general.architecture".to_string(),
                    MetaValue::Str("llama".into()),
                ),
                ("llama.block_count".to_string(), MetaValue::Int(1 << 40)),
                ("llama.embedding_length".to_string(), MetaValue::Int(64)),
                ("llama.attention.head_count".to_string(), MetaValue::Int(4)),
            ]
            .into_iter()
            .collect(),
            tensors: vec![TensorInfo {
                name: "blk.0.attn_q.weight".into(),
                dims: vec![64, 64],
                ggml_type: 0,
                offset: 0,
                size: u64::MAX,
            }],
            data_offset: 0,
            file_size: 0,
        };
        let shape = Shape {
            ctx_per_slot: u32::MAX,
            slots: u32::MAX,
        };
        assert!(chat(&header, shape).is_none());
        header
            .metadata
            .insert("llama.block_count".into(), MetaValue::Int(1));
        let f = chat(&header, shape).expect("saturated, not panicked");
        assert_eq!(f.gpu_bytes(2), u64::MAX);
    }
}
