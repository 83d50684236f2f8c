// Recording from the microphone: Record / Stop / Discard, the time so far and an input
// level meter; a finished recording is handed on as a file, like an upload.

import { useEffect, useReducer, useRef, useState } from 'preact/hooks';
import { elapsedSeconds, IDLE, microphoneError, MicRecording, recorderReducer } from '../recorder';
import { formatTimestamp, recordingName } from '../speech';

export function RecordPanel({ onRecorded }: { onRecorded: (file: File) => void }) {
  const [state, dispatch] = useReducer(recorderReducer, IDLE);
  const [now, setNow] = useState(0);
  const [level, setLevel] = useState(0);
  const [announce, setAnnounce] = useState('');
  const rec = useRef<MicRecording | null>(null);
  const alive = useRef(true);
  const recordButton = useRef<HTMLButtonElement>(null);
  const stopButton = useRef<HTMLButtonElement>(null);

  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
      rec.current?.cancel();
      rec.current = null;
    };
  }, []);

  // Focus follows the buttons that replace each other.
  const lastPhase = useRef(state.phase);
  useEffect(() => {
    const was = lastPhase.current;
    lastPhase.current = state.phase;
    if (state.phase === 'recording') stopButton.current?.focus();
    else if ((was === 'recording' || was === 'stopping') && state.phase !== 'stopping') recordButton.current?.focus();
  }, [state.phase]);

  // The clock and the meter, ten times a second while recording.
  useEffect(() => {
    if (state.phase !== 'recording') {
      setLevel(0);
      return;
    }
    const timer = setInterval(() => {
      setNow(Date.now());
      setLevel(rec.current?.level() ?? 0);
    }, 100);
    return () => clearInterval(timer);
  }, [state.phase]);

  const deliver = (blob: Blob) => {
    if (blob.size === 0) {
      dispatch({ type: 'failed', message: 'Nothing was recorded. Check the microphone and try again.' });
      return false;
    }
    const type = blob.type || 'audio/webm';
    onRecorded(new File([blob], recordingName(type, new Date()), { type }));
    return true;
  };

  const start = async () => {
    dispatch({ type: 'ask' });
    setAnnounce('');
    try {
      const r = await MicRecording.start(interrupted);
      if (!alive.current) {
        r.cancel();
        return;
      }
      rec.current = r;
      const at = Date.now();
      setNow(at);
      dispatch({ type: 'started', at });
      setAnnounce('Recording. Press Stop to finish.');
    } catch (e) {
      dispatch({ type: 'failed', message: microphoneError(e) });
    }
  };

  const stop = async () => {
    const r = rec.current;
    if (!r) return;
    rec.current = null;
    dispatch({ type: 'stop' });
    try {
      const blob = await r.stop();
      if (!alive.current) return;
      dispatch({ type: 'stopped' });
      if (deliver(blob)) setAnnounce('Recording stopped. It is being uploaded and transcribed.');
    } catch (e) {
      if (alive.current) dispatch({ type: 'failed', message: microphoneError(e) });
    }
  };

  const discard = () => {
    rec.current?.cancel();
    rec.current = null;
    dispatch({ type: 'reset' });
    setAnnounce('Recording discarded.');
  };

  /** The microphone went away mid-recording: keep and send what was recorded. */
  function interrupted(e: unknown) {
    const r = rec.current;
    if (!r || !alive.current) return;
    rec.current = null;
    r.stop()
      .then((blob) => {
        if (!alive.current) return;
        const sent = blob.size > 0;
        if (sent) deliver(blob);
        dispatch({
          type: 'failed',
          message: `${microphoneError(e)}${sent ? ' What was recorded until then is being transcribed.' : ''}`,
        });
      })
      .catch(() => alive.current && dispatch({ type: 'failed', message: microphoneError(e) }));
  }

  const recording = state.phase === 'recording';
  const seconds = elapsedSeconds(state, now);

  return (
    <div class="recorder stack" data-testid="recorder" data-phase={state.phase}>
      {recording || state.phase === 'stopping' ? (
        <div class="recorder-live">
          <div class="row wrap">
            <span class="rec-dot" aria-hidden="true" />
            <span class="rec-time" role="timer" aria-label="Recording time" data-testid="record-time">
              {formatTimestamp(seconds)}
            </span>
            <meter class="rec-level grow" min={0} max={1} low={0.15} high={0.85} optimum={0.5} value={level} aria-label="Microphone level" />
          </div>
          <div class="row wrap">
            <button type="button" ref={stopButton} class="btn btn-primary" onClick={stop} disabled={!recording}>
              {recording ? 'Stop' : 'Stopping…'}
            </button>
            <button type="button" class="btn" onClick={discard} disabled={!recording}>
              Discard
            </button>
          </div>
        </div>
      ) : (
        <div class="row wrap">
          <button type="button" ref={recordButton} class="btn btn-primary" onClick={start} disabled={state.phase === 'asking'}>
            <span class="rec-dot" aria-hidden="true" />
            {state.phase === 'asking' ? 'Waiting for the microphone…' : 'Record'}
          </button>
          <span class="muted small">Speak, then press Stop: the recording is transcribed like an upload.</span>
        </div>
      )}
      {state.phase === 'error' && (
        <div class="alert alert-error" role="alert" data-testid="record-error">
          <span>{state.message}</span>
        </div>
      )}
      <p class="sr-only" role="status">
        {announce}
      </p>
    </div>
  );
}
