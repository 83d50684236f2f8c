// The queue behind the live notification toasts, as pure functions of the list and the
// time so it can be tested: newest first, at most five, a repeat of the same event
// within a few seconds counted on the toast already shown instead of stacking a copy,
// an exact replay (the same notification again after a reconnect) dropped, and info
// toasts that leave by themselves while warnings and critical ones wait for a person.

import type { LiveNotification, NotifySeverity } from './types';

export interface Toast {
  /** Unique within the page's life, for keys and dismissal. */
  id: number;
  notification: LiveNotification;
  /** How many times it arrived (repeats within `DEDUPE_MS` add up here). */
  count: number;
  /** When it (last) arrived, in the browser's clock (ms). */
  shownAt: number;
}

export interface ToastQueue {
  /** Newest first. */
  toasts: Toast[];
  /** `replayKey` of the notifications seen lately, oldest first. */
  seen: string[];
  nextId: number;
}

/** At most this many toasts show at once. */
export const MAX_TOASTS = 5;
/** The same event and title again within this time is a repeat, not a new toast. */
export const DEDUPE_MS = 5_000;
/** Info toasts leave after this long; warnings and critical ones stay until dismissed. */
export const INFO_TTL_MS = 20_000;
/** How many notifications are remembered to drop exact replays. */
const SEEN_MAX = 100;

export const EMPTY_QUEUE: ToastQueue = { toasts: [], seen: [], nextId: 1 };

/** The same notification (time, event, title): a replay, not a repeat. */
function replayKey(n: LiveNotification): string {
  return `${n.at}|${n.event}|${n.title}`;
}

const sameKind = (a: LiveNotification, b: LiveNotification) => a.event === b.event && a.title === b.title;

/**
 * Adds a notification that arrived at `now`. Over the cap, the oldest toast that is not
 * critical goes first (a critical one only when all are critical).
 */
export function pushToast(q: ToastQueue, n: LiveNotification, now: number, max = MAX_TOASTS): ToastQueue {
  // Without a time there is no telling a replay from a repeat: it counts as a repeat.
  const key = n.at ? replayKey(n) : null;
  if (key && q.seen.includes(key)) return q;
  const seen = key ? [...q.seen, key].slice(-SEEN_MAX) : q.seen;
  const repeat = q.toasts.find((t) => sameKind(t.notification, n) && now - t.shownAt <= DEDUPE_MS);
  if (repeat) {
    // Counted in place: moving it to the top would read it out again as a new one.
    const worse = rank(n.severity) > rank(repeat.notification.severity);
    const updated: Toast = {
      ...repeat,
      notification: worse ? n : { ...repeat.notification, at: n.at, detail: n.detail },
      count: repeat.count + 1,
      shownAt: now,
    };
    return { ...q, seen, toasts: q.toasts.map((t) => (t.id === repeat.id ? updated : t)) };
  }
  let toasts = [{ id: q.nextId, notification: n, count: 1, shownAt: now }, ...q.toasts];
  while (toasts.length > max) {
    let drop = -1;
    for (let i = toasts.length - 1; i >= 0; i--) {
      if (toasts[i].notification.severity !== 'critical') {
        drop = i;
        break;
      }
    }
    if (drop < 0) drop = toasts.length - 1;
    toasts = toasts.filter((_, i) => i !== drop);
  }
  return { toasts, seen, nextId: q.nextId + 1 };
}

function rank(s: NotifySeverity): number {
  return s === 'critical' ? 2 : s === 'warning' ? 1 : 0;
}

export function dismissToast(q: ToastQueue, id: number): ToastQueue {
  return q.toasts.some((t) => t.id === id) ? { ...q, toasts: q.toasts.filter((t) => t.id !== id) } : q;
}

export function dismissAll(q: ToastQueue): ToastQueue {
  return q.toasts.length ? { ...q, toasts: [] } : q;
}

/** Drops the info toasts older than `INFO_TTL_MS`. */
export function expireToasts(q: ToastQueue, now: number): ToastQueue {
  const left = q.toasts.filter((t) => t.notification.severity !== 'info' || now - t.shownAt < INFO_TTL_MS);
  return left.length === q.toasts.length ? q : { ...q, toasts: left };
}

/** When the next info toast expires (ms, browser clock); null when none will. */
export function nextExpiry(q: ToastQueue): number | null {
  const times = q.toasts.filter((t) => t.notification.severity === 'info').map((t) => t.shownAt + INFO_TTL_MS);
  return times.length ? Math.min(...times) : null;
}

/** "Warning", "Critical", "Info": said in words, not only in colour. */
export function severityLabel(s: NotifySeverity): string {
  return s === 'critical' ? 'Critical' : s === 'warning' ? 'Warning' : 'Info';
}

/** Parses an `event: notification`'s data; anything not of that shape is null. */
export function parseNotification(data: string): LiveNotification | null {
  let v: unknown;
  try {
    v = JSON.parse(data);
  } catch {
    return null;
  }
  if (!v || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  if (typeof o.event !== 'string' || typeof o.title !== 'string') return null;
  const severity: NotifySeverity = o.severity === 'critical' || o.severity === 'warning' ? o.severity : 'info';
  return {
    at: typeof o.at === 'string' ? o.at : '',
    event: o.event,
    title: o.title,
    detail: typeof o.detail === 'string' ? o.detail : '',
    severity,
  };
}
