//! One loaded whisper.cpp model and the requests it runs: audio in (through
//! [`crate::audio`]), events out — `Decoded`, `Progress`, each `Segment` as whisper
//! finishes it, then `Transcribed` with the full detail (token probabilities and word
//! times are only known once a window is done).
//!
//! Failures are reported as fixed messages: whisper.cpp's own error codes and logs go
//! to stderr, which the daemon logs and never shows a client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use appliance_protocol::stdio::emit;
use appliance_protocol::{
    Event, SpeechOptions, SpeechSegment, SpeechTask, SpeechWord, WorkerError,
};
use parking_lot::Mutex;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperSegment,
    WhisperState,
};

use crate::audio;

/// One request as the worker holds it.
pub struct Job {
    /// The uploaded file.
    pub audio: PathBuf,
    /// The client's name for it.
    pub name: Option<String>,
    /// How to transcribe it.
    pub options: SpeechOptions,
    /// Set to stop it (cancel, shutdown).
    pub cancel: Arc<AtomicBool>,
}

/// A loaded model and the whisper states kept for reuse.
pub struct Engine {
    context: WhisperContext,
    states: Mutex<Vec<WhisperState>>,
    threads: u32,
    beam_size: u32,
    model_bytes: u64,
}

impl Engine {
    /// Loads the ggml model at `path`.
    pub fn load(
        path: &Path,
        threads: u32,
        beam_size: u32,
        gpu: bool,
    ) -> Result<Engine, Box<dyn std::error::Error>> {
        // Without a log backend feature this silences whisper.cpp's and ggml's logs on
        // stdout, which carries the protocol.
        whisper_rs::install_logging_hooks();
        let model_bytes = fs_err::metadata(path)?.len();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(gpu);
        // As whisper.cpp's own CLI: about 10 % faster on the CPU, same text.
        params.flash_attn(true);
        let path_text = path.to_str().ok_or("the model path is not UTF-8")?;
        let context = WhisperContext::new_with_params(path_text, params)
            .map_err(|e| format!("whisper.cpp could not load {}: {e:?}", path.display()))?;
        Ok(Engine {
            context,
            states: Mutex::new(Vec::new()),
            threads,
            beam_size,
            model_bytes,
        })
    }

    /// Bytes of the model file.
    pub fn model_bytes(&self) -> u64 {
        self.model_bytes
    }

    /// Runs one request to its end, reporting everything as events. A cancelled request
    /// ends silently (the daemon is no longer listening for it).
    pub fn run(&self, id: u64, job: Job) {
        let outcome = self.transcribe(id, &job);
        if job.cancel.load(Ordering::Acquire) {
            return;
        }
        let result = match outcome {
            Ok(event) => emit(&event),
            Err(error) => emit(&Event::Failed { id, error }),
        };
        if let Err(e) = result {
            eprintln!("stt-worker: cannot write to the daemon: {e}");
        }
    }

    fn transcribe(&self, id: u64, job: &Job) -> Result<Event, WorkerError> {
        let options = &job.options;
        let decode_started = Instant::now();
        let mut samples: Vec<f32> = Vec::new();
        let cancel = job.cancel.clone();
        let info = audio::decode(
            &job.audio,
            job.name.as_deref(),
            &audio::Limits {
                max_seconds: options.max_seconds,
            },
            |piece| {
                samples.extend_from_slice(piece);
                !cancel.load(Ordering::Acquire)
            },
        )
        .map_err(|e| match e {
            // The server's fault, not the file's: a 500, with the detail only in the log.
            audio::AudioError::Io(_) | audio::AudioError::Internal => {
                eprintln!("stt-worker: request {id}: reading the upload failed: {e:?}");
                WorkerError::Decode {
                    message: "the uploaded file could not be read".into(),
                }
            }
            other => WorkerError::Audio {
                message: other.to_string(),
            },
        })?;
        if samples.is_empty() {
            return Err(WorkerError::Audio {
                message: "the file holds no audio samples".into(),
            });
        }
        let decode_ms = decode_started.elapsed().as_secs_f64() * 1000.0;
        let _ = emit(&Event::Decoded {
            id,
            seconds: info.seconds,
            format: format!("{}/{}", info.container, info.codec),
        });

        let mut state = self.state()?;
        let params = self.params(id, options, job.cancel.clone());
        let inference_started = Instant::now();
        let result = state.full(params, &samples);
        drop(samples);
        let inference_ms = inference_started.elapsed().as_secs_f64() * 1000.0;
        if let Err(e) = result {
            if !job.cancel.load(Ordering::Acquire) {
                eprintln!("stt-worker: request {id}: whisper failed: {e:?}");
            }
            self.give_back(state);
            return Err(WorkerError::Decode {
                message: "whisper could not transcribe this audio".into(),
            });
        }
        let eot = self.context.token_eot();
        let segments: Vec<SpeechSegment> = state
            .as_iter()
            .enumerate()
            .map(|(index, segment)| describe(index as u32, &segment, eot, options.word_timestamps))
            .collect();
        // An English-only model detects nothing: its language is English.
        let language = match &options.language {
            Some(language) => language.clone(),
            None if !self.context.is_multilingual() => "en".into(),
            None => whisper_rs::get_lang_str(state.full_lang_id_from_state())
                .unwrap_or("en")
                .to_string(),
        };
        self.give_back(state);
        Ok(Event::Transcribed {
            id,
            language,
            seconds: info.seconds,
            decode_ms,
            inference_ms,
            segments,
        })
    }

    fn params<'a>(
        &self,
        id: u64,
        options: &'a SpeechOptions,
        cancel: Arc<AtomicBool>,
    ) -> FullParams<'a, 'a> {
        let strategy = if self.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: self.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 5 }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(self.threads as i32);
        params.set_translate(options.task == SpeechTask::Translate);
        // The daemon sends only known language codes; anything else means "detect".
        let language = options
            .language
            .as_deref()
            .filter(|l| whisper_rs::get_lang_id(l).is_some())
            .unwrap_or("auto");
        params.set_language(Some(language));
        if let Some(prompt) = options.prompt.as_deref() {
            params.set_initial_prompt(&prompt.replace('\0', ""));
        }
        params.set_temperature(options.temperature);
        params.set_token_timestamps(options.word_timestamps);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        let mut last = 0u8;
        params.set_progress_callback_safe(move |percent: i32| {
            let percent = percent.clamp(0, 100) as u8;
            if percent > last {
                last = percent;
                let _ = emit(&Event::Progress { id, percent });
            }
        });
        params.set_segment_callback_safe_lossy(move |data: whisper_rs::SegmentCallbackData| {
            let _ = emit(&Event::Segment {
                id,
                segment: SpeechSegment {
                    index: data.segment.max(0) as u32,
                    start: centiseconds(data.start_timestamp),
                    end: centiseconds(data.end_timestamp),
                    text: data.text,
                    avg_logprob: 0.0,
                    no_speech_prob: 0.0,
                    words: Vec::new(),
                },
            });
        });
        // whisper-rs 0.16 hands the trampoline a pointer to a boxed `dyn FnMut` but casts
        // it to the closure's own type: only a closure that *is* a `Box<dyn FnMut>` is
        // called correctly (any other reads garbage and aborts every request).
        let abort: Box<dyn FnMut() -> bool> = Box::new(move || cancel.load(Ordering::Acquire));
        params.set_abort_callback_safe::<_, Box<dyn FnMut() -> bool>>(abort);
        params
    }

    /// A whisper state for one request: a kept one, or a new one.
    fn state(&self) -> Result<WhisperState, WorkerError> {
        if let Some(state) = self.states.lock().pop() {
            return Ok(state);
        }
        self.context.create_state().map_err(|e| {
            eprintln!("stt-worker: cannot create a whisper state: {e:?}");
            WorkerError::Decode {
                message: "the speech worker is out of memory for another request".into(),
            }
        })
    }

    fn give_back(&self, state: WhisperState) {
        self.states.lock().push(state);
    }
}

fn centiseconds(t: i64) -> f64 {
    t.max(0) as f64 / 100.0
}

/// A finished segment with its probabilities and, when asked, its words.
fn describe(index: u32, segment: &WhisperSegment<'_>, eot: i32, words: bool) -> SpeechSegment {
    let start = centiseconds(segment.start_timestamp());
    let end = centiseconds(segment.end_timestamp()).max(start);
    let mut logprob_sum = 0f32;
    let mut text_tokens = 0u32;
    let mut builder = WordBuilder::new(start, end);
    for i in 0..segment.n_tokens() {
        let Some(token) = segment.get_token(i) else {
            continue;
        };
        if token.token_id() >= eot {
            continue; // timestamps, language and task markers
        }
        let data = token.token_data();
        logprob_sum += data.plog;
        text_tokens += 1;
        if words {
            let bytes = token.to_bytes().unwrap_or_default();
            builder.push(bytes, centiseconds(data.t0), centiseconds(data.t1), data.p);
        }
    }
    SpeechSegment {
        index,
        start,
        end,
        text: segment
            .to_str_lossy()
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        avg_logprob: if text_tokens > 0 {
            logprob_sum / text_tokens as f32
        } else {
            0.0
        },
        no_speech_prob: segment.no_speech_probability(),
        words: builder.finish(),
    }
}

/// Joins whisper's word pieces into words: a piece that starts with a space starts a
/// word; pieces of punctuation stay with the word before them. Times are kept inside
/// the segment and never run backwards.
struct WordBuilder {
    words: Vec<SpeechWord>,
    bytes: Vec<u8>,
    start: f64,
    end: f64,
    probability: f32,
    floor: f64,
    ceiling: f64,
}

impl WordBuilder {
    fn new(floor: f64, ceiling: f64) -> WordBuilder {
        WordBuilder {
            words: Vec::new(),
            bytes: Vec::new(),
            start: floor,
            end: floor,
            probability: 1.0,
            floor,
            ceiling,
        }
    }

    fn push(&mut self, piece: &[u8], t0: f64, t1: f64, p: f32) {
        let starts_word = piece.first() == Some(&b' ');
        let is_punctuation = piece
            .iter()
            .all(|b| b.is_ascii_punctuation() || b.is_ascii_whitespace());
        if starts_word && !is_punctuation && !self.bytes.is_empty() {
            self.flush();
        }
        if self.bytes.is_empty() {
            self.start = t0.clamp(self.floor, self.ceiling);
            self.probability = 1.0;
        }
        self.bytes.extend_from_slice(piece);
        self.end = t1.clamp(self.start, self.ceiling);
        self.probability = self.probability.min(p);
    }

    fn flush(&mut self) {
        let text = String::from_utf8_lossy(&self.bytes).trim().to_string();
        self.bytes.clear();
        if text.is_empty() || text.chars().all(|c| c.is_ascii_punctuation()) {
            return;
        }
        let start = self.start.max(self.floor);
        self.words.push(SpeechWord {
            word: text,
            start,
            end: self.end.max(start),
            probability: self.probability,
        });
        self.floor = self.end.max(start);
    }

    fn finish(mut self) -> Vec<SpeechWord> {
        if !self.bytes.is_empty() {
            self.flush();
        }
        self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_join_into_words_with_punctuation_kept_and_times_monotonic() {
        let mut b = WordBuilder::new(1.0, 3.0);
        b.push(b" he", 1.0, 1.2, 0.9);
        b.push(b" was", 1.2, 1.5, 0.8);
        b.push(b" dispos", 1.5, 1.9, 0.7);
        b.push(b"ed", 1.9, 2.1, 0.95);
        b.push(b".", 2.1, 2.2, 0.99);
        // A piece whose time runs backwards is clamped.
        b.push(b" man", 0.5, 2.9, 0.6);
        let words = b.finish();
        let text: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(text, ["he", "was", "disposed.", "man"]);
        assert!((words[2].probability - 0.7).abs() < 1e-6);
        for pair in words.windows(2) {
            assert!(pair[0].end <= pair[1].start + 1e-9, "{pair:?}");
        }
        assert!(
            words
                .iter()
                .all(|w| w.start >= 1.0 && w.end <= 3.0 && w.start <= w.end)
        );
    }
}
