import { describe, expect, it } from 'vitest';
import { elapsedSeconds, IDLE, inputLevel, microphoneError, recorderReducer, type RecorderAction, type RecorderState } from './recorder';

const run = (...actions: RecorderAction[]): RecorderState => actions.reduce(recorderReducer, IDLE);
const domError = (name: string) => Object.assign(new Error('x'), { name });

describe('recorderReducer', () => {
  it('goes idle → asking → recording → stopping → idle', () => {
    expect(run({ type: 'ask' })).toEqual({ phase: 'asking' });
    expect(run({ type: 'ask' }, { type: 'started', at: 1000 })).toEqual({ phase: 'recording', startedAt: 1000 });
    expect(run({ type: 'ask' }, { type: 'started', at: 1000 }, { type: 'stop' })).toEqual({ phase: 'stopping' });
    expect(run({ type: 'ask' }, { type: 'started', at: 1000 }, { type: 'stop' }, { type: 'stopped' })).toEqual(IDLE);
  });

  it('shows why the microphone could not start, and may try again', () => {
    const denied = run({ type: 'ask' }, { type: 'failed', message: 'denied' });
    expect(denied).toEqual({ phase: 'error', message: 'denied' });
    expect(recorderReducer(denied, { type: 'ask' })).toEqual({ phase: 'asking' });
  });

  it('ignores actions that do not fit the state', () => {
    expect(run({ type: 'started', at: 5 })).toEqual(IDLE);
    expect(run({ type: 'stop' })).toEqual(IDLE);
    expect(run({ type: 'failed', message: 'late' })).toEqual(IDLE);
    const recording = run({ type: 'ask' }, { type: 'started', at: 5 });
    expect(recorderReducer(recording, { type: 'ask' })).toBe(recording);
    expect(recorderReducer(recording, { type: 'started', at: 9 })).toBe(recording);
  });

  it('ends a recording on a device error or a reset', () => {
    const recording = run({ type: 'ask' }, { type: 'started', at: 5 });
    expect(recorderReducer(recording, { type: 'failed', message: 'gone' })).toEqual({ phase: 'error', message: 'gone' });
    expect(recorderReducer(recording, { type: 'reset' })).toEqual(IDLE);
  });

  it('counts whole seconds while recording', () => {
    const recording = run({ type: 'ask' }, { type: 'started', at: 10_000 });
    expect(elapsedSeconds(recording, 10_000)).toBe(0);
    expect(elapsedSeconds(recording, 13_999)).toBe(3);
    expect(elapsedSeconds(recording, 9_000)).toBe(0);
    expect(elapsedSeconds(IDLE, 99_999)).toBe(0);
  });
});

describe('microphoneError', () => {
  it('says what to do for each getUserMedia failure', () => {
    expect(microphoneError(domError('NotAllowedError'))).toMatch(/denied.*Allow this site/);
    expect(microphoneError(domError('NotFoundError'))).toMatch(/No microphone was found/);
    expect(microphoneError(domError('NotReadableError'))).toMatch(/another application/);
    expect(microphoneError(domError('InsecureContext'))).toMatch(/HTTPS/);
    expect(microphoneError(domError('Unsupported'))).toMatch(/cannot record/);
    expect(microphoneError(new Error('odd'))).toBe('Recording could not start: odd');
    expect(microphoneError('??')).toBe('Recording could not start.');
  });
});

describe('inputLevel', () => {
  it('is 0 for silence and grows with loudness, at most 1', () => {
    expect(inputLevel([])).toBe(0);
    expect(inputLevel(new Float32Array(64))).toBe(0);
    const quiet = inputLevel(Array.from({ length: 64 }, (_, i) => (i % 2 ? 0.02 : -0.02)));
    const loud = inputLevel(Array.from({ length: 64 }, (_, i) => (i % 2 ? 0.2 : -0.2)));
    expect(quiet).toBeGreaterThan(0);
    expect(loud).toBeGreaterThan(quiet);
    expect(inputLevel(Array.from({ length: 64 }, () => 1))).toBe(1);
  });
});
