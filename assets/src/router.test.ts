import { describe, expect, it } from 'vitest';
import { chatHref, parseRoute } from './router';

describe('hash routes', () => {
  it('parses every page', () => {
    expect(parseRoute('')).toEqual({ page: 'chat', id: null, message: null });
    expect(parseRoute('#/chat/conv_abc')).toEqual({ page: 'chat', id: 'conv_abc', message: null });
    expect(parseRoute('#/chat/conv_abc?m=12')).toEqual({ page: 'chat', id: 'conv_abc', message: 12 });
    expect(parseRoute('#/setup/tok123')).toEqual({ page: 'setup', token: 'tok123' });
    expect(parseRoute('#/admin')).toEqual({ page: 'admin', section: 'system' });
    expect(parseRoute('#/admin/audit')).toEqual({ page: 'admin', section: 'audit' });
    expect(parseRoute('#/admin/nope').page).toBe('notfound');
    expect(parseRoute('#/keys')).toEqual({ page: 'keys' });
  });

  it('builds chat links that parse back', () => {
    expect(parseRoute(chatHref('conv_x', 5))).toEqual({ page: 'chat', id: 'conv_x', message: 5 });
    expect(chatHref(null)).toBe('#/chat');
  });
});
