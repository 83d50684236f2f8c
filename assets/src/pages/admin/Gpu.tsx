// Admin: the GPU scheduler's view from `GET /api/v1/gpu`: each device, the VRAM budget,
// the start-up plan, the resident models and the loads waiting for VRAM.

import { useState } from 'preact/hooks';
import { formatWait, getGpuReport } from '../../api';
import { CopyButton, ErrorBox, PageTitle, Spinner, usePoll } from '../../components/common';
import { StackBar } from '../../components/StackBar';
import { formatBytes, formatClock, formatPercent, formatTime, plural } from '../../format';
import {
  barLabel,
  budgetSegments,
  deviceSegments,
  driftText,
  eccText,
  eccTone,
  estimateDrift,
  kindLabel,
  layersText,
  placementLabel,
  placementText,
  placementTone,
  powerText,
  shortUuid,
  throttleLabel,
  throttleTone,
  unloadText,
  type Tone,
} from '../../gpu';
import type { GpuDevice, GpuReport, QueuedLoad, Residency, StartupPlan } from '../../types';

const POLL_MS = 3000;

export function GpuPage() {
  const [report, setReport] = useState<GpuReport | null>(null);
  const [updated, setUpdated] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);

  usePoll(async () => {
    try {
      setReport(await getGpuReport());
      setUpdated(Date.now() / 1000);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, POLL_MS);

  return (
    <div class="page wide gpu-page">
      <PageTitle>GPU</PageTitle>
      <p class="muted">
        Where the models run and what they take of the GPU&rsquo;s memory. Refreshed every {POLL_MS / 1000} s
        {updated != null && <>; last at {formatClock(updated)}</>}.
      </p>
      <ErrorBox error={error} />
      {!report && !error && <Spinner />}
      {report && (
        <>
          <GpuState report={report} />
          {report.state === 'available' && (
            <>
              <section aria-labelledby="gpu-devices-title">
                <h2 id="gpu-devices-title">Devices</h2>
                {report.devices.length === 0 && <p class="muted">The driver reports no device.</p>}
                {report.devices.map((d) => (
                  <DevicePanel key={d.index} device={d} />
                ))}
              </section>
              <Budget report={report} />
            </>
          )}
          <Plan plan={report.plan} />
          <Resident models={report.resident} />
          <Queue loads={report.queue} />
        </>
      )}
    </div>
  );
}

function badge(tone: Tone): string {
  return `badge badge-${tone}`;
}

function GpuState({ report }: { report: GpuReport }) {
  const versions = [report.driver_version && `driver ${report.driver_version}`, report.cuda_version && `CUDA ${report.cuda_version}`]
    .filter(Boolean)
    .join(' · ');
  if (report.state === 'unavailable') {
    return (
      <div class="alert alert-info" role="status" data-testid="gpu-state" data-state="unavailable">
        <div>
          <p>
            <strong>No GPU.</strong> {report.reason ?? 'The daemon found no usable GPU.'}
          </p>
          <p class="gpu-state-cpu">All models run on the CPU, which is slower than on a GPU.</p>
        </div>
      </div>
    );
  }
  return (
    <p class="gpu-state" data-testid="gpu-state" data-state="available">
      <span class="badge badge-ok">GPU available</span> {plural(report.devices.length, 'device')}
      {versions && <> · {versions}</>}
    </p>
  );
}

function DevicePanel({ device: d }: { device: GpuDevice }) {
  const titleId = `gpu-${d.index}-title`;
  const parts = deviceSegments(d);
  return (
    <section class="card gpu-device" aria-labelledby={titleId} data-testid="gpu-device" data-index={d.index}>
      <h3 id={titleId}>
        GPU {d.index}: {d.name}
      </h3>
      <StackBar parts={parts} label={barLabel(`GPU ${d.index} memory of ${formatBytes(d.memory_total_bytes)}`, parts)} />
      <dl class="facts gpu-facts">
        <dt>UUID</dt>
        <dd>
          <code title={d.uuid}>{shortUuid(d.uuid)}</code>{' '}
          <CopyButton text={d.uuid} label="Copy UUID" class="btn-link" />
        </dd>
        <dt>Memory</dt>
        <dd>
          {formatBytes(d.memory_used_bytes)} used of {formatBytes(d.memory_total_bytes)}, {formatBytes(d.memory_free_bytes)} free
        </dd>
        <dt>Utilisation</dt>
        <dd>
          {formatPercent(d.utilization_percent, 0)} compute, {formatPercent(d.memory_utilization_percent, 0)} memory bandwidth
        </dd>
        <dt>Temperature</dt>
        <dd>{d.temperature_c == null ? '–' : `${d.temperature_c} °C`}</dd>
        <dt>Power</dt>
        <dd>{powerText(d.power_w, d.power_limit_w)}</dd>
        <dt>ECC errors</dt>
        <dd>
          {eccTone(d.ecc_corrected, d.ecc_uncorrected) === 'ok' ? (
            eccText(d.ecc_corrected, d.ecc_uncorrected)
          ) : (
            <span class={badge(eccTone(d.ecc_corrected, d.ecc_uncorrected))}>{eccText(d.ecc_corrected, d.ecc_uncorrected)}</span>
          )}
        </dd>
        <dt>Throttling</dt>
        <dd data-testid="gpu-throttle">
          {d.throttle_reasons.length === 0
            ? 'none'
            : d.throttle_reasons.map((r) => (
                <span key={r} class={`${badge(throttleTone(r))} gpu-throttle`} title={r}>
                  {throttleLabel(r)}
                </span>
              ))}
        </dd>
      </dl>
      {d.processes.length === 0 ? (
        <p class="muted">No process uses this GPU.</p>
      ) : (
        <div class="table-wrap" tabIndex={0} role="region" aria-label={`Processes on GPU ${d.index}`}>
          <table class="table">
            <caption class="sr-only">Processes on GPU {d.index}</caption>
            <thead>
              <tr>
                <th scope="col" class="num">PID</th>
                <th scope="col">Process</th>
                <th scope="col" class="num">GPU memory</th>
                <th scope="col">Model</th>
              </tr>
            </thead>
            <tbody>
              {d.processes.map((p) => (
                <tr key={p.pid} data-testid="gpu-process" data-ours={p.ours}>
                  <td class="num">{p.pid}</td>
                  <td>
                    {p.name ?? '–'}
                    {p.ours && <span class="badge">appliance</span>}
                  </td>
                  <td class="num">{formatBytes(p.used_bytes)}</td>
                  <td>{p.model ?? (p.ours ? '–' : '')}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Budget({ report }: { report: GpuReport }) {
  const b = report.budget;
  const total = report.devices.length ? report.devices.reduce((a, d) => a + d.memory_total_bytes, 0) : null;
  const parts = budgetSegments(b, total);
  return (
    <section aria-labelledby="gpu-budget-title">
      <h2 id="gpu-budget-title">VRAM budget</h2>
      <StackBar parts={parts} label={barLabel('VRAM budget', parts)} testId="gpu-budget-bar" />
      <p class="muted small">
        Committed is what the resident models take (measured where known, else estimated). The reserve of{' '}
        {formatBytes(b.reserve_bytes)} stays free for other processes and fragmentation.{' '}
        {b.limit_bytes == null
          ? 'No limit is set: the daemon may use all free VRAM.'
          : `The daemon may use at most ${formatBytes(b.limit_bytes)}.`}
      </p>
    </section>
  );
}

function Plan({ plan }: { plan: StartupPlan | null }) {
  return (
    <section aria-labelledby="gpu-plan-title">
      <h2 id="gpu-plan-title">Start-up plan</h2>
      {!plan ? (
        <p class="muted">Not planned yet: the daemon plans when it starts serving.</p>
      ) : (
        <>
          <p class="muted">
            Planned {formatTime(plan.planned_at, true)},{' '}
            {plan.gpu_free_bytes == null ? 'with no GPU' : `with ${formatBytes(plan.gpu_free_bytes)} of VRAM free`}.
          </p>
          {plan.models.length === 0 ? (
            <p class="muted">No model to place.</p>
          ) : (
            <div class="table-wrap" tabIndex={0} role="region" aria-label="Start-up plan">
              <table class="table">
                <caption class="sr-only">Start-up plan: where each model runs</caption>
                <thead>
                  <tr>
                    <th scope="col">Model</th>
                    <th scope="col">Kind</th>
                    <th scope="col">Placement</th>
                    <th scope="col" class="num">GPU layers</th>
                    <th scope="col" class="num">VRAM</th>
                    <th scope="col" class="num">RAM</th>
                    <th scope="col">Why</th>
                  </tr>
                </thead>
                <tbody>
                  {plan.models.map((m) => (
                    <tr key={m.name} data-testid="plan-row" data-placement={m.placement}>
                      <td>
                        {m.name}
                        {m.preload && <span class="badge badge-muted">preload</span>}
                      </td>
                      <td>{kindLabel(m.kind)}</td>
                      <td>
                        <span class={badge(placementTone(m.placement))} title={placementText(m)}>
                          {placementLabel(m.placement)}
                        </span>
                      </td>
                      <td class="num">{layersText(m.gpu_layers, m.total_layers)}</td>
                      <td class="num">{formatBytes(m.vram_bytes)}</td>
                      <td class="num">{formatBytes(m.ram_bytes)}</td>
                      <td>{m.reason}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          {plan.notes.length > 0 && (
            <>
              <h3 id="gpu-plan-notes" class="gpu-notes">Notes</h3>
              <ul aria-labelledby="gpu-plan-notes" data-testid="plan-notes">
                {plan.notes.map((n, i) => (
                  <li key={i}>{n}</li>
                ))}
              </ul>
            </>
          )}
        </>
      )}
    </section>
  );
}

function Resident({ models }: { models: Residency[] }) {
  return (
    <section aria-labelledby="gpu-resident-title">
      <h2 id="gpu-resident-title">Resident models</h2>
      {models.length === 0 ? (
        <p class="muted">No model is loaded.</p>
      ) : (
        <div class="table-wrap" tabIndex={0} role="region" aria-label="Resident models">
          <table class="table">
            <caption class="sr-only">Resident models and their VRAM</caption>
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Kind</th>
                <th scope="col" class="num">GPU layers</th>
                <th scope="col" class="num">VRAM estimate</th>
                <th scope="col">VRAM measured</th>
                <th scope="col">Unloads</th>
              </tr>
            </thead>
            <tbody>
              {models.map((r) => {
                const drift = driftText(estimateDrift(r.estimate_bytes, r.measured_bytes));
                return (
                  <tr key={r.name} data-testid="resident-row">
                    <td>
                      {r.name}
                      {r.pinned && <span class="badge">pinned</span>}
                      {r.in_use && <span class="badge badge-ok">in use</span>}
                    </td>
                    <td>{kindLabel(r.kind)}</td>
                    <td class="num">{r.gpu_layers}</td>
                    <td class="num">{formatBytes(r.estimate_bytes)}</td>
                    <td>
                      {r.measured_bytes == null ? (
                        <span class="muted">not measured</span>
                      ) : (
                        <>
                          {formatBytes(r.measured_bytes)}
                          {drift && <span class="muted small"> ({drift})</span>}
                        </>
                      )}
                    </td>
                    <td>{r.expires_at && !r.pinned && !r.in_use ? <span title={formatTime(r.expires_at, true)}>{unloadText(r)}</span> : unloadText(r)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Queue({ loads }: { loads: QueuedLoad[] }) {
  return (
    <section aria-labelledby="gpu-queue-title">
      <h2 id="gpu-queue-title">Load queue</h2>
      {loads.length === 0 ? (
        <p class="muted" data-testid="queue-empty">
          No load is waiting for VRAM.
        </p>
      ) : (
        <div class="table-wrap" tabIndex={0} role="region" aria-label="Load queue">
          <table class="table">
            <caption class="sr-only">Loads waiting for VRAM, first in line first</caption>
            <thead>
              <tr>
                <th scope="col" class="num">Position</th>
                <th scope="col">Model</th>
                <th scope="col">Kind</th>
                <th scope="col" class="num">Needs</th>
                <th scope="col" class="num">Waiting</th>
              </tr>
            </thead>
            <tbody>
              {loads.map((q) => (
                <tr key={`${q.position}-${q.model}`} data-testid="queue-row">
                  <td class="num">{q.position}</td>
                  <td>{q.model}</td>
                  <td>{kindLabel(q.kind)}</td>
                  <td class="num">{formatBytes(q.needs_bytes)}</td>
                  <td class="num">{formatWait(q.waiting_secs)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
