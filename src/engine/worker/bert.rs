//! The BERT encoder of the embedding worker, on candle tensors: it reads the weights
//! (for both devices) and runs the network on a GPU. On the CPU the same weights run
//! through [`super::bert_cpu`], which packs a batch without padding and fuses the
//! element-wise passes that candle's CPU backend runs one by one on one thread.
//! Query, key and value are one matrix product; weights are transposed once at load.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
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
pub(super) struct Dense {
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
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

pub(super) struct Norm {
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
    pub(super) eps: f32,
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

pub(super) struct Layer {
    pub(super) qkv: Dense,
    pub(super) attention_out: Dense,
    pub(super) attention_norm: Norm,
    pub(super) up: Dense,
    pub(super) down: Dense,
    pub(super) output_norm: Norm,
}

/// The encoder: token ids in, one state per token out.
pub struct Encoder {
    pub(super) words: Tensor,
    pub(super) positions: Tensor,
    pub(super) token_type: Tensor,
    pub(super) embedding_norm: Norm,
    pub(super) layers: Vec<Layer>,
    pub(super) heads: usize,
    pub(super) hidden: usize,
    pub(super) activation: HiddenAct,
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
