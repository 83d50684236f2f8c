// Admin: user accounts (create, role, disable/enable, password reset, delete).

import { useEffect, useState } from 'preact/hooks';
import { del, get, patch, post } from '../../api';
import { ErrorBox, Notice, PageTitle, Spinner, NewPasswordField } from '../../components/common';
import { formatTime } from '../../format';
import { useSession } from '../../session';
import type { Role, User } from '../../types';

const ROLES: Role[] = ['admin', 'user', 'readonly'];

export function UsersPage() {
  const session = useSession();
  const [users, setUsers] = useState<User[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const [resetFor, setResetFor] = useState<User | null>(null);

  const load = async () => {
    try {
      setUsers((await get<{ data: User[] }>('/api/v1/users')).data);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    load();
  }, []);

  const update = async (u: User, body: Record<string, unknown>, done: string) => {
    setError(null);
    setNotice('');
    try {
      await patch(`/api/v1/users/${u.id}`, body);
      setNotice(done);
      await load();
    } catch (e) {
      setError(e);
      await load();
    }
  };

  const remove = async (u: User) => {
    if (!confirm(`Delete the user “${u.name}”? Their conversations and keys go with them.`)) return;
    setError(null);
    try {
      await del(`/api/v1/users/${u.id}`);
      setNotice(`Deleted ${u.name}.`);
      await load();
    } catch (e) {
      setError(e);
    }
  };

  return (
    <div class="page wide">
      <PageTitle>Users</PageTitle>
      <CreateUser
        onCreated={(u) => {
          setNotice(`Created ${u.name}.`);
          load();
        }}
      />
      <Notice>{notice}</Notice>
      <ErrorBox error={error} onDismiss={() => setError(null)} />
      {resetFor && (
        <ResetPassword
          user={resetFor}
          onCancel={() => setResetFor(null)}
          onDone={async (password) => {
            await patch(`/api/v1/users/${resetFor.id}`, { password });
            setNotice(`New password set for ${resetFor.name}.`);
            setResetFor(null);
          }}
        />
      )}
      <section aria-labelledby="users-title">
        <h2 id="users-title">Accounts</h2>
        {!users ? (
          <Spinner />
        ) : (
          <div class="table-wrap" tabIndex={0} role="region" aria-label="User accounts">
            <table class="table">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Role</th>
                  <th scope="col">State</th>
                  <th scope="col">Created</th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {users.map((u) => {
                  const self = u.id === session.me.user.id;
                  return (
                    <tr key={u.id}>
                      <td>
                        {u.name}
                        {self && <span class="muted"> (you)</span>}
                      </td>
                      <td>
                        <label class="sr-only" for={`role-${u.id}`}>
                          Role of {u.name}
                        </label>
                        <select
                          id={`role-${u.id}`}
                          value={u.role}
                          disabled={self}
                          onChange={(e) => update(u, { role: e.currentTarget.value }, `${u.name} is now ${e.currentTarget.value}.`)}
                        >
                          {ROLES.map((r) => (
                            <option key={r} value={r}>
                              {r}
                            </option>
                          ))}
                        </select>
                      </td>
                      <td>
                        <span class={`badge ${u.disabled ? 'badge-muted' : 'badge-ok'}`}>{u.disabled ? 'disabled' : 'active'}</span>
                      </td>
                      <td>{formatTime(u.created_at)}</td>
                      <td class="row wrap">
                        {!self && (
                          <button
                            type="button"
                            class="btn btn-small"
                            onClick={() => update(u, { disabled: !u.disabled }, `${u.name} is ${u.disabled ? 'enabled' : 'disabled'}.`)}
                          >
                            {u.disabled ? 'Enable' : 'Disable'}
                            <span class="sr-only"> {u.name}</span>
                          </button>
                        )}
                        <button type="button" class="btn btn-small" onClick={() => setResetFor(u)}>
                          Set password<span class="sr-only"> of {u.name}</span>
                        </button>
                        {!self && (
                          <button type="button" class="btn btn-small btn-danger" onClick={() => remove(u)}>
                            Delete<span class="sr-only"> {u.name}</span>
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

function CreateUser({ onCreated }: { onCreated: (u: User) => void }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState<Role>('user');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  return (
    <section class="card" aria-labelledby="new-user">
      <h2 id="new-user">New user</h2>
      <ErrorBox error={error} />
      <form
        class="row wrap align-end"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const u = await post<User>('/api/v1/users', { name: name.trim(), password, role });
            setName('');
            setPassword('');
            onCreated(u);
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <label class="field">
          <span>Name</span>
          <input required maxLength={64} autoComplete="off" value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <NewPasswordField label="Password (8+ characters)" value={password} onInput={setPassword} />
        <label class="field">
          <span>Role</span>
          <select value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create user'}
        </button>
      </form>
    </section>
  );
}

function ResetPassword({ user, onDone, onCancel }: { user: User; onDone: (password: string) => Promise<void>; onCancel: () => void }) {
  const [password, setPassword] = useState('');
  const [error, setError] = useState<unknown>(null);
  return (
    <section class="card" aria-labelledby="reset-title">
      <h2 id="reset-title">New password for {user.name}</h2>
      <ErrorBox error={error} />
      <form
        class="row wrap align-end"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            await onDone(password);
          } catch (err) {
            setError(err);
          }
        }}
      >
        <NewPasswordField label="New password (8+ characters)" value={password} onInput={setPassword} focus />
        <button type="submit" class="btn btn-primary">
          Set password
        </button>
        <button type="button" class="btn" onClick={onCancel}>
          Cancel
        </button>
      </form>
    </section>
  );
}
