// The signed-in user's live event stream, `GET /api/v1/events`, kept open for the life
// of the page: read with the SSE parser, reconnected with growing pauses when it drops
// or falls silent, and given up on for good only when the daemon says it never will
// work (signed out, not allowed, no such endpoint).

import { ApiError, EVENTS_PATH, rawRequest } from './api';
import { sleep } from './jobwatch';
import { SseParser, type SseEvent } from './sse';

/** The daemon sends `: keep-alive` every 15 s: this long without a byte is a dead stream. */
export const SILENCE_MS = 45_000;
/** A connection that lasted this long was a good one: the next drop starts the pauses afresh. */
export const STABLE_MS = 30_000;
const BACKOFF_FIRST_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** A daemon's Retry-After is honoured up to this long. */
const RETRY_AFTER_MAX_MS = 5 * 60_000;

/**
 * The pause before reconnect number `attempt` (0 = the first after a drop): 1 s, 2 s,
 * 4 s … up to 30 s, each up to a fifth shorter at random so that many tabs do not
 * come back in step after a daemon restart.
 */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, Math.min(attempt, 16)));
  return Math.round(base * (1 - 0.2 * random()));
}

/** Answers after which reconnecting is pointless: signed out, not allowed, no such endpoint. */
export function isFinal(e: unknown): boolean {
  return e instanceof ApiError && (e.status === 401 || e.status === 403 || e.status === 404);
}

/**
 * Reads one connection to its end. Resolves when the daemon closes it or it stays
 * silent for `silenceMs`; rejects with ApiError when it cannot be opened. Aborting
 * `signal` ends it too.
 */
export async function readEvents(onEvent: (ev: SseEvent) => void, signal: AbortSignal, silenceMs = SILENCE_MS): Promise<void> {
  const ctrl = new AbortController();
  let reader: ReadableStreamDefaultReader<string> | null = null;
  // Aborting the request errors a body being read in browsers; cancelling the reader
  // as well ends the read wherever the body comes from.
  const stop = () => {
    ctrl.abort();
    reader?.cancel().catch(() => {});
  };
  signal.addEventListener('abort', stop);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const quiet = () => {
    clearTimeout(timer);
    timer = setTimeout(stop, silenceMs);
  };
  try {
    quiet();
    // A 401 here is not reported to the session: the pages' own requests do that.
    const response = await rawRequest('GET', EVENTS_PATH, undefined, {
      signal: ctrl.signal,
      quiet401: true,
      headers: { accept: 'text/event-stream' },
    });
    if (!response.body) throw new ApiError(0, 'The browser cannot read event streams.');
    const body = response.body.pipeThrough(new TextDecoderStream()).getReader();
    reader = body;
    const parser = new SseParser();
    try {
      for (;;) {
        quiet();
        const { value, done } = await body.read();
        // Cut off (silence, abort): what was half received is not an event.
        if (ctrl.signal.aborted) return;
        for (const ev of done ? parser.end() : parser.push(value)) onEvent(ev);
        if (done) return;
      }
    } finally {
      body.cancel().catch(() => {});
    }
  } catch (e) {
    // Our own abort (silence or the caller) is an ordinary end.
    if (ctrl.signal.aborted) return;
    throw e;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', stop);
  }
}

export interface FollowDeps {
  connect: (onEvent: (ev: SseEvent) => void, signal: AbortSignal) => Promise<void>;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  now: () => number;
  random: () => number;
}

const DEFAULT_DEPS: FollowDeps = {
  connect: (onEvent, signal) => readEvents(onEvent, signal),
  sleep,
  now: () => Date.now(),
  random: Math.random,
};

/** Why following stopped: the caller aborted, or the daemon answered `isFinal`. */
export type FollowEnd = { reason: 'aborted' } | { reason: 'refused'; error: ApiError };

/**
 * Keeps the stream open until `signal` aborts: every event goes to `onEvent`; a drop,
 * a silence or a failure to connect (network, 5xx) is followed by a pause of
 * `backoffMs` (or the daemon's Retry-After, if longer) and a new connection.
 */
export async function followEvents(
  onEvent: (ev: SseEvent) => void,
  signal: AbortSignal,
  deps: FollowDeps = DEFAULT_DEPS,
): Promise<FollowEnd> {
  let attempt = 0;
  while (!signal.aborted) {
    const opened = deps.now();
    let wait: number;
    try {
      await deps.connect(onEvent, signal);
      if (signal.aborted) break;
      attempt = deps.now() - opened >= STABLE_MS ? 0 : attempt;
      wait = backoffMs(attempt, deps.random);
    } catch (e) {
      if (signal.aborted) break;
      if (isFinal(e)) return { reason: 'refused', error: e as ApiError };
      wait = backoffMs(attempt, deps.random);
      if (e instanceof ApiError && e.retryAfter != null) wait = Math.max(wait, Math.min(e.retryAfter * 1000, RETRY_AFTER_MAX_MS));
    }
    attempt++;
    await deps.sleep(wait, signal);
  }
  return { reason: 'aborted' };
}
