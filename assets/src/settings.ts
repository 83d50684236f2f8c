// A conversation's sampling settings ⇄ the text fields of its form. Empty fields are
// left out (the server's defaults apply); anything else must parse and be in range.

import type { Settings } from './types';

export interface FieldSpec {
  key: Exclude<keyof Settings, 'stop'>;
  label: string;
  integer: boolean;
  min: number;
  max: number;
  step: string;
  hint: string;
}

export const FIELDS: FieldSpec[] = [
  { key: 'temperature', label: 'Temperature', integer: false, min: 0, max: 2, step: '0.05', hint: '0 = always the most likely token' },
  { key: 'top_p', label: 'Top p', integer: false, min: 0, max: 1, step: '0.01', hint: 'nucleus sampling, 0–1' },
  { key: 'top_k', label: 'Top k', integer: true, min: 0, max: 100_000, step: '1', hint: '0 = off' },
  { key: 'min_p', label: 'Min p', integer: false, min: 0, max: 1, step: '0.01', hint: '0–1' },
  { key: 'repeat_penalty', label: 'Repeat penalty', integer: false, min: 0, max: 10, step: '0.05', hint: '1 = off' },
  { key: 'frequency_penalty', label: 'Frequency penalty', integer: false, min: -2, max: 2, step: '0.1', hint: '-2 to 2' },
  { key: 'presence_penalty', label: 'Presence penalty', integer: false, min: -2, max: 2, step: '0.1', hint: '-2 to 2' },
  { key: 'seed', label: 'Seed', integer: true, min: -(2 ** 53), max: 2 ** 53, step: '1', hint: 'same seed, same reply' },
  { key: 'max_tokens', label: 'Max tokens', integer: true, min: 1, max: 1_000_000, step: '1', hint: 'reply length limit' },
];

export type SettingsForm = Record<FieldSpec['key'] | 'stop', string>;

export function formFromSettings(settings: Settings | null | undefined): SettingsForm {
  const s = settings ?? {};
  const form = { stop: (s.stop ?? []).join('\n') } as SettingsForm;
  for (const f of FIELDS) {
    const v = s[f.key];
    form[f.key] = typeof v === 'number' ? String(v) : '';
  }
  return form;
}

/** Parses the form; returns the settings object or the errors by field. */
export function settingsFromForm(form: SettingsForm): { settings: Settings; errors: Partial<Record<keyof SettingsForm, string>> } {
  const settings: Settings = {};
  const errors: Partial<Record<keyof SettingsForm, string>> = {};
  for (const f of FIELDS) {
    const raw = (form[f.key] ?? '').trim();
    if (raw === '') continue;
    const n = Number(raw);
    if (!Number.isFinite(n)) {
      errors[f.key] = `${f.label} must be a number`;
    } else if (f.integer && !Number.isInteger(n)) {
      errors[f.key] = `${f.label} must be a whole number`;
    } else if (n < f.min || n > f.max) {
      errors[f.key] = `${f.label} must be from ${f.min} to ${f.max}`;
    } else {
      settings[f.key] = n;
    }
  }
  const stop = (form.stop ?? '')
    .split('\n')
    .map((s) => s.replace(/\r$/, ''))
    .filter((s) => s.length > 0);
  if (stop.length > 16) errors.stop = 'At most 16 stop sequences';
  else if (stop.some((x) => new TextEncoder().encode(x).length > 256)) errors.stop = 'Each stop sequence may have at most 256 bytes';
  else if (stop.length) settings.stop = stop;
  return { settings, errors };
}
