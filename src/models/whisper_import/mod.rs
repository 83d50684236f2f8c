//! Converts faster-whisper (CTranslate2) Whisper models to whisper.cpp's ggml format.
//!
//! No registry ships whisper.cpp `ggml-*.bin` files, but faster-whisper copies of
//! OpenAI's weights are common and convert losslessly. This module owns that import:
//! reading a CT2 `model.bin` (binary version 6, `WhisperSpec`), splitting its fused
//! attention projections back into OpenAI's tensors, and writing, byte for byte, the
//! file whisper.cpp's `convert-pt-to-ggml.py` writes, with the vocabulary and mel
//! filters from openai-whisper's assets. It neither loads nor runs models.
//!
//! The model file is untrusted: every count, length and shape is checked against the
//! bytes that remain before anything is allocated, and tensor data is streamed in
//! bounded chunks, so a multi-gigabyte model converts in a few megabytes of memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

mod assets;

use ImportError::{Malformed, NotCt2, Unsupported};
use assets::{MelFilters, Tokens, read_mel_filters, read_tokens};

/// The CTranslate2 binary version read; every Whisper model CT2 has written uses it.
const CT2_VERSION: u32 = 6;
const WHISPER_SPEC: &str = "WhisperSpec";
const GGML_MAGIC: u64 = 0x6767_6d6c;
const FTYPE_F16: u64 = 1;
/// whisper.cpp treats a model with at least this many tokens as multilingual.
const MULTILINGUAL_VOCAB: u64 = 51_865;
/// Tensor data moves in chunks of this many bytes, whatever the tensor's size.
const CHUNK: u64 = 1 << 20;
/// Whisper's highest rank is 3 (the convolution kernels).
const MAX_RANK: u8 = 4;
/// The real assets are under a megabyte; a file far larger is not one of them.
const MAX_ASSET_BYTES: u64 = 64 << 20;

/// What [`convert`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Vocabulary size (51864 for English-only models, 51865 or more otherwise).
    pub n_vocab: u32,
    /// Encoder layers.
    pub n_audio_layer: u32,
    /// Decoder layers.
    pub n_text_layer: u32,
    /// Mel bins of the audio input (80, or 128 for large-v3).
    pub n_mels: u32,
    /// Whether the model is multilingual (and so uses `multilingual.tiktoken`).
    pub multilingual: bool,
    /// Bytes written.
    pub bytes: u64,
}

/// Why a model folder could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// `model.bin` is not a CTranslate2 model of binary version 6.
    #[error("not a CTranslate2 model: {0}")]
    NotCt2(String),
    /// A CTranslate2 model that cannot become a ggml Whisper model without loss
    /// (another architecture, int8 quantization, a non-zero key bias, unknown weights).
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// The model file is truncated or inconsistent.
    #[error("malformed model file: {0}")]
    Malformed(String),
    /// A vocabulary or mel filter asset is missing or unusable.
    #[error("whisper asset missing or unusable: {0}")]
    MissingAsset(String),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Err(Malformed(format!(…)))`: almost every refusal here has this shape.
macro_rules! malformed {
    ($($fmt:tt)*) => { Err(Malformed(format!($($fmt)*))) };
}

/// `Err(Unsupported(format!(…)))`.
macro_rules! unsupported {
    ($($fmt:tt)*) => { Err(Unsupported(format!($($fmt)*))) };
}

/// Writes a whisper.cpp ggml model converted from the CTranslate2 model folder
/// `ct2_dir` (`model.bin`), using the vocabulary (`gpt2.tiktoken` or
/// `multilingual.tiktoken`) and `mel_filters.npz` in `assets_dir`.
///
/// Everything is checked before the first byte is written, so on any error but
/// [`ImportError::Io`] nothing has been written to `out`.
pub fn convert(
    ct2_dir: &Path,
    assets_dir: &Path,
    out: &mut impl Write,
) -> Result<Converted, ImportError> {
    let file = fs_err::File::open(ct2_dir.join("model.bin"))?;
    let len = file.metadata()?.len();
    let mut model = Ct2Model::read(BufReader::new(file), len)?;
    let hp = HParams::read(&model)?;
    let plan = Plan::whisper(&hp);
    model.check(&plan)?;
    let multilingual = hp.n_vocab >= MULTILINGUAL_VOCAB;
    let vocab = if multilingual { "multilingual" } else { "gpt2" };
    let tokens = read_tokens(&assets_dir.join(format!("{vocab}.tiktoken")), hp.n_vocab)?;
    let mel = read_mel_filters(&assets_dir.join("mel_filters.npz"), hp.n_mels)?;
    let bytes = write_ggml(&mut model, &hp, &plan, &mel, &tokens, out)?;
    let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX); // each was a u32 in the file
    Ok(Converted {
        n_vocab: small(hp.n_vocab),
        n_audio_layer: small(hp.n_audio_layer),
        n_text_layer: small(hp.n_text_layer),
        n_mels: small(hp.n_mels),
        multilingual,
        bytes,
    })
}

/// Whether `dir` looks like a CTranslate2 Whisper model folder (`model.bin` with the
/// CT2 header and the spec name `WhisperSpec`). Reads only the header.
pub fn is_ct2_whisper(dir: &Path) -> bool {
    let Ok(file) = fs_err::File::open(dir.join("model.bin")) else {
        return false;
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let spec = Input::new(BufReader::new(file), len).spec();
    spec.is_ok_and(|spec| spec == WHISPER_SPEC)
}

/// CTranslate2's storage types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    F16,
    BF16,
    /// A signed integer of this many bytes.
    Int(u8),
}

impl DType {
    /// The type with this id in the file.
    fn from_id(id: u8) -> Option<DType> {
        use DType::*;
        let types = [F32, Int(1), Int(2), Int(4), F16, BF16];
        types.get(usize::from(id)).copied()
    }

    fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Int(n) => n.into(),
        }
    }

    fn is_float(self) -> bool {
        !matches!(self, DType::Int(_))
    }

    /// One little-endian element (`bytes` is `size()` long) as f32.
    fn decode(self, bytes: &[u8]) -> f32 {
        let mut le = [0u8; 4];
        let n = bytes.len().min(4);
        le[..n].copy_from_slice(&bytes[..n]);
        let short = u16::from_le_bytes([le[0], le[1]]);
        match self {
            DType::F32 => f32::from_le_bytes(le),
            DType::F16 => half::f16::from_bits(short).to_f32(),
            DType::BF16 => half::bf16::from_bits(short).to_f32(),
            DType::Int(1) => f32::from(le[0] as i8),
            DType::Int(2) => f32::from(short as i16),
            DType::Int(_) => i32::from_le_bytes(le) as f32,
        }
    }
}

/// One variable of a CT2 model: where its data lies, or its value if an int scalar.
#[derive(Debug)]
struct Variable {
    dims: Vec<u64>,
    dtype: DType,
    offset: u64,
    len: u64,
    scalar: Option<i64>,
}

/// A reader that knows how many bytes remain, so no claim in the file is trusted.
struct Input<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Input<R> {
    fn new(inner: R, len: u64) -> Self {
        Input { inner, pos: 0, len }
    }

    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64, what: &str) -> Result<Vec<u8>, ImportError> {
        let left = self.left();
        if n > left {
            return malformed!("{what} needs {n} bytes but the file has {left} left");
        }
        let mut buf = vec![0u8; n as usize]; // no more than the file holds
        self.inner.read_exact(&mut buf)?;
        self.pos += n;
        Ok(buf)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ImportError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, ImportError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A u16-length-prefixed string whose length counts a trailing NUL.
    fn string(&mut self, what: &str) -> Result<String, ImportError> {
        let b = self.take(2, what)?;
        let mut text = self.take(u16::from_le_bytes([b[0], b[1]]).into(), what)?;
        if text.pop() != Some(0) {
            return malformed!("{what} is not NUL-terminated");
        }
        String::from_utf8(text).or(malformed!("{what} is not UTF-8"))
    }

    /// Reads the binary version and spec name, which tell a CT2 model from other files.
    fn spec(&mut self) -> Result<String, ImportError> {
        if self.len < 4 {
            return Err(NotCt2(format!("the file has only {} bytes", self.len)));
        }
        match self.u32("the binary version")? {
            CT2_VERSION => self.string("the spec name"),
            v => Err(NotCt2(format!("binary version {v}, not {CT2_VERSION}"))),
        }
    }

    /// Reads one variable's header, and its value if it is a scalar.
    fn variable(&mut self, name: &str) -> Result<Variable, ImportError> {
        let what = format!("variable `{name}`");
        let rank = self.u8(&what)?;
        if rank > MAX_RANK {
            return malformed!("{what} has rank {rank} (at most {MAX_RANK})");
        }
        let dims = (0..rank).map(|_| self.u32(&what).map(u64::from));
        let dims = dims.collect::<Result<Vec<_>, _>>()?;
        let id = self.u8(&what)?;
        let Some(dtype) = DType::from_id(id) else {
            return malformed!("{what} has unknown type id {id}");
        };
        let (len, left) = (u64::from(self.u32(&what)?), self.left());
        if len > left {
            return malformed!("{what} claims {len} bytes but the file has {left} left");
        }
        if byte_size(&dims, dtype.size()) != Some(len) {
            return malformed!("{what} of shape {dims:?} and type {dtype:?} is not {len} bytes");
        }
        let (offset, mut scalar) = (self.pos, None);
        if rank == 0 {
            let value = self.take(len, &what)?;
            scalar = (!dtype.is_float()).then(|| dtype.decode(&value) as i64);
        } else {
            self.inner.seek_relative(len as i64)?; // len < 2^32
            self.pos += len;
        }
        Ok(Variable {
            dims,
            dtype,
            offset,
            len,
            scalar,
        })
    }
}

/// A CT2 model file's index; tensor data stays in the file until it is written.
struct Ct2Model<R> {
    reader: R,
    vars: BTreeMap<String, Variable>,
    aliases: HashMap<String, String>,
}

impl<R: Read + Seek> Ct2Model<R> {
    /// Reads the header and the index of a `WhisperSpec` model file of `len` bytes.
    fn read(reader: R, len: u64) -> Result<Self, ImportError> {
        let mut input = Input::new(reader, len);
        let spec = input.spec()?;
        if spec != WHISPER_SPEC {
            return unsupported!("spec `{spec}` is not {WHISPER_SPEC}");
        }
        input.u32("the spec revision")?;
        let (count, left) = (input.u32("the variable count")?, input.left());
        // A variable takes at least 9 bytes: name length, NUL, rank, dtype, byte count.
        if u64::from(count) * 9 > left {
            return malformed!("the file claims {count} variables but has {left} bytes left");
        }
        let mut vars = BTreeMap::new();
        for i in 0..count {
            let name = input.string(&format!("the name of variable {i}"))?;
            let var = input.variable(&name)?;
            if vars.insert(name.clone(), var).is_some() {
                return malformed!("variable `{name}` appears twice");
            }
        }
        let (count, left) = (input.u32("the alias count")?, input.left());
        // An alias takes at least 6 bytes: two strings of a length and a NUL.
        if u64::from(count) * 6 > left {
            return malformed!("the file claims {count} aliases but has {left} bytes left");
        }
        let mut aliases = HashMap::new();
        for i in 0..count {
            let alias = input.string(&format!("alias {i}"))?;
            let target = input.string(&format!("the target of alias `{alias}`"))?;
            aliases.insert(alias, target);
        }
        let reader = input.inner;
        Ok(Ct2Model {
            reader,
            vars,
            aliases,
        })
    }

    /// The name under which `name` (or the variable it aliases) is stored.
    fn resolve<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.vars.contains_key(name).then_some(name)
    }

    fn var(&self, name: &str) -> Result<&Variable, ImportError> {
        match self.resolve(name) {
            Some(key) => Ok(&self.vars[key]),
            None => malformed!("variable `{name}` is missing"),
        }
    }

    /// The shape of a rank-`N` variable.
    fn dims<const N: usize>(&self, name: &str) -> Result<[u64; N], ImportError> {
        let dims = &self.var(name)?.dims;
        match <[u64; N]>::try_from(dims.as_slice()) {
            Ok(dims) => Ok(dims),
            Err(_) => malformed!("variable `{name}` has shape {dims:?}, not rank {N}"),
        }
    }

    fn scalar(&self, name: &str) -> Result<i64, ImportError> {
        match self.var(name)?.scalar {
            Some(value) => Ok(value),
            None => malformed!("variable `{name}` is not an integer scalar"),
        }
    }

    /// Checks that the plan uses every weight, with the shapes and float types it
    /// expects, and that the key biases Whisper lacks are zero.
    fn check(&mut self, plan: &Plan) -> Result<(), ImportError> {
        let mut used = HashSet::new();
        for t in &plan.tensors {
            let (source, source_dims) = (&t.source, &t.source_dims);
            let Variable { dims, dtype, .. } = self.var(source)?;
            if !dtype.is_float() {
                return unsupported!("variable `{source}` is {dtype:?}");
            }
            if dims != source_dims {
                return malformed!("`{source}` has shape {dims:?}, not {source_dims:?}");
            }
            used.extend(self.resolve(source).map(str::to_owned));
        }
        let mut weights = self.vars.iter().filter(|(_, v)| !v.dims.is_empty());
        if let Some((name, _)) = weights.find(|(name, _)| !used.contains(*name)) {
            return unsupported!("variable `{name}` has no whisper.cpp counterpart");
        }
        for (source, rows) in &plan.zero {
            let dtype = self.var(source)?.dtype;
            let mut nonzero = false;
            self.each_chunk(source, rows, |chunk| {
                let mut values = chunk.chunks_exact(dtype.size() as usize);
                nonzero |= values.any(|e| dtype.decode(e) != 0.0);
                Ok(())
            })?;
            if nonzero {
                return unsupported!(
                    "`{source}` has a non-zero key bias; Whisper's keys have none"
                );
            }
        }
        Ok(())
    }

    /// Calls `f` on the data of `rows` (of the first dimension) of variable `name`, in
    /// chunks of whole elements.
    fn each_chunk(
        &mut self,
        name: &str,
        rows: &Range<u64>,
        mut f: impl FnMut(&[u8]) -> Result<(), ImportError>,
    ) -> Result<(), ImportError> {
        let var = self.var(name)?;
        let n_rows = var.dims.first().copied().unwrap_or(1);
        if rows.start > rows.end || rows.end > n_rows {
            return malformed!("rows {rows:?} are outside `{name}`");
        }
        let row_bytes = var.len.checked_div(n_rows).unwrap_or(0);
        let start = var.offset + rows.start * row_bytes;
        let mut left = (rows.end - rows.start) * row_bytes;
        self.reader.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; left.min(CHUNK) as usize];
        while left > 0 {
            let n = left.min(CHUNK) as usize;
            self.reader.read_exact(&mut buf[..n])?;
            f(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }
}

/// whisper.cpp's hyperparameters, in the order its header stores them.
#[derive(Debug)]
struct HParams {
    n_vocab: u64,
    n_audio_ctx: u64,
    n_audio_state: u64,
    n_audio_head: u64,
    n_audio_layer: u64,
    n_text_ctx: u64,
    n_text_state: u64,
    n_text_head: u64,
    n_text_layer: u64,
    n_mels: u64,
}

impl HParams {
    fn read<R: Read + Seek>(m: &Ct2Model<R>) -> Result<Self, ImportError> {
        if let Some(name) = m.vars.keys().find(|n| n.ends_with("weight_scale")) {
            return unsupported!("the model is int8-quantized (`{name}`): use a float16 one");
        }
        let [n_audio_ctx, n_audio_state] = m.dims("encoder/position_encodings/encodings")?;
        let [n_text_ctx, n_text_state] = m.dims("decoder/position_encodings/encodings")?;
        let [n_vocab, _] = m.dims::<2>("decoder/embeddings/weight")?;
        let [_, n_mels, _] = m.dims::<3>("encoder/conv1/weight")?;
        let heads = |name: &str, width: u64| match m.scalar(name)? {
            h @ 1.. if h.unsigned_abs() <= width => Ok(h.unsigned_abs()),
            h => malformed!("`{name}` is {h} for a width of {width}"),
        };
        // Counting stops at the first gap; a layer past it is then refused as unused.
        let layers = |side: &str| {
            let exists = |i: &u64| {
                m.vars
                    .contains_key(&format!("{side}/layer_{i}/ffn/layer_norm/gamma"))
            };
            match (0u64..).take_while(exists).count() {
                0 => malformed!("the {side} has no layers"),
                n => Ok(n as u64),
            }
        };
        let hp = HParams {
            n_vocab,
            n_audio_ctx,
            n_audio_state,
            n_audio_head: heads("encoder/num_heads", n_audio_state)?,
            n_audio_layer: layers("encoder")?,
            n_text_ctx,
            n_text_state,
            n_text_head: heads("decoder/num_heads", n_text_state)?,
            n_text_layer: layers("decoder")?,
            n_mels,
        };
        if hp.values().contains(&0) {
            return malformed!("a dimension is zero: {hp:?}");
        }
        Ok(hp)
    }

    fn values(&self) -> [u64; 10] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
        ]
    }
}

/// One ggml tensor: rows `rows` of the CT2 variable `source`, of shape `dims`
/// (outermost first, as in PyTorch).
struct Tensor {
    name: String,
    source: String,
    source_dims: Vec<u64>,
    rows: Range<u64>,
    dims: Vec<u64>,
}

impl Tensor {
    /// `convert-pt-to-ggml.py`'s rule: f16 except vectors, conv biases and positions.
    fn f16(&self) -> bool {
        let f32 = self.name.ends_with("bias") || self.name.ends_with("positional_embedding");
        self.dims.len() >= 2 && !f32
    }
}

const POSITIONS: &str = "position_encodings/encodings";
const QKV: &[&str] = &["query", "key", "value"];
const KV: &[&str] = &["key", "value"];

/// Every tensor to write, in openai-whisper's `state_dict` order (a module's own
/// parameters and buffers before its children's), which fixes the file's bytes.
#[derive(Default)]
struct Plan {
    tensors: Vec<Tensor>,
    /// Slices of fused biases that belong to Whisper's bias-less key projections.
    zero: Vec<(String, Range<u64>)>,
    /// The module being planned: its Whisper and CT2 names.
    scope: (String, String),
}

impl Plan {
    fn whisper(hp: &HParams) -> Plan {
        let (n_a, n_t) = (hp.n_audio_state, hp.n_text_state);
        let mut p = Plan::default();
        p.enter("encoder", "encoder");
        p.whole("positional_embedding", POSITIONS, &[hp.n_audio_ctx, n_a]);
        p.whole("conv1.weight", "conv1/weight", &[n_a, hp.n_mels, 3]);
        p.push("conv1.bias", "conv1/bias", &[n_a], 0..n_a, &[n_a, 1]);
        p.whole("conv2.weight", "conv2/weight", &[n_a, n_a, 3]);
        p.push("conv2.bias", "conv2/bias", &[n_a], 0..n_a, &[n_a, 1]);
        for i in 0..hp.n_audio_layer {
            p.enter(format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
            p.block(n_a, None);
        }
        p.enter("encoder", "encoder");
        p.module("ln_post", "layer_norm", n_a, None);
        p.enter("decoder", "decoder");
        p.whole("positional_embedding", POSITIONS, &[hp.n_text_ctx, n_t]);
        let vocab = [hp.n_vocab, n_t];
        p.whole("token_embedding.weight", "embeddings/weight", &vocab);
        for i in 0..hp.n_text_layer {
            p.enter(format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
            p.block(n_t, Some(n_a));
        }
        p.enter("decoder", "decoder");
        p.module("ln", "layer_norm", n_t, None);
        p
    }

    fn enter(&mut self, name: impl Into<String>, source: impl Into<String>) {
        self.scope = (name.into(), source.into());
    }

    /// Plans `name` from `rows` of `source`, both inside the current scope.
    fn push(
        &mut self,
        name: &str,
        source: &str,
        source_dims: &[u64],
        rows: Range<u64>,
        dims: &[u64],
    ) {
        let name = format!("{}.{name}", self.scope.0);
        let source = format!("{}/{source}", self.scope.1);
        let (source_dims, dims) = (source_dims.to_vec(), dims.to_vec());
        let tensor = Tensor {
            name,
            source,
            source_dims,
            rows,
            dims,
        };
        self.tensors.push(tensor);
    }

    fn whole(&mut self, name: &str, source: &str, dims: &[u64]) {
        let rows = 0..dims.first().copied().unwrap_or(1);
        self.push(name, source, dims, rows, dims);
    }

    /// A linear layer (weight and bias) with `n_in` inputs, or a layer norm if `None`.
    fn module(&mut self, name: &str, source: &str, n: u64, n_in: Option<u64>) {
        let (weight, bias, dims) = match n_in {
            Some(n_in) => ("weight", "bias", vec![n, n_in]),
            None => ("gamma", "beta", vec![n]),
        };
        self.whole(
            &format!("{name}.weight"),
            &format!("{source}/{weight}"),
            &dims,
        );
        self.whole(&format!("{name}.bias"), &format!("{source}/{bias}"), &[n]);
    }

    /// Splits a projection CT2 fused row-wise (query|key|value, or key|value) into one
    /// linear per part; Whisper's key has no bias, and CT2 stores zeros in its place.
    fn split(&mut self, name: &str, source: &str, parts: &[&str], n: u64, n_in: u64) {
        let fused = parts.len() as u64 * n;
        let (weight, bias) = (format!("{source}/weight"), format!("{source}/bias"));
        for (i, part) in (0..).zip(parts) {
            let rows = i * n..(i + 1) * n;
            let at = |kind| format!("{name}.{part}.{kind}");
            self.push(
                &at("weight"),
                &weight,
                &[fused, n_in],
                rows.clone(),
                &[n, n_in],
            );
            if *part == "key" {
                let bias = format!("{}/{bias}", self.scope.1);
                self.zero.push((bias, rows));
            } else {
                self.push(&at("bias"), &bias, &[fused], rows, &[n]);
            }
        }
    }

    /// One residual attention block; a decoder's also attends to the `n_audio`-wide
    /// encoder output.
    fn block(&mut self, n: u64, n_audio: Option<u64>) {
        self.split("attn", "self_attention/linear_0", QKV, n, n);
        self.module("attn.out", "self_attention/linear_1", n, Some(n));
        self.module("attn_ln", "self_attention/layer_norm", n, None);
        if let Some(n_audio) = n_audio {
            self.module("cross_attn.query", "attention/linear_0", n, Some(n));
            self.split("cross_attn", "attention/linear_1", KV, n, n_audio);
            self.module("cross_attn.out", "attention/linear_2", n, Some(n));
            self.module("cross_attn_ln", "attention/layer_norm", n, None);
        }
        self.module("mlp.0", "ffn/linear_0", 4 * n, Some(n));
        self.module("mlp.2", "ffn/linear_1", n, Some(4 * n));
        self.module("mlp_ln", "ffn/layer_norm", n, None);
    }
}

/// The bytes of an array of `dims` elements of `size` bytes, unless that overflows.
fn byte_size(dims: &[u64], size: u64) -> Option<u64> {
    dims.iter().try_fold(size, |acc, &d| acc.checked_mul(d))
}

/// Counts what passes through, so the caller learns the file's size.
struct Counter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes ggml's little-endian i32 fields.
fn write_i32s(w: &mut impl Write, values: &[u64]) -> Result<(), ImportError> {
    for &v in values {
        let Ok(v) = i32::try_from(v) else {
            return malformed!("{v} does not fit ggml's 32-bit fields");
        };
        w.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

/// Writes the ggml file: magic, hyperparameters, mel filters, vocabulary, tensors.
fn write_ggml<R: Read + Seek>(
    m: &mut Ct2Model<R>,
    hp: &HParams,
    plan: &Plan,
    mel: &MelFilters,
    tokens: &Tokens,
    out: &mut impl Write,
) -> Result<u64, ImportError> {
    let inner = BufWriter::with_capacity(CHUNK as usize, out);
    let mut w = Counter { inner, count: 0 };
    write_i32s(&mut w, &[GGML_MAGIC])?;
    write_i32s(&mut w, &hp.values())?;
    write_i32s(&mut w, &[FTYPE_F16, mel.rows, mel.cols])?;
    w.write_all(&mel.data)?;
    write_i32s(&mut w, &[tokens.count])?;
    w.write_all(&tokens.encoded)?;
    let mut converted = Vec::new();
    for t in &plan.tensors {
        let (dtype, f16) = (m.var(&t.source)?.dtype, t.f16());
        let unchanged = if f16 { DType::F16 } else { DType::F32 };
        let dims: Vec<u64> = t.dims.iter().rev().copied().collect();
        write_i32s(
            &mut w,
            &[dims.len() as u64, t.name.len() as u64, f16.into()],
        )?;
        write_i32s(&mut w, &dims)?;
        w.write_all(t.name.as_bytes())?;
        m.each_chunk(&t.source, &t.rows, |chunk| {
            if dtype == unchanged {
                return Ok(w.write_all(chunk)?);
            }
            converted.clear();
            for e in chunk.chunks_exact(dtype.size() as usize) {
                let value = dtype.decode(e);
                if f16 {
                    converted.extend(half::f16::from_f32(value).to_le_bytes());
                } else {
                    converted.extend(value.to_le_bytes());
                }
            }
            Ok(w.write_all(&converted)?)
        })?;
    }
    w.flush()?;
    Ok(w.count)
}

#[cfg(test)]
mod tests;
