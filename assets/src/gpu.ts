// The GPU page's logic, kept out of the components so it can be tested: NVML's throttle
// reasons as words, the VRAM bars' segments, placement and layer text, how a resident
// model's measured VRAM compares with its estimate, and when it unloads.

import { formatBytes, formatDuration, formatNumber } from './format';
import type { GpuBudget, GpuDevice, ModelKind, Placement, PlannedModel, Residency } from './types';

export type Tone = 'ok' | 'warn' | 'error' | 'muted';

/** NVML's clock throttle reasons: a short label, and how much an administrator should care. */
const THROTTLE: Record<string, { label: string; tone: Tone }> = {
  gpu_idle: { label: 'idle (clocks lowered)', tone: 'muted' },
  applications_clocks_setting: { label: 'application clock limit', tone: 'muted' },
  display_clock_setting: { label: 'display clock limit', tone: 'muted' },
  sync_boost: { label: 'held to another GPU’s clocks (sync boost)', tone: 'muted' },
  sw_power_cap: { label: 'power cap', tone: 'warn' },
  sw_thermal_slowdown: { label: 'too hot (driver slowdown)', tone: 'warn' },
  hw_slowdown: { label: 'hardware slowdown (heat or power)', tone: 'error' },
  hw_thermal_slowdown: { label: 'too hot (hardware slowdown)', tone: 'error' },
  hw_power_brake_slowdown: { label: 'power brake (power supply signal)', tone: 'error' },
};

/** `HwSlowdown`, `hw-slowdown`, `HW_SLOWDOWN` → `hw_slowdown`. */
export function normaliseReason(reason: string): string {
  return reason
    .trim()
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[\s-]+/g, '_')
    .toLowerCase();
}

/** A throttle reason in words; an unknown one is shown as its name with spaces. */
export function throttleLabel(reason: string): string {
  const key = normaliseReason(reason);
  return THROTTLE[key]?.label ?? key.replace(/_/g, ' ');
}

/** How serious a throttle reason is: idle and clock settings are normal; hardware slowdowns are not. */
export function throttleTone(reason: string): Tone {
  return THROTTLE[normaliseReason(reason)]?.tone ?? 'warn';
}

/** `GPU-1a2b3c4d-…` → `GPU-1a2b3c4d…`: enough to tell GPUs apart; the full UUID goes in a title. */
export function shortUuid(uuid: string): string {
  const m = /^((?:GPU|MIG)-[0-9a-f]{8})[0-9a-f-]/i.exec(uuid);
  if (m) return `${m[1]}…`;
  return uuid.length > 16 ? `${uuid.slice(0, 12)}…` : uuid;
}

/** One part of a stacked bar; `fraction` is of the whole bar (0–1). */
export interface BarSegment {
  key: string;
  label: string;
  bytes: number;
  fraction: number;
}

function segments(parts: { key: string; label: string; bytes: number | null }[], whole: number): BarSegment[] {
  const clean = parts.map((p) => ({ ...p, bytes: Math.max(0, p.bytes ?? 0) }));
  const sum = clean.reduce((a, p) => a + p.bytes, 0);
  // Estimates can add up to more than the card holds: then the parts are the whole.
  const total = Math.max(whole, sum);
  return clean.map((p) => ({ ...p, fraction: total > 0 ? p.bytes / total : 0 }));
}

/**
 * The VRAM budget as a bar: committed to resident models, still available to place, the
 * reserve, and (given the GPUs' total) the rest, which other processes hold or the
 * administrator's limit keeps the daemon out of.
 */
export function budgetSegments(budget: GpuBudget, totalBytes: number | null): BarSegment[] {
  const inside = budget.committed_bytes + (budget.available_bytes ?? 0) + budget.reserve_bytes;
  const parts = [
    { key: 'committed', label: 'Committed to models', bytes: budget.committed_bytes },
    { key: 'available', label: 'Available to place', bytes: budget.available_bytes },
    { key: 'reserve', label: 'Reserve', bytes: budget.reserve_bytes },
  ];
  if (totalBytes != null && totalBytes > inside) {
    parts.push({ key: 'outside', label: 'Outside the budget', bytes: totalBytes - inside });
  }
  return segments(parts, totalBytes ?? 0);
}

/** One GPU's memory as a bar: what this daemon's processes hold, what others hold, what is free. */
export function deviceSegments(device: GpuDevice): BarSegment[] {
  const used = Math.max(0, device.memory_used_bytes);
  const ours = Math.min(
    used,
    device.processes.filter((p) => p.ours).reduce((a, p) => a + (p.used_bytes ?? 0), 0),
  );
  return segments(
    [
      { key: 'ours', label: 'Appliance', bytes: ours },
      { key: 'others', label: 'Other processes', bytes: used - ours },
      { key: 'free', label: 'Free', bytes: device.memory_free_bytes },
    ],
    device.memory_total_bytes,
  );
}

/** "Budget: Committed to models 12.0 GiB (15 %), …" for a bar's accessible name. */
export function barLabel(title: string, parts: BarSegment[]): string {
  const text = parts.map((p) => `${p.label.toLowerCase()} ${formatBytes(p.bytes)} (${Math.round(p.fraction * 100)} %)`);
  return `${title}: ${text.join(', ')}`;
}

/** "20/32"; a model without layers (none reported) shows "–". */
export function layersText(gpuLayers: number, totalLayers: number): string {
  if (!totalLayers) return '–';
  return `${Math.min(gpuLayers, totalLayers)}/${totalLayers}`;
}

const PLACEMENTS: Record<Placement, { label: string; tone: Tone }> = {
  gpu: { label: 'GPU', tone: 'ok' },
  partial: { label: 'GPU and CPU', tone: 'warn' },
  cpu: { label: 'CPU', tone: 'muted' },
};

export function placementLabel(placement: Placement): string {
  return PLACEMENTS[placement]?.label ?? placement;
}

export function placementTone(placement: Placement): Tone {
  return PLACEMENTS[placement]?.tone ?? 'muted';
}

/** A sentence for a screen reader or a title: "20 of 32 layers on the GPU, the rest on the CPU". */
export function placementText(m: Pick<PlannedModel, 'placement' | 'gpu_layers' | 'total_layers'>): string {
  switch (m.placement) {
    case 'gpu':
      return m.total_layers ? `all ${m.total_layers} layers on the GPU` : 'on the GPU';
    case 'partial':
      return `${m.gpu_layers} of ${m.total_layers} layers on the GPU, the rest on the CPU`;
    case 'cpu':
      return 'on the CPU';
  }
  return String(m.placement);
}

const KINDS: Record<ModelKind, string> = { chat: 'Chat', embedding: 'Embedding', speech: 'Speech' };

export function kindLabel(kind: ModelKind): string {
  return KINDS[kind] ?? kind;
}

/**
 * How far the measured VRAM is from the estimate, in whole percent of the estimate
 * (positive: more than estimated); null when not measured yet or nothing was estimated.
 */
export function estimateDrift(estimateBytes: number, measuredBytes: number | null): number | null {
  if (measuredBytes == null || !(estimateBytes > 0)) return null;
  return Math.round(((measuredBytes - estimateBytes) / estimateBytes) * 100);
}

/** "+12 % over the estimate", "3 % under the estimate", "as estimated". */
export function driftText(drift: number | null): string {
  if (drift == null) return '';
  if (drift === 0) return 'as estimated';
  return drift > 0 ? `${drift} % over the estimate` : `${-drift} % under the estimate`;
}

/** When a resident model unloads: never when pinned, not while in use, else in so long. */
export function unloadText(r: Pick<Residency, 'pinned' | 'in_use' | 'expires_at'>, now: number = Date.now()): string {
  if (r.pinned) return 'never (pinned)';
  if (r.in_use) return 'not while in use';
  if (!r.expires_at) return 'never';
  const t = new Date(r.expires_at).getTime();
  if (Number.isNaN(t)) return r.expires_at;
  const s = Math.round((t - now) / 1000);
  return s <= 0 ? 'now' : `in ${formatDuration(s)}`;
}

/** "180 W of 350 W (51 %)", "180 W", or "–". */
export function powerText(watts: number | null, limitWatts: number | null): string {
  if (watts == null) return '–';
  const w = `${Math.round(watts)} W`;
  if (!limitWatts) return w;
  return `${w} of ${Math.round(limitWatts)} W (${Math.round((watts / limitWatts) * 100)} %)`;
}

/** Error-correcting memory counts; a card without ECC reports neither. */
export function eccText(corrected: number | null, uncorrected: number | null): string {
  if (corrected == null && uncorrected == null) return 'not reported (no ECC, or it is off)';
  return `${formatNumber(corrected)} corrected, ${formatNumber(uncorrected)} uncorrected`;
}

/** Uncorrected errors mean corrupted data: an error; corrected ones are a warning sign. */
export function eccTone(corrected: number | null, uncorrected: number | null): Tone {
  if ((uncorrected ?? 0) > 0) return 'error';
  if ((corrected ?? 0) > 0) return 'warn';
  return 'ok';
}
