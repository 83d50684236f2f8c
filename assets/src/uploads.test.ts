import { describe, expect, it } from 'vitest';
import { ApiError } from './api';
import { UploadQueue, uploadPercent, type Upload } from './uploads';

type F = { name: string; size: number };
const file = (name: string, size = 100): F => ({ name, size });

/** A sender whose requests the test finishes by hand. */
function fakeSender() {
  const calls: {
    file: F;
    collection: number;
    progress: (f: number) => void;
    signal: AbortSignal;
    resolve: (r: string) => void;
    reject: (e: unknown) => void;
  }[] = [];
  const send = (f: F, collection: number, progress: (x: number) => void, signal: AbortSignal) =>
    new Promise<string>((resolve, reject) => {
      calls.push({ file: f, collection, progress, signal, resolve, reject });
      signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
    });
  return { calls, send };
}

function setup(limit = 3) {
  const { calls, send } = fakeSender();
  let items: Upload[] = [];
  const done: [string, string][] = [];
  const q = new UploadQueue<F, string>(send, { changed: (i) => (items = i), done: (u, r) => done.push([u.name, r]) }, limit);
  const states = () => items.map((u) => `${u.name}:${u.state}`);
  return { q, calls, done, states, items: () => items };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('UploadQueue', () => {
  it('runs at most three uploads at once and starts the next in order as one ends', async () => {
    const { q, calls, states } = setup();
    q.add(7, ['a', 'b', 'c', 'd', 'e'].map((n) => file(n)));
    expect(calls.map((c) => c.file.name)).toEqual(['a', 'b', 'c']);
    expect(states()).toEqual(['a:uploading', 'b:uploading', 'c:uploading', 'd:waiting', 'e:waiting']);
    expect(calls.every((c) => c.collection === 7)).toBe(true);

    calls[1].resolve('ok-b');
    await tick();
    expect(calls.map((c) => c.file.name)).toEqual(['a', 'b', 'c', 'd']);
    expect(states()).toEqual(['a:uploading', 'b:done', 'c:uploading', 'd:uploading', 'e:waiting']);

    calls[0].reject(new ApiError(413, 'the file is too large'));
    await tick();
    expect(calls.length).toBe(5);
    expect(states()).toEqual(['a:failed', 'b:done', 'c:uploading', 'd:uploading', 'e:uploading']);
  });

  it('reports progress in bytes and calls done with the result', async () => {
    const { q, calls, done, items } = setup();
    q.add(1, [file('a', 2000)]);
    calls[0].progress(0.25);
    expect(items()[0].loaded).toBe(500);
    expect(uploadPercent(items()[0])).toBe(25);
    calls[0].progress(7);
    expect(items()[0].loaded).toBe(2000);
    calls[0].resolve('r');
    await tick();
    expect(done).toEqual([['a', 'r']]);
    expect(items()[0]).toMatchObject({ state: 'done', loaded: 2000, error: null });
  });

  it('keeps the error message of a failed upload', async () => {
    const { q, calls, items } = setup();
    q.add(1, [file('a')]);
    calls[0].reject(new ApiError(415, 'unsupported file type `exe`'));
    await tick();
    expect(items()[0]).toMatchObject({ state: 'failed', error: 'unsupported file type `exe`' });
  });

  it('cancels waiting and running uploads, freeing their slot', async () => {
    const { q, calls, states } = setup(1);
    q.add(1, [file('a'), file('b'), file('c')]);
    const [a, b] = q.snapshot;
    q.cancel(b.key);
    expect(states()).toEqual(['a:uploading', 'b:cancelled', 'c:waiting']);
    q.cancel(a.key);
    expect(calls[0].signal.aborted).toBe(true);
    await tick();
    expect(states()).toEqual(['a:cancelled', 'b:cancelled', 'c:uploading']);
    expect(calls.map((c) => c.file.name)).toEqual(['a', 'c']);
  });

  it('dismisses only finished rows', async () => {
    const { q, calls, states } = setup();
    q.add(1, [file('a'), file('b')]);
    q.dismiss(q.snapshot[0].key);
    expect(states()).toEqual(['a:uploading', 'b:uploading']);
    calls[0].resolve('x');
    await tick();
    q.dismiss(q.snapshot[0].key);
    expect(states()).toEqual(['b:uploading']);
  });

  it('cancelAll stops everything', async () => {
    const { q, states } = setup(2);
    q.add(1, [file('a'), file('b'), file('c')]);
    q.cancelAll();
    await tick();
    expect(states()).toEqual(['a:cancelled', 'b:cancelled', 'c:cancelled']);
  });
});

describe('uploadPercent', () => {
  it('stays within 0 to 100', () => {
    expect(uploadPercent({ loaded: 0, size: 0, state: 'uploading' })).toBe(0);
    expect(uploadPercent({ loaded: 0, size: 0, state: 'done' })).toBe(100);
    expect(uploadPercent({ loaded: 999, size: 1000, state: 'uploading' })).toBe(99);
    expect(uploadPercent({ loaded: 5000, size: 1000, state: 'uploading' })).toBe(100);
  });
});
