import { describe, expect, it } from 'vitest';
import { backupHref } from './api';
import {
  archivesText,
  backupWarning,
  intervalText,
  jobText,
  kindLabel,
  nextDueText,
  relativeText,
  rowsDetail,
  rowsSummary,
  rowsTitle,
  scheduleText,
  tableText,
  whenText,
} from './backups';
import { formatTime } from './format';
import type { BackupInfo, BackupList, Job, JobState } from './types';

const NOW = Date.parse('2026-12-02T18:00:00Z');
const ago = (s: number) => new Date(NOW - s * 1000).toISOString();
const GiB = 1024 ** 3;

function archive(over: Partial<BackupInfo> = {}): BackupInfo {
  return {
    name: 'appliance-20261202T161500Z.tar.zst',
    created_at: '2026-12-02T16:15:00Z',
    bytes: 10 * 1024 * 1024,
    kind: 'manual',
    app_version: '0.4.0',
    schema_version: 12,
    with_models: false,
    files: 4,
    rows: { users: 3, messages: 120 },
    ...over,
  };
}

function list(over: Partial<BackupList> = {}): BackupList {
  return {
    dir: '/var/lib/appliance/backups',
    schedule_hours: 24,
    keep: 7,
    last_success_at: null,
    next_due_at: null,
    overdue: false,
    running_job: null,
    backups: [],
    ...over,
  };
}

function job(state: JobState, over: Partial<Job> = {}): Job {
  return {
    id: 17,
    kind: 'backup.create',
    state,
    progress: 0,
    note: null,
    attempts: 1,
    error: null,
    created_at: '',
    started_at: null,
    finished_at: null,
    document_id: null,
    ...over,
  };
}

describe('schedule', () => {
  it('names the interval as a person would', () => {
    expect(intervalText(1)).toBe('every hour');
    expect(intervalText(6)).toBe('every 6 h');
    expect(intervalText(24)).toBe('every day');
    expect(intervalText(72)).toBe('every 3 days');
    expect(intervalText(36)).toBe('every 36 h');
    expect(intervalText(168)).toBe('every week');
  });

  it('says how many archives it keeps, or that it is off', () => {
    expect(scheduleText({ schedule_hours: 24, keep: 7 })).toBe('every day, keeping the newest 7');
    expect(scheduleText({ schedule_hours: 6, keep: 0 })).toBe('every 6 h, keeping every archive');
    expect(scheduleText({ schedule_hours: 0, keep: 7 })).toBe('off');
  });
});

describe('times', () => {
  it('says how long ago or how soon', () => {
    expect(relativeText(ago(10), NOW)).toBe('just now');
    expect(relativeText(ago(-10), NOW)).toBe('in less than a minute');
    expect(relativeText(ago(5 * 60), NOW)).toBe('5 min ago');
    expect(relativeText(ago(-5 * 60), NOW)).toBe('in 5 min');
    expect(relativeText(ago(3 * 3600), NOW)).toBe('3 h ago');
    // Up to two days in hours: "in 23 h" reads better than "in 1 d".
    expect(relativeText(ago(-23 * 3600), NOW)).toBe('in 23 h');
    expect(relativeText(ago(47 * 3600), NOW)).toBe('47 h ago');
    expect(relativeText(ago(12 * 86400), NOW)).toBe('12 d ago');
    expect(relativeText('garbage', NOW)).toBe('garbage');
    // Under half a second either way rounds to zero seconds; the sign still decides.
    expect(relativeText(new Date(NOW - 300).toISOString(), NOW)).toBe('just now');
    expect(relativeText(new Date(NOW + 300).toISOString(), NOW)).toBe('in less than a minute');
  });

  it('never puts a past event in the future when the daemon’s clock is ahead', () => {
    expect(relativeText(ago(-90), NOW, true)).toBe('just now');
    expect(relativeText(ago(-3 * 3600), NOW, true)).toBe('just now');
    expect(relativeText(ago(3 * 3600), NOW, true)).toBe('3 h ago');
  });

  it('puts the absolute time beside the relative one', () => {
    const t = ago(3 * 3600);
    expect(whenText(t, NOW)).toBe(`3 h ago (${formatTime(t)})`);
  });

  it('says when the next scheduled backup is due', () => {
    const soon = ago(-6 * 3600);
    expect(nextDueText(list({ next_due_at: soon }), NOW)).toBe(`in 6 h (${formatTime(soon)})`);
    expect(nextDueText(list({ next_due_at: ago(60) }), NOW)).toBe(`due now (since ${formatTime(ago(60))})`);
    expect(nextDueText(list({ schedule_hours: 0 }), NOW)).toBe('never: scheduled backups are off');
    expect(nextDueText(list({ next_due_at: soon, running_job: 17 }), NOW)).toBe('one is running now');
  });
});

describe('backupWarning', () => {
  it('warns when there is no backup at all, and says what to do', () => {
    const w = backupWarning(list({ schedule_hours: 0 }), NOW)!;
    expect(w.reason).toBe('none');
    expect(w.title).toBe('There is no backup yet.');
    expect(w.text).toContain('Click “Back up now”, download the archive and keep it on another machine.');
    expect(w.text).toContain('turn on scheduled backups');
    expect(w.command).toBeNull();
  });

  it('with a schedule, says when its first backup comes instead', () => {
    const w = backupWarning(list({ next_due_at: ago(-2 * 3600) }), NOW)!;
    expect(w.reason).toBe('none');
    expect(w.text).toContain('The schedule makes the next one in 2 h.');
    expect(w.text).not.toContain('turn on scheduled backups');
  });

  it('tells archives that exist but are not good from no archives', () => {
    expect(backupWarning(list({ backups: [archive()] }), NOW)!.title).toBe('There is no good backup yet.');
  });

  it('warns when the newest good backup is too old, with its age and where to look', () => {
    const last = ago(3 * 86400);
    const w = backupWarning(list({ last_success_at: last, overdue: true, backups: [archive({ created_at: last })] }), NOW)!;
    expect(w.reason).toBe('overdue');
    expect(w.title).toBe('Backups are overdue.');
    expect(w.text).toContain(`from 3 d ago (${formatTime(last)}), older than the schedule (every day) allows`);
    expect(w.text).toContain('Click “Back up now”, and look for the reason in the daemon’s log:');
    expect(w.command).toBe('journalctl -u appliance | grep -i backup');
  });

  it('is quiet when backups are in order', () => {
    expect(backupWarning(list({ last_success_at: ago(3600), backups: [archive()] }), NOW)).toBeNull();
    // The schedule is off but a backup exists: nothing is overdue.
    expect(backupWarning(list({ schedule_hours: 0, last_success_at: ago(40 * 86400) }), NOW)).toBeNull();
  });
});

describe('archives', () => {
  it('adds up their sizes with the shared byte format', () => {
    expect(archivesText([])).toBe('no archives');
    expect(archivesText([archive({ bytes: GiB }), archive({ bytes: GiB / 2 })])).toBe('2 archives, 1.5 GiB');
    expect(archivesText([archive({ bytes: 512 })])).toBe('1 archive, 512 B');
  });

  it('names the kinds', () => {
    expect(kindLabel('manual')).toBe('manual');
    expect(kindLabel('scheduled')).toBe('scheduled');
    expect(kindLabel('pre-upgrade')).toBe('before an upgrade');
    expect(kindLabel('imported')).toBe('imported');
  });

  it('links to the download URL with the name escaped', () => {
    expect(backupHref('appliance-20261202T161500Z.tar.zst')).toBe('/api/v1/backups/appliance-20261202T161500Z.tar.zst');
    expect(backupHref('a b#c.tar.zst')).toBe('/api/v1/backups/a%20b%23c.tar.zst');
  });
});

describe('row counts', () => {
  const rows = {
    messages: 120,
    users: 3,
    api_keys: 1,
    chunks: 5400,
    conversations: 12,
    audit_entries: 1,
    sessions: 0,
    documents: 9,
  };

  it('names a table in the singular or plural', () => {
    expect(tableText('users', 1)).toBe('1 user');
    expect(tableText('users', 3)).toBe('3 users');
    expect(tableText('api_keys', 1)).toBe('1 API key');
    expect(tableText('audit_entries', 1)).toBe('1 audit entry');
    expect(tableText('audit_entries', 2)).toBe('2 audit entries');
    expect(tableText('chunks', 5400)).toBe('5,400 chunks');
    expect(tableText('address', 1)).toBe('1 address');
  });

  it('summarises the tables people know first, then the biggest, and counts the rest', () => {
    expect(rowsSummary(rows)).toBe('3 users, 12 conversations, 120 messages, +5 more');
    expect(rowsSummary(rows, 5)).toBe('3 users, 12 conversations, 120 messages, 9 documents, 5,400 chunks, +3 more');
    expect(rowsSummary({ chunks: 10, api_keys: 2, users: 0 })).toBe('10 chunks, 2 API keys, +1 more');
    expect(rowsSummary({ users: 1 })).toBe('1 user');
    expect(rowsSummary({ users: 0 })).toBe('no rows');
    expect(rowsSummary({})).toBe('no tables');
  });

  it('lists every count, empty tables included, by table name', () => {
    expect(rowsDetail(rows).map(([t]) => t)).toEqual([
      'api_keys',
      'audit_entries',
      'chunks',
      'conversations',
      'documents',
      'messages',
      'sessions',
      'users',
    ]);
    expect(rowsTitle({ users: 3, messages: 1200 })).toBe('messages: 1,200, users: 3');
  });
});

describe('jobText', () => {
  it('follows the job from start to end', () => {
    expect(jobText(null)).toBe('Starting the backup…');
    expect(jobText(job('queued'))).toBe('Waiting to start…');
    expect(jobText(job('running'))).toBe('Backing up: 0 %');
    expect(jobText(job('running', { progress: 0.42, note: 'copying uploads 3/7' }))).toBe('Backing up: 42 % (copying uploads 3/7)');
    expect(jobText(job('running', { progress: NaN }))).toBe('Backing up…');
    expect(jobText(job('done', { progress: 1 }))).toBe('The backup is done.');
  });

  it('shows why it failed', () => {
    expect(jobText(job('failed', { error: 'no space left on device: /var/lib/appliance/backups' }))).toBe(
      'The backup failed: no space left on device: /var/lib/appliance/backups',
    );
    expect(jobText(job('failed'))).toBe('The backup failed: the daemon gave no reason.');
    expect(jobText(job('cancelled'))).toBe('The backup was cancelled.');
  });
});
