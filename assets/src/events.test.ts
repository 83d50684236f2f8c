import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from './api';
import { backoffMs, followEvents, isFinal, readEvents, STABLE_MS, type FollowDeps } from './events';
import type { SseEvent } from './sse';

describe('backoff', () => {
  it('doubles from 1 s up to 30 s', () => {
    const none = () => 0;
    expect([0, 1, 2, 3, 4, 5, 6, 50].map((a) => backoffMs(a, none))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000,
    ]);
  });

  it('is up to a fifth shorter at random', () => {
    expect(backoffMs(0, () => 1)).toBe(800);
    expect(backoffMs(5, () => 0.5)).toBe(27000);
  });
});

describe('final answers', () => {
  it('gives up on signed out, not allowed and no such endpoint, and on nothing else', () => {
    for (const s of [401, 403, 404]) expect(isFinal(new ApiError(s, 'x'))).toBe(true);
    for (const s of [0, 429, 500, 502, 503]) expect(isFinal(new ApiError(s, 'x'))).toBe(false);
    expect(isFinal(new Error('x'))).toBe(false);
  });
});

type Step = { events?: SseEvent[]; lasts?: number; error?: unknown };

/** A stream that answers each connection as `steps` says, on a fake clock. */
function fakeDeps(steps: Step[], ctrl: AbortController) {
  let clock = 0;
  const waits: number[] = [];
  let connects = 0;
  const deps: FollowDeps = {
    connect: async (onEvent) => {
      const step = steps[connects++];
      if (!step) {
        ctrl.abort();
        return;
      }
      for (const ev of step.events ?? []) onEvent(ev);
      clock += step.lasts ?? 0;
      if (step.error) throw step.error;
    },
    sleep: async (ms) => {
      waits.push(ms);
      clock += ms;
    },
    now: () => clock,
    random: () => 0,
  };
  return { deps, waits, connects: () => connects };
}

describe('following the stream', () => {
  it('reconnects after drops and failures with growing pauses, and passes every event on', async () => {
    const ctrl = new AbortController();
    const ev = (data: string): SseEvent => ({ event: 'notification', data });
    const { deps, waits, connects } = fakeDeps(
      [
        { events: [ev('1')], lasts: 100 },
        { error: new ApiError(0, 'Could not reach the server.') },
        { error: new ApiError(502, 'bad gateway') },
        { events: [ev('2'), ev('3')], lasts: 10 },
      ],
      ctrl,
    );
    const seen: string[] = [];
    const end = await followEvents((e) => seen.push(e.data), ctrl.signal, deps);
    expect(end).toEqual({ reason: 'aborted' });
    expect(seen).toEqual(['1', '2', '3']);
    expect(connects()).toBe(5);
    expect(waits).toEqual([1000, 2000, 4000, 8000]);
  });

  it('starts the pauses afresh after a connection that lasted', async () => {
    const ctrl = new AbortController();
    const { deps, waits } = fakeDeps(
      [{ error: new ApiError(503, 'busy') }, { error: new ApiError(503, 'busy') }, { lasts: STABLE_MS }, {}],
      ctrl,
    );
    await followEvents(() => {}, ctrl.signal, deps);
    expect(waits).toEqual([1000, 2000, 1000, 2000]);
  });

  it('waits as long as Retry-After says, within reason', async () => {
    const ctrl = new AbortController();
    const { deps, waits } = fakeDeps(
      [{ error: new ApiError(503, 'busy', { retryAfter: 20 }) }, { error: new ApiError(503, 'busy', { retryAfter: 86_400 }) }],
      ctrl,
    );
    await followEvents(() => {}, ctrl.signal, deps);
    expect(waits).toEqual([20_000, 300_000]);
  });

  it('gives up when the daemon says it never will work', async () => {
    for (const status of [401, 403, 404]) {
      const ctrl = new AbortController();
      const error = new ApiError(status, 'no');
      const { deps, waits, connects } = fakeDeps([{ error }, {}], ctrl);
      expect(await followEvents(() => {}, ctrl.signal, deps)).toEqual({ reason: 'refused', error });
      expect(connects()).toBe(1);
      expect(waits).toEqual([]);
    }
  });

  it('stops at once when aborted', async () => {
    const ctrl = new AbortController();
    ctrl.abort();
    const { deps, connects } = fakeDeps([{}], ctrl);
    expect(await followEvents(() => {}, ctrl.signal, deps)).toEqual({ reason: 'aborted' });
    expect(connects()).toBe(0);
  });
});

/** A response whose body sends `chunks` and then stays open or closes. */
function streamResponse(chunks: string[], close: boolean): Response {
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      const enc = new TextEncoder();
      for (const chunk of chunks) c.enqueue(enc.encode(chunk));
      if (close) c.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

describe('reading one connection', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('passes on named events, skips keep-alives, and ends with the stream', async () => {
    const fetch = vi.fn(async () =>
      streamResponse(
        [': keep-alive\n\n', 'event: job\ndata: {"id":1}\n\nevent: notif', 'ication\ndata: {"event":"test"}\n\n'],
        true,
      ),
    );
    vi.stubGlobal('fetch', fetch);
    const seen: SseEvent[] = [];
    await readEvents((e) => seen.push(e), new AbortController().signal);
    expect(seen.map((e) => [e.event, e.data])).toEqual([
      ['job', '{"id":1}'],
      ['notification', '{"event":"test"}'],
    ]);
    const [path, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(path).toBe('/api/v1/events');
    expect((init.headers as Record<string, string>).accept).toBe('text/event-stream');
  });

  it('ends a connection that stays silent too long', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn(async () => streamResponse(['data: one\n\n'], false)),
    );
    const seen: string[] = [];
    const started = Date.now();
    await readEvents((e) => seen.push(e.data), new AbortController().signal, 50);
    expect(seen).toEqual(['one']);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('ends when the caller aborts', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn(async () => streamResponse(['data: one\n\n'], false)),
    );
    const ctrl = new AbortController();
    const seen: string[] = [];
    const reading = readEvents((e) => {
      seen.push(e.data);
      ctrl.abort();
    }, ctrl.signal);
    await expect(reading).resolves.toBeUndefined();
    expect(seen).toEqual(['one']);
  });

  it('throws the daemon’s refusal for the loop to judge', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn(async () => new Response('{"error":{"message":"administrators only"}}', { status: 403 })),
    );
    await expect(readEvents(() => {}, new AbortController().signal)).rejects.toMatchObject({ status: 403 });
  });
});
