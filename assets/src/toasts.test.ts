import { describe, expect, it } from 'vitest';
import {
  DEDUPE_MS,
  dismissAll,
  dismissToast,
  EMPTY_QUEUE,
  expireToasts,
  INFO_TTL_MS,
  MAX_TOASTS,
  nextExpiry,
  parseNotification,
  pushToast,
  severityLabel,
  type ToastQueue,
} from './toasts';
import type { LiveNotification, NotifySeverity } from './types';

const T0 = 1_000_000;

let seq = 0;
function note(over: Partial<LiveNotification> = {}): LiveNotification {
  seq++;
  return {
    at: new Date(Date.parse('2026-12-02T16:00:00Z') + seq * 1000).toISOString(),
    event: 'disk_low',
    title: 'Disk nearly full',
    detail: '3 % free on /var/lib/appliance',
    severity: 'warning',
    ...over,
  };
}

const push = (q: ToastQueue, n: LiveNotification, at: number) => pushToast(q, n, at);
const titles = (q: ToastQueue) => q.toasts.map((t) => t.notification.title);

describe('toast queue', () => {
  it('shows the newest first, each with its own id', () => {
    let q = push(EMPTY_QUEUE, note({ title: 'A', event: 'a' }), T0);
    q = push(q, note({ title: 'B', event: 'b' }), T0 + 10);
    q = push(q, note({ title: 'C', event: 'c' }), T0 + 20);
    expect(titles(q)).toEqual(['C', 'B', 'A']);
    expect(new Set(q.toasts.map((t) => t.id)).size).toBe(3);
    expect(q.toasts.every((t) => t.count === 1)).toBe(true);
  });

  it(`keeps at most ${MAX_TOASTS}, dropping the oldest`, () => {
    let q = EMPTY_QUEUE;
    for (let i = 1; i <= 7; i++) q = push(q, note({ title: `N${i}`, event: `e${i}` }), T0 + i * 10_000);
    expect(q.toasts).toHaveLength(MAX_TOASTS);
    expect(titles(q)).toEqual(['N7', 'N6', 'N5', 'N4', 'N3']);
  });

  it('drops the oldest that is not critical before a critical one', () => {
    let q = push(EMPTY_QUEUE, note({ title: 'Crit', event: 'x', severity: 'critical' }), T0);
    for (let i = 1; i <= 5; i++) q = push(q, note({ title: `N${i}`, event: `e${i}`, severity: 'info' }), T0 + i * 10_000);
    expect(titles(q)).toEqual(['N5', 'N4', 'N3', 'N2', 'Crit']);
    // All critical: then the oldest goes after all.
    let c = EMPTY_QUEUE;
    for (let i = 1; i <= 6; i++) c = push(c, note({ title: `C${i}`, event: `c${i}`, severity: 'critical' }), T0 + i * 10_000);
    expect(titles(c)).toEqual(['C6', 'C5', 'C4', 'C3', 'C2']);
  });

  it('counts the same event and title within a few seconds on the toast already shown', () => {
    let q = push(EMPTY_QUEUE, note({ detail: 'first' }), T0);
    q = push(q, note({ title: 'Other', event: 'gpu_hot' }), T0 + 100);
    q = push(q, note({ detail: 'second' }), T0 + DEDUPE_MS - 1);
    expect(titles(q)).toEqual(['Other', 'Disk nearly full']);
    const repeated = q.toasts[1];
    expect(repeated.count).toBe(2);
    expect(repeated.notification.detail).toBe('second');
    expect(repeated.shownAt).toBe(T0 + DEDUPE_MS - 1);
    // A third within a few seconds of the second counts too.
    q = push(q, note({ detail: 'third' }), T0 + 2 * DEDUPE_MS - 2);
    expect(q.toasts).toHaveLength(2);
    expect(q.toasts[1].count).toBe(3);
  });

  it('shows the same event again as a new toast once the few seconds are over', () => {
    let q = push(EMPTY_QUEUE, note(), T0);
    q = push(q, note(), T0 + DEDUPE_MS + 1);
    expect(q.toasts).toHaveLength(2);
    expect(q.toasts.map((t) => t.count)).toEqual([1, 1]);
  });

  it('keeps apart a different title of the same event', () => {
    let q = push(EMPTY_QUEUE, note({ event: 'job_failed', title: 'Job 1 failed' }), T0);
    q = push(q, note({ event: 'job_failed', title: 'Job 2 failed' }), T0 + 10);
    expect(titles(q)).toEqual(['Job 2 failed', 'Job 1 failed']);
  });

  it('takes the worse severity of a repeat', () => {
    let q = push(EMPTY_QUEUE, note({ severity: 'warning' }), T0);
    q = push(q, note({ severity: 'critical', detail: 'now 1 % free' }), T0 + 10);
    expect(q.toasts).toHaveLength(1);
    expect(q.toasts[0].notification.severity).toBe('critical');
    expect(q.toasts[0].notification.detail).toBe('now 1 % free');
    q = push(q, note({ severity: 'info', detail: 'back to 2 %' }), T0 + 20);
    expect(q.toasts[0].notification.severity).toBe('critical');
    expect(q.toasts[0].count).toBe(3);
  });

  it('drops an exact replay (the same notification after a reconnect), even much later', () => {
    const n = note();
    let q = push(EMPTY_QUEUE, n, T0);
    const again = push(q, { ...n }, T0 + 60_000);
    expect(again).toBe(q);
    // Dismissed, then replayed: it stays dismissed.
    q = dismissToast(q, q.toasts[0].id);
    expect(push(q, { ...n }, T0 + 120_000).toasts).toEqual([]);
  });

  it('counts notifications without a time as repeats, never as replays', () => {
    let q = push(EMPTY_QUEUE, note({ at: '' }), T0);
    q = push(q, note({ at: '' }), T0 + 10);
    expect(q.toasts).toHaveLength(1);
    expect(q.toasts[0].count).toBe(2);
    expect(q.seen).toEqual([]);
  });

  it('dismisses one or all', () => {
    let q = push(EMPTY_QUEUE, note({ title: 'A', event: 'a' }), T0);
    q = push(q, note({ title: 'B', event: 'b' }), T0 + 10);
    const one = dismissToast(q, q.toasts[1].id);
    expect(titles(one)).toEqual(['B']);
    expect(dismissToast(one, 12345)).toBe(one);
    expect(dismissAll(q).toasts).toEqual([]);
    expect(dismissAll(EMPTY_QUEUE)).toBe(EMPTY_QUEUE);
  });

  it('lets info toasts go by themselves and keeps warnings and critical ones', () => {
    const sev = (severity: NotifySeverity, event: string) => note({ severity, event, title: event });
    let q = push(EMPTY_QUEUE, sev('info', 'i1'), T0);
    q = push(q, sev('warning', 'w'), T0 + 1000);
    q = push(q, sev('critical', 'c'), T0 + 2000);
    q = push(q, sev('info', 'i2'), T0 + 3000);
    expect(nextExpiry(q)).toBe(T0 + INFO_TTL_MS);
    expect(expireToasts(q, T0 + INFO_TTL_MS - 1)).toBe(q);
    const later = expireToasts(q, T0 + INFO_TTL_MS);
    expect(titles(later)).toEqual(['i2', 'c', 'w']);
    expect(nextExpiry(later)).toBe(T0 + 3000 + INFO_TTL_MS);
    const gone = expireToasts(later, T0 + 10 * INFO_TTL_MS);
    expect(titles(gone)).toEqual(['c', 'w']);
    expect(nextExpiry(gone)).toBeNull();
  });

  it('says the severity in words', () => {
    expect(severityLabel('info')).toBe('Info');
    expect(severityLabel('warning')).toBe('Warning');
    expect(severityLabel('critical')).toBe('Critical');
  });
});

describe('notification events', () => {
  it('parses the contract’s shape', () => {
    const n = { at: '2026-12-02T16:00:00Z', event: 'backup_failed', title: 'Backup failed', detail: 'disk full', severity: 'critical' };
    expect(parseNotification(JSON.stringify(n))).toEqual(n);
  });

  it('fills what is missing and takes an unknown severity as info', () => {
    expect(parseNotification('{"event":"test","title":"Test","severity":"loud"}')).toEqual({
      at: '',
      event: 'test',
      title: 'Test',
      detail: '',
      severity: 'info',
    });
  });

  it('refuses what is not a notification', () => {
    expect(parseNotification('not json')).toBeNull();
    expect(parseNotification('null')).toBeNull();
    expect(parseNotification('42')).toBeNull();
    expect(parseNotification('{"title":"no event"}')).toBeNull();
    expect(parseNotification('{"event":"x"}')).toBeNull();
    // A job event on the same stream is not one either.
    expect(parseNotification('{"id":3,"kind":"index","state":"running"}')).toBeNull();
  });
});
