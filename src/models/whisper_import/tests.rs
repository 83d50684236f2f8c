use std::io::Cursor;

use sha2::{Digest, Sha256};

use super::*;

/// A variable to write: name, shape, CT2 type id, data.
struct Var(String, Vec<u32>, u8, Vec<u8>);

/// The synthetic model's width.
const N: u32 = 4;
const GGUF: &[u8] = b"GGUF\x03\0\0\0\0\0\0\0";

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u16 + 1).to_le_bytes());
    out.extend(s.as_bytes());
    out.push(0);
}

/// A CT2 file; `header(spec)` is its first 4 + 2 + len + 1 + 4 bytes.
fn ct2(spec: &str, vars: &[Var], aliases: &[(&str, &str)]) -> Vec<u8> {
    let mut out = header(spec);
    out.extend((vars.len() as u32).to_le_bytes());
    for Var(name, dims, id, data) in vars {
        string(&mut out, name);
        out.push(dims.len() as u8);
        dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
        out.push(*id);
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
    }
    out.extend((aliases.len() as u32).to_le_bytes());
    for (alias, target) in aliases {
        string(&mut out, alias);
        string(&mut out, target);
    }
    out
}

fn header(spec: &str) -> Vec<u8> {
    let mut out = CT2_VERSION.to_le_bytes().to_vec();
    string(&mut out, spec);
    out.extend(3u32.to_le_bytes()); // the spec revision
    out
}

fn f16s(values: Range<u32>) -> Vec<u8> {
    let f16 = |i| half::f16::from_f32(i as f32).to_le_bytes();
    values.flat_map(f16).collect()
}

fn f32s(values: Range<u32>) -> Vec<u8> {
    values.flat_map(|i| (i as f32).to_le_bytes()).collect()
}

/// Adds a float16 variable holding 0, 1, 2, …, so that every slice is recognisable.
fn counting(v: &mut Vec<Var>, name: &str, dims: &[u32]) {
    let data = f16s(0..dims.iter().product());
    v.push(Var(name.into(), dims.to_vec(), 4, data));
}

fn linear(v: &mut Vec<Var>, name: &str, rows: u32, cols: u32) {
    counting(v, &format!("{name}/weight"), &[rows, cols]);
    counting(v, &format!("{name}/bias"), &[rows]);
}

fn norm(v: &mut Vec<Var>, name: &str) {
    counting(v, &format!("{name}/gamma"), &[N]);
    counting(v, &format!("{name}/beta"), &[N]);
}

/// A Whisper of width N with one layer a side, 8 tokens, 2 mel bins and 2 heads.
fn whisper_vars() -> Vec<Var> {
    let heads = |side| Var(format!("{side}/num_heads"), vec![], 2, vec![2, 0]);
    let mut v = vec![heads("encoder"), heads("decoder")];
    counting(&mut v, "encoder/conv1/weight", &[N, 2, 3]);
    counting(&mut v, "encoder/conv1/bias", &[N]);
    counting(&mut v, "encoder/conv2/weight", &[N, N, 3]);
    counting(&mut v, "encoder/conv2/bias", &[N]);
    counting(&mut v, "encoder/position_encodings/encodings", &[3, N]);
    counting(&mut v, "decoder/position_encodings/encodings", &[2, N]);
    counting(&mut v, "decoder/embeddings/weight", &[8, N]);
    for side in ["encoder", "decoder"] {
        norm(&mut v, &format!("{side}/layer_norm"));
        let l = format!("{side}/layer_0");
        linear(&mut v, &format!("{l}/self_attention/linear_0"), 3 * N, N);
        linear(&mut v, &format!("{l}/self_attention/linear_1"), N, N);
        norm(&mut v, &format!("{l}/self_attention/layer_norm"));
        linear(&mut v, &format!("{l}/ffn/linear_0"), 4 * N, N);
        linear(&mut v, &format!("{l}/ffn/linear_1"), N, 4 * N);
        norm(&mut v, &format!("{l}/ffn/layer_norm"));
    }
    linear(&mut v, "decoder/layer_0/attention/linear_0", N, N);
    linear(&mut v, "decoder/layer_0/attention/linear_1", 2 * N, N);
    linear(&mut v, "decoder/layer_0/attention/linear_2", N, N);
    norm(&mut v, "decoder/layer_0/attention/layer_norm");
    // CT2 stores zeros for the key biases Whisper does not have.
    for (name, keys) in [
        ("encoder/layer_0/self_attention/linear_0/bias", N..2 * N),
        ("decoder/layer_0/self_attention/linear_0/bias", N..2 * N),
        ("decoder/layer_0/attention/linear_1/bias", 0..N),
    ] {
        let var = v.iter_mut().find(|v| v.0 == name).unwrap();
        var.3[2 * keys.start as usize..2 * keys.end as usize].fill(0);
    }
    v
}

fn read(bytes: &[u8]) -> Result<Ct2Model<Cursor<&[u8]>>, ImportError> {
    Ct2Model::read(Cursor::new(bytes), bytes.len() as u64)
}

fn model_dir(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("model.bin"), bytes).unwrap();
    dir
}

/// A vocabulary of `!`, `"` and the empty token, and a 2 × 3 mel filter bank.
fn assets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("gpt2.tiktoken"), "IQ== 0\nIg== 1\n= 2\n").unwrap();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.extend(f32s(0..6));
    let file = fs_err::File::create(dir.path().join("mel_filters.npz")).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("mel_2.npy", options).unwrap();
    zip.write_all(&npy).unwrap();
    zip.finish().unwrap();
    dir
}

fn i32_at(file: &[u8], pos: &mut usize) -> i32 {
    *pos += 4;
    i32::from_le_bytes(file[*pos - 4..*pos].try_into().unwrap())
}

/// A ggml tensor's dims (innermost first), ftype and data.
type GgmlTensor = (Vec<i32>, i32, Vec<u8>);

/// The tensors of a ggml file whose vocabulary ends at byte `pos`, in file order.
fn read_tensors(file: &[u8], mut pos: usize) -> Vec<(String, GgmlTensor)> {
    let (pos, mut tensors) = (&mut pos, Vec::new());
    while *pos < file.len() {
        let [n_dims, name_len, ftype] = [(); 3].map(|_| i32_at(file, pos));
        let dims: Vec<i32> = (0..n_dims).map(|_| i32_at(file, pos)).collect();
        let name = &file[*pos..*pos + name_len as usize];
        *pos += name_len as usize;
        let size = dims.iter().product::<i32>() as usize * if ftype == 1 { 2 } else { 4 };
        let data = file[*pos..*pos + size].to_vec();
        *pos += size;
        tensors.push((
            String::from_utf8(name.to_vec()).unwrap(),
            (dims, ftype, data),
        ));
    }
    tensors
}

#[test]
fn reads_the_index_scalars_and_aliases() {
    let alias = [("decoder/projection/weight", "decoder/embeddings/weight")];
    let bytes = ct2(WHISPER_SPEC, &whisper_vars(), &alias);
    let model = read(&bytes).unwrap();
    assert_eq!(model.scalar("decoder/num_heads").unwrap(), 2);
    assert_eq!(model.dims("decoder/projection/weight").unwrap(), [8, 4]);
    let hp = HParams::read(&model).unwrap();
    assert_eq!(hp.values(), [8, 3, 4, 2, 1, 2, 4, 2, 1, 2]);
}

#[test]
fn splits_fused_attention_into_whisper_tensors() {
    let model = model_dir(&ct2(WHISPER_SPEC, &whisper_vars(), &[]));
    let assets = assets();
    let mut out = Vec::new();
    let c = convert(model.path(), assets.path(), &mut out).unwrap();
    let layers = (c.n_vocab, c.n_audio_layer, c.n_text_layer, c.n_mels);
    assert_eq!(
        (layers, c.multilingual, c.bytes),
        ((8, 1, 1, 2), false, out.len() as u64)
    );
    let header: Vec<i32> = (0..12).map(|i| i32_at(&out, &mut (4 * i))).collect();
    assert_eq!(header, [0x6767_6d6c, 8, 3, 4, 2, 1, 2, 4, 2, 1, 2, 1]);
    assert_eq!(
        out[48..80],
        [&[2, 0, 0, 0, 3, 0, 0, 0], &f32s(0..6)[..]].concat()
    );
    assert_eq!(&out[80..98], b"\x03\0\0\0\x01\0\0\0!\x01\0\0\0\"\0\0\0\0");
    let tensors = read_tensors(&out, 98);
    let names: Vec<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names.len(), 50);
    assert_eq!(
        names[..2],
        ["encoder.positional_embedding", "encoder.conv1.weight"]
    );
    assert!(names.iter().all(|n| !n.ends_with("key.bias")));
    let tensors: HashMap<_, _> = tensors.into_iter().collect();
    let (n, nn) = (N as i32, N * N);
    let block = |side: &str, name: &str| &tensors[&format!("{side}.blocks.0.{name}")];
    // Query, key and value are consecutive blocks of rows of the fused (3N, N) weight.
    let query = (vec![n, n], 1, f16s(0..nn));
    assert_eq!(block("encoder", "attn.query.weight"), &query);
    let key = (vec![n, n], 1, f16s(nn..2 * nn));
    assert_eq!(block("encoder", "attn.key.weight"), &key);
    let value_bias = (vec![n], 0, f32s(2 * N..3 * N));
    assert_eq!(block("decoder", "attn.value.bias"), &value_bias);
    assert_eq!(
        block("decoder", "cross_attn.value.weight").2,
        f16s(nn..2 * nn)
    );
    assert_eq!(block("decoder", "cross_attn.value.bias").2, f32s(N..2 * N));
    assert_eq!(tensors["encoder.conv1.bias"], (vec![1, n], 0, f32s(0..N)));
    assert_eq!(tensors["encoder.conv1.weight"].0, [3, 2, n]);
}

#[test]
fn every_truncation_is_malformed_without_panicking() {
    let bytes = ct2(WHISPER_SPEC, &whisper_vars(), &[]);
    for cut in 0..bytes.len() - 4 {
        let err = read(&bytes[..cut]).err().unwrap().to_string();
        let expected = if cut < 4 {
            "not a CTranslate2"
        } else {
            "malformed"
        };
        assert!(err.starts_with(expected), "cut at {cut}: {err}");
    }
    let Var(name, _, _, data) = whisper_vars().pop().unwrap();
    let cut = bytes.len() - 4 - data.len() + 1;
    let err = read(&bytes[..cut]).err().unwrap().to_string();
    let len = data.len();
    let expected = format!("variable `{name}` claims {len} bytes but the file has 1 left");
    assert!(err.ends_with(&expected), "{err}");
}

#[test]
fn absurd_counts_and_dimensions_are_malformed() {
    let name = "decoder/layer_0/ffn/linear_0/weight";
    let variable = |rank: u8, dims: &[u32], claimed: u32| {
        let mut out = header(WHISPER_SPEC);
        out.extend(1u32.to_le_bytes());
        string(&mut out, name);
        out.push(rank);
        dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
        out.push(4);
        out.extend(claimed.to_le_bytes());
        out.extend([0; 1200]);
        out
    };
    let many_vars = [header(WHISPER_SPEC), u32::MAX.to_le_bytes().into()].concat();
    let mut many_aliases = ct2(WHISPER_SPEC, &[], &[]);
    many_aliases.splice(many_aliases.len() - 4.., u32::MAX.to_le_bytes());
    let huge = format!("variable `{name}` claims 4294967295 bytes but the file has 1200 left");
    let cases = [
        (
            many_vars,
            "claims 4294967295 variables but has 0 bytes left",
        ),
        (many_aliases, "claims 4294967295 aliases"),
        (variable(2, &[u32::MAX, u32::MAX], u32::MAX), &huge),
        (variable(4, &[u32::MAX; 4], 8), "is not 8 bytes"),
        (variable(200, &[], 8), "has rank 200"),
    ];
    for (bytes, expected) in cases {
        let err = read(&bytes).err().unwrap();
        let malformed = matches!(err, Malformed(_));
        assert!(malformed && err.to_string().contains(expected), "{err}");
    }
}

#[test]
fn refuses_what_it_cannot_convert_losslessly() {
    let with = |change: fn(&mut Vec<Var>)| {
        let mut vars = whisper_vars();
        change(&mut vars);
        ct2(WHISPER_SPEC, &vars, &[])
    };
    let int8 = |v: &mut Vec<Var>| {
        let scale = "encoder/layer_0/ffn/linear_0/weight_scale";
        v.push(Var(scale.into(), vec![16], 0, f32s(0..16)));
    };
    let key_bias = |v: &mut Vec<Var>| {
        let cross_kv = "decoder/layer_0/attention/linear_1/bias";
        v.iter_mut().find(|v| v.0 == cross_kv).unwrap().3[0] = 1;
    };
    let cases = [
        (
            GGUF.to_vec(),
            "not a CTranslate2 model: binary version 1179993927, not 6",
        ),
        (
            ct2("TransformerSpec", &whisper_vars(), &[]),
            "unsupported model: spec `TransformerSpec` is not WhisperSpec",
        ),
        (
            with(int8),
            "unsupported model: the model is int8-quantized \
             (`encoder/layer_0/ffn/linear_0/weight_scale`): use a float16 one",
        ),
        (
            with(|v| (v[2].2, v[2].3) = (1, vec![0; 24])),
            "unsupported model: variable `encoder/conv1/weight` is Int(1)",
        ),
        (
            with(key_bias),
            "unsupported model: `decoder/layer_0/attention/linear_1/bias` has a non-zero \
             key bias; Whisper's keys have none",
        ),
        (
            with(|v| counting(v, "decoder/extra", &[2])),
            "unsupported model: variable `decoder/extra` has no whisper.cpp counterpart",
        ),
        (
            with(|v| drop(v.pop())),
            "malformed model file: variable `decoder/layer_0/attention/layer_norm/beta` \
             is missing",
        ),
    ];
    let assets = assets();
    for (bytes, expected) in cases {
        let dir = model_dir(&bytes);
        let mut out = Vec::new();
        let err = convert(dir.path(), assets.path(), &mut out).unwrap_err();
        assert_eq!(err.to_string(), expected);
        assert!(out.is_empty());
    }
    assert!(!is_ct2_whisper(model_dir(GGUF).path()) && !is_ct2_whisper(assets.path()));
    let model = model_dir(&ct2(WHISPER_SPEC, &whisper_vars(), &[]));
    let err = convert(model.path(), model.path(), &mut Vec::new()).unwrap_err();
    let names_vocab =
        matches!(err, ImportError::MissingAsset(ref why) if why.contains("gpt2.tiktoken"));
    assert!(names_vocab, "{err}");
}

/// Hashes and counts what is written, so the test holds no 77 MB buffer.
struct Hashing(Sha256, u64);

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn converts_tiny_en_to_the_reference_ggml_file() {
    let models = crate::models::test_models_dir();
    let model = models.join("faster-whisper-tiny.en");
    let assets = models.join("whisper-assets");
    let vocab = assets.join("gpt2.tiktoken");
    for file in [
        model.join("model.bin"),
        vocab,
        assets.join("mel_filters.npz"),
    ] {
        let hint = "run scripts/fetch-models (or set TEST_MODELS_DIR)";
        assert!(file.is_file(), "{} is missing: {hint}", file.display());
    }
    assert!(is_ct2_whisper(&model));
    let mut hashing = Hashing(Sha256::new(), 0);
    let c = convert(&model, &assets, &mut hashing).unwrap();
    let layers = (c.n_vocab, c.n_audio_layer, c.n_text_layer, c.n_mels);
    assert_eq!((layers, c.multilingual), ((51864, 4, 4, 80), false));
    assert_eq!((c.bytes, hashing.1), (77_704_698, 77_704_698));
    let hash = hashing.0.finalize();
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    let expected = "49b35c0f0fa5e8fe48396546d4c3308e7cc3e8a50589273a99710c76fd373fdf";
    assert_eq!(hex, expected);
}
