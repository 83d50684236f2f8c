// Small shared pieces: page headings that take focus on navigation, alerts, copy
// buttons, a polling hook.

import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { errorMessage } from '../api';

/** The page's h1; focused when the page opens so screen readers announce it. */
export function PageTitle({ children, focus = true }: { children: ComponentChildren; focus?: boolean }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    if (focus && ref.current && !ref.current.closest('[data-nofocus]')) ref.current.focus({ preventScroll: true });
  }, []);
  return (
    <h1 ref={ref} tabIndex={-1} class="page-title">
      {children}
    </h1>
  );
}

export function ErrorBox({ error, onDismiss }: { error: unknown; onDismiss?: () => void }) {
  if (error == null || error === '') return null;
  const text = typeof error === 'string' ? error : errorMessage(error);
  return (
    <div class="alert alert-error" role="alert">
      <span>{text}</span>
      {onDismiss && (
        <button type="button" class="btn-link" onClick={onDismiss} aria-label="Dismiss message">
          Dismiss
        </button>
      )}
    </div>
  );
}

export function Notice({ children }: { children: ComponentChildren }) {
  if (!children) return null;
  return (
    <div class="alert alert-info" role="status">
      {children}
    </div>
  );
}

/** Copies text; falls back to a hidden textarea where the Clipboard API is missing (plain HTTP on a LAN). */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      // Some browsers leave the promise pending (no focus, no permission): give up after a while.
      const ok = await Promise.race([
        navigator.clipboard.writeText(text).then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 1500)),
      ]);
      if (ok) return true;
    }
  } catch {
    // Fall back below.
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.className = 'offscreen';
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

export function CopyButton({ text, label = 'Copy', class: cls = 'btn' }: { text: string; label?: string; class?: string }) {
  const [state, setState] = useState<'idle' | 'ok' | 'fail'>('idle');
  useEffect(() => {
    if (state === 'idle') return;
    const t = setTimeout(() => setState('idle'), 2000);
    return () => clearTimeout(t);
  }, [state]);
  return (
    <button type="button" class={cls} onClick={async () => setState((await copyText(text)) ? 'ok' : 'fail')}>
      {state === 'ok' ? 'Copied' : state === 'fail' ? 'Copy failed: select and copy' : label}
      <span class="sr-only" aria-live="polite">
        {state === 'ok' ? 'Copied to the clipboard' : ''}
      </span>
    </button>
  );
}

/** Calls `fn` now and every `ms` while the page is visible; returns nothing. */
export function usePoll(fn: () => Promise<void> | void, ms: number, deps: unknown[] = []) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      if (stopped) return;
      if (document.visibilityState !== 'hidden') {
        try {
          await saved.current();
        } catch {
          // The callback reports its own errors.
        }
      }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    tick();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [ms, ...deps]);
}

export function Spinner({ label = 'Loading…' }: { label?: string }) {
  return (
    <p class="muted" role="status">
      {label}
    </p>
  );
}

/** A password input for a new password: the server's length rules, no autofill of old ones. */
export function NewPasswordField({
  label,
  value,
  onInput,
  focus = false,
}: {
  label: string;
  value: string;
  onInput: (v: string) => void;
  /** Take focus when shown (e.g. in a dialog). */
  focus?: boolean;
}) {
  return (
    <label class="field">
      <span>{label}</span>
      <input
        type="password"
        required
        minLength={8}
        maxLength={256}
        autoComplete="new-password"
        value={value}
        ref={focus ? (el) => el?.focus() : undefined}
        onInput={(e) => onInput(e.currentTarget.value)}
      />
    </label>
  );
}
