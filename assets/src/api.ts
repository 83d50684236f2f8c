// The one HTTP client of the UI: cookie session + CSRF header on every state-changing
// request, and every failure turned into an ApiError carrying the daemon's message and
// its Retry-After.

import type { BackupList, GpuReport, NewBackup, NotificationsView, NotifyTestResult } from './types';

export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string;
  readonly param: string | null;
  /** Seconds to wait before retrying (from `Retry-After`), when the server said. */
  readonly retryAfter: number | null;

  constructor(
    status: number,
    message: string,
    opts: { type?: string; code?: string; param?: string | null; retryAfter?: number | null } = {},
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.type = opts.type ?? '';
    this.code = opts.code ?? '';
    this.param = opts.param ?? null;
    this.retryAfter = opts.retryAfter ?? null;
  }
}

/**
 * Parses a `Retry-After` header: delay-seconds or an HTTP date. Returns whole seconds
 * (at least 0), or null when absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | null {
  if (value == null) return null;
  const text = value.trim();
  if (text === '') return null;
  if (/^\d+$/.test(text)) return parseInt(text, 10);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** "45 s", "2 min", "1 min 30 s", "2 h 5 min". */
export function formatWait(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    const rest = s % 60;
    return rest ? `${m} min ${rest} s` : `${m} min`;
  }
  const h = Math.floor(s / 3600);
  const m = Math.round((s % 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}

/** Builds an ApiError from a failed response's status, headers and body text. */
export function errorFromResponse(status: number, headers: { get(name: string): string | null }, body: string): ApiError {
  const retryAfter = parseRetryAfter(headers.get('retry-after'));
  let message = '';
  let type: string | undefined;
  let code: string | undefined;
  let param: string | null = null;
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    const e = parsed?.error;
    if (e && typeof e === 'object') {
      const o = e as Record<string, unknown>;
      if (typeof o.message === 'string') message = o.message;
      if (typeof o.type === 'string') type = o.type;
      if (typeof o.code === 'string') code = o.code;
      if (typeof o.param === 'string') param = o.param;
    } else if (typeof e === 'string') {
      message = e;
    }
  } catch {
    // Not JSON (a proxy's page, say): fall back to the status text below.
  }
  if (!message) message = body && body.length < 200 && !body.trimStart().startsWith('<') ? body.trim() : '';
  if (!message) message = `request failed with HTTP ${status}`;
  return new ApiError(status, message, { type, code, param, retryAfter });
}

/** A sentence for a person: the server's message plus what to do about it. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) {
    let text = err.message;
    if (err.status === 503 && !/busy|try again|retry/i.test(text)) {
      text = `The server is busy: ${text}`;
    }
    // Say when to retry, unless the server's message already does.
    if (err.retryAfter != null && !/\b(try again|retry) in \d/i.test(text)) {
      text = `${text.replace(/[.\s]+$/, '')}. Try again in ${formatWait(err.retryAfter)}.`;
    } else if (err.status === 0) {
      text = `${text} Check that the daemon is running.`;
    }
    return text;
  }
  if (err instanceof DOMException && err.name === 'AbortError') return 'Stopped.';
  if (err instanceof Error) return err.message;
  return String(err);
}

let csrfToken: string | null = null;
let onUnauthorized: (() => void) | null = null;

export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** Called once when any request answers 401 (the session ended). */
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface RequestOptions {
  signal?: AbortSignal;
  /** Do not report a 401 to the session handler (login, me). */
  quiet401?: boolean;
  headers?: Record<string, string>;
}

/** fetch() with the session cookie, the CSRF header and JSON. Throws ApiError. */
export async function rawRequest(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (!SAFE.has(method) && csrfToken) headers['x-csrf-token'] = csrfToken;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal: opts.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'Could not reach the server.', { code: 'network' });
  }
  if (!response.ok) {
    const text = await response.text().catch(() => '');
    const error = errorFromResponse(response.status, response.headers, text);
    if (response.status === 401 && !opts.quiet401 && onUnauthorized) onUnauthorized();
    throw error;
  }
  return response;
}

export async function request<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
  const response = await rawRequest(method, path, body, opts);
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const get = <T>(path: string, opts?: RequestOptions) => request<T>('GET', path, undefined, opts);
export const post = <T>(path: string, body?: unknown, opts?: RequestOptions) => request<T>('POST', path, body ?? {}, opts);
export const patch = <T>(path: string, body: unknown, opts?: RequestOptions) => request<T>('PATCH', path, body, opts);
export const del = <T>(path: string, opts?: RequestOptions) => request<T>('DELETE', path, undefined, opts);

/** The GPU scheduler's view (administrators only): devices, VRAM budget, start-up plan, residents, load queue. */
export const getGpuReport = (opts?: RequestOptions) => get<GpuReport>('/api/v1/gpu', opts);

/** The backup archives, the schedule and the running backup job (administrators only). */
export const listBackups = (opts?: RequestOptions) => get<BackupList>('/api/v1/backups', opts);

/** Starts a `backup.create` job; 409 `backup_running` while another one runs. */
export const startBackup = (withModels: boolean) => post<NewBackup>('/api/v1/backups', { with_models: withModels });

/** An archive's URL: a download (`Content-Disposition: attachment`) that the session cookie authenticates. */
export function backupHref(name: string): string {
  return `/api/v1/backups/${encodeURIComponent(name)}`;
}

export const deleteBackup = (name: string) => del<void>(backupHref(name));

/** The webhook targets, the repeat interval, the event kinds and the recent deliveries (administrators only). */
export const getNotifications = (opts?: RequestOptions) => get<NotificationsView>('/api/v1/notifications', opts);

/** Queues a `test` notification for every target; `queued` is 0 when none is configured. */
export const sendTestNotification = () => post<NotifyTestResult>('/api/v1/notifications/test', {});

/** The signed-in user's live event stream (jobs; notifications for administrators). */
export const EVENTS_PATH = '/api/v1/events';

/** Builds `path?k=v&…`, leaving out undefined/null/empty values. */
export function withQuery(path: string, query: Record<string, string | number | boolean | null | undefined>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue;
    params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/**
 * POSTs a form (file uploads) with XMLHttpRequest, which unlike fetch reports upload
 * progress. Same cookie, CSRF header and errors as `request`; an abort through
 * `signal` rejects with an AbortError.
 */
export function upload<T>(
  path: string,
  form: FormData,
  onProgress: (loaded: number, total: number) => void,
  signal?: AbortSignal,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new DOMException('The upload was cancelled.', 'AbortError'));
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('accept', 'application/json');
    if (csrfToken) xhr.setRequestHeader('x-csrf-token', csrfToken);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve((xhr.responseText ? JSON.parse(xhr.responseText) : undefined) as T);
        } catch {
          reject(new ApiError(xhr.status, 'The server sent an answer that is not JSON.'));
        }
        return;
      }
      const error = errorFromResponse(xhr.status, { get: (n) => xhr.getResponseHeader(n) }, xhr.responseText);
      if (xhr.status === 401 && onUnauthorized) onUnauthorized();
      reject(error);
    };
    xhr.onerror = () => reject(new ApiError(0, 'Could not reach the server.', { code: 'network' }));
    xhr.onabort = () => reject(new DOMException('The upload was cancelled.', 'AbortError'));
    signal?.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.send(form);
  });
}

/** Downloads a file from the API with the session cookie (export). */
export async function download(path: string, fallbackName: string): Promise<void> {
  const response = await rawRequest('GET', path, undefined, { headers: { accept: '*/*' } });
  const blob = await response.blob();
  const disposition = response.headers.get('content-disposition') ?? '';
  const match = /filename="?([^";]+)"?/i.exec(disposition);
  const name = match?.[1] ?? fallbackName;
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.rel = 'noopener';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
