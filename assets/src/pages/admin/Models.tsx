// Admin: loaded models (one worker process each) and the request queue.

import { useState } from 'preact/hooks';
import { get } from '../../api';
import { ErrorBox, PageTitle, Spinner, usePoll } from '../../components/common';
import { formatBytes, formatDuration, formatNumber, formatTime } from '../../format';
import type { ModelInfo, Status } from '../../types';

export function ModelsPage() {
  const [status, setStatus] = useState<Status | null>(null);
  const [installed, setInstalled] = useState<ModelInfo[] | null>(null);
  const [error, setError] = useState<unknown>(null);

  usePoll(async () => {
    try {
      const [s, m] = await Promise.all([get<Status>('/api/v1/status'), get<{ data: ModelInfo[] }>('/v1/models')]);
      setStatus(s);
      setInstalled(m.data);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, 3000);

  return (
    <div class="page wide">
      <PageTitle>Models and queue</PageTitle>
      <ErrorBox error={error} />
      {!status && !error && <Spinner />}
      {status && (
        <>
          <div class="stat-grid">
            <div class="card stat">
              <h2 class="stat-title">Generating now</h2>
              <p class="stat-value">{status.queue.running}</p>
            </div>
            <div class="card stat">
              <h2 class="stat-title">Waiting for a slot</h2>
              <p class="stat-value">{status.queue.waiting}</p>
            </div>
            <div class="card stat">
              <h2 class="stat-title">Daemon</h2>
              <p class="stat-value stat-value-small">{status.version}</p>
              <p class="stat-detail muted">
                up {formatDuration(status.uptime_seconds)} · pid {status.pid}
              </p>
            </div>
          </div>
          <section aria-labelledby="loaded-title">
            <h2 id="loaded-title">Loaded models</h2>
            {status.models.workers.length === 0 ? (
              <p class="muted">No model is loaded. The first request for a model loads it; idle models unload after the keep-alive.</p>
            ) : (
              <div class="table-wrap" tabIndex={0} role="region" aria-label="Loaded models">
                <table class="table">
                  <thead>
                    <tr>
                      <th scope="col">Model</th>
                      <th scope="col">Worker pid</th>
                      <th scope="col">Size</th>
                      <th scope="col">Context / request</th>
                      <th scope="col">Slots</th>
                      <th scope="col">Running</th>
                      <th scope="col">Waiting</th>
                      <th scope="col">Unloads</th>
                    </tr>
                  </thead>
                  <tbody>
                    {status.models.workers.map((w) => (
                      <tr key={w.name}>
                        <td>{w.name}</td>
                        <td>{w.pid}</td>
                        <td>{formatBytes(w.size_bytes)}</td>
                        <td>{formatNumber(w.context_length)} tokens</td>
                        <td>{w.slots}</td>
                        <td>{w.running}</td>
                        <td>{w.waiting}</td>
                        <td>{w.expires_at ? <span title={formatTime(w.expires_at, true)}>{unloadsIn(w.expires_at)}</span> : 'busy / never'}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </section>
        </>
      )}
      {installed && (
        <section aria-labelledby="installed-title">
          <h2 id="installed-title">Installed chat models</h2>
          {installed.length === 0 ? (
            <p class="muted">None. Import one with <code>appliance models import PATH</code>.</p>
          ) : (
            <div class="table-wrap" tabIndex={0} role="region" aria-label="Installed chat models">
              <table class="table">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Architecture</th>
                    <th scope="col">Parameters</th>
                    <th scope="col">Quantisation</th>
                    <th scope="col">Trained context</th>
                    <th scope="col">File size</th>
                  </tr>
                </thead>
                <tbody>
                  {installed.map((m) => (
                    <tr key={m.id}>
                      <td>{m.id}</td>
                      <td>{m.meta?.architecture ?? '–'}</td>
                      <td>{formatNumber(m.meta?.parameters)}</td>
                      <td>{m.meta?.quantization ?? '–'}</td>
                      <td>{formatNumber(m.meta?.context_length)}</td>
                      <td>{formatBytes(m.meta?.size)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </section>
      )}
    </div>
  );
}

function unloadsIn(iso: string): string {
  const s = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  if (Number.isNaN(s)) return iso;
  if (s <= 0) return 'now';
  return `in ${formatDuration(s)}`;
}

