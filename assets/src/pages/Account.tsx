import { useState } from 'preact/hooks';
import { post } from '../api';
import { ErrorBox, PageTitle, NewPasswordField } from '../components/common';
import { formatTime } from '../format';
import { useSession } from '../session';

export function Account() {
  const session = useSession();
  const user = session.me.user;
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [repeat, setRepeat] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (next !== repeat) {
      setError('The two new passwords differ.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await post('/api/v1/auth/password', { current_password: current, new_password: next });
      // The server ends every session of this user on a password change.
      session.signedOut('Your password was changed. Sign in with the new one.');
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <div class="page narrow">
      <PageTitle>Account</PageTitle>
      <dl class="facts">
        <dt>User</dt>
        <dd>{user.name}</dd>
        <dt>Role</dt>
        <dd>{user.role}</dd>
        <dt>Member since</dt>
        <dd>{formatTime(user.created_at)}</dd>
        {user.password_changed_at && (
          <>
            <dt>Password changed</dt>
            <dd>{formatTime(user.password_changed_at)}</dd>
          </>
        )}
      </dl>

      <section aria-labelledby="pw-title" class="card">
        <h2 id="pw-title">Change password</h2>
        <p class="muted small">Changing it signs you out everywhere, this browser included.</p>
        <ErrorBox error={error} />
        <form onSubmit={submit} class="stack">
          <input type="text" name="username" autoComplete="username" value={user.name} hidden readOnly />
          <label class="field">
            <span>Current password</span>
            <input
              type="password"
              required
              autoComplete="current-password"
              value={current}
              onInput={(e) => setCurrent(e.currentTarget.value)}
            />
          </label>
          <NewPasswordField label="New password (at least 8 characters)" value={next} onInput={setNext} />
          <NewPasswordField label="New password again" value={repeat} onInput={setRepeat} />
          <div>
            <button type="submit" class="btn btn-primary" disabled={busy}>
              {busy ? 'Changing…' : 'Change password'}
            </button>
          </div>
        </form>
      </section>

      <section class="card" aria-labelledby="out-title">
        <h2 id="out-title">Sign out</h2>
        <p class="muted small">Ends this browser's session.</p>
        <button type="button" class="btn" onClick={() => session.logout()}>
          Sign out
        </button>
      </section>
    </div>
  );
}
