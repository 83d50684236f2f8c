// Admin: live CPU, memory, disk and GPU graphs from `GET /api/v1/system`.

import { useState } from 'preact/hooks';
import { get } from '../../api';
import { ErrorBox, PageTitle, Spinner, usePoll } from '../../components/common';
import { Sparkline, type Point } from '../../components/Sparkline';
import { formatBytes, formatClock, formatDuration, formatPercent } from '../../format';
import type { GpuSample, SystemInfo, SystemSample } from '../../types';

export function SystemPage() {
  const [info, setInfo] = useState<SystemInfo | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [interval, setIntervalMs] = useState(2000);

  usePoll(
    async () => {
      try {
        const res = await get<SystemInfo>('/api/v1/system');
        setInfo(res);
        setError(null);
        const ms = Math.max(2, res.interval_secs || 2) * 1000;
        if (ms !== interval) setIntervalMs(ms);
      } catch (e) {
        setError(e);
      }
    },
    interval,
    [],
  );

  const samples = info?.samples ?? [];
  const last = samples[samples.length - 1];
  const span = samples.length > 1 ? samples[samples.length - 1].t - samples[0].t : 0;

  return (
    <div class="page wide">
      <PageTitle>System</PageTitle>
      <p class="muted" aria-live="off">
        {last ? (
          <>
            Latest sample <time data-t={last.t}>{formatClock(last.t)}</time>, one every {info?.interval_secs ?? 2} s; the graphs
            cover the last {formatDuration(span)}.
          </>
        ) : (
          'Waiting for the first sample…'
        )}
      </p>
      <ErrorBox error={error} />
      {!info && !error && <Spinner />}
      {info && !last && <p class="muted">No samples yet; the first arrives a few seconds after the daemon starts.</p>}
      {last && (
        <div class="stat-grid">
          <Stat
            title="CPU"
            value={formatPercent(last.cpu_percent)}
            detail="all cores"
            points={series(samples, (s) => s.cpu_percent)}
            max={100}
            tone="a"
          />
          <Stat
            title="Memory"
            value={formatBytes(last.memory_used_bytes)}
            detail={`of ${formatBytes(last.memory_total_bytes)} (${formatPercent(pct(last.memory_used_bytes, last.memory_total_bytes), 0)})`}
            points={series(samples, (s) => pct(s.memory_used_bytes, s.memory_total_bytes))}
            max={100}
            tone="b"
          />
          <Stat
            title="Disk (data dir)"
            value={`${formatBytes(last.disk_free_bytes)} free`}
            detail={`of ${formatBytes(last.disk_total_bytes)} (${formatPercent(pct(last.disk_total_bytes - last.disk_free_bytes, last.disk_total_bytes), 0)} used)`}
            points={series(samples, (s) => pct(s.disk_total_bytes - s.disk_free_bytes, s.disk_total_bytes))}
            max={100}
            tone="c"
          />
        </div>
      )}
      {last && last.gpus.length > 0 && (
        <section aria-labelledby="gpus-title">
          <h2 id="gpus-title">GPUs</h2>
          <p class="muted small">
            Which models are on them, the VRAM budget and the loads waiting: <a href="#/admin/gpu">GPU</a>.
          </p>
          {last.gpus.map((g) => (
            <GpuPanel key={g.index} gpu={g} samples={samples} />
          ))}
        </section>
      )}
    </div>
  );
}

function pct(used: number | null | undefined, total: number | null | undefined): number | null {
  if (used == null || !total) return null;
  return (used / total) * 100;
}

function series(samples: SystemSample[], pick: (s: SystemSample) => number | null): Point[] {
  return samples.map((s) => ({ t: s.t, v: pick(s) }));
}

function describe(title: string, points: Point[], unit: string): string {
  const vs = points.map((p) => p.v).filter((v): v is number => v != null);
  if (!vs.length) return `${title}: no data`;
  const f = (n: number) => n.toFixed(1);
  return `${title} over time: min ${f(Math.min(...vs))}${unit}, max ${f(Math.max(...vs))}${unit}, now ${f(vs[vs.length - 1])}${unit}`;
}

function Stat({
  title,
  value,
  detail,
  points,
  max,
  tone,
  unit = ' %',
}: {
  title: string;
  value: string;
  detail?: string;
  points: Point[];
  max: number;
  tone: 'a' | 'b' | 'c' | 'd';
  unit?: string;
}) {
  return (
    <div class="card stat">
      <h3 class="stat-title">{title}</h3>
      <p class="stat-value" data-stat={title}>
        {value}
      </p>
      {detail && <p class="stat-detail muted">{detail}</p>}
      <Sparkline points={points} max={max} label={describe(title, points, unit)} tone={tone} />
      <p class="stat-scale muted" aria-hidden="true">
        <span>0</span>
        <span>
          {Math.round(max)}
          {unit}
        </span>
      </p>
    </div>
  );
}

function GpuPanel({ gpu, samples }: { gpu: GpuSample; samples: SystemSample[] }) {
  const of = (s: SystemSample) => s.gpus.find((g) => g.index === gpu.index);
  const maxPower = Math.max(50, ...samples.map((s) => of(s)?.power_w ?? 0)) * 1.1;
  return (
    <div class="gpu">
      <h3>
        GPU {gpu.index}: {gpu.name}
      </h3>
      <div class="stat-grid">
        <Stat
          title="Utilisation"
          value={formatPercent(gpu.utilization_percent, 0)}
          points={series(samples, (s) => of(s)?.utilization_percent ?? null)}
          max={100}
          tone="a"
        />
        <Stat
          title="GPU memory"
          value={formatBytes(gpu.memory_used_bytes)}
          detail={`of ${formatBytes(gpu.memory_total_bytes)}`}
          points={series(samples, (s) => pct(of(s)?.memory_used_bytes, of(s)?.memory_total_bytes))}
          max={100}
          tone="b"
        />
        <Stat
          title="Temperature"
          value={gpu.temperature_c == null ? '–' : `${gpu.temperature_c} °C`}
          points={series(samples, (s) => of(s)?.temperature_c ?? null)}
          max={100}
          tone="c"
          unit=" °C"
        />
        <Stat
          title="Power"
          value={gpu.power_w == null ? '–' : `${gpu.power_w.toFixed(0)} W`}
          points={series(samples, (s) => of(s)?.power_w ?? null)}
          max={maxPower}
          tone="d"
          unit=" W"
        />
      </div>
    </div>
  );
}
