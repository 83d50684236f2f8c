// A small hand-drawn SVG line chart: no chart library, no inline styles (colours come
// from the stylesheet through classes).

export interface Point {
  t: number;
  v: number | null;
}

/** Polyline points for values in [min, max] over the time range of `points`, in a W×H box. Gaps (null) split the line. */
export function linePaths(points: Point[], min: number, max: number, w: number, h: number): string[] {
  if (points.length === 0) return [];
  const t0 = points[0].t;
  const t1 = points[points.length - 1].t;
  const span = Math.max(1, t1 - t0);
  const range = max - min || 1;
  const paths: string[] = [];
  let current: string[] = [];
  for (const p of points) {
    if (p.v == null || !Number.isFinite(p.v)) {
      if (current.length) paths.push(current.join(' '));
      current = [];
      continue;
    }
    const x = ((p.t - t0) / span) * w;
    const clamped = Math.min(max, Math.max(min, p.v));
    const y = h - ((clamped - min) / range) * h;
    current.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  }
  if (current.length) paths.push(current.join(' '));
  return paths;
}

export function Sparkline({
  points,
  min = 0,
  max,
  label,
  tone = 'a',
}: {
  points: Point[];
  min?: number;
  max: number;
  label: string;
  tone?: 'a' | 'b' | 'c' | 'd';
}) {
  const W = 300;
  const H = 60;
  const lines = linePaths(points, min, max, W, H);
  return (
    <svg class={`spark spark-${tone}`} viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={label}>
      <line class="spark-grid" x1="0" y1={H / 2} x2={W} y2={H / 2} vector-effect="non-scaling-stroke" />
      {lines.map((pts, i) => (
        <polyline key={i} class="spark-line" points={pts} vector-effect="non-scaling-stroke" />
      ))}
      {lines.length > 0 && lines[lines.length - 1].split(' ').length === 1 && (
        <circle class="spark-dot" cx={lines[lines.length - 1].split(',')[0]} cy={lines[lines.length - 1].split(',')[1]} r="2" />
      )}
    </svg>
  );
}
