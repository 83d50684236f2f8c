// The admin Backups page against the real daemon: a fresh one has no backup and says
// so; "Back up now" runs a `backup.create` job to its end, the archive is listed,
// downloads as a .tar.zst and is deleted. Then a list answered by the browser (an
// overdue schedule, every kind of archive, a backup already running that fails) to
// check every part renders; then a non-admin.

import { expect, test, type Browser, type BrowserContext, type Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADMIN, BOB } from './users';

const SHOTS = join(dirname(fileURLToPath(import.meta.url)), 'screenshots');
mkdirSync(SHOTS, { recursive: true });
const url = () => {
  const u = process.env.E2E_URL;
  if (!u) throw new Error('E2E_URL is not set (global setup did not run)');
  return u;
};
const shot = (p: Page, name: string) => p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
/** Every zstd frame starts with these bytes (RFC 8878). */
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

test.describe.configure({ mode: 'serial' });

async function axe(p: Page, where: string): Promise<string[]> {
  const result = await new AxeBuilder({ page: p }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  return result.violations.map(
    (v) => `${where}: ${v.id} (${v.impact}) ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(' | ')}`,
  );
}

/** Axe in light and dark on the page as it is now. */
async function axeBoth(p: Page, where: string): Promise<string[]> {
  const found: string[] = [];
  for (const scheme of ['light', 'dark'] as const) {
    await p.emulateMedia({ colorScheme: scheme });
    await p.waitForTimeout(200);
    found.push(...(await axe(p, `${scheme} ${where}`)));
  }
  await p.emulateMedia({ colorScheme: 'light' });
  return found;
}

async function signIn(p: Page, user: { name: string; password: string }) {
  await p.goto(`${url()}/#/chat`);
  await expect(p.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await p.getByLabel('User name').fill(user.name);
  await p.getByLabel('Password').fill(user.password);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await expect(p.getByRole('heading', { name: 'New conversation' })).toBeVisible();
}

const isList = (u: string) => new URL(u).pathname === '/api/v1/backups';

let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

test.beforeAll(async ({ browser }: { browser: Browser }) => {
  context = await browser.newContext({ acceptDownloads: true });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await signIn(page, ADMIN);
});

test.afterAll(async () => {
  await context?.close();
});

test('a fresh daemon has no backup and says so; back up now, download, delete', async () => {
  // Opened from the navigation, like an administrator would.
  await page.goto(`${url()}/#/admin/system`);
  const first = page.waitForResponse((r) => isList(r.url()) && r.request().method() === 'GET');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Backups', exact: true }).click();
  await expect(page).toHaveURL(/#\/admin\/backups$/);
  await expect(page.getByRole('heading', { name: 'Backups', level: 1 })).toBeVisible();

  // The daemon's answer follows the contract for a daemon that never made a backup.
  const response = await first;
  expect(response.status()).toBe(200);
  const empty = await response.json();
  expect(empty.backups).toEqual([]);
  expect(empty.last_success_at).toBeNull();
  expect(empty.running_job).toBeNull();
  expect(typeof empty.dir).toBe('string');
  expect(empty.dir.length).toBeGreaterThan(0);
  expect(Number.isInteger(empty.schedule_hours)).toBe(true);
  expect(Number.isInteger(empty.keep)).toBe(true);
  expect(typeof empty.overdue).toBe('boolean');
  if (empty.schedule_hours === 0) expect(empty.next_due_at).toBeNull();

  // No backup: a warning that says what to do, the empty list, the restore paragraph.
  const warning = page.getByTestId('backup-warning');
  await expect(warning).toHaveAttribute('data-reason', 'none');
  await expect(warning).toContainText('There is no backup yet.');
  await expect(warning).toContainText('Click “Back up now”, download the archive and keep it on another machine.');
  await expect(page.getByTestId('backup-last')).toHaveText('none yet');
  await expect(page.getByTestId('backup-schedule')).toHaveText(empty.schedule_hours === 0 ? 'off' : /^every /);
  await expect(page.getByTestId('backup-status')).toContainText(empty.dir);
  await expect(page.getByTestId('backup-empty')).toBeVisible();
  await expect(page.getByTestId('backup-row')).toHaveCount(0);
  await expect(page.getByRole('heading', { name: 'Restoring', level: 2 })).toBeVisible();
  await expect(page.getByText('appliance restore FILE')).toBeVisible();
  await expect(page.getByRole('checkbox', { name: 'Include model files' })).not.toBeChecked();
  await shot(page, 'admin-backups-none');
  expect(await axeBoth(page, '#/admin/backups (no backup)')).toEqual([]);

  // Back up now: a 202 with the job, followed on the page to its end.
  const started = page.waitForResponse((r) => isList(r.url()) && r.request().method() === 'POST');
  await page.getByRole('button', { name: 'Back up now' }).click();
  const post = await started;
  expect(post.status()).toBe(202);
  expect(post.request().postDataJSON()).toEqual({ with_models: false });
  const { job_id: jobId } = await post.json();
  expect(Number.isInteger(jobId)).toBe(true);
  const state = page.getByTestId('backup-job');
  await expect(state).toHaveAttribute('data-job', String(jobId));
  await expect(state).toHaveAttribute('data-state', 'done', { timeout: 90_000 });
  await expect(state).toHaveText('The backup is done.');
  const job = await (await page.request.get(`${url()}/api/v1/jobs/${jobId}`)).json();
  expect(job.kind).toBe('backup.create');
  expect(job.state).toBe('done');
  await expect(page.getByRole('button', { name: 'Back up now' })).toBeEnabled();

  // One manual archive, listed as the daemon describes it; the warning is gone.
  const rows = page.getByTestId('backup-row');
  await expect(rows).toHaveCount(1);
  const list = await (await page.request.get(`${url()}/api/v1/backups`)).json();
  expect(list.backups).toHaveLength(1);
  expect(list.running_job).toBeNull();
  expect(list.overdue).toBe(false);
  const made = list.backups[0];
  expect(Date.parse(list.last_success_at)).toBe(Date.parse(made.created_at));
  expect(made.name).toMatch(/\.tar\.zst$/);
  expect(made.kind).toBe('manual');
  expect(made.with_models).toBe(false);
  expect(made.bytes).toBeGreaterThan(0);
  expect(made.rows.users).toBeGreaterThanOrEqual(2);
  const row = rows.first();
  await expect(row).toHaveAttribute('data-kind', 'manual');
  await expect(row).toHaveAttribute('data-name', made.name);
  await expect(row.getByTestId('backup-kind')).toHaveText('manual');
  await expect(row).toContainText(made.name);
  await expect(row).toContainText(made.app_version);
  await expect(row).not.toContainText('with models');
  // The rows summary opens to every table's count.
  const counts = row.getByTestId('backup-rows');
  await counts.locator('summary').click();
  await expect(counts.getByRole('listitem').filter({ hasText: `${made.rows.users} users` })).toBeVisible();
  await expect(counts.getByRole('listitem')).toHaveCount(Object.keys(made.rows).length);
  await expect(page.getByTestId('backup-warning')).toHaveCount(0);
  await expect(page.getByTestId('backup-last')).toContainText('just now');
  await expect(page.getByTestId('backup-empty')).toHaveCount(0);
  await shot(page, 'admin-backups-one');

  // Download: a plain link the session cookie authenticates; the file is the archive.
  const link = row.getByTestId('backup-download');
  await expect(link).toHaveAttribute('href', `/api/v1/backups/${encodeURIComponent(made.name)}`);
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  expect(download.suggestedFilename()).toBe(made.name);
  expect(download.suggestedFilename()).toMatch(/\.tar\.zst$/);
  const bytes = readFileSync((await download.path())!);
  expect(bytes.length).toBeGreaterThan(0);
  expect(bytes.length).toBe(made.bytes);
  expect([...bytes.subarray(0, 4)]).toEqual(ZSTD_MAGIC);
  const again = await page.request.get(`${url()}/api/v1/backups/${encodeURIComponent(made.name)}`);
  expect(again.status()).toBe(200);
  expect(again.headers()['content-disposition']).toMatch(/^attachment; filename="[^"]+\.tar\.zst"$/);

  // Delete, after a confirmation naming the archive.
  let asked = '';
  page.once('dialog', (d) => {
    asked = d.message();
    d.accept();
  });
  const deleted = page.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().includes('/api/v1/backups/'));
  await row.getByTestId('backup-delete').click();
  expect((await deleted).status()).toBe(204);
  expect(asked).toContain(made.name);
  await expect(page.getByTestId('backup-row')).toHaveCount(0);
  await expect(page.getByTestId('backup-empty')).toBeVisible();
  const after = await (await page.request.get(`${url()}/api/v1/backups`)).json();
  expect(after.backups).toEqual([]);
  expect((await page.request.get(`${url()}/api/v1/backups/${encodeURIComponent(made.name)}`)).status()).toBe(404);
  expect(pageErrors).toEqual([]);
});

/** An overdue daily schedule with one archive of each kind. */
function overdueList(runningJob: number | null) {
  const now = Date.now();
  const at = (hoursAgo: number) => new Date(now - hoursAgo * 3_600_000).toISOString();
  return {
    dir: '/var/lib/appliance/backups',
    schedule_hours: 24,
    keep: 7,
    last_success_at: at(75),
    next_due_at: at(51),
    overdue: true,
    running_job: runningJob,
    backups: [
      {
        name: 'appliance-20261129T150000Z.tar.zst',
        created_at: at(75),
        bytes: 5 * GiB,
        kind: 'manual',
        app_version: '0.4.1',
        schema_version: 12,
        with_models: true,
        files: 1234,
        rows: { users: 3, conversations: 12, messages: 120, chunks: 5400, api_keys: 1, sessions: 0 },
      },
      {
        name: 'appliance-20261128T150000Z.tar.zst',
        created_at: at(99),
        bytes: 300 * MiB,
        kind: 'scheduled',
        app_version: '0.4.1',
        schema_version: 12,
        with_models: false,
        files: 1200,
        rows: { users: 3, conversations: 10, messages: 100 },
      },
      {
        name: 'appliance-20261120T090000Z.tar.zst',
        created_at: at(300),
        bytes: 280 * MiB,
        kind: 'pre-upgrade',
        app_version: '0.4.0',
        schema_version: 11,
        with_models: false,
        files: 1100,
        rows: { users: 2 },
      },
    ],
  };
}

test('an overdue schedule, every kind of archive, and a running backup that fails', async () => {
  // The browser answers: the list, a 409 (another backup is running), and that job's events.
  const JOB = 999;
  let running: number | null = null;
  const event = (state: string, extra: Record<string, unknown> = {}) =>
    `event: job\ndata: ${JSON.stringify({ id: JOB, kind: 'backup.create', state, progress: 0, note: null, attempts: 1, error: null, created_at: new Date().toISOString(), started_at: null, finished_at: null, document_id: null, ...extra })}\n\n`;
  await page.route(
    (u) => isList(u.href),
    async (route) => {
      if (route.request().method() === 'POST') {
        running = JOB;
        await route.fulfill({
          status: 409,
          json: { error: { message: 'a backup is already running', type: 'conflict', code: 'backup_running' } },
        });
      } else {
        await route.fulfill({ json: overdueList(running) });
      }
    },
  );
  const isJob = (u: URL) => u.pathname.startsWith(`/api/v1/jobs/${JOB}`);
  await page.route(isJob, async (route) => {
    running = null;
    await route.fulfill({
      headers: { 'content-type': 'text/event-stream' },
      body:
        event('running', { progress: 0.4, note: 'copying uploads 480/1234' }) +
        event('failed', { progress: 0.4, error: 'no space left on device: /var/lib/appliance/backups' }),
    });
  });

  // A reload, so the page starts afresh (a hash change to the same page would keep its state).
  await page.goto(`${url()}/#/admin/backups`);
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Backups', level: 1 })).toBeVisible();
  const warning = page.getByTestId('backup-warning');
  await expect(warning).toHaveAttribute('data-reason', 'overdue');
  await expect(warning).toContainText('Backups are overdue.');
  await expect(warning).toContainText('The newest good backup is from 3 d ago');
  await expect(warning).toContainText('older than the schedule (every day) allows');
  await expect(warning.locator('code')).toHaveText('journalctl -u appliance | grep -i backup');
  await expect(page.getByTestId('backup-schedule')).toHaveText('every day, keeping the newest 7');
  await expect(page.getByTestId('backup-last')).toContainText('3 d ago');
  await expect(page.getByTestId('backup-next')).toContainText('due now');
  await expect(page.getByTestId('backup-status')).toContainText('3 archives, 5.6 GiB');

  const table = page.getByRole('table', { name: /^Backup archives/ });
  const rows = table.getByTestId('backup-row');
  await expect(rows).toHaveCount(3);
  await expect(rows.nth(0)).toHaveAttribute('data-kind', 'manual');
  await expect(rows.nth(0)).toContainText('5.0 GiB');
  await expect(rows.nth(0)).toContainText('with models');
  await expect(rows.nth(0)).toContainText('1,234');
  await expect(rows.nth(0).getByTestId('backup-rows').locator('summary')).toHaveText(
    '3 users, 12 conversations, 120 messages, +3 more',
  );
  await expect(rows.nth(0).getByTestId('backup-rows').locator('summary')).toHaveAttribute(
    'title',
    'api_keys: 1, chunks: 5,400, conversations: 12, messages: 120, sessions: 0, users: 3',
  );
  await rows.nth(0).getByTestId('backup-rows').locator('summary').click();
  await expect(rows.nth(0).getByRole('listitem').filter({ hasText: '5,400 chunks' })).toBeVisible();
  await expect(rows.nth(0).getByRole('listitem').filter({ hasText: '1 API key' })).toBeVisible();
  await expect(rows.nth(1).getByTestId('backup-kind')).toHaveText('scheduled');
  await expect(rows.nth(1)).toContainText('300.0 MiB');
  await expect(rows.nth(1)).not.toContainText('with models');
  await expect(rows.nth(2).getByTestId('backup-kind')).toHaveText('before an upgrade');
  await expect(rows.nth(2)).toContainText('0.4.0');
  await expect(rows.nth(2).getByTestId('backup-rows').locator('summary')).toHaveText('2 users');
  await expect(rows.nth(2).getByRole('link', { name: 'Download appliance-20261120T090000Z.tar.zst' })).toHaveAttribute(
    'href',
    '/api/v1/backups/appliance-20261120T090000Z.tar.zst',
  );
  await expect(rows.nth(2).getByRole('button', { name: 'Delete appliance-20261120T090000Z.tar.zst' })).toBeVisible();
  await shot(page, 'admin-backups');
  expect(await axeBoth(page, '#/admin/backups (overdue, three archives)')).toEqual([]);

  // Another backup was first: the page says so, follows that one, and shows why it failed.
  await page.getByRole('checkbox', { name: 'Include model files' }).check();
  const posted = page.waitForRequest((r) => isList(r.url()) && r.method() === 'POST');
  await page.getByRole('button', { name: 'Back up now' }).click();
  expect((await posted).postDataJSON()).toEqual({ with_models: true });
  await expect(page.getByRole('status').filter({ hasText: 'A backup is already running' })).toBeVisible();
  await expect(page.getByRole('alert')).toHaveCount(0);
  const state = page.getByTestId('backup-job');
  await expect(state).toHaveAttribute('data-job', String(JOB));
  await expect(state).toHaveAttribute('data-state', 'failed');
  await expect(state).toHaveText('The backup failed: no space left on device: /var/lib/appliance/backups');
  await expect(page.getByRole('button', { name: 'Back up now' })).toBeEnabled();
  await shot(page, 'admin-backups-failed');
  expect(await axeBoth(page, '#/admin/backups (a failed backup)')).toEqual([]);

  await page.unroute((u) => isList(u.href));
  await page.unroute(isJob);
  expect(pageErrors).toEqual([]);
});

test('a user who is not an administrator gets neither the link, the page nor the API', async ({ browser }) => {
  const other = await browser.newContext();
  const bob = await other.newPage();
  await signIn(bob, BOB);
  await expect(bob.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Backups', exact: true })).toHaveCount(0);
  await bob.goto(`${url()}/#/admin/backups`);
  await expect(bob.getByRole('heading', { name: 'Administrators only' })).toBeVisible();
  expect((await bob.request.get(`${url()}/api/v1/backups`)).status()).toBe(403);
  // Refused before the name is looked up: a non-admin cannot learn which archives exist.
  expect((await bob.request.get(`${url()}/api/v1/backups/appliance-20261202T161500Z.tar.zst`)).status()).toBe(403);
  await other.close();
});
