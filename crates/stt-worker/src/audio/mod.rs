//! Audio input for speech-to-text: one uploaded file in, 16 kHz mono `f32` samples out,
//! the form whisper.cpp takes.
//!
//! This module owns format detection (the content is sniffed and checked against the client's
//! file name), demuxing and decoding (symphonia; Opus through libopus), down-mixing,
//! band-limited resampling (rubato's FFT resampler) and the duration limit. It streams: each
//! packet is decoded, down-mixed, resampled and handed to the caller's sink before the next is
//! read, so memory stays bounded however long the file is.
//!
//! It must not hold a whole decoded file, panic on any input, or put anything internal (paths,
//! library messages) into an [`AudioError`]'s text: those texts are sent to clients as the
//! reason for a 400.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use symphonia::core::errors::Error as DecodeFailure;
use symphonia::core::formats::FormatReader;
use symphonia::core::packet::Packet;

use codec::{Outcome, Stream};
use resample::To16k;
use sniff::Kind;
use source::{Upload, UploadState};

mod codec;
mod resample;
mod sniff;
mod source;
#[cfg(test)]
mod tests;

/// The sample rate of every sample handed to the sink: what whisper.cpp takes.
pub const SAMPLE_RATE: u32 = 16_000;

/// What the error texts list as supported.
const SUPPORTED: &str = "WAV, MP3, FLAC, Ogg Vorbis, Opus (Ogg or WebM), M4A/AAC, WebM";
/// Source sample rates and channel counts past these are refused as absurd (telephone audio
/// is 8 kHz; studio masters reach 384 kHz).
const MIN_RATE: u32 = 4_000;
const MAX_RATE: u32 = 384_000;
const MAX_CHANNELS: usize = 32;
/// A file is corrupt, not merely damaged, past this many bad packets in a row, or when more
/// than a tenth of its packets (once there are this many bad ones) fail to decode.
const MAX_BAD_IN_A_ROW: u64 = 16;
const MIN_BAD_TO_FAIL: u64 = 8;
/// A jump forward on the container's clock larger than this means data was skipped.
const MAX_JUMP_SECONDS: f64 = 0.05;

/// Bounds on one decode.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest audio accepted, in seconds. Decoding stops with [`AudioError::TooLong`] as
    /// soon as more than this has been decoded (or at once, when the container declares a
    /// duration well past it).
    pub max_seconds: f64,
}

/// What was decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// The container, as sniffed from the content: `WAV`, `MP3`, `FLAC`, `Ogg`, `WebM`,
    /// `Matroska`, `MP4` or `AAC` (raw ADTS).
    pub container: &'static str,
    /// The codec of the decoded track: `PCM`, `ADPCM`, `MP3`, `FLAC`, `Vorbis`, `Opus`, `AAC`.
    pub codec: &'static str,
    /// The track's sample rate before resampling (48000 for Opus, which libopus decodes
    /// straight to 16 kHz).
    pub source_rate: u32,
    /// The track's channel count before down-mixing.
    pub channels: u32,
    /// The decoded duration in seconds.
    pub seconds: f64,
}

/// Why a file could not be decoded. Every text but [`AudioError::Io`]'s and
/// [`AudioError::Internal`]'s describes the client's file, names nothing internal and is meant
/// as a 400 reason; `Io` and `Internal` are the server's fault (500), and `Cancelled` is the
/// caller's own doing.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file has no bytes.
    #[error("the file is empty")]
    Empty,
    /// The content is in no supported format, and the name did not claim one either.
    #[error(
        "the file is not audio in a supported format: its content looks like {looks_like}; \
         supported formats are {SUPPORTED}"
    )]
    NotAudio {
        /// What the content looks like instead ("text", "a PDF document", ...).
        looks_like: &'static str,
    },
    /// The file name's extension claims one format and the content is another.
    #[error(
        "the file name ends in .{extension}, which means {claimed}, but its content is {actual}"
    )]
    ExtensionMismatch {
        /// The extension, lower-cased (only known audio extensions are ever compared).
        extension: &'static str,
        /// The format that extension means.
        claimed: &'static str,
        /// What the content is.
        actual: &'static str,
    },
    /// A known container that holds no audio track.
    #[error("the {container} file has no audio track")]
    NoAudioTrack {
        /// The container.
        container: &'static str,
    },
    /// A known container whose audio is in a codec that is not decoded here.
    #[error(
        "the {container} file's audio is {codec}, which is not supported; supported formats are {SUPPORTED}"
    )]
    UnsupportedCodec {
        /// The container.
        container: &'static str,
        /// The codec found.
        codec: &'static str,
    },
    /// A supported codec using a feature the decoder lacks (a profile, multichannel Opus, ...).
    #[error("the {container} file's {codec} audio uses a feature that is not supported")]
    UnsupportedFeature {
        /// The container.
        container: &'static str,
        /// The codec.
        codec: &'static str,
    },
    /// The container's header could not be read.
    #[error("the {container} file's header is damaged or incomplete")]
    CorruptHeader {
        /// The container.
        container: &'static str,
    },
    /// The data stops making sense, or much of it is not audio.
    #[error("the {container} file is corrupt{}", corruption(*.at_seconds))]
    Corrupt {
        /// The container.
        container: &'static str,
        /// Roughly where, in seconds of audio, when that is known.
        at_seconds: Option<f64>,
    },
    /// The file ends before its audio does.
    #[error("the {container} file is truncated: {}", truncation(*.at_seconds, *.expected_seconds))]
    Truncated {
        /// The container.
        container: &'static str,
        /// How much audio there was.
        at_seconds: f64,
        /// How much the container says there should be, when it says.
        expected_seconds: Option<f64>,
    },
    /// The audio is longer than [`Limits::max_seconds`].
    #[error("the audio is longer than the limit of {limit_seconds} s")]
    TooLong {
        /// The limit.
        limit_seconds: f64,
    },
    /// Stream parameters no real recording has (no channels, a 3 Hz sample rate, ...).
    #[error("the {container} file declares {detail}")]
    InvalidParameters {
        /// The container.
        container: &'static str,
        /// What is wrong, in words.
        detail: String,
    },
    /// The file decoded but holds no samples.
    #[error("the {container} file contains no audio samples")]
    NoSamples {
        /// The container.
        container: &'static str,
    },
    /// The sink returned `false`.
    #[error("decoding was cancelled")]
    Cancelled,
    /// The uploaded file could not be read (the source, for logs, names the path).
    #[error("the uploaded file could not be read")]
    Io(#[source] io::Error),
    /// A bug here, not a property of the file.
    #[error("internal error while decoding the audio")]
    Internal,
}

fn corruption(at: Option<f64>) -> String {
    match at {
        Some(at) => format!(" at about {at:.1} s"),
        None => ": much of it is not audio".to_owned(),
    }
}

fn truncation(at: f64, expected: Option<f64>) -> String {
    match expected {
        Some(expected) if at > 0.0 => {
            format!("it ends at {at:.1} s but its header says {expected:.1} s")
        }
        Some(expected) => format!("its header says {expected:.1} s but it ends before any audio"),
        None if at > 0.0 => format!("it ends abruptly at {at:.1} s"),
        None => "it ends before any audio".to_owned(),
    }
}

/// Decodes `path` packet by packet, down-mixes to mono, resamples to 16 kHz and hands the
/// samples to `sink` in pieces as they are produced; `sink` returns `false` to stop, which
/// ends the decode with [`AudioError::Cancelled`]. `name` is the client's file name: a known
/// audio extension must agree with the content (`.ogg`/`.oga`/`.opus`, `.webm`/`.mkv`,
/// `.m4a`/`.mp4`/`.aac` and `.mp3`/`.mpga`/`.mpeg` are each one family); with no name, no
/// extension or an unknown one, the content alone decides.
///
/// A few undecodable packets are skipped; a file that is mostly bad fails. When this returns
/// an error the sink may already have had some samples: discard them.
pub fn decode(
    path: &Path,
    name: Option<&str>,
    limits: &Limits,
    mut sink: impl FnMut(&[f32]) -> bool,
) -> Result<AudioInfo, AudioError> {
    let file = fs_err::File::open(path).map_err(AudioError::Io)?;
    let len = file.metadata().map_err(AudioError::Io)?.len();
    if len == 0 {
        return Err(AudioError::Empty);
    }
    let mut file = file.into_file();
    let (sniffed, audio_start) = sniff::sniff(&mut file).map_err(AudioError::Io)?;
    let kind = sniff::check_name(name, sniffed)?;
    let mut decoding = Decoding::open(file, len, audio_start, kind)?;
    // Refuse at once what the container says is far too long (a little slack for estimates).
    if (decoding.stream.declared_seconds).is_some_and(|s| s > limits.max_seconds * 1.1 + 1.0) {
        return Err(AudioError::TooLong {
            limit_seconds: limits.max_seconds,
        });
    }
    decoding.run(limits, &mut sink)
}

/// One decode in progress.
struct Decoding {
    kind: Kind,
    state: Arc<UploadState>,
    format: Box<dyn FormatReader>,
    stream: Stream,
    info: AudioInfo,
    resampler: Option<To16k>,
    health: Health,
    /// Whether the container's size fields reach past the end of the file.
    cut_short: bool,
    /// Whether the demuxer stopped at the end of the file rather than the end of its data.
    ended_at_eof: bool,
    /// The bytes of the file from where the audio starts, and those that made packets.
    audio_bytes: u64,
    packet_bytes: u64,
    /// The end of the last packet on the container's clock, where it first jumped ahead, and
    /// by how much in all.
    timeline_end: Option<f64>,
    first_gap: Option<f64>,
    skipped_seconds: f64,
}

impl Decoding {
    fn open(mut file: File, len: u64, audio_start: u64, kind: Kind) -> Result<Self, AudioError> {
        let container = kind.container();
        let cut_short =
            sniff::cut_short(kind, &mut file, len, audio_start).map_err(AudioError::Io)?;
        let state = Arc::new(UploadState::default());
        let mut format = Upload::probe(&file, len, true, &state);
        // Symphonia's Ogg reader refuses a file with a damaged page where it looks for the
        // duration, near the end; read as a stream, it skips damaged pages.
        if format.is_err() && kind == Kind::Ogg {
            format = Upload::probe(&file, len, false, &state);
        }
        let Ok(format) = format else {
            return Err(if state.failed.get().is_some() {
                state.io_error()
            } else if let Some(codec) = sniff::ogg_unsupported_codec(kind, &mut file) {
                AudioError::UnsupportedCodec { container, codec }
            } else if cut_short {
                let expected_seconds = None;
                AudioError::Truncated {
                    container,
                    at_seconds: 0.0,
                    expected_seconds,
                }
            } else {
                AudioError::CorruptHeader { container }
            });
        };
        // Readers look at the file's end while opening (durations, trailing tags).
        state.reached_end.store(false, Ordering::Relaxed);
        let stream = Stream::open(format.as_ref(), container)?;
        let info = AudioInfo {
            container,
            codec: stream.codec_name,
            source_rate: stream.rate.unwrap_or(0),
            channels: stream.channels.unwrap_or(1),
            seconds: 0.0,
        };
        Ok(Decoding {
            kind,
            state,
            format,
            stream,
            info,
            resampler: None,
            health: Health::default(),
            cut_short,
            ended_at_eof: false,
            audio_bytes: len.saturating_sub(audio_start),
            packet_bytes: 0,
            timeline_end: None,
            first_gap: None,
            skipped_seconds: 0.0,
        })
    }

    fn run(
        &mut self,
        limits: &Limits,
        sink: &mut dyn FnMut(&[f32]) -> bool,
    ) -> Result<AudioInfo, AudioError> {
        let container = self.info.container;
        let (mut scratch, mut mono) = (Vec::new(), Vec::new());
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                // A chained Ogg stream starts a new logical stream: pick its track afresh.
                Err(DecodeFailure::ResetRequired) => {
                    self.stream = Stream::open(self.format.as_ref(), container)?;
                    continue;
                }
                Err(e) => match self.demux_error(e) {
                    Some(error) => return Err(error),
                    None => break,
                },
            };
            if packet.track_id != self.stream.id {
                continue;
            }
            self.note_timeline(&packet);
            match (self.stream.decoder).decode(&packet, &mut scratch, &mut mono, container)? {
                Outcome::Decoded(rate) => {
                    self.health.good();
                    if !mono.is_empty() {
                        self.deliver(rate, &mono, limits, sink)?;
                    }
                }
                outcome if self.health.bad(outcome, self.info.seconds) => {
                    return Err(self.failure());
                }
                _ => {}
            }
        }
        if let Some(mut resampler) = self.resampler.take() {
            resampler.finish(sink)?;
        }
        if self.health.good == 0 {
            return Err(match self.health.bad {
                0 => AudioError::NoSamples { container },
                _ => self.failure(),
            });
        }
        self.check_complete()?;
        Ok(self.info.clone())
    }

    /// Counts, checks and resamples one packet's samples.
    fn deliver(
        &mut self,
        rate: u32,
        mono: &[f32],
        limits: &Limits,
        sink: &mut dyn FnMut(&[f32]) -> bool,
    ) -> Result<(), AudioError> {
        check_rate(rate, self.info.container)?;
        self.info.seconds += mono.len() as f64 / f64::from(rate);
        if self.info.seconds > limits.max_seconds {
            return Err(AudioError::TooLong {
                limit_seconds: limits.max_seconds,
            });
        }
        if self.info.source_rate == 0 {
            self.info.source_rate = rate;
        }
        let resampler = match &mut self.resampler {
            Some(resampler) if resampler.rate == rate => resampler,
            slot => {
                if let Some(mut old) = slot.take() {
                    old.finish(sink)?;
                }
                slot.insert(To16k::new(rate)?)
            }
        };
        resampler.push(mono, sink)
    }

    /// Follows the container's clock: a jump forward means the demuxer skipped damaged data.
    fn note_timeline(&mut self, packet: &Packet) {
        self.packet_bytes += packet.data.len() as u64;
        let Some(base) = self.stream.time_base else {
            return;
        };
        let (Some(start), Some(length)) =
            (base.calc_time(packet.pts), base.calc_duration(packet.dur))
        else {
            return;
        };
        let start = start.as_secs_f64();
        if let Some(end) = self.timeline_end
            && start > end + MAX_JUMP_SECONDS
        {
            self.first_gap.get_or_insert(end);
            self.skipped_seconds += start - end;
        }
        self.timeline_end = Some(start + length.as_secs_f64());
    }

    /// Fails a decode that lost more than a little: to pages and frames the Ogg and FLAC
    /// demuxers skip for bad checksums (the clock shows how much), or short of the duration the
    /// container declares (which may be an estimate, as for an MP3 without a Xing header).
    fn check_complete(&self) -> Result<(), AudioError> {
        let (container, at_seconds) = (self.info.container, self.info.seconds);
        let slack = |seconds: f64| (0.05 * seconds).max(0.5);
        let skips = matches!(self.kind, Kind::Ogg | Kind::Flac);
        if skips && self.skipped_seconds > slack(self.timeline_end.unwrap_or_default()) {
            let at_seconds = self.first_gap;
            return Err(AudioError::Corrupt {
                container,
                at_seconds,
            });
        }
        let Some(expected) = self.stream.declared_seconds else {
            return Ok(());
        };
        if expected - at_seconds <= slack(expected) {
            return Ok(());
        }
        // Missing audio is damage, not a cut, when the clock jumped, when an MPEG stream (whose
        // reader skips junk silently) made packets of little of the file, or when the demuxer
        // reached the end of its data before the end of the file.
        let junk = self.packet_bytes * 10 < self.audio_bytes * 9;
        let corrupt_at = match self.kind {
            _ if self.first_gap.is_some() => Some(self.first_gap),
            Kind::Mp3 | Kind::Adts if junk => Some(None),
            Kind::Mp3 | Kind::Adts | Kind::Flac => None,
            _ if !self.ended_at_eof => Some(self.health.first_bad),
            _ => None,
        };
        Err(match corrupt_at {
            Some(at_seconds) => AudioError::Corrupt {
                container,
                at_seconds,
            },
            None => AudioError::Truncated {
                container,
                at_seconds,
                expected_seconds: Some(expected),
            },
        })
    }

    /// What a demuxer error means for the client; `None` when it is the normal end.
    fn demux_error(&mut self, error: DecodeFailure) -> Option<AudioError> {
        let container = self.info.container;
        let at_seconds = self.info.seconds;
        let expected_seconds = self.stream.declared_seconds;
        match error {
            _ if self.state.failed.get().is_some() => Some(self.state.io_error()),
            DecodeFailure::IoError(e)
                if e.kind() == io::ErrorKind::UnexpectedEof
                    && self.state.reached_end.load(Ordering::Relaxed) =>
            {
                self.ended_at_eof = true;
                // Streamed WAV and WebM (what browsers record) carry no sizes: their readers
                // only learn of the end from the file's. A declared duration is checked later.
                let sizeless = matches!(self.kind, Kind::Wav | Kind::Webm | Kind::Matroska);
                if sizeless || expected_seconds.is_some() {
                    return None;
                }
                Some(AudioError::Truncated {
                    container,
                    at_seconds,
                    expected_seconds,
                })
            }
            _ if self.cut_short => Some(AudioError::Truncated {
                container,
                at_seconds,
                expected_seconds,
            }),
            _ => Some(AudioError::Corrupt {
                container,
                at_seconds: Some(at_seconds),
            }),
        }
    }

    /// Why a decode that gave up on its packets failed.
    fn failure(&self) -> AudioError {
        let (container, codec) = (self.info.container, self.stream.codec_name);
        match self.health {
            // Nothing decoded, and the decoder said why: a feature it lacks.
            Health {
                good: 0,
                unsupported: 1..,
                ..
            } => AudioError::UnsupportedFeature { container, codec },
            Health { first_bad, .. } => AudioError::Corrupt {
                container,
                at_seconds: first_bad,
            },
        }
    }
}

/// Counts of decoded and undecodable packets, to tell a damaged file from garbage.
#[derive(Default)]
struct Health {
    good: u64,
    bad: u64,
    bad_in_a_row: u64,
    /// Bad packets whose decoder said they use a feature it lacks.
    unsupported: u64,
    /// Where the first bad packet was, in decoded seconds.
    first_bad: Option<f64>,
}

impl Health {
    fn good(&mut self) {
        self.good += 1;
        self.bad_in_a_row = 0;
    }

    /// Records a bad packet at `at_seconds`; true when the file should be given up on.
    fn bad(&mut self, outcome: Outcome, at_seconds: f64) -> bool {
        self.bad += 1;
        self.bad_in_a_row += 1;
        self.unsupported += u64::from(outcome == Outcome::Unsupported);
        self.first_bad.get_or_insert(at_seconds);
        self.bad_in_a_row >= MAX_BAD_IN_A_ROW
            || (self.bad >= MIN_BAD_TO_FAIL && self.bad * 10 > self.good + self.bad)
    }
}

fn check_rate(rate: u32, container: &'static str) -> Result<(), AudioError> {
    if (MIN_RATE..=MAX_RATE).contains(&rate) {
        return Ok(());
    }
    let detail = format!("a sample rate of {rate} Hz (supported: {MIN_RATE} to {MAX_RATE} Hz)");
    Err(AudioError::InvalidParameters { container, detail })
}

fn check_channels(channels: usize, container: &'static str) -> Result<(), AudioError> {
    let detail = match channels {
        0 => "no audio channels".to_owned(),
        1..=MAX_CHANNELS => return Ok(()),
        n => format!("{n} audio channels (at most {MAX_CHANNELS} are supported)"),
    };
    Err(AudioError::InvalidParameters { container, detail })
}
