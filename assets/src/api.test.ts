import { describe, expect, it } from 'vitest';
import { ApiError, errorFromResponse, errorMessage, formatWait, parseRetryAfter, withQuery } from './api';

const headers = (h: Record<string, string>) => ({ get: (n: string) => h[n.toLowerCase()] ?? null });

describe('Retry-After', () => {
  it('reads seconds and HTTP dates', () => {
    expect(parseRetryAfter('17')).toBe(17);
    expect(parseRetryAfter(' 0 ')).toBe(0);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:01:30 GMT', now)).toBe(90);
    expect(parseRetryAfter('Thu, 01 Jan 2025 00:01:30 GMT', now)).toBe(0);
    expect(parseRetryAfter(null)).toBeNull();
    expect(parseRetryAfter('soon')).toBeNull();
  });

  it('formats waits for people', () => {
    expect(formatWait(5)).toBe('5 s');
    expect(formatWait(60)).toBe('1 min');
    expect(formatWait(90)).toBe('1 min 30 s');
    expect(formatWait(7500)).toBe('2 h 5 min');
  });
});

describe('errors', () => {
  it('reads the OpenAI-shaped error body', () => {
    const e = errorFromResponse(
      400,
      headers({}),
      '{"error":{"message":"`limit` must be from 1 to 200","type":"invalid_request_error","code":"invalid_request","param":"limit"}}',
    );
    expect(e).toBeInstanceOf(ApiError);
    expect(e.status).toBe(400);
    expect(e.message).toBe('`limit` must be from 1 to 200');
    expect(e.param).toBe('limit');
    expect(e.code).toBe('invalid_request');
    expect(errorMessage(e)).toBe('`limit` must be from 1 to 200');
  });

  it('adds the retry time to 429 and 503 messages', () => {
    const quota = errorFromResponse(
      429,
      headers({ 'retry-after': '3600' }),
      '{"error":{"message":"user `bob` has used the daily quota of 1 generated tokens; it resets at midnight UTC","type":"rate_limit_error","code":"rate_limited"}}',
    );
    expect(quota.retryAfter).toBe(3600);
    expect(errorMessage(quota)).toBe(
      'user `bob` has used the daily quota of 1 generated tokens; it resets at midnight UTC. Try again in 1 h.',
    );

    const unavailable = errorFromResponse(
      503,
      headers({ 'retry-after': '2' }),
      '{"error":{"message":"the model is loading","type":"server_error","code":"unavailable"}}',
    );
    expect(errorMessage(unavailable)).toBe('The server is busy: the model is loading. Try again in 2 s.');
  });

  it('does not repeat a retry time the message already gives', () => {
    const busy = errorFromResponse(
      503,
      headers({ 'retry-after': '2' }),
      '{"error":{"message":"model `m` is busy: 12 requests are running or queued (limit 12); retry in 2 s","type":"server_error","code":"overloaded"}}',
    );
    expect(busy.retryAfter).toBe(2);
    expect(errorMessage(busy)).toBe('model `m` is busy: 12 requests are running or queued (limit 12); retry in 2 s');
    const login = errorFromResponse(429, headers({ 'retry-after': '8' }), '{"error":{"message":"too many failed logins; try again in 8 s"}}');
    expect(errorMessage(login)).toBe('too many failed logins; try again in 8 s');
  });

  it('survives bodies that are not JSON', () => {
    const e = errorFromResponse(502, headers({}), '<html><body>Bad gateway</body></html>');
    expect(e.message).toBe('request failed with HTTP 502');
    expect(errorFromResponse(500, headers({}), 'plain failure').message).toBe('plain failure');
  });

  it('explains network failures and aborts', () => {
    expect(errorMessage(new ApiError(0, 'Could not reach the server.'))).toBe(
      'Could not reach the server. Check that the daemon is running.',
    );
    expect(errorMessage(new DOMException('aborted', 'AbortError'))).toBe('Stopped.');
    expect(errorMessage(new Error('x'))).toBe('x');
  });
});

describe('withQuery', () => {
  it('encodes and skips empty values', () => {
    expect(withQuery('/a', { q: 'a b&c', limit: 50, cursor: undefined, x: '' })).toBe('/a?q=a+b%26c&limit=50');
    expect(withQuery('/a', {})).toBe('/a');
  });
});
