// The admin Notifications page and the live notification toasts. Against the real
// daemon, which in the tests has no webhook target: the page explains how to add one,
// and a test notification is queued for nobody. Then a view answered by the browser
// (targets, a failed and a good delivery, a test followed to its deliveries), and an
// event stream answered by the browser that brings a warning and, after a reconnect,
// a critical event. Then a non-admin, who gets no link, no page, no API and no stream.

import { expect, test, type Browser, type BrowserContext, type Page, type Request } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { mkdirSync } from 'node:fs';
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

/** Every event kind the contract says the daemon can send. */
const EVENTS = ['backup_failed', 'backup_stale', 'disk_low', 'worker_crash_loop', 'gpu_hot', 'job_failed', 'login_throttled', 'test'];

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

async function csrf(p: Page): Promise<string> {
  return (await (await p.request.get(`${url()}/api/v1/auth/me`)).json()).csrf_token;
}

const path = (u: string) => new URL(u).pathname;
const isView = (u: string) => path(u) === '/api/v1/notifications';
const isTest = (u: string) => path(u) === '/api/v1/notifications/test';
const isEvents = (u: string) => path(u) === '/api/v1/events';

/** Opens the event stream from inside the page (the session's cookie) and closes it once the headers are in. */
function probeEvents(p: Page): Promise<{ status: number; type: string | null }> {
  return p.evaluate(async () => {
    const ctrl = new AbortController();
    const r = await fetch('/api/v1/events', { headers: { accept: 'text/event-stream' }, signal: ctrl.signal });
    const out = { status: r.status, type: r.headers.get('content-type') };
    ctrl.abort();
    return out;
  });
}

let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];
const streams: Request[] = [];

test.beforeAll(async ({ browser }: { browser: Browser }) => {
  context = await browser.newContext();
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('request', (r) => {
    if (isEvents(r.url())) streams.push(r);
  });
  await signIn(page, ADMIN);
});

test.afterAll(async () => {
  await context?.close();
});

test('without targets the page says how to add one, and a test is queued for nobody', async () => {
  // An administrator's pages keep the live stream open: the daemon serves it.
  await expect.poll(() => streams.length).toBeGreaterThan(0);
  const probe = await probeEvents(page);
  expect(probe.status).toBe(200);
  expect(probe.type).toMatch(/^text\/event-stream/);

  // Opened from the navigation, like an administrator would.
  await page.goto(`${url()}/#/admin/system`);
  const first = page.waitForResponse((r) => isView(r.url()) && r.request().method() === 'GET');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Notifications', exact: true }).click();
  await expect(page).toHaveURL(/#\/admin\/notifications$/);
  await expect(page.getByRole('heading', { name: 'Notifications', level: 1 })).toBeVisible();

  // The daemon's answer follows the contract for a configuration without webhooks.
  const response = await first;
  expect(response.status()).toBe(200);
  const view = await response.json();
  expect(view.targets).toEqual([]);
  expect(Number.isInteger(view.min_interval_minutes)).toBe(true);
  expect(view.min_interval_minutes).toBeGreaterThanOrEqual(0);
  // At least the contract's kinds (the daemon may know more: the page must describe those too).
  expect(view.events).toEqual(expect.arrayContaining(EVENTS));
  expect(Array.isArray(view.recent)).toBe(true);
  expect(view.recent.length).toBeLessThanOrEqual(100);
  for (const d of view.recent) {
    expect(Number.isNaN(Date.parse(d.at))).toBe(false);
    expect(EVENTS).toContain(d.event);
    expect(typeof d.title).toBe('string');
    expect(typeof d.target).toBe('string');
    expect(typeof d.success).toBe('boolean');
    expect(Number.isInteger(d.attempts)).toBe(true);
    expect(d.status === null || Number.isInteger(d.status)).toBe(true);
  }

  // No targets: what to add, and where.
  const none = page.getByTestId('notify-no-targets');
  await expect(none).toBeVisible();
  await expect(none).toContainText('No targets are configured');
  await expect(none).toContainText('/etc/appliance/config.toml');
  await expect(none).toContainText('systemctl restart appliance');
  const snippet = page.getByTestId('notify-snippet');
  await expect(snippet).toContainText('[notify]');
  await expect(snippet).toContainText('webhooks = [');
  await expect(snippet).toContainText('"slack:https://hooks.slack.com/services/');
  await expect(snippet).toContainText('"json:https://example.org/hook"');
  await expect(snippet).toContainText('"matrix:https://');
  await expect(page.getByTestId('notify-targets')).toHaveCount(0);
  await expect(page.getByTestId('notify-interval')).toHaveText(
    view.min_interval_minutes > 0 ? /^The same event is sent at most once every / : 'Every occurrence is sent, however often it repeats.',
  );

  // Every event kind, each with what it means.
  const events = page.getByTestId('notify-event');
  await expect(events).toHaveCount(view.events.length);
  for (const e of view.events as string[]) {
    const row = page.locator(`[data-testid="notify-event"][data-event="${e}"]`);
    await expect(row).toContainText(e);
    await expect(row.locator('dd')).not.toContainText('does not describe');
  }
  if (view.recent.length === 0) await expect(page.getByTestId('notify-recent-empty')).toBeVisible();
  else await expect(page.getByTestId('notify-delivery')).toHaveCount(view.recent.length);
  await shot(page, 'admin-notifications-none');
  expect(await axeBoth(page, '#/admin/notifications (no targets)')).toEqual([]);

  // A test with no target: 202, queued for nobody, and the page says so.
  const sent = page.waitForResponse((r) => isTest(r.url()) && r.request().method() === 'POST');
  await page.getByRole('button', { name: 'Send a test notification' }).click();
  const post = await sent;
  expect(post.status()).toBe(202);
  expect(post.request().postDataJSON()).toEqual({});
  expect(await post.json()).toEqual({ queued: 0 });
  const result = page.getByTestId('notify-test-result');
  await expect(result).toHaveAttribute('data-queued', '0');
  await expect(result).toContainText('Nothing was queued: no targets are configured.');
  await expect(page.getByRole('status').filter({ hasText: 'Nothing was queued' })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Send a test notification' })).toBeEnabled();
  expect(pageErrors).toEqual([]);
});

test('targets, a failed and a good delivery, and a test followed until its deliveries are listed', async () => {
  const now = Date.now();
  const at = (minutesAgo: number) => new Date(now - minutesAgo * 60_000).toISOString();
  const recent = [
    {
      at: at(5),
      event: 'backup_failed',
      title: 'Backup failed',
      target: 'json example.org',
      success: false,
      attempts: 3,
      status: 500,
    },
    {
      at: at(5),
      event: 'backup_failed',
      title: 'Backup failed',
      target: 'slack hooks.slack.com',
      success: true,
      attempts: 1,
      status: 200,
    },
    {
      at: at(90),
      event: 'disk_low',
      title: 'Disk nearly full',
      target: 'matrix matrix.example.org',
      success: false,
      attempts: 3,
      status: null,
    },
  ];
  let tested = false;
  const view = () => ({
    targets: [
      { kind: 'slack', host: 'hooks.slack.com' },
      { kind: 'matrix', host: 'matrix.example.org' },
      { kind: 'json', host: 'example.org' },
    ],
    min_interval_minutes: 30,
    events: EVENTS,
    // After the test: one delivery per target, two good, one that failed after retries.
    recent: tested
      ? [
          { at: new Date().toISOString(), event: 'test', title: 'Test notification', target: 'slack hooks.slack.com', success: true, attempts: 1, status: 200 },
          { at: new Date(now + 1).toISOString(), event: 'test', title: 'Test notification', target: 'matrix matrix.example.org', success: true, attempts: 1, status: 200 },
          { at: new Date(now + 2).toISOString(), event: 'test', title: 'Test notification', target: 'json example.org', success: false, attempts: 3, status: 404 },
          ...recent,
        ]
      : recent,
  });
  let posts = 0;
  await page.route(
    (u) => isView(u.href) || isTest(u.href),
    async (route) => {
      if (isTest(route.request().url())) {
        posts++;
        tested = true;
        await route.fulfill({ status: 202, json: { queued: 3 } });
      } else {
        await route.fulfill({ json: view() });
      }
    },
  );

  // A reload, so the page starts afresh (a hash change to the same page would keep its state).
  await page.goto(`${url()}/#/admin/notifications`);
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Notifications', level: 1 })).toBeVisible();
  await expect(page.getByTestId('notify-no-targets')).toHaveCount(0);
  const targets = page.getByTestId('notify-target');
  await expect(targets).toHaveText(['Slack (hooks.slack.com)', 'Matrix (matrix.example.org)', 'JSON webhook (example.org)']);
  await expect(targets.nth(0)).toHaveAttribute('data-kind', 'slack');
  await expect(page.getByText('3 webhooks from /etc/appliance/config.toml')).toBeVisible();
  await expect(page.getByTestId('notify-interval')).toHaveText('The same event is sent at most once every 30 min.');

  const table = page.getByRole('table', { name: /^Notifications sent/ });
  const rows = table.getByTestId('notify-delivery');
  await expect(rows).toHaveCount(3);
  await expect(rows.nth(0)).toHaveAttribute('data-success', 'false');
  await expect(rows.nth(0)).toHaveAttribute('data-event', 'backup_failed');
  await expect(rows.nth(0)).toContainText('Backup failed');
  await expect(rows.nth(0).getByTestId('notify-delivery-target')).toHaveText('JSON webhook (example.org)');
  await expect(rows.nth(0).getByTestId('notify-delivery-result')).toHaveText('✗ failed after 3 attempts: HTTP 500');
  await expect(rows.nth(1)).toHaveAttribute('data-success', 'true');
  await expect(rows.nth(1).getByTestId('notify-delivery-target')).toHaveText('Slack (hooks.slack.com)');
  await expect(rows.nth(1).getByTestId('notify-delivery-result')).toHaveText('✓ delivered (HTTP 200)');
  await expect(rows.nth(2).getByTestId('notify-delivery-result')).toHaveText('✗ failed after 3 attempts: no connection');
  await expect(rows.nth(2).getByTestId('notify-delivery-target')).toHaveText('Matrix (matrix.example.org)');
  await shot(page, 'admin-notifications');
  expect(await axeBoth(page, '#/admin/notifications (three targets, three deliveries)')).toEqual([]);

  // A test: queued for the three targets, then the list is fetched again until all three are in.
  const requested = page.waitForRequest((r) => isTest(r.url()) && r.method() === 'POST');
  await page.getByRole('button', { name: 'Send a test notification' }).click();
  expect((await requested).postDataJSON()).toEqual({});
  const result = page.getByTestId('notify-test-result');
  await expect(result).toHaveAttribute('data-queued', '3');
  await expect(result).toContainText('A test notification was queued for 3 targets.');
  await expect(result).toHaveAttribute('data-state', 'settled', { timeout: 15_000 });
  await expect(result).toContainText('3 of 3 arrived: 2 delivered, 1 failed.');
  await expect(rows).toHaveCount(6);
  await expect(rows.nth(2).getByTestId('notify-delivery-result')).toHaveText('✗ failed after 3 attempts: HTTP 404');
  await expect(table.locator('[data-testid="notify-delivery"][data-event="test"]')).toHaveCount(3);
  expect(posts).toBe(1);
  await shot(page, 'admin-notifications-tested');
  expect(await axeBoth(page, '#/admin/notifications (after a test)')).toEqual([]);

  await page.unroute((u) => isView(u.href) || isTest(u.href));
  expect(pageErrors).toEqual([]);
});

test('the live stream shows notifications as toasts, anywhere, and comes back after a drop', async () => {
  const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  const warning = {
    at: new Date().toISOString(),
    event: 'disk_low',
    title: 'Disk nearly full',
    detail: '2.1 GiB (3 %) free on /var/lib/appliance',
    severity: 'warning',
  };
  const critical = {
    at: new Date(Date.now() + 1000).toISOString(),
    event: 'backup_failed',
    title: 'Backup failed',
    detail: 'no space left on device: /var/lib/appliance/backups',
    severity: 'critical',
  };
  const job = { id: 7, kind: 'index', state: 'running', progress: 0.5, note: null, attempts: 1, error: null, created_at: new Date().toISOString(), started_at: null, finished_at: null, document_id: 3 };
  // First connection: a keep-alive, a job event (not a toast) and the warning, then it
  // drops. The second brings the critical one and the warning again (a replay); later
  // ones only keep alive and close.
  let calls = 0;
  await page.route(
    (u) => isEvents(u.href),
    async (route) => {
      calls++;
      const body =
        calls === 1
          ? `: keep-alive\n\n${sse('job', job)}${sse('notification', warning)}`
          : calls === 2
            ? `${sse('notification', critical)}${sse('notification', warning)}`
            : ': keep-alive\n\n';
      await route.fulfill({ headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }, body });
    },
  );

  // On a page that has nothing to do with notifications.
  await page.goto(`${url()}/#/documents`);
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Documents', level: 1 })).toBeVisible();

  const polite = page.getByRole('status', { name: 'Notifications' });
  const toast = polite.getByTestId('toast');
  await expect(toast).toHaveCount(1);
  await expect(toast).toHaveAttribute('data-severity', 'warning');
  await expect(toast).toHaveAttribute('data-event', 'disk_low');
  await expect(toast).toContainText('Warning');
  await expect(toast).toContainText('Disk nearly full');
  await expect(toast).toContainText('2.1 GiB (3 %) free on /var/lib/appliance');
  await expect(toast.getByRole('link', { name: 'Look into it: Disk nearly full' })).toHaveAttribute('href', '#/admin/system');
  await expect(polite).toHaveAttribute('aria-live', 'polite');

  // The stream dropped and came back by itself, with the critical one as an alert.
  const alert = page.getByRole('alert');
  await expect(alert).toHaveCount(1, { timeout: 10_000 });
  await expect(alert).toHaveAttribute('data-testid', 'toast');
  await expect(alert).toHaveAttribute('data-severity', 'critical');
  await expect(alert).toContainText('Critical');
  await expect(alert).toContainText('Backup failed');
  await expect(alert.getByRole('link', { name: 'Look into it: Backup failed' })).toHaveAttribute('href', '#/admin/backups');
  expect(calls).toBeGreaterThanOrEqual(2);
  // The warning that came again on the new connection is the same one: not shown twice.
  await expect(page.getByTestId('toast')).toHaveCount(2);
  await expect(polite.getByTestId('toast')).toHaveAttribute('data-count', '1');
  // It keeps reconnecting while the stream keeps dropping.
  await expect.poll(() => calls, { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
  await shot(page, 'toasts');
  expect(await axeBoth(page, '#/documents (two toasts)')).toEqual([]);

  // Dismissed one by one; the button for all shows while there are two.
  await expect(page.getByRole('button', { name: 'Dismiss all notifications' })).toBeVisible();
  await toast.getByRole('button', { name: 'Dismiss Disk nearly full' }).click();
  await expect(page.getByTestId('toast')).toHaveCount(1);
  await expect(page.getByRole('button', { name: 'Dismiss all notifications' })).toHaveCount(0);
  await alert.getByRole('button', { name: 'Dismiss Backup failed' }).click();
  await expect(page.getByTestId('toast')).toHaveCount(0);
  // Only a critical event is an alert: none stands in the page once they are dismissed.
  await expect(page.getByRole('alert')).toHaveCount(0);
  // The polite live region stays in the page, empty, for the next one to be read out.
  await expect(polite).toBeAttached();

  await page.unroute((u) => isEvents(u.href));
  expect(pageErrors).toEqual([]);
});

test('a user who is not an administrator gets neither the link, the page, the API nor the stream of notifications', async ({
  browser,
}) => {
  const other = await browser.newContext();
  const bob = await other.newPage();
  const bobStreams: string[] = [];
  bob.on('request', (r) => {
    if (isEvents(r.url())) bobStreams.push(r.url());
  });
  await signIn(bob, BOB);
  await expect(bob.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Notifications', exact: true })).toHaveCount(0);
  await bob.goto(`${url()}/#/admin/notifications`);
  await expect(bob.getByRole('heading', { name: 'Administrators only' })).toBeVisible();
  expect((await bob.request.get(`${url()}/api/v1/notifications`)).status()).toBe(403);
  const token = await csrf(bob);
  const post = await bob.request.post(`${url()}/api/v1/notifications/test`, { data: {}, headers: { 'x-csrf-token': token } });
  expect(post.status()).toBe(403);
  // The UI does not open the stream for notifications that a non-admin never gets…
  expect(bobStreams).toEqual([]);
  await expect(bob.getByTestId('toasts')).toHaveCount(0);
  // …though it is there for any signed-in user (their own jobs).
  expect((await probeEvents(bob)).status).toBe(200);
  await other.close();
});
