import { describe, expect, it } from 'vitest';
import { parseChatEvent, SseParser } from './sse';

describe('SseParser', () => {
  it('parses events split at any point', () => {
    const stream = 'data: {"type":"token","text":"Par"}\n\ndata: {"type":"token","text":"is"}\n\n';
    for (let cut = 0; cut <= stream.length; cut++) {
      const p = new SseParser();
      const events = [...p.push(stream.slice(0, cut)), ...p.push(stream.slice(cut))];
      expect(events.map((e) => e.data)).toEqual(['{"type":"token","text":"Par"}', '{"type":"token","text":"is"}']);
    }
  });

  it('handles CRLF and CR line endings, even split between chunks', () => {
    const p = new SseParser();
    expect(p.push('data: a\r')).toEqual([]);
    expect(p.push('\n\r\ndata: b\r\r\n')).toEqual([
      { event: 'message', data: 'a', id: undefined },
      { event: 'message', data: 'b', id: undefined },
    ]);
  });

  it('joins multi-line data and keeps event names and ids', () => {
    const p = new SseParser();
    const events = p.push('event: note\nid: 7\ndata: one\ndata:two\n\n');
    expect(events).toEqual([{ event: 'note', data: 'one\ntwo', id: '7' }]);
  });

  it('skips comments (keep-alives) and events without data', () => {
    const p = new SseParser();
    expect(p.push(':\n\n: ping\n\nevent: x\n\nretry: 5\n\n')).toEqual([]);
  });

  it('keeps only one leading space of a value', () => {
    const p = new SseParser();
    expect(p.push('data:   x\n\n')[0].data).toBe('  x');
  });

  it('flushes a last event that lacks its blank line on end()', () => {
    const p = new SseParser();
    expect(p.push('data: last')).toEqual([]);
    expect(p.end()).toEqual([{ event: 'message', data: 'last', id: undefined }]);
  });

  it('keeps multi-byte text intact (the decoder runs before the parser)', () => {
    const p = new SseParser();
    const e = p.push('data: {"type":"token","text":"Zürich ☕"}\n\n');
    expect(parseChatEvent(e[0].data)).toEqual({ type: 'token', text: 'Zürich ☕' });
  });
});

describe('parseChatEvent', () => {
  it('recognises tokens, done and error events', () => {
    expect(parseChatEvent('{"type":"token","text":"hi"}')).toEqual({ type: 'token', text: 'hi' });
    const done = parseChatEvent('{"type":"done","user_message":{"id":1},"message":{"id":2}}');
    expect(done?.type).toBe('done');
    const err = parseChatEvent('{"type":"error","error":{"message":"engine crashed","type":"server_error"},"message":null}');
    expect(err).toEqual({ type: 'error', error: { message: 'engine crashed', type: 'server_error' }, message: null });
  });

  it('ignores garbage and unknown shapes', () => {
    expect(parseChatEvent('not json')).toBeNull();
    expect(parseChatEvent('42')).toBeNull();
    expect(parseChatEvent('{"type":"token"}')).toBeNull();
    expect(parseChatEvent('{"type":"whatever"}')).toBeNull();
  });
});
