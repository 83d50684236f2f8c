// Following background jobs (indexing, transcription): each job's event stream while a
// stream slot is free, else (or once its stream fails) GET /api/v1/jobs/{id} every 2 s
// until a terminal state.

import { useEffect, useRef } from 'preact/hooks';
import { ApiError, get, rawRequest } from './api';
import { isIndexing, isTerminal } from './jobs';
import { SseParser } from './sse';
import type { DocumentInfo, Job } from './types';

/** A counter of concurrent streams. */
export class Slots {
  constructor(private free: number) {}

  take(): boolean {
    if (this.free <= 0) return false;
    this.free--;
    return true;
  }

  give(): void {
    this.free++;
  }
}

// Browsers keep about six HTTP/1.1 connections per host and an open stream holds one:
// with three uploads running, two streams still leave the page room for its requests.
export const STREAM_SLOTS = new Slots(2);
export const POLL_MS = 2000;

function parseJob(data: string): Job | null {
  try {
    const v = JSON.parse(data) as Job;
    return v && typeof v === 'object' && typeof v.id === 'number' && typeof v.state === 'string' ? v : null;
  } catch {
    return null;
  }
}

/** Reads `GET /api/v1/jobs/{id}/events` until a terminal event or the end of the stream. */
export async function streamJob(jobId: number, onJob: (j: Job) => void, signal: AbortSignal): Promise<void> {
  const response = await rawRequest('GET', `/api/v1/jobs/${jobId}/events`, undefined, {
    signal,
    headers: { accept: 'text/event-stream' },
  });
  if (!response.body) throw new ApiError(0, 'The browser cannot read event streams.');
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      const events = done ? parser.end() : parser.push(value);
      for (const ev of events) {
        const job = ev.event === 'job' || ev.event === 'message' ? parseJob(ev.data) : null;
        if (!job) continue;
        onJob(job);
        if (isTerminal(job.state)) return;
      }
      if (done) return;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

export interface WatchDeps {
  stream: (jobId: number, onJob: (j: Job) => void, signal: AbortSignal) => Promise<void>;
  fetchJob: (jobId: number, signal: AbortSignal) => Promise<Job>;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  slots: Slots;
}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

const DEFAULT_DEPS: WatchDeps = {
  stream: streamJob,
  fetchJob: (id, signal) => get<Job>(`/api/v1/jobs/${id}`, { signal }),
  sleep,
  slots: STREAM_SLOTS,
};

/**
 * Reports a job's states to `onJob` until it ends. Returns the terminal job, or null
 * when aborted or the job is gone (404).
 */
export async function watchJob(
  jobId: number,
  onJob: (j: Job) => void,
  signal: AbortSignal,
  deps: WatchDeps = DEFAULT_DEPS,
  pollMs = POLL_MS,
): Promise<Job | null> {
  let last: Job | null = null;
  const seen = (j: Job) => {
    if (signal.aborted) return;
    last = j;
    onJob(j);
  };
  const ended = () => (last && isTerminal(last.state) ? last : null);
  let streamWorks = true;
  while (!signal.aborted) {
    if (streamWorks && deps.slots.take()) {
      try {
        await deps.stream(jobId, seen, signal);
      } catch {
        // Fall back to polling below.
      } finally {
        deps.slots.give();
      }
      if (ended()) return ended();
      // Failed, or closed before the job ended: poll from now on.
      streamWorks = false;
      continue;
    }
    try {
      seen(await deps.fetchJob(jobId, signal));
      if (ended()) return ended();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      // Anything else (a network blip, a restart) is retried at the next tick.
    }
    await deps.sleep(pollMs, signal);
  }
  return null;
}

/** Something waiting on a job: a document being indexed, a recording being transcribed. */
export interface Watched {
  /** The thing's own id (a document's, a transcript's). */
  id: number;
  jobId: number;
}

/**
 * Watches the job of everything in `watched` (those that still wait). `onJob` gets each
 * event with the thing's id; `onEnded(id, jobId)` runs once a job has ended, so the page
 * can fetch the thing again. A job that has ended is never watched again.
 */
export function useJobSet(
  watched: Watched[],
  onJob: (j: Job, id: number) => void,
  onEnded: (id: number, jobId: number) => void,
): void {
  const handlers = useRef({ onJob, onEnded });
  handlers.current = { onJob, onEnded };
  const running = useRef(new Map<string, AbortController>());
  const ended = useRef(new Set<string>());
  const wanted = watched.map((w) => `${w.id}:${w.jobId}`);
  const key = wanted.join(',');

  useEffect(() => {
    const want = new Set(wanted);
    for (const [k, ctrl] of running.current) {
      if (!want.has(k)) {
        ctrl.abort();
        running.current.delete(k);
      }
    }
    for (const k of want) {
      if (running.current.has(k) || ended.current.has(k)) continue;
      const [id, jobId] = k.split(':').map(Number);
      const ctrl = new AbortController();
      running.current.set(k, ctrl);
      watchJob(jobId, (j) => handlers.current.onJob(j, id), ctrl.signal).then((job) => {
        if (running.current.get(k) === ctrl) running.current.delete(k);
        if (job || !ctrl.signal.aborted) {
          ended.current.add(k);
          handlers.current.onEnded(id, jobId);
        }
      });
    }
  }, [key]);

  useEffect(
    () => () => {
      for (const ctrl of running.current.values()) ctrl.abort();
      running.current.clear();
    },
    [],
  );
}

/** Watches the job of every document that is being indexed (see `useJobSet`). */
export function useJobWatches(
  docs: DocumentInfo[] | null,
  onJob: (j: Job) => void,
  onEnded: (docId: number, jobId: number) => void,
): void {
  const watched = (docs ?? []).filter((d) => isIndexing(d) && d.job_id != null).map((d) => ({ id: d.id, jobId: d.job_id! }));
  useJobSet(watched, onJob, onEnded);
}

/**
 * Fetches a document whose job ended until it no longer shows that job as running
 * (the document row may be written just after the job's last event), a few times at most.
 */
export async function settleDocument(
  docId: number,
  jobId: number,
  fetchDoc: (id: number) => Promise<DocumentInfo>,
  wait: (ms: number) => Promise<void>,
  tries = 5,
): Promise<DocumentInfo | 'gone' | null> {
  let doc: DocumentInfo | null = null;
  for (let i = 0; i < tries; i++) {
    try {
      doc = await fetchDoc(docId);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return 'gone';
      return doc;
    }
    if (!isIndexing(doc) || doc.job_id !== jobId) return doc;
    if (i + 1 < tries) await wait(POLL_MS);
  }
  return doc;
}
