// Speech to text: recordings uploaded (dropped, picked or recorded from the microphone)
// with the chosen options, each transcribed by a background job whose progress shows
// live; the user's transcripts, newest first; and the open one (`#/speech/{id}`).

import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, del, errorMessage, get, upload, withQuery } from '../api';
import { useJobSet } from '../jobwatch';
import { appendPage, canLoadMore, emptyPaged, failed, loading, nextCursor, removeItem, replaceItem, upsertTop, type Paged } from '../pagination';
import { navigate, speechHref } from '../router';
import {
  DEFAULT_OPTIONS,
  effectiveOptions,
  formFields,
  formatLength,
  isEnglishOnly,
  isPending,
  LANGUAGES,
  liveState,
  progressLabel,
  speechModels,
  transcribePercent,
  transcriptBadge,
  type SpeechOptions,
} from '../speech';
import { formatAgo, formatTime } from '../format';
import type { Job, ModelInfo, NewTranscript, Transcript } from '../types';
import { UploadQueue, type Upload } from '../uploads';
import { ErrorBox, PageTitle, Spinner } from '../components/common';
import { UploadZone } from '../components/UploadZone';
import { RecordPanel } from '../components/RecordPanel';
import { TranscriptView } from '../components/TranscriptView';

const PAGE_SIZE = 20;
const ACCEPT = 'audio/*,.wav,.mp3,.flac,.ogg,.oga,.opus,.webm,.m4a,.mp4,.aac';

/**
 * Object URLs of recordings sent from this tab, by transcript id, so their audio plays
 * beside the text (the server deletes recordings once transcribed). Kept while the tab
 * lives, across visits to other pages; released when the transcript is deleted.
 */
const audioUrls = new Map<number, string>();

function forgetAudio(id: number) {
  const url = audioUrls.get(id);
  if (url) URL.revokeObjectURL(url);
  audioUrls.delete(id);
}

/** A file (or recording) with the options chosen when it was added. */
interface AudioFile {
  file: Blob;
  name: string;
  size: number;
  options: SpeechOptions;
}

// (The upload queue's `collection` argument is unused here: transcripts have none.)
function sendAudio(item: AudioFile, _collection: number, onProgress: (f: number) => void, signal: AbortSignal) {
  const form = new FormData();
  form.append('file', item.file, item.name);
  for (const [k, v] of formFields(item.options)) form.append(k, v);
  const progress = (loaded: number, total: number) => onProgress(total ? loaded / total : 0);
  return upload<NewTranscript>('/api/v1/transcripts', form, progress, signal).then((r) => {
    audioUrls.set(r.transcript.id, URL.createObjectURL(item.file));
    return r;
  });
}

interface Detail {
  id: number;
  t: Transcript | null;
  error: unknown;
}

export function Speech({ id }: { id: number | null }) {
  const [models, setModels] = useState<ModelInfo[] | null>(null);
  const [modelsError, setModelsError] = useState<unknown>(null);
  const [options, setOptions] = useState<SpeechOptions>(DEFAULT_OPTIONS);
  const [list, setList] = useState<Paged<Transcript>>(emptyPaged);
  const listRef = useRef(list);
  listRef.current = list;
  const [jobs, setJobs] = useState<Record<number, Job>>({});
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [detail, setDetail] = useState<Detail | null>(null);
  const [error, setError] = useState<unknown>(null);
  const openId = useRef(id);
  openId.current = id;
  // A transcript picked from the list takes focus; the one the page opened with, and
  // one opened by itself after an upload, leave it where it is.
  const firstId = useRef(id);
  const autoOpened = useRef<number | null>(null);
  const focusView = id !== null && id !== firstId.current && id !== autoOpened.current;

  const loadMore = useCallback(async () => {
    const state = listRef.current;
    if (!canLoadMore(state)) return;
    listRef.current = loading(state);
    setList(listRef.current);
    try {
      const page = await get<{ transcripts: Transcript[]; next_before: number | null }>(
        withQuery('/api/v1/transcripts', { limit: PAGE_SIZE, before: nextCursor(state) }),
      );
      setList((s) => appendPage(s, { data: page.transcripts, next_cursor: page.next_before == null ? null : String(page.next_before) }));
    } catch (e) {
      setList((s) => failed(s, errorMessage(e)));
    }
  }, []);

  const added = useCallback((r: NewTranscript) => {
    setList((s) => upsertTop(s, r.transcript));
    setJobs((j) => ({ ...j, [r.transcript.id]: r.job }));
    // Show the first one sent while no transcript is open.
    if (openId.current === null) {
      openId.current = r.transcript.id;
      autoOpened.current = r.transcript.id;
      navigate(speechHref(r.transcript.id));
    }
  }, []);

  const queue = useMemo(
    () =>
      new UploadQueue<AudioFile, NewTranscript>(sendAudio, {
        changed: setUploads,
        done: (u, r) => {
          queue.dismiss(u.key);
          added(r);
        },
      }),
    [],
  );

  useEffect(() => {
    loadMore();
    get<{ data: ModelInfo[] }>('/v1/models')
      .then((r) => {
        const speech = speechModels(r.data);
        setModels(speech);
        // One model: name it in requests (it may not be the configured default).
        if (speech.length === 1) setOptions((o) => ({ ...o, model: speech[0].id }));
      })
      .catch((e) => {
        setModels([]);
        setModelsError(e);
      });
    return () => queue.cancelAll();
  }, []);

  const addFiles = (files: File[]) => {
    const chosen = effectiveOptions(options, models ?? []);
    queue.add(0, files.map((f) => ({ file: f, name: f.name, size: f.size, options: chosen })));
  };

  // The open transcript, whole (the list has only the start of each text).
  useEffect(() => {
    if (id === null) {
      setDetail(null);
      return;
    }
    let stale = false;
    setDetail((d) => (d?.id === id ? d : { id, t: null, error: null }));
    get<Transcript>(`/api/v1/transcripts/${id}`)
      .then((t) => !stale && setDetail({ id, t, error: null }))
      .catch((e) => !stale && setDetail({ id, t: null, error: e }));
    return () => {
      stale = true;
    };
  }, [id]);

  /** Fetches a transcript again (its job ended) into the list and the open view. */
  const refresh = useCallback(async (tid: number) => {
    try {
      const t = await get<Transcript>(`/api/v1/transcripts/${tid}`);
      setList((s) => replaceItem(s, t));
      setDetail((d) => (d?.id === tid ? { id: tid, t, error: null } : d));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        setList((s) => removeItem(s, tid));
        setDetail((d) => (d?.id === tid ? { id: tid, t: null, error: e } : d));
      }
    }
  }, []);

  // Follow the jobs of every transcript still waiting: listed ones and the open one.
  const waiting = [...list.items, ...(detail?.t && !list.items.some((x) => x.id === detail.id) ? [detail.t] : [])]
    .filter((t) => isPending(t.state) && t.job_id != null)
    .map((t) => ({ id: t.id, jobId: t.job_id! }));
  useJobSet(
    waiting,
    (j, tid) => setJobs((m) => ({ ...m, [tid]: j })),
    (tid) => refresh(tid),
  );

  const cancel = async (t: Transcript) => {
    if (t.job_id == null) return;
    setError(null);
    try {
      await del(`/api/v1/jobs/${t.job_id}`);
    } catch (e) {
      setError(e);
    }
  };

  const remove = async (t: Transcript) => {
    if (!confirm(`Delete the transcript of “${t.name}”? This cannot be undone.`)) return;
    setError(null);
    try {
      await del(`/api/v1/transcripts/${t.id}`);
      forgetAudio(t.id);
      setList((s) => removeItem(s, t.id));
      if (openId.current === t.id) navigate(speechHref(null), true);
    } catch (e) {
      setError(e);
    }
  };

  return (
    <div class="page wide">
      <PageTitle>Speech to text</PageTitle>
      <p class="muted">
        Recordings become text with timestamps, transcribed on this server. Keep this page open until uploads finish; transcription goes on
        without it.
      </p>
      <section class="card speech-new" aria-labelledby="speech-new-title">
        <h2 id="speech-new-title">New transcription</h2>
        {models?.length === 0 && (
          <div class="alert alert-error" role="alert">
            <span>
              {modelsError
                ? `The models could not be listed: ${errorMessage(modelsError)}`
                : 'No speech model is installed. An administrator can add a Whisper model with `appliance models import`.'}
            </span>
          </div>
        )}
        <div class="speech-new-grid">
          <OptionsForm models={models} options={options} onChange={setOptions} />
          <div class="stack">
            <UploadZone
              uploads={uploads}
              onFiles={addFiles}
              onCancel={(key) => queue.cancel(key)}
              onDismiss={(key) => queue.dismiss(key)}
              inputId="audio-files"
              accept={ACCEPT}
              hint="WAV, MP3, FLAC, Ogg or WebM (Opus), M4A; several at once."
            />
            <RecordPanel onRecorded={(file) => addFiles([file])} />
          </div>
        </div>
      </section>
      <ErrorBox error={error} onDismiss={() => setError(null)} />
      <div class="speech-layout">
        <section class="speech-side" aria-labelledby="speech-list-title">
          <h2 id="speech-list-title">Your transcripts</h2>
          <TranscriptList list={list} jobs={jobs} currentId={id} onLoadMore={loadMore} onCancel={cancel} onDelete={remove} />
        </section>
        <div class="speech-detail">
          {detail === null && list.started && list.items.length > 0 && (
            <p class="muted">Pick a transcript to read it, play it from any segment, download it or use it elsewhere.</p>
          )}
          {detail && detail.t === null && detail.error == null && <Spinner label="Loading the transcript…" />}
          {detail?.error != null && (
            <div class="card">
              <h2>{detail.error instanceof ApiError && detail.error.status === 404 ? 'Transcript not found' : 'The transcript could not be loaded'}</h2>
              <p>
                {detail.error instanceof ApiError && detail.error.status === 404
                  ? 'It does not exist, was deleted, or belongs to someone else.'
                  : errorMessage(detail.error)}
              </p>
            </div>
          )}
          {detail?.t && (
            <TranscriptView
              t={detail.t}
              job={jobs[detail.t.id]}
              audioUrl={audioUrls.get(detail.t.id) ?? null}
              focus={focusView}
              onCancel={cancel}
              onDelete={remove}
            />
          )}
        </div>
      </div>
    </div>
  );
}

function OptionsForm({
  models,
  options,
  onChange,
}: {
  models: ModelInfo[] | null;
  options: SpeechOptions;
  onChange: (o: SpeechOptions) => void;
}) {
  const speech = models ?? [];
  const englishOnly = isEnglishOnly(speech, options.model);
  const shown = effectiveOptions(options, speech);
  const set = (patch: Partial<SpeechOptions>) => onChange({ ...options, ...patch });
  const modelName = options.model || 'The default model';
  const languages = englishOnly ? LANGUAGES.filter(([c]) => c === 'en') : LANGUAGES;

  return (
    <fieldset class="stack speech-options">
      <legend>Options for the next recordings</legend>
      {speech.length > 1 ? (
        <label class="field">
          <span>Model</span>
          <select value={options.model} onChange={(e) => set({ model: e.currentTarget.value })}>
            <option value="">Default model</option>
            {speech.map((m) => (
              <option key={m.id} value={m.id}>
                {m.id}
                {m.meta?.multilingual === false ? ' (English only)' : ''}
              </option>
            ))}
          </select>
        </label>
      ) : (
        speech.length === 1 && (
          <p class="small">
            Model: <strong>{speech[0].id}</strong>
            {englishOnly && ' (English only)'}
          </p>
        )
      )}
      <label class="field">
        <span>Language</span>
        <select
          value={shown.language}
          onChange={(e) => set({ language: e.currentTarget.value })}
          aria-describedby={englishOnly ? 'speech-translate-hint' : undefined}
          data-testid="speech-language"
        >
          <option value="">Detect automatically</option>
          {languages.map(([code, name]) => (
            <option key={code} value={code}>
              {name}
            </option>
          ))}
        </select>
      </label>
      <div>
        <label class="check">
          <input
            type="checkbox"
            checked={shown.translate}
            disabled={englishOnly}
            aria-describedby="speech-translate-hint"
            onChange={(e) => set({ translate: e.currentTarget.checked })}
          />
          <span>Translate into English</span>
        </label>
        <p id="speech-translate-hint" class="small muted field-hint">
          {englishOnly
            ? `${modelName} knows English only, so it cannot translate or take another language. An administrator can install a multilingual Whisper model.`
            : 'Speech in another language becomes English text.'}
        </p>
      </div>
      <label class="check">
        <input type="checkbox" checked={options.wordTimestamps} onChange={(e) => set({ wordTimestamps: e.currentTarget.checked })} />
        <span>Word timestamps (in the JSON download)</span>
      </label>
      <label class="field">
        <span>Names and terms to expect (optional)</span>
        <input value={options.prompt} maxLength={1000} placeholder="Dashwood, Norland Park" onInput={(e) => set({ prompt: e.currentTarget.value })} />
      </label>
    </fieldset>
  );
}

function TranscriptList({
  list,
  jobs,
  currentId,
  onLoadMore,
  onCancel,
  onDelete,
}: {
  list: Paged<Transcript>;
  jobs: Record<number, Job>;
  currentId: number | null;
  onLoadMore: () => void;
  onCancel: (t: Transcript) => void;
  onDelete: (t: Transcript) => void;
}) {
  if (!list.started && list.loading) return <Spinner label="Loading transcripts…" />;
  return (
    <div class="stack">
      {list.started && list.items.length === 0 && <p class="muted">No transcripts yet. Drop a recording above or record one.</p>}
      {list.items.length > 0 && (
        <ul class="transcript-list">
          {list.items.map((t) => (
            <TranscriptRow key={t.id} t={t} job={jobs[t.id]} current={t.id === currentId} onCancel={onCancel} onDelete={onDelete} />
          ))}
        </ul>
      )}
      {list.error && (
        <div>
          <ErrorBox error={list.error} />
          <button type="button" class="btn btn-small" onClick={onLoadMore}>
            Try again
          </button>
        </div>
      )}
      {list.started && !list.done && !list.error && (
        <div>
          <button type="button" class="btn btn-small" onClick={onLoadMore} disabled={list.loading}>
            {list.loading ? 'Loading…' : 'Show older transcripts'}
          </button>
        </div>
      )}
    </div>
  );
}

function TranscriptRow({
  t,
  job,
  current,
  onCancel,
  onDelete,
}: {
  t: Transcript;
  job: Job | undefined;
  current: boolean;
  onCancel: (t: Transcript) => void;
  onDelete: (t: Transcript) => void;
}) {
  const state = liveState(t, job);
  const badge = transcriptBadge(state);
  const pending = isPending(state);
  const pct = transcribePercent(job);
  return (
    <li class="transcript-row" data-testid="transcript-row" data-state={state} data-transcript-id={t.id}>
      <div class="row">
        <a href={speechHref(t.id)} class="coll-link grow" aria-current={current ? 'page' : undefined}>
          <span class="coll-name">{t.name}</span>
          <span class="coll-meta">
            <span class={`badge ${badge.cls}`}>{badge.label}</span>
            {t.duration != null && `${formatLength(t.duration)} · `}
            <span title={formatTime(t.created_at)}>{formatAgo(t.created_at)}</span>
          </span>
        </a>
        {pending && t.job_id != null && (
          <button type="button" class="btn btn-small btn-quiet" onClick={() => onCancel(t)}>
            Cancel<span class="sr-only"> transcribing {t.name}</span>
          </button>
        )}
        <button type="button" class="btn btn-small btn-quiet" onClick={() => onDelete(t)}>
          Delete<span class="sr-only"> {t.name}</span>
        </button>
      </div>
      {pending && (
        <div class="transcript-row-progress">
          <progress max={100} value={pct ?? undefined} aria-label={`Transcribing ${t.name}`} />
          <span class="small muted">{progressLabel(state, job)}</span>
        </div>
      )}
      {state === 'failed' && t.error && <p class="doc-error small">{t.error}</p>}
    </li>
  );
}
