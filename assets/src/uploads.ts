// The upload queue of the Documents and Speech pages: one request per file, so each has its own
// progress, and at most `limit` at once. Browsers open about six connections per host
// and the page needs some for job streams and its own requests.

import { errorMessage } from './api';

export type UploadState = 'waiting' | 'uploading' | 'done' | 'failed' | 'cancelled';

export interface Upload {
  key: number;
  /** The collection the file goes to. */
  collection: number;
  name: string;
  size: number;
  /** Bytes sent so far. */
  loaded: number;
  state: UploadState;
  error: string | null;
}

/** Sends one file; reports progress as a fraction (0 to 1) and rejects on abort. */
export type Send<F, R> = (file: F, collection: number, onProgress: (fraction: number) => void, signal: AbortSignal) => Promise<R>;

export interface UploadListener<R> {
  /** Every change, with a new array (and new objects for the changed items). */
  changed: (items: Upload[]) => void;
  done: (item: Upload, result: R) => void;
}

export const UPLOAD_CONCURRENCY = 3;

export function isActiveUpload(u: Upload): boolean {
  return u.state === 'waiting' || u.state === 'uploading';
}

/** Whole percent sent; an empty file counts as sent once done. */
export function uploadPercent(u: Pick<Upload, 'loaded' | 'size' | 'state'>): number {
  if (u.state === 'done') return 100;
  if (u.size <= 0) return 0;
  return Math.min(100, Math.max(0, Math.floor((u.loaded / u.size) * 100)));
}

export class UploadQueue<F extends { name: string; size: number }, R> {
  private items: Upload[] = [];
  private readonly files = new Map<number, F>();
  private readonly controllers = new Map<number, AbortController>();
  private nextKey = 1;

  constructor(
    private readonly send: Send<F, R>,
    private readonly listener: UploadListener<R>,
    readonly limit = UPLOAD_CONCURRENCY,
  ) {}

  get snapshot(): Upload[] {
    return this.items;
  }

  /** Queues files for a collection; they start as slots free up, in order. */
  add(collection: number, files: F[]): void {
    if (files.length === 0) return;
    const added = files.map((f) => {
      const key = this.nextKey++;
      this.files.set(key, f);
      return { key, collection, name: f.name, size: f.size, loaded: 0, state: 'waiting' as const, error: null };
    });
    this.items = [...this.items, ...added];
    this.pump();
    this.listener.changed(this.items);
  }

  /** Stops a waiting or running upload. */
  cancel(key: number): void {
    const item = this.items.find((u) => u.key === key);
    if (!item) return;
    if (item.state === 'waiting') {
      this.files.delete(key);
      this.update(key, { state: 'cancelled' });
    } else if (item.state === 'uploading') {
      this.controllers.get(key)?.abort();
    }
  }

  cancelAll(): void {
    for (const u of this.items) this.cancel(u.key);
  }

  /** Removes a finished row (done, failed or cancelled). */
  dismiss(key: number): void {
    const item = this.items.find((u) => u.key === key);
    if (!item || isActiveUpload(item)) return;
    this.items = this.items.filter((u) => u.key !== key);
    this.listener.changed(this.items);
  }

  private running(): number {
    return this.items.filter((u) => u.state === 'uploading').length;
  }

  private pump(): void {
    while (this.running() < this.limit) {
      const next = this.items.find((u) => u.state === 'waiting');
      if (!next) return;
      this.start(next);
    }
  }

  private start(item: Upload): void {
    const file = this.files.get(item.key)!;
    const ctrl = new AbortController();
    this.controllers.set(item.key, ctrl);
    this.items = this.items.map((u) => (u.key === item.key ? { ...u, state: 'uploading' } : u));
    const onProgress = (fraction: number) => {
      const loaded = Math.round(Math.min(1, Math.max(0, fraction)) * item.size);
      if (this.controllers.has(item.key)) this.update(item.key, { loaded });
    };
    this.send(file, item.collection, onProgress, ctrl.signal).then(
      (result) => {
        this.finish(item.key, { state: 'done', loaded: item.size });
        const done = this.items.find((u) => u.key === item.key);
        if (done) this.listener.done(done, result);
      },
      (e) => {
        const cancelled = ctrl.signal.aborted || (e instanceof DOMException && e.name === 'AbortError');
        this.finish(item.key, cancelled ? { state: 'cancelled' } : { state: 'failed', error: errorMessage(e) });
      },
    );
  }

  private finish(key: number, patch: Partial<Upload>): void {
    this.controllers.delete(key);
    this.files.delete(key);
    this.items = this.items.map((u) => (u.key === key ? { ...u, ...patch } : u));
    this.pump();
    this.listener.changed(this.items);
  }

  private update(key: number, patch: Partial<Upload>): void {
    this.items = this.items.map((u) => (u.key === key ? { ...u, ...patch } : u));
    this.listener.changed(this.items);
  }
}
