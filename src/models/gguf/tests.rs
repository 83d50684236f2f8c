use super::*;

/// Writes a small, valid GGUF v3 file: two metadata entries, a string array, and two
/// F32 tensors with their data.
fn valid_gguf() -> Vec<u8> {
    let mut out = Vec::new();
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend(2u64.to_le_bytes()); // tensors
    out.extend(4u64.to_le_bytes()); // metadata
    string(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes());
    string(&mut out, "llama");
    string(&mut out, "llama.context_length");
    out.extend(4u32.to_le_bytes());
    out.extend(2048u32.to_le_bytes());
    string(&mut out, "general.file_type");
    out.extend(4u32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    string(&mut out, "tokenizer.ggml.tokens");
    out.extend(9u32.to_le_bytes());
    out.extend(8u32.to_le_bytes());
    out.extend(2u64.to_le_bytes());
    string(&mut out, "a");
    string(&mut out, "bc");
    for (name, offset) in [("w1", 0u64), ("w2", 32u64)] {
        string(&mut out, name);
        out.extend(2u32.to_le_bytes());
        out.extend(4u64.to_le_bytes());
        out.extend(2u64.to_le_bytes());
        out.extend(0u32.to_le_bytes()); // F32
        out.extend(offset.to_le_bytes());
    }
    while out.len() % 32 != 0 {
        out.push(0);
    }
    out.extend(vec![0u8; 64]); // 2 tensors × 8 floats
    out
}

fn parse(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    fs_err::write(&path, bytes).unwrap();
    read_header(&path)
}

/// Byte offset of the first tensor entry's type field: after the name "w1", its
/// u32 dimension count and two u64 dimensions.
fn first_tensor_type_offset(bytes: &[u8]) -> usize {
    let name = bytes.windows(2).rposition(|w| w == b"w1").unwrap();
    name + 2 + 4 + 16
}

#[test]
fn valid_file_reads_metadata_and_tensors() {
    let header = parse(&valid_gguf()).unwrap();
    assert_eq!(header.version, 3);
    assert_eq!(header.architecture(), Some("llama"));
    assert_eq!(header.arch_int("context_length"), Some(2048));
    assert_eq!(header.quantization(), "F32");
    assert_eq!(header.parameter_count(), 16);
    assert_eq!(header.tensors.len(), 2);
    assert_eq!(
        header.metadata["tokenizer.ggml.tokens"],
        MetaValue::Array {
            elem_type: 8,
            len: 2
        }
    );
}

#[test]
fn bad_magic_and_version_are_refused() {
    let mut bytes = valid_gguf();
    bytes[0] = b'X';
    assert_eq!(parse(&bytes).unwrap_err(), GgufError::BadMagic);
    let mut bytes = valid_gguf();
    bytes[4] = 1;
    assert_eq!(parse(&bytes).unwrap_err(), GgufError::UnsupportedVersion(1));
    assert!(matches!(parse(b"GG").unwrap_err(), GgufError::Truncated(_)));
    assert!(matches!(parse(b"").unwrap_err(), GgufError::Truncated(_)));
}

#[test]
fn truncated_tensor_data_is_refused() {
    let bytes = valid_gguf();
    let cut = &bytes[..bytes.len() - 10];
    let err = parse(cut).unwrap_err();
    assert!(
        matches!(&err, GgufError::Truncated(m) if m.contains("w2")),
        "{err}"
    );
}

#[test]
fn absurd_counts_are_refused_without_allocating() {
    let mut bytes = valid_gguf();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(parse(&bytes).unwrap_err(), GgufError::Invalid(_)));
    // A string length far beyond the file.
    let mut bytes = valid_gguf();
    bytes[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(parse(&bytes).unwrap_err(), GgufError::Invalid(_)));
}

#[test]
fn unknown_tensor_type_and_too_many_dims_are_refused() {
    let bytes = valid_gguf();
    let ty = first_tensor_type_offset(&bytes);
    let mut unknown = bytes.clone();
    unknown[ty..ty + 4].copy_from_slice(&99u32.to_le_bytes());
    let err = parse(&unknown).unwrap_err();
    assert!(
        matches!(&err, GgufError::Invalid(m) if m.contains("unknown type id 99")),
        "{err}"
    );

    let dims_at = bytes.windows(2).rposition(|w| w == b"w1").unwrap() + 2;
    let mut dims = bytes.clone();
    dims[dims_at..dims_at + 4].copy_from_slice(&9u32.to_le_bytes());
    let err = parse(&dims).unwrap_err();
    assert!(
        matches!(&err, GgufError::Invalid(m) if m.contains("9 dimensions")),
        "{err}"
    );
}

#[test]
fn every_prefix_of_a_valid_file_fails_cleanly() {
    // No panic and no success for any truncation point.
    let bytes = valid_gguf();
    for len in 0..bytes.len() - 1 {
        assert!(
            parse(&bytes[..len]).is_err(),
            "prefix of {len} bytes was accepted"
        );
    }
}
