import { useState } from 'preact/hooks';
import { post, setCsrfToken } from '../api';
import { ErrorBox, Notice, PageTitle } from '../components/common';

interface LoginResponse {
  csrf_token: string;
}

export function Login({ notice, onSignedIn }: { notice?: string; onSignedIn: () => Promise<void> | void }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const res = await post<LoginResponse>('/api/v1/auth/login', { name: name.trim(), password }, { quiet401: true });
      setCsrfToken(res.csrf_token);
      await onSignedIn();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <div class="card auth-card">
      <p class="brand brand-large">Appliance</p>
      <PageTitle>Sign in</PageTitle>
      <Notice>{notice}</Notice>
      <ErrorBox error={error} />
      <form onSubmit={submit} class="stack">
        <label class="field">
          <span>User name</span>
          <input
            name="username"
            autoComplete="username"
            required
            maxLength={64}
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </label>
        <label class="field">
          <span>Password</span>
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
      <p class="muted small">
        First start? Open the setup link with the one-time token that the daemon printed, or create an
        administrator on the host with <code>appliance users add --admin NAME</code>.
      </p>
    </div>
  );
}
