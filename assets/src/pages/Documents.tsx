// Documents: the user's collections (and others' shared ones, read-only), the chosen
// collection's documents, and one document's passages. One component serves both
// routes so uploads keep going while the user opens a document and comes back.

import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { errorMessage, get, post, upload } from '../api';
import { documentsHref, navigate } from '../router';
import { plural } from '../format';
import type { AddedDocuments, Collection } from '../types';
import { UploadQueue, type Upload } from '../uploads';
import { ErrorBox, PageTitle, Spinner } from '../components/common';
import { CollectionPanel, type AddedSink } from '../components/CollectionPanel';
import { DocumentView } from './DocumentView';

type Props = { route: { page: 'documents'; collection: number | null } | { page: 'document'; id: number; chunk: number | null } };

function sendFile(file: File, collection: number, onProgress: (f: number) => void, signal: AbortSignal) {
  const form = new FormData();
  form.append('file', file, file.name);
  const progress = (loaded: number, total: number) => onProgress(total ? loaded / total : 0);
  return upload<AddedDocuments>(`/api/v1/collections/${collection}/documents`, form, progress, signal);
}

export function Documents({ route }: Props) {
  const [collections, setCollections] = useState<Collection[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [uploads, setUploads] = useState<Upload[]>([]);
  // The open collection's handler for finished uploads (set by its panel).
  const sink = useRef<AddedSink | null>(null);
  const lastSelected = useRef<number | null>(null);

  const load = useCallback(async () => {
    try {
      setCollections((await get<{ collections: Collection[] }>('/api/v1/collections')).collections);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, []);

  const queue = useMemo(
    () =>
      new UploadQueue<File, AddedDocuments>(sendFile, {
        changed: setUploads,
        done: (u, result) => {
          sink.current?.(u, result);
          queue.dismiss(u.key);
          load();
        },
      }),
    [],
  );
  useEffect(() => {
    load();
    return () => queue.cancelAll();
  }, []);

  if (route.page === 'document') return <DocumentView key={route.id} id={route.id} chunk={route.chunk} />;

  const selectedId = route.collection ?? collections?.[0]?.id ?? null;
  const selected = collections?.find((c) => c.id === selectedId) ?? null;
  // Picking another collection moves focus to its heading; the first one shown does not.
  const focusPanel = lastSelected.current !== null && lastSelected.current !== selectedId;
  if (selectedId !== null) lastSelected.current = selectedId;

  return (
    <div class="page wide">
      <PageTitle>Documents</PageTitle>
      <p class="muted">Collections of files and web pages that chat replies can quote and cite. Keep this page open until uploads finish.</p>
      <div class="docs-layout">
        <aside class="docs-side" aria-labelledby="coll-title">
          <h2 id="coll-title">Collections</h2>
          {collections === null && !error && <Spinner />}
          {error != null && (
            <div>
              <ErrorBox error={error} />
              <button type="button" class="btn btn-small" onClick={load}>
                Try again
              </button>
            </div>
          )}
          {collections?.length === 0 && <p class="muted">No collections yet. Create the first one below.</p>}
          {collections && collections.length > 0 && (
            <nav aria-label="Collections">
              <ul class="coll-list">
                {collections.map((c) => (
                  <li key={c.id}>
                    <a
                      href={documentsHref(c.id)}
                      class="coll-link"
                      aria-current={c.id === selectedId ? 'page' : undefined}
                      data-testid="collection-link"
                    >
                      <span class="coll-name">{c.name}</span>
                      <span class="coll-meta">
                        {plural(c.documents, 'document')}
                        {!c.writable && ` · shared by ${c.owner}`}
                        {c.writable && c.shared && ' · shared'}
                      </span>
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
          )}
          <CreateCollection
            onCreated={async (c) => {
              await load();
              navigate(documentsHref(c.id));
            }}
          />
        </aside>
        <div class="docs-main">
          {selected ? (
            <CollectionPanel
              key={selected.id}
              collection={selected}
              focus={focusPanel}
              uploads={uploads.filter((u) => u.collection === selected.id)}
              sink={sink}
              onFiles={(files) => queue.add(selected.id, files)}
              onCancelUpload={(key) => queue.cancel(key)}
              onDismissUpload={(key) => queue.dismiss(key)}
              onChanged={(c) => setCollections((cs) => cs && cs.map((x) => (x.id === c.id ? c : x)))}
              onCountsChanged={load}
              onDeleted={async () => {
                await load();
                navigate(documentsHref(null), true);
              }}
            />
          ) : (
            collections &&
            route.collection !== null && (
              <div class="card">
                <h2>Collection not found</h2>
                <p>It does not exist, was deleted, or is not shared with you.</p>
              </div>
            )
          )}
        </div>
      </div>
    </div>
  );
}

function CreateCollection({ onCreated }: { onCreated: (c: Collection) => Promise<void> }) {
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!name.trim()) return;
    setBusy(true);
    setError(null);
    try {
      const body: { name: string; description?: string } = { name: name.trim() };
      if (description.trim()) body.description = description.trim();
      const c = await post<Collection>('/api/v1/collections', body);
      setName('');
      setDescription('');
      await onCreated(c);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="stack coll-create" onSubmit={submit} aria-labelledby="coll-new">
      <h3 id="coll-new">New collection</h3>
      <label class="field">
        <span>Name</span>
        <input required maxLength={200} value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label class="field">
        <span>Description (optional)</span>
        <input maxLength={1000} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
      </label>
      <ErrorBox error={error} />
      <div>
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create collection'}
        </button>
      </div>
    </form>
  );
}
