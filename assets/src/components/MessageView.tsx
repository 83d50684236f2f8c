// One chat message: user text as typed, assistant replies as sanitised markdown with
// highlighted code and linked citations, labelled when cut off or failed.

import { Component } from 'preact';
import { useMemo, useState } from 'preact/hooks';
import { orderedSources, sourceHref } from '../citations';
import { renderMarkdown } from '../markdown';
import type { Message, Source } from '../types';

export function Markdown({ text, sources, class: cls = '' }: { text: string; sources?: Source[]; class?: string }) {
  const html = useMemo(() => renderMarkdown(text, sources), [text, sources]);
  return <div class={`markdown ${cls}`} dangerouslySetInnerHTML={{ __html: html }} />;
}

/** "Sources" under a reply: "1. name — p. 3 — heading", each linking to its passage. */
export function SourceList({ id, sources }: { id: string; sources: Source[] }) {
  const list = orderedSources(sources);
  if (list.length === 0) return null;
  return (
    <div class="msg-sources" data-testid="message-sources">
      <p class="msg-sources-title" id={id}>
        Sources
      </p>
      <ol aria-labelledby={id}>
        {list.map((s) => (
          <li key={s.n} value={s.n}>
            <a href={sourceHref(s)}>{s.document_name}</a>
            {s.page != null && <span> — p. {s.page}</span>}
            {s.heading && <span class="muted"> — {s.heading}</span>}
          </li>
        ))}
      </ol>
    </div>
  );
}

export function StatusLabels({ m }: { m: Pick<Message, 'status' | 'finish_reason'> }) {
  return (
    <>
      {m.status === 'cut_off' && (
        <span class="badge badge-warn" title="The reply was stopped before it finished">
          Cut off
        </span>
      )}
      {m.status === 'error' && (
        <span class="badge badge-error" title="The reply ended because of an error">
          Error
        </span>
      )}
      {m.status === 'complete' && m.finish_reason === 'length' && (
        <span class="badge badge-muted" title="The reply reached its token limit">
          Length limit
        </span>
      )}
    </>
  );
}

interface Props {
  m: Message;
  focused: boolean;
  canRegenerate: boolean;
  canEdit: boolean;
  onRegenerate: () => void;
  onEdit: (text: string) => void;
}

export class MessageView extends Component<Props> {
  shouldComponentUpdate(next: Props) {
    const p = this.props;
    return next.m !== p.m || next.focused !== p.focused || next.canRegenerate !== p.canRegenerate || next.canEdit !== p.canEdit;
  }

  render(props: Props) {
    return <MessageBody {...props} />;
  }
}

function MessageBody({ m, focused, canRegenerate, canEdit, onRegenerate, onEdit }: Props) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(m.content);
  const who = m.role === 'user' ? 'You' : m.role === 'assistant' ? 'Assistant' : 'System';
  const tokens = m.completion_tokens != null ? `${m.completion_tokens} tokens` : null;

  return (
    <article
      class={`msg msg-${m.role} ${m.status !== 'complete' ? `msg-${m.status}` : ''} ${focused ? 'msg-focused' : ''}`}
      data-message-id={m.id}
      data-status={m.status}
      aria-label={`${who}${m.status === 'cut_off' ? ' (cut off)' : m.status === 'error' ? ' (error)' : ''}`}
    >
      <header class="msg-head">
        <span class="msg-who">{who}</span>
        <StatusLabels m={m} />
        {m.role === 'assistant' && (m.model || tokens) && (
          <span class="msg-meta">{[m.model, tokens].filter(Boolean).join(' · ')}</span>
        )}
      </header>
      {editing ? (
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            if (draft.trim()) {
              setEditing(false);
              onEdit(draft);
            }
          }}
        >
          <label class="field">
            <span class="sr-only">Edit your message</span>
            <textarea
              rows={Math.min(12, Math.max(3, draft.split('\n').length + 1))}
              value={draft}
              onInput={(e) => setDraft(e.currentTarget.value)}
              onKeyDown={(e) => {
                if (e.key === 'Escape') setEditing(false);
              }}
              ref={(el) => el?.focus()}
            />
          </label>
          <p class="muted small">Sending removes this message and everything after it, then asks again.</p>
          <div class="row">
            <button type="submit" class="btn btn-primary btn-small">
              Send edited message
            </button>
            <button type="button" class="btn btn-small" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        </form>
      ) : m.role === 'assistant' ? (
        <>
          <Markdown text={m.content || (m.status === 'complete' ? '' : '(no text)')} sources={m.sources} />
          {m.sources && <SourceList id={`sources-${m.id}`} sources={m.sources} />}
        </>
      ) : (
        <div class="msg-text">{m.content}</div>
      )}
      {!editing && (canRegenerate || canEdit) && (
        <div class="msg-actions">
          {canEdit && (
            <button
              type="button"
              class="btn btn-small btn-quiet"
              onClick={() => {
                setDraft(m.content);
                setEditing(true);
              }}
            >
              Edit
            </button>
          )}
          {canRegenerate && (
            <button type="button" class="btn btn-small btn-quiet" onClick={onRegenerate}>
              Regenerate
            </button>
          )}
        </div>
      )}
    </article>
  );
}
