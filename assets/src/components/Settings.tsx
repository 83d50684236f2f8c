// A conversation's model, system prompt and sampling settings.

import { useState } from 'preact/hooks';
import { ErrorBox } from './common';
import { FIELDS, formFromSettings, settingsFromForm, type SettingsForm } from '../settings';
import type { ModelInfo, Settings } from '../types';
import { formatBytes } from '../format';

export interface ConversationConfig {
  model: string;
  system_prompt: string;
  settings: Settings;
}

export function modelLabel(m: ModelInfo): string {
  const meta = m.meta ?? {};
  const bits: string[] = [];
  if (meta.parameters) bits.push(`${formatParams(meta.parameters)} params`);
  if (meta.quantization) bits.push(meta.quantization);
  if (meta.size) bits.push(formatBytes(meta.size));
  return bits.length ? `${m.id} (${bits.join(', ')})` : m.id;
}

function formatParams(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${Math.round(n / 1e6)}M`;
  return String(n);
}

/** "temperature 0 · max tokens 64", or "default sampling". */
export function settingsSummary(s: Settings): string {
  const parts: string[] = [];
  for (const f of FIELDS) {
    const v = s[f.key];
    if (typeof v === 'number') parts.push(`${f.label.toLowerCase()} ${v}`);
  }
  if (s.stop?.length) parts.push(`${s.stop.length} stop sequence${s.stop.length > 1 ? 's' : ''}`);
  return parts.length ? parts.join(' · ') : 'default sampling';
}

export function SettingsPanel({
  idPrefix,
  models,
  initial,
  saveLabel,
  onSave,
  onCancel,
}: {
  idPrefix: string;
  models: ModelInfo[] | null;
  initial: ConversationConfig;
  saveLabel: string;
  onSave: (config: ConversationConfig) => Promise<void> | void;
  onCancel: () => void;
}) {
  const [model, setModel] = useState(initial.model);
  const [systemPrompt, setSystemPrompt] = useState(initial.system_prompt);
  const [form, setForm] = useState<SettingsForm>(() => formFromSettings(initial.settings));
  const [errors, setErrors] = useState<Partial<Record<keyof SettingsForm, string>>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const modelOptions = models ?? [];
  const knownModel = !model || modelOptions.some((m) => m.id === model);

  const submit = async (e: Event) => {
    e.preventDefault();
    const parsed = settingsFromForm(form);
    setErrors(parsed.errors);
    if (Object.keys(parsed.errors).length) return;
    setBusy(true);
    setError(null);
    try {
      await onSave({ model, system_prompt: systemPrompt, settings: parsed.settings });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const id = (k: string) => `${idPrefix}-${k}`;

  return (
    <form class="settings-panel card stack" onSubmit={submit} aria-label="Conversation settings">
      <ErrorBox error={error} />
      <label class="field">
        <span>Model</span>
        <select value={model} onChange={(e) => setModel(e.currentTarget.value)} disabled={!models}>
          {!knownModel && <option value={model}>{model} (not installed)</option>}
          {model === '' && <option value="">Default model</option>}
          {modelOptions.map((m) => (
            <option key={m.id} value={m.id}>
              {modelLabel(m)}
            </option>
          ))}
        </select>
      </label>
      <label class="field">
        <span>System prompt</span>
        <textarea
          rows={3}
          maxLength={100_000}
          placeholder="e.g. You are a concise assistant."
          value={systemPrompt}
          onInput={(e) => setSystemPrompt(e.currentTarget.value)}
        />
      </label>
      <fieldset>
        <legend>Sampling (empty = server default)</legend>
        <div class="settings-grid">
          {FIELDS.map((f) => (
            <div class="field" key={f.key}>
              <label for={id(f.key)}>{f.label}</label>
              <input
                id={id(f.key)}
                type="number"
                inputMode="decimal"
                step={f.step}
                min={f.min}
                max={f.max}
                value={form[f.key]}
                aria-describedby={id(`${f.key}-hint`)}
                aria-invalid={errors[f.key] ? true : undefined}
                onInput={(e) => setForm({ ...form, [f.key]: e.currentTarget.value })}
              />
              <small id={id(`${f.key}-hint`)} class={errors[f.key] ? 'field-error' : 'muted'}>
                {errors[f.key] ?? f.hint}
              </small>
            </div>
          ))}
          <div class="field field-wide">
            <label for={id('stop')}>Stop sequences (one per line)</label>
            <textarea
              id={id('stop')}
              rows={2}
              value={form.stop}
              aria-invalid={errors.stop ? true : undefined}
              aria-describedby={id('stop-hint')}
              onInput={(e) => setForm({ ...form, stop: e.currentTarget.value })}
            />
            <small id={id('stop-hint')} class={errors.stop ? 'field-error' : 'muted'}>
              {errors.stop ?? 'the reply ends before any of these'}
            </small>
          </div>
        </div>
      </fieldset>
      <div class="row">
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? 'Saving…' : saveLabel}
        </button>
        <button type="button" class="btn" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
