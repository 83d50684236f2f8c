// The shell: who is signed in, the navigation, and which page shows.

import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { get, post, setCsrfToken, setUnauthorizedHandler } from './api';
import { navigate, useRoute, type AdminSection, type Route } from './router';
import { SessionContext, type SessionValue } from './session';
import type { Me } from './types';
import { Login } from './pages/Login';
import { Setup } from './pages/Setup';
import { Chat } from './pages/Chat';
import { Account } from './pages/Account';
import { Keys } from './pages/Keys';
import { Documents } from './pages/Documents';
import { Speech } from './pages/Speech';
import { SystemPage } from './pages/admin/System';
import { GpuPage } from './pages/admin/Gpu';
import { ModelsPage } from './pages/admin/Models';
import { HealthPage } from './pages/admin/Health';
import { BackupsPage } from './pages/admin/Backups';
import { NotificationsPage } from './pages/admin/Notifications';
import { UsersPage } from './pages/admin/Users';
import { UsagePage } from './pages/admin/Usage';
import { AuditPage } from './pages/admin/Audit';
import { PageTitle } from './components/common';
import { LiveNotifications } from './components/LiveNotifications';

type Auth = { state: 'loading' } | { state: 'out'; notice?: string } | { state: 'in'; me: Me };

const ADMIN_LINKS: [AdminSection, string][] = [
  ['system', 'System'],
  ['gpu', 'GPU'],
  ['models', 'Models and queue'],
  ['health', 'Health'],
  ['backups', 'Backups'],
  ['notifications', 'Notifications'],
  ['users', 'Users'],
  ['keys', 'All API keys'],
  ['usage', 'Usage'],
  ['audit', 'Audit log'],
];

/** Features that are planned but not built yet: listed honestly, not linked. */
const COMING = ['Images', 'Data questions'];

export function App() {
  const route = useRoute();
  const [auth, setAuth] = useState<Auth>({ state: 'loading' });
  // Where to go back to after signing in.
  const returnTo = useRef<string | null>(null);

  const loadMe = useCallback(async () => {
    try {
      const me = await get<Me>('/api/v1/auth/me', { quiet401: true });
      setCsrfToken(me.csrf_token);
      setAuth({ state: 'in', me });
    } catch {
      setCsrfToken(null);
      setAuth({ state: 'out' });
    }
  }, []);

  useEffect(() => {
    loadMe();
    setUnauthorizedHandler(() => {
      setCsrfToken(null);
      setAuth({ state: 'out', notice: 'Your session has ended. Sign in again.' });
    });
    return () => setUnauthorizedHandler(null);
  }, []);

  const signedOut = useCallback((notice?: string) => {
    setCsrfToken(null);
    setAuth({ state: 'out', notice });
    navigate('#/login');
  }, []);

  const session = useMemo<SessionValue | null>(() => {
    if (auth.state !== 'in') return null;
    return {
      me: auth.me,
      isAdmin: auth.me.user.role === 'admin',
      logout: async (notice?: string) => {
        try {
          await post('/api/v1/auth/logout');
        } catch {
          // Signed out locally either way.
        }
        signedOut(notice ?? 'You have signed out.');
      },
      signedOut,
    };
  }, [auth, signedOut]);

  if (auth.state === 'loading') {
    return (
      <main class="center-page" id="main">
        <p role="status">Loading…</p>
      </main>
    );
  }

  if (route.page === 'setup') {
    return (
      <main class="center-page" id="main" tabIndex={-1}>
        <Setup token={route.token} onSignedIn={loadMe} />
      </main>
    );
  }

  if (!session) {
    if (route.page !== 'login' && returnTo.current === null) returnTo.current = location.hash;
    return (
      <main class="center-page" id="main" tabIndex={-1}>
        <Login
          notice={auth.state === 'out' ? auth.notice : undefined}
          onSignedIn={async () => {
            await loadMe();
            const back = returnTo.current;
            returnTo.current = null;
            navigate(back && !back.startsWith('#/login') && !back.startsWith('#/setup') ? back : '#/chat', true);
          }}
        />
      </main>
    );
  }

  return (
    <SessionContext.Provider value={session}>
      <Shell route={route} session={session} />
    </SessionContext.Provider>
  );
}

function Shell({ route, session }: { route: Route; session: SessionValue }) {
  const [menuOpen, setMenuOpen] = useState(false);
  const mainRef = useRef<HTMLElement>(null);
  const menuButton = useRef<HTMLButtonElement>(null);
  // The menu (narrow screens): focus goes in when it opens, Escape closes it.
  useLayoutEffect(() => {
    if (!menuOpen) return;
    document.querySelector<HTMLElement>('#sidenav a')?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') {
        setMenuOpen(false);
        menuButton.current?.focus();
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [menuOpen]);
  const hash = typeof location !== 'undefined' ? location.hash : '';
  useEffect(() => setMenuOpen(false), [hash]);
  useEffect(() => {
    if (route.page === 'login') navigate('#/chat', true);
  }, [route.page]);

  const current = (href: string) => {
    const h = hash || '#/chat';
    return h === href || h.startsWith(`${href}/`) || h.startsWith(`${href}?`) ? 'page' : undefined;
  };

  return (
    <div class={`shell ${route.page === 'chat' ? 'shell-chat' : ''}`}>
      <button type="button" class="skip-link" onClick={() => mainRef.current?.focus()}>
        Skip to content
      </button>
      <header class="topbar">
        <button
          type="button"
          ref={menuButton}
          class="btn btn-icon menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="sidenav"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          <span aria-hidden="true">☰</span>
          <span class="sr-only">Menu</span>
        </button>
        <a class="brand" href="#/chat">
          Appliance
        </a>
        <div class="topbar-user">
          <a href="#/account" class="user-link" title="Account">
            <span class="sr-only">Account of </span>
            {session.me.user.name}
            {session.isAdmin && <span class="badge">admin</span>}
          </a>
          <button type="button" class="btn" onClick={() => session.logout()}>
            Sign out
          </button>
        </div>
      </header>
      <nav id="sidenav" class={`sidenav ${menuOpen ? 'open' : ''}`} aria-label="Main">
        <ul>
          <li>
            <a href="#/chat" aria-current={current('#/chat')}>
              Chat
            </a>
          </li>
          <li>
            <a href="#/documents" aria-current={current('#/documents')}>
              Documents
            </a>
          </li>
          <li>
            <a href="#/speech" aria-current={current('#/speech')}>
              Speech to text
            </a>
          </li>
          <li>
            <a href="#/keys" aria-current={current('#/keys')}>
              API keys
            </a>
          </li>
          <li>
            <a href="#/account" aria-current={current('#/account')}>
              Account
            </a>
          </li>
        </ul>
        {session.isAdmin && (
          <>
            <h2 class="nav-heading" id="nav-admin">
              Administration
            </h2>
            <ul aria-labelledby="nav-admin">
              {ADMIN_LINKS.map(([section, label]) => (
                <li key={section}>
                  <a href={`#/admin/${section}`} aria-current={current(`#/admin/${section}`)}>
                    {label}
                  </a>
                </li>
              ))}
            </ul>
          </>
        )}
        <h2 class="nav-heading" id="nav-coming">
          Coming later
        </h2>
        <ul aria-labelledby="nav-coming" class="nav-coming">
          {COMING.map((label) => (
            <li key={label}>
              <span aria-disabled="true">
                {label} <span class="badge badge-muted">not yet</span>
              </span>
            </li>
          ))}
        </ul>
      </nav>
      {menuOpen && <div class="scrim" onClick={() => setMenuOpen(false)} aria-hidden="true" />}
      <main id="main" ref={mainRef} tabIndex={-1} class={route.page === 'chat' ? 'main-chat' : 'main-page'}>
        <Page route={route} isAdmin={session.isAdmin} />
      </main>
      {/* Only administrators get notifications: nobody else opens the stream for them. */}
      {session.isAdmin && <LiveNotifications />}
    </div>
  );
}

function Page({ route, isAdmin }: { route: Route; isAdmin: boolean }) {
  switch (route.page) {
    case 'chat':
      return <Chat id={route.id} focusMessage={route.message} />;
    case 'account':
      return <Account />;
    case 'keys':
      return <Keys all={false} />;
    case 'documents':
    case 'document':
      return <Documents route={route} />;
    case 'speech':
      return <Speech id={route.id} />;
    case 'admin':
      if (!isAdmin) return <Forbidden />;
      switch (route.section) {
        case 'system':
          return <SystemPage />;
        case 'gpu':
          return <GpuPage />;
        case 'models':
          return <ModelsPage />;
        case 'health':
          return <HealthPage />;
        case 'backups':
          return <BackupsPage />;
        case 'notifications':
          return <NotificationsPage />;
        case 'users':
          return <UsersPage />;
        case 'keys':
          return <Keys all={true} />;
        case 'usage':
          return <UsagePage />;
        case 'audit':
          return <AuditPage />;
      }
      return <Forbidden />;
    case 'login':
    case 'setup':
      return null;
    case 'notfound':
      return (
        <div class="page">
          <PageTitle>Page not found</PageTitle>
          <p>
            There is no page at <code>{route.path}</code>. <a href="#/chat">Go to the chat</a>.
          </p>
        </div>
      );
  }
}

function Forbidden() {
  return (
    <div class="page">
      <PageTitle>Administrators only</PageTitle>
      <p>This page is for administrators.</p>
    </div>
  );
}
