// The Notifications page's logic, kept out of the component so it can be tested: targets
// and results in words, what each event kind means, the repeat interval, and which
// deliveries a test produced.

import { formatNumber, plural } from './format';
import type { Delivery, NotifyKind, NotifyTarget } from './types';

const KIND_LABELS: Record<NotifyKind, string> = {
  json: 'JSON webhook',
  slack: 'Slack',
  matrix: 'Matrix',
  email: 'Email',
};

/** "Slack", "Matrix", "JSON webhook", "Email"; an unknown kind as it is. */
export function kindLabel(kind: string): string {
  return (KIND_LABELS as Record<string, string>)[kind] ?? kind;
}

/** "Slack (hooks.slack.com)". */
export function targetLabel(t: NotifyTarget): string {
  return t.host ? `${kindLabel(t.kind)} (${t.host})` : kindLabel(t.kind);
}

/** A delivery's target, `"slack hooks.slack.com"`, as `targetLabel` words it; anything else as it is. */
export function deliveryTargetLabel(target: string): string {
  const m = /^(\S+)\s+(\S+)$/.exec(target.trim());
  if (!m || !(m[1] in KIND_LABELS)) return target;
  return targetLabel({ kind: m[1] as NotifyKind, host: m[2] });
}

/** The config lines that add targets, for the page to show when there are none. */
export const CONFIG_FILE = '/etc/appliance/config.toml';
export const CONFIG_SNIPPET = `[notify]
webhooks = [
  "slack:https://hooks.slack.com/services/…",
  "matrix:https://matrix.example.org/…",
  "json:https://example.org/hook",
]

email_to = ["ops@example.com"]
email_from = "appliance@example.com"
smtp_host = "smtp.example.com"
smtp_username = "appliance"
smtp_password_file = "/etc/appliance/smtp-password"`;

interface EventInfo {
  title: string;
  meaning: string;
  /** The page where an administrator looks into it. */
  href?: string;
}

const EVENTS: Record<string, EventInfo> = {
  backup_failed: {
    title: 'Backup failed',
    meaning: 'A backup, scheduled or manual, did not finish.',
    href: '#/admin/backups',
  },
  backup_stale: {
    title: 'Backups overdue',
    meaning: 'The newest good backup is older than the backup schedule allows.',
    href: '#/admin/backups',
  },
  disk_low: {
    title: 'Disk nearly full',
    meaning: 'Little space is left on the disk that holds the data directory.',
    href: '#/admin/system',
  },
  worker_crash_loop: {
    title: 'Worker keeps crashing',
    meaning: 'A model worker crashed several times in a row and is being restarted.',
    href: '#/admin/health',
  },
  gpu_hot: {
    title: 'GPU hot',
    meaning: 'A GPU is running hot or slowing itself down to cool off.',
    href: '#/admin/gpu',
  },
  job_failed: {
    title: 'Job failed',
    meaning: 'A background job (indexing, transcription, a backup) failed after its retries.',
    href: '#/admin/models',
  },
  login_throttled: {
    title: 'Sign-ins throttled',
    meaning: 'Repeated failed sign-ins: an account or address is made to wait.',
    href: '#/admin/audit',
  },
  certificate_expiring: {
    title: 'Certificate expiring',
    meaning: 'The HTTPS certificate the daemon serves expires soon.',
    href: '#/admin/system',
  },
  test: {
    title: 'Test notification',
    meaning: 'Sent by “Send a test notification” on this page, to check the targets.',
  },
};

/** What an event kind means, in one line. */
export function eventMeaning(event: string): string {
  return EVENTS[event]?.meaning ?? 'An event this page does not describe yet.';
}

/** An event kind's title ("Backup failed"); an unknown kind as it is. */
export function eventTitle(event: string): string {
  return EVENTS[event]?.title ?? event;
}

/** The admin page to look at for an event kind; null where there is none. */
export function eventHref(event: string): string | null {
  return EVENTS[event]?.href ?? null;
}

/** "every 30 min", "every hour", "every 6 h", "every day", "every 1 h 30 min". */
function everyText(minutes: number): string {
  if (minutes === 1) return 'every minute';
  if (minutes < 60) return `every ${formatNumber(minutes)} min`;
  if (minutes === 60) return 'every hour';
  if (minutes === 1440) return 'every day';
  if (minutes % 1440 === 0) return `every ${formatNumber(minutes / 1440)} days`;
  if (minutes % 60 === 0) return `every ${formatNumber(minutes / 60)} h`;
  return `every ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** The repeat interval in words: how often the same event may be sent again. */
export function repeatText(minutes: number): string {
  if (!Number.isFinite(minutes) || minutes <= 0) return 'Every occurrence is sent, however often it repeats.';
  return `The same event is sent at most once ${everyText(Math.round(minutes))}.`;
}

/** The target's answer to the last attempt: "HTTP 500" ("SMTP 535" for email), or "no connection". */
export function statusText(status: number | null, protocol: 'HTTP' | 'SMTP' = 'HTTP'): string {
  return status == null ? 'no connection' : `${protocol} ${status}`;
}

/**
 * A delivery's result in words, without the ✓/✗ mark: "delivered (HTTP 200)",
 * "delivered after 2 attempts (HTTP 204)", "failed after 3 attempts: HTTP 500",
 * "failed after 3 attempts: no connection".
 */
export function resultText(d: Pick<Delivery, 'success' | 'attempts' | 'status'> & { target?: string }): string {
  const tries = d.attempts > 1 ? ` after ${plural(d.attempts, 'attempt')}` : '';
  const protocol = d.target?.startsWith('email ') ? 'SMTP' : 'HTTP';
  if (d.success) return `delivered${tries}${d.status != null ? ` (${statusText(d.status, protocol)})` : ''}`;
  return `failed${tries}: ${statusText(d.status, protocol)}`;
}

/** What the test button's answer means. */
export function queuedText(queued: number): string {
  if (queued <= 0) return 'Nothing was queued: no targets are configured.';
  return `A test notification was queued for ${plural(queued, 'target')}. Its deliveries appear below within seconds; a failing target is retried for about half a minute.`;
}

/** Identifies a delivery in the recent list, so those a test adds can be told from those before it. */
export function deliveryKey(d: Delivery): string {
  return `${d.at}|${d.event}|${d.target}`;
}

/** The test deliveries in `recent` that were not in the list before the test. */
export function newTestDeliveries(before: ReadonlySet<string>, recent: Delivery[]): Delivery[] {
  return recent.filter((d) => d.event === 'test' && !before.has(deliveryKey(d)));
}

/**
 * How the test went so far: "Waiting for 2 deliveries…", "1 of 2 arrived: 1 delivered",
 * "2 of 2 arrived: 1 delivered, 1 failed". `settled` once every target's has arrived.
 */
export function testProgress(queued: number, arrived: Delivery[]): { text: string; settled: boolean } {
  if (arrived.length === 0) return { text: `Waiting for ${plural(queued, 'delivery', 'deliveries')}…`, settled: false };
  const ok = arrived.filter((d) => d.success).length;
  const failed = arrived.length - ok;
  const parts = [ok > 0 && `${formatNumber(ok)} delivered`, failed > 0 && `${formatNumber(failed)} failed`].filter(Boolean);
  // More than queued: another administrator tested at the same time.
  const head =
    arrived.length <= queued ? `${formatNumber(arrived.length)} of ${formatNumber(queued)}` : formatNumber(arrived.length);
  return {
    text: `${head} arrived: ${parts.join(', ')}.`,
    settled: arrived.length >= queued,
  };
}

/**
 * After a test is queued, the recent list is fetched again this many ms after the
 * click: often at first (a working target answers in a second), then until the ~30 s
 * of retries of a failing one are over.
 */
export const TEST_REFRESH_AT_MS = [1_000, 2_500, 5_000, 10_000, 20_000, 35_000, 45_000];
