// One document: its facts and its passages (chunks), a page at a time. A citation
// link names a chunk: pages load until it is there, then it is scrolled to,
// highlighted and focused.

import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { ApiError, errorMessage, get, withQuery } from '../api';
import { formatBytes, formatNumber, formatTime, mediaLabel } from '../format';
import { stateBadge } from '../jobs';
import { documentsHref } from '../router';
import type { Chunk, DocumentInfo } from '../types';
import { ErrorBox, Notice, PageTitle, Spinner } from '../components/common';

const PAGE_SIZE = 50;

export function DocumentView({ id, chunk }: { id: number; chunk: number | null }) {
  const [doc, setDoc] = useState<DocumentInfo | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [chunks, setChunks] = useState<Chunk[]>([]);
  const [total, setTotal] = useState<number | null>(null);
  const [loading, setLoading] = useState(false);
  const [chunkError, setChunkError] = useState<unknown>(null);
  const chunksRef = useRef(chunks);
  chunksRef.current = chunks;
  const busy = useRef(false);
  const list = useRef<HTMLOListElement>(null);
  const focusedChunk = useRef<number | null>(null);

  const loadMore = async () => {
    if (busy.current) return;
    busy.current = true;
    setLoading(true);
    setChunkError(null);
    try {
      const have = chunksRef.current.length;
      const res = await get<{ chunks: Chunk[]; total: number }>(
        withQuery(`/api/v1/documents/${id}/chunks`, { offset: have, limit: PAGE_SIZE }),
      );
      const next = [...chunksRef.current, ...res.chunks];
      chunksRef.current = next;
      setChunks(next);
      // A short page ends the list whatever `total` says, so a miscount cannot loop.
      setTotal(res.chunks.length === 0 ? next.length : res.total);
    } catch (e) {
      setChunkError(e);
    } finally {
      busy.current = false;
      setLoading(false);
    }
  };

  useEffect(() => {
    get<DocumentInfo>(`/api/v1/documents/${id}`)
      .then(setDoc)
      .catch(setLoadError);
    loadMore();
  }, []);

  const found = chunk != null && chunks.some((c) => c.id === chunk);
  const more = total === null || chunks.length < total;
  // Keep loading until the cited passage is there (or there is nothing more).
  useEffect(() => {
    if (chunk != null && !found && more && total !== null && !loading && chunkError == null) loadMore();
  }, [chunk, found, chunks.length, total, loading]);

  useLayoutEffect(() => {
    if (!found || !doc || focusedChunk.current === chunk) return;
    const el = list.current?.querySelector<HTMLElement>(`[data-chunk-id="${chunk}"]`);
    if (!el) return;
    focusedChunk.current = chunk;
    el.scrollIntoView({ block: 'center' });
    el.focus({ preventScroll: true });
  }, [found, chunk, doc]);

  if (loadError) {
    const notFound = loadError instanceof ApiError && loadError.status === 404;
    return (
      <div class="page">
        <PageTitle>{notFound ? 'Document not found' : 'Could not open the document'}</PageTitle>
        <p>{notFound ? 'It does not exist, was deleted, or is not shared with you.' : errorMessage(loadError)}</p>
        <p>
          <a href={documentsHref(null)}>Go to Documents</a>
        </p>
      </div>
    );
  }
  if (!doc) {
    return (
      <div class="page">
        <Spinner label="Loading the document…" />
      </div>
    );
  }

  const badge = stateBadge(doc.state);
  const isPdf = doc.media_type === 'pdf';
  const fileHref = `/api/v1/documents/${doc.id}/file`;

  return (
    <div class="page">
      <p class="small">
        <a href={documentsHref(doc.collection_id)}>← Back to the collection</a>
      </p>
      <PageTitle focus={chunk == null}>{doc.name}</PageTitle>
      <dl class="facts doc-facts">
        <dt>State</dt>
        <dd>
          <span class={`badge ${badge.cls}`}>{badge.label}</span>
        </dd>
        <dt>Type</dt>
        <dd>
          {mediaLabel(doc.media_type)}, {formatBytes(doc.size)}
          {doc.pages != null && `, ${doc.pages} page${doc.pages === 1 ? '' : 's'}`}
        </dd>
        <dt>Passages</dt>
        <dd>{formatNumber(total ?? doc.chunks)}</dd>
        <dt>Added</dt>
        <dd>{formatTime(doc.created_at)}</dd>
        {doc.indexed_at && (
          <>
            <dt>Indexed</dt>
            <dd>{formatTime(doc.indexed_at)}</dd>
          </>
        )}
        {doc.source_url && /^https?:\/\//i.test(doc.source_url) && (
          <>
            <dt>Source</dt>
            <dd>
              <a href={doc.source_url} target="_blank" rel="noopener noreferrer nofollow" class="doc-source">
                {doc.source_url}
              </a>
            </dd>
          </>
        )}
      </dl>
      <p>
        <a class="btn btn-small" href={fileHref} target="_blank" rel="noopener">
          Open the original file<span class="sr-only"> (new tab)</span>
        </a>
      </p>
      {doc.state === 'failed' && <ErrorBox error={`Indexing failed: ${doc.error ?? 'no reason given'}`} />}
      {(doc.state === 'queued' || doc.state === 'indexing') && (
        <Notice>This document is still being indexed; its passages appear when that is done.</Notice>
      )}
      {chunk != null && !found && total !== null && !more && (
        <Notice>The cited passage is no longer in this document; it may have been indexed again since.</Notice>
      )}

      <section aria-labelledby="chunks-title">
        <h2 id="chunks-title">Passages</h2>
        {chunks.length === 0 && total === 0 && <p class="muted">No passages.</p>}
        <ol class="chunks" ref={list}>
          {chunks.map((c) => {
            const target = c.id === chunk;
            return (
              <li
                key={c.id}
                class={`chunk ${target ? 'chunk-focused' : ''}`}
                data-testid="chunk"
                data-chunk-id={c.id}
                aria-current={target ? 'true' : undefined}
                tabIndex={target ? -1 : undefined}
              >
                <div class="chunk-head">
                  {target && <span class="badge">cited</span>}
                  {c.page != null && <span>Page {c.page}</span>}
                  {c.heading && <span class="chunk-heading">{c.heading}</span>}
                  {isPdf && c.page != null && (
                    <a class="chunk-open" href={`${fileHref}#page=${c.page}`} target="_blank" rel="noopener">
                      Open page {c.page}
                      <span class="sr-only"> of {doc.name} (new tab)</span>
                    </a>
                  )}
                </div>
                <p class="chunk-text">{c.text}</p>
              </li>
            );
          })}
        </ol>
        <ErrorBox error={chunkError} />
        {loading && <Spinner label={chunk != null && !found ? 'Finding the cited passage…' : 'Loading passages…'} />}
        {!loading && more && total !== null && (
          <button type="button" class="btn" onClick={loadMore}>
            Load more passages ({formatNumber(chunks.length)} of {formatNumber(total)})
          </button>
        )}
      </section>
    </div>
  );
}
