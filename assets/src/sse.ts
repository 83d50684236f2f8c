// Server-sent events: an incremental parser for the `text/event-stream` format
// (https://html.spec.whatwg.org/multipage/server-sent-events.html) fed with decoded
// chunks as they arrive, and the chat stream built on it.

import { ApiError, rawRequest } from './api';
import type { Message, Source } from './types';

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/**
 * Feed it text chunks in any split (mid-line, mid-CRLF); it returns the events that
 * became complete. Comments (`:` lines, keep-alives) are skipped.
 */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  private sawData = false;

  push(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const out: SseEvent[] = [];
    let start = 0;
    for (;;) {
      let end = -1;
      let next = -1;
      for (let i = start; i < this.buffer.length; i++) {
        const c = this.buffer.charCodeAt(i);
        if (c === 10) {
          end = i;
          next = i + 1;
          break;
        }
        if (c === 13) {
          // A CR at the very end may be the first half of CRLF: wait for more.
          if (i + 1 >= this.buffer.length) break;
          end = i;
          next = this.buffer.charCodeAt(i + 1) === 10 ? i + 2 : i + 1;
          break;
        }
      }
      if (end < 0) break;
      this.line(this.buffer.slice(start, end), out);
      start = next;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** Ends the stream: a last event without its blank line is dispatched, as browsers do not, but servers that close early deserve it. */
  end(): SseEvent[] {
    const out: SseEvent[] = [];
    if (this.buffer.length) {
      this.line(this.buffer, out);
      this.buffer = '';
    }
    this.line('', out);
    return out;
  }

  private line(line: string, out: SseEvent[]): void {
    if (line === '') {
      if (this.sawData) {
        out.push({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
      }
      this.data = [];
      this.event = '';
      this.sawData = false;
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        this.sawData = true;
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        this.id = value;
        break;
      default:
        // `retry` and unknown fields are ignored.
        break;
    }
  }
}

export type ChatEvent =
  | { type: 'token'; text: string }
  | { type: 'done'; user_message: Message; message: Message; sources?: Source[] }
  | { type: 'error'; error: { message: string; type?: string; code?: string }; message?: Message | null };

/** Parses one event's data as a chat event; unknown shapes return null. */
export function parseChatEvent(data: string): ChatEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (!value || typeof value !== 'object') return null;
  const v = value as Record<string, unknown>;
  if (v.type === 'token' && typeof v.text === 'string') return { type: 'token', text: v.text };
  if (v.type === 'done' && v.message && v.user_message) return v as unknown as ChatEvent;
  if (v.type === 'error') {
    const e = (v.error && typeof v.error === 'object' ? v.error : { message: 'the reply failed' }) as {
      message: string;
    };
    return { type: 'error', error: e, message: (v.message as Message | null | undefined) ?? null };
  }
  return null;
}

/**
 * The stored reply of a `done` event, carrying the sources the event lists when the
 * message itself does not (the server may put them on either).
 */
export function replyWithSources(done: Extract<ChatEvent, { type: 'done' }>): Message {
  const m = done.message;
  if (m.sources?.length || !Array.isArray(done.sources) || done.sources.length === 0) return m;
  return { ...m, sources: done.sources };
}

export interface StreamResult {
  /** How the stream ended. */
  outcome: 'done' | 'error' | 'aborted' | 'closed';
  done?: Extract<ChatEvent, { type: 'done' }>;
  error?: Extract<ChatEvent, { type: 'error' }>;
  /** Whether the server had accepted the request (headers received). */
  started: boolean;
}

/**
 * Sends a message to a conversation and streams the reply. `onToken` gets each piece
 * of text. Failures before the stream starts (busy, quota, validation) throw ApiError;
 * an abort through `signal` resolves with outcome `aborted`.
 */
export async function sendMessage(
  conversationId: string,
  content: string,
  onToken: (text: string) => void,
  signal: AbortSignal,
): Promise<StreamResult> {
  let response: Response;
  try {
    response = await rawRequest(
      'POST',
      `/api/v1/conversations/${encodeURIComponent(conversationId)}/messages`,
      { content, stream: true },
      { signal, headers: { accept: 'text/event-stream' } },
    );
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') return { outcome: 'aborted', started: false };
    throw e;
  }
  if (!response.body) throw new ApiError(0, 'The browser cannot read streamed replies.');
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  const handle = (events: SseEvent[]): StreamResult | null => {
    for (const ev of events) {
      const chat = parseChatEvent(ev.data);
      if (!chat) continue;
      if (chat.type === 'token') onToken(chat.text);
      else if (chat.type === 'done') return { outcome: 'done', done: chat, started: true };
      else return { outcome: 'error', error: chat, started: true };
    }
    return null;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const finished = handle(parser.push(value));
      if (finished) {
        reader.cancel().catch(() => {});
        return finished;
      }
    }
    return handle(parser.end()) ?? { outcome: 'closed', started: true };
  } catch (e) {
    if (signal.aborted) return { outcome: 'aborted', started: true };
    throw e instanceof ApiError ? e : new ApiError(0, 'The connection to the server was lost during the reply.');
  }
}
