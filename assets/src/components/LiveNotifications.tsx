// The live notification area for administrators, on every page: the `notification`
// events of `GET /api/v1/events` as dismissible toasts in a corner. Info and warnings go
// into a polite live region that is always in the page (one added together with its
// text is often not read out); each critical event is an `alert` of its own, which
// screen readers announce as it is added, so no empty alert stands in the page.

import { useEffect, useState } from 'preact/hooks';
import { followEvents } from '../events';
import { formatTime } from '../format';
import { eventHref } from '../notify';
import {
  dismissAll,
  dismissToast,
  EMPTY_QUEUE,
  expireToasts,
  nextExpiry,
  parseNotification,
  pushToast,
  severityLabel,
  type Toast,
  type ToastQueue,
} from '../toasts';

export function LiveNotifications() {
  const [queue, setQueue] = useState<ToastQueue>(EMPTY_QUEUE);

  useEffect(() => {
    const ctrl = new AbortController();
    followEvents((ev) => {
      // The same stream carries `job` events; the pages that follow jobs read their own.
      if (ev.event !== 'notification') return;
      const n = parseNotification(ev.data);
      if (n) setQueue((q) => pushToast(q, n, Date.now()));
    }, ctrl.signal);
    return () => ctrl.abort();
  }, []);

  // Info toasts leave by themselves: one timer, for the next to go.
  const expiry = nextExpiry(queue);
  useEffect(() => {
    if (expiry == null) return;
    const t = setTimeout(() => setQueue((q) => expireToasts(q, Date.now())), Math.max(0, expiry - Date.now()) + 50);
    return () => clearTimeout(t);
  }, [expiry]);

  const dismiss = (id: number) => setQueue((q) => dismissToast(q, id));
  const polite = queue.toasts.filter((t) => t.notification.severity !== 'critical');
  const critical = queue.toasts.filter((t) => t.notification.severity === 'critical');

  return (
    <div class="toasts" data-testid="toasts">
      {/* Critical ones above the rest: they are what must not be missed. */}
      <div class="toast-list" data-testid="toasts-critical">
        {critical.map((t) => (
          <ToastView key={t.id} toast={t} onDismiss={dismiss} role="alert" />
        ))}
      </div>
      <div role="status" aria-live="polite" aria-atomic="false" aria-label="Notifications" class="toast-list">
        {polite.map((t) => (
          <ToastView key={t.id} toast={t} onDismiss={dismiss} />
        ))}
      </div>
      {queue.toasts.length > 1 && (
        <button type="button" class="btn btn-small toast-clear" onClick={() => setQueue(dismissAll)} data-testid="toasts-dismiss-all">
          Dismiss all notifications
        </button>
      )}
    </div>
  );
}

function ToastView({ toast, onDismiss, role }: { toast: Toast; onDismiss: (id: number) => void; role?: 'alert' }) {
  const n = toast.notification;
  const href = eventHref(n.event);
  const tone = n.severity === 'critical' ? 'error' : n.severity === 'warning' ? 'warn' : 'info';
  return (
    <div
      role={role}
      class={`toast toast-${tone}`}
      data-testid="toast"
      data-event={n.event}
      data-severity={n.severity}
      data-count={toast.count}
    >
      <div class="toast-body">
        <p class="toast-title">
          <span class={`badge ${tone === 'info' ? '' : `badge-${tone}`} toast-severity`}>{severityLabel(n.severity)}</span>{' '}
          <strong>{n.title}</strong>
          {toast.count > 1 && <span class="toast-count"> (×{toast.count})</span>}
        </p>
        {n.detail && <p class="toast-detail">{n.detail}</p>}
        <p class="toast-meta small muted">
          {n.at && <time dateTime={n.at}>{formatTime(n.at, true)}</time>}
          {href && (
            <>
              {n.at && ' · '}
              {/* The label starts with the visible words, as speech input expects. */}
              <a href={href} aria-label={`Look into it: ${n.title}`} onClick={() => onDismiss(toast.id)}>
                Look into it
              </a>
            </>
          )}
        </p>
      </div>
      <button type="button" class="btn-link toast-dismiss" onClick={() => onDismiss(toast.id)} data-testid="toast-dismiss">
        Dismiss<span class="sr-only"> {n.title}</span>
      </button>
    </div>
  );
}
