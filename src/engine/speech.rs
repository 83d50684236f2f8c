//! A transcription in progress, as its caller sees it: a stream of [`SpeechEvent`]s
//! with a deadline that grows with the audio's length once it is known, cancelled in
//! the worker when dropped early.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::generation::{Permit, deadline_after};
use super::protocol::{Command, Event, SpeechOptions, SpeechSegment};
use super::supervisor::{Shared, worker_error};
use super::{EngineError, KeepAliveRequest, ModelSpec};

/// A transcription to start.
#[derive(Debug, Clone)]
pub struct SpeechRequest {
    /// The speech model.
    pub model: ModelSpec,
    /// Who asks.
    pub user: i64,
    /// The uploaded file (the worker reads it; it must outlive the request).
    pub audio: PathBuf,
    /// The client's file name.
    pub name: Option<String>,
    /// How to transcribe.
    pub options: SpeechOptions,
    /// Residency after it (the configured default, extend-only, when `None`).
    pub keep_alive: Option<KeepAliveRequest>,
}

/// A finished transcript.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// The language, detected or given.
    pub language: String,
    /// Length of the audio, seconds.
    pub seconds: f64,
    /// Every segment, in order.
    pub segments: Vec<SpeechSegment>,
    /// Time reading the file, ms.
    pub decode_ms: f64,
    /// Time in whisper, ms.
    pub inference_ms: f64,
}

impl Transcript {
    /// The whole text (segments joined, outer spaces trimmed).
    pub fn text(&self) -> String {
        let joined: String = self.segments.iter().map(|s| s.text.as_str()).collect();
        joined.trim().to_string()
    }
}

/// What a transcription yields.
#[derive(Debug, Clone)]
pub enum SpeechEvent {
    /// The audio was read: its length and format.
    Decoded {
        /// Seconds of audio.
        seconds: f64,
        /// Container/codec.
        format: String,
    },
    /// Percent done.
    Progress(u8),
    /// A segment as soon as whisper has it (text and times; no word detail yet).
    Segment(SpeechSegment),
    /// Finished.
    Done(Transcript),
}

/// A transcription in progress. Dropping it before `Done` cancels it in the worker.
pub struct Transcription {
    id: u64,
    rx: mpsc::UnboundedReceiver<Result<Event, EngineError>>,
    commands: mpsc::Sender<Command>,
    started: Instant,
    deadline: tokio::time::Instant,
    timeout: Duration,
    realtime_factor: f64,
    audio_seconds: f64,
    /// Counted in the worker's running requests (from `Decoded` on).
    running: bool,
    finished: bool,
    shared: Arc<Shared>,
    _permit: Permit,
}

impl Transcription {
    pub(super) fn new(
        id: u64,
        rx: mpsc::UnboundedReceiver<Result<Event, EngineError>>,
        commands: mpsc::Sender<Command>,
        timeout: Duration,
        realtime_factor: f64,
        permit: Permit,
        shared: Arc<Shared>,
    ) -> Transcription {
        Transcription {
            id,
            rx,
            commands,
            started: Instant::now(),
            deadline: deadline_after(timeout),
            timeout,
            realtime_factor,
            audio_seconds: 0.0,
            running: false,
            finished: false,
            shared,
            _permit: permit,
        }
    }

    /// Seconds of audio, once decoded (0 before).
    pub fn audio_seconds(&self) -> f64 {
        self.audio_seconds
    }

    /// The next event; `None` after `Done` or an error.
    pub async fn next(&mut self) -> Option<Result<SpeechEvent, EngineError>> {
        if self.finished {
            return None;
        }
        let event = match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
            Err(_) => {
                let _ = self.commands.try_send(Command::Cancel { id: self.id });
                self.end("error");
                return Some(Err(EngineError::Timeout {
                    secs: (self.deadline - tokio::time::Instant::from_std(self.started)).as_secs(),
                }));
            }
            Ok(None) => {
                self.end("error");
                return Some(Err(self.shared.crashed("the worker stopped answering")));
            }
            Ok(Some(Err(e))) => {
                self.end("error");
                return Some(Err(e));
            }
            Ok(Some(Ok(event))) => event,
        };
        Some(match event {
            Event::Decoded {
                seconds, format, ..
            } => {
                self.audio_seconds = seconds;
                if !self.running {
                    self.running = true;
                    self.shared.running.fetch_add(1, Ordering::AcqRel);
                }
                // Long audio gets time in proportion to its length.
                let allowed = self.timeout.max(Duration::from_secs_f64(
                    (seconds * self.realtime_factor).clamp(0.0, 1e7),
                ));
                self.deadline = tokio::time::Instant::from_std(self.started) + allowed;
                Ok(SpeechEvent::Decoded { seconds, format })
            }
            Event::Progress { percent, .. } => Ok(SpeechEvent::Progress(percent.min(100))),
            Event::Segment { segment, .. } => Ok(SpeechEvent::Segment(segment)),
            Event::Transcribed {
                language,
                seconds,
                decode_ms,
                inference_ms,
                segments,
                ..
            } => {
                self.audio_seconds = seconds;
                self.end("done");
                Ok(SpeechEvent::Done(Transcript {
                    language,
                    seconds,
                    segments,
                    decode_ms,
                    inference_ms,
                }))
            }
            Event::Failed { error, .. } => {
                self.end("error");
                Err(worker_error(error))
            }
            _ => {
                self.end("error");
                Err(EngineError::Protocol {
                    model: self.shared.name.clone(),
                })
            }
        })
    }

    fn end(&mut self, outcome: &'static str) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.running {
            self.shared.running.fetch_sub(1, Ordering::AcqRel);
        }
        self.shared.routes.lock().remove(&self.id);
        self.shared.metrics.speech_request(
            &self.shared.name,
            outcome,
            self.audio_seconds,
            self.started.elapsed(),
        );
    }
}

impl Drop for Transcription {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.commands.try_send(Command::Cancel { id: self.id });
            self.end("cancelled");
        }
    }
}
