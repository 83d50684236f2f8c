// Admin: requests and tokens per user and UTC day.

import { useEffect, useState } from 'preact/hooks';
import { get, withQuery } from '../../api';
import { ErrorBox, PageTitle, Spinner } from '../../components/common';
import { formatNumber } from '../../format';
import type { UsageRow } from '../../types';

interface Limits {
  requests_per_minute?: number;
  daily_generated_tokens?: number;
  daily_audio_minutes?: number;
  daily_images?: number;
}

export function UsagePage() {
  const [days, setDays] = useState(7);
  const [rows, setRows] = useState<UsageRow[] | null>(null);
  const [limits, setLimits] = useState<Limits | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    setRows(null);
    get<{ data: UsageRow[]; limits: Limits | null }>(withQuery('/api/v1/usage', { all: 'true', days }))
      .then((r) => {
        setRows(r.data);
        setLimits(r.limits);
        setError(null);
      })
      .catch(setError);
  }, [days]);

  const totals = new Map<string, { requests: number; prompt: number; generated: number }>();
  for (const r of rows ?? []) {
    const t = totals.get(r.user_name) ?? { requests: 0, prompt: 0, generated: 0 };
    t.requests += r.requests;
    t.prompt += r.prompt_tokens;
    t.generated += r.generated_tokens;
    totals.set(r.user_name, t);
  }
  const limit = (n: number | undefined) => (n ? formatNumber(n) : 'unlimited');

  return (
    <div class="page wide">
      <PageTitle>Usage</PageTitle>
      <div class="row wrap">
        <label class="field">
          <span>Period</span>
          <select value={days} onChange={(e) => setDays(Number(e.currentTarget.value))}>
            <option value={1}>Today (UTC)</option>
            <option value={7}>Last 7 days</option>
            <option value={30}>Last 30 days</option>
            <option value={90}>Last 90 days</option>
          </select>
        </label>
      </div>
      {limits && (
        <p class="muted">
          Your effective limits: {limit(limits.requests_per_minute)} requests per minute, {limit(limits.daily_generated_tokens)} generated
          tokens per day. Per-user overrides: <code>appliance users limits NAME</code>.
        </p>
      )}
      <ErrorBox error={error} />
      {!rows && !error && <Spinner />}
      {rows && rows.length === 0 && <p class="muted">No usage in this period.</p>}
      {rows && rows.length > 0 && (
        <>
          <section aria-labelledby="usage-totals">
            <h2 id="usage-totals">Per user</h2>
            <div class="table-wrap" tabIndex={0} role="region" aria-label="Usage per user">
              <table class="table">
                <thead>
                  <tr>
                    <th scope="col">User</th>
                    <th scope="col" class="num">Requests</th>
                    <th scope="col" class="num">Prompt tokens</th>
                    <th scope="col" class="num">Generated tokens</th>
                  </tr>
                </thead>
                <tbody>
                  {[...totals.entries()].map(([name, t]) => (
                    <tr key={name}>
                      <td>{name}</td>
                      <td class="num">{formatNumber(t.requests)}</td>
                      <td class="num">{formatNumber(t.prompt)}</td>
                      <td class="num">{formatNumber(t.generated)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
          <section aria-labelledby="usage-days">
            <h2 id="usage-days">Per day</h2>
            <div class="table-wrap" tabIndex={0} role="region" aria-label="Usage per day">
              <table class="table">
                <thead>
                  <tr>
                    <th scope="col">Day (UTC)</th>
                    <th scope="col">User</th>
                    <th scope="col" class="num">Requests</th>
                    <th scope="col" class="num">Prompt tokens</th>
                    <th scope="col" class="num">Generated tokens</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((r) => (
                    <tr key={`${r.day}-${r.user_name}`}>
                      <td>{r.day}</td>
                      <td>{r.user_name}</td>
                      <td class="num">{formatNumber(r.requests)}</td>
                      <td class="num">{formatNumber(r.prompt_tokens)}</td>
                      <td class="num">{formatNumber(r.generated_tokens)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
        </>
      )}
    </div>
  );
}
