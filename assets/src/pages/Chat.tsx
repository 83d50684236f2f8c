// The chat page: the conversation sidebar and the open conversation (or a new one).

import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { ApiError, del, download, errorMessage, get, patch, post, withQuery } from '../api';
import { replyWithSources, sendMessage } from '../sse';
import { appendPage, canLoadMore, emptyPaged, failed, loading, nextCursor, removeItem, upsertTop, type Paged } from '../pagination';
import { chatHref, navigate } from '../router';
import type { Collection, Conversation, Message, ModelInfo, Page } from '../types';
import { ConversationList } from '../components/ConversationList';
import { Markdown, MessageView } from '../components/MessageView';
import { SettingsPanel, settingsSummary, type ConversationConfig } from '../components/Settings';
import { CollectionPicker } from '../components/CollectionPicker';
import { copyText, ErrorBox, PageTitle } from '../components/common';
import { takeChatDraft } from '../draft';

const PAGE_SIZE = 50;

export function Chat({ id, focusMessage }: { id: string | null; focusMessage: number | null }) {
  const [list, setList] = useState<Paged<Conversation>>(emptyPaged);
  const listRef = useRef(list);
  listRef.current = list;
  const [models, setModels] = useState<ModelInfo[] | null>(null);
  const [collections, setCollections] = useState<Collections>({ list: null, error: null });
  const [drawer, setDrawer] = useState(false);
  // A first message typed in the new-conversation view, sent once it exists.
  const [autoSend, setAutoSend] = useState<{ id: string; text: string } | null>(null);

  const loadMore = useCallback(async () => {
    const state = listRef.current;
    if (!canLoadMore(state)) return;
    setList(loading(state));
    listRef.current = loading(state);
    try {
      const page = await get<Page<Conversation>>(
        withQuery('/api/v1/conversations', { limit: PAGE_SIZE, cursor: nextCursor(state) }),
      );
      setList((s) => appendPage(s, page));
    } catch (e) {
      setList((s) => failed(s, errorMessage(e)));
    }
  }, []);

  useEffect(() => {
    loadMore();
    get<{ data: ModelInfo[] }>('/v1/models')
      // Only chat models: the list also has embedding and speech models.
      .then((r) => setModels(r.data.filter((m) => (m.meta?.kind ?? 'chat') === 'chat')))
      .catch(() => setModels([]));
    get<{ collections: Collection[] }>('/api/v1/collections')
      .then((r) => setCollections({ list: r.collections, error: null }))
      .catch((e) => setCollections({ list: null, error: e }));
  }, []);

  const changed = useCallback((c: Conversation) => setList((s) => upsertTop(s, c)), []);
  const deleted = useCallback((cid: string) => {
    setList((s) => removeItem(s, cid));
    navigate('#/chat');
  }, []);
  const closeDrawer = useCallback(() => setDrawer(false), []);
  const toggleRef = useRef<HTMLButtonElement>(null);
  // The drawer (narrow screens): focus goes in when it opens, Escape closes it.
  useLayoutEffect(() => {
    if (!drawer) return;
    document.getElementById('conv-search')?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') {
        setDrawer(false);
        toggleRef.current?.focus();
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [drawer]);

  return (
    <div class={`chat ${drawer ? 'drawer-open' : ''}`}>
      <aside class="chat-sidebar" id="chat-sidebar" aria-label="Conversations">
        <div class="chat-sidebar-head">
          <a class="btn btn-primary grow" href="#/chat" onClick={closeDrawer}>
            New conversation
          </a>
          <button type="button" class="btn drawer-close" onClick={closeDrawer}>
            Close
          </button>
        </div>
        <ConversationList list={list} currentId={id} onLoadMore={loadMore} onPick={closeDrawer} />
      </aside>
      {drawer && <div class="scrim scrim-chat" onClick={closeDrawer} aria-hidden="true" />}
      <section class="chat-main">
        <button
          type="button"
          ref={toggleRef}
          class="btn drawer-toggle"
          aria-expanded={drawer}
          aria-controls="chat-sidebar"
          onClick={() => setDrawer(true)}
        >
          Conversations
        </button>
        {id ? (
          <ConversationView
            key={id}
            id={id}
            focusMessage={focusMessage}
            models={models}
            collections={collections}
            onChanged={changed}
            onDeleted={deleted}
            autoSend={autoSend?.id === id ? autoSend.text : null}
            onAutoSent={() => setAutoSend(null)}
          />
        ) : (
          <NewConversation
            models={models}
            collections={collections}
            onCreated={(c, text) => {
              changed(c);
              setAutoSend({ id: c.id, text });
              navigate(chatHref(c.id));
            }}
          />
        )}
      </section>
    </div>
  );
}

/** The collections the user can read, for the picker (null while loading). */
interface Collections {
  list: Collection[] | null;
  error: unknown;
}

function defaultModel(models: ModelInfo[] | null): string {
  return models?.[0]?.id ?? '';
}

function NewConversation({
  models,
  collections,
  onCreated,
}: {
  models: ModelInfo[] | null;
  collections: Collections;
  onCreated: (c: Conversation, firstMessage: string) => void;
}) {
  const [config, setConfig] = useState<ConversationConfig>({ model: '', system_prompt: '', settings: {} });
  const [picked, setPicked] = useState<number[]>([]);
  const [showSettings, setShowSettings] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  // Text sent here from another page (a transcript), put in the message box to review.
  const [prefill] = useState(() => {
    const text = takeChatDraft();
    return text ? { text, n: Date.now() } : null;
  });

  const start = async (text: string) => {
    setBusy(true);
    setError(null);
    try {
      const body: Record<string, unknown> = { settings: config.settings };
      if (config.model) body.model = config.model;
      if (config.system_prompt) body.system_prompt = config.system_prompt;
      let c = await post<Conversation>('/api/v1/conversations', body);
      if (picked.length) {
        // The conversation exists either way; its own picker shows what was kept.
        c = await patch<Conversation>(`/api/v1/conversations/${encodeURIComponent(c.id)}`, { collections: picked }).catch(() => c);
      }
      onCreated(c, text);
      return true;
    } catch (e) {
      setError(e);
      setBusy(false);
      return false;
    }
  };

  return (
    <div class="conv">
      <div class="conv-head">
        <PageTitle>New conversation</PageTitle>
        <div class="conv-sub">
          <span>
            Model: <strong>{config.model || defaultModel(models) || 'default'}</strong> · {settingsSummary(config.settings)}
            {config.system_prompt && ' · system prompt set'}
          </span>
          <div class="row wrap conv-actions">
            <CollectionPicker idPrefix="new" collections={collections.list} loadError={collections.error} selected={picked} onChange={setPicked} />
            <button type="button" class="btn btn-small" aria-expanded={showSettings} onClick={() => setShowSettings(!showSettings)}>
              Settings
            </button>
          </div>
        </div>
      </div>
      {showSettings && (
        <SettingsPanel
          idPrefix="new"
          models={models}
          initial={{ ...config, model: config.model || defaultModel(models) }}
          saveLabel="Use these settings"
          onSave={(c) => {
            setConfig(c);
            setShowSettings(false);
          }}
          onCancel={() => setShowSettings(false)}
        />
      )}
      <div class="messages messages-empty">
        <p class="muted">Ask anything. The conversation is saved on the server and listed on the left.</p>
        {prefill && <p class="alert alert-info">The transcript is in the message box below: add your question, then send it.</p>}
        {models && models.length === 0 && (
          <p class="alert alert-error" role="alert">
            No chat model is installed. An administrator can add one with <code>appliance models import PATH</code>.
          </p>
        )}
      </div>
      <ErrorBox error={error} />
      <Composer streaming={false} disabled={busy} onSend={start} onStop={() => {}} prefill={prefill} />
    </div>
  );
}

interface Pending {
  user: string;
  reply: string;
  /** Streaming, or waiting for the server to store a stopped/failed reply. */
  phase: 'writing' | 'saving';
}

function ConversationView({
  id,
  focusMessage,
  models,
  collections,
  onChanged,
  onDeleted,
  autoSend,
  onAutoSent,
}: {
  id: string;
  focusMessage: number | null;
  models: ModelInfo[] | null;
  collections: Collections;
  onChanged: (c: Conversation) => void;
  onDeleted: (id: string) => void;
  autoSend: string | null;
  onAutoSent: () => void;
}) {
  const [conv, setConv] = useState<Conversation | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [error, setError] = useState<unknown>(null);
  const [pending, setPending] = useState<Pending | null>(null);
  const [announce, setAnnounce] = useState('');
  const [showSettings, setShowSettings] = useState(false);
  const [renaming, setRenaming] = useState(false);
  // Text put back into the composer when a resend fails before the reply starts.
  const [prefill, setPrefill] = useState<{ text: string; n: number } | null>(null);
  const abortRef = useRef<AbortController | null>(null);
  const scroller = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const messagesRef = useRef(messages);
  messagesRef.current = messages;

  const load = useCallback(async () => {
    const res = await get<{ conversation: Conversation; messages: Message[] }>(`/api/v1/conversations/${encodeURIComponent(id)}`);
    setConv(res.conversation);
    setMessages(res.messages);
    return res;
  }, [id]);

  useEffect(() => {
    load()
      .then(() => setLoadError(null))
      .catch((e) => setLoadError(e));
    return () => abortRef.current?.abort();
  }, [id]);

  // Stay at the bottom while text streams in, unless the reader scrolled up.
  const onScroll = () => {
    const el = scroller.current;
    if (el) stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  };
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (focusMessage && !pending) {
      const target = el.querySelector(`[data-message-id="${focusMessage}"]`);
      if (target) {
        target.scrollIntoView({ block: 'center' });
        return;
      }
    }
    if (stick.current) el.scrollTop = el.scrollHeight;
  }, [messages, pending, focusMessage]);

  const send = useCallback(
    async (text: string): Promise<boolean> => {
      if (abortRef.current) return false;
      setError(null);
      setAnnounce('');
      const ctrl = new AbortController();
      abortRef.current = ctrl;
      stick.current = true;
      let reply = '';
      let frame = 0;
      const flush = () => {
        frame = 0;
        setPending({ user: text, reply, phase: 'writing' });
      };
      setPending({ user: text, reply: '', phase: 'writing' });
      const before = messagesRef.current.length;
      try {
        const result = await sendMessage(
          id,
          text,
          (t) => {
            reply += t;
            if (!frame) frame = requestAnimationFrame(flush);
          },
          ctrl.signal,
        );
        if (frame) cancelAnimationFrame(frame);
        if (result.outcome === 'done' && result.done) {
          setMessages((m) => [...m, result.done!.user_message, replyWithSources(result.done!)]);
          setPending(null);
          setAnnounce('The reply is complete.');
        } else if (result.outcome === 'aborted' && !result.started) {
          setPending(null);
          return false;
        } else {
          if (result.outcome === 'error' && result.error) setError(result.error.error.message || 'The reply failed.');
          else if (result.outcome === 'closed') setError('The server closed the stream before the reply finished.');
          setPending({ user: text, reply, phase: 'saving' });
          setAnnounce(result.outcome === 'aborted' ? 'Stopped. The partial reply is kept, marked cut off.' : 'The reply ended early.');
          // The server stores the partial reply when it notices the stream ended;
          // poll briefly until it is there.
          for (let i = 0; i < 20; i++) {
            const res = await load().catch(() => null);
            if (res && res.messages.length >= before + 2) break;
            await new Promise((r) => setTimeout(r, 250));
          }
          setPending(null);
        }
        // The title (first message) and updated time changed: refresh the list.
        get<{ conversation: Conversation }>(`/api/v1/conversations/${encodeURIComponent(id)}`)
          .then((r) => {
            setConv(r.conversation);
            onChanged(r.conversation);
          })
          .catch(() => {});
        return true;
      } catch (e) {
        if (frame) cancelAnimationFrame(frame);
        setPending(null);
        setError(e);
        return false;
      } finally {
        abortRef.current = null;
      }
    },
    [id, load, onChanged],
  );

  useEffect(() => {
    if (autoSend && conv) {
      onAutoSent();
      send(autoSend).then((ok) => {
        if (!ok) setPrefill({ text: autoSend, n: Date.now() });
      });
    }
  }, [autoSend, conv !== null]);

  const stop = () => abortRef.current?.abort();

  /** Removes `from` and every later message, then sends `text` again. */
  const resend = useCallback(
    async (from: Message, text: string) => {
      if (abortRef.current) return;
      setError(null);
      try {
        await del(`/api/v1/conversations/${encodeURIComponent(id)}/messages/${from.id}`);
      } catch (e) {
        setError(e);
        return;
      }
      const kept = messagesRef.current.filter((m) => m.id < from.id);
      messagesRef.current = kept;
      setMessages(kept);
      if (!(await send(text))) setPrefill({ text, n: Date.now() });
    },
    [id, send],
  );

  // Stable handlers for memoised message rows.
  const actions = useRef({ regenerate: () => {}, edit: (_m: Message, _t: string) => {} });
  actions.current.regenerate = () => {
    const ms = messagesRef.current;
    const lastUser = [...ms].reverse().find((m) => m.role === 'user');
    if (lastUser) resend(lastUser, lastUser.content);
  };
  actions.current.edit = (m: Message, text: string) => resend(m, text);
  const regenerate = useCallback(() => actions.current.regenerate(), []);
  const editHandlers = useRef(new Map<number, (t: string) => void>());
  const editFor = (m: Message) => {
    let h = editHandlers.current.get(m.id);
    if (!h) {
      h = (t: string) => actions.current.edit(m, t);
      editHandlers.current.set(m.id, h);
    }
    return h;
  };

  const saveSettings = async (c: ConversationConfig) => {
    const updated = await patch<Conversation>(`/api/v1/conversations/${encodeURIComponent(id)}`, {
      model: c.model || undefined,
      system_prompt: c.system_prompt,
      settings: c.settings,
    });
    setConv(updated);
    onChanged(updated);
    setShowSettings(false);
  };

  const saveCollections = async (ids: number[]) => {
    const updated = await patch<Conversation>(`/api/v1/conversations/${encodeURIComponent(id)}`, { collections: ids });
    setConv(updated);
    onChanged(updated);
  };

  const remove = async () => {
    if (!conv || !confirm(`Delete “${conv.title}” and all its messages? This cannot be undone.`)) return;
    try {
      await del(`/api/v1/conversations/${encodeURIComponent(id)}`);
      onDeleted(id);
    } catch (e) {
      setError(e);
    }
  };

  const exportMenu = useRef<HTMLDetailsElement>(null);
  const exportAs = async (format: 'markdown' | 'json') => {
    if (exportMenu.current) exportMenu.current.open = false;
    try {
      await download(
        withQuery(`/api/v1/conversations/${encodeURIComponent(id)}/export`, { format }),
        `${id}.${format === 'markdown' ? 'md' : 'json'}`,
      );
    } catch (e) {
      setError(e);
    }
  };

  // Copy buttons inside rendered code blocks (their HTML is sanitised markup, so one
  // delegated listener handles them all).
  const onLogClick = async (e: MouseEvent) => {
    const button = (e.target as HTMLElement).closest?.('button.copy-code');
    if (!button) return;
    const code = button.closest('.code-block')?.querySelector('code');
    if (!code) return;
    const ok = await copyText(code.textContent ?? '');
    const label = ok ? 'Copied' : 'Copy failed';
    button.textContent = label;
    button.setAttribute('aria-label', label);
    setTimeout(() => {
      button.textContent = 'Copy';
      button.setAttribute('aria-label', 'Copy code');
    }, 1500);
  };

  if (loadError) {
    const notFound = loadError instanceof ApiError && loadError.status === 404;
    return (
      <div class="conv">
        <div class="page">
          <PageTitle>{notFound ? 'Conversation not found' : 'Could not open the conversation'}</PageTitle>
          <p>{notFound ? 'It does not exist, was deleted, or belongs to someone else.' : errorMessage(loadError)}</p>
          <p>
            <a href="#/chat">Start a new conversation</a>
          </p>
        </div>
      </div>
    );
  }
  if (!conv) {
    return (
      <div class="conv">
        <p class="muted pad" role="status">
          Loading…
        </p>
      </div>
    );
  }

  const streaming = pending !== null;
  const lastAssistant = [...messages].reverse().find((m) => m.role === 'assistant');

  return (
    <div class="conv">
      <div class="conv-head">
        {renaming ? (
          <RenameForm
            title={conv.title}
            onCancel={() => setRenaming(false)}
            onSave={async (title) => {
              const updated = await patch<Conversation>(`/api/v1/conversations/${encodeURIComponent(id)}`, { title });
              setConv(updated);
              onChanged(updated);
              setRenaming(false);
            }}
          />
        ) : (
          <PageTitle focus={!autoSend}>{conv.title}</PageTitle>
        )}
        <div class="conv-sub">
          <span class="conv-model">
            {conv.model} · {settingsSummary(conv.settings)}
            {conv.system_prompt && ' · system prompt set'}
          </span>
          <div class="row wrap conv-actions">
            <CollectionPicker
              idPrefix={`c-${id}`}
              collections={collections.list}
              loadError={collections.error}
              selected={conv.collections ?? []}
              onChange={saveCollections}
            />
            <button type="button" class="btn btn-small" aria-expanded={showSettings} onClick={() => setShowSettings(!showSettings)}>
              Settings
            </button>
            <button type="button" class="btn btn-small" onClick={() => setRenaming(true)} disabled={renaming}>
              Rename
            </button>
            <details
              class="menu"
              ref={exportMenu}
              onKeyDown={(e) => {
                if (e.key === 'Escape' && exportMenu.current?.open) {
                  exportMenu.current.open = false;
                  exportMenu.current.querySelector('summary')?.focus();
                }
              }}
            >
              <summary class="btn btn-small">Export</summary>
              <div class="menu-items">
                <button type="button" class="btn btn-small" onClick={() => exportAs('markdown')}>
                  Markdown (.md)
                </button>
                <button type="button" class="btn btn-small" onClick={() => exportAs('json')}>
                  JSON
                </button>
              </div>
            </details>
            <button type="button" class="btn btn-small btn-danger" onClick={remove} disabled={streaming}>
              Delete
            </button>
          </div>
        </div>
      </div>
      {showSettings && (
        <SettingsPanel
          idPrefix={`s-${id}`}
          models={models}
          initial={conv}
          saveLabel="Save settings"
          onSave={saveSettings}
          onCancel={() => setShowSettings(false)}
        />
      )}
      <div
        class="messages"
        ref={scroller}
        onScroll={onScroll}
        onClick={onLogClick}
        role="log"
        aria-label="Messages"
        aria-live="polite"
        aria-busy={streaming}
        tabIndex={0}
      >
        {messages.length === 0 && !pending && <p class="muted">No messages yet.</p>}
        {messages.map((m) => (
          <MessageView
            key={m.id}
            m={m}
            focused={m.id === focusMessage}
            canRegenerate={!streaming && m === lastAssistant}
            canEdit={!streaming && m.role === 'user'}
            onRegenerate={regenerate}
            onEdit={editFor(m)}
          />
        ))}
        {pending && (
          <>
            <article class="msg msg-user" aria-label="You">
              <header class="msg-head">
                <span class="msg-who">You</span>
              </header>
              <div class="msg-text">{pending.user}</div>
            </article>
            <article class="msg msg-assistant msg-streaming" aria-label="Assistant (writing)" data-streaming="true">
              <header class="msg-head">
                <span class="msg-who">Assistant</span>
                <span class="badge badge-muted">{pending.phase === 'writing' ? 'writing…' : 'saving…'}</span>
              </header>
              {pending.reply ? <Markdown text={pending.reply} /> : <p class="muted typing">Thinking…</p>}
            </article>
          </>
        )}
      </div>
      <p class="sr-only" role="status">
        {announce}
      </p>
      <ErrorBox error={error} onDismiss={() => setError(null)} />
      <Composer streaming={streaming} disabled={false} onSend={send} onStop={stop} prefill={prefill} />
    </div>
  );
}

function RenameForm({ title, onSave, onCancel }: { title: string; onSave: (t: string) => Promise<void>; onCancel: () => void }) {
  const [value, setValue] = useState(title);
  const [error, setError] = useState<unknown>(null);
  return (
    <form
      class="rename row wrap"
      onSubmit={async (e) => {
        e.preventDefault();
        if (!value.trim()) return;
        try {
          await onSave(value.trim());
        } catch (err) {
          setError(err);
        }
      }}
    >
      <label class="sr-only" for="rename-input">
        Conversation title
      </label>
      <input
        id="rename-input"
        class="grow"
        value={value}
        maxLength={500}
        required
        ref={(el) => el?.focus()}
        onInput={(e) => setValue(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === 'Escape') onCancel();
        }}
      />
      <button type="submit" class="btn btn-primary btn-small">
        Save title
      </button>
      <button type="button" class="btn btn-small" onClick={onCancel}>
        Cancel
      </button>
      <ErrorBox error={error} />
    </form>
  );
}

function Composer({
  streaming,
  disabled,
  onSend,
  onStop,
  prefill,
}: {
  streaming: boolean;
  disabled: boolean;
  onSend: (text: string) => Promise<boolean>;
  onStop: () => void;
  prefill?: { text: string; n: number } | null;
}) {
  const [text, setText] = useState('');
  const area = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    if (prefill) setText(prefill.text);
  }, [prefill]);
  useEffect(() => {
    if (!streaming) area.current?.focus({ preventScroll: true });
  }, [streaming]);

  const submit = (e?: Event) => {
    e?.preventDefault();
    const t = text;
    if (!t.trim() || streaming || disabled) return;
    setText('');
    // Failed before the reply started (busy, quota…): give the text back.
    onSend(t).then((ok) => {
      if (!ok) setText((now) => (now ? now : t));
    });
  };

  return (
    <form class="composer" onSubmit={submit}>
      <label for="composer-input" class="sr-only">
        Message
      </label>
      <textarea
        id="composer-input"
        ref={area}
        rows={Math.min(8, Math.max(2, text.split('\n').length))}
        placeholder="Message (Enter sends, Shift+Enter for a new line)"
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            submit();
          } else if (e.key === 'Escape' && streaming) {
            onStop();
          }
        }}
      />
      {streaming ? (
        <button type="button" class="btn btn-danger" onClick={onStop}>
          Stop
        </button>
      ) : (
        <button type="submit" class="btn btn-primary" disabled={disabled || !text.trim()}>
          Send
        </button>
      )}
    </form>
  );
}
