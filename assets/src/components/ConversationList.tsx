// The chat sidebar: conversations newest first, loaded a page at a time as the list
// scrolls (only what is loaded is rendered), and full-text search.

import { Component } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { get, withQuery } from '../api';
import { snippetParts } from '../markdown';
import { canLoadMore, type Paged } from '../pagination';
import { chatHref } from '../router';
import { formatAgo } from '../format';
import type { Conversation, SearchHit } from '../types';
import { ErrorBox } from './common';

export function ConversationList({
  list,
  currentId,
  onLoadMore,
  onPick,
}: {
  list: Paged<Conversation>;
  currentId: string | null;
  onLoadMore: () => void;
  onPick: () => void;
}) {
  const [query, setQuery] = useState('');
  const [hits, setHits] = useState<SearchHit[] | null>(null);
  const [searchError, setSearchError] = useState<unknown>(null);
  const [searching, setSearching] = useState(false);
  const scroller = useRef<HTMLDivElement>(null);
  const sentinel = useRef<HTMLButtonElement>(null);
  const more = useRef(onLoadMore);
  more.current = onLoadMore;

  // Debounced search; a newer query cancels the older request.
  useEffect(() => {
    const q = query.trim();
    if (!q) {
      setHits(null);
      setSearchError(null);
      return;
    }
    const ctrl = new AbortController();
    const t = setTimeout(async () => {
      setSearching(true);
      try {
        const res = await get<{ data: SearchHit[] }>(withQuery('/api/v1/conversations/search', { q, limit: 50 }), {
          signal: ctrl.signal,
        });
        setHits(res.data);
        setSearchError(null);
      } catch (e) {
        if (!(e instanceof DOMException && e.name === 'AbortError')) setSearchError(e);
      } finally {
        if (!ctrl.signal.aborted) setSearching(false);
      }
    }, 250);
    return () => {
      clearTimeout(t);
      ctrl.abort();
    };
  }, [query]);

  // Load the next page when the end of the list scrolls into view.
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !scroller.current || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) more.current();
      },
      { root: scroller.current, rootMargin: '200px' },
    );
    io.observe(el);
    return () => io.disconnect();
  }, [hits === null, list.done, list.items.length]);

  const searchActive = hits !== null || searching;

  return (
    <div class="convlist">
      <div class="convlist-search" role="search">
        <label for="conv-search" class="sr-only">
          Search conversations
        </label>
        <input
          id="conv-search"
          type="search"
          placeholder="Search conversations"
          value={query}
          onInput={(e) => setQuery(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Escape') setQuery('');
          }}
        />
      </div>
      <div class="convlist-scroll" ref={scroller}>
        {searchActive ? (
          <section aria-label="Search results">
            <ErrorBox error={searchError} />
            <p class="sr-only" role="status">
              {searching ? 'Searching…' : hits ? `${hits.length} result${hits.length === 1 ? '' : 's'}` : ''}
            </p>
            {hits && hits.length === 0 && <p class="muted pad">Nothing found.</p>}
            {hits && (
              <ul class="convlist-items">
                {hits.map((h) => (
                  <li key={`${h.conversation.id}-${h.message_id ?? 't'}`}>
                    <a
                      href={chatHref(h.conversation.id, h.message_id)}
                      class="conv-link"
                      aria-current={h.conversation.id === currentId ? 'page' : undefined}
                      onClick={onPick}
                    >
                      <span class="conv-title">{h.conversation.title}</span>
                      <span class="conv-snippet">
                        {snippetParts(h.snippet).map((p, i) => (p.hit ? <mark key={i}>{p.text}</mark> : p.text))}
                      </span>
                    </a>
                  </li>
                ))}
              </ul>
            )}
          </section>
        ) : (
          <nav aria-label="Conversations">
            <ErrorBox error={list.error} />
            {list.started && list.items.length === 0 && <p class="muted pad">No conversations yet.</p>}
            <ul class="convlist-items">
              {list.items.map((c) => (
                <ConversationItem key={c.id} c={c} current={c.id === currentId} onPick={onPick} />
              ))}
            </ul>
            {!list.done && (
              <button
                type="button"
                ref={sentinel}
                class="btn btn-link load-more"
                disabled={!canLoadMore(list)}
                onClick={() => onLoadMore()}
              >
                {list.loading ? 'Loading…' : 'Load more'}
              </button>
            )}
          </nav>
        )}
      </div>
    </div>
  );
}

interface ItemProps {
  c: Conversation;
  current: boolean;
  onPick: () => void;
}

/** One row; re-renders only when its conversation or selection changes, so appending a page to thousands of rows stays cheap. */
class ConversationItem extends Component<ItemProps> {
  shouldComponentUpdate(next: ItemProps) {
    return next.c !== this.props.c || next.current !== this.props.current;
  }

  render({ c, current, onPick }: ItemProps) {
    return (
      <li>
        <a href={chatHref(c.id)} class="conv-link" aria-current={current ? 'page' : undefined} onClick={onPick}>
          <span class="conv-title">{c.title}</span>
          <span class="conv-meta">{formatAgo(c.updated_at)}</span>
        </a>
      </li>
    );
  }
}
