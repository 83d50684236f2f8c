// The Speech-to-text page against the real daemon, its speech worker and the real
// whisper-tiny.en model: uploads of LibriVox clips, live job progress, timestamps,
// downloads, collections, the chat hand-off, other users, cancelling, and recording
// from Chromium's fake microphone (a browser launched for that test alone).

import { chromium, expect, test, type Browser, type BrowserContext, type Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADMIN, BOB } from './users';

const SHOTS = join(dirname(fileURLToPath(import.meta.url)), 'screenshots');
mkdirSync(SHOTS, { recursive: true });
const CLIPS = '/usr/share/pocketsphinx/test/data/librivox';
const clip = (n: string) => join(CLIPS, `sense_and_sensibility_01_austen_64kb-${n}.wav`);
// "And Mr. John Dashwood had then leisure to consider how much there might be
// prudently in his power to do for them." (7.1 s)
const DASHWOOD = clip('0870');
// "He was not an ill-disposed young man…" (3 s)
const YOUNG_MAN = clip('0880');
const ALL = ['0870', '0880', '0890', '0920', '0930'].map(clip);

const url = () => {
  const u = process.env.E2E_URL;
  if (!u) throw new Error('E2E_URL is not set (global setup did not run)');
  return u;
};
const shot = (p: Page, name: string) => p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

test.describe.configure({ mode: 'serial' });

async function axe(p: Page, where: string): Promise<string[]> {
  const result = await new AxeBuilder({ page: p }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  return result.violations.map(
    (v) => `${where}: ${v.id} (${v.impact}) ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(' | ')}`,
  );
}

async function signIn(p: Page, user: { name: string; password: string }, hash = '#/speech') {
  await p.goto(`${url()}/${hash}`);
  await expect(p.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await p.getByLabel('User name').fill(user.name);
  await p.getByLabel('Password').fill(user.password);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await expect(p.getByRole('heading', { name: 'Speech to text', level: 1 })).toBeVisible();
}

/**
 * Transcribes with whisper-tiny.en: named in a select when the models dir has several
 * speech models (it is shared; others may appear), else shown as the only one.
 */
async function useTinyEn(p: Page) {
  const select = p.getByRole('combobox', { name: 'Model' });
  await expect(p.getByText(/^Model: whisper-tiny\.en \(English only\)$/).or(select)).toBeVisible();
  if (await select.isVisible()) await select.selectOption('whisper-tiny.en');
}

async function csrf(p: Page): Promise<string> {
  return (await (await p.request.get(`${url()}/api/v1/auth/me`)).json()).csrf_token;
}

/** One WAV of several 16-bit mono WAVs (their PCM data chunks joined). */
function joinWavs(paths: string[]): Buffer {
  const pcm: Buffer[] = [];
  let format: Buffer | null = null;
  for (const p of paths) {
    const b = readFileSync(p);
    let at = 12;
    while (at + 8 <= b.length) {
      const id = b.toString('ascii', at, at + 4);
      const size = b.readUInt32LE(at + 4);
      if (id === 'fmt ') format ??= b.subarray(at, at + 8 + size);
      if (id === 'data') pcm.push(b.subarray(at + 8, at + 8 + size));
      at += 8 + size + (size % 2);
    }
  }
  const data = Buffer.concat(pcm);
  const head = Buffer.alloc(12);
  head.write('RIFF', 0, 'ascii');
  head.writeUInt32LE(4 + format!.length + 8 + data.length, 4);
  head.write('WAVE', 8, 'ascii');
  const dataHead = Buffer.alloc(8);
  dataHead.write('data', 0, 'ascii');
  dataHead.writeUInt32LE(data.length, 4);
  return Buffer.concat([head, format!, dataHead, data]);
}

let context: BrowserContext;
let page: Page;
let transcriptId = 0;
const pageErrors: string[] = [];

test.beforeAll(async ({ browser }: { browser: Browser }) => {
  for (const f of ALL) if (!existsSync(f)) throw new Error(`missing test audio ${f} (apt-get install pocketsphinx-en-us or the test data)`);
  context = await browser.newContext({ permissions: ['clipboard-read', 'clipboard-write'] });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
});

test.afterAll(async () => {
  await context?.close();
});

test('speech: an uploaded clip is transcribed with live progress and timed segments', async () => {
  test.setTimeout(180_000);
  await signIn(page, ADMIN);
  await useTinyEn(page);
  // The English-only model cannot translate: the option is off and says why.
  await expect(page.getByLabel('Translate into English')).toBeDisabled();
  await expect(page.getByLabel('Translate into English')).toHaveAccessibleDescription(/whisper-tiny\.en knows English only, so it cannot translate/);
  await expect(page.getByTestId('speech-language').locator('option')).toHaveText(['Detect automatically', 'English']);

  const t0 = Date.now();
  await page.getByTestId('file-input').setInputFiles(DASHWOOD);
  // It opens by itself (nothing else was open) and shows the job's progress.
  await page.waitForURL(/#\/speech\/\d+$/);
  transcriptId = Number(new URL(page.url()).hash.split('/')[2]);
  const view = page.getByTestId('transcript');
  await expect(view.getByRole('heading', { name: 'sense_and_sensibility_01_austen_64kb-0870.wav' })).toBeVisible();
  const row = page.locator(`[data-testid="transcript-row"][data-transcript-id="${transcriptId}"]`);
  await expect(row).toBeVisible();
  await expect(view).toHaveAttribute('data-state', 'done', { timeout: 120_000 });
  const ms = Date.now() - t0;
  test.info().annotations.push({ type: 'transcription', description: `7.1 s clip done in the UI after ${ms} ms` });
  await expect(row).toHaveAttribute('data-state', 'done');
  await expect(row).toContainText('7 s');

  const segments = page.getByTestId('segment');
  await expect(segments.first()).toContainText('Dashwood');
  await expect(segments.first().getByRole('button')).toHaveText('0:00');
  expect(await segments.count()).toBeGreaterThanOrEqual(2);
  const second = segments.nth(1);
  const secondTime = (await second.getByRole('button').textContent()) ?? '';
  expect(secondTime).toMatch(/^0:0[1-6]$/);

  // The recording sent from this tab plays from a clicked time.
  const audio = page.getByTestId('transcript-audio');
  await expect(audio).toBeVisible();
  await page.evaluate(() => {
    // Muted: headless Chromium has no audio output, and nobody needs to hear it.
    const a = document.querySelector('audio');
    if (a) a.muted = true;
  });
  await second.getByRole('button', { name: `Play from ${secondTime}` }).click();
  await expect(second).toHaveAttribute('aria-current', 'true');
  const position = await audio.evaluate((a: HTMLAudioElement) => a.currentTime);
  expect(position).toBeGreaterThanOrEqual(1);
  await shot(page, 'speech-transcript');

  // The stored transcript agrees, with word times.
  const stored = await (await page.request.get(`${url()}/api/v1/transcripts/${transcriptId}`)).json();
  expect(stored.text).toContain('Dashwood');
  expect(stored.segments[0].words.length).toBeGreaterThan(3);
});

test('speech: downloads are the export endpoint’s files', async () => {
  const view = page.getByTestId('transcript');
  await view.getByText('Download', { exact: true }).click();
  const [srt] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-srt').click()]);
  expect(srt.suggestedFilename()).toBe('sense_and_sensibility_01_austen_64kb-0870.srt');
  const srtText = await readFile((await srt.path())!, 'utf8');
  expect(srtText).toMatch(/^1\r?\n00:00:00,000 --> 00:00:0\d,\d{3}\r?\n.*Dashwood/);
  // The link's response itself: a download, typed as SubRip.
  const href = await page.getByTestId('export-srt').getAttribute('href');
  const response = await page.request.get(`${url()}${href}`);
  expect(response.status()).toBe(200);
  expect(response.headers()['content-disposition']).toMatch(/^attachment; filename="[^"]+\.srt"$/);
  expect(await response.text()).toContain('-->');
  for (const [format, needle] of [
    ['text', 'Dashwood'],
    ['vtt', 'WEBVTT'],
    ['verbose_json', '"segments"'],
  ] as const) {
    const r = await page.request.get(`${url()}${await page.getByTestId(`export-${format}`).getAttribute('href')}`);
    expect(r.status(), format).toBe(200);
    expect(await r.text(), format).toContain(needle);
  }
});

test('speech: a transcript goes into a document collection and to the chat', async () => {
  const token = await csrf(page);
  const made = await page.request.post(`${url()}/api/v1/collections`, { data: { name: 'Transcripts e2e' }, headers: { 'x-csrf-token': token } });
  expect(made.status()).toBe(201);
  const collection = await made.json();
  const view = page.getByTestId('transcript');
  await view.getByText('Add to collection…').click();
  await page.getByRole('combobox', { name: 'Collection', exact: true }).selectOption(String(collection.id));
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await expect(view.getByRole('status').filter({ hasText: 'Added to' })).toContainText('Transcripts e2e');
  const docs = await (await page.request.get(`${url()}/api/v1/collections/${collection.id}/documents`)).json();
  expect(JSON.stringify(docs)).toContain('sense_and_sensibility_01_austen_64kb-0870.md');

  await view.getByRole('button', { name: 'Send to chat' }).click();
  await expect(page.getByRole('heading', { name: 'New conversation' })).toBeVisible();
  await expect(page.getByLabel('Message', { exact: true })).toHaveValue(/^Here is the transcript of the recording “sense_and_sensibility_01_austen_64kb-0870\.wav”:\n\nAnd Mr\. John Dashwood/);
  // Once only: a new conversation later starts empty.
  await page.getByLabel('Message', { exact: true }).fill('');
  await page.goto(`${url()}/#/speech/${transcriptId}`);
  await page.goto(`${url()}/#/chat`);
  await expect(page.getByLabel('Message', { exact: true })).toHaveValue('');
});

test('speech: another user sees none of it', async ({ browser }) => {
  const other = await browser.newContext();
  const bob = await other.newPage();
  await signIn(bob, BOB);
  await expect(bob.getByText('No transcripts yet.')).toBeVisible();
  await expect(bob.getByTestId('transcript-row')).toHaveCount(0);
  await bob.goto(`${url()}/#/speech/${transcriptId}`);
  await expect(bob.getByRole('heading', { name: 'Transcript not found' })).toBeVisible();
  expect((await bob.request.get(`${url()}/api/v1/transcripts/${transcriptId}`)).status()).toBe(404);
  expect((await bob.request.get(`${url()}/api/v1/transcripts/${transcriptId}/export?format=srt`)).status()).toBe(404);
  await other.close();
});

test('speech: the page passes axe in light and dark, and fits a phone', async ({ browser }) => {
  await page.goto(`${url()}/#/speech/${transcriptId}`);
  await expect(page.getByTestId('segment').first()).toBeVisible();
  const found: string[] = [];
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.waitForTimeout(200);
    found.push(...(await axe(page, `${scheme} #/speech/${transcriptId}`)));
  }
  await page.emulateMedia({ colorScheme: 'light' });
  expect(found).toEqual([]);

  const phoneContext = await browser.newContext({ viewport: { width: 360, height: 740 }, storageState: await context.storageState() });
  const phone = await phoneContext.newPage();
  await phone.goto(`${url()}/#/speech/${transcriptId}`);
  await expect(phone.getByTestId('segment').first()).toContainText('Dashwood');
  await expect(phone.getByRole('button', { name: 'Record' })).toBeVisible();
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  const mainOverflow = await phone.locator('main').evaluate((m) => m.scrollWidth - m.clientWidth);
  expect(mainOverflow).toBeLessThanOrEqual(0);
  await shot(phone, 'phone-speech');
  await phoneContext.close();
});

test('speech: a long transcription can be cancelled', async () => {
  test.setTimeout(180_000);
  await page.goto(`${url()}/#/speech`);
  await expect(page.getByTestId('transcript-row').first()).toBeVisible();
  await useTinyEn(page);
  const long = joinWavs([...ALL, ...ALL]);
  await page.getByTestId('file-input').setInputFiles({ name: 'long-reading.wav', mimeType: 'audio/wav', buffer: long });
  const row = page.getByTestId('transcript-row').filter({ hasText: 'long-reading.wav' });
  await expect(row).toHaveAttribute('data-state', 'running', { timeout: 60_000 });
  await expect(row.getByRole('progressbar')).toBeVisible();
  await row.getByRole('button', { name: 'Cancel transcribing long-reading.wav' }).click();
  await expect(row).toHaveAttribute('data-state', 'cancelled', { timeout: 30_000 });
  const id = await row.getAttribute('data-transcript-id');
  const stored = await (await page.request.get(`${url()}/api/v1/transcripts/${id}`)).json();
  expect(stored.state).toBe('cancelled');
});

test('speech: a refused upload (429) says when to try again', async () => {
  await page.route('**/api/v1/transcripts', (route) =>
    route.request().method() === 'POST'
      ? route.fulfill({
          status: 429,
          headers: { 'retry-after': '7', 'content-type': 'application/json' },
          body: JSON.stringify({ error: { message: 'user `admin` has used 60 audio minutes today', type: 'rate_limit', code: 'rate_limited', param: null } }),
        })
      : route.continue(),
  );
  await page.getByTestId('file-input').setInputFiles(YOUNG_MAN);
  const failedRow = page.locator('[data-testid="upload-row"][data-state="failed"]');
  await expect(failedRow).toContainText('user `admin` has used 60 audio minutes today. Try again in 7 s.');
  await page.unroute('**/api/v1/transcripts');
  await failedRow.getByRole('button', { name: /Dismiss/ }).click();
  await expect(page.getByTestId('upload-row')).toHaveCount(0);
});

test('speech: without a microphone, Record says so', async () => {
  // This browser has no capture device and no permission to use one.
  await page.goto(`${url()}/#/speech`);
  await page.getByRole('button', { name: 'Record' }).click();
  await expect(page.getByTestId('record-error')).toContainText(/microphone/i);
  await expect(page.getByRole('button', { name: 'Record' })).toBeEnabled();
});

test('speech: a transcript is deleted', async () => {
  await page.goto(`${url()}/#/speech/${transcriptId}`);
  await expect(page.getByTestId('segment').first()).toBeVisible();
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Delete transcript' }).click();
  await page.waitForURL(/#\/speech$/);
  await expect(page.locator(`[data-testid="transcript-row"][data-transcript-id="${transcriptId}"]`)).toHaveCount(0);
  expect((await page.request.get(`${url()}/api/v1/transcripts/${transcriptId}`)).status()).toBe(404);
  expect(pageErrors).toEqual([]);
});

test('speech: a recording from the (fake) microphone is transcribed', async () => {
  test.setTimeout(180_000);
  // Chromium's fake capture device plays the 0880 clip as the microphone; these flags
  // would change every other test's media, so this test has a browser of its own.
  const launch = test.info().project.use.launchOptions ?? {};
  const browser = await chromium.launch({
    ...launch,
    args: [
      ...(launch.args ?? []),
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      `--use-file-for-fake-audio-capture=${YOUNG_MAN}`,
    ],
  });
  try {
    const ctx = await browser.newContext({ permissions: ['microphone'] });
    const p = await ctx.newPage();
    const errors: string[] = [];
    p.on('pageerror', (e) => errors.push(e.message));
    await signIn(p, ADMIN);
    await useTinyEn(p);
    await p.getByRole('button', { name: 'Record' }).click();
    const recorder = p.getByTestId('recorder');
    await expect(recorder).toHaveAttribute('data-phase', 'recording');
    await expect(p.getByRole('button', { name: 'Stop' })).toBeFocused();
    await expect(p.getByTestId('record-time')).toHaveText('0:03', { timeout: 10_000 });
    // The level meter moves while the clip plays.
    await expect.poll(() => p.locator('meter').evaluate((m: HTMLMeterElement) => m.value), { timeout: 5_000 }).toBeGreaterThan(0);
    await shot(p, 'speech-recording');
    await p.getByRole('button', { name: 'Stop' }).click();
    await expect(recorder).toHaveAttribute('data-phase', 'idle');
    await p.waitForURL(/#\/speech\/\d+$/);
    const view = p.getByTestId('transcript');
    await expect(view.getByRole('heading', { name: /^recording-\d{4}-\d{2}-\d{2}-\d{6}\.(webm|ogg)$/ })).toBeVisible();
    await expect(view).toHaveAttribute('data-state', 'done', { timeout: 120_000 });
    await expect(p.getByTestId('segment').first()).toContainText(/young|man/i);
    await expect(p.getByTestId('transcript-audio')).toBeVisible();
    await shot(p, 'speech-recorded');
    expect(errors).toEqual([]);
    await ctx.close();
  } finally {
    await browser.close();
  }
});
