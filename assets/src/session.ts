// The signed-in user, shared by every page.

import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Me } from './types';

export interface SessionValue {
  me: Me;
  isAdmin: boolean;
  /** Ends the session on the server and shows the login page. */
  logout: (notice?: string) => Promise<void>;
  /** Drops the local session without a request (after a password change). */
  signedOut: (notice?: string) => void;
}

export const SessionContext = createContext<SessionValue | null>(null);

export function useSession(): SessionValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error('useSession outside a signed-in page');
  return value;
}
