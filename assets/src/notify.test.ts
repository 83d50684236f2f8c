import { describe, expect, it } from 'vitest';
import {
  CONFIG_SNIPPET,
  deliveryKey,
  deliveryTargetLabel,
  eventHref,
  eventMeaning,
  eventTitle,
  kindLabel,
  newTestDeliveries,
  queuedText,
  repeatText,
  resultText,
  statusText,
  targetLabel,
  TEST_REFRESH_AT_MS,
  testProgress,
} from './notify';
import type { Delivery } from './types';

/** Every kind the contract says the daemon can send. */
const EVENTS = ['backup_failed', 'backup_stale', 'disk_low', 'worker_crash_loop', 'gpu_hot', 'job_failed', 'login_throttled', 'test'];

function delivery(over: Partial<Delivery> = {}): Delivery {
  return {
    at: '2026-12-02T16:00:00Z',
    event: 'test',
    title: 'Test notification',
    target: 'slack hooks.slack.com',
    success: true,
    attempts: 1,
    status: 200,
    ...over,
  };
}

describe('targets', () => {
  it('names each kind of target with its host', () => {
    expect(targetLabel({ kind: 'slack', host: 'hooks.slack.com' })).toBe('Slack (hooks.slack.com)');
    expect(targetLabel({ kind: 'matrix', host: 'matrix.example.org' })).toBe('Matrix (matrix.example.org)');
    expect(targetLabel({ kind: 'json', host: 'example.org' })).toBe('JSON webhook (example.org)');
    expect(targetLabel({ kind: 'json', host: '' })).toBe('JSON webhook');
    expect(kindLabel('teams')).toBe('teams');
  });

  it('words a delivery’s "kind host" target the same way, and leaves other shapes alone', () => {
    expect(deliveryTargetLabel('slack hooks.slack.com')).toBe('Slack (hooks.slack.com)');
    expect(deliveryTargetLabel(' json example.org:8443 ')).toBe('JSON webhook (example.org:8443)');
    expect(deliveryTargetLabel('teams example.org')).toBe('teams example.org');
    expect(deliveryTargetLabel('example.org')).toBe('example.org');
    expect(deliveryTargetLabel('')).toBe('');
  });

  it('shows a config snippet with every kind of target', () => {
    expect(CONFIG_SNIPPET).toMatch(/^\[notify\]\nwebhooks = \[/);
    for (const kind of ['slack:', 'matrix:', 'json:']) expect(CONFIG_SNIPPET).toContain(`"${kind}https://`);
    expect(CONFIG_SNIPPET).toContain(']\n\nemail_to = ["ops@example.com"]\n');
  });
});

describe('events', () => {
  it('gives every kind of the contract a title and a one-line meaning', () => {
    for (const e of EVENTS) {
      expect(eventTitle(e)).not.toBe(e);
      const meaning = eventMeaning(e);
      expect(meaning).not.toContain('does not describe');
      expect(meaning).not.toContain('\n');
      expect(meaning).toMatch(/\.$/);
    }
    expect(eventTitle('backup_failed')).toBe('Backup failed');
  });

  it('says so for a kind it does not know, and shows that kind as it is', () => {
    expect(eventTitle('cosmic_ray')).toBe('cosmic_ray');
    expect(eventMeaning('cosmic_ray')).toBe('An event this page does not describe yet.');
    expect(eventHref('cosmic_ray')).toBeNull();
  });

  it('points each kind at the page to look into it', () => {
    expect(eventHref('backup_failed')).toBe('#/admin/backups');
    expect(eventHref('gpu_hot')).toBe('#/admin/gpu');
    expect(eventHref('login_throttled')).toBe('#/admin/audit');
    expect(eventHref('test')).toBeNull();
  });
});

describe('repeat interval', () => {
  it('words minutes, hours and days', () => {
    expect(repeatText(30)).toBe('The same event is sent at most once every 30 min.');
    expect(repeatText(1)).toBe('The same event is sent at most once every minute.');
    expect(repeatText(60)).toBe('The same event is sent at most once every hour.');
    expect(repeatText(90)).toBe('The same event is sent at most once every 1 h 30 min.');
    expect(repeatText(360)).toBe('The same event is sent at most once every 6 h.');
    expect(repeatText(1440)).toBe('The same event is sent at most once every day.');
    expect(repeatText(2880)).toBe('The same event is sent at most once every 2 days.');
  });

  it('says when nothing holds repeats back', () => {
    expect(repeatText(0)).toBe('Every occurrence is sent, however often it repeats.');
    expect(repeatText(Number.NaN)).toBe('Every occurrence is sent, however often it repeats.');
  });
});

describe('results', () => {
  it('words the last status, or that there was no connection', () => {
    expect(statusText(500)).toBe('HTTP 500');
    expect(statusText(null)).toBe('no connection');
  });

  it('words a success, with retries when there were', () => {
    expect(resultText(delivery())).toBe('delivered (HTTP 200)');
    expect(resultText(delivery({ attempts: 2, status: 204 }))).toBe('delivered after 2 attempts (HTTP 204)');
    expect(resultText(delivery({ status: null }))).toBe('delivered');
  });

  it('words a failure with its attempts and the last answer', () => {
    expect(resultText(delivery({ success: false, attempts: 3, status: 500 }))).toBe('failed after 3 attempts: HTTP 500');
    expect(resultText(delivery({ success: false, attempts: 3, status: null }))).toBe('failed after 3 attempts: no connection');
    expect(resultText(delivery({ success: false, attempts: 1, status: 404 }))).toBe('failed: HTTP 404');
  });

  it('words an email delivery with its SMTP reply', () => {
    expect(resultText(delivery({ target: 'email smtp.example.com', status: null }))).toBe('delivered');
    expect(resultText(delivery({ target: 'email smtp.example.com', success: false, status: 535 }))).toBe('failed: SMTP 535');
    expect(deliveryTargetLabel('email smtp.example.com')).toBe('Email (smtp.example.com)');
  });
});

describe('a test notification', () => {
  it('says what was queued', () => {
    expect(queuedText(0)).toBe('Nothing was queued: no targets are configured.');
    expect(queuedText(1)).toMatch(/^A test notification was queued for 1 target\. /);
    expect(queuedText(3)).toMatch(/^A test notification was queued for 3 targets\. /);
  });

  it('finds the test deliveries that came after the click', () => {
    const old = delivery({ at: '2026-12-02T15:00:00Z' });
    const before = new Set([deliveryKey(old), deliveryKey(delivery({ event: 'disk_low', at: '2026-12-02T15:30:00Z' }))]);
    const fresh = delivery({ at: '2026-12-02T16:00:01Z' });
    const otherTarget = delivery({ at: '2026-12-02T16:00:01Z', target: 'json example.org', success: false, status: null });
    const notTest = delivery({ event: 'disk_low', at: '2026-12-02T16:00:02Z' });
    expect(newTestDeliveries(before, [notTest, otherTarget, fresh, old])).toEqual([otherTarget, fresh]);
    expect(newTestDeliveries(new Set(), [])).toEqual([]);
  });

  it('tells how far the deliveries have come', () => {
    expect(testProgress(2, [])).toEqual({ text: 'Waiting for 2 deliveries…', settled: false });
    expect(testProgress(1, [])).toEqual({ text: 'Waiting for 1 delivery…', settled: false });
    expect(testProgress(2, [delivery()])).toEqual({ text: '1 of 2 arrived: 1 delivered.', settled: false });
    expect(testProgress(2, [delivery(), delivery({ success: false })])).toEqual({
      text: '2 of 2 arrived: 1 delivered, 1 failed.',
      settled: true,
    });
    expect(testProgress(1, [delivery({ success: false }), delivery({ success: false })])).toEqual({
      text: '2 arrived: 2 failed.',
      settled: true,
    });
  });

  it('refreshes soon at first and until the retries of a failing target are over', () => {
    expect(TEST_REFRESH_AT_MS[0]).toBeLessThanOrEqual(1_000);
    expect(TEST_REFRESH_AT_MS.at(-1)!).toBeGreaterThan(30_000);
    expect([...TEST_REFRESH_AT_MS].sort((a, b) => a - b)).toEqual(TEST_REFRESH_AT_MS);
  });
});
