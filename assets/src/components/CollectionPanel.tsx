// One collection on the Documents page: its settings, uploads, documents with their
// indexing progress, and passage search.

import type { MutableRef } from 'preact/hooks';
import { useEffect, useReducer, useRef, useState } from 'preact/hooks';
import { ApiError, del, errorMessage, get, patch, post } from '../api';
import { docsReducer, emptyDocs } from '../jobs';
import { settleDocument, useJobWatches } from '../jobwatch';
import { useSession } from '../session';
import type { AddedDocuments, Collection, DocumentInfo } from '../types';
import type { Upload } from '../uploads';
import { ErrorBox, Notice } from './common';
import { DocumentTable } from './DocumentTable';
import { PassageSearch } from './PassageSearch';
import { AddUrlForm, UploadZone } from './UploadZone';

const wait = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Receives a finished upload's answer. */
export type AddedSink = (u: Upload, result: AddedDocuments) => void;

interface Props {
  collection: Collection;
  /** Take focus on mount (another collection was picked). */
  focus: boolean;
  uploads: Upload[];
  sink: MutableRef<AddedSink | null>;
  onFiles: (files: File[]) => void;
  onCancelUpload: (key: number) => void;
  onDismissUpload: (key: number) => void;
  onChanged: (c: Collection) => void;
  onCountsChanged: () => void;
  onDeleted: () => void;
}

export function CollectionPanel(p: Props) {
  const c = p.collection;
  const [state, dispatch] = useReducer(docsReducer, emptyDocs);
  const [error, setError] = useState<unknown>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const [announce, setAnnounce] = useState('');
  const [editing, setEditing] = useState(false);
  const heading = useRef<HTMLHeadingElement>(null);
  const base = `/api/v1/collections/${c.id}`;

  const load = async () => {
    try {
      dispatch({ type: 'loaded', docs: (await get<{ documents: DocumentInfo[] }>(`${base}/documents`)).documents });
      setLoadError(null);
    } catch (e) {
      setLoadError(e);
    }
  };

  useEffect(() => {
    load();
    if (p.focus) heading.current?.focus();
  }, []);

  const added = (result: AddedDocuments, what: string) => {
    dispatch({ type: 'added', docs: result.documents });
    const dupes = result.duplicates?.length ?? 0;
    setNotice(dupes ? `${what}: the collection already has ${dupes === 1 ? 'this content' : `${dupes} of these`}, so it was not added again.` : '');
    if (result.documents.length) setAnnounce(`${what} added; indexing.`);
  };

  useEffect(() => {
    p.sink.current = (u, result) => {
      if (u.collection === c.id) added(result, u.name);
    };
    return () => {
      p.sink.current = null;
    };
  }, [c.id]);

  // Documents indexed outside a job the page can follow: look again every few seconds.
  const orphans = state.docs?.some((d) => (d.state === 'queued' || d.state === 'indexing') && d.job_id == null) ?? false;
  useEffect(() => {
    if (!orphans) return;
    const t = setInterval(load, 3000);
    return () => clearInterval(t);
  }, [orphans]);

  useJobWatches(
    state.docs,
    (job) => dispatch({ type: 'job', job }),
    async (docId, jobId) => {
      const doc = await settleDocument(docId, jobId, (id) => get<DocumentInfo>(`/api/v1/documents/${id}`), wait);
      if (doc === 'gone') dispatch({ type: 'removed', id: docId });
      else if (doc) {
        dispatch({ type: 'doc', doc });
        setAnnounce(doc.state === 'ready' ? `${doc.name} is ready.` : doc.state === 'failed' ? `${doc.name} failed to index.` : '');
      }
      p.onCountsChanged();
    },
  );

  const act = async (fn: () => Promise<void>) => {
    setError(null);
    try {
      await fn();
    } catch (e) {
      setError(e);
    }
  };

  const removeDoc = (d: DocumentInfo) => {
    if (!confirm(`Delete “${d.name}” and its passages from “${c.name}”?`)) return;
    act(async () => {
      await del(`/api/v1/documents/${d.id}`).catch((e) => {
        if (!(e instanceof ApiError && e.status === 404)) throw e;
      });
      dispatch({ type: 'removed', id: d.id });
      setAnnounce(`Deleted ${d.name}.`);
      p.onCountsChanged();
    });
  };

  const reindex = (d: DocumentInfo) =>
    act(async () => {
      dispatch({ type: 'doc', doc: await post<DocumentInfo>(`/api/v1/documents/${d.id}/reindex`) });
      setAnnounce(`Indexing ${d.name} again.`);
    });

  const stop = (d: DocumentInfo) =>
    act(async () => {
      if (d.job_id != null) await del(`/api/v1/jobs/${d.job_id}`);
    });

  const removeCollection = () => {
    const count = c.documents ? ` and its ${c.documents} document${c.documents === 1 ? '' : 's'}` : '';
    if (!confirm(`Delete the collection “${c.name}”${count}? This cannot be undone.`)) return;
    act(async () => {
      await del(base);
      p.onDeleted();
    });
  };

  return (
    <section class="coll-panel" aria-labelledby="coll-panel-title">
      <div class="section-head">
        <h2 id="coll-panel-title" ref={heading} tabIndex={-1} class="coll-heading">
          {c.name}
          {c.shared && <span class="badge">shared</span>}
          {!c.writable && <span class="badge badge-muted">read-only</span>}
        </h2>
        {c.writable && !editing && (
          <div class="row wrap">
            <button type="button" class="btn btn-small" onClick={() => setEditing(true)}>
              Edit<span class="sr-only"> collection {c.name}</span>
            </button>
            <button type="button" class="btn btn-small btn-danger" onClick={removeCollection}>
              Delete<span class="sr-only"> collection {c.name}</span>
            </button>
          </div>
        )}
      </div>
      {c.description && <p>{c.description}</p>}
      {!c.writable && <p class="muted small">Shared by {c.owner}. You can read and search it; only its owner and administrators can change it.</p>}
      {editing && (
        <EditCollection
          collection={c}
          onCancel={() => setEditing(false)}
          onSaved={(updated) => {
            p.onChanged(updated);
            setEditing(false);
          }}
        />
      )}
      <p class="sr-only" role="status">
        {announce}
      </p>
      <Notice>{notice}</Notice>
      <ErrorBox error={error} onDismiss={() => setError(null)} />
      {c.writable && (
        <section class="card" aria-labelledby="add-docs">
          <h3 id="add-docs">Add documents</h3>
          <UploadZone uploads={p.uploads} onFiles={p.onFiles} onCancel={p.onCancelUpload} onDismiss={p.onDismissUpload} />
          <AddUrlForm collectionId={c.id} onAdded={(r, url) => added(r, url)} />
        </section>
      )}
      <section aria-labelledby="docs-title">
        <h3 id="docs-title">Documents</h3>
        {loadError != null && (
          <div>
            <ErrorBox error={loadError} />
            <button type="button" class="btn btn-small" onClick={load}>
              Try again
            </button>
          </div>
        )}
        <DocumentTable
          collectionName={c.name}
          docs={state.docs}
          jobs={state.jobs}
          writable={c.writable}
          onDelete={removeDoc}
          onReindex={reindex}
          onStop={stop}
        />
      </section>
      <PassageSearch collectionId={c.id} collectionName={c.name} />
    </section>
  );
}

function EditCollection({ collection, onSaved, onCancel }: { collection: Collection; onSaved: (c: Collection) => void; onCancel: () => void }) {
  const session = useSession();
  const [name, setName] = useState(collection.name);
  const [description, setDescription] = useState(collection.description);
  const [shared, setShared] = useState(collection.shared);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!name.trim()) return;
    setBusy(true);
    setError(null);
    try {
      const body: Record<string, unknown> = { name: name.trim(), description: description.trim() };
      if (session.isAdmin && shared !== collection.shared) body.shared = shared;
      onSaved(await patch<Collection>(`/api/v1/collections/${collection.id}`, body));
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  return (
    <form class="card stack" onSubmit={submit} aria-label={`Edit the collection ${collection.name}`}>
      <div class="row wrap align-end">
        <label class="field grow">
          <span>Name</span>
          <input required maxLength={200} value={name} ref={(el) => el?.focus()} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label class="field grow">
          <span>Description</span>
          <input maxLength={1000} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </label>
      </div>
      {session.isAdmin && (
        <label class="check">
          <input type="checkbox" checked={shared} onChange={(e) => setShared(e.currentTarget.checked)} />
          <span>Shared with every user (they can read and search it, not change it)</span>
        </label>
      )}
      <ErrorBox error={error} />
      <div class="row">
        <button type="submit" class="btn btn-primary btn-small" disabled={busy}>
          {busy ? 'Saving…' : 'Save'}
        </button>
        <button type="button" class="btn btn-small" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
