// Admin: the backup archives from `GET /api/v1/backups`, the schedule that makes them,
// a manual backup followed live through its `backup.create` job, downloads, deletes,
// and how to restore (on the host: the daemon cannot restore itself while it runs).

import { useState } from 'preact/hooks';
import { ApiError, backupHref, deleteBackup, listBackups, startBackup } from '../../api';
import { ErrorBox, Notice, PageTitle, Spinner, usePoll } from '../../components/common';
import {
  archivesText,
  backupWarning,
  jobText,
  kindLabel,
  nextDueText,
  relativeText,
  rowsDetail,
  rowsSummary,
  rowsTitle,
  scheduleText,
  tableText,
  whenText,
} from '../../backups';
import { formatBytes, formatNumber, formatTime } from '../../format';
import { isTerminal, jobPercent } from '../../jobs';
import { useJobSet } from '../../jobwatch';
import type { BackupInfo, BackupList, Job } from '../../types';

// Backups change rarely; often enough to see a scheduled one start.
const POLL_MS = 10_000;

/** The backup job being followed, from its start (or the list) to its end. */
interface Followed {
  id: number;
  /** Its latest event; null before the first. */
  job: Job | null;
  /** The watch ended without a terminal event (the job is gone). */
  lost: boolean;
}

export function BackupsPage() {
  const [list, setList] = useState<BackupList | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [followed, setFollowed] = useState<Followed | null>(null);
  const [starting, setStarting] = useState(false);
  const [withModels, setWithModels] = useState(false);
  const [deleting, setDeleting] = useState<string | null>(null);

  const follow = (id: number) => setFollowed((f) => (f?.id === id ? f : { id, job: null, lost: false }));

  const load = async () => {
    try {
      const l = await listBackups();
      setList(l);
      setError(null);
      // A backup started elsewhere (the schedule, another tab, the CLI) is followed too.
      if (l.running_job != null) follow(l.running_job);
    } catch (e) {
      setError(e);
    }
  };
  usePoll(load, POLL_MS);

  useJobSet(
    followed ? [{ id: followed.id, jobId: followed.id }] : [],
    (j) => setFollowed((f) => (f?.id === j.id ? { ...f, job: j } : f)),
    (id) => {
      setFollowed((f) => (f?.id === id && !(f.job && isTerminal(f.job.state)) ? { ...f, lost: true } : f));
      load();
    },
  );

  const running = followed != null && !followed.lost && !(followed.job && isTerminal(followed.job.state));

  const start = async (e: Event) => {
    e.preventDefault();
    setActionError(null);
    setNotice(null);
    setStarting(true);
    try {
      const { job_id } = await startBackup(withModels);
      follow(job_id);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'backup_running') {
        // Someone (the schedule, another administrator) was first: follow theirs instead.
        setNotice('A backup is already running; its progress is shown below.');
      } else {
        setActionError(err);
      }
    } finally {
      setStarting(false);
      load();
    }
  };

  const remove = async (b: BackupInfo) => {
    if (!confirm(`Delete the backup “${b.name}” from ${formatTime(b.created_at)}? This cannot be undone.`)) return;
    setActionError(null);
    setDeleting(b.name);
    try {
      await deleteBackup(b.name);
      setList((l) => (l ? { ...l, backups: l.backups.filter((x) => x.name !== b.name) } : l));
    } catch (err) {
      setActionError(err);
    } finally {
      setDeleting(null);
      load();
    }
  };

  const now = Date.now();
  const warning = list ? backupWarning(list, now) : null;

  return (
    <div class="page wide backups-page">
      <PageTitle>Backups</PageTitle>
      <p class="muted">
        Each archive holds the database, the uploaded files and the settings, written by the daemon on this machine. Keep copies
        on another machine: an archive beside the data does not survive the disk.
      </p>
      <ErrorBox error={error} />
      {!list && !error && <Spinner />}
      {list && (
        <>
          {warning && (
            <div class="alert alert-warn" role="status" data-testid="backup-warning" data-reason={warning.reason}>
              <div>
                <p>
                  <strong>{warning.title}</strong>
                </p>
                <p class="backup-warning-text">
                  {warning.text}
                  {warning.command && (
                    <>
                      {' '}
                      <code>{warning.command}</code>
                    </>
                  )}
                </p>
              </div>
            </div>
          )}
          <dl class="facts backup-facts" data-testid="backup-status">
            <dt>Schedule</dt>
            <dd data-testid="backup-schedule">{scheduleText(list)}</dd>
            <dt>Last good backup</dt>
            <dd data-testid="backup-last">
              {list.last_success_at ? <time dateTime={list.last_success_at}>{whenText(list.last_success_at, now, true)}</time> : 'none yet'}
            </dd>
            <dt>Next scheduled</dt>
            <dd data-testid="backup-next">{nextDueText(list, now)}</dd>
            <dt>Stored in</dt>
            <dd>
              <code>{list.dir}</code> ({archivesText(list.backups)})
            </dd>
          </dl>
          <BackUpNow
            withModels={withModels}
            setWithModels={setWithModels}
            busy={running || starting}
            onSubmit={start}
            followed={followed}
            notice={notice}
            error={actionError}
            onDismiss={() => setActionError(null)}
          />
          <Archives backups={list.backups} now={now} deleting={deleting} onDelete={remove} />
          <section aria-labelledby="backup-restore-title">
            <h2 id="backup-restore-title">Restoring</h2>
            <p>
              A backup is restored on the host, not from this page: stop the daemon, then run{' '}
              <code>appliance restore FILE</code> with the archive&rsquo;s path (one from <code>{list.dir}</code> or a
              downloaded copy), and start the daemon again. The restore unpacks the archive beside the current data and swaps it
              in only once it is complete, so an interrupted restore leaves the data as it was.
            </p>
          </section>
        </>
      )}
    </div>
  );
}

function BackUpNow({
  withModels,
  setWithModels,
  busy,
  onSubmit,
  followed,
  notice,
  error,
  onDismiss,
}: {
  withModels: boolean;
  setWithModels: (v: boolean) => void;
  busy: boolean;
  onSubmit: (e: Event) => void;
  followed: Followed | null;
  notice: string | null;
  error: unknown;
  onDismiss: () => void;
}) {
  return (
    <section class="card" aria-labelledby="backup-now-title">
      <h2 id="backup-now-title">Back up now</h2>
      <form class="stack" onSubmit={onSubmit}>
        <div>
          <label class="check">
            <input
              type="checkbox"
              checked={withModels}
              disabled={busy}
              aria-describedby="backup-models-hint"
              onChange={(e) => setWithModels(e.currentTarget.checked)}
            />
            <span>Include model files</span>
          </label>
          <p id="backup-models-hint" class="field-hint small muted">
            Model files are large and can be downloaded again, so without this they are listed in the archive by name and
            checksum only; after a restore, put the same files back in the models directory.
          </p>
        </div>
        <div class="row">
          <button type="submit" class="btn btn-primary" disabled={busy}>
            Back up now
          </button>
        </div>
      </form>
      <ErrorBox error={error} onDismiss={onDismiss} />
      <Notice>{notice}</Notice>
      {/* Always present, so a screen reader announces what appears in it. */}
      <div role="status" class="backup-job-region">
        {followed && <JobState followed={followed} />}
      </div>
    </section>
  );
}

function JobState({ followed }: { followed: Followed }) {
  const { job, lost } = followed;
  const state = job?.state ?? (lost ? 'lost' : 'starting');
  const text = lost && !(job && isTerminal(job.state)) ? 'The backup job is gone; the list below shows what was written.' : jobText(job);
  if (state === 'done') {
    return (
      <div class="alert alert-success" data-testid="backup-job" data-state={state} data-job={followed.id}>
        <span>{text}</span>
      </div>
    );
  }
  if (state === 'failed' || state === 'cancelled' || lost) {
    return (
      <div class="alert alert-error" data-testid="backup-job" data-state={state} data-job={followed.id}>
        <span>{text}</span>
      </div>
    );
  }
  const pct = jobPercent(job ?? undefined);
  return (
    <div class="backup-job" data-testid="backup-job" data-state={state} data-job={followed.id}>
      <progress max={100} value={pct ?? undefined} aria-label="Backup progress" />
      <span class="small muted">{text}</span>
    </div>
  );
}

function Archives({
  backups,
  now,
  deleting,
  onDelete,
}: {
  backups: BackupInfo[];
  now: number;
  deleting: string | null;
  onDelete: (b: BackupInfo) => void;
}) {
  return (
    <section aria-labelledby="backup-list-title">
      <h2 id="backup-list-title">Archives</h2>
      {backups.length === 0 ? (
        <p class="muted" data-testid="backup-empty">
          No archives yet. “Back up now” makes the first; scheduled backups appear here too.
        </p>
      ) : (
        <div class="table-wrap" tabIndex={0} role="region" aria-label="Backup archives">
          <table class="table backup-table">
            <caption class="sr-only">Backup archives, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Made</th>
                <th scope="col">Kind</th>
                <th scope="col" class="num">Size</th>
                <th scope="col">App version</th>
                <th scope="col" class="num">Schema</th>
                <th scope="col" class="num">Files</th>
                <th scope="col">Rows</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {backups.map((b) => (
                <tr key={b.name} data-testid="backup-row" data-name={b.name} data-kind={b.kind}>
                  <td class="backup-made">
                    <time dateTime={b.created_at} title={relativeText(b.created_at, now, true)}>
                      {formatTime(b.created_at)}
                    </time>
                    <div class="doc-meta">
                      <code>{b.name}</code>
                    </div>
                  </td>
                  <td data-testid="backup-kind">{kindLabel(b.kind)}</td>
                  <td class="num">
                    {formatBytes(b.bytes)}
                    {b.with_models && <span class="badge">with models</span>}
                  </td>
                  <td>{b.app_version}</td>
                  <td class="num">{b.schema_version}</td>
                  <td class="num">{formatNumber(b.files)}</td>
                  <td>
                    <details class="backup-rows" data-testid="backup-rows">
                      <summary title={rowsTitle(b.rows)}>{rowsSummary(b.rows)}</summary>
                      <ul class="backup-rows-list">
                        {rowsDetail(b.rows).map(([t, n]) => (
                          <li key={t}>{tableText(t, n)}</li>
                        ))}
                      </ul>
                    </details>
                  </td>
                  <td>
                    <div class="row backup-actions">
                      <a class="btn btn-small" href={backupHref(b.name)} download={b.name} data-testid="backup-download">
                        Download<span class="sr-only"> {b.name}</span>
                      </a>
                      <button
                        type="button"
                        class="btn btn-small btn-danger"
                        disabled={deleting === b.name}
                        data-testid="backup-delete"
                        onClick={() => onDelete(b)}
                      >
                        Delete<span class="sr-only"> {b.name}</span>
                      </button>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
