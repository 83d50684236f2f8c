// Admin: where the daemon's notifications go, from `GET /api/v1/notifications`: the
// webhook targets (or how to add one), how often an event may repeat, a test that is
// followed until its deliveries are listed, the recent deliveries, and what each event
// kind means.

import { useEffect, useRef, useState } from 'preact/hooks';
import { getNotifications, sendTestNotification } from '../../api';
import { CopyButton, ErrorBox, PageTitle, Spinner, usePoll } from '../../components/common';
import { formatTime, plural } from '../../format';
import { sleep } from '../../jobwatch';
import { relativeText } from '../../backups';
import {
  CONFIG_FILE,
  CONFIG_SNIPPET,
  deliveryKey,
  deliveryTargetLabel,
  eventMeaning,
  eventTitle,
  newTestDeliveries,
  queuedText,
  repeatText,
  resultText,
  targetLabel,
  TEST_REFRESH_AT_MS,
  testProgress,
} from '../../notify';
import type { Delivery, NotificationsView, NotifyTarget } from '../../types';

// Deliveries happen when something goes wrong, which is rare; a test refreshes sooner.
const POLL_MS = 30_000;

/** A test sent from this page: how many targets, and which deliveries were listed before it. */
interface TestRun {
  queued: number;
  before: ReadonlySet<string>;
  /** No more refreshes are coming. */
  finished: boolean;
}

export function NotificationsPage() {
  const [view, setView] = useState<NotificationsView | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [testError, setTestError] = useState<unknown>(null);
  const [sending, setSending] = useState(false);
  const [run, setRun] = useState<TestRun | null>(null);
  const followCtrl = useRef<AbortController | null>(null);

  const load = async () => {
    try {
      setView(await getNotifications());
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  usePoll(load, POLL_MS);
  useEffect(() => () => followCtrl.current?.abort(), []);

  /** Fetches the list again on the schedule after a test, until every target's delivery is listed. */
  const follow = async (queued: number, before: ReadonlySet<string>) => {
    followCtrl.current?.abort();
    const ctrl = new AbortController();
    followCtrl.current = ctrl;
    const started = Date.now();
    for (const at of TEST_REFRESH_AT_MS) {
      await sleep(Math.max(0, started + at - Date.now()), ctrl.signal);
      if (ctrl.signal.aborted) return;
      try {
        const v = await getNotifications({ signal: ctrl.signal });
        if (ctrl.signal.aborted) return;
        setView(v);
        setError(null);
        if (testProgress(queued, newTestDeliveries(before, v.recent)).settled) break;
      } catch (e) {
        if (ctrl.signal.aborted) return;
        setError(e);
      }
    }
    setRun((r) => (r && r.before === before ? { ...r, finished: true } : r));
  };

  const sendTest = async () => {
    setTestError(null);
    setSending(true);
    try {
      const before = new Set((view?.recent ?? []).map(deliveryKey));
      const { queued } = await sendTestNotification();
      setRun({ queued, before, finished: queued <= 0 });
      if (queued > 0) follow(queued, before);
    } catch (e) {
      setTestError(e);
    } finally {
      setSending(false);
    }
  };

  const now = Date.now();

  return (
    <div class="page wide notify-page">
      <PageTitle>Notifications</PageTitle>
      <p class="muted">
        The daemon reports trouble (a failed backup, a nearly full disk, a worker that keeps crashing) to webhooks: Slack, Matrix
        or any endpoint that takes JSON. Administrators signed in here also see each one as it happens, in the corner of the
        page.
      </p>
      <ErrorBox error={error} />
      {!view && !error && <Spinner />}
      {view && (
        <>
          <section aria-labelledby="notify-targets-title">
            <h2 id="notify-targets-title">Where they go</h2>
            {view.targets.length === 0 ? <NoTargets /> : <Targets targets={view.targets} />}
            <dl class="facts notify-facts">
              <dt>Repeats</dt>
              <dd data-testid="notify-interval">{repeatText(view.min_interval_minutes)}</dd>
            </dl>
          </section>
          <section class="card" aria-labelledby="notify-test-title">
            <h2 id="notify-test-title">Test</h2>
            <p>
              Sends a notification of the kind <code>test</code> to every target, to check that it arrives where people
              will see it.
            </p>
            <div class="row">
              <button type="button" class="btn btn-primary" disabled={sending} onClick={sendTest} data-testid="notify-test">
                Send a test notification
              </button>
            </div>
            <ErrorBox error={testError} onDismiss={() => setTestError(null)} />
            {/* Always present, so a screen reader announces what appears in it. */}
            <div role="status" class="notify-test-region">
              {run && <TestState run={run} recent={view.recent} />}
            </div>
          </section>
          <Recent recent={view.recent} now={now} />
          <section aria-labelledby="notify-events-title">
            <h2 id="notify-events-title">Events</h2>
            <p class="muted">Every kind of event the daemon can send, and what it means.</p>
            <dl class="facts notify-events" data-testid="notify-events">
              {view.events.map((e) => (
                <div key={e} class="notify-event" data-testid="notify-event" data-event={e}>
                  <dt>
                    <code>{e}</code>
                  </dt>
                  <dd>
                    <span class="notify-event-title">{eventTitle(e)}:</span> {eventMeaning(e)}
                  </dd>
                </div>
              ))}
            </dl>
          </section>
        </>
      )}
    </div>
  );
}

function Targets({ targets }: { targets: NotifyTarget[] }) {
  return (
    <>
      <p>
        {plural(targets.length, 'webhook')} from <code>{CONFIG_FILE}</code>. Their addresses&rsquo; secret parts are not
        shown.
      </p>
      <ul class="notify-targets" data-testid="notify-targets">
        {targets.map((t, i) => (
          <li key={`${i}-${t.kind}-${t.host}`} data-testid="notify-target" data-kind={t.kind}>
            {targetLabel(t)}
          </li>
        ))}
      </ul>
    </>
  );
}

function NoTargets() {
  return (
    <div class="alert alert-info" data-testid="notify-no-targets">
      <div class="grow">
        <p>
          <strong>No targets are configured</strong>, so notifications are only shown here, to administrators who are signed
          in.
        </p>
        <p>
          To send them to Slack, Matrix or a JSON webhook, add the addresses to <code>{CONFIG_FILE}</code>, keeping the lines
          you need, then restart the daemon (<code>systemctl restart appliance</code>):
        </p>
        <div class="code-block notify-snippet">
          <div class="code-head">
            <span>toml</span>
            <CopyButton text={CONFIG_SNIPPET} label="Copy" class="copy-code" />
          </div>
          <pre tabIndex={0} aria-label="Configuration to add">
            <code data-testid="notify-snippet">{CONFIG_SNIPPET}</code>
          </pre>
        </div>
      </div>
    </div>
  );
}

function TestState({ run, recent }: { run: TestRun; recent: Delivery[] }) {
  if (run.queued <= 0) {
    return (
      <div class="alert alert-warn" data-testid="notify-test-result" data-queued={run.queued}>
        <span>{queuedText(run.queued)} Add a target as shown above.</span>
      </div>
    );
  }
  const progress = testProgress(run.queued, newTestDeliveries(run.before, recent));
  const state = progress.settled ? 'settled' : run.finished ? 'incomplete' : 'waiting';
  return (
    <div class="alert alert-info" data-testid="notify-test-result" data-queued={run.queued} data-state={state}>
      <div>
        <p>{queuedText(run.queued)}</p>
        <p class="notify-test-progress">
          {progress.text}
          {state === 'incomplete' && ' Some have not been listed yet: refresh the page in a while, or look in the daemon’s log.'}
        </p>
      </div>
    </div>
  );
}

function Recent({ recent, now }: { recent: Delivery[]; now: number }) {
  return (
    <section aria-labelledby="notify-recent-title">
      <h2 id="notify-recent-title">Recent deliveries</h2>
      {recent.length === 0 ? (
        <p class="muted" data-testid="notify-recent-empty">
          Nothing has been sent yet.
        </p>
      ) : (
        <div class="table-wrap" tabIndex={0} role="region" aria-label="Recent deliveries">
          <table class="table notify-table">
            <caption class="sr-only">Notifications sent to the webhook targets, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Event</th>
                <th scope="col">Target</th>
                <th scope="col">Result</th>
              </tr>
            </thead>
            <tbody>
              {recent.map((d, i) => (
                <tr
                  key={`${deliveryKey(d)}-${i}`}
                  data-testid="notify-delivery"
                  data-event={d.event}
                  data-success={String(d.success)}
                >
                  <td class="notify-time">
                    <time dateTime={d.at} title={relativeText(d.at, now, true)}>
                      {formatTime(d.at, true)}
                    </time>
                  </td>
                  <td>
                    {d.title}
                    <div class="doc-meta">
                      <code>{d.event}</code>
                    </div>
                  </td>
                  <td data-testid="notify-delivery-target">{deliveryTargetLabel(d.target)}</td>
                  <td data-testid="notify-delivery-result">
                    <span class={d.success ? 'notify-ok' : 'notify-failed'}>
                      <span aria-hidden="true">{d.success ? '✓' : '✗'}</span> {resultText(d)}
                    </span>
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
