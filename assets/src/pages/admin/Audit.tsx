// Admin: the audit log, newest first, older pages on demand.

import { useEffect, useState } from 'preact/hooks';
import { get, withQuery } from '../../api';
import { ErrorBox, PageTitle, Spinner } from '../../components/common';
import { formatTime } from '../../format';
import type { AuditEntry } from '../../types';

const LIMIT = 100;

function detailText(detail: unknown): string {
  if (detail == null) return '';
  if (typeof detail === 'object' && Object.keys(detail as object).length === 0) return '';
  return JSON.stringify(detail);
}

export function AuditPage() {
  const [entries, setEntries] = useState<AuditEntry[] | null>(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const loadPage = async (before?: number) => {
    setBusy(true);
    try {
      const res = await get<{ data: AuditEntry[] }>(withQuery('/api/v1/audit', { limit: LIMIT, before }));
      setEntries((e) => (before && e ? [...e, ...res.data] : res.data));
      setDone(res.data.length < LIMIT);
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    loadPage();
  }, []);

  return (
    <div class="page wide">
      <PageTitle>Audit log</PageTitle>
      <p class="muted">Sign-ins, setup, user and key changes. Never passwords, keys or prompts.</p>
      <div class="row">
        <button type="button" class="btn" onClick={() => loadPage()} disabled={busy}>
          Refresh
        </button>
      </div>
      <ErrorBox error={error} />
      {!entries && !error && <Spinner />}
      {entries && entries.length === 0 && <p class="muted">Nothing logged yet.</p>}
      {entries && entries.length > 0 && (
        <div class="table-wrap" tabIndex={0} role="region" aria-label="Audit log entries">
          <table class="table">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Result</th>
                <th scope="col">Address</th>
                <th scope="col">Detail</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((a) => (
                <tr key={a.id}>
                  <td>{formatTime(a.at, true)}</td>
                  <td>{a.actor ?? '–'}</td>
                  <td>
                    <code>{a.action}</code>
                  </td>
                  <td>{a.target ?? ''}</td>
                  <td>
                    <span class={`badge ${a.success ? 'badge-ok' : 'badge-error'}`}>{a.success ? 'ok' : 'failed'}</span>
                  </td>
                  <td>{a.ip ?? ''}</td>
                  <td class="mono small">{detailText(a.detail)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {entries && !done && (
        <div class="row">
          <button type="button" class="btn" disabled={busy} onClick={() => loadPage(entries[entries.length - 1]?.id)}>
            {busy ? 'Loading…' : 'Older entries'}
          </button>
        </div>
      )}
    </div>
  );
}
