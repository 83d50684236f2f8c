import { describe, expect, it } from 'vitest';
import { linePaths } from './components/Sparkline';

describe('sparkline geometry', () => {
  it('scales time to x and value to y (0 at the bottom)', () => {
    expect(linePaths([{ t: 0, v: 0 }, { t: 10, v: 100 }], 0, 100, 100, 50)).toEqual(['0.0,50.0 100.0,0.0']);
  });
  it('splits at gaps and clamps out-of-range values', () => {
    const p = linePaths([{ t: 0, v: 50 }, { t: 1, v: null }, { t: 2, v: 150 }], 0, 100, 100, 50);
    expect(p).toEqual(['0.0,25.0', '100.0,0.0']);
  });
  it('draws nothing without points', () => {
    expect(linePaths([], 0, 1, 10, 10)).toEqual([]);
  });
});
