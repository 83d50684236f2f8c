//! A finished transcript in each of OpenAI's response formats: `json`, `text`, `srt`,
//! `vtt` and `verbose_json` (segments and/or words), plus whisper's language names.

use std::io::Write;

use serde_json::{Value, json};

use crate::engine::Transcript;
use crate::engine::protocol::{SpeechSegment, SpeechTask};

/// How the client wants the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"text": …}`.
    Json,
    /// Plain text.
    Text,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
    /// Everything: language, duration, segments, words.
    VerboseJson,
}

impl Format {
    /// Parses OpenAI's `response_format`.
    pub fn parse(value: &str) -> Option<Format> {
        Some(match value {
            "json" => Format::Json,
            "text" => Format::Text,
            "srt" => Format::Srt,
            "vtt" => Format::Vtt,
            "verbose_json" => Format::VerboseJson,
            _ => return None,
        })
    }

    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json | Format::VerboseJson => "application/json",
            Format::Text => "text/plain; charset=utf-8",
            Format::Srt => "application/x-subrip; charset=utf-8",
            Format::Vtt => "text/vtt; charset=utf-8",
        }
    }
}

/// Which timings `verbose_json` carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Granularity {
    /// Segments (the default).
    pub segments: bool,
    /// Words.
    pub words: bool,
}

/// Segments as clients may rely on them: times within the audio, never running
/// backwards, each ending at or after its start; empty segments dropped.
pub fn tidy(transcript: &Transcript) -> Vec<SpeechSegment> {
    let duration = transcript.seconds.max(0.0);
    let mut floor = 0.0f64;
    let mut out = Vec::with_capacity(transcript.segments.len());
    for segment in &transcript.segments {
        if segment.text.trim().is_empty() {
            continue;
        }
        let mut s = segment.clone();
        s.start = s.start.clamp(floor, duration);
        s.end = s.end.clamp(s.start, duration);
        floor = s.start;
        let mut word_floor = s.start;
        for w in &mut s.words {
            w.start = w.start.clamp(word_floor, s.end);
            w.end = w.end.clamp(w.start, s.end);
            word_floor = w.end;
        }
        s.index = out.len() as u32;
        out.push(s);
    }
    out
}

/// The response body in `format`.
pub fn render(
    format: Format,
    transcript: &Transcript,
    task: SpeechTask,
    granularity: Granularity,
    temperature: f32,
) -> String {
    let segments = tidy(transcript);
    match format {
        Format::Json => json!({
            "text": transcript.text(),
            "usage": usage(transcript.seconds),
        })
        .to_string(),
        Format::Text => format!("{}\n", transcript.text()),
        Format::Srt => subtitles(&segments, false),
        Format::Vtt => subtitles(&segments, true),
        Format::VerboseJson => {
            let mut body = json!({
                "task": match task {
                    SpeechTask::Transcribe => "transcribe",
                    SpeechTask::Translate => "translate",
                },
                "language": language_name(&transcript.language).unwrap_or(&transcript.language),
                "duration": transcript.seconds,
                "text": transcript.text(),
                "usage": usage(transcript.seconds),
            });
            if granularity.segments || !granularity.words {
                body["segments"] = segments
                    .iter()
                    .map(|s| segment_json(s, temperature))
                    .collect::<Vec<_>>()
                    .into();
            }
            if granularity.words {
                body["words"] = segments
                    .iter()
                    .flat_map(|s| &s.words)
                    .map(|w| json!({"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}))
                    .collect::<Vec<_>>()
                    .into();
            }
            body.to_string()
        }
    }
}

/// OpenAI's usage object for audio billed by duration.
pub fn usage(seconds: f64) -> Value {
    json!({"type": "duration", "seconds": seconds.ceil() as u64})
}

fn segment_json(s: &SpeechSegment, temperature: f32) -> Value {
    json!({
        "id": s.index,
        // Whisper's seek is in 10 ms frames.
        "seek": (s.start * 100.0).round() as u64,
        "start": s.start,
        "end": s.end,
        "text": s.text,
        "tokens": [],
        "temperature": temperature,
        "avg_logprob": s.avg_logprob,
        "compression_ratio": compression_ratio(&s.text),
        "no_speech_prob": s.no_speech_prob,
    })
}

/// Bytes of text over bytes of its zlib compression: whisper's repetition measure
/// (a looping hallucination compresses very well).
fn compression_ratio(text: &str) -> f64 {
    let bytes = text.trim().as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    if encoder.write_all(bytes).is_err() {
        return 0.0;
    }
    match encoder.finish() {
        Ok(compressed) if !compressed.is_empty() => bytes.len() as f64 / compressed.len() as f64,
        _ => 0.0,
    }
}

fn subtitles(segments: &[SpeechSegment], vtt: bool) -> String {
    let mut out = String::new();
    if vtt {
        out.push_str("WEBVTT\n\n");
    }
    for (i, s) in segments.iter().enumerate() {
        if !vtt {
            out.push_str(&format!("{}\n", i + 1));
        }
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(s.start, vtt),
            timestamp(s.end, vtt),
            // A blank line would end the cue early.
            s.text.trim().replace("\n\n", "\n")
        ));
    }
    out
}

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (VTT).
fn timestamp(seconds: f64, vtt: bool) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let sep = if vtt { '.' } else { ',' };
    format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
}

/// Whisper's languages: ISO code and the English name OpenAI's API reports.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("en", "english"),
    ("zh", "chinese"),
    ("de", "german"),
    ("es", "spanish"),
    ("ru", "russian"),
    ("ko", "korean"),
    ("fr", "french"),
    ("ja", "japanese"),
    ("pt", "portuguese"),
    ("tr", "turkish"),
    ("pl", "polish"),
    ("ca", "catalan"),
    ("nl", "dutch"),
    ("ar", "arabic"),
    ("sv", "swedish"),
    ("it", "italian"),
    ("id", "indonesian"),
    ("hi", "hindi"),
    ("fi", "finnish"),
    ("vi", "vietnamese"),
    ("he", "hebrew"),
    ("uk", "ukrainian"),
    ("el", "greek"),
    ("ms", "malay"),
    ("cs", "czech"),
    ("ro", "romanian"),
    ("da", "danish"),
    ("hu", "hungarian"),
    ("ta", "tamil"),
    ("no", "norwegian"),
    ("th", "thai"),
    ("ur", "urdu"),
    ("hr", "croatian"),
    ("bg", "bulgarian"),
    ("lt", "lithuanian"),
    ("la", "latin"),
    ("mi", "maori"),
    ("ml", "malayalam"),
    ("cy", "welsh"),
    ("sk", "slovak"),
    ("te", "telugu"),
    ("fa", "persian"),
    ("lv", "latvian"),
    ("bn", "bengali"),
    ("sr", "serbian"),
    ("az", "azerbaijani"),
    ("sl", "slovenian"),
    ("kn", "kannada"),
    ("et", "estonian"),
    ("mk", "macedonian"),
    ("br", "breton"),
    ("eu", "basque"),
    ("is", "icelandic"),
    ("hy", "armenian"),
    ("ne", "nepali"),
    ("mn", "mongolian"),
    ("bs", "bosnian"),
    ("kk", "kazakh"),
    ("sq", "albanian"),
    ("sw", "swahili"),
    ("gl", "galician"),
    ("mr", "marathi"),
    ("pa", "punjabi"),
    ("si", "sinhala"),
    ("km", "khmer"),
    ("sn", "shona"),
    ("yo", "yoruba"),
    ("so", "somali"),
    ("af", "afrikaans"),
    ("oc", "occitan"),
    ("ka", "georgian"),
    ("be", "belarusian"),
    ("tg", "tajik"),
    ("sd", "sindhi"),
    ("gu", "gujarati"),
    ("am", "amharic"),
    ("yi", "yiddish"),
    ("lo", "lao"),
    ("uz", "uzbek"),
    ("fo", "faroese"),
    ("ht", "haitian creole"),
    ("ps", "pashto"),
    ("tk", "turkmen"),
    ("nn", "nynorsk"),
    ("mt", "maltese"),
    ("sa", "sanskrit"),
    ("lb", "luxembourgish"),
    ("my", "myanmar"),
    ("bo", "tibetan"),
    ("tl", "tagalog"),
    ("mg", "malagasy"),
    ("as", "assamese"),
    ("tt", "tatar"),
    ("haw", "hawaiian"),
    ("ln", "lingala"),
    ("ha", "hausa"),
    ("ba", "bashkir"),
    ("jw", "javanese"),
    ("su", "sundanese"),
    ("yue", "cantonese"),
];

/// The English name of a language code.
pub fn language_name(code: &str) -> Option<&'static str> {
    LANGUAGES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The code of a language given as a code or an English name (any case).
pub fn language_code(value: &str) -> Option<&'static str> {
    let value = value.trim().to_ascii_lowercase();
    LANGUAGES
        .iter()
        .find(|(c, n)| *c == value || *n == value)
        .map(|(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::protocol::SpeechWord;

    fn segment(start: f64, end: f64, text: &str) -> SpeechSegment {
        SpeechSegment {
            index: 0,
            start,
            end,
            text: text.into(),
            avg_logprob: -0.2,
            no_speech_prob: 0.01,
            words: vec![SpeechWord {
                word: text.trim().into(),
                start: start - 1.0,
                end: end + 1.0,
                probability: 0.9,
            }],
        }
    }

    fn transcript() -> Transcript {
        Transcript {
            language: "en".into(),
            seconds: 5.0,
            segments: vec![
                segment(0.0, 2.5, " Hello there."),
                segment(2.0, 1.0, " Backwards."),
                segment(3.0, 9.0, " Past the end."),
                segment(4.0, 4.5, "  "),
            ],
            decode_ms: 1.0,
            inference_ms: 2.0,
        }
    }

    #[test]
    fn subtitles_have_monotonic_times_within_the_audio() {
        let srt = render(
            Format::Srt,
            &transcript(),
            SpeechTask::Transcribe,
            Granularity::default(),
            0.0,
        );
        assert_eq!(
            srt,
            "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n\
             2\n00:00:02,000 --> 00:00:02,000\nBackwards.\n\n\
             3\n00:00:03,000 --> 00:00:05,000\nPast the end.\n\n"
        );
        let vtt = render(
            Format::Vtt,
            &transcript(),
            SpeechTask::Transcribe,
            Granularity::default(),
            0.0,
        );
        assert!(vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n"));
        assert_eq!(timestamp(3725.0071, false), "01:02:05,007");
    }

    #[test]
    fn verbose_json_carries_what_was_asked() {
        let both = Granularity {
            segments: true,
            words: true,
        };
        let body: Value = serde_json::from_str(&render(
            Format::VerboseJson,
            &transcript(),
            SpeechTask::Translate,
            both,
            0.2,
        ))
        .unwrap();
        assert_eq!(body["task"], "translate");
        assert_eq!(body["language"], "english");
        assert_eq!(body["segments"].as_array().unwrap().len(), 3);
        assert_eq!(body["usage"]["seconds"], 5);
        let words = body["words"].as_array().unwrap();
        assert_eq!(words.len(), 3);
        // Word times are clamped into their segment.
        assert_eq!(words[0]["start"], 0.0);
        assert_eq!(words[0]["end"], 2.5);
        let only_words = Granularity {
            segments: false,
            words: true,
        };
        let body: Value = serde_json::from_str(&render(
            Format::VerboseJson,
            &transcript(),
            SpeechTask::Transcribe,
            only_words,
            0.0,
        ))
        .unwrap();
        assert!(body.get("segments").is_none());
        assert_eq!(language_code("English"), Some("en"));
        assert_eq!(language_code("xx"), None);
    }
}
