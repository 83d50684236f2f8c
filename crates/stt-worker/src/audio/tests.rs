//! Real speech in every supported format, made at test time from a LibriVox clip with Debian's
//! sox and ffmpeg, and the client-facing failures. A missing tool or clip fails the test with
//! what to install; nothing is skipped.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::*;

/// 7.1 s of 16 kHz mono 16-bit speech (apt package `pocketsphinx-testdata`).
const CLIP: &str =
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav";
const CLIP_SECONDS: f64 = 7.1;
const INSTALL: &str = "apt-get install sox libsox-fmt-all ffmpeg pocketsphinx-testdata";
const NO_LIMIT: Limits = Limits {
    max_seconds: 3600.0,
};

/// The clip; its absence fails the test.
fn clip() -> &'static Path {
    let clip = Path::new(CLIP);
    assert!(
        clip.is_file(),
        "the LibriVox clip {CLIP} is missing: {INSTALL}"
    );
    clip
}

/// Runs a tool; a missing or failing tool fails the test.
fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    clip();
    let output = Command::new(tool).args(args).stdin(Stdio::null()).output();
    let output = output.unwrap_or_else(|e| panic!("`{tool}` could not run ({e}): {INSTALL}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "`{tool} {}` failed: {stderr}",
        args.join(" ")
    );
    output.stdout
}

/// The clip converted by ffmpeg (`args` are the output options) into `dir/file`.
fn ffmpeg(dir: &TempDir, file: &str, args: &[&str]) -> PathBuf {
    let out = dir.path().join(file);
    let mut all = vec!["-v", "error", "-y", "-i", CLIP];
    all.extend_from_slice(args);
    all.push(out.to_str().expect("temp paths are UTF-8"));
    run("ffmpeg", &all);
    out
}

/// The clip converted by sox (`args` are the output options) into `dir/file`.
fn sox(dir: &TempDir, file: &str, args: &[&str]) -> PathBuf {
    let out = dir.path().join(file);
    let mut all = vec![CLIP];
    all.extend_from_slice(args);
    all.push(out.to_str().expect("temp paths are UTF-8"));
    run("sox", &all);
    out
}

/// The clip's samples as sox reads them: a reference independent of the code under test.
fn reference() -> Vec<f32> {
    let raw = run(
        "sox",
        &[
            CLIP,
            "-t",
            "raw",
            "-e",
            "floating-point",
            "-b",
            "32",
            "-L",
            "-",
        ],
    );
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn decode_all(path: &Path, name: Option<&str>) -> Result<(AudioInfo, Vec<f32>), AudioError> {
    let mut samples = Vec::new();
    let info = decode(path, name, &NO_LIMIT, |piece| {
        samples.extend_from_slice(piece);
        true
    })?;
    Ok((info, samples))
}

fn write(dir: &TempDir, file: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(file);
    fs_err::write(&path, bytes).expect("writing to a temp dir");
    path
}

/// Normalised correlation of `a[i]` with `b[i + lag]` over their overlap.
fn correlation(a: &[f32], b: &[f32], lag: isize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (i, &x) in a.iter().enumerate() {
        let Some(&y) = i.checked_add_signed(lag).and_then(|j| b.get(j)) else {
            continue;
        };
        (ab, aa, bb) = (
            ab + f64::from(x * y),
            aa + f64::from(x * x),
            bb + f64::from(y * y),
        );
    }
    ab / (aa * bb).sqrt().max(f64::MIN_POSITIVE)
}

/// The best correlation of `decoded` with `reference` over lags within ±100 ms (a codec's
/// delay), and that lag: searched at 4 kHz on a 3 s excerpt from 1 s in, refined at 16 kHz.
fn best_match(reference: &[f32], decoded: &[f32]) -> (f64, isize) {
    // `start` is where the excerpt sits in `decoded` at lag 0.
    let best = |excerpt: &[f32], decoded: &[f32], lags: RangeInclusive<isize>, start: isize| {
        lags.map(|lag| (correlation(excerpt, decoded, start + lag), lag))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(0, |(_, lag)| lag)
    };
    let quarter = |s: &[f32]| {
        s.chunks(4)
            .map(|c| c.iter().sum::<f32>() / 4.0)
            .collect::<Vec<_>>()
    };
    let excerpt = &reference[16_000..64_000];
    let coarse = 4 * best(&quarter(excerpt), &quarter(decoded), -400..=400, 4_000);
    let lag = best(excerpt, decoded, coarse - 4..=coarse + 4, 16_000);
    (correlation(reference, decoded, lag), lag)
}

/// Decodes `path` and holds it to the original: duration within 2 %, the best lag (the codec's
/// delay left in the output) as given, and the correlation there at least `min_correlation`.
fn check(
    path: &Path,
    (container, codec): (&str, &str),
    lag: isize,
    min_correlation: f64,
) -> AudioInfo {
    let name = path.file_name().and_then(|n| n.to_str());
    let (info, samples) = decode_all(path, name).expect("decodes");
    let seconds = samples.len() as f64 / f64::from(SAMPLE_RATE);
    let (correlation, best_lag) = best_match(&reference(), &samples);
    eprintln!("{name:?}: {info:?}, {seconds:.4} s out, correlation {correlation:.5} at {best_lag}");
    assert_eq!((info.container, info.codec), (container, codec));
    assert!(
        (seconds / CLIP_SECONDS - 1.0).abs() < 0.02,
        "{seconds} s decoded"
    );
    assert!(
        (info.seconds / CLIP_SECONDS - 1.0).abs() < 0.02,
        "{} s reported",
        info.seconds
    );
    assert_eq!(best_lag, lag, "the best lag");
    assert!(
        correlation >= min_correlation,
        "correlation {correlation} < {min_correlation}"
    );
    info
}

// Measured correlations (ffmpeg 5.1 / sox 14.4 on Debian 12): 1.00000 for 16- and 24-bit PCM,
// FLAC and 44.1 kHz stereo PCM; 0.998 for 8-bit PCM; 0.9997 for 64 kb/s MP3 and AAC and
// 1.0000 for 128 kb/s stereo MP3; 0.994 for Vorbis; 0.988 for 32 kb/s Opus. The thresholds
// leave room for other encoder versions, not for a broken decoder.

#[test]
fn wav_16k_mono_is_passed_through_exactly() {
    let info = check(clip(), ("WAV", "PCM"), 0, 0.999_99);
    assert_eq!((info.source_rate, info.channels), (16_000, 1));
}

#[test]
fn wav_8_and_24_bit() {
    let dir = TempDir::new().unwrap();
    check(
        &sox(&dir, "8bit.wav", &["-b", "8"]),
        ("WAV", "PCM"),
        0,
        0.995,
    );
    check(
        &sox(&dir, "24bit.wav", &["-b", "24"]),
        ("WAV", "PCM"),
        0,
        0.999_99,
    );
}

#[test]
fn wav_44k_stereo_is_downmixed_and_resampled() {
    let dir = TempDir::new().unwrap();
    let wav = sox(&dir, "s.wav", &["-r", "44100", "-c", "2"]);
    let info = check(&wav, ("WAV", "PCM"), 0, 0.999);
    assert_eq!((info.source_rate, info.channels), (44_100, 2));
}

#[test]
fn flac() {
    let dir = TempDir::new().unwrap();
    check(&ffmpeg(&dir, "a.flac", &[]), ("FLAC", "FLAC"), 0, 0.999_99);
}

#[test]
fn mp3_without_its_encoder_delay() {
    let dir = TempDir::new().unwrap();
    check(
        &ffmpeg(&dir, "a.mp3", &["-b:a", "64k"]),
        ("MP3", "MP3"),
        0,
        0.995,
    );
    let stereo = ffmpeg(&dir, "s.mp3", &["-ar", "44100", "-ac", "2", "-b:a", "128k"]);
    assert_eq!(check(&stereo, ("MP3", "MP3"), 0, 0.995).source_rate, 44_100);
}

#[test]
fn ogg_vorbis() {
    let dir = TempDir::new().unwrap();
    check(
        &ffmpeg(&dir, "a.ogg", &["-c:a", "libvorbis"]),
        ("Ogg", "Vorbis"),
        0,
        0.98,
    );
}

#[test]
fn opus_in_ogg_and_webm() {
    let dir = TempDir::new().unwrap();
    let opus = ["-c:a", "libopus", "-b:a", "32k"];
    let info = check(&ffmpeg(&dir, "a.opus", &opus), ("Ogg", "Opus"), 0, 0.97);
    assert_eq!((info.source_rate, info.channels), (48_000, 1));
    check(&ffmpeg(&dir, "a.webm", &opus), ("WebM", "Opus"), 0, 0.97);
    // What browsers record: no sizes, no duration, no cues; the stream ends at the file's end.
    let live = [&opus[..], &["-f", "webm", "-live", "1"]].concat();
    check(&ffmpeg(&dir, "live.webm", &live), ("WebM", "Opus"), 0, 0.97);
}

#[test]
fn m4a_and_raw_aac_keep_the_encoder_delay() {
    // Symphonia's AAC decoder does not trim the encoder's priming (1024 samples from ffmpeg).
    let dir = TempDir::new().unwrap();
    let aac = ["-c:a", "aac", "-b:a", "64k"];
    check(&ffmpeg(&dir, "a.m4a", &aac), ("MP4", "AAC"), 1024, 0.995);
    let adts = [&aac[..], &["-f", "adts"]].concat();
    check(&ffmpeg(&dir, "a.aac", &adts), ("AAC", "AAC"), 1024, 0.995);
}

/// Decodes a file that must fail, checks the text holds nothing internal, returns the error.
fn fails(path: &Path, name: Option<&str>) -> AudioError {
    let error = decode_all(path, name)
        .map(|(info, _)| info)
        .expect_err("must fail");
    let text = error.to_string();
    let dir = path.parent().and_then(Path::to_str).unwrap_or("/");
    for internal in [
        dir,
        "symphonia",
        "malformed",
        "ogg:",
        "mkv:",
        "isomp4",
        "riff",
        "Error",
    ] {
        assert!(!text.contains(internal), "{text:?} contains {internal:?}");
    }
    eprintln!("{name:?}: {text}");
    error
}

#[test]
fn empty_and_missing_files() {
    let dir = TempDir::new().unwrap();
    let error = fails(&write(&dir, "a.wav", b""), Some("a.wav"));
    assert!(matches!(error, AudioError::Empty), "{error:?}");
    // The server's fault, not the client's: the path stays in the source, for logs.
    let error = fails(&dir.path().join("missing.wav"), None);
    assert!(matches!(error, AudioError::Io(_)), "{error:?}");
    assert_eq!(error.to_string(), "the uploaded file could not be read");
}

#[test]
fn tags_and_cover_art_before_the_audio() {
    let dir = TempDir::new().unwrap();
    let cover = dir.path().join("cover.png");
    let noise = "nullsrc=s=600x600,geq=random(1)*255:128:128";
    let args = ["-v", "error", "-f", "lavfi", "-i", noise, "-frames:v", "1"];
    run("ffmpeg", &[&args[..], &[cover.to_str().unwrap()]].concat());
    let with_cover = |file: &str, extra: &[&str]| {
        let path = dir.path().join(file);
        let inputs = [
            "-i",
            cover.to_str().unwrap(),
            "-map",
            "0:a",
            "-map",
            "1",
            "-c:v",
            "copy",
        ];
        ffmpeg(&dir, file, &[&inputs[..], extra].concat());
        path
    };
    let mp3 = with_cover("tagged.mp3", &["-b:a", "64k", "-id3v2_version", "3"]);
    assert!(
        fs_err::metadata(&mp3).unwrap().len() > 400_000,
        "a large ID3 tag"
    );
    check(&mp3, ("MP3", "MP3"), 0, 0.995);
    check(
        &with_cover("tagged.flac", &["-disposition:v", "attached_pic"]),
        ("FLAC", "FLAC"),
        0,
        0.999_99,
    );
    // Cut off inside the tag: there is no audio yet.
    let bytes = fs_err::read(&mp3).unwrap();
    let error = fails(&write(&dir, "cut.mp3", &bytes[..100_000]), Some("cut.mp3"));
    assert!(
        matches!(
            error,
            AudioError::Truncated {
                at_seconds: 0.0,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn not_audio() {
    let dir = TempDir::new().unwrap();
    let text = write(&dir, "notes", b"Minutes of the meeting, 3 March.\n");
    let error = fails(&text, Some("notes.wav"));
    assert!(
        matches!(
            error,
            AudioError::ExtensionMismatch {
                extension: "wav",
                claimed: "WAV audio",
                actual: "text"
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains(".wav"), "{error}");
    let error = fails(&text, None);
    assert!(
        matches!(error, AudioError::NotAudio { looks_like: "text" }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("WAV, MP3, FLAC, Ogg Vorbis, Opus"),
        "{error}"
    );
    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let noise = write(&dir, "noise", &noise);
    let error = fails(&noise, Some("blob"));
    assert!(matches!(
        error,
        AudioError::NotAudio {
            looks_like: "unrecognised binary data"
        }
    ));
    let pdf = write(&dir, "doc", b"%PDF-1.7\n%\xE2\xE3\n1 0 obj");
    let error = fails(&pdf, Some("talk.mp3"));
    assert!(matches!(
        error,
        AudioError::ExtensionMismatch {
            actual: "a PDF document",
            ..
        }
    ));
}

#[test]
fn extension_that_lies_about_the_content() {
    let dir = TempDir::new().unwrap();
    let error = fails(clip(), Some("talk.mp3"));
    assert!(
        matches!(
            error,
            AudioError::ExtensionMismatch {
                extension: "mp3",
                claimed: "MP3 audio",
                actual: "WAV audio"
            }
        ),
        "{error:?}"
    );
    let opus = ffmpeg(&dir, "a.opus", &["-c:a", "libopus"]);
    let error = fails(&opus, Some("talk.M4A"));
    assert!(
        matches!(
            error,
            AudioError::ExtensionMismatch {
                extension: "m4a",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn extension_families_and_unknown_extensions() {
    let dir = TempDir::new().unwrap();
    let opus = ffmpeg(&dir, "a.opus", &["-c:a", "libopus"]);
    let webm = ffmpeg(&dir, "a.webm", &["-c:a", "libopus"]);
    let m4a = ffmpeg(&dir, "a.m4a", &["-c:a", "aac"]);
    let mp3 = ffmpeg(&dir, "a.mp3", &[]);
    let cases = [
        (&opus, ["x.ogg", "x.OGA", "x.opus"]),
        (&webm, ["x.webm", "x.mkv", "blob"]),
        (&m4a, ["x.mp4", "x.aac", "recording.bin"]),
        (&mp3, ["x.mpga", "C:\\Users\\a.b\\x.mp3", "no extension"]),
    ];
    for (path, names) in cases {
        for name in names {
            let decoded = decode_all(path, Some(name));
            assert!(decoded.is_ok(), "{name}: {:?}", decoded.err());
        }
    }
    assert!(decode_all(clip(), Some("x.WAVE")).is_ok());
}

/// The first half of `path`, as a cut-off upload.
fn first_half(dir: &TempDir, path: &Path) -> PathBuf {
    let bytes = fs_err::read(path).unwrap();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap();
    write(dir, &format!("half-{name}"), &bytes[..bytes.len() / 2])
}

#[test]
fn truncated_files_name_where_they_end() {
    let dir = TempDir::new().unwrap();
    let mp3 = ffmpeg(&dir, "a.mp3", &["-b:a", "64k"]);
    for path in [mp3, ffmpeg(&dir, "a.flac", &[]), clip().to_path_buf()] {
        let error = fails(&first_half(&dir, &path), None);
        let AudioError::Truncated {
            at_seconds,
            expected_seconds: Some(expected),
            ..
        } = error
        else {
            panic!("{path:?}: {error:?}")
        };
        assert!(
            (2.5..4.0).contains(&at_seconds),
            "{path:?} ends at {at_seconds}"
        );
        assert!(
            (expected - CLIP_SECONDS).abs() < 0.1,
            "{path:?} says {expected}"
        );
    }
    // Ogg states no length up front: the cut shows as a page that ends early.
    let ogg = first_half(&dir, &ffmpeg(&dir, "a.ogg", &["-c:a", "libvorbis"]));
    let error = fails(&ogg, None);
    assert!(
        matches!(
            error,
            AudioError::Truncated {
                expected_seconds: None,
                ..
            }
        ),
        "{error:?}"
    );
    // An M4A written by ffmpeg keeps its index at the end: nothing is left to decode.
    let m4a = first_half(&dir, &ffmpeg(&dir, "a.m4a", &["-c:a", "aac"]));
    let error = fails(&m4a, None);
    assert!(
        matches!(
            error,
            AudioError::Truncated {
                at_seconds: 0.0,
                ..
            }
        ),
        "{error:?}"
    );
}

/// `path` with its bytes from `from` on replaced by noise.
fn garbled(dir: &TempDir, path: &Path, from: usize, every: usize) -> PathBuf {
    let mut bytes = fs_err::read(path).unwrap();
    let mut state = 0x2545_f491_u32;
    for byte in bytes.iter_mut().skip(from).step_by(every) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        *byte = state as u8;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap();
    write(dir, &format!("garbled-{from}-{every}-{name}"), &bytes)
}

#[test]
fn mostly_garbage_fails_instead_of_decoding_to_silence() {
    let dir = TempDir::new().unwrap();
    let files = [
        ffmpeg(&dir, "a.mp3", &["-b:a", "64k"]),
        ffmpeg(&dir, "a.flac", &[]),
        ffmpeg(&dir, "a.m4a", &["-c:a", "aac", "-movflags", "+faststart"]),
        ffmpeg(&dir, "a.webm", &["-c:a", "libopus"]),
        ffmpeg(&dir, "a.opus", &["-c:a", "libopus"]),
    ];
    for path in &files {
        // Everything after the first 4 KiB: the headers survive, the audio does not.
        let error = fails(&garbled(&dir, path, 4096, 1), None);
        assert!(
            matches!(
                error,
                AudioError::Corrupt { .. } | AudioError::CorruptHeader { .. }
            ),
            "{path:?}: {error:?}"
        );
        // One byte in three from there: damage throughout.
        let error = fails(&garbled(&dir, path, 4096, 3), None);
        assert!(
            matches!(
                error,
                AudioError::Corrupt { .. } | AudioError::CorruptHeader { .. }
            ),
            "{path:?}: {error:?}"
        );
    }
}

#[test]
fn no_audio_track_and_unsupported_codecs() {
    let dir = TempDir::new().unwrap();
    let video = dir.path().join("v.webm");
    let video_args = [
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=1:size=64x64:rate=5",
    ];
    run(
        "ffmpeg",
        &[
            &video_args[..],
            &["-c:v", "libvpx", video.to_str().unwrap()],
        ]
        .concat(),
    );
    let error = fails(&video, None);
    assert!(
        matches!(error, AudioError::NoAudioTrack { container: "WebM" }),
        "{error:?}"
    );
    let cases = [
        ("alac.m4a", "alac", "ALAC"),
        ("ac3.mka", "ac3", "AC-3"),
        ("speex.ogg", "libspeex", "Speex"),
    ];
    for (file, encoder, codec) in cases {
        let error = fails(&ffmpeg(&dir, file, &["-c:a", encoder]), None);
        assert!(
            matches!(error, AudioError::UnsupportedCodec { codec: c, .. } if c == codec),
            "{error:?}"
        );
    }
}

/// The clip with its WAV header's fields patched (offsets as in a canonical 44-byte header).
fn patched_wav(dir: &TempDir, file: &str, offset: usize, value: &[u8]) -> PathBuf {
    let mut bytes = fs_err::read(clip()).unwrap();
    bytes[offset..offset + value.len()].copy_from_slice(value);
    write(dir, file, &bytes)
}

#[test]
fn absurd_parameters() {
    let dir = TempDir::new().unwrap();
    assert_eq!(
        &fs_err::read(clip()).unwrap()[36..40],
        b"data",
        "a canonical header"
    );
    let error = fails(
        &patched_wav(&dir, "rate.wav", 24, &1u32.to_le_bytes()),
        None,
    );
    assert!(
        matches!(error, AudioError::InvalidParameters { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("1 Hz"), "{error}");
    let error = fails(
        &patched_wav(&dir, "channels.wav", 22, &0u16.to_le_bytes()),
        None,
    );
    assert!(
        matches!(
            error,
            AudioError::InvalidParameters { .. } | AudioError::CorruptHeader { .. }
        ),
        "{error:?}"
    );
    let error = fails(
        &patched_wav(&dir, "silent.wav", 40, &0u32.to_le_bytes()),
        None,
    );
    assert!(
        matches!(error, AudioError::NoSamples { container: "WAV" }),
        "{error:?}"
    );
}

#[test]
fn too_long_stops_at_the_limit() {
    let dir = TempDir::new().unwrap();
    let mp3 = ffmpeg(&dir, "a.mp3", &[]);
    // Declared far past the limit: refused before decoding anything.
    let mut delivered = 0;
    let error = decode(&mp3, None, &Limits { max_seconds: 2.0 }, |s| {
        delivered += s.len();
        true
    });
    assert!(
        matches!(error, Err(AudioError::TooLong { limit_seconds: 2.0 })),
        "{error:?}"
    );
    assert_eq!(delivered, 0);
    // Close to the limit: decoding stops as soon as it is passed.
    let limits = Limits { max_seconds: 6.5 };
    for path in [mp3.as_path(), clip()] {
        let mut delivered = 0;
        let error = decode(path, None, &limits, |s| {
            delivered += s.len();
            true
        });
        let error = error.expect_err("too long");
        assert_eq!(
            error.to_string(),
            "the audio is longer than the limit of 6.5 s"
        );
        assert!(
            delivered <= 6 * 16_000 + 8_000 && delivered > 5 * 16_000,
            "{delivered} samples"
        );
    }
}

#[test]
fn sink_returning_false_cancels() {
    let dir = TempDir::new().unwrap();
    for path in [
        ffmpeg(&dir, "a.m4a", &["-c:a", "aac", "-ar", "44100"]),
        clip().to_path_buf(),
    ] {
        let mut calls = 0;
        let result = decode(&path, None, &NO_LIMIT, |_| {
            calls += 1;
            false
        });
        assert!(matches!(result, Err(AudioError::Cancelled)), "{result:?}");
        assert_eq!(calls, 1);
    }
}

#[test]
fn resampler_is_band_limited() {
    // 1 kHz passes at full level; 10 kHz (above the 8 kHz Nyquist) is filtered, not aliased.
    for (rate, tone, min, max) in [(44_100, 1_000.0, 0.99, 1.01), (48_000, 10_000.0, 0.0, 0.01)] {
        let input: Vec<f32> = (0..rate * 3)
            .map(|i| (std::f64::consts::TAU * tone * f64::from(i) / f64::from(rate)).sin() as f32)
            .collect();
        let mut output = Vec::new();
        let mut resampler = To16k::new(rate).unwrap();
        let mut sink = |s: &[f32]| {
            output.extend_from_slice(s);
            true
        };
        for block in input.chunks(1000) {
            resampler.push(block, &mut sink).unwrap();
        }
        resampler.finish(&mut sink).unwrap();
        assert_eq!(output.len(), 48_000);
        let rms =
            |s: &[f32]| (s.iter().map(|x| f64::from(x * x)).sum::<f64>() / s.len() as f64).sqrt();
        let ratio = rms(&output[4_000..44_000]) / rms(&input);
        assert!(
            (min..=max).contains(&ratio),
            "{tone} Hz at {rate} Hz: level {ratio}"
        );
    }
}

#[test]
fn damaged_files_never_panic() {
    let dir = TempDir::new().unwrap();
    let files = [
        clip().to_path_buf(),
        ffmpeg(&dir, "a.mp3", &[]),
        ffmpeg(&dir, "a.flac", &[]),
        ffmpeg(&dir, "a.ogg", &["-c:a", "libvorbis"]),
        ffmpeg(&dir, "a.opus", &["-c:a", "libopus"]),
        ffmpeg(&dir, "a.webm", &["-c:a", "libopus"]),
        ffmpeg(&dir, "a.m4a", &["-c:a", "aac", "-movflags", "+faststart"]),
        ffmpeg(&dir, "a.aac", &["-c:a", "aac", "-f", "adts"]),
    ];
    let mut state = 0x9e37_79b9_u64;
    let mut next = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below.max(1) as u64) as usize
    };
    for path in &files {
        let original = fs_err::read(path).unwrap();
        for round in 0..24 {
            let mut bytes = original.clone();
            match round % 3 {
                0 => bytes.truncate(next(bytes.len())),
                1 => (0..1 + next(16)).for_each(|_| {
                    let at = next(bytes.len());
                    bytes[at] = next(256) as u8;
                }),
                _ => {
                    let at = next(512.min(bytes.len()));
                    bytes[at..]
                        .iter_mut()
                        .take(64)
                        .for_each(|b| *b = next(256) as u8);
                }
            }
            let mutated = write(&dir, "mutated", &bytes);
            let _ = decode_all(&mutated, None);
        }
    }
}
