//! openai-whisper's assets as the converter needs them: the `.tiktoken` vocabularies and
//! the mel filter bank in `mel_filters.npz` (a zip of `.npy` arrays), each read bounded.

use std::io::{BufReader, Read};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

use super::ImportError::{self, MissingAsset};
use super::{MAX_ASSET_BYTES, byte_size};

/// A vocabulary as whisper.cpp stores it: each token's i32 length and bytes.
pub(super) struct Tokens {
    pub(super) count: u64,
    pub(super) encoded: Vec<u8>,
}

/// Reads a `.tiktoken` file: a base64 token and its rank per line, in rank order.
pub(super) fn read_tokens(path: &Path, n_vocab: u64) -> Result<Tokens, ImportError> {
    let bad = |why: String| Err(MissingAsset(format!("{}: {why}", path.display())));
    let (mut count, mut encoded) = (0, Vec::new());
    for (i, line) in read_asset(path)?.split(|&b| b == b'\n').enumerate() {
        let Some(field) = line.split(u8::is_ascii_whitespace).find(|f| !f.is_empty()) else {
            continue;
        };
        // Padding is dropped: `multilingual.tiktoken` ends with the token `=`, which
        // Python's lenient decoder (and so the reference converter) reads as empty.
        let unpadded = field.strip_suffix(b"=").unwrap_or(field);
        let unpadded = unpadded.strip_suffix(b"=").unwrap_or(unpadded);
        let Ok(token) = STANDARD_NO_PAD.decode(unpadded) else {
            return bad(format!("line {} is not base64", i + 1));
        };
        encoded.extend((token.len() as u32).to_le_bytes()); // shorter than the file
        encoded.extend(token);
        count += 1;
    }
    if count == 0 || count > n_vocab {
        return bad(format!("{count} tokens for a model of {n_vocab}"));
    }
    Ok(Tokens { count, encoded })
}

/// A mel filter bank: its shape and little-endian f32 data.
pub(super) struct MelFilters {
    pub(super) rows: u64,
    pub(super) cols: u64,
    pub(super) data: Vec<u8>,
}

/// Reads `mel_<n_mels>.npy` from `mel_filters.npz` (a zip of `.npy` arrays).
pub(super) fn read_mel_filters(path: &Path, n_mels: u64) -> Result<MelFilters, ImportError> {
    let member = format!("mel_{n_mels}.npy");
    let bad = |why: String| MissingAsset(format!("{} (`{member}`): {why}", path.display()));
    let file = fs_err::File::open(path).map_err(|e| MissingAsset(e.to_string()))?;
    let zip = zip::ZipArchive::new(BufReader::new(file));
    let mut zip = zip.map_err(|e| bad(e.to_string()))?;
    let entry = zip.by_name(&member).map_err(|e| bad(e.to_string()))?;
    let mut npy = Vec::new();
    let read = entry.take(MAX_ASSET_BYTES).read_to_end(&mut npy);
    read.map_err(|e| bad(e.to_string()))?;
    let (shape, data) = parse_npy(&npy).map_err(bad)?;
    let data = data.to_vec();
    match shape[..] {
        [rows, cols] if rows == n_mels => Ok(MelFilters { rows, cols, data }),
        _ => Err(bad(format!("shape {shape:?}, expected ({n_mels}, n)"))),
    }
}

/// Parses a `.npy` array of little-endian f32 in C order into its shape and data.
fn parse_npy(npy: &[u8]) -> Result<(Vec<u64>, &[u8]), String> {
    let rest = npy.strip_prefix(b"\x93NUMPY").ok_or("not a .npy array")?;
    let (len, start) = match rest {
        [1, _, a, b, ..] => (u16::from_le_bytes([*a, *b]).into(), 10usize),
        [2 | 3, _, a, b, c, d, ..] => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, 12),
        _ => return Err("unknown .npy version".into()),
    };
    let header = npy
        .get(start..start.saturating_add(len))
        .ok_or("truncated")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let value = |key: &str| {
        let at = header
            .find(&format!("'{key}':"))
            .ok_or(format!("no `{key}`"))?;
        Ok::<_, String>(header[at + key.len() + 3..].trim_start())
    };
    let f32_c = value("descr")?.starts_with("'<f4'");
    if !f32_c || !value("fortran_order")?.starts_with("False") {
        return Err(format!("not a C-order little-endian f32 array: {header}"));
    }
    let shape = value("shape")?
        .strip_prefix('(')
        .and_then(|s| s.split(')').next());
    let dims = shape.ok_or("bad shape")?.split(',').map(str::trim);
    let dims = dims.filter(|s| !s.is_empty()).map(|d| d.parse::<u64>());
    let dims = dims
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let data = &npy[start + len..];
    if byte_size(&dims, 4) != Some(data.len() as u64) {
        return Err(format!(
            "shape {dims:?} does not match {} data bytes",
            data.len()
        ));
    }
    Ok((dims, data))
}

fn read_asset(path: &Path) -> Result<Vec<u8>, ImportError> {
    let file = fs_err::File::open(path).map_err(|e| MissingAsset(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_ASSET_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ASSET_BYTES {
        let why = format!("{} is over {MAX_ASSET_BYTES} bytes", path.display());
        return Err(MissingAsset(why));
    }
    Ok(bytes)
}
