//! A defensive GGUF header reader.
//!
//! Reads the header, metadata and tensor table of a GGUF file and checks that they are
//! self-consistent *before* llama.cpp ever sees the file: magic, version, counts that
//! fit in the file, known tensor types, at most 4 dimensions, and every tensor's data
//! inside the file. A file that fails is refused with a precise reason instead of
//! crashing a worker. Nothing here allocates more than the file could justify.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::Path;

/// Why a file is not an acceptable GGUF model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GgufError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Io(String),
    /// Not a GGUF file at all.
    #[error("not a GGUF file (the first bytes are not \"GGUF\")")]
    BadMagic,
    /// A GGUF version this build does not read.
    #[error("unsupported GGUF version {0} (supported: 2 and 3)")]
    UnsupportedVersion(u32),
    /// The file ends before its header does.
    #[error("the file is truncated: {0}")]
    Truncated(String),
    /// A header field is impossible.
    #[error("invalid GGUF header: {0}")]
    Invalid(String),
}

/// A metadata value (arrays keep only their length and, for short arrays, nothing
/// else: the tokenizer vocabulary is never needed here).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// Any integer type.
    Int(i128),
    /// f32 or f64.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string (lossy).
    Str(String),
    /// An array: element type id and length.
    Array {
        /// GGUF value type of the elements.
        elem_type: u32,
        /// Number of elements.
        len: u64,
    },
}

impl MetaValue {
    /// The value as an integer, if it is one.
    pub fn as_int(&self) -> Option<i128> {
        match self {
            MetaValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One tensor's entry in the table.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Dimensions, innermost first.
    pub dims: Vec<u64>,
    /// ggml type id.
    pub ggml_type: u32,
    /// Offset inside the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

/// Everything read from a GGUF header.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// Format version.
    pub version: u32,
    /// Metadata key/values (large arrays summarised).
    pub metadata: BTreeMap<String, MetaValue>,
    /// The tensor table.
    pub tensors: Vec<TensorInfo>,
    /// Where tensor data begins.
    pub data_offset: u64,
    /// The file's size.
    pub file_size: u64,
}

impl GgufHeader {
    /// `general.architecture`, e.g. `llama`.
    pub fn architecture(&self) -> Option<&str> {
        self.metadata
            .get("general.architecture")
            .and_then(MetaValue::as_str)
    }

    /// An integer from `<arch>.<suffix>`, e.g. `context_length`.
    pub fn arch_int(&self, suffix: &str) -> Option<i128> {
        let arch = self.architecture()?;
        self.metadata.get(&format!("{arch}.{suffix}"))?.as_int()
    }

    /// Total number of weights.
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| t.dims.iter().product::<u64>())
            .sum()
    }

    /// The quantisation label: from `general.file_type` when present, else the most
    /// common tensor type.
    pub fn quantization(&self) -> String {
        if let Some(label) = self
            .metadata
            .get("general.file_type")
            .and_then(MetaValue::as_int)
            .and_then(file_type_name)
        {
            return label.to_string();
        }
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for t in &self.tensors {
            *counts.entry(t.ggml_type).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .and_then(|(ty, _)| type_traits(ty).map(|(name, _, _)| name.to_string()))
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// Whether the file carries a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.metadata.contains_key("tokenizer.chat_template")
    }
}

/// Reads and validates the header of the GGUF file at `path`.
pub fn read_header(path: &Path) -> Result<GgufHeader, GgufError> {
    let file = fs_err::File::open(path).map_err(|e| GgufError::Io(e.to_string()))?;
    let file_size = file
        .metadata()
        .map_err(|e| GgufError::Io(e.to_string()))?
        .len();
    let mut r = Reader {
        inner: BufReader::with_capacity(1 << 16, file),
        pos: 0,
        size: file_size,
    };

    let mut magic = [0u8; 4];
    r.bytes(&mut magic, "magic")?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic);
    }
    let version = r.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let tensor_count = r.u64("tensor count")?;
    let kv_count = r.u64("metadata count")?;
    // Each tensor entry needs > 24 bytes and each key/value > 12: counts beyond what
    // the file can hold are lies, caught before any allocation.
    if tensor_count > file_size / 24 || kv_count > file_size / 12 {
        return Err(GgufError::Invalid(format!(
            "{tensor_count} tensors and {kv_count} metadata entries cannot fit in {file_size} bytes"
        )));
    }

    let mut metadata = BTreeMap::new();
    for _ in 0..kv_count {
        let key = r.string("metadata key")?;
        let value_type = r.u32("metadata type")?;
        let value = r.value(value_type, &key)?;
        metadata.insert(key, value);
    }
    let alignment = match metadata
        .get("general.alignment")
        .and_then(MetaValue::as_int)
    {
        None => 32,
        Some(a) if a > 0 && a <= 1 << 20 && (a as u64).is_power_of_two() => a as u64,
        Some(a) => {
            return Err(GgufError::Invalid(format!(
                "general.alignment {a} is not a power of two"
            )));
        }
    };

    let mut tensors = Vec::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let name = r.string("tensor name")?;
        let n_dims = r.u32("tensor dimensions")?;
        if n_dims == 0 || n_dims > 4 {
            return Err(GgufError::Invalid(format!(
                "tensor {i} `{name}` has {n_dims} dimensions (1 to 4 allowed)"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64("tensor dimension")?);
        }
        let ggml_type = r.u32("tensor type")?;
        let offset = r.u64("tensor offset")?;
        let (type_name, block, bytes) = type_traits(ggml_type).ok_or_else(|| {
            GgufError::Invalid(format!("tensor `{name}` has unknown type id {ggml_type}"))
        })?;
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                GgufError::Invalid(format!(
                    "tensor `{name}` has impossible dimensions {dims:?}"
                ))
            })?;
        if dims[0] % block != 0 {
            return Err(GgufError::Invalid(format!(
                "tensor `{name}`: first dimension {} is not a multiple of the {type_name} block size {block}",
                dims[0]
            )));
        }
        let size = (elements / block)
            .checked_mul(bytes)
            .ok_or_else(|| GgufError::Invalid(format!("tensor `{name}` is impossibly large")))?;
        if offset % alignment != 0 {
            return Err(GgufError::Invalid(format!(
                "tensor `{name}` data offset {offset} is not aligned to {alignment}"
            )));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            size,
        });
    }

    let data_offset = r.pos.div_ceil(alignment) * alignment;
    let data_len = file_size.saturating_sub(data_offset);
    for t in &tensors {
        let end = t.offset.checked_add(t.size);
        if end.is_none_or(|end| end > data_len) {
            return Err(GgufError::Truncated(format!(
                "tensor `{}` needs bytes {}..{} of the data section, which has only {data_len} bytes",
                t.name,
                t.offset,
                t.offset.saturating_add(t.size)
            )));
        }
    }
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        data_offset,
        file_size,
    })
}

/// A bounds-checked little-endian reader.
struct Reader<R> {
    inner: R,
    pos: u64,
    size: u64,
}

impl<R: Read> Reader<R> {
    fn bytes(&mut self, buf: &mut [u8], what: &str) -> Result<(), GgufError> {
        if self.pos + buf.len() as u64 > self.size {
            return Err(GgufError::Truncated(format!(
                "the file ends at byte {} inside the {what}",
                self.size
            )));
        }
        self.inner
            .read_exact(buf)
            .map_err(|e| GgufError::Io(e.to_string()))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), GgufError> {
        if self.pos.checked_add(n).is_none_or(|end| end > self.size) {
            return Err(GgufError::Truncated(format!(
                "the {what} runs past the end of the file"
            )));
        }
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(|e| GgufError::Io(e.to_string()))?;
        self.pos += copied;
        Ok(())
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        let mut b = [0u8; 4];
        self.bytes(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        let mut b = [0u8; 8];
        self.bytes(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        if len > self.size - self.pos || len > 64 << 20 {
            return Err(GgufError::Invalid(format!(
                "a {what} claims {len} bytes, more than the file holds"
            )));
        }
        let mut buf = vec![0u8; len as usize];
        self.bytes(&mut buf, what)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn value(&mut self, value_type: u32, key: &str) -> Result<MetaValue, GgufError> {
        let scalar = |bytes: &[u8], signed: bool| -> i128 {
            let mut wide = [0u8; 16];
            wide[..bytes.len()].copy_from_slice(bytes);
            let unsigned = u128::from_le_bytes(wide);
            if signed && bytes[bytes.len() - 1] & 0x80 != 0 {
                (unsigned as i128) - (1i128 << (bytes.len() * 8))
            } else {
                unsigned as i128
            }
        };
        Ok(match value_type {
            0 | 1 | 7 => {
                let mut b = [0u8; 1];
                self.bytes(&mut b, key)?;
                if value_type == 7 {
                    MetaValue::Bool(b[0] != 0)
                } else {
                    MetaValue::Int(scalar(&b, value_type == 1))
                }
            }
            2 | 3 => {
                let mut b = [0u8; 2];
                self.bytes(&mut b, key)?;
                MetaValue::Int(scalar(&b, value_type == 3))
            }
            4 | 5 => {
                let mut b = [0u8; 4];
                self.bytes(&mut b, key)?;
                MetaValue::Int(scalar(&b, value_type == 5))
            }
            10 | 11 => {
                let mut b = [0u8; 8];
                self.bytes(&mut b, key)?;
                MetaValue::Int(scalar(&b, value_type == 11))
            }
            6 => {
                let mut b = [0u8; 4];
                self.bytes(&mut b, key)?;
                MetaValue::Float(f32::from_le_bytes(b) as f64)
            }
            12 => {
                let mut b = [0u8; 8];
                self.bytes(&mut b, key)?;
                MetaValue::Float(f64::from_le_bytes(b))
            }
            8 => MetaValue::Str(self.string(key)?),
            9 => {
                let elem_type = self.u32(key)?;
                let len = self.u64(key)?;
                if len > self.size - self.pos {
                    return Err(GgufError::Invalid(format!(
                        "metadata array `{key}` claims {len} elements, more than the file holds"
                    )));
                }
                match elem_type {
                    0 | 1 | 7 => self.skip(len, key)?,
                    2 | 3 => self.skip(len * 2, key)?,
                    4..=6 => self.skip(len * 4, key)?,
                    10..=12 => self.skip(len * 8, key)?,
                    8 => {
                        for _ in 0..len {
                            let n = self.u64(key)?;
                            self.skip(n, key)?;
                        }
                    }
                    other => {
                        return Err(GgufError::Invalid(format!(
                            "metadata array `{key}` has element type {other} (nested or unknown)"
                        )));
                    }
                }
                MetaValue::Array { elem_type, len }
            }
            other => {
                return Err(GgufError::Invalid(format!(
                    "metadata `{key}` has unknown value type {other}"
                )));
            }
        })
    }
}

/// (name, elements per block, bytes per block) of each ggml tensor type; the sizes
/// follow ggml's `block_*` structs.
fn type_traits(ty: u32) -> Option<(&'static str, u64, u64)> {
    Some(match ty {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        40 => ("NVFP4", 64, 36),
        41 => ("Q1_0", 128, 18),
        42 => ("Q2_0", 64, 18),
        _ => return None,
    })
}

/// llama.cpp's `llama_ftype` names for `general.file_type`.
fn file_type_name(ft: i128) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
