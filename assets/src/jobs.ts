// A collection's documents and the indexing jobs behind them, as one reducer: job
// events move a document through queued → indexing → ready/failed without waiting for
// the list to be fetched again.

import type { DocumentInfo, DocumentState, Job, JobState } from './types';

export interface DocsState {
  /** null until the first load. */
  docs: DocumentInfo[] | null;
  /** The latest job event of each document being indexed, by document id. */
  jobs: Record<number, Job>;
}

export type DocsAction =
  | { type: 'loaded'; docs: DocumentInfo[] }
  | { type: 'added'; docs: DocumentInfo[] }
  | { type: 'doc'; doc: DocumentInfo }
  | { type: 'removed'; id: number }
  | { type: 'job'; job: Job };

export const emptyDocs: DocsState = { docs: null, jobs: {} };

export function isTerminal(state: JobState): boolean {
  return state === 'done' || state === 'failed' || state === 'cancelled';
}

export function isIndexing(d: Pick<DocumentInfo, 'state'>): boolean {
  return d.state === 'queued' || d.state === 'indexing';
}

/** Keeps only job events that still belong to an indexing document. */
function liveJobs(docs: DocumentInfo[], jobs: Record<number, Job>): Record<number, Job> {
  const out: Record<number, Job> = {};
  for (const d of docs) {
    const j = jobs[d.id];
    if (j && isIndexing(d) && d.job_id === j.id) out[d.id] = j;
  }
  return out;
}

/** The document state a job state implies. */
function docStateOf(job: Job): { state: DocumentState; error: string | null } {
  switch (job.state) {
    case 'queued':
      return { state: 'queued', error: null };
    case 'running':
      return { state: 'indexing', error: null };
    case 'done':
      return { state: 'ready', error: null };
    case 'failed':
      return { state: 'failed', error: job.error || 'Indexing failed.' };
    case 'cancelled':
      return { state: 'failed', error: job.error || 'Indexing was cancelled.' };
  }
}

export function docsReducer(s: DocsState, a: DocsAction): DocsState {
  switch (a.type) {
    case 'loaded':
      return { docs: a.docs, jobs: liveJobs(a.docs, s.jobs) };
    case 'added': {
      // Newest first; a document already listed (re-added) moves up with its new state.
      const ids = new Set(a.docs.map((d) => d.id));
      const docs = [...a.docs, ...(s.docs ?? []).filter((d) => !ids.has(d.id))];
      return { docs, jobs: liveJobs(docs, s.jobs) };
    }
    case 'doc': {
      if (!s.docs?.some((d) => d.id === a.doc.id)) return s;
      const docs = s.docs.map((d) => (d.id === a.doc.id ? a.doc : d));
      return { docs, jobs: liveJobs(docs, s.jobs) };
    }
    case 'removed': {
      if (!s.docs) return s;
      const docs = s.docs.filter((d) => d.id !== a.id);
      return { docs, jobs: liveJobs(docs, s.jobs) };
    }
    case 'job': {
      const j = a.job;
      const doc = s.docs?.find((d) => d.job_id === j.id && (j.document_id == null || j.document_id === d.id));
      // An event of an older job (before a re-index) or of another collection.
      if (!doc || !s.docs || !isIndexing(doc)) return s;
      const next = docStateOf(j);
      const updated = next.state === doc.state && next.error === doc.error ? doc : { ...doc, ...next };
      const docs = updated === doc ? s.docs : s.docs.map((d) => (d.id === doc.id ? updated : d));
      return { docs, jobs: liveJobs(docs, { ...s.jobs, [doc.id]: j }) };
    }
  }
}

/** Whole percent of a job (0 to 100), or null when nothing has been measured yet. */
export function jobPercent(job: Job | undefined): number | null {
  if (!job || job.state === 'queued' || !Number.isFinite(job.progress)) return null;
  return Math.min(100, Math.max(0, Math.floor(job.progress * 100)));
}

/** What an indexing document is doing, for a person: "Indexing: 42 % (embedding 64/300 chunks)". */
export function indexingLabel(doc: Pick<DocumentInfo, 'state'>, job: Job | undefined): string {
  if (!job || job.state === 'queued') return doc.state === 'indexing' ? 'Indexing…' : 'Waiting to be indexed';
  const pct = jobPercent(job);
  const note = job.note ? ` (${job.note})` : '';
  return pct === null ? `Indexing…${note}` : `Indexing: ${pct} %${note}`;
}

const STATE_LABEL: Record<DocumentState, [string, string]> = {
  queued: ['queued', 'badge-muted'],
  indexing: ['indexing', ''],
  ready: ['ready', 'badge-ok'],
  failed: ['failed', 'badge-error'],
};

/** Badge text and class of a document state. */
export function stateBadge(state: DocumentState): { label: string; cls: string } {
  const [label, cls] = STATE_LABEL[state] ?? [state, 'badge-muted'];
  return { label, cls };
}
