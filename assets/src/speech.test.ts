import { describe, expect, it } from 'vitest';
import {
  chatDraft,
  DEFAULT_OPTIONS,
  effectiveOptions,
  exportHref,
  formatLength,
  formatTimestamp,
  formFields,
  isEnglishOnly,
  languageName,
  LANGUAGES,
  liveState,
  pickRecordingType,
  progressLabel,
  recordingName,
  segmentAt,
  speechModels,
  transcribePercent,
  transcriptBadge,
} from './speech';
import type { Job, JobState, ModelInfo } from './types';

const model = (id: string, kind: string, multilingual?: boolean): ModelInfo => ({ id, meta: { kind, multilingual } });
const tinyEn = model('whisper-tiny.en', 'speech', false);
const base = model('whisper-base', 'speech', true);
const job = (state: JobState, progress = 0, note: string | null = null): Job => ({
  id: 1,
  kind: 'speech.transcribe',
  state,
  progress,
  note,
  attempts: 1,
  error: null,
  created_at: '',
  started_at: null,
  finished_at: null,
  document_id: null,
});

describe('times', () => {
  it('formats timestamps as m:ss or h:mm:ss', () => {
    expect(formatTimestamp(0)).toBe('0:00');
    expect(formatTimestamp(5.99)).toBe('0:05');
    expect(formatTimestamp(65)).toBe('1:05');
    expect(formatTimestamp(754.2)).toBe('12:34');
    expect(formatTimestamp(3723)).toBe('1:02:03');
    expect(formatTimestamp(-3)).toBe('0:00');
    expect(formatTimestamp(null)).toBe('0:00');
    expect(formatTimestamp(Number.NaN)).toBe('0:00');
  });

  it('formats lengths for people', () => {
    expect(formatLength(7.1)).toBe('7 s');
    expect(formatLength(60)).toBe('1 min');
    expect(formatLength(125)).toBe('2 min 5 s');
    expect(formatLength(3600)).toBe('1 h');
    expect(formatLength(3780)).toBe('1 h 3 min');
    expect(formatLength(null)).toBe('–');
  });
});

describe('languages and models', () => {
  it('lists the languages whisper knows, by name', () => {
    expect(LANGUAGES).toHaveLength(100);
    expect(LANGUAGES[0][1]).toBe('Afrikaans');
    expect(languageName('de')).toBe('German');
    expect(languageName('xx')).toBe('xx');
    expect(languageName(null)).toBe('–');
  });

  it('keeps only speech models', () => {
    expect(speechModels([model('SmolLM2', 'chat'), tinyEn, model('MiniLM', 'embedding'), base]).map((m) => m.id)).toEqual([
      'whisper-tiny.en',
      'whisper-base',
    ]);
  });

  it('knows when the chosen model is English-only, and the default only when all are', () => {
    expect(isEnglishOnly([tinyEn, base], 'whisper-tiny.en')).toBe(true);
    expect(isEnglishOnly([tinyEn, base], 'whisper-base')).toBe(false);
    expect(isEnglishOnly([tinyEn, base], '')).toBe(false);
    expect(isEnglishOnly([tinyEn], '')).toBe(true);
    expect(isEnglishOnly([], '')).toBe(false);
  });

  it('drops translation and other languages for an English-only model', () => {
    const asked = { ...DEFAULT_OPTIONS, model: 'whisper-tiny.en', translate: true, language: 'de' };
    expect(effectiveOptions(asked, [tinyEn])).toMatchObject({ translate: false, language: '' });
    expect(effectiveOptions({ ...asked, language: 'en' }, [tinyEn]).language).toBe('en');
    expect(effectiveOptions({ ...asked, model: 'whisper-base' }, [tinyEn, base])).toMatchObject({ translate: true, language: 'de' });
  });
});

describe('the upload form', () => {
  it('sends the options as the API names them, leaving out empty ones', () => {
    expect(formFields(DEFAULT_OPTIONS)).toEqual([
      ['task', 'transcribe'],
      ['word_timestamps', 'true'],
    ]);
    expect(formFields({ model: 'whisper-base', language: 'fr', translate: true, wordTimestamps: false, prompt: '  Dashwood ' })).toEqual([
      ['model', 'whisper-base'],
      ['language', 'fr'],
      ['prompt', 'Dashwood'],
      ['task', 'translate'],
      ['word_timestamps', 'false'],
    ]);
  });
});

describe('states and progress', () => {
  it('takes the state from a live job until the transcript is fetched again', () => {
    expect(liveState({ state: 'queued' }, undefined)).toBe('queued');
    expect(liveState({ state: 'queued' }, job('running'))).toBe('running');
    expect(liveState({ state: 'running' }, job('queued'))).toBe('queued');
    // A finished job: the stored state counts (fetched again right after).
    expect(liveState({ state: 'running' }, job('done'))).toBe('running');
    expect(liveState({ state: 'done' }, job('done'))).toBe('done');
  });

  it('labels progress', () => {
    expect(progressLabel('queued', undefined)).toBe('Waiting in the queue');
    expect(progressLabel('queued', job('queued'))).toBe('Waiting in the queue');
    expect(progressLabel('running', job('running', 0.01, 'reading the recording'))).toBe('Transcribing: 1 % (reading the recording)');
    expect(progressLabel('running', job('running', 0.5))).toBe('Transcribing: 50 %');
    expect(progressLabel('running', undefined)).toBe('Transcribing…');
    expect(transcribePercent(job('running', 0.999))).toBe(99);
    expect(transcribePercent(job('running', 1.5))).toBe(100);
    expect(transcribePercent(job('queued', 0.5))).toBeNull();
  });

  it('has a badge for every state', () => {
    expect(transcriptBadge('running')).toEqual({ label: 'transcribing', cls: '' });
    expect(transcriptBadge('failed').cls).toBe('badge-error');
    expect(transcriptBadge('cancelled').label).toBe('cancelled');
  });
});

describe('segments', () => {
  const segs = [{ start: 0 }, { start: 5.4 }, { start: 9 }];

  it('finds the segment playing at a time', () => {
    expect(segmentAt(segs, 0)).toBe(0);
    expect(segmentAt(segs, 5.3)).toBe(0);
    expect(segmentAt(segs, 5.4)).toBe(1);
    expect(segmentAt(segs, 100)).toBe(2);
    expect(segmentAt([{ start: 1 }], 0.5)).toBe(-1);
    expect(segmentAt([], 3)).toBe(-1);
  });
});

describe('exports, chat and recordings', () => {
  it('links to the export endpoint', () => {
    expect(exportHref(12, 'srt')).toBe('/api/v1/transcripts/12/export?format=srt');
  });

  it('makes the first chat message from the whole text', () => {
    expect(chatDraft({ name: 'talk.wav', text: ' Hello there. ' })).toBe('Here is the transcript of the recording “talk.wav”:\n\nHello there.');
  });

  it('prefers Opus recordings and falls back to the browser default', () => {
    expect(pickRecordingType((t) => t.startsWith('audio/ogg'))).toBe('audio/ogg;codecs=opus');
    expect(pickRecordingType((t) => t === 'audio/webm;codecs=opus' || t === 'audio/ogg')).toBe('audio/webm;codecs=opus');
    expect(pickRecordingType((t) => t === 'audio/mp4')).toBe('audio/mp4');
    expect(pickRecordingType(() => false)).toBe('');
    expect(
      pickRecordingType(() => {
        throw new Error('no');
      }),
    ).toBe('');
  });

  it('names recordings by type and local time', () => {
    const at = new Date(2026, 2, 1, 14, 5, 9);
    expect(recordingName('audio/webm;codecs=opus', at)).toBe('recording-2026-03-01-140509.webm');
    expect(recordingName('audio/ogg; codecs=opus', at)).toBe('recording-2026-03-01-140509.ogg');
    expect(recordingName('audio/mp4', at)).toBe('recording-2026-03-01-140509.m4a');
    expect(recordingName('', at)).toBe('recording-2026-03-01-140509.webm');
  });
});
