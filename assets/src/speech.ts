// The Speech-to-text page's pure logic: times, languages, which options a speech model
// allows, the upload form's fields, transcript states and job progress for a person,
// which segment is playing, and the text handed to the chat.

import { isTerminal } from './jobs';
import type { Job, ModelInfo, Transcript, TranscriptSegment, TranscriptState } from './types';

/** "0:05", "12:34", "1:02:03" (seconds, rounded down; negative or unknown = 0:00). */
export function formatTimestamp(seconds: number | null | undefined): string {
  const s = seconds != null && Number.isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

/** A recording's length for a person: "7 s", "2 min 5 s", "1 h 3 min"; "–" when unknown. */
export function formatLength(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return '–';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s / 60} min`;
  const m = Math.round((s % 3600) / 60);
  return m ? `${Math.floor(s / 3600)} h ${m} min` : `${Math.floor(s / 3600)} h`;
}

// The languages whisper knows (the daemon's list, src/http/audio/formats.rs), by code.
const LANGUAGE_LIST =
  'en:English,zh:Chinese,de:German,es:Spanish,ru:Russian,ko:Korean,fr:French,ja:Japanese,pt:Portuguese,' +
  'tr:Turkish,pl:Polish,ca:Catalan,nl:Dutch,ar:Arabic,sv:Swedish,it:Italian,id:Indonesian,hi:Hindi,' +
  'fi:Finnish,vi:Vietnamese,he:Hebrew,uk:Ukrainian,el:Greek,ms:Malay,cs:Czech,ro:Romanian,da:Danish,' +
  'hu:Hungarian,ta:Tamil,no:Norwegian,th:Thai,ur:Urdu,hr:Croatian,bg:Bulgarian,lt:Lithuanian,la:Latin,' +
  'mi:Maori,ml:Malayalam,cy:Welsh,sk:Slovak,te:Telugu,fa:Persian,lv:Latvian,bn:Bengali,sr:Serbian,' +
  'az:Azerbaijani,sl:Slovenian,kn:Kannada,et:Estonian,mk:Macedonian,br:Breton,eu:Basque,is:Icelandic,' +
  'hy:Armenian,ne:Nepali,mn:Mongolian,bs:Bosnian,kk:Kazakh,sq:Albanian,sw:Swahili,gl:Galician,mr:Marathi,' +
  'pa:Punjabi,si:Sinhala,km:Khmer,sn:Shona,yo:Yoruba,so:Somali,af:Afrikaans,oc:Occitan,ka:Georgian,' +
  'be:Belarusian,tg:Tajik,sd:Sindhi,gu:Gujarati,am:Amharic,yi:Yiddish,lo:Lao,uz:Uzbek,fo:Faroese,' +
  'ht:Haitian Creole,ps:Pashto,tk:Turkmen,nn:Nynorsk,mt:Maltese,sa:Sanskrit,lb:Luxembourgish,my:Myanmar,' +
  'bo:Tibetan,tl:Tagalog,mg:Malagasy,as:Assamese,tt:Tatar,haw:Hawaiian,ln:Lingala,ha:Hausa,ba:Bashkir,' +
  'jw:Javanese,su:Sundanese,yue:Cantonese';

/** [code, English name], sorted by name. */
export const LANGUAGES: [string, string][] = LANGUAGE_LIST.split(',')
  .map((pair) => pair.split(':') as [string, string])
  .sort((a, b) => a[1].localeCompare(b[1]));

/** "German" for "de"; the code itself when unknown. */
export function languageName(code: string | null | undefined): string {
  if (!code) return '–';
  return LANGUAGES.find(([c]) => c === code)?.[1] ?? code;
}

/** The installed speech models (`/v1/models` lists chat and embedding models too). */
export function speechModels(models: ModelInfo[]): ModelInfo[] {
  return models.filter((m) => m.meta?.kind === 'speech');
}

/**
 * Whether the chosen model knows English only. `''` is the daemon's default model,
 * which `/v1/models` does not name: English-only only when every model is.
 */
export function isEnglishOnly(models: ModelInfo[], chosen: string): boolean {
  const pool = chosen ? models.filter((m) => m.id === chosen) : models;
  return pool.length > 0 && pool.every((m) => m.meta?.multilingual === false);
}

/** What the person picked for the next uploads. */
export interface SpeechOptions {
  /** A speech model's id, or '' for the daemon's default. */
  model: string;
  /** An ISO code, or '' to detect the language. */
  language: string;
  /** Translate into English instead of transcribing. */
  translate: boolean;
  wordTimestamps: boolean;
  /** Spelling of names and words to expect (whisper's prompt). */
  prompt: string;
}

export const DEFAULT_OPTIONS: SpeechOptions = { model: '', language: '', translate: false, wordTimestamps: true, prompt: '' };

/**
 * The options as they may be sent with `model`: an English-only model neither
 * translates nor takes another language (the daemon would refuse both).
 */
export function effectiveOptions(options: SpeechOptions, models: ModelInfo[]): SpeechOptions {
  if (!isEnglishOnly(models, options.model)) return options;
  return { ...options, translate: false, language: options.language === 'en' ? 'en' : '' };
}

/** The text fields of `POST /api/v1/transcripts` (besides `file`), empty ones left out. */
export function formFields(options: SpeechOptions): [string, string][] {
  const fields: [string, string][] = [];
  if (options.model) fields.push(['model', options.model]);
  if (options.language) fields.push(['language', options.language]);
  if (options.prompt.trim()) fields.push(['prompt', options.prompt.trim()]);
  fields.push(['task', options.translate ? 'translate' : 'transcribe']);
  fields.push(['word_timestamps', options.wordTimestamps ? 'true' : 'false']);
  return fields;
}

/** A transcript's state as its job's latest event implies it (the row is fetched again once the job ends). */
export function liveState(t: Pick<Transcript, 'state'>, job: Job | undefined): TranscriptState {
  if (!job || isTerminal(job.state)) return t.state;
  return job.state === 'running' ? 'running' : 'queued';
}

export function isPending(state: TranscriptState): boolean {
  return state === 'queued' || state === 'running';
}

const BADGES: Record<TranscriptState, [string, string]> = {
  queued: ['queued', 'badge-muted'],
  running: ['transcribing', ''],
  done: ['done', 'badge-ok'],
  failed: ['failed', 'badge-error'],
  cancelled: ['cancelled', 'badge-warn'],
};

/** Badge text and class of a transcript state. */
export function transcriptBadge(state: TranscriptState): { label: string; cls: string } {
  const [label, cls] = BADGES[state] ?? [state, 'badge-muted'];
  return { label, cls };
}

/** Whole percent of a running job, or null before anything was measured. */
export function transcribePercent(job: Job | undefined): number | null {
  if (!job || job.state !== 'running' || !Number.isFinite(job.progress)) return null;
  return Math.min(100, Math.max(0, Math.floor(job.progress * 100)));
}

/** What a pending transcription is doing: "Waiting in the queue", "Transcribing: 42 % (transcribing 0:07 of audio)". */
export function progressLabel(state: TranscriptState, job: Job | undefined): string {
  if (state === 'queued' && (!job || job.state === 'queued')) return 'Waiting in the queue';
  const pct = transcribePercent(job);
  const note = job?.note ? ` (${job.note})` : '';
  return pct === null ? `Transcribing…${note}` : `Transcribing: ${pct} %${note}`;
}

/** The segment playing at `time` (seconds): the last one that started at or before it, or -1. */
export function segmentAt(segments: Pick<TranscriptSegment, 'start'>[], time: number): number {
  let lo = 0;
  let hi = segments.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (segments[mid].start <= time) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

export const EXPORT_FORMATS = [
  { format: 'text', label: 'Text (.txt)' },
  { format: 'srt', label: 'Subtitles (.srt)' },
  { format: 'vtt', label: 'WebVTT (.vtt)' },
  { format: 'verbose_json', label: 'JSON with times (.json)' },
] as const;

export type ExportFormat = (typeof EXPORT_FORMATS)[number]['format'] | 'json';

export function exportHref(id: number, format: ExportFormat): string {
  return `/api/v1/transcripts/${id}/export?format=${format}`;
}

/** The first message of a chat about a transcript. */
export function chatDraft(t: Pick<Transcript, 'name' | 'text'>): string {
  return `Here is the transcript of the recording “${t.name}”:\n\n${t.text.trim()}`;
}

/** The first recording type this browser's MediaRecorder can make (Opus in WebM or Ogg first), or '' for its default. */
export function pickRecordingType(isSupported: (type: string) => boolean): string {
  const wanted = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/webm', 'audio/ogg', 'audio/mp4'];
  return wanted.find((t) => {
    try {
      return isSupported(t);
    } catch {
      return false;
    }
  }) ?? '';
}

/** "recording-2026-03-01-1405.webm" for a recording of `type` made at `date` (local time). */
export function recordingName(type: string, date: Date): string {
  const base = type.split(';')[0].trim().toLowerCase();
  const ext = base === 'audio/ogg' ? 'ogg' : base === 'audio/mp4' || base === 'audio/aac' ? 'm4a' : base === 'audio/wav' ? 'wav' : 'webm';
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}-${p(date.getHours())}${p(date.getMinutes())}${p(date.getSeconds())}`;
  return `recording-${stamp}.${ext}`;
}
