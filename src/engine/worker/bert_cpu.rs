//! The BERT encoder on the CPU, below candle: the same network and weights as
//! [`super::bert::Encoder`] (which loads them and still runs on a GPU), computed on
//! plain `f32` buffers with the kernels of [`super::kernels`].
//!
//! Why not candle's tensors on the CPU: a profile of a batch had a third of the time
//! outside the matrix products — single-threaded element-wise passes each allocating a
//! new tensor (bias adds, residual adds, copies for transposes), and attention as 384
//! tiny products per layer, each handing two threads a few hundred multiply-adds. Here:
//! - the texts of a batch are packed row after row with no padding, so no work is spent
//!   on padding and no mask is needed;
//! - biases and residuals are fused: a dense layer accumulates into its residual, and
//!   the bias is added in the same pass as the layer norm or the activation that
//!   follows;
//! - attention is one task per (text, head), each reading query, key and value in
//!   place from the fused projection (strided views, no copies) and running on one
//!   thread, the tasks spread over the pool.

use anyhow::bail;
use rayon::prelude::*;

use super::bert::{Dense, Encoder, HiddenAct, Norm};
use super::kernels::{self, Activation, Matrix};

/// Elements per parallel chunk of an element-wise pass.
const CHUNK_ELEMENTS: usize = 16 * 1024;

struct CpuDense {
    /// (inputs × outputs), row-major.
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl CpuDense {
    fn new(dense: &Dense) -> candle_core::Result<CpuDense> {
        let (inputs, outputs) = dense.weight.dims2()?;
        Ok(CpuDense {
            weight: dense.weight.flatten_all()?.to_vec1()?,
            bias: dense.bias.to_vec1()?,
            inputs,
            outputs,
        })
    }

    /// `dst (rows × outputs) += x (rows × inputs) × weight`, the bias left out.
    fn accumulate(&self, dst: &mut [f32], x: &[f32], rows: usize, threads: usize) {
        let weight = Matrix::rows(&self.weight, self.inputs, self.outputs);
        kernels::matmul(
            dst,
            Matrix::rows(x, rows, self.inputs),
            weight,
            true,
            1.0,
            threads,
        );
    }

    /// `x × weight`, the bias left out.
    fn product(&self, x: &[f32], rows: usize, threads: usize) -> Vec<f32> {
        let mut out = vec![0f32; rows * self.outputs];
        let weight = Matrix::rows(&self.weight, self.inputs, self.outputs);
        kernels::matmul(
            &mut out,
            Matrix::rows(x, rows, self.inputs),
            weight,
            false,
            1.0,
            threads,
        );
        out
    }
}

struct CpuNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl CpuNorm {
    fn new(norm: &Norm) -> candle_core::Result<CpuNorm> {
        Ok(CpuNorm {
            gamma: norm.weight.to_vec1()?,
            beta: norm.bias.to_vec1()?,
            eps: norm.eps,
        })
    }

    /// Adds `bias` to every row of `x`, then normalises the rows, over all threads.
    fn apply(&self, x: &mut [f32], bias: &[f32]) {
        for_rows(x, self.gamma.len(), |chunk| {
            kernels::bias_layer_norm(chunk, bias, &self.gamma, &self.beta, self.eps)
        });
    }
}

struct CpuLayer {
    qkv: CpuDense,
    attention_out: CpuDense,
    attention_norm: CpuNorm,
    up: CpuDense,
    down: CpuDense,
    output_norm: CpuNorm,
}

/// The encoder with its weights copied out of candle's tensors.
pub struct CpuEncoder {
    words: Vec<f32>,
    positions: Vec<f32>,
    max_positions: usize,
    /// Token type 0's embedding (every token is in segment 0).
    token_type: Vec<f32>,
    embedding_norm: CpuNorm,
    layers: Vec<CpuLayer>,
    hidden: usize,
    heads: usize,
    activation: Activation,
}

/// Runs `f` over chunks of whole `width`-long rows of `data`, in parallel.
fn for_rows(data: &mut [f32], width: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
    let rows_per_chunk = (CHUNK_ELEMENTS / width.max(1)).max(1);
    data.par_chunks_mut(rows_per_chunk * width).for_each(f);
}

impl CpuEncoder {
    /// Copies the weights of `encoder` (which must be on the CPU).
    pub fn new(encoder: &Encoder) -> candle_core::Result<CpuEncoder> {
        let (_, hidden) = encoder.words.dims2()?;
        let layers = encoder
            .layers
            .iter()
            .map(|l| {
                Ok(CpuLayer {
                    qkv: CpuDense::new(&l.qkv)?,
                    attention_out: CpuDense::new(&l.attention_out)?,
                    attention_norm: CpuNorm::new(&l.attention_norm)?,
                    up: CpuDense::new(&l.up)?,
                    down: CpuDense::new(&l.down)?,
                    output_norm: CpuNorm::new(&l.output_norm)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(CpuEncoder {
            words: encoder.words.flatten_all()?.to_vec1()?,
            positions: encoder.positions.flatten_all()?.to_vec1()?,
            max_positions: encoder.positions.dims2()?.0,
            token_type: encoder.token_type.flatten_all()?.to_vec1()?,
            embedding_norm: CpuNorm::new(&encoder.embedding_norm)?,
            layers,
            hidden,
            heads: encoder.heads,
            activation: match encoder.activation {
                HiddenAct::Gelu => Activation::GeluErf,
                HiddenAct::GeluApproximate => Activation::GeluTanh,
                HiddenAct::Relu => Activation::Relu,
            },
        })
    }

    /// The mean-pooled, L2-normalised vector of each text (token ids, special tokens
    /// included), as sentence-transformers computes it.
    pub fn embed(&self, batch: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        let h = self.hidden;
        let vocab = self.words.len() / h;
        let mut spans = Vec::with_capacity(batch.len());
        let mut rows = 0;
        for ids in batch {
            if ids.len() > self.max_positions {
                bail!("a text has more tokens than the model has positions");
            }
            if ids.iter().any(|&id| id as usize >= vocab) {
                bail!("a token id is outside the vocabulary");
            }
            spans.push((rows, ids.len()));
            rows += ids.len();
        }
        let threads = rayon::current_num_threads();

        let mut x = self.embeddings(batch, rows);
        for layer in &self.layers {
            let mut qkv = vec![0f32; rows * layer.qkv.outputs];
            for row in qkv.chunks_exact_mut(layer.qkv.outputs) {
                row.copy_from_slice(&layer.qkv.bias);
            }
            layer.qkv.accumulate(&mut qkv, &x, rows, threads);
            let context = self.attention(&qkv, &spans, rows);
            drop(qkv);

            let mut attended = x;
            layer
                .attention_out
                .accumulate(&mut attended, &context, rows, threads);
            layer
                .attention_norm
                .apply(&mut attended, &layer.attention_out.bias);

            let mut up = layer.up.product(&attended, rows, threads);
            let activation = self.activation;
            for_rows(&mut up, layer.up.outputs, |chunk| {
                kernels::bias_activation(chunk, &layer.up.bias, activation)
            });

            let mut out = attended;
            layer.down.accumulate(&mut out, &up, rows, threads);
            layer.output_norm.apply(&mut out, &layer.down.bias);
            x = out;
        }
        Ok(spans
            .iter()
            .map(|&(start, len)| pool(&x[start * h..(start + len) * h], h))
            .collect())
    }

    /// Word + position + token type embeddings of every token, normalised.
    fn embeddings(&self, batch: &[&[u32]], rows: usize) -> Vec<f32> {
        let h = self.hidden;
        let tokens: Vec<(usize, usize)> = batch
            .iter()
            .flat_map(|ids| ids.iter().enumerate().map(|(p, &id)| (id as usize, p)))
            .collect();
        let mut x = vec![0f32; rows * h];
        x.par_chunks_mut(h)
            .zip(tokens.par_iter())
            .for_each(|(row, &(id, position))| {
                let word = &self.words[id * h..(id + 1) * h];
                let place = &self.positions[position * h..(position + 1) * h];
                for (((v, &w), &p), &t) in row.iter_mut().zip(word).zip(place).zip(&self.token_type)
                {
                    *v = w + p + t;
                }
            });
        let zeros = vec![0f32; h];
        self.embedding_norm.apply(&mut x, &zeros);
        x
    }

    /// Self-attention of every text over its own tokens: `qkv` is (rows × 3·hidden)
    /// with query, key and value side by side; the answer is (rows × hidden), the heads
    /// side by side.
    fn attention(&self, qkv: &[f32], spans: &[(usize, usize)], rows: usize) -> Vec<f32> {
        let (h, heads) = (self.hidden, self.heads);
        let head = h / heads;
        let width = 3 * h;
        let scale = 1.0 / (head as f32).sqrt();
        let tasks: Vec<(usize, usize, usize)> = spans
            .iter()
            .flat_map(|&(start, len)| (0..heads).map(move |k| (start, len, k)))
            .collect();
        let blocks: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(start, len, k)| {
                let at = |part: usize| start * width + part * h + k * head;
                let query = Matrix {
                    data: qkv,
                    offset: at(0),
                    rows: len,
                    cols: head,
                    row_stride: width,
                    col_stride: 1,
                };
                // The keys transposed: (head × len).
                let keys = Matrix {
                    data: qkv,
                    offset: at(1),
                    rows: head,
                    cols: len,
                    row_stride: 1,
                    col_stride: width,
                };
                let values = Matrix {
                    data: qkv,
                    offset: at(2),
                    rows: len,
                    cols: head,
                    row_stride: width,
                    col_stride: 1,
                };
                let mut scores = vec![0f32; len * len];
                kernels::matmul(&mut scores, query, keys, false, scale, 1);
                kernels::softmax_rows(&mut scores, len);
                let mut out = vec![0f32; len * head];
                kernels::matmul(
                    &mut out,
                    Matrix::rows(&scores, len, len),
                    values,
                    false,
                    1.0,
                    1,
                );
                out
            })
            .collect();
        let mut context = vec![0f32; rows * h];
        for (&(start, _, k), block) in tasks.iter().zip(&blocks) {
            for (r, values) in block.chunks_exact(head).enumerate() {
                let at = (start + r) * h + k * head;
                context[at..at + head].copy_from_slice(values);
            }
        }
        context
    }
}

/// The mean of a text's token states, L2-normalised (zero stays zero).
fn pool(states: &[f32], h: usize) -> Vec<f32> {
    let mut mean = vec![0f32; h];
    let count = states.len() / h;
    for row in states.chunks_exact(h) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    let count = count.max(1) as f32;
    mean.iter_mut().for_each(|m| *m /= count);
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    mean.iter_mut().for_each(|m| *m /= norm);
    mean
}
