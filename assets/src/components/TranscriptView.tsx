// One transcript: its facts, progress while it is transcribed, and once done the timed
// segments (a click plays from there when this tab still has the audio, else it
// highlights), downloads, "Add to collection…", "Send to chat", copy and delete.

import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { get, post } from '../api';
import { setChatDraft } from '../draft';
import { formatTime } from '../format';
import { documentsHref, navigate } from '../router';
import {
  chatDraft,
  EXPORT_FORMATS,
  exportHref,
  formatLength,
  formatTimestamp,
  isPending,
  languageName,
  liveState,
  progressLabel,
  segmentAt,
  transcribePercent,
  transcriptBadge,
} from '../speech';
import type { Collection, Job, Transcript } from '../types';
import { CopyButton, ErrorBox } from './common';

interface Props {
  t: Transcript;
  job: Job | undefined;
  /** The recording, when it was sent from this tab. */
  audioUrl: string | null;
  /** Move focus to the heading (opened from the list). */
  focus: boolean;
  onCancel: (t: Transcript) => void;
  onDelete: (t: Transcript) => void;
}

export function TranscriptView({ t, job, audioUrl, focus, onCancel, onDelete }: Props) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    if (focus) heading.current?.focus({ preventScroll: false });
  }, [t.id]);

  const state = liveState(t, job);
  const badge = transcriptBadge(state);
  const pct = transcribePercent(job);
  // Said once when a transcription seen running here ends (not for every percent).
  const [announce, setAnnounce] = useState('');
  const seen = useRef({ id: t.id, state });
  useEffect(() => {
    const was = seen.current;
    seen.current = { id: t.id, state };
    if (was.id !== t.id || !isPending(was.state) || isPending(state)) return;
    setAnnounce(
      state === 'done' ? `${t.name} is transcribed.` : state === 'failed' ? `Transcribing ${t.name} failed.` : `Transcribing ${t.name} was cancelled.`,
    );
  }, [t.id, state]);

  return (
    <section class="transcript" aria-labelledby="transcript-title" data-testid="transcript" data-state={state}>
      <h2 id="transcript-title" class="transcript-title" ref={heading} tabIndex={-1}>
        {t.name}
      </h2>
      <p class="transcript-meta">
        <span class={`badge ${badge.cls}`} data-testid="transcript-state">
          {badge.label}
        </span>
        {t.duration != null && <span>{formatLength(t.duration)}</span>}
        {t.language && <span>{languageName(t.language)}</span>}
        {t.task === 'translate' && <span>translated into English</span>}
        <span>{t.model}</span>
        <span>{formatTime(t.created_at)}</span>
      </p>
      {isPending(state) && (
        <div class="transcript-progress">
          <progress max={100} value={pct ?? undefined} aria-label={`Transcribing ${t.name}`} />
          <div class="row wrap">
            <span class="small muted grow">{progressLabel(state, job)}</span>
            {t.job_id != null && (
              <button type="button" class="btn btn-small" onClick={() => onCancel(t)}>
                Cancel<span class="sr-only"> transcribing {t.name}</span>
              </button>
            )}
          </div>
        </div>
      )}
      {(state === 'failed' || state === 'cancelled') && (
        <p class="doc-error" data-testid="transcript-error">
          {t.error || (state === 'failed' ? 'The transcription failed.' : 'The transcription was cancelled.')}
        </p>
      )}
      {state === 'done' && <Actions t={t} />}
      {state !== 'done' && (
        <div class="row wrap transcript-actions">
          <button type="button" class="btn btn-small btn-danger" onClick={() => onDelete(t)}>
            Delete transcript
          </button>
        </div>
      )}
      {state === 'done' && <Segments key={t.id} t={t} audioUrl={audioUrl} />}
      <p class="sr-only" role="status">
        {announce}
      </p>
      {state === 'done' && (
        <div class="row wrap transcript-actions transcript-foot">
          <button type="button" class="btn btn-small btn-danger" onClick={() => onDelete(t)}>
            Delete transcript
          </button>
        </div>
      )}
    </section>
  );
}

function closeMenu(menu: HTMLDetailsElement | null) {
  if (!menu?.open) return;
  menu.open = false;
  menu.querySelector('summary')?.focus();
}

function Actions({ t }: { t: Transcript }) {
  const downloads = useRef<HTMLDetailsElement>(null);
  return (
    <div class="row wrap transcript-actions">
      <details class="menu" ref={downloads} onKeyDown={(e) => e.key === 'Escape' && closeMenu(downloads.current)}>
        <summary class="btn btn-small">Download</summary>
        <div class="menu-items">
          {EXPORT_FORMATS.map(({ format, label }) => (
            <a
              key={format}
              class="btn btn-small"
              href={exportHref(t.id, format)}
              download
              data-testid={`export-${format}`}
              onClick={() => closeMenu(downloads.current)}
            >
              {label}
            </a>
          ))}
        </div>
      </details>
      <AddToCollection t={t} />
      <button
        type="button"
        class="btn btn-small"
        onClick={() => {
          setChatDraft(chatDraft(t));
          navigate('#/chat');
        }}
      >
        Send to chat
      </button>
      <CopyButton text={t.text} label="Copy text" class="btn btn-small" />
    </div>
  );
}

/** "Add to collection…": a writable collection picked from a menu, then the transcript is added (and indexed) as a document. */
function AddToCollection({ t }: { t: Transcript }) {
  const menu = useRef<HTMLDetailsElement>(null);
  const [collections, setCollections] = useState<Collection[] | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [chosen, setChosen] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [added, setAdded] = useState<{ collection: Collection; duplicate: boolean } | null>(null);

  const load = async () => {
    try {
      const all = (await get<{ collections: Collection[] }>('/api/v1/collections')).collections;
      const writable = all.filter((c) => c.writable);
      setCollections(writable);
      setChosen((c) => (writable.some((x) => String(x.id) === c) ? c : String(writable[0]?.id ?? '')));
      setLoadError(null);
    } catch (e) {
      setLoadError(e);
    }
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    const collection = collections?.find((c) => String(c.id) === chosen);
    if (!collection) return;
    setBusy(true);
    setError(null);
    try {
      const r = await post<{ duplicate: boolean }>(`/api/v1/transcripts/${t.id}/collection`, { collection_id: collection.id });
      setAdded({ collection, duplicate: Boolean(r?.duplicate) });
      closeMenu(menu.current);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <details
        class="menu"
        ref={menu}
        onToggle={() => {
          if (menu.current?.open) {
            setAdded(null);
            load();
          }
        }}
        onKeyDown={(e) => e.key === 'Escape' && closeMenu(menu.current)}
      >
        <summary class="btn btn-small">Add to collection…</summary>
        <div class="menu-items menu-form">
          {collections === null && loadError == null && <p class="muted small">Loading collections…</p>}
          <ErrorBox error={loadError} />
          {collections?.length === 0 && (
            <p class="small">
              You have no collection to add to. <a href={documentsHref(null)}>Create one on the Documents page</a>.
            </p>
          )}
          {collections && collections.length > 0 && (
            <form class="stack" onSubmit={submit}>
              <label class="field">
                <span>Collection</span>
                <select value={chosen} onChange={(e) => setChosen(e.currentTarget.value)}>
                  {collections.map((c) => (
                    <option key={c.id} value={String(c.id)}>
                      {c.name}
                    </option>
                  ))}
                </select>
              </label>
              <ErrorBox error={error} />
              <div>
                <button type="submit" class="btn btn-primary btn-small" disabled={busy || !chosen}>
                  {busy ? 'Adding…' : 'Add'}
                </button>
              </div>
            </form>
          )}
        </div>
      </details>
      {added && (
        <p class="alert alert-success transcript-added" role="status">
          <span>
            {added.duplicate ? 'It was already in ' : 'Added to '}
            <a href={documentsHref(added.collection.id)}>{added.collection.name}</a>
            {added.duplicate ? '.' : '; it can be searched and cited once it is indexed.'}
          </span>
        </p>
      )}
    </>
  );
}

function Segments({ t, audioUrl }: { t: Transcript; audioUrl: string | null }) {
  const audio = useRef<HTMLAudioElement>(null);
  const list = useRef<HTMLOListElement>(null);
  const [active, setActive] = useState(-1);
  const [audioError, setAudioError] = useState<string | null>(null);
  // Scroll only when a time was clicked, not while the audio plays on.
  const scrollTo = useRef(-1);
  const playable = audioUrl !== null && audioError === null;

  useLayoutEffect(() => {
    if (scrollTo.current < 0) return;
    list.current?.children[scrollTo.current]?.scrollIntoView({ block: 'nearest' });
    scrollTo.current = -1;
  }, [active]);

  const go = (i: number) => {
    scrollTo.current = i;
    setActive(i);
    const el = audio.current;
    if (el && playable) {
      el.currentTime = t.segments[i].start;
      el.play().catch(() => {
        // Autoplay rules or a decoding failure: the position is set either way.
      });
    }
  };

  if (t.segments.length === 0) {
    return <p class="muted">{t.text.trim() ? t.text : 'No speech was recognised in this recording.'}</p>;
  }

  return (
    <div class="stack">
      {audioUrl !== null && audioError === null && (
        <audio
          ref={audio}
          class="transcript-audio"
          controls
          preload="metadata"
          src={audioUrl}
          aria-label={`Recording: ${t.name}`}
          data-testid="transcript-audio"
          onTimeUpdate={(e) => setActive(segmentAt(t.segments, e.currentTarget.currentTime))}
          onError={() => setAudioError('This browser cannot play the recording here, so the times only mark the text.')}
        />
      )}
      {audioError && <p class="muted small">{audioError}</p>}
      {audioUrl === null && (
        <p class="muted small">The server does not keep the audio, so a time marks its text instead of playing it.</p>
      )}
      <ol class="segments" ref={list} aria-label="Segments">
        {t.segments.map((s, i) => {
          const ts = formatTimestamp(s.start);
          return (
            <li
              key={s.index}
              class={`segment ${i === active ? 'segment-active' : ''}`}
              aria-current={i === active ? 'true' : undefined}
              data-testid="segment"
            >
              <button
                type="button"
                class="btn-link segment-time"
                aria-label={playable ? `Play from ${ts}` : `Mark ${ts}`}
                onClick={() => go(i)}
              >
                {ts}
              </button>
              <span class="segment-text">{s.text.trim()}</span>
            </li>
          );
        })}
      </ol>
    </div>
  );
}

