// Search within a collection: ranked passages, each linking to its place in the
// document.

import { useRef, useState } from 'preact/hooks';
import { errorMessage, post } from '../api';
import { clipText } from '../format';
import { documentHref } from '../router';
import type { PassageHit } from '../types';
import { ErrorBox } from './common';

export function PassageSearch({ collectionId, collectionName }: { collectionId: number; collectionName: string }) {
  const [query, setQuery] = useState('');
  const [results, setResults] = useState<PassageHit[] | null>(null);
  const [searched, setSearched] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const current = useRef<AbortController | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    const q = query.trim();
    if (!q) return;
    current.current?.abort();
    const ctrl = new AbortController();
    current.current = ctrl;
    setBusy(true);
    setError(null);
    try {
      const res = await post<{ results: PassageHit[] }>(
        '/api/v1/search',
        { query: q, collections: [collectionId], limit: 10 },
        { signal: ctrl.signal },
      );
      setResults(res.results);
      setSearched(q);
    } catch (err) {
      if (!ctrl.signal.aborted) setError(errorMessage(err));
    } finally {
      if (current.current === ctrl) setBusy(false);
    }
  };

  return (
    <section aria-labelledby="passage-search">
      <h3 id="passage-search">Search</h3>
      <form class="row wrap align-end" role="search" onSubmit={submit}>
        <label class="field grow">
          <span>Search the passages of {collectionName}</span>
          <input type="search" value={query} data-testid="passage-search-input" onInput={(e) => setQuery(e.currentTarget.value)} />
        </label>
        <button type="submit" class="btn" disabled={busy || !query.trim()}>
          {busy ? 'Searching…' : 'Search'}
        </button>
      </form>
      <p class="sr-only" role="status">
        {busy ? 'Searching…' : results ? `${results.length} passage${results.length === 1 ? '' : 's'} found` : ''}
      </p>
      <ErrorBox error={error} />
      {results && results.length === 0 && <p class="muted">Nothing found for “{searched}”.</p>}
      {results && results.length > 0 && (
        <ol class="passages" data-testid="search-results" aria-label={`Passages matching “${searched}”`}>
          {results.map((r) => (
            <li key={r.chunk_id} class="passage" data-testid="search-result" data-chunk-id={r.chunk_id} data-document-id={r.document_id}>
              <div class="passage-head">
                <a href={documentHref(r.document_id, r.chunk_id)}>{r.document_name}</a>
                {r.page != null && <span> — p. {r.page}</span>}
                {r.heading && <span class="muted"> — {r.heading}</span>}
                {Number.isFinite(r.score) && (
                  <span class="passage-score muted small" title="Relevance score">
                    <span class="sr-only">score </span>
                    {r.score.toFixed(2)}
                  </span>
                )}
              </div>
              <p class="passage-text">{clipText(r.text, 600)}</p>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
