// Admin: readiness checks (`GET /readyz`, which answers 503 with the same body when a check fails).

import { useState } from 'preact/hooks';
import { ErrorBox, PageTitle, Spinner, usePoll } from '../../components/common';
import type { Readiness } from '../../types';

export function HealthPage() {
  const [ready, setReady] = useState<Readiness | null>(null);
  const [error, setError] = useState<string | null>(null);

  usePoll(async () => {
    try {
      const res = await fetch('/readyz', { credentials: 'same-origin', headers: { accept: 'application/json' } });
      const body = (await res.json()) as Readiness;
      if (!Array.isArray(body.checks)) throw new Error(`unexpected answer (HTTP ${res.status})`);
      setReady(body);
      setError(null);
    } catch (e) {
      setError(`Could not read the health checks: ${e instanceof Error ? e.message : String(e)}`);
    }
  }, 5000);

  return (
    <div class="page wide">
      <PageTitle>Health</PageTitle>
      <ErrorBox error={error} />
      {!ready && !error && <Spinner />}
      {ready && (
        <>
          <p class={`alert ${ready.status === 'ready' ? 'alert-success' : 'alert-error'}`} role="status">
            {ready.status === 'ready' ? 'Ready: every check passes.' : 'Not ready: a check fails.'}
          </p>
          <div class="table-wrap" tabIndex={0} role="region" aria-label="Health checks">
            <table class="table">
              <thead>
                <tr>
                  <th scope="col">Check</th>
                  <th scope="col">Status</th>
                  <th scope="col">Detail</th>
                  <th scope="col">What to do</th>
                </tr>
              </thead>
              <tbody>
                {ready.checks.map((c) => (
                  <tr key={c.name}>
                    <td>{c.name}</td>
                    <td>
                      <span class={`badge ${c.status === 'ok' ? 'badge-ok' : c.status === 'warn' ? 'badge-warn' : 'badge-error'}`}>{c.status}</span>
                    </td>
                    <td>{c.detail}</td>
                    <td>{c.hint ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </div>
  );
}
