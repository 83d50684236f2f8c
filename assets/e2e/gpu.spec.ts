// The admin GPU page against the real daemon, which on the test machine has no GPU and
// says so; then a report with a device, a plan, residents and a queue, answered by the
// browser instead of the daemon, to check every part renders; then a non-admin.

import { expect, test, type Browser, type BrowserContext, type Page } from '@playwright/test';
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
const GiB = 1024 ** 3;

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

const isGpuCall = (u: string) => new URL(u).pathname === '/api/v1/gpu';

let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

test.beforeAll(async ({ browser }: { browser: Browser }) => {
  context = await browser.newContext();
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await signIn(page, ADMIN);
});

test.afterAll(async () => {
  await context?.close();
});

test('without a GPU the page says why and that models run on the CPU', async () => {
  // Opened from the navigation, like an administrator would.
  await page.goto(`${url()}/#/admin/system`);
  const first = page.waitForResponse((r) => isGpuCall(r.url()));
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'GPU', exact: true }).click();
  await expect(page).toHaveURL(/#\/admin\/gpu$/);
  await expect(page.getByRole('heading', { name: 'GPU', level: 1 })).toBeVisible();

  // The daemon's answer follows the contract for a machine without a GPU.
  const response = await first;
  expect(response.status()).toBe(200);
  const body = await response.json();
  expect(body.state).toBe('unavailable');
  expect(typeof body.reason).toBe('string');
  expect(body.reason.length).toBeGreaterThan(0);
  expect(body.devices).toEqual([]);
  expect(body.budget.available_bytes).toBeNull();
  expect(Array.isArray(body.resident)).toBe(true);
  expect(Array.isArray(body.queue)).toBe(true);

  // Shown plainly: no GPU, the reason in the daemon's words, models on the CPU.
  const state = page.getByTestId('gpu-state');
  await expect(state).toHaveAttribute('data-state', 'unavailable');
  await expect(state).toContainText('No GPU.');
  await expect(state).toContainText(body.reason);
  await expect(state).toContainText('All models run on the CPU');
  await expect(page.getByRole('alert')).toHaveCount(0);
  await expect(page.getByRole('heading', { name: 'Devices' })).toHaveCount(0);
  await expect(page.getByRole('heading', { name: 'VRAM budget' })).toHaveCount(0);
  for (const heading of ['Start-up plan', 'Resident models', 'Load queue']) {
    await expect(page.getByRole('heading', { name: heading, level: 2 })).toBeVisible();
  }
  // Without a GPU every planned model is placed on the CPU.
  if (body.plan) {
    await expect(page.getByTestId('plan-row')).toHaveCount(body.plan.models.length);
    for (const row of await page.getByTestId('plan-row').all()) await expect(row).toHaveAttribute('data-placement', 'cpu');
  } else {
    await expect(page.getByText('Not planned yet')).toBeVisible();
  }
  if (body.queue.length === 0) await expect(page.getByTestId('queue-empty')).toHaveText('No load is waiting for VRAM.');

  // It refreshes by itself while shown.
  const next = await page.waitForResponse((r) => isGpuCall(r.url()), { timeout: 10_000 });
  expect(next.status()).toBe(200);

  await shot(page, 'admin-gpu-none');
  expect(await axeBoth(page, '#/admin/gpu (no GPU)')).toEqual([]);
});

/** A busy H100: our chat model and an embedding model beside someone else's job. */
function busyReport() {
  const now = Date.now();
  return {
    state: 'available',
    reason: null,
    driver_version: '550.54.15',
    cuda_version: '12.4',
    devices: [
      {
        index: 0,
        name: 'NVIDIA H100 80GB HBM3',
        uuid: 'GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809',
        memory_total_bytes: 80 * GiB,
        memory_used_bytes: 50 * GiB,
        memory_free_bytes: 30 * GiB,
        utilization_percent: 87,
        memory_utilization_percent: 41,
        temperature_c: 71,
        power_w: 402.4,
        power_limit_w: 700,
        ecc_corrected: 3,
        ecc_uncorrected: 0,
        throttle_reasons: ['sw_power_cap', 'gpu_idle'],
        processes: [
          { pid: 4242, used_bytes: 18 * GiB, name: 'appliance-worker', ours: true, model: 'qwen2.5-7b-instruct' },
          { pid: 4243, used_bytes: 2 * GiB, name: 'appliance-worker', ours: true, model: 'all-MiniLM-L6-v2' },
          { pid: 777, used_bytes: 30 * GiB, name: 'python3', ours: false, model: null },
        ],
      },
    ],
    budget: { reserve_bytes: 2 * GiB, limit_bytes: null, available_bytes: 28 * GiB, committed_bytes: 20 * GiB },
    plan: {
      planned_at: new Date(now - 3_600_000).toISOString(),
      gpu_free_bytes: 48 * GiB,
      models: [
        { name: 'qwen2.5-7b-instruct', kind: 'chat', preload: true, gpu_layers: 20, total_layers: 32, vram_bytes: 18 * GiB, ram_bytes: 3 * GiB, placement: 'partial', reason: 'another process holds 30 GiB' },
        { name: 'all-MiniLM-L6-v2', kind: 'embedding', preload: true, gpu_layers: 6, total_layers: 6, vram_bytes: 2 * GiB, ram_bytes: 0, placement: 'gpu', reason: 'fits' },
        { name: 'whisper-tiny.en', kind: 'speech', preload: false, gpu_layers: 0, total_layers: 4, vram_bytes: 0, ram_bytes: GiB / 4, placement: 'cpu', reason: 'loaded on demand' },
      ],
      notes: ['another process holds 30.0 GiB of GPU 0; chat model `qwen2.5-7b-instruct` gets 20 of 32 layers'],
    },
    resident: [
      { name: 'qwen2.5-7b-instruct', kind: 'chat', gpu_layers: 20, estimate_bytes: 16 * GiB, measured_bytes: 18 * GiB, pinned: true, expires_at: null, in_use: true },
      { name: 'all-MiniLM-L6-v2', kind: 'embedding', gpu_layers: 6, estimate_bytes: 2 * GiB, measured_bytes: null, pinned: false, expires_at: new Date(now + 300_000).toISOString(), in_use: false },
    ],
    queue: [
      { position: 1, model: 'llama-3.1-8b', kind: 'chat', needs_bytes: 9 * GiB, waiting_secs: 45 },
      { position: 2, model: 'whisper-large-v3', kind: 'speech', needs_bytes: 4 * GiB, waiting_secs: 12 },
    ],
  };
}

test('a GPU report shows the device, budget, plan, residents and queue', async () => {
  // This machine has no GPU: the browser answers /api/v1/gpu instead of the daemon.
  let calls = 0;
  await page.route(
    (u) => isGpuCall(u.href),
    async (route) => {
      calls++;
      await route.fulfill({ json: busyReport() });
    },
  );
  await page.goto(`${url()}/#/admin/gpu`);
  await expect(page.getByRole('heading', { name: 'GPU', level: 1 })).toBeVisible();
  await expect(page.getByTestId('gpu-state')).toHaveAttribute('data-state', 'available');
  await expect(page.getByTestId('gpu-state')).toContainText('driver 550.54.15 · CUDA 12.4');

  const gpu = page.getByRole('region', { name: 'GPU 0: NVIDIA H100 80GB HBM3' });
  await expect(gpu.getByRole('heading', { name: 'GPU 0: NVIDIA H100 80GB HBM3', level: 3 })).toBeVisible();
  await expect(gpu.locator('code[title="GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"]')).toHaveText('GPU-1a2b3c4d…');
  await expect(gpu.getByRole('img', { name: /^GPU 0 memory of 80\.0 GiB: appliance 20\.0 GiB \(25 %\), other processes 30\.0 GiB/ })).toBeVisible();
  await expect(gpu).toContainText('50.0 GiB used of 80.0 GiB, 30.0 GiB free');
  await expect(gpu).toContainText('87 % compute');
  await expect(gpu).toContainText('71 °C');
  await expect(gpu).toContainText('402 W of 700 W (57 %)');
  await expect(gpu).toContainText('3 corrected, 0 uncorrected');
  await expect(gpu.getByTestId('gpu-throttle')).toContainText('power cap');
  await expect(gpu.getByTestId('gpu-throttle')).toContainText('idle (clocks lowered)');
  const processes = gpu.getByRole('table', { name: 'Processes on GPU 0' });
  await expect(processes.locator('[data-testid="gpu-process"][data-ours="true"]')).toHaveCount(2);
  const ours = processes.getByRole('row', { name: /4242/ });
  await expect(ours).toContainText('appliance');
  await expect(ours).toContainText('qwen2.5-7b-instruct');
  await expect(processes.getByRole('row', { name: /777/ })).not.toContainText('appliance');

  await expect(page.getByRole('img', { name: /^VRAM budget: committed to models 20\.0 GiB \(25 %\), available to place 28\.0 GiB \(35 %\), reserve 2\.0 GiB/ })).toBeVisible();

  const plan = page.getByRole('table', { name: /^Start-up plan/ });
  await expect(plan.getByTestId('plan-row')).toHaveCount(3);
  const partial = plan.locator('[data-testid="plan-row"][data-placement="partial"]');
  await expect(partial).toContainText('qwen2.5-7b-instruct');
  await expect(partial).toContainText('preload');
  await expect(partial).toContainText('GPU and CPU');
  await expect(partial).toContainText('20/32');
  await expect(partial).toContainText('another process holds 30 GiB');
  await expect(page.getByTestId('plan-notes')).toContainText('gets 20 of 32 layers');

  const residents = page.getByTestId('resident-row');
  await expect(residents).toHaveCount(2);
  await expect(residents.nth(0)).toContainText('pinned');
  await expect(residents.nth(0)).toContainText('13 % over the estimate');
  await expect(residents.nth(0)).toContainText('never (pinned)');
  await expect(residents.nth(1)).toContainText('not measured');
  await expect(residents.nth(1)).toContainText(/in [45] min/);

  const queue = page.getByTestId('queue-row');
  await expect(queue).toHaveCount(2);
  await expect(queue.nth(0)).toContainText('llama-3.1-8b');
  await expect(queue.nth(0)).toContainText('45 s');
  await expect(queue.nth(1)).toContainText('whisper-large-v3');
  await expect(page.getByTestId('queue-empty')).toHaveCount(0);

  // Polled again while shown.
  await expect.poll(() => calls, { timeout: 10_000 }).toBeGreaterThan(1);
  await shot(page, 'admin-gpu');
  expect(await axeBoth(page, '#/admin/gpu (busy GPU)')).toEqual([]);
  await page.unroute((u) => isGpuCall(u.href));
  expect(pageErrors).toEqual([]);
});

test('a user who is not an administrator gets neither the link, the page nor the API', async ({ browser }) => {
  const other = await browser.newContext();
  const bob = await other.newPage();
  await signIn(bob, BOB);
  await expect(bob.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'GPU', exact: true })).toHaveCount(0);
  await bob.goto(`${url()}/#/admin/gpu`);
  await expect(bob.getByRole('heading', { name: 'Administrators only' })).toBeVisible();
  expect((await bob.request.get(`${url()}/api/v1/gpu`)).status()).toBe(403);
  await other.close();
});
