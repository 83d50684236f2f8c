// A collection's documents: state badges, indexing progress, the error of failed
// ones, and delete / re-index / stop buttons.

import { formatAgo, formatBytes, formatNumber, formatTime, mediaLabel } from '../format';
import { indexingLabel, isIndexing, jobPercent, stateBadge } from '../jobs';
import { documentHref } from '../router';
import type { DocumentInfo, Job } from '../types';
import { Spinner } from './common';

interface Props {
  collectionName: string;
  /** null while loading. */
  docs: DocumentInfo[] | null;
  jobs: Record<number, Job>;
  writable: boolean;
  onDelete: (d: DocumentInfo) => void;
  onReindex: (d: DocumentInfo) => void;
  onStop: (d: DocumentInfo) => void;
}

export function DocumentTable({ collectionName, docs, jobs, writable, onDelete, onReindex, onStop }: Props) {
  if (docs === null) return <Spinner label="Loading documents…" />;
  if (docs.length === 0) {
    return (
      <p class="muted" data-testid="documents-empty">
        {writable ? 'No documents yet. Drop files above, choose them, or add a web page.' : 'No documents yet.'}
      </p>
    );
  }
  return (
    <div class="table-wrap" tabIndex={0} role="region" aria-label={`Documents in ${collectionName}`}>
      <table class="table docs-table">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">State</th>
            <th scope="col" class="num">
              Passages
            </th>
            {writable && (
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody>
          {docs.map((d) => (
            <Row key={d.id} d={d} job={jobs[d.id]} writable={writable} onDelete={onDelete} onReindex={onReindex} onStop={onStop} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Row({
  d,
  job,
  writable,
  onDelete,
  onReindex,
  onStop,
}: { d: DocumentInfo; job: Job | undefined } & Pick<Props, 'writable' | 'onDelete' | 'onReindex' | 'onStop'>) {
  const badge = stateBadge(d.state);
  const busy = isIndexing(d);
  const pct = jobPercent(job);
  return (
    <tr data-testid="document-row" data-state={d.state} data-document-id={d.id}>
      <td class="doc-name">
        <a href={documentHref(d.id)}>{d.name}</a>
        <span class="doc-meta">
          {mediaLabel(d.media_type)}
          {d.pages != null && ` · ${d.pages} page${d.pages === 1 ? '' : 's'}`}
          {` · ${formatBytes(d.size)} · added `}
          <span title={formatTime(d.created_at)}>{formatAgo(d.created_at)}</span>
          {d.source_url && /^https?:\/\//i.test(d.source_url) && (
            <>
              {' · '}
              <a href={d.source_url} target="_blank" rel="noopener noreferrer nofollow">
                source<span class="sr-only"> of {d.name} (opens in a new tab)</span>
              </a>
            </>
          )}
        </span>
      </td>
      <td class="doc-state">
        <span class={`badge ${badge.cls}`} data-testid="document-state">
          {badge.label}
        </span>
        {busy && (
          <div class="doc-progress">
            <progress max={100} value={pct ?? undefined} aria-label={`Indexing ${d.name}`} />
            <span class="small muted">{indexingLabel(d, job)}</span>
          </div>
        )}
        {d.state === 'failed' && d.error && (
          <p class="doc-error small" data-testid="document-error">
            {d.error}
          </p>
        )}
      </td>
      <td class="num">{d.state === 'ready' ? formatNumber(d.chunks) : '–'}</td>
      {writable && (
        <td>
          <div class="row doc-actions">
            {busy ? (
              d.job_id != null && (
                <button type="button" class="btn btn-small" onClick={() => onStop(d)}>
                  Stop<span class="sr-only"> indexing {d.name}</span>
                </button>
              )
            ) : (
              <button type="button" class="btn btn-small" onClick={() => onReindex(d)}>
                Re-index<span class="sr-only"> {d.name}</span>
              </button>
            )}
            <button type="button" class="btn btn-small btn-danger" onClick={() => onDelete(d)}>
              Delete<span class="sr-only"> {d.name}</span>
            </button>
          </div>
        </td>
      )}
    </tr>
  );
}
