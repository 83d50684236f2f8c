import { useState } from 'preact/hooks';
import { post, setCsrfToken } from '../api';
import { ErrorBox, PageTitle, NewPasswordField } from '../components/common';
import { navigate } from '../router';

/** First run: creates the first administrator with the daemon's one-time token. */
export function Setup({ token: initialToken, onSignedIn }: { token: string; onSignedIn: () => Promise<void> }) {
  const [token, setToken] = useState(initialToken);
  const [name, setName] = useState('admin');
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (password !== repeat) {
      setError('The two passwords differ.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await post('/api/v1/setup', { token: token.trim(), name: name.trim(), password }, { quiet401: true });
      const res = await post<{ csrf_token: string }>('/api/v1/auth/login', { name: name.trim(), password }, { quiet401: true });
      setCsrfToken(res.csrf_token);
      await onSignedIn();
      navigate('#/chat', true);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <div class="card auth-card">
      <p class="brand brand-large">Appliance</p>
      <PageTitle>Create the administrator</PageTitle>
      <p class="muted">
        This works once, with the setup token the daemon printed on its first start. Afterwards, sign in normally.
      </p>
      <ErrorBox error={error} />
      <form onSubmit={submit} class="stack">
        <label class="field">
          <span>Setup token</span>
          <input required autoComplete="off" spellcheck={false} value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        </label>
        <label class="field">
          <span>Administrator name</span>
          <input
            required
            autoComplete="username"
            maxLength={64}
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </label>
        <NewPasswordField label="Password (at least 8 characters)" value={password} onInput={setPassword} />
        <NewPasswordField label="Password again" value={repeat} onInput={setRepeat} />
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create and sign in'}
        </button>
      </form>
      <p class="small">
        <a href="#/login">Already set up? Sign in</a>
      </p>
    </div>
  );
}
