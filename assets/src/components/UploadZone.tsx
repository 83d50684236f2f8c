// Adding documents: a drop zone with a file picker (the keyboard way in), one progress
// bar per file, and a form for a web page's address.

import { useState } from 'preact/hooks';
import { errorMessage, post } from '../api';
import { formatBytes } from '../format';
import type { AddedDocuments } from '../types';
import { isActiveUpload, uploadPercent, type Upload } from '../uploads';

/** What the daemon can extract text from (a hint for the picker; the server decides). */
const ACCEPT = '.pdf,.docx,.xlsx,.csv,.json,.html,.htm,.md,.markdown,.txt,.text';

export function UploadZone({
  uploads,
  onFiles,
  onCancel,
  onDismiss,
  inputId = 'doc-files',
  accept = ACCEPT,
  hint = 'PDF, Word (.docx), Excel (.xlsx), CSV, JSON, HTML, Markdown or plain text.',
}: {
  uploads: Upload[];
  onFiles: (files: File[]) => void;
  onCancel: (key: number) => void;
  onDismiss: (key: number) => void;
  inputId?: string;
  /** The file picker's hint (the server decides what it takes). */
  accept?: string;
  /** What can be dropped, in words. */
  hint?: string;
}) {
  const [dragging, setDragging] = useState(false);

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    const files = [...(e.dataTransfer?.files ?? [])];
    if (files.length) onFiles(files);
  };
  const onDragOver = (e: DragEvent) => {
    if (!e.dataTransfer?.types.includes('Files')) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    setDragging(true);
  };
  const onDragLeave = (e: DragEvent) => {
    const to = e.relatedTarget as Node | null;
    if (!to || !(e.currentTarget as HTMLElement).contains(to)) setDragging(false);
  };

  return (
    <div class="stack">
      <div
        class={`dropzone ${dragging ? 'dropzone-active' : ''}`}
        data-testid="drop-zone"
        onDragEnter={onDragOver}
        onDragOver={onDragOver}
        onDragLeave={onDragLeave}
        onDrop={onDrop}
      >
        <p class="dropzone-text">{dragging ? 'Drop to upload' : 'Drop files here, or'}</p>
        <input
          id={inputId}
          class="file-input"
          type="file"
          multiple
          accept={accept}
          data-testid="file-input"
          onChange={(e) => {
            const files = [...(e.currentTarget.files ?? [])];
            // Clear it so picking the same file again still fires a change.
            e.currentTarget.value = '';
            if (files.length) onFiles(files);
          }}
        />
        <label for={inputId} class="btn btn-primary">
          Choose files
        </label>
        <p class="muted small">{hint}</p>
      </div>
      {uploads.length > 0 && (
        <ul class="uploads" aria-label="Uploads">
          {uploads.map((u) => (
            <UploadRow key={u.key} u={u} onCancel={onCancel} onDismiss={onDismiss} />
          ))}
        </ul>
      )}
    </div>
  );
}

function UploadRow({ u, onCancel, onDismiss }: { u: Upload; onCancel: (key: number) => void; onDismiss: (key: number) => void }) {
  const pct = uploadPercent(u);
  const status = {
    waiting: 'waiting',
    // All sent, but the server has not answered yet.
    uploading: pct >= 100 ? 'processing…' : `${pct} %`,
    done: 'uploaded',
    failed: 'failed',
    cancelled: 'cancelled',
  }[u.state];
  return (
    <li class={`upload upload-${u.state}`} data-testid="upload-row" data-state={u.state}>
      <div class="upload-head">
        <span class="upload-name">{u.name}</span>
        <span class="muted small">
          {formatBytes(u.size)} · {status}
        </span>
        {isActiveUpload(u) ? (
          <button type="button" class="btn btn-small btn-quiet" onClick={() => onCancel(u.key)}>
            Cancel<span class="sr-only"> upload of {u.name}</span>
          </button>
        ) : (
          <button type="button" class="btn btn-small btn-quiet" onClick={() => onDismiss(u.key)}>
            Dismiss<span class="sr-only"> {u.name}</span>
          </button>
        )}
      </div>
      {isActiveUpload(u) && <progress max={100} value={u.state === 'uploading' ? pct : 0} aria-label={`Uploading ${u.name}`} />}
      {u.error && <p class="doc-error small">{u.error}</p>}
    </li>
  );
}

export function AddUrlForm({ collectionId, onAdded }: { collectionId: number; onAdded: (r: AddedDocuments, url: string) => void }) {
  const [url, setUrl] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    const value = url.trim();
    if (!/^https?:\/\/\S+$/i.test(value)) {
      setError('Enter a full address starting with http:// or https://.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      onAdded(await post<AddedDocuments>(`/api/v1/collections/${collectionId}/urls`, { url: value }), value);
      setUrl('');
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="stack add-url" onSubmit={submit} noValidate>
      <div class="row wrap align-end">
        <label class="field grow">
          <span>Add a web page by address</span>
          <input
            type="url"
            inputMode="url"
            placeholder="https://example.com/page"
            value={url}
            aria-invalid={error ? 'true' : undefined}
            aria-describedby={error ? 'add-url-error' : undefined}
            data-testid="url-input"
            onInput={(e) => setUrl(e.currentTarget.value)}
          />
        </label>
        <button type="submit" class="btn" disabled={busy}>
          {busy ? 'Adding…' : 'Add page'}
        </button>
      </div>
      {error && (
        <p id="add-url-error" class="field-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
