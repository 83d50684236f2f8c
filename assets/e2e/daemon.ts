// Starts and stops a real daemon in a temp dir for the browser tests.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export interface Daemon {
  url: string;
  /** Every stdout line so far (the first is the URL line). */
  lines: string[];
  tmp: string;
  pid: number;
  stop: () => Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));
export const DIST = resolve(here, '..', 'dist');

/**
 * The daemon refuses unknown `APPLIANCE_*` variables (APPLIANCE_BIN is ours), and the
 * tests must not inherit the developer's configuration: children get none of them.
 */
function childEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('APPLIANCE_')));
}

export function binary(): string {
  const bin = process.env.TEST_APPLIANCE_BIN ?? join(homedir(), '.cache/appliance/target/debug/appliance');
  if (!existsSync(bin)) throw new Error(`no daemon binary at ${bin} (set TEST_APPLIANCE_BIN or run cargo build)`);
  return bin;
}

/**
 * `users`: accounts created with `users add` before the daemon starts (none = first
 * run, the daemon prints a setup token).
 */
export async function startDaemon(users: { name: string; password: string; role: 'admin' | 'user' }[]): Promise<Daemon> {
  const bin = binary();
  const models = process.env.TEST_MODELS_DIR ?? join(homedir(), '.cache/appliance/models');
  if (!existsSync(join(DIST, 'index.html'))) throw new Error('assets/dist/index.html is missing: run `npm run build` first');
  const tmp = mkdtempSync(join(tmpdir(), 'appliance-e2e-'));
  const config = join(tmp, 'config.toml');
  writeFileSync(config, '');
  const common = [
    '--config', config,
    '--data-dir', join(tmp, 'data'),
    '--log-dir', join(tmp, 'logs'),
    '--runtime-dir', join(tmp, 'run'),
    '--models-dir', models,
  ];
  let child: ChildProcess | null = null;
  const lines: string[] = [];
  let url: string;
  try {
    const embedded = process.env.E2E_EMBEDDED_UI === '1';
    if (!embedded) {
      const shown = spawnSync(bin, [...common, 'config', 'show'], { encoding: 'utf8', env: childEnv() });
      if (shown.status !== 0) throw new Error(`${bin} config show failed: ${shown.stderr}`);
      if (!/\bui_dir\b/.test(shown.stdout ?? '')) {
        throw new Error(`${bin} has no server.ui_dir option yet; rebuild it, or set E2E_EMBEDDED_UI=1 if it embeds this UI`);
      }
    }
    for (const user of users) {
      const role = user.role === 'admin' ? ['--admin'] : ['--role', user.role];
      const r = spawnSync(bin, [...common, 'users', 'add', ...role, user.name, '--password-stdin'], {
        input: `${user.password}\n`,
        encoding: 'utf8',
        env: childEnv(),
      });
      if (r.status !== 0) throw new Error(`users add ${user.name} failed: ${r.stderr}`);
    }

    const log = openSync(join(tmp, 'daemon.stderr.log'), 'a');
    // No per-minute request limit: one test creates thousands of conversations.
    const args = [...common, '--port', '0', '--set', 'limits.requests_per_minute=0'];
    if (!embedded) args.push('--set', `server.ui_dir=${DIST}`);
    args.push('serve');
    const started = spawn(bin, args, { stdio: ['ignore', 'pipe', log], env: childEnv() });
    child = started;
    url = await new Promise<string>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error('the daemon did not print its URL within 30 s')), 30_000);
      const reader = createInterface({ input: started.stdout! });
      reader.on('line', (line) => {
        lines.push(line);
        if (lines.length === 1) {
          clearTimeout(timer);
          const m = /listening on (https?:\/\/\S+)/.exec(line);
          if (m) ok(m[1]);
          else fail(new Error(`unexpected first line from the daemon: ${line}`));
        }
      });
      started.once('exit', (code) => fail(new Error(`the daemon exited with ${code}; see ${tmp}/daemon.stderr.log`)));
    });
  } catch (e) {
    child?.kill('SIGKILL');
    if (process.env.E2E_KEEP !== '1') rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const proc = child!;

  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    if (process.env.E2E_KEEP !== '1') rmSync(tmp, { recursive: true, force: true });
  };
  return { url, lines, tmp, pid: proc.pid!, stop };
}
