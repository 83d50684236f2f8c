//! The BERT encoder of the embedding worker, on candle tensors.
//!
//! candle-transformers' `BertModel` computes attention's softmax as five whole-tensor
//! passes and GELU one element at a time on the calling thread, so on the CPU most of a
//! batch ran on one core while the matrix products' threads waited (measured: the main
//! thread at 100 %, the pool at a third). This encoder is the same network, reading the
//! same weights, built from the kernels that use every thread: candle's fused
//! `softmax_last_dim` and `layer_norm`, GELU (erf) as a parallel custom op, query, key
//! and value as one matrix product, weights transposed once at load. Every kernel but
//! that GELU op also exists for CUDA, where candle's own GELU replaces it.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::Deserialize;

/// The fields of a Hugging Face BERT `config.json` the encoder reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of every state.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Its activation.
    #[serde(default)]
    pub hidden_act: HiddenAct,
    /// Positions (tokens per text, special tokens included).
    pub max_position_embeddings: usize,
    /// Token types (segments).
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    /// Layer norm epsilon.
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
}

fn two() -> usize {
    2
}

fn layer_norm_eps() -> f64 {
    1e-12
}

/// The feed-forward activation, as `config.json` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum HiddenAct {
    /// GELU with erf (BERT's own).
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU's tanh approximation.
    #[serde(
        alias = "gelu_new",
        alias = "gelu_pytorch_tanh",
        rename = "gelu_approximate"
    )]
    GeluApproximate,
    /// ReLU.
    #[serde(rename = "relu")]
    Relu,
}

/// A dense layer with its weight stored transposed (in × out), ready for `matmul`.
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Dense> {
        let weight = vb.get((outputs, inputs), "weight")?.t()?.contiguous()?;
        let bias = vb.get(outputs, "bias")?;
        Ok(Dense { weight, bias })
    }

    /// Several layers reading the same input as one (their outputs side by side).
    fn fused(parts: Vec<Dense>) -> candle_core::Result<Dense> {
        let weights: Vec<&Tensor> = parts.iter().map(|d| &d.weight).collect();
        let biases: Vec<&Tensor> = parts.iter().map(|d| &d.bias).collect();
        Ok(Dense {
            weight: Tensor::cat(&weights, 1)?,
            bias: Tensor::cat(&biases, 0)?,
        })
    }

    /// `x` is (rows, in).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight)?.broadcast_add(&self.bias)
    }
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Norm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> candle_core::Result<Norm> {
        // Older checkpoints name them gamma and beta.
        let (weight, bias) = match vb.get(size, "weight") {
            Ok(w) => (w, vb.get(size, "bias")?),
            Err(_) => (vb.get(size, "gamma")?, vb.get(size, "beta")?),
        };
        Ok(Norm {
            weight,
            bias,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// GELU with erf, over all threads. erf is Abramowitz and Stegun's 7.1.26 in f32
/// (largest error 1.5e-7, tested against the exact one), far cheaper than the f64 erf
/// candle uses, on the largest activation of the network (tokens × 1536 for MiniLM).
struct GeluErf;

fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let sign = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + P * x);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    sign * (1.0 - poly * (-x * x).exp())
}

fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-parallel"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("gelu: only f32 tensors");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gelu: the input must be contiguous");
        };
        let src = &data[start..end];
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(4096)
            .zip(src.par_chunks(4096))
            .for_each(|(out, inp)| {
                for (o, &x) in out.iter_mut().zip(inp) {
                    *o = gelu(x);
                }
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    up: Dense,
    down: Dense,
    output_norm: Norm,
}

/// The encoder: token ids in, one state per token out.
pub struct Encoder {
    words: Tensor,
    positions: Tensor,
    token_type: Tensor,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    activation: HiddenAct,
}

impl Encoder {
    /// Reads the weights (named as in Hugging Face's BERT, with or without a `bert.`
    /// prefix).
    pub fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Encoder> {
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let (h, inner, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        if config.num_attention_heads == 0 || h % config.num_attention_heads != 0 {
            candle_core::bail!("hidden size is not a multiple of the attention heads");
        }
        let e = vb.pp("embeddings");
        let words = e.get((config.vocab_size, h), "word_embeddings.weight")?;
        let positions = e.get(
            (config.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let token_type = e
            .get((config.type_vocab_size, h), "token_type_embeddings.weight")?
            .narrow(0, 0, 1)?;
        let embedding_norm = Norm::load(e.pp("LayerNorm"), h, eps)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let qkv = Dense::fused(vec![
                Dense::load(a.pp("self.query"), h, h)?,
                Dense::load(a.pp("self.key"), h, h)?,
                Dense::load(a.pp("self.value"), h, h)?,
            ])?;
            layers.push(Layer {
                qkv,
                attention_out: Dense::load(a.pp("output.dense"), h, h)?,
                attention_norm: Norm::load(a.pp("output.LayerNorm"), h, eps)?,
                up: Dense::load(l.pp("intermediate.dense"), h, inner)?,
                down: Dense::load(l.pp("output.dense"), inner, h)?,
                output_norm: Norm::load(l.pp("output.LayerNorm"), h, eps)?,
            });
        }
        Ok(Encoder {
            words,
            positions,
            token_type,
            embedding_norm,
            layers,
            heads: config.num_attention_heads,
            hidden: h,
            activation: config.hidden_act,
        })
    }

    /// `ids` and `mask` are (batch, tokens), u32; the answer is (batch, tokens, hidden).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, tokens) = ids.dims2()?;
        let (h, heads) = (self.hidden, self.heads);
        let head = h / heads;
        let rows = batch * tokens;

        let words = self.words.index_select(&ids.flatten_all()?, 0)?;
        let positions = self.positions.narrow(0, 0, tokens)?.repeat((batch, 1))?;
        let x = (words + positions)?.broadcast_add(&self.token_type)?;
        let mut x = self.embedding_norm.forward(&x)?;

        // 0 where a token is real, a large negative number where it is padding.
        let bias =
            ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9f64)?.reshape((batch, 1, 1, tokens))?;
        let scale = 1.0 / (head as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer
                .qkv
                .forward(&x)?
                .reshape((batch, tokens, 3, heads, head))?;
            let part = |i: usize| -> candle_core::Result<Tensor> {
                qkv.narrow(2, i, 1)?
                    .squeeze(2)?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = ((part(0)? * scale)?, part(1)?, part(2)?);
            let scores = q.matmul(&k.t()?)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((rows, h))?;
            let attended = layer
                .attention_norm
                .forward(&(layer.attention_out.forward(&context)? + &x)?)?;
            let up = layer.up.forward(&attended)?;
            let up = match self.activation {
                HiddenAct::Gelu if up.device().is_cpu() => up.apply_op1_no_bwd(&GeluErf)?,
                // The parallel op is CPU-only; on a GPU, candle's own erf GELU kernel.
                HiddenAct::Gelu => up.gelu_erf()?,
                HiddenAct::GeluApproximate => up.gelu()?,
                HiddenAct::Relu => up.relu()?,
            };
            x = layer
                .output_norm
                .forward(&(layer.down.forward(&up)? + &attended)?)?;
        }
        x.reshape((batch, tokens, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_the_exact_function() {
        for i in -400..=400 {
            let x = i as f32 / 100.0;
            let exact = candle_core::cpu::erf::erf_f64(f64::from(x)) as f32;
            assert!(
                (erf(x) - exact).abs() < 5e-7,
                "erf({x}): {} vs {exact}",
                erf(x)
            );
        }
        assert_eq!(gelu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
    }
}
