//! Choosing the audio track and decoding its packets to mono `f32` at the track's rate:
//! symphonia's decoders, and libopus for Opus (which symphonia lacks).

use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::well_known::*;
use symphonia::core::codecs::audio::{
    AudioCodecId, AudioCodecParameters, AudioDecoder, AudioDecoderOptions,
};
use symphonia::core::errors::Error as DecodeFailure;
use symphonia::core::formats::{FormatReader, Track, TrackFlags};
use symphonia::core::packet::Packet;
use symphonia::core::units::TimeBase;

use super::{AudioError, SAMPLE_RATE, check_channels, check_rate};

/// The longest Opus frame (120 ms) at 16 kHz, and a bound on a sane Opus packet (the RFC's
/// maximum is 120 ms of 1275-byte frames).
const OPUS_MAX_FRAME: usize = 1_920;
const OPUS_MAX_PACKET: usize = 128 * 1024;

/// The audio track being decoded and its decoder.
pub(super) struct Stream {
    pub(super) id: u32,
    pub(super) codec_name: &'static str,
    pub(super) rate: Option<u32>,
    pub(super) channels: Option<u32>,
    /// The duration the container states, when it does.
    pub(super) declared_seconds: Option<f64>,
    /// The unit of packet timestamps.
    pub(super) time_base: Option<TimeBase>,
    pub(super) decoder: Decoder,
}

impl Stream {
    /// Picks the container's default audio track if it can be decoded, else the first that can.
    pub(super) fn open(
        format: &dyn FormatReader,
        container: &'static str,
    ) -> Result<Self, AudioError> {
        let audio: Vec<(&Track, &AudioCodecParameters)> = (format.tracks().iter())
            .filter_map(|track| match &track.codec_params {
                Some(CodecParameters::Audio(params)) => Some((track, params)),
                _ => None,
            })
            .collect();
        let Some(&(_, first)) = audio.first() else {
            return Err(AudioError::NoAudioTrack { container });
        };
        let codecs = symphonia::default::get_codecs();
        let decodable = |id| id == CODEC_ID_OPUS || codecs.get_audio_decoder(id).is_some();
        let (track, params) = (audio.iter().copied())
            .filter(|(_, params)| decodable(params.codec))
            .min_by_key(|(track, _)| !track.flags.contains(TrackFlags::DEFAULT))
            .ok_or(AudioError::UnsupportedCodec {
                container,
                codec: codec_name(first.codec),
            })?;
        let codec_name = codec_name(params.codec);
        if let Some(rate) = params.sample_rate {
            check_rate(rate, container)?;
        }
        if let Some(channels) = &params.channels {
            check_channels(channels.count(), container)?;
        }
        let declared_seconds = match (track.time_base, track.duration, track.num_frames) {
            (Some(base), Some(duration), _) => {
                base.calc_duration(duration).map(|t| t.as_secs_f64())
            }
            (_, _, Some(frames)) => {
                (params.sample_rate).map(|rate| frames as f64 / f64::from(rate))
            }
            _ => None,
        };
        let decoder = Decoder::open(params, container, codec_name)?;
        let (rate, channels) = match &decoder {
            // libopus decodes straight to 16 kHz, but Opus itself runs at 48 kHz.
            Decoder::Opus(opus) => (Some(48_000), Some(opus.channels)),
            Decoder::Symphonia(_) => {
                let channels = params.channels.as_ref().map(|c| c.count() as u32);
                (params.sample_rate, channels)
            }
        };
        Ok(Stream {
            id: track.id,
            codec_name,
            rate,
            channels,
            declared_seconds,
            time_base: track.time_base,
            decoder,
        })
    }
}

/// What became of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Decoded (maybe to nothing) at this sample rate.
    Decoded(u32),
    /// Undecodable.
    Bad,
    /// Undecodable, the decoder says for a feature it lacks (or garbage that looks like one).
    Unsupported,
}

/// A track's decoder.
pub(super) enum Decoder {
    Symphonia(Box<dyn AudioDecoder>),
    Opus(Opus),
}

impl Decoder {
    fn open(
        params: &AudioCodecParameters,
        container: &'static str,
        codec: &'static str,
    ) -> Result<Self, AudioError> {
        if params.codec == CODEC_ID_OPUS {
            return Opus::open(params, container).map(Decoder::Opus);
        }
        let options = AudioDecoderOptions::default();
        match symphonia::default::get_codecs().make_audio_decoder(params, &options) {
            Ok(decoder) => Ok(Decoder::Symphonia(decoder)),
            Err(DecodeFailure::Unsupported(_)) => {
                Err(AudioError::UnsupportedFeature { container, codec })
            }
            Err(_) => Err(AudioError::CorruptHeader { container }),
        }
    }

    /// Decodes one packet into `mono`.
    pub(super) fn decode(
        &mut self,
        packet: &Packet,
        scratch: &mut Vec<f32>,
        mono: &mut Vec<f32>,
        container: &'static str,
    ) -> Result<Outcome, AudioError> {
        mono.clear();
        let decoder = match self {
            Decoder::Opus(opus) => return Ok(opus.decode(packet, mono)),
            Decoder::Symphonia(decoder) => decoder,
        };
        let buffer = match decoder.decode(packet) {
            Ok(buffer) => buffer,
            Err(DecodeFailure::Unsupported(_)) => return Ok(Outcome::Unsupported),
            Err(_) => return Ok(Outcome::Bad),
        };
        let channels = buffer.spec().channels().count();
        if buffer.frames() > 0 {
            check_channels(channels, container)?;
            buffer.copy_to_vec_interleaved::<f32>(scratch);
            let scale = 1.0 / channels as f32;
            mono.extend(scratch.chunks_exact(channels).map(|frame| {
                let sample = frame.iter().sum::<f32>() * scale;
                if sample.is_finite() { sample } else { 0.0 }
            }));
        }
        Ok(Outcome::Decoded(buffer.spec().rate()))
    }
}

/// libopus, decoding straight to 16 kHz mono (it band-limits and down-mixes itself).
pub(super) struct Opus {
    decoder: opus::Decoder,
    channels: u32,
    /// Output samples still to drop: the encoder's pre-skip.
    skip: usize,
}

impl Opus {
    fn open(params: &AudioCodecParameters, container: &'static str) -> Result<Self, AudioError> {
        let codec = "Opus";
        // The identification header (RFC 7845 §5.1): Ogg's first packet, WebM's CodecPrivate.
        let head = params.extra_data.as_deref().unwrap_or_default();
        if head.len() < 19 || !head.starts_with(b"OpusHead") {
            return Err(AudioError::CorruptHeader { container });
        }
        let channels = head[9];
        check_channels(usize::from(channels), container)?;
        // Mapping families other than 0 may carry several streams, which needs libopus's
        // multistream decoder; one stream is an ordinary mono or stereo stream.
        if head[18] != 0 && head.get(19) != Some(&1) {
            return Err(AudioError::UnsupportedFeature { container, codec });
        }
        let pre_skip = u16::from_le_bytes([head[10], head[11]]);
        let gain = i16::from_le_bytes([head[16], head[17]]);
        let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)
            .map_err(|_| AudioError::Internal)?;
        if gain != 0 {
            decoder
                .set_gain(i32::from(gain))
                .map_err(|_| AudioError::CorruptHeader { container })?;
        }
        // Pre-skip counts 48 kHz samples.
        let skip = usize::from(pre_skip).div_ceil(3);
        Ok(Opus {
            decoder,
            channels: u32::from(channels),
            skip,
        })
    }

    /// Decodes one packet into `mono`.
    fn decode(&mut self, packet: &Packet, mono: &mut Vec<f32>) -> Outcome {
        if packet.data.len() > OPUS_MAX_PACKET {
            return Outcome::Bad;
        }
        mono.resize(OPUS_MAX_FRAME, 0.0);
        match self.decoder.decode_float(&packet.data, mono, false) {
            Ok(frames) => mono.truncate(frames),
            Err(_) => {
                mono.clear();
                return Outcome::Bad;
            }
        }
        let skip = self.skip.min(mono.len());
        mono.drain(..skip);
        self.skip -= skip;
        // The demuxer trims the last packet to the stream's end, in 48 kHz samples.
        let trim_end = usize::try_from(packet.trim_end.get() / 3).unwrap_or(usize::MAX);
        mono.truncate(mono.len().saturating_sub(trim_end));
        Outcome::Decoded(SAMPLE_RATE)
    }
}

/// A codec's name for texts and [`super::AudioInfo::codec`].
fn codec_name(id: AudioCodecId) -> &'static str {
    match id {
        CODEC_ID_MP3 => "MP3",
        CODEC_ID_MP1 => "MPEG Layer I",
        CODEC_ID_MP2 => "MPEG Layer II",
        CODEC_ID_AAC => "AAC",
        CODEC_ID_VORBIS => "Vorbis",
        CODEC_ID_OPUS => "Opus",
        CODEC_ID_FLAC => "FLAC",
        CODEC_ID_ALAC => "ALAC",
        CODEC_ID_SPEEX => "Speex",
        CODEC_ID_AC3 => "AC-3",
        CODEC_ID_EAC3 => "E-AC-3",
        CODEC_ID_DCA => "DTS",
        CODEC_ID_WMA => "WMA",
        CODEC_ID_WAVPACK => "WavPack",
        CODEC_ID_TRUEHD => "TrueHD",
        CODEC_ID_MUSEPACK => "Musepack",
        CODEC_ID_ADPCM_G722 => "G.722",
        CODEC_ID_ADPCM_G726 | CODEC_ID_ADPCM_G726LE => "G.726",
        id if (CODEC_ID_PCM_S32LE..=CODEC_ID_PCM_MULAW).contains(&id) => "PCM",
        id if (CODEC_ID_ADPCM_MS..=CODEC_ID_ADPCM_IMA_QT).contains(&id) => "ADPCM",
        _ => "an unrecognised codec",
    }
}
