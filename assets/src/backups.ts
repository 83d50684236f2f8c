// The Backups page's logic, kept out of the component so it can be tested: the schedule
// and times in words, the warning an administrator must not miss (no backup, overdue),
// an archive's row counts in short, and the backup job's state.

import { formatBytes, formatNumber, formatTime, plural } from './format';
import { jobPercent } from './jobs';
import type { BackupInfo, BackupKind, BackupList, Job } from './types';

/** "every hour", "every 6 h", "every day", "every 3 days", "every week". */
export function intervalText(hours: number): string {
  if (hours === 1) return 'every hour';
  if (hours === 168) return 'every week';
  if (hours === 24) return 'every day';
  if (hours > 24 && hours % 24 === 0) return `every ${hours / 24} days`;
  return `every ${formatNumber(hours)} h`;
}

/** The schedule in words: "every day, keeping the newest 7", or "off". */
export function scheduleText(l: Pick<BackupList, 'schedule_hours' | 'keep'>): string {
  if (l.schedule_hours <= 0) return 'off';
  const keeping = l.keep > 0 ? `keeping the newest ${l.keep}` : 'keeping every archive';
  return `${intervalText(l.schedule_hours)}, ${keeping}`;
}

/**
 * A time relative to `now`, both ways: "just now", "5 min ago", "3 h ago", "12 d ago",
 * "in 5 min", "in 3 h", "in 2 d". Hours up to two days, so "in 23 h" stays in hours.
 * With `past`, a time that can only be past (an archive's) but reads as future, because
 * the daemon's clock is ahead of the browser's, is "just now".
 */
export function relativeText(iso: string, now: number = Date.now(), past = false): string {
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return iso;
  const ahead = t - now > 0;
  if (past && ahead) return 'just now';
  const a = Math.round(Math.abs(t - now) / 1000);
  if (a < 45) return ahead ? 'in less than a minute' : 'just now';
  let amount: string;
  if (a < 3600) amount = `${Math.max(1, Math.round(a / 60))} min`;
  else if (a < 48 * 3600) amount = `${Math.round(a / 3600)} h`;
  else amount = `${Math.round(a / 86400)} d`;
  return ahead ? `in ${amount}` : `${amount} ago`;
}

/** "3 h ago (2 Dec 2026, 16:15)": relative for reading, absolute for certainty. */
export function whenText(iso: string, now: number = Date.now(), past = false): string {
  return `${relativeText(iso, now, past)} (${formatTime(iso)})`;
}

/** When the schedule makes the next backup, in words. */
export function nextDueText(l: Pick<BackupList, 'schedule_hours' | 'next_due_at' | 'running_job'>, now: number = Date.now()): string {
  if (l.running_job != null) return 'one is running now';
  if (l.schedule_hours <= 0 || !l.next_due_at) return 'never: scheduled backups are off';
  const t = new Date(l.next_due_at).getTime();
  if (!Number.isNaN(t) && t <= now) return `due now (since ${formatTime(l.next_due_at)})`;
  return whenText(l.next_due_at, now);
}

/** Where the archives are and what they take: "2 archives, 1.5 GiB". */
export function archivesText(backups: Pick<BackupInfo, 'bytes'>[]): string {
  if (backups.length === 0) return 'no archives';
  const total = backups.reduce((a, b) => a + (Number.isFinite(b.bytes) ? b.bytes : 0), 0);
  return `${plural(backups.length, 'archive')}, ${formatBytes(total)}`;
}

/** The banner an administrator must not miss; null when backups are in order. */
export interface BackupWarning {
  reason: 'none' | 'overdue';
  title: string;
  text: string;
  /** A command to run on the host, shown after the text. */
  command: string | null;
}

/** Where a failed scheduled backup says why (the alert rules' runbook points there too). */
export const LOG_COMMAND = 'journalctl -u appliance | grep -i backup';

export function backupWarning(l: BackupList, now: number = Date.now()): BackupWarning | null {
  const scheduleOff = l.schedule_hours <= 0;
  if (!l.last_success_at) {
    const first = l.backups.length === 0 ? 'There is no backup yet.' : 'There is no good backup yet.';
    const then = scheduleOff
      ? ' Then turn on scheduled backups in the daemon’s configuration (appliance config show lists the settings).'
      : l.next_due_at
        ? ` The schedule makes the next one ${relativeText(l.next_due_at, now)}.`
        : '';
    return {
      reason: 'none',
      title: first,
      text: `If this machine’s disk fails, its conversations, documents, transcripts and users are lost. Click “Back up now”, download the archive and keep it on another machine.${then}`,
      command: null,
    };
  }
  if (l.overdue) {
    const rule = scheduleOff ? 'older than the schedule allows' : `older than the schedule (${intervalText(l.schedule_hours)}) allows`;
    return {
      reason: 'overdue',
      title: 'Backups are overdue.',
      text: `The newest good backup is from ${whenText(l.last_success_at, now, true)}, ${rule}: scheduled backups are failing, or the daemon was stopped when they were due. Click “Back up now”, and look for the reason in the daemon’s log:`,
      command: LOG_COMMAND,
    };
  }
  return null;
}

const KIND_LABEL: Record<BackupKind, string> = {
  manual: 'manual',
  scheduled: 'scheduled',
  'pre-upgrade': 'before an upgrade',
};

/** Why an archive was made, in words; an unknown kind is shown as sent. */
export function kindLabel(kind: string): string {
  return KIND_LABEL[kind as BackupKind] ?? kind;
}

/** `api_keys`, 1 → "1 API key"; `messages`, 120 → "120 messages". */
export function tableText(table: string, n: number): string {
  const words = table.replace(/_/g, ' ').replace(/\bapi\b/g, 'API');
  const one = words.endsWith('ies') ? `${words.slice(0, -3)}y` : words.endsWith('ss') || !words.endsWith('s') ? words : words.slice(0, -1);
  return plural(n, one, words);
}

/** The tables a person recognises, in the order they care about them. */
const FIRST_TABLES = ['users', 'conversations', 'messages', 'documents', 'transcripts', 'collections'];

/** Every table and its count, by name, for the details. */
export function rowsDetail(rows: Record<string, number>): [string, number][] {
  return Object.entries(rows)
    .filter(([, n]) => Number.isFinite(n))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * A few counts for the table cell: "3 users, 12 conversations, 120 messages, +5 more".
 * Tables people know first, then the biggest; empty tables only in the details.
 */
export function rowsSummary(rows: Record<string, number>, max = 3): string {
  const all = rowsDetail(rows);
  if (all.length === 0) return 'no tables';
  const rank = (t: string) => {
    const i = FIRST_TABLES.indexOf(t);
    return i < 0 ? FIRST_TABLES.length : i;
  };
  const shown = all
    .filter(([, n]) => n > 0)
    .sort(([a, na], [b, nb]) => rank(a) - rank(b) || nb - na)
    .slice(0, max);
  if (shown.length === 0) return 'no rows';
  const more = all.length - shown.length;
  return shown.map(([t, n]) => tableText(t, n)).join(', ') + (more > 0 ? `, +${more} more` : '');
}

/** Every count on one line, for a hover title: "collections: 1, messages: 120, users: 3". */
export function rowsTitle(rows: Record<string, number>): string {
  return rowsDetail(rows)
    .map(([t, n]) => `${t}: ${formatNumber(n)}`)
    .join(', ');
}

/** The backup job's state while followed: null before its first event. */
export function jobText(job: Job | null): string {
  if (!job) return 'Starting the backup…';
  switch (job.state) {
    case 'queued':
      return 'Waiting to start…';
    case 'running': {
      const pct = jobPercent(job);
      const note = job.note ? ` (${job.note})` : '';
      return pct === null ? `Backing up…${note}` : `Backing up: ${pct} %${note}`;
    }
    case 'done':
      return 'The backup is done.';
    case 'failed':
      return `The backup failed: ${job.error || 'the daemon gave no reason.'}`;
    case 'cancelled':
      return job.error ? `The backup was cancelled: ${job.error}` : 'The backup was cancelled.';
  }
}
