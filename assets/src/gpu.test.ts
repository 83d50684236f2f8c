import { describe, expect, it } from 'vitest';
import { stackRects } from './components/StackBar';
import {
  barLabel,
  budgetSegments,
  deviceSegments,
  driftText,
  eccText,
  eccTone,
  estimateDrift,
  layersText,
  normaliseReason,
  placementLabel,
  placementText,
  powerText,
  shortUuid,
  throttleLabel,
  throttleTone,
  unloadText,
} from './gpu';
import type { GpuDevice } from './types';

const GiB = 1024 ** 3;

function device(over: Partial<GpuDevice> = {}): GpuDevice {
  return {
    index: 0,
    name: 'NVIDIA H100 80GB HBM3',
    uuid: 'GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809',
    memory_total_bytes: 80 * GiB,
    memory_used_bytes: 30 * GiB,
    memory_free_bytes: 50 * GiB,
    utilization_percent: 40,
    memory_utilization_percent: 20,
    temperature_c: 55,
    power_w: 200,
    power_limit_w: 400,
    ecc_corrected: 0,
    ecc_uncorrected: 0,
    throttle_reasons: [],
    processes: [],
    ...over,
  };
}

describe('throttle reasons', () => {
  it('reads NVML names in any spelling', () => {
    expect(normaliseReason('HwSlowdown')).toBe('hw_slowdown');
    expect(normaliseReason('hw-thermal-slowdown')).toBe('hw_thermal_slowdown');
    expect(normaliseReason(' SW_POWER_CAP ')).toBe('sw_power_cap');
  });

  it('labels known reasons in words and unknown ones by name', () => {
    expect(throttleLabel('sw_power_cap')).toBe('power cap');
    expect(throttleLabel('HwThermalSlowdown')).toBe('too hot (hardware slowdown)');
    expect(throttleLabel('gpu_idle')).toBe('idle (clocks lowered)');
    expect(throttleLabel('some_new_reason')).toBe('some new reason');
  });

  it('rates idle as normal and hardware slowdowns as errors', () => {
    expect(throttleTone('gpu_idle')).toBe('muted');
    expect(throttleTone('sw_power_cap')).toBe('warn');
    expect(throttleTone('hw_slowdown')).toBe('error');
    expect(throttleTone('hw_power_brake_slowdown')).toBe('error');
    expect(throttleTone('something_else')).toBe('warn');
  });
});

describe('device facts', () => {
  it('shortens GPU and MIG UUIDs to their first 8 hex digits', () => {
    expect(shortUuid('GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809')).toBe('GPU-1a2b3c4d…');
    expect(shortUuid('MIG-abcdef01-2345-6789-abcd-ef0123456789')).toBe('MIG-abcdef01…');
    expect(shortUuid('GPU-12')).toBe('GPU-12');
    expect(shortUuid('0123456789abcdef0123')).toBe('0123456789ab…');
  });

  it('shows power against its limit', () => {
    expect(powerText(180.4, 350)).toBe('180 W of 350 W (52 %)');
    expect(powerText(180, null)).toBe('180 W');
    expect(powerText(null, 350)).toBe('–');
  });

  it('tells a card without ECC from one with errors', () => {
    expect(eccText(null, null)).toMatch(/^not reported/);
    expect(eccText(1200, 0)).toBe('1,200 corrected, 0 uncorrected');
    expect(eccTone(0, 0)).toBe('ok');
    expect(eccTone(3, 0)).toBe('warn');
    expect(eccTone(3, 1)).toBe('error');
    expect(eccTone(null, null)).toBe('ok');
  });

  it('splits used memory into ours and others', () => {
    const d = device({
      processes: [
        { pid: 10, used_bytes: 12 * GiB, name: 'appliance-llm', ours: true, model: 'qwen' },
        { pid: 11, used_bytes: null, name: 'appliance-stt', ours: true, model: 'whisper' },
        { pid: 20, used_bytes: 18 * GiB, name: 'python', ours: false, model: null },
      ],
    });
    const parts = deviceSegments(d);
    expect(parts.map((p) => [p.key, p.bytes / GiB])).toEqual([
      ['ours', 12],
      ['others', 18],
      ['free', 50],
    ]);
    expect(parts.map((p) => p.fraction)).toEqual([0.15, 0.225, 0.625]);
  });

  it('never counts more of ours than is used', () => {
    const parts = deviceSegments(
      device({ memory_used_bytes: 4 * GiB, processes: [{ pid: 1, used_bytes: 6 * GiB, name: null, ours: true, model: null }] }),
    );
    expect(parts[0].bytes).toBe(4 * GiB);
    expect(parts[1].bytes).toBe(0);
  });
});

describe('VRAM budget bar', () => {
  it('adds the rest of the cards as outside the budget', () => {
    const parts = budgetSegments(
      { committed_bytes: 20 * GiB, available_bytes: 50 * GiB, reserve_bytes: 2 * GiB, limit_bytes: null },
      80 * GiB,
    );
    expect(parts.map((p) => p.key)).toEqual(['committed', 'available', 'reserve', 'outside']);
    expect(parts[3].bytes).toBe(8 * GiB);
    expect(parts.map((p) => p.fraction)).toEqual([0.25, 0.625, 0.025, 0.1]);
    expect(parts.reduce((a, p) => a + p.fraction, 0)).toBeCloseTo(1);
  });

  it('scales to the parts when estimates exceed the cards, and treats no GPU as nothing available', () => {
    const over = budgetSegments({ committed_bytes: 60, available_bytes: 30, reserve_bytes: 10, limit_bytes: 50 }, 80);
    expect(over.map((p) => p.key)).toEqual(['committed', 'available', 'reserve']);
    expect(over.map((p) => p.fraction)).toEqual([0.6, 0.3, 0.1]);
    const none = budgetSegments({ committed_bytes: 0, available_bytes: null, reserve_bytes: 0, limit_bytes: null }, null);
    expect(none.every((p) => p.fraction === 0)).toBe(true);
  });

  it('names the bar with each part for screen readers', () => {
    const parts = budgetSegments({ committed_bytes: GiB, available_bytes: 3 * GiB, reserve_bytes: 0, limit_bytes: null }, null);
    expect(barLabel('VRAM budget', parts)).toBe(
      'VRAM budget: committed to models 1.0 GiB (25 %), available to place 3.0 GiB (75 %), reserve 0 B (0 %)',
    );
  });

  it('lays the parts end to end and never past the end', () => {
    expect(stackRects([0.25, 0.5, 0.25], 100)).toEqual([
      { x: 0, w: 25 },
      { x: 25, w: 50 },
      { x: 75, w: 25 },
    ]);
    expect(stackRects([0.8, 0.5, -1, Number.NaN], 100)).toEqual([
      { x: 0, w: 80 },
      { x: 80, w: 20 },
      { x: 100, w: 0 },
      { x: 100, w: 0 },
    ]);
  });
});

describe('plan and residents', () => {
  it('shows placement and layers', () => {
    expect(layersText(20, 32)).toBe('20/32');
    expect(layersText(99, 32)).toBe('32/32');
    expect(layersText(0, 0)).toBe('–');
    expect(placementLabel('partial')).toBe('GPU and CPU');
    expect(placementText({ placement: 'partial', gpu_layers: 20, total_layers: 32 })).toBe(
      '20 of 32 layers on the GPU, the rest on the CPU',
    );
    expect(placementText({ placement: 'gpu', gpu_layers: 32, total_layers: 32 })).toBe('all 32 layers on the GPU');
    expect(placementText({ placement: 'cpu', gpu_layers: 0, total_layers: 32 })).toBe('on the CPU');
  });

  it('compares measured VRAM with the estimate', () => {
    expect(estimateDrift(4 * GiB, 4.5 * GiB)).toBe(13);
    expect(estimateDrift(4 * GiB, 3 * GiB)).toBe(-25);
    expect(estimateDrift(4 * GiB, null)).toBeNull();
    expect(estimateDrift(0, GiB)).toBeNull();
    expect(driftText(13)).toBe('13 % over the estimate');
    expect(driftText(-25)).toBe('25 % under the estimate');
    expect(driftText(0)).toBe('as estimated');
    expect(driftText(null)).toBe('');
  });

  it('says when a resident model unloads', () => {
    const now = Date.parse('2025-01-01T12:00:00Z');
    expect(unloadText({ pinned: true, in_use: false, expires_at: '2025-01-01T12:05:00Z' }, now)).toBe('never (pinned)');
    expect(unloadText({ pinned: false, in_use: true, expires_at: '2025-01-01T12:05:00Z' }, now)).toBe('not while in use');
    expect(unloadText({ pinned: false, in_use: false, expires_at: '2025-01-01T12:04:30Z' }, now)).toBe('in 4 min 30 s');
    expect(unloadText({ pinned: false, in_use: false, expires_at: '2025-01-01T11:59:00Z' }, now)).toBe('now');
    expect(unloadText({ pinned: false, in_use: false, expires_at: null }, now)).toBe('never');
  });
});
