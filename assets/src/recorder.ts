// Recording from the microphone: the recorder's states as a reducer, the browser's
// getUserMedia failures as sentences, the input level, and `MicRecording`, which
// owns the stream, the MediaRecorder and the level meter's analyser.

import { pickRecordingType } from './speech';

export type RecorderState =
  | { phase: 'idle' }
  /** Waiting for the browser's permission prompt and the device. */
  | { phase: 'asking' }
  | { phase: 'recording'; startedAt: number }
  /** Stop pressed; the last data is being collected. */
  | { phase: 'stopping' }
  | { phase: 'error'; message: string };

export type RecorderAction =
  | { type: 'ask' }
  | { type: 'started'; at: number }
  | { type: 'stop' }
  | { type: 'stopped' }
  | { type: 'failed'; message: string }
  | { type: 'reset' };

export const IDLE: RecorderState = { phase: 'idle' };

/** Moves between states; an action that does not fit the current state changes nothing. */
export function recorderReducer(s: RecorderState, a: RecorderAction): RecorderState {
  switch (a.type) {
    case 'ask':
      return s.phase === 'idle' || s.phase === 'error' ? { phase: 'asking' } : s;
    case 'started':
      return s.phase === 'asking' ? { phase: 'recording', startedAt: a.at } : s;
    case 'stop':
      return s.phase === 'recording' ? { phase: 'stopping' } : s;
    case 'stopped':
      return s.phase === 'stopping' || s.phase === 'recording' ? IDLE : s;
    case 'failed':
      return s.phase === 'idle' ? s : { phase: 'error', message: a.message };
    case 'reset':
      return IDLE;
  }
}

/** Whole seconds recorded so far. */
export function elapsedSeconds(s: RecorderState, now: number): number {
  return s.phase === 'recording' ? Math.max(0, Math.floor((now - s.startedAt) / 1000)) : 0;
}

/** Why recording cannot start, for a person (from getUserMedia's DOMException names). */
export function microphoneError(e: unknown): string {
  const name = e instanceof Error || (typeof e === 'object' && e !== null && 'name' in e) ? String((e as { name: unknown }).name) : '';
  switch (name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return 'Microphone access was denied. Allow this site to use the microphone (the icon in the address bar, or the browser’s site settings) and try again.';
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return 'No microphone was found. Connect one (or enable it in the system settings) and try again.';
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return 'The microphone could not be started: another application may be using it. Close it and try again.';
    case 'InsecureContext':
      return 'Recording needs a secure connection: open this page over HTTPS (or on localhost).';
    case 'Unsupported':
      return 'This browser cannot record audio. Upload a recording instead.';
  }
  const detail = e instanceof Error && e.message ? `: ${e.message}` : '.';
  return `Recording could not start${detail}`;
}

/** Root mean square of samples in -1..1, scaled so normal speech fills most of 0..1. */
export function inputLevel(samples: ArrayLike<number>): number {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  const rms = Math.sqrt(sum / samples.length);
  // Speech peaks around an RMS of 0.1–0.3; a square root spreads quiet input out.
  return Math.min(1, Math.sqrt(rms * 3));
}

function named(name: string, message: string): Error {
  const e = new Error(message);
  e.name = name;
  return e;
}

/** One recording in progress. `start` asks for the microphone; `stop` gives the audio. */
export class MicRecording {
  private readonly chunks: Blob[] = [];
  private readonly done: Promise<Blob>;
  private readonly samples: Float32Array<ArrayBuffer> | null;
  private stopped = false;

  private constructor(
    private readonly stream: MediaStream,
    private readonly recorder: MediaRecorder,
    private readonly audio: AudioContext | null,
    private readonly analyser: AnalyserNode | null,
    /** Called when recording ends without `stop` (the device went away, an error). */
    onInterrupted: (e: unknown) => void,
  ) {
    this.samples = analyser ? new Float32Array(analyser.fftSize) : null;
    this.done = new Promise<Blob>((resolve, reject) => {
      recorder.addEventListener('dataavailable', (e) => {
        if (e.data.size > 0) this.chunks.push(e.data);
      });
      recorder.addEventListener('stop', () => {
        this.release();
        resolve(new Blob(this.chunks, { type: recorder.mimeType || this.chunks[0]?.type || 'audio/webm' }));
      });
      recorder.addEventListener('error', (e) => {
        this.release();
        const err = (e as Event & { error?: unknown }).error ?? named('RecorderError', 'the recorder failed');
        reject(err);
        if (!this.stopped) onInterrupted(err);
      });
    });
    this.done.catch(() => {});
    // A microphone unplugged mid-recording ends its track: keep what was recorded.
    for (const track of stream.getAudioTracks()) {
      track.addEventListener('ended', () => {
        if (!this.stopped && recorder.state !== 'inactive') {
          onInterrupted(named('NotReadableError', 'the microphone stopped'));
        }
      });
    }
  }

  /** Asks for the microphone and starts recording. Rejects with getUserMedia's error. */
  static async start(onInterrupted: (e: unknown) => void): Promise<MicRecording> {
    if (typeof window !== 'undefined' && !window.isSecureContext) throw named('InsecureContext', 'not a secure context');
    if (!navigator.mediaDevices?.getUserMedia || typeof MediaRecorder === 'undefined') {
      throw named('Unsupported', 'no MediaRecorder');
    }
    // The level meter's audio context is made first, while the click that called this
    // still counts as a user gesture (made later, autoplay rules may keep it suspended).
    // It is a nicety: recording works without it.
    let audio: AudioContext | null = null;
    try {
      audio = new AudioContext();
    } catch {
      audio = null;
    }
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      audio?.close().catch(() => {});
      throw e;
    }
    let recorder: MediaRecorder;
    try {
      const type = pickRecordingType((t) => MediaRecorder.isTypeSupported(t));
      recorder = new MediaRecorder(stream, type ? { mimeType: type, audioBitsPerSecond: 64_000 } : undefined);
    } catch (e) {
      for (const t of stream.getTracks()) t.stop();
      audio?.close().catch(() => {});
      throw e;
    }
    let analyser: AnalyserNode | null = null;
    if (audio) {
      try {
        analyser = audio.createAnalyser();
        analyser.fftSize = 1024;
        audio.createMediaStreamSource(stream).connect(analyser);
        if (audio.state === 'suspended') audio.resume().catch(() => {});
      } catch {
        audio.close().catch(() => {});
        audio = null;
        analyser = null;
      }
    }
    const rec = new MicRecording(stream, recorder, audio, analyser, onInterrupted);
    // Data every second, so a recording cut short by an error still has most of it.
    recorder.start(1000);
    return rec;
  }

  /** The input level now, 0 to 1 (0 without an analyser). */
  level(): number {
    if (!this.analyser || !this.samples) return 0;
    this.analyser.getFloatTimeDomainData(this.samples);
    return inputLevel(this.samples);
  }

  /** Ends the recording; resolves with the audio. */
  stop(): Promise<Blob> {
    this.stopped = true;
    if (this.recorder.state !== 'inactive') this.recorder.stop();
    return this.done;
  }

  /** Ends it and throws the audio away. */
  cancel(): void {
    this.stopped = true;
    if (this.recorder.state !== 'inactive') this.recorder.stop();
    else this.release();
  }

  private release(): void {
    for (const t of this.stream.getTracks()) t.stop();
    this.audio?.close().catch(() => {});
  }
}
