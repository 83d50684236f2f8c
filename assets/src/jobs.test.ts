import { describe, expect, it } from 'vitest';
import { ApiError } from './api';
import { docsReducer, emptyDocs, indexingLabel, jobPercent, stateBadge, type DocsState } from './jobs';
import { settleDocument, Slots, watchJob, type WatchDeps } from './jobwatch';
import type { DocumentInfo, Job, JobState } from './types';

const doc = (id: number, extra: Partial<DocumentInfo> = {}): DocumentInfo => ({
  id,
  collection_id: 1,
  name: `d${id}.pdf`,
  media_type: 'pdf',
  size: 1000,
  state: 'queued',
  error: null,
  pages: null,
  chunks: 0,
  job_id: id * 10,
  source_url: null,
  created_at: '2026-01-01T00:00:00Z',
  indexed_at: null,
  ...extra,
});
const job = (id: number, state: JobState, extra: Partial<Job> = {}): Job => ({
  id,
  kind: 'document.ingest',
  state,
  progress: 0,
  note: null,
  attempts: 1,
  error: null,
  created_at: '',
  started_at: null,
  finished_at: null,
  document_id: id / 10,
  ...extra,
});

const loaded = (...docs: DocumentInfo[]): DocsState => docsReducer(emptyDocs, { type: 'loaded', docs });

describe('docsReducer', () => {
  it('moves a document through indexing to ready with its job events', () => {
    let s = loaded(doc(1), doc(2, { state: 'ready', job_id: null }));
    s = docsReducer(s, { type: 'job', job: job(10, 'running', { progress: 0.4, note: 'embedding 4/10 chunks' }) });
    expect(s.docs![0].state).toBe('indexing');
    expect(s.jobs[1].progress).toBe(0.4);
    expect(indexingLabel(s.docs![0], s.jobs[1])).toBe('Indexing: 40 % (embedding 4/10 chunks)');
    s = docsReducer(s, { type: 'job', job: job(10, 'done', { progress: 1 }) });
    expect(s.docs![0].state).toBe('ready');
    expect(s.jobs).toEqual({});
    expect(s.docs![1].state).toBe('ready');
  });

  it('marks failed and cancelled jobs as failed documents with the error', () => {
    let s = loaded(doc(1), doc(2));
    s = docsReducer(s, { type: 'job', job: job(10, 'failed', { error: 'the PDF is encrypted' }) });
    s = docsReducer(s, { type: 'job', job: job(20, 'cancelled') });
    expect(s.docs!.map((d) => [d.state, d.error])).toEqual([
      ['failed', 'the PDF is encrypted'],
      ['failed', 'Indexing was cancelled.'],
    ]);
  });

  it('ignores events of other or older jobs and of finished documents', () => {
    const s = loaded(doc(1, { job_id: 11 }), doc(2, { state: 'ready' }));
    expect(docsReducer(s, { type: 'job', job: job(10, 'failed') })).toBe(s);
    expect(docsReducer(s, { type: 'job', job: job(20, 'running') })).toBe(s);
    expect(docsReducer(s, { type: 'job', job: job(99, 'running') })).toBe(s);
    expect(docsReducer(emptyDocs, { type: 'job', job: job(10, 'running') })).toBe(emptyDocs);
  });

  it('puts added documents first without repeating them', () => {
    let s = loaded(doc(1), doc(2));
    s = docsReducer(s, { type: 'added', docs: [doc(3), doc(1, { state: 'indexing' })] });
    expect(s.docs!.map((d) => [d.id, d.state])).toEqual([
      [3, 'queued'],
      [1, 'indexing'],
      [2, 'queued'],
    ]);
  });

  it('replaces and removes documents and drops their stale job events', () => {
    let s = loaded(doc(1), doc(2));
    s = docsReducer(s, { type: 'job', job: job(10, 'running', { progress: 0.5 }) });
    expect(Object.keys(s.jobs)).toEqual(['1']);
    // Re-indexed: a new job id, so the old progress no longer applies.
    s = docsReducer(s, { type: 'doc', doc: doc(1, { job_id: 12 }) });
    expect(s.jobs).toEqual({});
    s = docsReducer(s, { type: 'removed', id: 2 });
    expect(s.docs!.map((d) => d.id)).toEqual([1]);
    // A document that is not listed (another collection) is not added by 'doc'.
    expect(docsReducer(s, { type: 'doc', doc: doc(9) })).toBe(s);
  });
});

describe('labels', () => {
  it('describes progress', () => {
    expect(indexingLabel(doc(1), undefined)).toBe('Waiting to be indexed');
    expect(indexingLabel(doc(1, { state: 'indexing' }), undefined)).toBe('Indexing…');
    expect(indexingLabel(doc(1), job(10, 'running', { progress: 0.999 }))).toBe('Indexing: 99 %');
    expect(jobPercent(job(10, 'queued', { progress: 0.5 }))).toBeNull();
    expect(jobPercent(job(10, 'running', { progress: 1.5 }))).toBe(100);
    expect(stateBadge('failed')).toEqual({ label: 'failed', cls: 'badge-error' });
  });
});

/** Deps whose stream and polls follow a script; sleeping is instant. */
function fakeDeps(opts: { stream?: (onJob: (j: Job) => void) => Promise<void>; polls?: (Job | Error)[]; slots?: number }) {
  const calls = { streams: 0, polls: 0, sleeps: 0 };
  const polls = [...(opts.polls ?? [])];
  const deps: WatchDeps = {
    stream: async (_id, onJob) => {
      calls.streams++;
      if (!opts.stream) throw new Error('no stream');
      await opts.stream(onJob);
    },
    fetchJob: async () => {
      calls.polls++;
      const next = polls.shift();
      if (!next) throw new Error('no more polls scripted');
      if (next instanceof Error) throw next;
      return next;
    },
    sleep: async () => {
      calls.sleeps++;
    },
    slots: new Slots(opts.slots ?? 1),
  };
  return { deps, calls };
}

describe('watchJob', () => {
  it('follows the stream to the terminal event', async () => {
    const seen: JobState[] = [];
    const { deps, calls } = fakeDeps({
      stream: async (onJob) => {
        onJob(job(10, 'running'));
        onJob(job(10, 'done'));
      },
    });
    const end = await watchJob(10, (j) => seen.push(j.state), new AbortController().signal, deps);
    expect(end?.state).toBe('done');
    expect(seen).toEqual(['running', 'done']);
    expect(calls).toEqual({ streams: 1, polls: 0, sleeps: 0 });
    expect(deps.slots.take()).toBe(true);
  });

  it('falls back to polling when the stream fails, and never streams again', async () => {
    const seen: JobState[] = [];
    const { deps, calls } = fakeDeps({
      stream: async (onJob) => {
        onJob(job(10, 'running'));
        throw new ApiError(0, 'lost');
      },
      polls: [job(10, 'running'), new Error('blip'), job(10, 'failed', { error: 'bad file' })],
    });
    const end = await watchJob(10, (j) => seen.push(j.state), new AbortController().signal, deps);
    expect(end?.error).toBe('bad file');
    expect(seen).toEqual(['running', 'running', 'failed']);
    expect(calls).toEqual({ streams: 1, polls: 3, sleeps: 2 });
  });

  it('polls when a stream ends early or no stream slot is free', async () => {
    const early = fakeDeps({ stream: async () => {}, polls: [job(10, 'done')] });
    expect((await watchJob(10, () => {}, new AbortController().signal, early.deps))?.state).toBe('done');
    expect(early.calls).toEqual({ streams: 1, polls: 1, sleeps: 0 });

    const busy = fakeDeps({ stream: async () => {}, polls: [job(10, 'running'), job(10, 'cancelled')], slots: 0 });
    expect((await watchJob(10, () => {}, new AbortController().signal, busy.deps))?.state).toBe('cancelled');
    expect(busy.calls.streams).toBe(0);
  });

  it('stops when the job is gone or the watch is aborted', async () => {
    const gone = fakeDeps({ polls: [new ApiError(404, 'no such job')] });
    expect(await watchJob(10, () => {}, new AbortController().signal, gone.deps)).toBeNull();

    const ctrl = new AbortController();
    const aborted = fakeDeps({ polls: [job(10, 'running')] });
    aborted.deps.sleep = async () => ctrl.abort();
    expect(await watchJob(10, () => {}, ctrl.signal, aborted.deps)).toBeNull();
    expect(aborted.calls.polls).toBe(1);
  });
});

describe('settleDocument', () => {
  it('refetches until the document no longer shows the ended job as running', async () => {
    const answers = [doc(1, { state: 'indexing' }), doc(1, { state: 'ready', chunks: 12 })];
    let waits = 0;
    const d = await settleDocument(1, 10, async () => answers.shift()!, async () => void waits++);
    expect(d).toMatchObject({ state: 'ready', chunks: 12 });
    expect(waits).toBe(1);
  });

  it('says when the document was deleted and gives up after a few tries', async () => {
    expect(await settleDocument(1, 10, async () => Promise.reject(new ApiError(404, 'gone')), async () => {})).toBe('gone');
    let n = 0;
    const stuck = await settleDocument(1, 10, async () => (n++, doc(1)), async () => {}, 3);
    expect(n).toBe(3);
    expect(stuck).toMatchObject({ state: 'queued' });
  });
});
