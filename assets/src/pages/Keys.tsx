// API keys: the caller's own (create, shown once, revoke), or for admins every key.

import { useEffect, useState } from 'preact/hooks';
import { del, get, post, withQuery } from '../api';
import { CopyButton, ErrorBox, PageTitle, Spinner } from '../components/common';
import { formatAgo, formatTime } from '../format';
import { useSession } from '../session';
import type { ApiKey } from '../types';

const SCOPES: [string, string][] = [
  ['chat', 'Chat (OpenAI, Ollama and conversations)'],
  ['embeddings', 'Embeddings'],
  ['audio', 'Audio (speech to text)'],
  ['images', 'Images'],
  ['documents', 'Documents'],
];

function keyState(k: ApiKey): { label: string; cls: string } {
  if (k.revoked_at) return { label: 'revoked', cls: 'badge-muted' };
  if (k.expires_at && new Date(k.expires_at).getTime() < Date.now()) return { label: 'expired', cls: 'badge-warn' };
  return { label: 'active', cls: 'badge-ok' };
}

export function Keys({ all }: { all: boolean }) {
  const session = useSession();
  const [keys, setKeys] = useState<ApiKey[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [showRevoked, setShowRevoked] = useState(false);

  const load = async () => {
    try {
      const res = await get<{ data: ApiKey[] }>(withQuery('/api/v1/keys', { all: all ? 'true' : undefined }));
      setKeys(res.data);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    setKeys(null);
    load();
  }, [all]);

  const revoke = async (k: ApiKey) => {
    if (!confirm(`Revoke the key “${k.name}” (${k.id})? Programs using it stop working at once.`)) return;
    try {
      await del(`/api/v1/keys/${encodeURIComponent(k.id)}`);
      await load();
    } catch (e) {
      setError(e);
    }
  };

  const shown = (keys ?? []).filter((k) => showRevoked || !k.revoked_at);
  const hidden = (keys ?? []).length - shown.length;

  return (
    <div class="page">
      <PageTitle>{all ? 'All API keys' : 'API keys'}</PageTitle>
      <p class="muted">
        {all
          ? 'Every user’s keys. Revoking one stops it at once.'
          : 'Keys let programs (OpenAI or Ollama clients, scripts) act as you. Send one as “Authorization: Bearer apl_…”.'}
      </p>
      {!all && <CreateKey isAdmin={session.isAdmin} onCreated={load} />}
      <ErrorBox error={error} onDismiss={() => setError(null)} />
      <section aria-labelledby="keys-list">
        <div class="section-head">
          <h2 id="keys-list">{all ? 'Keys' : 'Your keys'}</h2>
          <label class="check">
            <input type="checkbox" checked={showRevoked} onChange={(e) => setShowRevoked(e.currentTarget.checked)} />
            Show revoked
          </label>
        </div>
        {keys === null ? (
          <Spinner />
        ) : shown.length === 0 ? (
          <p class="muted">
            No keys{hidden ? ` (${hidden} revoked hidden)` : ''}.
          </p>
        ) : (
          <div class="table-wrap" tabIndex={0} role="region" aria-label="API keys">
            <table class="table">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  {all && <th scope="col">User</th>}
                  <th scope="col">Id</th>
                  <th scope="col">Scopes</th>
                  <th scope="col">Created</th>
                  <th scope="col">Expires</th>
                  <th scope="col">Last used</th>
                  <th scope="col">State</th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {shown.map((k) => {
                  const st = keyState(k);
                  return (
                    <tr key={k.id}>
                      <td>{k.name}</td>
                      {all && <td>{k.user_name}</td>}
                      <td>
                        <code>{k.id}</code>
                      </td>
                      <td>{k.scopes.join(', ')}</td>
                      <td>{formatTime(k.created_at)}</td>
                      <td>{k.expires_at ? formatTime(k.expires_at) : 'never'}</td>
                      <td>{k.last_used_at ? formatAgo(k.last_used_at) : 'never'}</td>
                      <td>
                        <span class={`badge ${st.cls}`}>{st.label}</span>
                      </td>
                      <td>
                        {!k.revoked_at && (
                          <button type="button" class="btn btn-danger btn-small" onClick={() => revoke(k)}>
                            Revoke<span class="sr-only"> {k.name}</span>
                          </button>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </div>
  );
}

function CreateKey({ isAdmin, onCreated }: { isAdmin: boolean; onCreated: () => void }) {
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>(['chat']);
  const [days, setDays] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState<{ key: string; name: string } | null>(null);

  const options = isAdmin ? [...SCOPES, ['admin', 'Administration (manage users, keys, models)'] as [string, string]] : SCOPES;

  const toggle = (scope: string, on: boolean) =>
    setScopes((s) => (on ? [...s.filter((x) => x !== scope), scope] : s.filter((x) => x !== scope)));

  const submit = async (e: Event) => {
    e.preventDefault();
    if (scopes.length === 0) {
      setError('Pick at least one scope.');
      return;
    }
    const body: { name: string; scopes: string[]; expires_in_days?: number } = { name: name.trim(), scopes };
    if (days.trim()) {
      const n = Number(days);
      if (!Number.isInteger(n) || n < 1 || n > 3650) {
        setError('Expiry must be a whole number of days from 1 to 3650, or empty for never.');
        return;
      }
      body.expires_in_days = n;
    }
    setBusy(true);
    setError(null);
    try {
      const res = await post<{ key: string; api_key: ApiKey }>('/api/v1/keys', body);
      setCreated({ key: res.key, name: res.api_key.name });
      setName('');
      setDays('');
      onCreated();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card" aria-labelledby="new-key">
      <h2 id="new-key">New key</h2>
      {created && (
        <div class="alert alert-success new-key" role="status">
          <p>
            <strong>Key “{created.name}” created.</strong> Copy it now: it is shown only this once.
          </p>
          <div class="row">
            <label class="sr-only" for="new-key-value">
              The new API key
            </label>
            <input
              id="new-key-value"
              class="mono grow"
              readOnly
              value={created.key}
              onFocus={(e) => e.currentTarget.select()}
            />
            <CopyButton text={created.key} />
            <button type="button" class="btn" onClick={() => setCreated(null)}>
              Done
            </button>
          </div>
        </div>
      )}
      <ErrorBox error={error} onDismiss={() => setError(null)} />
      <form onSubmit={submit} class="stack">
        <div class="row wrap">
          <label class="field grow">
            <span>Name</span>
            <input required maxLength={100} placeholder="e.g. laptop scripts" value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          <label class="field">
            <span>Expires after (days, empty = never)</span>
            <input type="number" min={1} max={3650} step={1} inputMode="numeric" value={days} onInput={(e) => setDays(e.currentTarget.value)} />
          </label>
        </div>
        <fieldset class="scopes">
          <legend>Scopes</legend>
          {options.map(([scope, label]) => (
            <label class="check" key={scope}>
              <input type="checkbox" name="scope" value={scope} checked={scopes.includes(scope)} onChange={(e) => toggle(scope, e.currentTarget.checked)} />
              <span>
                <code>{scope}</code> {label}
              </span>
            </label>
          ))}
        </fieldset>
        <div>
          <button type="submit" class="btn btn-primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create key'}
          </button>
        </div>
      </form>
    </section>
  );
}
