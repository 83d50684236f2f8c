// Hash routing (`#/chat/conv_x`): the daemon serves only files, so every page lives
// in the fragment and needs no server-side route.

import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { page: 'login' }
  | { page: 'setup'; token: string }
  | { page: 'chat'; id: string | null; message: number | null }
  | { page: 'account' }
  | { page: 'keys' }
  | { page: 'documents'; collection: number | null }
  | { page: 'document'; id: number; chunk: number | null }
  | { page: 'speech'; id: number | null }
  | { page: 'admin'; section: AdminSection }
  | { page: 'notfound'; path: string };

export const ADMIN_SECTIONS = ['system', 'gpu', 'models', 'health', 'backups', 'notifications', 'users', 'keys', 'usage', 'audit'] as const;
export type AdminSection = (typeof ADMIN_SECTIONS)[number];

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, '');
  const [pathPart, queryPart = ''] = raw.split('?', 2);
  const parts = pathPart.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  const query = new URLSearchParams(queryPart);
  if (parts.length === 0) return { page: 'chat', id: null, message: null };
  switch (parts[0]) {
    case 'login':
      return { page: 'login' };
    case 'setup':
      return { page: 'setup', token: parts[1] ?? '' };
    case 'chat': {
      const m = Number(query.get('m'));
      return { page: 'chat', id: parts[1] ?? null, message: Number.isInteger(m) && m > 0 ? m : null };
    }
    case 'account':
      return { page: 'account' };
    case 'keys':
      return { page: 'keys' };
    case 'documents': {
      if (parts.length === 1) return { page: 'documents', collection: positiveInt(query.get('c')) };
      const id = positiveInt(parts[1]);
      if (id !== null && parts.length === 2) return { page: 'document', id, chunk: positiveInt(query.get('chunk')) };
      break;
    }
    case 'speech': {
      if (parts.length === 1) return { page: 'speech', id: null };
      const id = positiveInt(parts[1]);
      if (id !== null && parts.length === 2) return { page: 'speech', id };
      break;
    }
    case 'admin': {
      const section = (parts[1] ?? 'system') as AdminSection;
      if (ADMIN_SECTIONS.includes(section)) return { page: 'admin', section };
      break;
    }
  }
  return { page: 'notfound', path: pathPart };
}

function positiveInt(text: string | null | undefined): number | null {
  if (!text || !/^\d+$/.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

/** The Documents page, showing one collection when given. */
export function documentsHref(collection?: number | null): string {
  return collection ? `#/documents?c=${collection}` : '#/documents';
}

/** A document's passages, scrolled to `chunk` when given. */
export function documentHref(id: number, chunk?: number | null): string {
  return `#/documents/${id}${chunk ? `?chunk=${chunk}` : ''}`;
}

/** The Speech-to-text page, showing one transcript when given. */
export function speechHref(id?: number | null): string {
  return id ? `#/speech/${id}` : '#/speech';
}

export function chatHref(id: string | null, message?: number | null): string {
  if (!id) return '#/chat';
  return `#/chat/${encodeURIComponent(id)}${message ? `?m=${message}` : ''}`;
}

export function navigate(hash: string, replace = false): void {
  if (replace) {
    history.replaceState(null, '', hash);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = hash;
  }
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}
