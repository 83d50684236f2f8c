// A horizontal stacked bar (VRAM: committed, available, reserve, …) as SVG: widths are
// attributes, not inline styles (the CSP forbids those), and colours come from classes.

import { formatBytes } from '../format';
import type { BarSegment } from '../gpu';

/** x and width of each part, laid end to end in a bar `width` wide; fractions are clamped to what is left. */
export function stackRects(fractions: number[], width: number): { x: number; w: number }[] {
  let x = 0;
  return fractions.map((f) => {
    const w = Math.min(width - x, Math.max(0, Number.isFinite(f) ? f : 0) * width);
    const rect = { x, w };
    x += w;
    return rect;
  });
}

/** The bar, named by `label` for screen readers, and a legend with each part's size. */
export function StackBar({ parts, label, testId }: { parts: BarSegment[]; label: string; testId?: string }) {
  const W = 100;
  const rects = stackRects(
    parts.map((p) => p.fraction),
    W,
  );
  return (
    <div class="stackbar-wrap">
      <svg class="stackbar" viewBox={`0 0 ${W} 4`} preserveAspectRatio="none" role="img" aria-label={label} data-testid={testId}>
        <rect class="stackbar-track" x="0" y="0" width={W} height="4" />
        {parts.map((p, i) =>
          rects[i].w > 0 ? (
            <rect key={p.key} class={`seg seg-${p.key}`} x={rects[i].x.toFixed(3)} y="0" width={rects[i].w.toFixed(3)} height="4" />
          ) : null,
        )}
      </svg>
      <ul class="stackbar-legend" aria-hidden="true">
        {parts.map((p) => (
          <li key={p.key}>
            <span class={`swatch seg-${p.key}`} />
            {p.label} <strong>{formatBytes(p.bytes)}</strong>
          </li>
        ))}
      </ul>
    </div>
  );
}
