// Starts the real daemon shared by the browser tests: a temp data dir with two users
// (admin, bob), `serve --port 0`, the URL read from its first stdout line. The UI is
// served from assets/dist (`server.ui_dir`) unless E2E_EMBEDDED_UI=1 says the
// binary already embeds this build. Returns the teardown that stops the daemon.

import { startDaemon } from './daemon';
import { ADMIN, BOB } from './users';

export default async function globalSetup(): Promise<() => Promise<void>> {
  const daemon = await startDaemon([
    { ...ADMIN, role: 'admin' },
    { ...BOB, role: 'user' },
  ]);
  process.env.E2E_URL = daemon.url;
  console.log(`daemon ${daemon.url} (pid ${daemon.pid}, data in ${daemon.tmp})`);
  return daemon.stop;
}
