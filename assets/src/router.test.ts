import { describe, expect, it } from 'vitest';
import { chatHref, documentHref, documentsHref, parseRoute, speechHref } from './router';

describe('hash routes', () => {
  it('parses every page', () => {
    expect(parseRoute('')).toEqual({ page: 'chat', id: null, message: null });
    expect(parseRoute('#/chat/conv_abc')).toEqual({ page: 'chat', id: 'conv_abc', message: null });
    expect(parseRoute('#/chat/conv_abc?m=12')).toEqual({ page: 'chat', id: 'conv_abc', message: 12 });
    expect(parseRoute('#/setup/tok123')).toEqual({ page: 'setup', token: 'tok123' });
    expect(parseRoute('#/admin')).toEqual({ page: 'admin', section: 'system' });
    expect(parseRoute('#/admin/audit')).toEqual({ page: 'admin', section: 'audit' });
    expect(parseRoute('#/admin/gpu')).toEqual({ page: 'admin', section: 'gpu' });
    expect(parseRoute('#/admin/backups')).toEqual({ page: 'admin', section: 'backups' });
    expect(parseRoute('#/admin/notifications')).toEqual({ page: 'admin', section: 'notifications' });
    expect(parseRoute('#/admin/nope').page).toBe('notfound');
    expect(parseRoute('#/keys')).toEqual({ page: 'keys' });
  });

  it('builds chat links that parse back', () => {
    expect(parseRoute(chatHref('conv_x', 5))).toEqual({ page: 'chat', id: 'conv_x', message: 5 });
    expect(chatHref(null)).toBe('#/chat');
  });

  it('parses the documents pages and builds links that parse back', () => {
    expect(parseRoute('#/documents')).toEqual({ page: 'documents', collection: null });
    expect(parseRoute('#/documents?c=4')).toEqual({ page: 'documents', collection: 4 });
    expect(parseRoute('#/documents?c=x')).toEqual({ page: 'documents', collection: null });
    expect(parseRoute('#/documents/17?chunk=9')).toEqual({ page: 'document', id: 17, chunk: 9 });
    expect(parseRoute('#/documents/17')).toEqual({ page: 'document', id: 17, chunk: null });
    expect(parseRoute('#/documents/0').page).toBe('notfound');
    expect(parseRoute('#/documents/abc').page).toBe('notfound');
    expect(parseRoute('#/documents/1/2').page).toBe('notfound');
    expect(parseRoute(documentHref(5, 12))).toEqual({ page: 'document', id: 5, chunk: 12 });
    expect(parseRoute(documentHref(5))).toEqual({ page: 'document', id: 5, chunk: null });
    expect(parseRoute(documentsHref(3))).toEqual({ page: 'documents', collection: 3 });
    expect(documentsHref(null)).toBe('#/documents');
  });

  it('parses the speech pages and builds links that parse back', () => {
    expect(parseRoute('#/speech')).toEqual({ page: 'speech', id: null });
    expect(parseRoute('#/speech/42')).toEqual({ page: 'speech', id: 42 });
    expect(parseRoute('#/speech/0').page).toBe('notfound');
    expect(parseRoute('#/speech/x').page).toBe('notfound');
    expect(parseRoute('#/speech/1/2').page).toBe('notfound');
    expect(parseRoute(speechHref(7))).toEqual({ page: 'speech', id: 7 });
    expect(speechHref(null)).toBe('#/speech');
  });
});
